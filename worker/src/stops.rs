//! What was cancelled during one attachment: whole jobs and single attempts (their queued
//! chunks are skipped), and the stop flags of the chunks being mapped, set when their job or
//! attempt is cancelled or the attachment ends, so a long map (a streaming mapper's child
//! process) stops early.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fanfold_common::fleet::AttemptKey;
use fanfold_common::ids::JobId;

#[derive(Default)]
pub struct Stops {
    jobs: HashSet<JobId>,
    attempts: HashSet<AttemptKey>,
    /// Running work's stop flags, by job, and by attempt for a map (a reduce task has none:
    /// only its job is ever cancelled).
    running: Vec<(JobId, Option<AttemptKey>, Arc<AtomicBool>)>,
}

impl Stops {
    /// Whether the attempt's job or the attempt itself was cancelled.
    pub fn covers(&self, key: &AttemptKey) -> bool {
        self.jobs.contains(&key.job) || self.attempts.contains(key)
    }

    pub fn cancel_job(&mut self, job: JobId) {
        for (running, _, stop) in &self.running {
            if *running == job {
                stop.store(true, Ordering::Relaxed);
            }
        }
        self.jobs.insert(job);
    }

    pub fn cancel_attempt(&mut self, key: AttemptKey) {
        for (_, running, stop) in &self.running {
            if *running == Some(key) {
                stop.store(true, Ordering::Relaxed);
            }
        }
        self.attempts.insert(key);
    }

    /// A stop flag for an attempt about to run, already set if it is covered.
    pub fn start(&mut self, key: AttemptKey) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(self.covers(&key)));
        self.running.push((key.job, Some(key), Arc::clone(&stop)));
        stop
    }

    /// A stop flag for a reduce task of `job` about to run, already set if the job was
    /// cancelled.
    pub fn start_reduce(&mut self, job: JobId) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(self.jobs.contains(&job)));
        self.running.push((job, None, Arc::clone(&stop)));
        stop
    }

    /// Forgets a flag handed out by [`Stops::start`].
    pub fn finish(&mut self, stop: &Arc<AtomicBool>) {
        self.running.retain(|(_, _, s)| !Arc::ptr_eq(s, stop));
    }

    /// Sets every running chunk's flag: the attachment is ending.
    pub fn stop_all(&self) {
        for (_, _, stop) in &self.running {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use fanfold_common::ids::{Attempt, ChunkId};

    use super::*;

    fn key(job: JobId, chunk: u64, attempt: u32) -> AttemptKey {
        AttemptKey {
            job,
            chunk: ChunkId(chunk),
            attempt: Attempt(attempt),
        }
    }

    #[test]
    fn cancels_reach_queued_and_running_attempts() {
        let (a, b) = (JobId::new(), JobId::new());
        let mut stops = Stops::default();
        let running_a = stops.start(key(a, 0, 1));
        let running_b = stops.start(key(b, 0, 1));
        stops.cancel_job(a);
        assert!(running_a.load(Ordering::Relaxed));
        assert!(!running_b.load(Ordering::Relaxed));
        assert!(stops.covers(&key(a, 5, 1)), "queued chunks of the job too");
        stops.cancel_attempt(key(b, 0, 1));
        assert!(running_b.load(Ordering::Relaxed));
        assert!(
            !stops.covers(&key(b, 0, 2)),
            "another attempt of it runs on"
        );
        assert!(stops.start(key(a, 1, 1)).load(Ordering::Relaxed));
        let reducing = stops.start_reduce(b);
        assert!(stops.start_reduce(a).load(Ordering::Relaxed));
        stops.cancel_job(b);
        assert!(
            reducing.load(Ordering::Relaxed),
            "a job's reduce tasks stop with it"
        );
        stops.finish(&running_a);
        stops.finish(&running_b);
        assert_eq!(stops.running.len(), 3);
    }
}

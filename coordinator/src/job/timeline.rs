//! A job's timeline: every attempt of its chunks and reduce tasks, on which worker, from when to
//! when and how it ended. The status page draws it (one row per worker) and the chunk table
//! reads each chunk's latest attempt from it. A finished job's timeline is kept with its end
//! (the journal's `timelines` table), so it stays viewable after a restart.
//!
//! Bounded: the first [`MAX_SPANS`] attempts of a job are kept (Spark keeps 100,000 tasks per
//! stage); later ones are counted in `dropped`, and the chunks they ran still show their state
//! from the chunk table.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use fanfold_common::ids::{Attempt, WorkerId};
use serde::{Deserialize, Serialize};

/// Attempts kept per job.
pub const MAX_SPANS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Map,
    Reduce,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    /// Its result was folded (or its map output kept, or its part kept).
    Done,
    Failed,
    /// Its worker left or handed it back: not a failure.
    Released,
    /// Another attempt of the same chunk finished first; this one was cancelled.
    Superseded,
    /// Done, but its map output was lost later (its worker left) and the chunk ran again.
    Lost,
    /// The job ended while it ran.
    Cancelled,
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub stage: Stage,
    /// The chunk id (map) or partition (reduce).
    pub task: u64,
    pub attempt: u32,
    pub worker: u64,
    /// A backup attempt of a straggler.
    pub backup: bool,
    /// Unix milliseconds.
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub outcome: Outcome,
    /// Records it read, when done.
    pub records: u64,
    pub error: Option<String>,
}

/// What is stored with a finished job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineRecord {
    pub spans: Vec<Span>,
    /// Attempts not kept (beyond [`MAX_SPANS`]).
    pub dropped: u64,
    /// The names of the workers the spans ran on, by id.
    pub workers: BTreeMap<u64, String>,
}

#[derive(Default)]
pub struct Timeline {
    spans: Vec<Span>,
    /// Running attempts' spans.
    open: HashMap<(Stage, u64, u32), usize>,
    /// Each task's latest span: the one that finished it, else the last started.
    latest: HashMap<(Stage, u64), usize>,
    dropped: u64,
    /// Worker names of a timeline restored from the store.
    workers: BTreeMap<u64, String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Timeline {
    pub fn restore(record: TimelineRecord) -> Self {
        let mut latest = HashMap::new();
        for (i, span) in record.spans.iter().enumerate() {
            latest.insert((span.stage, span.task), i);
        }
        Timeline {
            spans: record.spans,
            open: HashMap::new(),
            latest,
            dropped: record.dropped,
            workers: record.workers,
        }
    }

    /// An attempt started.
    pub fn start(
        &mut self,
        stage: Stage,
        task: u64,
        attempt: Attempt,
        worker: WorkerId,
        backup: bool,
    ) {
        if self.spans.len() >= MAX_SPANS {
            // Not kept: the task's state shows its live attempt, not an older kept one.
            self.dropped += 1;
            self.latest.remove(&(stage, task));
            return;
        }
        let i = self.spans.len();
        self.spans.push(Span {
            stage,
            task,
            attempt: attempt.0,
            worker: worker.0,
            backup,
            start_ms: now_ms(),
            end_ms: None,
            outcome: Outcome::Running,
            records: 0,
            error: None,
        });
        self.open.insert((stage, task, attempt.0), i);
        self.latest.insert((stage, task), i);
    }

    /// A running attempt ended.
    pub fn end(&mut self, stage: Stage, task: u64, attempt: Attempt, outcome: Outcome) {
        self.end_with(stage, task, attempt, outcome, 0, None);
    }

    pub fn end_with(
        &mut self,
        stage: Stage,
        task: u64,
        attempt: Attempt,
        outcome: Outcome,
        records: u64,
        error: Option<&str>,
    ) {
        if let Some(i) = self.open.remove(&(stage, task, attempt.0)) {
            if outcome == Outcome::Done {
                // The attempt that decided the task is its latest, whatever started after it
                // (a backup that lost).
                self.latest.insert((stage, task), i);
            }
            let span = &mut self.spans[i];
            span.end_ms = Some(now_ms());
            span.outcome = outcome;
            span.records = records;
            // A line of an error is enough for the page; the job's error carries all of it.
            span.error = error.map(|e| e.chars().take(300).collect());
        }
    }

    /// A done map attempt's output was lost: it is the chunk's latest span (the one that
    /// finished it; nothing ran the chunk since).
    pub fn lost(&mut self, task: u64, attempt: Option<Attempt>) {
        if let Some(&i) = self.latest.get(&(Stage::Map, task)) {
            let span = &mut self.spans[i];
            if span.outcome == Outcome::Done && attempt.is_none_or(|a| a.0 == span.attempt) {
                span.outcome = Outcome::Lost;
            }
        }
    }

    /// The job ended: whatever still runs is cancelled.
    pub fn close(&mut self) {
        let now = now_ms();
        for (_, i) in self.open.drain() {
            let span = &mut self.spans[i];
            span.end_ms = Some(now);
            span.outcome = Outcome::Cancelled;
        }
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A task's latest attempt, if kept.
    pub fn latest(&self, stage: Stage, task: u64) -> Option<&Span> {
        self.latest.get(&(stage, task)).map(|&i| &self.spans[i])
    }

    /// A restored timeline's worker name for `id`: worker ids start again at 1 after a
    /// restart, so for a restored timeline this name wins over a worker attached now.
    pub fn stored_name(&self, id: u64) -> Option<&str> {
        self.workers.get(&id).map(String::as_str)
    }

    /// The record to store, naming workers by `name`.
    pub fn record(&self, name: impl Fn(u64) -> Option<String>) -> TimelineRecord {
        self.record_latest(usize::MAX, name)
    }

    /// The latest `n` kept attempts as a record (the others counted in `dropped`), naming
    /// their workers by `name`.
    pub fn record_latest(&self, n: usize, name: impl Fn(u64) -> Option<String>) -> TimelineRecord {
        let latest = &self.spans[self.spans.len().saturating_sub(n)..];
        let mut workers = BTreeMap::new();
        for span in latest {
            workers.entry(span.worker).or_insert_with(|| {
                self.stored_name(span.worker)
                    .map(str::to_owned)
                    .or_else(|| name(span.worker))
                    .unwrap_or_else(|| format!("worker {}", span.worker))
            });
        }
        TimelineRecord {
            spans: latest.to_vec(),
            dropped: self.dropped + (self.spans.len() - latest.len()) as u64,
            workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_end_once_and_the_latest_is_found() {
        let mut t = Timeline::default();
        t.start(Stage::Map, 0, Attempt(1), WorkerId(1), false);
        t.start(Stage::Map, 0, Attempt(2), WorkerId(2), true);
        t.end_with(Stage::Map, 0, Attempt(2), Outcome::Done, 7, None);
        t.end(Stage::Map, 0, Attempt(1), Outcome::Superseded);
        // A second end of the same attempt changes nothing.
        t.end(Stage::Map, 0, Attempt(2), Outcome::Failed);
        assert_eq!(t.spans()[0].outcome, Outcome::Superseded);
        assert_eq!(t.spans()[1].outcome, Outcome::Done);
        assert_eq!(t.spans()[1].records, 7);
        assert_eq!(t.latest(Stage::Map, 0).map(|s| s.attempt), Some(2));
        t.lost(0, None);
        assert_eq!(t.spans()[1].outcome, Outcome::Lost);
        t.start(Stage::Reduce, 0, Attempt(1), WorkerId(1), false);
        t.close();
        assert_eq!(t.spans()[2].outcome, Outcome::Cancelled);
        let record = t.record(|id| (id == 1).then(|| "w1".to_owned()));
        assert_eq!(record.workers.get(&2).map(String::as_str), Some("worker 2"));
        // After a restart worker ids start again: a restored timeline keeps its own names.
        let back = Timeline::restore(record.clone());
        assert_eq!(back.record(|_| Some("attached now".into())), record);
    }

    #[test]
    fn the_attempt_that_finished_a_task_is_its_latest_even_when_a_backup_started_after_it() {
        let mut t = Timeline::default();
        t.start(Stage::Map, 4, Attempt(1), WorkerId(1), false);
        t.start(Stage::Map, 4, Attempt(2), WorkerId(2), true);
        t.end_with(Stage::Map, 4, Attempt(1), Outcome::Done, 9, None);
        t.end(Stage::Map, 4, Attempt(2), Outcome::Superseded);
        let latest = t.latest(Stage::Map, 4).unwrap();
        assert_eq!((latest.attempt, latest.records), (1, 9));
        // The winner's output lost later is marked on the winner.
        t.lost(4, Some(Attempt(1)));
        assert_eq!(t.spans()[0].outcome, Outcome::Lost);
        assert_eq!(t.spans()[1].outcome, Outcome::Superseded);
    }

    #[test]
    fn spans_beyond_the_bound_are_counted_not_kept() {
        let mut t = Timeline::default();
        for i in 0..MAX_SPANS as u64 + 5 {
            t.start(Stage::Map, i, Attempt(1), WorkerId(1), false);
        }
        assert_eq!(t.spans().len(), MAX_SPANS);
        assert_eq!(t.dropped(), 5);
        // A task whose attempt was not kept shows no older attempt as its latest.
        t.start(Stage::Map, 0, Attempt(2), WorkerId(1), false);
        assert!(t.latest(Stage::Map, 0).is_none());
        let record = t.record_latest(10, |_| None);
        assert_eq!(record.spans.len(), 10);
        assert_eq!(record.dropped, 6 + (MAX_SPANS as u64 - 10));
    }
}

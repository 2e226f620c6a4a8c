//! The executor: a worker's slots, the queue of work waiting for one, the count in flight and
//! the drain. Each slot runs one map assignment ([`crate::task`]) or reduce task
//! ([`crate::reduce`]) at a time and sends its report to the attachment; the coordinator's
//! credits keep the queue short, and a full queue pushes back on the stream rather than
//! growing.

use std::sync::{Arc, Mutex};

use fanfold_common::fleet::{
    Assignment, AttemptKey, FromWorker, ReduceAssignment, ReduceReport, Report,
};
use fanfold_common::ids::JobId;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::jobs::Jobs;
use crate::spill::Spill;
use crate::stops::Stops;
use crate::{reduce, task};

/// What a slot runs.
pub enum Work {
    Map(Assignment),
    Reduce(ReduceAssignment),
}

/// Queued assignments beyond the running ones, at most.
const QUEUE: usize = 64;

/// What the slots share.
struct Shared {
    name: String,
    jobs: Arc<Jobs>,
    spill: Arc<Spill>,
    shuffle_address: String,
    fetcher: Arc<crate::shuffle::Fetcher>,
    reduce_memory: u64,
    queue: tokio::sync::Mutex<mpsc::Receiver<Work>>,
    reports: mpsc::Sender<FromWorker>,
    stops: Mutex<Stops>,
    /// Assignments received and not yet reported.
    in_flight: watch::Sender<usize>,
    /// Cancelled when draining: queued chunks are handed back instead of run.
    drain: CancellationToken,
    metrics: crate::metrics::Metrics,
}

pub struct Executor {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Work>,
    /// Stops the slots when the attachment ends.
    session: CancellationToken,
    tasks: TaskTracker,
}

impl Executor {
    /// Starts `slots` slots that report to `reports`.
    pub fn start(
        name: &str,
        slots: u32,
        jobs: Arc<Jobs>,
        shuffle: &crate::Shuffle,
        metrics: crate::metrics::Metrics,
        reports: mpsc::Sender<FromWorker>,
    ) -> Self {
        let (queue, assignments) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            jobs,
            spill: Arc::clone(&shuffle.spill),
            shuffle_address: shuffle.address.clone(),
            fetcher: Arc::clone(&shuffle.fetcher),
            reduce_memory: shuffle.reduce_memory,
            queue: tokio::sync::Mutex::new(assignments),
            reports,
            stops: Mutex::default(),
            in_flight: watch::Sender::new(0),
            drain: CancellationToken::new(),
            metrics,
        });
        let session = CancellationToken::new();
        let tasks = TaskTracker::new();
        for _ in 0..slots {
            tasks.spawn(slot(Arc::clone(&shared), session.clone()));
        }
        Executor {
            shared,
            queue,
            session,
            tasks,
        }
    }

    /// Queues work; waits while the queue is full. `false` if the slots are gone.
    pub async fn submit(&self, work: Work) -> bool {
        self.shared.in_flight.send_modify(|n| *n += 1);
        self.queue.send(work).await.is_ok()
    }

    /// Stops the job's work here and drops what it kept: its context and its map outputs.
    pub fn cancel_job(&self, job: JobId) {
        self.shared.stops.lock().expect("stops").cancel_job(job);
        self.shared.jobs.forget(job);
        let spill = Arc::clone(&self.shared.spill);
        tokio::task::spawn_blocking(move || spill.remove_job(job));
    }

    pub fn cancel_attempt(&self, key: AttemptKey) {
        self.shared.stops.lock().expect("stops").cancel_attempt(key);
    }

    /// Takes no more work: queued assignments are handed back unstarted, running ones finish.
    pub fn drain(&self) {
        self.shared.drain.cancel();
    }

    /// Assignments received and not yet reported.
    pub fn in_flight(&self) -> watch::Receiver<usize> {
        self.shared.in_flight.subscribe()
    }

    /// Stops every slot (running maps are told to stop) and waits for them.
    pub async fn stop(self) {
        self.session.cancel();
        self.shared.stops.lock().expect("stops").stop_all();
        drop(self.queue);
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// One slot: runs one assignment at a time and reports it.
async fn slot(shared: Arc<Shared>, session: CancellationToken) {
    loop {
        let next = tokio::select! {
            _ = session.cancelled() => return,
            next = async { shared.queue.lock().await.recv().await } => next,
        };
        let message = match next {
            None => return,
            Some(Work::Map(assignment)) => map(&shared, assignment).await,
            Some(Work::Reduce(task)) => match reduce(&shared, task).await {
                Some(message) => message,
                None => {
                    shared.in_flight.send_modify(|n| *n -= 1);
                    return;
                }
            },
        };
        let sent = shared.reports.send(message).await;
        shared.in_flight.send_modify(|n| *n -= 1);
        if sent.is_err() {
            return;
        }
    }
}

async fn map(shared: &Shared, assignment: Assignment) -> FromWorker {
    let key = assignment.key();
    let report = if shared.drain.is_cancelled() {
        Report::Released { unreadable: None }
    } else if shared.stops.lock().expect("stops").covers(&key) {
        task::failed("cancelled".into(), false)
    } else {
        let stop = shared.stops.lock().expect("stops").start(key);
        let bytes = assignment.range.len();
        let metrics = &shared.metrics;
        metrics.busy.inc();
        let started = std::time::Instant::now();
        let report = task::run(
            &shared.jobs,
            &shared.spill,
            &shared.name,
            assignment,
            Arc::clone(&stop),
        )
        .await;
        metrics.busy.dec();
        if matches!(report, Report::Done(_)) {
            metrics.chunks_mapped.inc();
            metrics.bytes_read.inc_by(bytes);
            metrics.map_seconds.observe(started.elapsed().as_secs_f64());
        }
        shared.stops.lock().expect("stops").finish(&stop);
        report
    };
    FromWorker::Report { key, report }
}

/// Runs a reduce task; `None` if the attachment went away while it sent its rows. A draining
/// worker fails a queued one as retryable (there is no hand-back for reduce tasks).
async fn reduce(shared: &Shared, task: ReduceAssignment) -> Option<FromWorker> {
    let key = task.key;
    let stop = shared.stops.lock().expect("stops").start_reduce(key.job);
    let report = if shared.drain.is_cancelled() || stop.load(std::sync::atomic::Ordering::Relaxed) {
        Some(ReduceReport::Failed {
            error: format!("worker {}: stopping or job cancelled", shared.name),
            retryable: true,
            lost: None,
        })
    } else {
        let context = reduce::Context {
            jobs: &shared.jobs,
            spill: &shared.spill,
            shuffle_address: &shared.shuffle_address,
            fetcher: &shared.fetcher,
            worker: &shared.name,
            reports: &shared.reports,
            memory: shared.reduce_memory,
            spilled: &shared.metrics.reduce_spilled_bytes,
        };
        shared.metrics.busy.inc();
        let report = reduce::run(context, task, Arc::clone(&stop)).await;
        shared.metrics.busy.dec();
        if matches!(report, Some(ReduceReport::Done { .. })) {
            shared.metrics.reduce_tasks.inc();
        }
        report
    };
    shared.stops.lock().expect("stops").finish(&stop);
    report.map(|report| FromWorker::Reduced { key, report })
}

//! The executor: a worker's slots, the queue of assignments waiting for one, the count in
//! flight and the drain. Each slot runs one assignment at a time ([`crate::task`]) and sends
//! its report to the attachment; the coordinator's credits keep the queue short, and a full
//! queue pushes back on the stream rather than growing.

use std::sync::{Arc, Mutex};

use fanfold_common::fleet::{Assignment, AttemptKey, FromWorker, Report};
use fanfold_common::ids::JobId;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::jobs::Jobs;
use crate::stops::Stops;
use crate::task;

/// Queued assignments beyond the running ones, at most.
const QUEUE: usize = 64;

/// What the slots share.
struct Shared {
    name: String,
    jobs: Arc<Jobs>,
    queue: tokio::sync::Mutex<mpsc::Receiver<Assignment>>,
    reports: mpsc::Sender<FromWorker>,
    stops: Mutex<Stops>,
    /// Assignments received and not yet reported.
    in_flight: watch::Sender<usize>,
    /// Cancelled when draining: queued chunks are handed back instead of run.
    drain: CancellationToken,
}

pub struct Executor {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Assignment>,
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
        reports: mpsc::Sender<FromWorker>,
    ) -> Self {
        let (queue, assignments) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            jobs,
            queue: tokio::sync::Mutex::new(assignments),
            reports,
            stops: Mutex::default(),
            in_flight: watch::Sender::new(0),
            drain: CancellationToken::new(),
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

    /// Queues an assignment; waits while the queue is full. `false` if the slots are gone.
    pub async fn submit(&self, assignment: Assignment) -> bool {
        self.shared.in_flight.send_modify(|n| *n += 1);
        self.queue.send(assignment).await.is_ok()
    }

    pub fn cancel_job(&self, job: JobId) {
        self.shared.stops.lock().expect("stops").cancel_job(job);
        self.shared.jobs.forget(job);
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
        let Some(assignment) = next else { return };
        let key = assignment.key();
        let report = if shared.drain.is_cancelled() {
            Report::Released { unreadable: None }
        } else if shared.stops.lock().expect("stops").covers(&key) {
            task::failed("cancelled".into(), false)
        } else {
            let stop = shared.stops.lock().expect("stops").start(key);
            let report = task::run(&shared.jobs, &shared.name, assignment, Arc::clone(&stop)).await;
            shared.stops.lock().expect("stops").finish(&stop);
            report
        };
        let sent = shared
            .reports
            .send(FromWorker::Report { key, report })
            .await;
        shared.in_flight.send_modify(|n| *n -= 1);
        if sent.is_err() {
            return;
        }
    }
}

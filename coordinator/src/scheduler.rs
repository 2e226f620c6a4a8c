//! The scheduler: the one task that owns every job's and worker's state.
//!
//! gRPC handlers talk to it through a [`Handle`] (commands over a bounded channel, answers over
//! oneshots); it never awaits the network itself. Workers are reached through their outbox, a
//! bounded channel of [`ToWorker`] messages that the fleet adapter turns into gRPC messages (tests
//! read it directly: that channel is the seam between scheduling and transport).
//!
//! Credits: a worker never holds more than `slots + prefetch` unreported assignments, which
//! bounds the chunk bytes in flight and so the memory of coordinator and worker alike.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use fanfold_common::chunker::{self, ChunkRange};
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::operation::{ChunkStats, Finalized, Options};
use fanfold_common::partial::{Partial, Row};
use fanfold_common::spec::{JobSpec, JobStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::job::{FailOutcome, Job, Plan};

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Assignments a worker may hold beyond its slots, so it never idles between chunks.
    pub prefetch: u32,
    /// Attempts per chunk before its failure fails the job.
    pub max_attempts: u32,
}

/// One unit of work for a worker.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub job: JobId,
    pub chunk: ChunkId,
    pub attempt: Attempt,
    pub operation: String,
    pub options: Options,
    pub path: PathBuf,
    pub range: ChunkRange,
    pub data: Bytes,
}

/// What the scheduler sends a worker.
#[derive(Clone, Debug)]
pub enum ToWorker {
    Assign(Assignment),
    /// Drop queued chunks of this job and report running ones as they end.
    Cancel(JobId),
}

/// A worker's introduction.
#[derive(Clone, Debug)]
pub struct WorkerHello {
    pub name: String,
    pub slots: u32,
}

/// What a worker reported about one assignment.
#[derive(Debug)]
pub enum Report {
    Done { partial: Partial, stats: ChunkStats },
    Failed { error: String, retryable: bool },
}

/// Why a request about a job cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error("job {id} has no result: it is {state}")]
    NoResult { id: JobId, state: &'static str },
    #[error("the coordinator is shutting down")]
    ShuttingDown,
}

enum Command {
    Submit {
        spec: JobSpec,
        plan: Plan,
        reply: oneshot::Sender<JobStatus>,
    },
    Get {
        id: JobId,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    List {
        reply: oneshot::Sender<Vec<JobStatus>>,
    },
    Watch {
        id: JobId,
        reply: oneshot::Sender<Result<watch::Receiver<JobStatus>, JobError>>,
    },
    Result {
        id: JobId,
        reply: oneshot::Sender<Result<Arc<Vec<Row>>, JobError>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    WorkerJoined {
        hello: WorkerHello,
        outbox: mpsc::Sender<ToWorker>,
        reply: oneshot::Sender<WorkerId>,
    },
    WorkerLeft {
        worker: WorkerId,
    },
    Report {
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        report: Report,
    },
    /// The chunk's bytes could not be read for an assignment.
    LoadFailed {
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        error: String,
    },
    /// The job's result, or why it could not be made (finalize panicked, the output directory
    /// could not be written).
    Finalized {
        job: JobId,
        result: Result<(u64, Vec<Row>), String>,
    },
}

/// A cheap, cloneable way to talk to the scheduler task.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, JobError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| JobError::ShuttingDown)?;
        answer.await.map_err(|_| JobError::ShuttingDown)
    }

    /// Queues a planned job; its spec carries the effective chunk size.
    pub async fn submit(&self, spec: JobSpec, plan: Plan) -> Result<JobStatus, JobError> {
        self.ask(|reply| Command::Submit { spec, plan, reply })
            .await
    }

    pub async fn get(&self, id: JobId) -> Result<JobStatus, JobError> {
        self.ask(|reply| Command::Get { id, reply }).await?
    }

    pub async fn list(&self) -> Result<Vec<JobStatus>, JobError> {
        self.ask(|reply| Command::List { reply }).await
    }

    pub async fn watch(&self, id: JobId) -> Result<watch::Receiver<JobStatus>, JobError> {
        self.ask(|reply| Command::Watch { id, reply }).await?
    }

    pub async fn result(&self, id: JobId) -> Result<Arc<Vec<Row>>, JobError> {
        self.ask(|reply| Command::Result { id, reply }).await?
    }

    pub async fn cancel(&self, id: JobId) -> Result<JobStatus, JobError> {
        self.ask(|reply| Command::Cancel { id, reply }).await?
    }

    /// Registers a worker whose assignments go to `outbox`; its capacity must cover the
    /// worker's credits plus a few cancel messages.
    pub async fn worker_joined(
        &self,
        hello: WorkerHello,
        outbox: mpsc::Sender<ToWorker>,
    ) -> Result<WorkerId, JobError> {
        self.ask(|reply| Command::WorkerJoined {
            hello,
            outbox,
            reply,
        })
        .await
    }

    pub async fn worker_left(&self, worker: WorkerId) {
        let _ = self.commands.send(Command::WorkerLeft { worker }).await;
    }

    pub async fn report(
        &self,
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        report: Report,
    ) -> Result<(), JobError> {
        self.commands
            .send(Command::Report {
                worker,
                job,
                chunk,
                attempt,
                report,
            })
            .await
            .map_err(|_| JobError::ShuttingDown)
    }
}

/// Outbox capacity for a worker with `credits`: assignments plus room for cancel messages.
pub fn outbox_capacity(credits: u32) -> usize {
    credits as usize + 16
}

struct Worker {
    name: String,
    credits: u32,
    /// Assignments sent and not yet reported.
    holding: HashSet<(JobId, ChunkId, Attempt)>,
    outbox: mpsc::Sender<ToWorker>,
}

impl Worker {
    fn free(&self) -> u32 {
        self.credits.saturating_sub(self.holding.len() as u32)
    }
}

struct Scheduler {
    config: SchedulerConfig,
    jobs: HashMap<JobId, Job>,
    /// Job ids in submission order: older jobs are served first.
    order: Vec<JobId>,
    workers: HashMap<WorkerId, Worker>,
    next_worker: u64,
    /// Round-robin cursor over workers, so chunks spread evenly.
    turn: u64,
    commands: mpsc::Sender<Command>,
    tasks: TaskTracker,
}

/// Starts the scheduler task on `tasks`; it stops when `shutdown` is cancelled.
pub fn spawn(config: SchedulerConfig, tasks: &TaskTracker, shutdown: CancellationToken) -> Handle {
    let (commands, mut inbox) = mpsc::channel(1024);
    let mut scheduler = Scheduler {
        config,
        jobs: HashMap::new(),
        order: Vec::new(),
        workers: HashMap::new(),
        next_worker: 1,
        turn: 0,
        commands: commands.clone(),
        tasks: tasks.clone(),
    };
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = inbox.recv() => match command {
                    Some(command) => scheduler.handle(command),
                    None => break,
                },
            }
        }
        debug!("scheduler stopped");
    });
    Handle { commands }
}

impl Scheduler {
    fn handle(&mut self, command: Command) {
        match command {
            Command::Submit { spec, plan, reply } => {
                let id = JobId::new();
                let job = Job::new(id, spec, plan, self.worker_count());
                let status = job.snapshot(self.worker_count());
                info!(job_id = %id, chunks = status.chunks_total, bytes = status.bytes_total,
                    operation = %status.spec.operation, "job submitted");
                self.jobs.insert(id, job);
                self.order.push(id);
                let _ = reply.send(status);
                self.finalize_if_ready(id);
            }
            Command::Get { id, reply } => {
                let _ = reply.send(self.job(id).map(|j| j.snapshot(self.worker_count())));
            }
            Command::List { reply } => {
                let workers = self.worker_count();
                let list = self
                    .order
                    .iter()
                    .map(|id| self.jobs[id].snapshot(workers))
                    .collect();
                let _ = reply.send(list);
            }
            Command::Watch { id, reply } => {
                let _ = reply.send(self.job(id).map(Job::subscribe));
            }
            Command::Result { id, reply } => {
                let answer = self.job(id).and_then(|job| {
                    job.rows().ok_or(JobError::NoResult {
                        id,
                        state: job.state().as_str(),
                    })
                });
                let _ = reply.send(answer);
            }
            Command::Cancel { id, reply } => {
                let answer = match self.jobs.get_mut(&id) {
                    None => Err(JobError::NotFound(id)),
                    Some(job) => {
                        if job.is_running() {
                            job.cancel();
                            info!(job_id = %id, "job cancelled");
                            self.tell_workers_to_drop(id);
                        }
                        Ok(self.jobs[&id].snapshot(self.worker_count()))
                    }
                };
                self.publish(id);
                let _ = reply.send(answer);
            }
            Command::WorkerJoined {
                hello,
                outbox,
                reply,
            } => {
                let id = WorkerId(self.next_worker);
                self.next_worker += 1;
                let credits = hello.slots + self.config.prefetch;
                info!(worker_id = %id, name = %hello.name, slots = hello.slots, "worker attached");
                self.workers.insert(
                    id,
                    Worker {
                        name: hello.name,
                        credits,
                        holding: HashSet::new(),
                        outbox,
                    },
                );
                let _ = reply.send(id);
                self.publish_all();
            }
            Command::WorkerLeft { worker } => self.worker_left(worker),
            Command::Report {
                worker,
                job,
                chunk,
                attempt,
                report,
            } => self.report(worker, job, chunk, attempt, report),
            Command::LoadFailed {
                worker,
                job,
                chunk,
                attempt,
                error,
            } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.holding.remove(&(job, chunk, attempt));
                }
                if let Some(j) = self.jobs.get_mut(&job) {
                    let message = format!("cannot read {}: {error}", j.describe(chunk));
                    warn!(job_id = %job, %message, "job failed");
                    j.abort(message);
                    self.tell_workers_to_drop(job);
                }
                self.publish(job);
            }
            Command::Finalized { job, result } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    match result {
                        Ok((keys, rows)) => {
                            j.succeed(keys, rows);
                            info!(job_id = %job, keys, "job succeeded");
                        }
                        Err(error) => {
                            warn!(job_id = %job, %error, "job failed at the end");
                            j.abort(error);
                        }
                    }
                }
                self.publish(job);
            }
        }
        self.dispatch();
    }

    fn job(&self, id: JobId) -> Result<&Job, JobError> {
        self.jobs.get(&id).ok_or(JobError::NotFound(id))
    }

    fn worker_count(&self) -> u32 {
        self.workers.len() as u32
    }

    fn worker_left(&mut self, worker: WorkerId) {
        let Some(gone) = self.workers.remove(&worker) else {
            return;
        };
        info!(worker_id = %worker, name = %gone.name, requeued = gone.holding.len(), "worker detached");
        for (job, chunk, attempt) in gone.holding {
            if let Some(j) = self.jobs.get_mut(&job) {
                j.release(chunk, attempt);
            }
        }
        self.publish_all();
    }

    fn report(
        &mut self,
        worker: WorkerId,
        job_id: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        report: Report,
    ) {
        let held = self
            .workers
            .get_mut(&worker)
            .is_some_and(|w| w.holding.remove(&(job_id, chunk, attempt)));
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if !held {
            // A result from an attachment that was already given up on: its chunk went back to
            // the queue, so this attempt is stale whatever it says.
            debug!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker,
                "dropped report of an assignment no longer held");
            return;
        }
        match report {
            Report::Done { partial, stats } => match job.complete(chunk, attempt, partial, stats) {
                Ok(true) => {}
                Ok(false) => {
                    debug!(job_id = %job_id, chunk_id = %chunk, %attempt, "dropped stale result")
                }
                Err(e) => {
                    let message = format!("cannot fold {}: {e}", job.describe(chunk));
                    job.abort(message);
                    self.tell_workers_to_drop(job_id);
                }
            },
            Report::Failed { error, retryable } => {
                let max = self.config.max_attempts;
                match job.fail(chunk, attempt, &error, retryable, max) {
                    FailOutcome::Stale => {}
                    FailOutcome::Retry => {
                        warn!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker,
                            %error, "chunk attempt failed; retrying")
                    }
                    FailOutcome::JobFailed => {
                        warn!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker,
                            %error, "job failed");
                        self.tell_workers_to_drop(job_id);
                    }
                }
            }
        }
        self.finalize_if_ready(job_id);
        self.publish(job_id);
    }

    /// Finalizes (sorts, limits) a job whose chunks are all folded, off the scheduler task.
    fn finalize_if_ready(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.ready_to_finalize() {
            return;
        }
        let (folded, operation) = job.take_for_finalize();
        let (sort, limit) = (job.spec.sort, job.spec.limit);
        let output = job.spec.output.clone();
        let commands = self.commands.clone();
        self.tasks.spawn(async move {
            let finalized = tokio::task::spawn_blocking(move || {
                let Finalized { keys, rows } = operation
                    .finalize(folded, sort, limit)
                    .map_err(|e| format!("finalize failed: {e}"))?;
                if let Some(output) = &output {
                    crate::output::commit(output, id, &rows)?;
                }
                Ok((keys, rows))
            })
            .await;
            let result = finalized.unwrap_or_else(|e| Err(format!("finalize failed: {e}")));
            let _ = commands.send(Command::Finalized { job: id, result }).await;
        });
    }

    fn tell_workers_to_drop(&mut self, job: JobId) {
        for worker in self.workers.values() {
            if worker.holding.iter().any(|(j, _, _)| *j == job) {
                // The outbox has room reserved beyond credits; a full or closed one means the
                // worker is going away, and its chunks are released when it does.
                let _ = worker.outbox.try_send(ToWorker::Cancel(job));
            }
        }
    }

    fn publish(&self, id: JobId) {
        if let Some(job) = self.jobs.get(&id) {
            job.publish(self.worker_count());
        }
    }

    fn publish_all(&self) {
        for job in self.jobs.values().filter(|j| j.is_running()) {
            job.publish(self.worker_count());
        }
    }

    /// Hands pending chunks to workers with free credits, oldest job first, one chunk per
    /// worker per round so work spreads across the fleet.
    fn dispatch(&mut self) {
        let mut ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        let start = (self.turn as usize) % ids.len();
        ids.rotate_left(start);
        self.turn = self.turn.wrapping_add(1);
        let mut touched = Vec::new();
        loop {
            let mut assigned_any = false;
            for &worker_id in &ids {
                if self.workers[&worker_id].free() == 0 {
                    continue;
                }
                let Some(job_id) = self
                    .order
                    .iter()
                    .copied()
                    .find(|id| self.jobs[id].has_pending())
                else {
                    self.publish_touched(&touched);
                    return;
                };
                let job = self.jobs.get_mut(&job_id).expect("ordered job exists");
                let (chunk, attempt) = job.assign_next(worker_id).expect("job has pending");
                let (path, range) = job.range(chunk);
                let assignment = Assignment {
                    job: job_id,
                    chunk,
                    attempt,
                    operation: job.spec.operation.clone(),
                    options: job.spec.options.clone(),
                    path,
                    range,
                    data: Bytes::new(),
                };
                let worker = self
                    .workers
                    .get_mut(&worker_id)
                    .expect("listed worker exists");
                worker.holding.insert((job_id, chunk, attempt));
                debug!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker_id, "assign");
                self.load_and_send(worker_id, assignment);
                if !touched.contains(&job_id) {
                    touched.push(job_id);
                }
                assigned_any = true;
            }
            if !assigned_any {
                break;
            }
        }
        self.publish_touched(&touched);
    }

    fn publish_touched(&self, touched: &[JobId]) {
        for id in touched {
            self.publish(*id);
        }
    }

    /// Reads the chunk's bytes off the scheduler task and sends the assignment. Credits bound
    /// how many of these run at once.
    fn load_and_send(&self, worker: WorkerId, mut assignment: Assignment) {
        let outbox = self.workers[&worker].outbox.clone();
        let commands = self.commands.clone();
        self.tasks.spawn(async move {
            let (path, range) = (assignment.path.clone(), assignment.range);
            let read = match tokio::task::spawn_blocking(move || chunker::read(&path, range)).await
            {
                Ok(read) => read.map_err(|e| e.to_string()),
                Err(join) => Err(join.to_string()),
            };
            match read {
                Ok(data) => {
                    assignment.data = Bytes::from(data);
                    // A closed outbox means the worker left; its chunks were released then.
                    let _ = outbox.send(ToWorker::Assign(assignment)).await;
                }
                Err(error) => {
                    let _ = commands
                        .send(Command::LoadFailed {
                            worker,
                            job: assignment.job,
                            chunk: assignment.chunk,
                            attempt: assignment.attempt,
                            error,
                        })
                        .await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! Whole jobs through the scheduler with in-memory fake workers: no sockets.

    use std::collections::HashMap;

    use fanfold_common::input;
    use fanfold_common::operation::Registry;
    use fanfold_common::partial::Value;
    use fanfold_common::spec::JobState;

    use super::*;

    struct Fake {
        id: WorkerId,
        inbox: mpsc::Receiver<ToWorker>,
    }

    async fn attach(handle: &Handle, slots: u32) -> Fake {
        let (outbox, inbox) = mpsc::channel(outbox_capacity(slots + 1));
        let hello = WorkerHello {
            name: format!("fake-{slots}"),
            slots,
        };
        let id = handle.worker_joined(hello, outbox).await.unwrap();
        Fake { id, inbox }
    }

    async fn next_assignment(fake: &mut Fake) -> Assignment {
        loop {
            match fake.inbox.recv().await.expect("worker outbox open") {
                ToWorker::Assign(a) => return a,
                ToWorker::Cancel(_) => continue,
            }
        }
    }

    fn mapped(a: &Assignment) -> Report {
        let op = Registry::builtin().build("wordcount", &a.options).unwrap();
        let mut stats = ChunkStats::default();
        let path = a.path.display().to_string();
        let chunk = fanfold_common::operation::Chunk::new(&a.data, &path, a.range.start);
        let partial = op.map(&chunk, &mut stats).unwrap();
        Report::Done { partial, stats }
    }

    /// Starts a scheduler and submits word count over generated files; returns the expected
    /// counts (split independently) and the job id.
    async fn start(
        dir: &std::path::Path,
        chunk_size: u64,
    ) -> (Handle, JobId, HashMap<Vec<u8>, u64>, CancellationToken) {
        let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
        for f in 0..3 {
            let text: String = (0..400)
                .map(|i| format!("w{} x{}\n", i % 37, (i * f) % 11))
                .collect();
            for word in text.split_whitespace() {
                *expected.entry(word.as_bytes().to_vec()).or_default() += 1;
            }
            std::fs::write(dir.join(format!("{f}.txt")), text).unwrap();
        }
        let files = input::resolve(&[dir.display().to_string()]).unwrap();
        let plan = Plan {
            chunks: chunker::plan(&files, chunk_size, |_| false).unwrap(),
            files: files.into_iter().map(|f| f.path).collect(),
            operation: Registry::builtin()
                .build("wordcount", &Default::default())
                .unwrap(),
        };
        let shutdown = CancellationToken::new();
        let config = SchedulerConfig {
            prefetch: 1,
            max_attempts: 3,
        };
        let handle = spawn(config, &TaskTracker::new(), shutdown.clone());
        let spec = JobSpec {
            inputs: vec![dir.display().to_string()],
            operation: "wordcount".into(),
            chunk_size: Some(chunk_size),
            ..Default::default()
        };
        let status = handle.submit(spec, plan).await.unwrap();
        (handle, status.id, expected, shutdown)
    }

    async fn result(handle: &Handle, id: JobId) -> HashMap<Vec<u8>, u64> {
        let mut updates = handle.watch(id).await.unwrap();
        let status = updates
            .wait_for(|s| s.state.is_final())
            .await
            .unwrap()
            .clone();
        assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
        let rows = handle.result(id).await.unwrap();
        rows.iter()
            .map(|r| match r.value {
                Value::Count(n) => (r.key.clone(), n),
                ref other => panic!("word count gave {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn credits_bound_what_a_worker_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, id, _, _stop) = start(dir.path(), 1024).await;
        let mut fake = attach(&handle, 2).await;
        let status = handle.get(id).await.unwrap();
        assert!(status.chunks_total > 3);
        assert_eq!(status.chunks_running, 3, "slots 2 + prefetch 1");
        // Answering one frees exactly one credit.
        let a = next_assignment(&mut fake).await;
        handle
            .report(fake.id, a.job, a.chunk, a.attempt, mapped(&a))
            .await
            .unwrap();
        let status = handle.get(id).await.unwrap();
        assert_eq!((status.chunks_done, status.chunks_running), (1, 3));
    }

    #[tokio::test]
    async fn a_vanished_workers_chunks_are_redone_and_its_late_results_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, id, expected, _stop) = start(dir.path(), 1024).await;
        let mut doomed = attach(&handle, 1).await;
        let held = [
            next_assignment(&mut doomed).await,
            next_assignment(&mut doomed).await,
        ];
        handle.worker_left(doomed.id).await;

        let mut good = attach(&handle, 2).await;
        let finisher = tokio::spawn({
            let handle = handle.clone();
            async move {
                while let Some(ToWorker::Assign(a)) = good.inbox.recv().await {
                    handle
                        .report(good.id, a.job, a.chunk, a.attempt, mapped(&a))
                        .await
                        .unwrap();
                }
            }
        });
        let got = result(&handle, id).await;
        // The departed worker's results arrive late: they must not count twice.
        for a in &held {
            handle
                .report(doomed.id, a.job, a.chunk, a.attempt, mapped(a))
                .await
                .unwrap();
        }
        assert_eq!(got, expected);
        assert_eq!(result(&handle, id).await, expected);
        let status = handle.get(id).await.unwrap();
        assert_eq!(status.counters.attempts, status.chunks_total + 2);
        finisher.abort();
    }

    #[tokio::test]
    async fn a_failing_chunk_is_retried_then_fails_the_job_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, id, _, _stop) = start(dir.path(), 1 << 20).await;
        let mut fake = attach(&handle, 1).await;
        let mut failures = 0;
        loop {
            let a = next_assignment(&mut fake).await;
            let report = if a.path.ends_with("1.txt") {
                failures += 1;
                Report::Failed {
                    error: "disk on fire".into(),
                    retryable: true,
                }
            } else {
                mapped(&a)
            };
            handle
                .report(fake.id, a.job, a.chunk, a.attempt, report)
                .await
                .unwrap();
            if handle.get(id).await.unwrap().state.is_final() {
                break;
            }
        }
        let status = handle.get(id).await.unwrap();
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(failures, 3, "max_attempts");
        let error = status.error.unwrap();
        assert!(
            error.contains("1.txt bytes 0..") && error.contains("after 3 attempts: disk on fire"),
            "{error}"
        );
    }
}

//! The scheduler: the one task that owns every job's and worker's state.
//!
//! gRPC handlers talk to it through a [`Handle`] (commands over a bounded channel, answers over
//! oneshots); it never awaits the network itself. Workers are reached through their outbox, a
//! bounded channel of [`ToWorker`] messages that the fleet adapter turns into gRPC messages (tests
//! read it directly: that channel is the seam between scheduling and transport). Every decision
//! that must survive a restart goes to the journal ([`crate::store`]) in decision order.
//!
//! Credits: a worker never holds more than `slots + prefetch` unreported assignments, which
//! bounds the chunk bytes in flight and so the memory of coordinator and worker alike.
//!
//! Leases: a worker that sends nothing (heartbeats included) for `worker_timeout` is detached
//! and its chunks go back to the queue; whatever it reports later is dropped.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fanfold_common::chunker::{self, ChunkRange};
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::operation::{BadRecord, ChunkStats, Options};
use fanfold_common::partial::{self, Partial, Row};
use fanfold_common::spec::{JobSpec, JobStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::job::{BackupPolicy, Completion, FailOutcome, Job, Plan};
use crate::store::{self, Checkpoints, Op, Restored, Store};

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Assignments a worker may hold beyond its slots, so it never idles between chunks.
    pub prefetch: u32,
    /// Failed attempts per chunk before its failure fails the job.
    pub max_attempts: u32,
    /// Silence after which a worker counts as gone.
    pub worker_timeout: Duration,
    /// When to start backup attempts of straggling chunks; `None` turns backups off.
    pub backups: Option<BackupPolicy>,
    /// How often leases, timeouts and stragglers are checked.
    pub tick: Duration,
    /// Where the records a job skipped as bad are written, one file per job.
    pub quarantine_dir: PathBuf,
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
    pub skip_bad_records: bool,
}

/// What the scheduler sends a worker.
#[derive(Clone, Debug)]
pub enum ToWorker {
    Assign(Assignment),
    /// Drop queued chunks of this job and report running ones as they end.
    Cancel(JobId),
    /// Another attempt of this chunk won; drop this one.
    CancelAttempt {
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
    },
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
    Done {
        partial: Partial,
        stats: ChunkStats,
        /// The result encoded for the journal ([`store::chunk_record`]).
        record: Vec<u8>,
        /// Records skipped as bad (skip mode).
        bad: Vec<BadRecord>,
    },
    Failed {
        error: String,
        retryable: bool,
    },
    /// Handed back unstarted by a draining worker.
    Released,
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
    Heartbeat {
        worker: WorkerId,
    },
    Draining {
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
    Finalized {
        job: JobId,
        keys: u64,
        rows: Vec<Row>,
        quarantine: Result<Option<PathBuf>, String>,
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

    async fn tell(&self, command: Command) -> Result<(), JobError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| JobError::ShuttingDown)
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

    /// Registers a worker whose assignments go to `outbox`; its capacity must be at least
    /// [`outbox_capacity`] of the worker's credits.
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
        let _ = self.tell(Command::WorkerLeft { worker }).await;
    }

    pub async fn heartbeat(&self, worker: WorkerId) -> Result<(), JobError> {
        self.tell(Command::Heartbeat { worker }).await
    }

    pub async fn draining(&self, worker: WorkerId) -> Result<(), JobError> {
        self.tell(Command::Draining { worker }).await
    }

    pub async fn report(
        &self,
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        report: Report,
    ) -> Result<(), JobError> {
        self.tell(Command::Report {
            worker,
            job,
            chunk,
            attempt,
            report,
        })
        .await
    }
}

/// Outbox capacity for a worker with `credits`: assignments plus room for cancel messages.
pub fn outbox_capacity(credits: u32) -> usize {
    credits as usize + 64
}

struct Worker {
    name: String,
    credits: u32,
    /// Assignments sent and not yet reported.
    holding: HashSet<(JobId, ChunkId, Attempt)>,
    outbox: mpsc::Sender<ToWorker>,
    last_seen: Instant,
    draining: bool,
}

impl Worker {
    fn free(&self) -> u32 {
        if self.draining {
            return 0;
        }
        self.credits.saturating_sub(self.holding.len() as u32)
    }

    /// Sends a control message; the outbox keeps room beyond credits for these, and a full or
    /// closed one means the worker is going away, its chunks released when it does.
    fn tell(&self, message: ToWorker) {
        let _ = self.outbox.try_send(message);
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
    /// Decisions to make durable, sent to the journal after each command.
    journal: Vec<Op>,
    /// Whether there is a journal; without one, no ops are made.
    durable: bool,
    /// Assignments made and not yet handed to [`Scheduler::load`].
    loads: Vec<(WorkerId, mpsc::Sender<ToWorker>, Assignment)>,
    commands: mpsc::Sender<Command>,
    tasks: TaskTracker,
}

/// Starts the scheduler task on `tasks`, resuming the jobs `store` kept; it stops when
/// `shutdown` is cancelled, after the journal has written everything decided.
///
/// Without a store nothing is journaled: state that cannot outlive the process needs no
/// checkpoints, and keeping every folded chunk's partial until its job ends would make memory
/// grow with the input.
pub fn spawn(
    config: SchedulerConfig,
    store: Option<Store>,
    restored: Vec<Restored>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Handle {
    let (commands, mut inbox) = mpsc::channel(1024);
    let checkpoints = Checkpoints::default();
    let journal = store.map(|store| store::spawn_journal(store, tasks, checkpoints.clone()));
    let mut scheduler = Scheduler {
        durable: journal.is_some(),
        loads: Vec::new(),
        config,
        jobs: HashMap::new(),
        order: Vec::new(),
        workers: HashMap::new(),
        next_worker: 1,
        turn: 0,
        journal: Vec::new(),
        commands: commands.clone(),
        tasks: tasks.clone(),
    };
    for job in restored {
        scheduler.restore(job);
    }
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(scheduler.config.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = inbox.recv() => match command {
                    Some(command) => scheduler.handle_queued(command, &mut inbox),
                    None => break,
                },
                _ = ticks.tick() => scheduler.tick(),
                _ = checkpoints.notify.notified() => {
                    for (id, chunks) in checkpoints.take() {
                        if let Some(job) = scheduler.jobs.get_mut(&id) {
                            job.checkpointed(chunks);
                        }
                        scheduler.publish(id);
                    }
                }
            }
            if let Some(journal) = &journal
                && !scheduler.journal.is_empty()
            {
                let ops = std::mem::take(&mut scheduler.journal);
                // Waiting here is the backpressure of a slow disk on the whole scheduler.
                if journal.send(ops).await.is_err() {
                    warn!("journal stopped; state is no longer durable");
                }
            }
        }
        debug!("scheduler stopped");
    });
    Handle { commands }
}

impl Scheduler {
    fn restore(&mut self, r: Restored) {
        let id = r.job;
        let mut job = Job::new(id, r.spec, r.plan, r.submitted_at);
        let restored = r.chunks.len();
        for (chunk, partial, stats, bad) in r.chunks {
            if let Err(e) = job.restore_chunk(chunk, partial, stats, bad) {
                job.abort(format!("cannot fold restored {}: {e}", job.describe(chunk)));
            }
        }
        job.restore_progress(
            r.state,
            r.error,
            r.counters,
            r.finished_at,
            r.rows,
            r.quarantine,
        );
        if job.is_running() {
            info!(job_id = %id, chunks_restored = restored, "job resumed");
        }
        self.jobs.insert(id, job);
        self.order.push(id);
        self.finalize_if_ready(id);
        self.publish(id);
    }

    /// Handles `first` and whatever else is queued (up to a bound), dispatching once after a
    /// run of reports and heartbeats rather than after each: a busy fleet's reports then cost
    /// one dispatch round and one chunk-loading batch between them. Any other command is
    /// handled only after a dispatch, so answers always reflect every earlier command.
    fn handle_queued(&mut self, first: Command, inbox: &mut mpsc::Receiver<Command>) {
        const MAX_RUN: usize = 256;
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(command) = next.take() {
            if !matches!(command, Command::Report { .. } | Command::Heartbeat { .. }) {
                self.dispatch();
            }
            self.handle(command);
            handled += 1;
            if handled < MAX_RUN {
                next = inbox.try_recv().ok();
            }
        }
        self.dispatch();
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Submit { spec, plan, reply } => {
                let id = JobId::new();
                let submitted_at = SystemTime::now();
                if self.durable {
                    self.journal.push(Op::Submitted {
                        job: id,
                        spec: spec.clone(),
                        files: plan.files.clone(),
                        chunks: plan.chunks.clone(),
                        submitted_at,
                    });
                }
                let job = Job::new(id, spec, plan, submitted_at);
                let status = job.snapshot(self.worker_count());
                info!(job_id = %id, chunks = status.chunks_total, bytes = status.bytes_total,
                    operation = %status.spec.operation, "job submitted");
                self.jobs.insert(id, job);
                self.order.push(id);
                self.persist_progress(id);
                let _ = reply.send(status);
                self.finalize_if_ready(id);
                self.publish(id);
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
                            self.ended(id);
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
                        last_seen: Instant::now(),
                        draining: false,
                    },
                );
                let _ = reply.send(id);
                self.publish_all();
            }
            Command::WorkerLeft { worker } => self.worker_left(worker, "stream ended"),
            Command::Heartbeat { worker } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.last_seen = Instant::now();
                }
            }
            Command::Draining { worker } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    info!(worker_id = %worker, name = %w.name, "worker draining");
                    w.last_seen = Instant::now();
                    w.draining = true;
                }
            }
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
                if let Some(j) = self.jobs.get_mut(&job)
                    && j.is_running()
                {
                    let message = format!("cannot read {}: {error}", j.describe(chunk));
                    warn!(job_id = %job, %message, "job failed");
                    j.abort(message);
                    self.ended(job);
                }
                self.publish(job);
            }
            Command::Finalized {
                job,
                keys,
                rows,
                quarantine,
            } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    match quarantine {
                        Ok(quarantine) => {
                            if j.succeed(keys, rows, quarantine) {
                                info!(job_id = %job, keys, "job succeeded");
                                self.ended(job);
                            }
                        }
                        Err(e) => {
                            j.abort(format!("cannot write the quarantine file: {e}"));
                            self.ended(job);
                        }
                    }
                }
                self.publish(job);
            }
        }
    }

    /// Periodic checks: worker leases, job timeouts, stragglers.
    fn tick(&mut self) {
        let timeout = self.config.worker_timeout;
        let expired: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.last_seen.elapsed() > timeout)
            .map(|(id, _)| *id)
            .collect();
        for worker in expired {
            self.worker_left(worker, "lease expired: no heartbeat");
        }
        let timed_out: Vec<JobId> = self
            .jobs
            .iter_mut()
            .filter_map(|(id, job)| job.check_timeout().then_some(*id))
            .collect();
        for id in timed_out {
            warn!(job_id = %id, "job timed out");
            self.ended(id);
            self.publish(id);
        }
        self.dispatch();
        self.start_backups();
    }

    /// Gives idle workers backup attempts of straggling chunks, most overdue first, never on
    /// the worker already running the chunk. Runs on the tick: a chunk is a straggler only
    /// after seconds, and finding them takes a pass over a job's chunks, too costly to repeat
    /// after every command of a large job.
    fn start_backups(&mut self) {
        let Some(policy) = self.config.backups else {
            return;
        };
        let mut idle: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.holding.is_empty() && w.free() > 0)
            .map(|(id, _)| *id)
            .collect();
        idle.sort_unstable();
        let mut touched = Vec::new();
        for job_id in self.order.clone() {
            if idle.is_empty() {
                break;
            }
            for (chunk, runner) in self.jobs[&job_id].stragglers(policy) {
                let Some(at) = idle.iter().position(|w| *w != runner) else {
                    continue;
                };
                let worker_id = idle.remove(at);
                let job = self.jobs.get_mut(&job_id).expect("ordered job exists");
                if let Some(attempt) = job.assign_backup(chunk, worker_id) {
                    info!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker_id,
                        "backup attempt of a straggler");
                    self.send(worker_id, job_id, chunk, attempt);
                    touched.push(job_id);
                }
                if idle.is_empty() {
                    break;
                }
            }
        }
        touched.dedup();
        for id in touched {
            self.publish(id);
        }
        self.load();
    }

    fn job(&self, id: JobId) -> Result<&Job, JobError> {
        self.jobs.get(&id).ok_or(JobError::NotFound(id))
    }

    fn worker_count(&self) -> u32 {
        self.workers.len() as u32
    }

    /// Forgets a worker: its chunks go back to the queue, and closing its outbox ends its stream.
    fn worker_left(&mut self, worker: WorkerId, why: &str) {
        let Some(gone) = self.workers.remove(&worker) else {
            return;
        };
        info!(worker_id = %worker, name = %gone.name, requeued = gone.holding.len(), reason = why,
            "worker detached");
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
        let held = match self.workers.get_mut(&worker) {
            Some(w) => {
                w.last_seen = Instant::now();
                w.holding.remove(&(job_id, chunk, attempt))
            }
            None => false,
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if !held {
            // From an attachment already given up on: its chunk went back to the queue, so this
            // attempt is stale whatever it says.
            debug!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker,
                "dropped report of an assignment no longer held");
            return;
        }
        match report {
            Report::Done {
                partial,
                stats,
                record,
                bad,
            } => match job.complete(chunk, attempt, partial, stats, bad) {
                Ok(Completion::Folded { losers }) => {
                    if self.durable {
                        self.journal.push(Op::ChunkFolded {
                            job: job_id,
                            chunk,
                            record,
                        });
                    }
                    self.persist_progress(job_id);
                    for (loser, attempt) in losers {
                        if let Some(w) = self.workers.get(&loser) {
                            w.tell(ToWorker::CancelAttempt {
                                job: job_id,
                                chunk,
                                attempt,
                            });
                        }
                    }
                }
                Ok(Completion::Stale) => {
                    debug!(job_id = %job_id, chunk_id = %chunk, %attempt, "dropped stale result")
                }
                Err(e) => {
                    let message = format!("cannot fold {}: {e}", job.describe(chunk));
                    job.abort(message);
                    self.ended(job_id);
                }
            },
            Report::Failed { error, retryable } => {
                let max = self.config.max_attempts;
                match job.fail(chunk, attempt, &error, retryable, max) {
                    FailOutcome::Stale => {}
                    FailOutcome::Retry | FailOutcome::OtherAttemptRuns => {
                        warn!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker,
                            %error, "chunk attempt failed");
                    }
                    FailOutcome::JobFailed => {
                        warn!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker,
                            %error, "job failed");
                        self.ended(job_id);
                    }
                }
            }
            Report::Released => job.release(chunk, attempt),
        }
        self.finalize_if_ready(job_id);
        self.publish(job_id);
    }

    /// Records that a job reached a final state and stops its work on every worker.
    fn ended(&mut self, id: JobId) {
        let Some(rows) = self.jobs.get(&id).map(Job::rows) else {
            return;
        };
        self.persist_progress(id);
        if self.durable {
            self.journal.push(Op::Finished { job: id, rows });
        }
        for worker in self.workers.values() {
            if worker.holding.iter().any(|(j, _, _)| *j == id) {
                worker.tell(ToWorker::Cancel(id));
            }
        }
    }

    fn persist_progress(&mut self, id: JobId) {
        if !self.durable {
            return;
        }
        if let Some(job) = self.jobs.get(&id) {
            let status = job.snapshot(0);
            self.journal.push(Op::Progress {
                job: id,
                state: status.state,
                error: status.error,
                counters: status.counters,
                finished_at: status.finished_at,
                result_rows: status.result_rows,
                quarantine: status.quarantine,
            });
        }
    }

    /// Finalizes (sorts, limits) a job whose chunks are all folded, off the scheduler task.
    fn finalize_if_ready(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.ready_to_finalize() {
            return;
        }
        let (folded, bad) = job.take_for_finalize();
        let (sort, limit) = (job.spec.sort, job.spec.limit);
        let quarantine_file = self.config.quarantine_dir.join(format!("{id}.tsv"));
        let commands = self.commands.clone();
        self.tasks.spawn(async move {
            let finalized = tokio::task::spawn_blocking(move || {
                let keys = folded.len() as u64;
                let quarantine = if bad.is_empty() {
                    Ok(None)
                } else {
                    write_quarantine(&quarantine_file, &bad)
                        .map(|()| Some(quarantine_file))
                        .map_err(|e| e.to_string())
                };
                (keys, partial::finalize(folded, sort, limit), quarantine)
            })
            .await;
            if let Ok((keys, rows, quarantine)) = finalized {
                let _ = commands
                    .send(Command::Finalized {
                        job: id,
                        keys,
                        rows,
                        quarantine,
                    })
                    .await;
            }
        });
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
    ///
    /// Runs after every command, so it looks only at workers with a free credit: with a large
    /// fleet, most commands free one credit on one worker, and scanning and sorting every
    /// worker each time made dispatch the scheduler's main cost.
    fn dispatch(&mut self) {
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.free() > 0)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        let start = (self.turn as usize) % ids.len();
        ids.rotate_left(start);
        self.turn = self.turn.wrapping_add(1);
        let mut touched = HashSet::new();
        'rounds: loop {
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
                    break 'rounds;
                };
                let job = self.jobs.get_mut(&job_id).expect("ordered job exists");
                let (chunk, attempt) = job.assign_next(worker_id).expect("job has pending");
                self.send(worker_id, job_id, chunk, attempt);
                touched.insert(job_id);
                assigned_any = true;
            }
            if !assigned_any {
                break;
            }
        }
        for id in touched {
            self.publish(id);
        }
        self.load();
    }

    /// Records an assignment as held and queues it for [`Scheduler::load`], which reads its
    /// bytes and sends it.
    fn send(&mut self, worker_id: WorkerId, job_id: JobId, chunk: ChunkId, attempt: Attempt) {
        let job = &self.jobs[&job_id];
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
            skip_bad_records: job.spec.skip_bad_records,
        };
        let worker = self
            .workers
            .get_mut(&worker_id)
            .expect("listed worker exists");
        worker.holding.insert((job_id, chunk, attempt));
        debug!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker_id, "assign");
        let outbox = worker.outbox.clone();
        self.loads.push((worker_id, outbox, assignment));
    }

    /// Reads the bytes of the assignments made since the last call, in one blocking call off
    /// the scheduler task, then queues each on its worker's outbox. One batch per dispatch
    /// round: a blocking call per tiny chunk cost more in thread handoffs than the reads.
    /// Credits bound the batch, as they bounded the per-chunk loads before.
    fn load(&mut self) {
        if self.loads.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.loads);
        let ranges: Vec<(PathBuf, ChunkRange)> = batch
            .iter()
            .map(|(_, _, a)| (a.path.clone(), a.range))
            .collect();
        let commands = self.commands.clone();
        self.tasks.spawn(async move {
            let reads = tokio::task::spawn_blocking(move || {
                ranges
                    .iter()
                    .map(|(path, range)| chunker::read(path, *range).map_err(|e| e.to_string()))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_else(|join| vec![Err(join.to_string()); batch.len()]);
            for ((worker, outbox, mut assignment), read) in batch.into_iter().zip(reads) {
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
            }
        });
    }
}

/// Writes skipped records as `path<TAB>offset<TAB>error<TAB>record` lines, atomically: under a
/// temporary name first, then renamed.
fn write_quarantine(path: &std::path::Path, bad: &[(PathBuf, BadRecord)]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension("tsv.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
    for (file, record) in bad {
        let error = record.error.replace(['\t', '\n', '\r'], " ");
        write!(out, "{}\t{}\t{error}\t", file.display(), record.offset)?;
        out.write_all(record.record.strip_suffix(b"\n").unwrap_or(&record.record))?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(temp, path)
}

#[cfg(test)]
mod tests {
    //! Whole jobs through the scheduler with in-memory fake workers and the in-memory store:
    //! no sockets. Tests that need time use tokio's paused clock.

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
                _ => continue,
            }
        }
    }

    fn mapped(a: &Assignment) -> Report {
        let op = Registry::builtin().build("wordcount", &a.options).unwrap();
        let mut stats = ChunkStats::default();
        let partial = op.map(&a.data, &mut stats).unwrap();
        let record = store::chunk_record(&partial.clone().into(), stats, &[]);
        Report::Done {
            partial,
            stats,
            record,
            bad: Vec::new(),
        }
    }

    /// A fake worker that maps everything it is given, until its outbox closes.
    fn diligent(handle: &Handle, fake: Fake) -> tokio::task::JoinHandle<()> {
        recording(handle, fake, Arc::default())
    }

    /// A diligent fake worker that also notes each chunk it was given.
    fn recording(
        handle: &Handle,
        mut fake: Fake,
        handed: Arc<std::sync::Mutex<Vec<ChunkId>>>,
    ) -> tokio::task::JoinHandle<()> {
        let handle = handle.clone();
        tokio::spawn(async move {
            while let Some(message) = fake.inbox.recv().await {
                if let ToWorker::Assign(a) = message {
                    handed.lock().unwrap().push(a.chunk);
                    let report = mapped(&a);
                    let _ = handle
                        .report(fake.id, a.job, a.chunk, a.attempt, report)
                        .await;
                }
            }
        })
    }

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            prefetch: 1,
            max_attempts: 3,
            worker_timeout: Duration::from_secs(5),
            backups: None,
            tick: Duration::from_millis(100),
            quarantine_dir: std::env::temp_dir(),
        }
    }

    /// Writes three small files; returns a spec and plan over them and their word counts,
    /// computed independently.
    fn inputs(dir: &std::path::Path, chunk_size: u64) -> (JobSpec, Plan, HashMap<Vec<u8>, u64>) {
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
            chunks: chunker::plan(&files, chunk_size).unwrap(),
            files: files.into_iter().map(|f| f.path).collect(),
        };
        let spec = JobSpec {
            inputs: vec![dir.display().to_string()],
            operation: "wordcount".into(),
            chunk_size: Some(chunk_size),
            ..Default::default()
        };
        (spec, plan, expected)
    }

    struct Running {
        handle: Handle,
        id: JobId,
        expected: HashMap<Vec<u8>, u64>,
        /// Cancels the scheduler when the test ends.
        _stop: tokio_util::sync::DropGuard,
    }

    async fn start(dir: &std::path::Path, chunk_size: u64, config: SchedulerConfig) -> Running {
        let (spec, plan, expected) = inputs(dir, chunk_size);
        let stop = CancellationToken::new();
        let store = Store::in_memory().unwrap();
        let handle = spawn(
            config,
            Some(store),
            Vec::new(),
            &TaskTracker::new(),
            stop.clone(),
        );
        let id = handle.submit(spec, plan).await.unwrap().id;
        Running {
            handle,
            id,
            expected,
            _stop: stop.drop_guard(),
        }
    }

    async fn finished(handle: &Handle, id: JobId) -> JobStatus {
        let mut updates = handle.watch(id).await.unwrap();
        updates
            .wait_for(|s| s.state.is_final())
            .await
            .unwrap()
            .clone()
    }

    async fn result(handle: &Handle, id: JobId) -> HashMap<Vec<u8>, u64> {
        let status = finished(handle, id).await;
        assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
        let rows = handle.result(id).await.unwrap();
        rows.iter()
            .map(|r| match r.value {
                Value::Count(n) => (r.key.clone(), n),
            })
            .collect()
    }

    #[tokio::test]
    async fn credits_bound_what_a_worker_holds() {
        let dir = tempfile::tempdir().unwrap();
        let job = start(dir.path(), 1024, config()).await;
        let mut fake = attach(&job.handle, 2).await;
        let status = job.handle.get(job.id).await.unwrap();
        assert!(status.chunks_total > 3);
        assert_eq!(status.chunks_running, 3, "slots 2 + prefetch 1");
        // Answering one frees exactly one credit.
        let a = next_assignment(&mut fake).await;
        job.handle
            .report(fake.id, a.job, a.chunk, a.attempt, mapped(&a))
            .await
            .unwrap();
        let status = job.handle.get(job.id).await.unwrap();
        assert_eq!((status.chunks_done, status.chunks_running), (1, 3));
    }

    #[tokio::test]
    async fn a_vanished_workers_chunks_are_redone_and_its_late_results_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let job = start(dir.path(), 1024, config()).await;
        let mut doomed = attach(&job.handle, 1).await;
        let held = [
            next_assignment(&mut doomed).await,
            next_assignment(&mut doomed).await,
        ];
        job.handle.worker_left(doomed.id).await;
        let good = diligent(&job.handle, attach(&job.handle, 2).await);
        let got = result(&job.handle, job.id).await;
        // The departed worker's results arrive late: they must not count twice.
        for a in &held {
            job.handle
                .report(doomed.id, a.job, a.chunk, a.attempt, mapped(a))
                .await
                .unwrap();
        }
        assert_eq!(got, job.expected);
        assert_eq!(result(&job.handle, job.id).await, job.expected);
        let status = job.handle.get(job.id).await.unwrap();
        assert_eq!(status.counters.attempts, status.chunks_total + 2);
        good.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_workers_lease_expires_and_its_chunks_move() {
        let dir = tempfile::tempdir().unwrap();
        let job = start(dir.path(), 1024, config()).await;
        let mut silent = attach(&job.handle, 2).await;
        let held = next_assignment(&mut silent).await;
        // Heartbeats keep the lease alive...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            job.handle.heartbeat(silent.id).await.unwrap();
        }
        assert_eq!(job.handle.get(job.id).await.unwrap().workers, 1);
        // ...silence past the timeout ends it: the worker is detached, its outbox closed.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(job.handle.get(job.id).await.unwrap().workers, 0);
        while silent.inbox.recv().await.is_some() {}
        let good = diligent(&job.handle, attach(&job.handle, 2).await);
        let got = result(&job.handle, job.id).await;
        // The silent worker wakes up and reports: fenced off.
        job.handle
            .report(silent.id, held.job, held.chunk, held.attempt, mapped(&held))
            .await
            .unwrap();
        assert_eq!(got, job.expected);
        assert_eq!(result(&job.handle, job.id).await, job.expected);
        good.abort();
    }

    #[tokio::test]
    async fn a_failing_chunk_is_retried_then_fails_the_job_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let job = start(dir.path(), 1 << 20, config()).await;
        let mut fake = attach(&job.handle, 1).await;
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
            job.handle
                .report(fake.id, a.job, a.chunk, a.attempt, report)
                .await
                .unwrap();
            if job.handle.get(job.id).await.unwrap().state.is_final() {
                break;
            }
        }
        let status = job.handle.get(job.id).await.unwrap();
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(failures, 3, "max_attempts");
        let error = status.error.unwrap();
        assert!(
            error.contains("1.txt bytes 0..") && error.contains("after 3 attempts: disk on fire"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn skipped_records_of_folded_chunks_are_quarantined_once() {
        let dir = tempfile::tempdir().unwrap();
        let quarantine = tempfile::tempdir().unwrap();
        let config = SchedulerConfig {
            quarantine_dir: quarantine.path().to_path_buf(),
            ..config()
        };
        let job = start(dir.path(), 1 << 20, config).await;
        let mut fake = attach(&job.handle, 1).await;
        let mut expected_lines = Vec::new();
        while !job.handle.get(job.id).await.unwrap().state.is_final() {
            let Ok(Some(ToWorker::Assign(a))) =
                tokio::time::timeout(Duration::from_millis(200), fake.inbox.recv()).await
            else {
                continue; // the job is finalizing
            };
            let Report::Done {
                partial,
                mut stats,
                record,
                ..
            } = mapped(&a)
            else {
                unreachable!()
            };
            // Pretend the chunk's first record failed and was skipped.
            let bad = BadRecord {
                offset: a.range.start,
                record: b"w0 x0\n".to_vec(),
                error: "cannot\tparse".into(),
            };
            stats.bad_records += 1;
            expected_lines.push(format!(
                "{}\t{}\tcannot parse\tw0 x0",
                a.path.display(),
                a.range.start
            ));
            let report = Report::Done {
                partial,
                stats,
                record,
                bad: vec![bad.clone()],
            };
            job.handle
                .report(fake.id, a.job, a.chunk, a.attempt, report)
                .await
                .unwrap();
            // A duplicate report of the same attempt must not add the records again.
            let again = Report::Done {
                partial: Partial::new(),
                stats,
                record: Vec::new(),
                bad: vec![bad],
            };
            job.handle
                .report(fake.id, a.job, a.chunk, a.attempt, again)
                .await
                .unwrap();
        }
        let status = finished(&job.handle, job.id).await;
        assert_eq!(status.state, JobState::Succeeded);
        assert_eq!(status.counters.bad_records, expected_lines.len() as u64);
        let file = status.quarantine.expect("a quarantine file");
        let mut lines: Vec<String> = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        expected_lines.sort();
        assert_eq!(lines, expected_lines);
    }

    #[tokio::test(start_paused = true)]
    async fn a_straggler_gets_a_backup_on_an_idle_worker_and_the_first_result_wins() {
        let dir = tempfile::tempdir().unwrap();
        let policy = BackupPolicy {
            min_age: Duration::from_secs(2),
            slowdown: 3,
        };
        let config = SchedulerConfig {
            backups: Some(policy),
            ..config()
        };
        let job = start(dir.path(), 4096, config).await;
        // The slow worker sits on its first chunk and does all the others it gets.
        let slow = attach(&job.handle, 1).await;
        let (stuck_tx, stuck_rx) = oneshot::channel();
        let (cancels_tx, mut cancels) = mpsc::unbounded_channel();
        let slow_task = {
            let handle = job.handle.clone();
            let mut slow = slow;
            tokio::spawn(async move {
                let mut stuck_tx = Some(stuck_tx);
                while let Some(message) = slow.inbox.recv().await {
                    match message {
                        ToWorker::Assign(a) => match stuck_tx.take() {
                            Some(tx) => {
                                let _ = tx.send((slow.id, a));
                            }
                            None => {
                                let report = mapped(&a);
                                let _ = handle
                                    .report(slow.id, a.job, a.chunk, a.attempt, report)
                                    .await;
                            }
                        },
                        ToWorker::CancelAttempt { chunk, attempt, .. } => {
                            let _ = cancels_tx.send((chunk, attempt));
                        }
                        ToWorker::Cancel(_) => {}
                    }
                }
            })
        };
        let (slow_id, stuck) = stuck_rx.await.unwrap();
        let fast = attach(&job.handle, 1).await;
        let fast_id = fast.id;
        let fast_task = diligent(&job.handle, fast);
        let keep_alive = {
            let handle = job.handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = handle.heartbeat(slow_id).await;
                    let _ = handle.heartbeat(fast_id).await;
                }
            })
        };
        let got = result(&job.handle, job.id).await;
        assert_eq!(got, job.expected);
        let status = job.handle.get(job.id).await.unwrap();
        assert_eq!(status.counters.backups, 1);
        assert_eq!(status.counters.attempts, status.chunks_total + 1);
        // The original attempt is told to stop, and its late result changes nothing.
        assert_eq!(cancels.recv().await.unwrap(), (stuck.chunk, stuck.attempt));
        job.handle
            .report(
                slow_id,
                stuck.job,
                stuck.chunk,
                stuck.attempt,
                mapped(&stuck),
            )
            .await
            .unwrap();
        assert_eq!(result(&job.handle, job.id).await, job.expected);
        keep_alive.abort();
        fast_task.abort();
        slow_task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_without_stragglers_makes_no_backups() {
        let dir = tempfile::tempdir().unwrap();
        let config = SchedulerConfig {
            backups: Some(BackupPolicy {
                min_age: Duration::from_secs(2),
                slowdown: 3,
            }),
            ..config()
        };
        let job = start(dir.path(), 1024, config).await;
        let a = diligent(&job.handle, attach(&job.handle, 2).await);
        let b = diligent(&job.handle, attach(&job.handle, 1).await);
        assert_eq!(result(&job.handle, job.id).await, job.expected);
        let status = job.handle.get(job.id).await.unwrap();
        assert_eq!(status.counters.backups, 0);
        assert_eq!(status.counters.attempts, status.chunks_total);
        a.abort();
        b.abort();
    }

    #[tokio::test]
    async fn a_restarted_scheduler_resumes_from_its_checkpoints_without_redoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let (spec, plan, expected) = inputs(dir.path(), 1024);
        let total = plan.chunks.len() as u64;
        let store = Store::open(state.path()).unwrap();
        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        let handle = spawn(
            config(),
            Some(store.clone()),
            Vec::new(),
            &tasks,
            stop.clone(),
        );
        let id = handle.submit(spec, plan).await.unwrap().id;
        let mut fake = attach(&handle, 1).await;
        // Fold five chunks, wait until they are durable, then leave one assignment unanswered.
        for _ in 0..5 {
            let a = next_assignment(&mut fake).await;
            handle
                .report(fake.id, a.job, a.chunk, a.attempt, mapped(&a))
                .await
                .unwrap();
        }
        let mut updates = handle.watch(id).await.unwrap();
        updates
            .wait_for(|s| s.chunks_checkpointed == 5)
            .await
            .unwrap();
        let _unanswered = next_assignment(&mut fake).await;
        stop.cancel();
        tasks.close();
        tasks.wait().await;
        drop(store);

        let store = Store::open(state.path()).unwrap();
        let restored = store.load().unwrap();
        assert_eq!(restored.len(), 1);
        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        let handle = spawn(config(), Some(store), restored, &tasks, stop.clone());
        let status = handle.get(id).await.unwrap();
        assert_eq!((status.chunks_done, status.chunks_checkpointed), (5, 5));
        let handed = Arc::default();
        let worker = recording(&handle, attach(&handle, 1).await, Arc::clone(&handed));
        assert_eq!(result(&handle, id).await, expected);
        let handed = handed.lock().unwrap().len() as u64;
        assert_eq!(handed, total - 5, "checkpointed chunks are not recomputed");
        worker.abort();
        stop.cancel();
        tasks.close();
        tasks.wait().await;

        // A finished job's result survives another restart.
        let store = Store::open(state.path()).unwrap();
        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        let handle = spawn(
            config(),
            Some(store.clone()),
            store.load().unwrap(),
            &tasks,
            stop.clone(),
        );
        assert_eq!(result(&handle, id).await, expected);
        stop.cancel();
    }
}

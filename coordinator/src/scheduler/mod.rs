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

mod dispatch;
mod ending;
mod handle;
mod journal;
#[cfg(test)]
mod tests;
mod views;
mod workers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use fanfold_common::fleet::{Assignment, AttemptKey, ReduceKey, ReduceReport, Report, ToWorker};
use fanfold_common::ids::{JobId, WorkerId};
use fanfold_common::registry::Registry;
use fanfold_common::roots::Roots;
use fanfold_common::spec::JobStatus;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::job::{BackupPolicy, Completion, FailOutcome, Job, JobResult, ReduceFailed};
use crate::metrics::Metrics;
use crate::parts::{self, Part};
use crate::store::{self, Checkpoints, Durable, Restored, Store};
use journal::Journal;
use workers::Workers;

/// How the scheduler treats workers and chunks: the settings a coordinator is started with.
#[derive(Clone, Debug)]
pub struct Scheduling {
    /// Assignments a worker may hold beyond its slots, so it never idles between chunks.
    pub prefetch: u32,
    /// Failed attempts per chunk before its failure fails the job.
    pub max_attempts: u32,
    /// Silence after which a worker counts as gone and its chunks are re-queued.
    pub worker_timeout: Duration,
    /// When straggling chunks get a backup attempt; `None` turns backups off.
    pub backups: Option<BackupPolicy>,
}

impl Default for Scheduling {
    fn default() -> Self {
        Scheduling {
            prefetch: 1,
            max_attempts: 4,
            worker_timeout: Duration::from_secs(10),
            backups: Some(BackupPolicy {
                min_age: Duration::from_secs(10),
                slowdown: 4,
            }),
        }
    }
}

/// Scheduler settings: the coordinator's [`Scheduling`] and what the coordinator derives.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub scheduling: Scheduling,
    /// How often leases, timeouts and stragglers are checked.
    pub tick: Duration,
    /// Where the records a job skipped as bad are written, one file per job.
    pub quarantine_dir: PathBuf,
    /// Where partitioned jobs' part files are written, a directory per job.
    pub parts_dir: PathBuf,
    pub metrics: Metrics,
    /// Every read of a job's input opens its file beneath these (none: anywhere).
    pub data_roots: Roots,
    /// Output directories are committed beneath these (none: anywhere).
    pub output_roots: Roots,
    /// How many jobs may be running or queued.
    pub limits: Limits,
    /// How long finished jobs are kept.
    pub retention: Retention,
}

mod limits;

use handle::Command;
pub use handle::{Handle, JobError, LocalWorker, outbox_capacity};
pub use limits::{Limits, Retention};
pub use views::{DetailQuery, JobDetail, WorkerRow};

struct Scheduler {
    config: SchedulerConfig,
    jobs: HashMap<JobId, Job>,
    /// Job ids in submission order: older jobs are served first.
    order: Vec<JobId>,
    workers: Workers,
    /// Decisions to make durable, handed to the journal after each command.
    journal: Journal,
    /// Assignments made and not yet handed to [`Scheduler::load`].
    loads: Vec<(WorkerId, mpsc::Sender<ToWorker>, Assignment)>,
    /// Cancel requests answered once their job's end is durable.
    cancels: HashMap<JobId, Vec<oneshot::Sender<Result<JobStatus, JobError>>>>,
    /// Jobs removed by retention, newest last (a bounded number, `limits`).
    expired: std::collections::VecDeque<JobId>,
    expired_set: std::collections::HashSet<JobId>,
    commands: mpsc::Sender<Command>,
    tasks: TaskTracker,
}

/// Starts the scheduler task on `tasks`, resuming the jobs `store` kept; it stops when
/// `shutdown` is cancelled, after the journal has written everything decided. Without a store
/// nothing is journaled ([`journal`]).
pub fn spawn(
    config: SchedulerConfig,
    store: Option<Store>,
    restored: Vec<Restored>,
    registry: &Registry,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Handle {
    let (commands, mut inbox) = mpsc::channel(1024);
    let checkpoints = Checkpoints::default();
    let journal = store.map(|store| {
        store::spawn_journal(
            store,
            tasks,
            checkpoints.clone(),
            config.metrics.journal_commit_seconds.clone(),
        )
    });
    let mut scheduler = Scheduler {
        loads: Vec::new(),
        cancels: HashMap::new(),
        expired: Default::default(),
        expired_set: Default::default(),
        config,
        jobs: HashMap::new(),
        order: Vec::new(),
        workers: Workers::default(),
        journal: Journal::new(journal),
        commands: commands.clone(),
        tasks: tasks.clone(),
    };
    for job in restored {
        scheduler.restore(job, registry);
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
                    let applied = checkpoints.take();
                    for (id, chunks) in applied.folded {
                        if let Some(job) = scheduler.jobs.get_mut(&id) {
                            job.checkpointed(chunks);
                        }
                        scheduler.publish(id);
                    }
                    for (id, step) in applied.durable {
                        match step {
                            Durable::Rows => scheduler.rows_durable(id),
                            Durable::Ended => scheduler.end_durable(id),
                        }
                    }
                    scheduler.dispatch();
                }
            }
            scheduler.journal.flush().await;
        }
        debug!("scheduler stopped");
    });
    Handle { commands }
}

impl Scheduler {
    fn restore(&mut self, r: Restored, registry: &Registry) {
        let id = r.job;
        let plan = crate::intake::replan(&r.spec, r.files, r.chunks_planned, registry);
        let mut job = Job::new(id, r.spec, plan, r.submitted_at);
        if let Some(timeline) = r.timeline {
            job.timeline = crate::job::timeline::Timeline::restore(timeline);
        }
        let restored = r.chunks.len();
        let mut broken = None;
        for (chunk, output) in r.chunks {
            if let Err(e) = job.restore_chunk(chunk, output) {
                broken.get_or_insert(format!("cannot fold restored {}: {e}", job.describe(chunk)));
            }
        }
        let result = match (r.parts, r.rows) {
            (Some(parts), _) => Some(JobResult::Parts(std::sync::Arc::new(parts))),
            (None, rows) => rows.map(|rows| JobResult::Rows(std::sync::Arc::new(rows))),
        };
        let rows_kept = result.is_some();
        if job.reducers() > 0 && !rows_kept {
            // Its maps and reduces run again; what reducers wrote before the restart goes.
            parts::remove_job(&self.config.parts_dir, id);
        }
        job.restore_progress(
            r.state,
            r.error,
            r.counters,
            r.finished_at,
            result,
            r.quarantine,
        );
        if job.is_running() && !rows_kept && !job.has_operation() {
            broken = Some(format!(
                "this coordinator does not know the operation '{}' (known: {})",
                job.spec.operation,
                registry.names().join(", ")
            ));
        }
        let failed = job.is_running() && broken.is_some();
        if let Some(message) = broken.filter(|_| failed) {
            warn!(job_id = %id, %message, "a restored job cannot go on");
            job.abort(message);
        } else if job.is_running() {
            info!(job_id = %id, chunks_restored = restored, "job resumed");
        }
        self.jobs.insert(id, job);
        self.order.push(id);
        if failed {
            self.ended(id);
        }
        self.finalize_if_ready(id);
        // Rows kept before the restart: commit them, as the job was about to.
        self.commit_if_ready(id);
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
                if let Err(refused) = self.within_limits(spec.owner.as_deref()) {
                    self.config.metrics.jobs_refused.inc();
                    let _ = reply.send(Err(refused));
                    return;
                }
                let id = JobId::new();
                let submitted_at = SystemTime::now();
                self.journal
                    .submitted(id, &spec, &plan.files, &plan.chunks, submitted_at);
                let job = Job::new(id, spec, plan, submitted_at);
                self.config.metrics.jobs_submitted.inc();
                let status = job.snapshot(self.worker_count());
                info!(job_id = %id, chunks = status.chunks_total, bytes = status.bytes_total,
                    operation = %status.spec.operation, "job submitted");
                self.jobs.insert(id, job);
                self.order.push(id);
                self.persist_progress(id);
                let _ = reply.send(Ok(status));
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
            Command::Detail { id, query, reply } => {
                let _ = reply.send(self.detail(id, query));
            }
            Command::Workers { reply } => {
                let _ = reply.send(self.worker_rows());
            }
            Command::Gauges { reply } => {
                let _ = reply.send(self.gauges());
            }
            Command::Watch { id, reply } => {
                let _ = reply.send(self.job(id).map(Job::subscribe));
            }
            Command::Result { id, reply } => {
                let answer = self.job(id).and_then(|job| {
                    if job.is_finishing() {
                        return Err(JobError::Finishing(id));
                    }
                    // Only a succeeded job keeps rows once it is past finishing.
                    job.result().ok_or(JobError::NoResult {
                        id,
                        state: job.state().as_str(),
                    })
                });
                let _ = reply.send(answer);
            }
            Command::Cancel { id, reply } => {
                if !self.jobs.contains_key(&id) {
                    let _ = reply.send(Err(self.missing(id)));
                    return;
                }
                let job = self.jobs.get_mut(&id).expect("checked");
                if job.is_running() {
                    job.cancel();
                    info!(job_id = %id, "job cancelled");
                    self.ended(id);
                }
                let job = &self.jobs[&id];
                if job.is_finishing() {
                    // Answered once the end is durable, like every watcher.
                    self.cancels.entry(id).or_default().push(reply);
                } else {
                    let _ = reply.send(Ok(job.snapshot(self.worker_count())));
                }
                self.publish(id);
            }
            Command::WorkerJoined {
                hello,
                address,
                outbox,
                reply,
            } => {
                let (name, slots, shared) = (hello.name.clone(), hello.slots, hello.shared_storage);
                // Worker files are named by their worker's name: two attached at once would
                // share their chunks and their listings, and the name must read back from
                // `worker://NAME/PATH`.
                if !hello.local_roots.is_empty() {
                    let refusal = if !fanfold_common::location::is_worker_name(&name) {
                        Some(format!(
                            "worker name '{name}': a worker with --local-root needs a name of \
                             letters, digits, '.', '_' and '-' (it names its files, \
                             worker://NAME/PATH)"
                        ))
                    } else if self
                        .workers
                        .iter()
                        .any(|w| w.owner_name() == Some(name.as_str()))
                    {
                        Some(format!(
                            "a worker named '{name}' that offers files of its own is attached \
                             already: give each worker with --local-root its own --name"
                        ))
                    } else {
                        None
                    };
                    if let Some(refusal) = refusal {
                        warn!(%name, %refusal, "refused a worker");
                        let _ = reply.send(Err(refusal));
                        return;
                    }
                }
                let id = self
                    .workers
                    .join(hello, address, self.config.scheduling.prefetch, outbox);
                info!(worker_id = %id, %name, slots, shared_storage = shared, "worker attached");
                let _ = reply.send(Ok(id));
                self.publish_all();
            }
            Command::LocalWorkers { reply } => {
                let local = self
                    .workers
                    .sorted()
                    .into_iter()
                    .filter(|(_, w)| !w.local_roots.is_empty() && !w.is_draining())
                    .map(|(id, w)| handle::LocalWorker {
                        id,
                        name: w.name.clone(),
                        roots: w.local_roots.clone(),
                        outbox: w.outbox.clone(),
                    })
                    .collect();
                let _ = reply.send(local);
            }
            Command::WorkerLeft { worker } => self.worker_left(worker, "stream ended"),
            Command::Heartbeat { worker } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.seen();
                }
            }
            Command::Draining { worker } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    info!(worker_id = %worker, name = %w.name, "worker draining");
                    w.drain();
                }
            }
            Command::Report {
                worker,
                key,
                report,
            } => self.report(worker, key, report),
            Command::Reduced {
                worker,
                key,
                report,
                part,
            } => self.reduced(worker, key, report, part),
            Command::LoadFailed { worker, key, error } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.holding.remove(&key);
                }
                let job = key.job;
                // Only a live attempt's unreadable chunk fails its job (a backup's may come
                // after the chunk was done).
                if let Some(j) = self.jobs.get_mut(&job)
                    && j.is_live(key.chunk, key.attempt)
                {
                    let message = format!("cannot read {}: {error}", j.describe(key.chunk));
                    warn!(job_id = %job, %message, "job failed");
                    j.abort(message);
                    self.ended(job);
                }
                self.publish(job);
            }
            Command::Finalized { job, result } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    match result {
                        Ok((keys, result, quarantine)) => {
                            let rows = result.rows();
                            if j.finalized(keys, result, quarantine) {
                                self.config.metrics.result_rows.inc_by(rows);
                                debug!(job_id = %job, keys, "job finalized");
                                self.keep_rows(job);
                            }
                        }
                        Err(error) => {
                            warn!(job_id = %job, %error, "job failed at the end");
                            j.abort(error);
                            self.ended(job);
                        }
                    }
                }
                self.publish(job);
            }
            Command::Committed { job, result } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    match result {
                        Ok(()) => self.succeed(job),
                        Err(error) => {
                            if j.is_running() {
                                warn!(job_id = %job, %error, "job failed at the end");
                                j.abort(error);
                                self.ended(job);
                            }
                        }
                    }
                }
                self.publish(job);
            }
        }
    }

    /// Periodic checks: worker leases, job timeouts, stragglers, retention.
    fn tick(&mut self) {
        self.expire();
        for worker in self.workers.expired(self.config.scheduling.worker_timeout) {
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
        // A worker's own files wait for it as long as a lease; then their job fails.
        let lease = self.config.scheduling.worker_timeout;
        let workers = &self.workers;
        // A draining owner still counts: its chunks wait until it has gone.
        let present = |name: &str| workers.iter().any(|w| w.owner_name() == Some(name));
        let orphaned: Vec<JobId> = self
            .jobs
            .iter_mut()
            .filter_map(|(id, job)| job.check_owners(present, lease).then_some(*id))
            .collect();
        for id in orphaned {
            warn!(job_id = %id, "job failed: a worker with its files left");
            self.ended(id);
            self.publish(id);
        }
        self.dispatch();
        self.start_backups();
        // What each running job waits on, once nothing of it is pending.
        let workers = &self.workers;
        let names = |w: WorkerId| workers.name_of(w);
        for job in self.jobs.values_mut().filter(|j| j.is_running()) {
            job.note_slowest(&names);
        }
        self.publish_all();
    }

    fn job(&self, id: JobId) -> Result<&Job, JobError> {
        self.jobs.get(&id).ok_or_else(|| self.missing(id))
    }

    fn worker_count(&self) -> u32 {
        self.workers.count()
    }

    /// Forgets a worker: its chunks go back to the queue, and closing its outbox ends its stream.
    fn worker_left(&mut self, worker: WorkerId, why: &str) {
        let Some(gone) = self.workers.remove(worker) else {
            return;
        };
        info!(worker_id = %worker, name = %gone.name, requeued = gone.holding.len(), reason = why,
            "worker detached");
        for key in gone.holding {
            if let Some(j) = self.jobs.get_mut(&key.job) {
                j.release(key.chunk, key.attempt);
            }
        }
        for key in gone.reducing {
            if let Some(j) = self.jobs.get_mut(&key.job) {
                j.release_reduce(key);
            }
        }
        for (id, job) in &mut self.jobs {
            let lost = job.worker_lost(worker);
            if lost > 0 {
                warn!(job_id = %id, worker_id = %worker, map_outputs = lost,
                    "map outputs lost with their worker; mapping those chunks again");
            }
        }
        self.publish_all();
    }

    /// A reduce task's end: its part is kept if the attempt is live, else removed.
    fn reduced(
        &mut self,
        worker: WorkerId,
        key: ReduceKey,
        report: ReduceReport,
        part: Option<Result<Part, String>>,
    ) {
        let held = match self.workers.get_mut(worker) {
            Some(w) => {
                w.seen();
                w.reducing.remove(&key)
            }
            None => false,
        };
        let max = self.config.scheduling.max_attempts;
        let job_id = key.job;
        let mut unused = None;
        if let Some(job) = self.jobs.get_mut(&job_id) {
            match (report, part) {
                (ReduceReport::Done { .. }, Some(Ok(part))) => {
                    if held && job.complete_reduce(key, part.clone()) {
                        debug!(job_id = %job_id, partition = key.partition, rows = part.rows,
                            "partition reduced");
                        if let Some(w) = self.workers.get_mut(worker) {
                            w.done += 1;
                        }
                        self.persist_progress(job_id);
                    } else {
                        unused = Some(part.path);
                    }
                }
                (report, part) => {
                    let (error, retryable, lost) = match (report, part) {
                        (
                            ReduceReport::Failed {
                                error,
                                retryable,
                                lost,
                            },
                            _,
                        ) => (error, retryable, lost),
                        (_, Some(Err(e))) => (format!("cannot keep the part: {e}"), true, None),
                        (_, _) => ("a reduce task ended without its part".into(), true, None),
                    };
                    if held {
                        let lost_source = lost.is_some();
                        let outcome = job.fail_reduce(key, &error, retryable, lost, max);
                        if outcome != ReduceFailed::Stale && !lost_source {
                            self.config.metrics.failures.inc();
                            if let Some(w) = self.workers.get_mut(worker) {
                                w.failures += 1;
                            }
                        }
                        match outcome {
                            ReduceFailed::Stale => {}
                            ReduceFailed::Retry => {
                                warn!(job_id = %job_id, partition = key.partition,
                                    attempt = %key.attempt, worker_id = %worker, %error,
                                    "reduce attempt failed");
                            }
                            ReduceFailed::Exhausted { .. } => {
                                warn!(job_id = %job_id, partition = key.partition, %error,
                                    "job failed");
                                self.ended(job_id);
                            }
                        }
                    }
                }
            }
        }
        if let Some(path) = unused {
            self.tasks
                .spawn_blocking(move || std::fs::remove_file(path).ok());
        }
        self.finalize_if_ready(job_id);
        self.publish(job_id);
    }

    fn report(&mut self, worker: WorkerId, key: AttemptKey, report: Report) {
        let AttemptKey {
            job: job_id,
            chunk,
            attempt,
        } = key;
        let held = match self.workers.get_mut(worker) {
            Some(w) => {
                w.seen();
                w.holding.remove(&key)
            }
            None => false,
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let metrics = &self.config.metrics;
        if let Report::Done(output) = &report {
            metrics.bytes_mapped.inc_by(output.stats.bytes_in);
            metrics.records_mapped.inc_by(output.stats.records_in);
        }
        if !held {
            // From an attachment already given up on: its chunk went back to the queue, so this
            // attempt is stale whatever it says.
            debug!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker,
                "dropped report of an assignment no longer held");
            return;
        }
        match report {
            Report::Done(output) => {
                // A partitioned job's map outputs are not journaled: they live on the worker.
                let keep = self.journal.keeps_chunks() && job.reducers() == 0;
                let address = self
                    .workers
                    .get(worker)
                    .map(|w| w.shuffle_address.clone())
                    .unwrap_or_default();
                let started = job.attempt_started(chunk, attempt);
                let (bytes, records) = (output.stats.bytes_in, output.stats.records_in);
                let folding = std::time::Instant::now();
                let completed = if job.reducers() > 0 {
                    job.keep_map_output(chunk, attempt, output, (worker, &address))
                } else {
                    job.complete(chunk, attempt, output, keep)
                };
                match completed {
                    Ok(Completion::Folded { losers, kept }) => {
                        metrics
                            .fold_seconds
                            .observe(folding.elapsed().as_secs_f64());
                        if let Some(started) = started {
                            metrics.map_seconds.observe(started.elapsed().as_secs_f64());
                        }
                        metrics.bytes_folded.inc_by(bytes);
                        metrics.records_folded.inc_by(records);
                        if let Some(w) = self.workers.get_mut(worker) {
                            w.done += 1;
                        }
                        if let Some(output) = kept {
                            self.journal.chunk_folded(job_id, chunk, *output);
                        }
                        self.persist_progress(job_id);
                        for (loser, attempt) in losers {
                            if let Some(w) = self.workers.get(loser) {
                                w.tell(ToWorker::CancelAttempt(AttemptKey {
                                    job: job_id,
                                    chunk,
                                    attempt,
                                }));
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
                }
            }
            Report::Failed { error, retryable } => {
                let max = self.config.scheduling.max_attempts;
                let outcome = job.fail(chunk, attempt, &error, retryable, max);
                if outcome != FailOutcome::Stale {
                    metrics.failures.inc();
                    if let Some(w) = self.workers.get_mut(worker) {
                        w.failures += 1;
                    }
                }
                if outcome == FailOutcome::Retry {
                    metrics.retries.inc();
                }
                match outcome {
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
            Report::Released { unreadable } => {
                let object = job.range(chunk).0.as_path().is_none();
                if let Some(error) = unreadable
                    && let Some(w) = self.workers.get_mut(worker)
                {
                    if object && w.reads_objects {
                        warn!(worker_id = %worker, name = %w.name, %error,
                            "worker cannot read object storage; sending it objects' chunks inline \
                             from now on");
                        w.reads_objects = false;
                    } else if !object && w.shared_storage {
                        warn!(worker_id = %worker, name = %w.name, %error,
                            "worker cannot read shared storage; sending it chunks inline from now on");
                        w.shared_storage = false;
                    }
                }
                job.release(chunk, attempt);
            }
        }
        self.finalize_if_ready(job_id);
        self.publish(job_id);
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
}

//! Assignment: which worker gets which chunk (and which idle worker gets a backup attempt of a
//! straggler), and handing the assignments to the chunk reader and the workers' outboxes.

use std::collections::HashSet;

use fanfold_common::fleet::{Assignment, AttemptKey, ReduceAssignment, ReduceKey, ToWorker};
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use tracing::{debug, info};

use super::{Command, Scheduler};
use crate::job::Task;
use crate::reader;

impl Scheduler {
    /// Hands pending chunks to workers with free credits, oldest job first, one chunk per
    /// worker per round so work spreads across the fleet.
    ///
    /// Runs after every command, so it looks only at workers with a free credit: with a large
    /// fleet, most commands free one credit on one worker, and scanning and sorting every
    /// worker each time made dispatch the scheduler's main cost.
    pub(super) fn dispatch(&mut self) {
        let ids = self.workers.with_credit();
        if ids.is_empty() {
            return;
        }
        let mut touched = HashSet::new();
        loop {
            if !self.order.iter().any(|id| self.jobs[id].has_pending()) {
                break;
            }
            let mut assigned_any = false;
            for &worker_id in &ids {
                let Some(worker) = self.workers.get(worker_id).filter(|w| w.free() > 0) else {
                    continue;
                };
                let own = worker.owner_name().map(str::to_owned);
                let Some(job_id) = self
                    .order
                    .iter()
                    .copied()
                    .find(|id| self.jobs[id].has_pending_for(own.as_deref()))
                else {
                    // Nothing for this worker; what is left may be other workers' own files.
                    continue;
                };
                let job = self.jobs.get_mut(&job_id).expect("ordered job exists");
                match job
                    .assign_task(worker_id, own.as_deref())
                    .expect("job has pending")
                {
                    Task::Map(chunk, attempt) => {
                        self.config.metrics.attempts.inc();
                        self.send(worker_id, job_id, chunk, attempt)
                    }
                    Task::Reduce(key) => self.send_reduce(worker_id, key),
                }
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
        let (location, range) = job.range(chunk);
        let worker = self
            .workers
            .get_mut(worker_id)
            .expect("listed worker exists");
        let assignment = Assignment {
            job: job_id,
            chunk,
            attempt,
            operation: job.spec.operation.clone(),
            options: job.spec.options.clone(),
            payload: reader::payload(worker.shared_storage, worker.reads_objects, &location),
            location,
            range,
            skip_bad_records: job.spec.skip_bad_records,
            reducers: job.reducers(),
            whole_file: job.spec.whole_file,
        };
        worker.holding.insert(assignment.key());
        debug!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker_id, "assign");
        let outbox = worker.outbox.clone();
        self.loads.push((worker_id, outbox, assignment));
    }

    /// Sends a reduce task with every map output as its sources; it holds a credit like a
    /// chunk, so the outbox has room for it.
    fn send_reduce(&mut self, worker_id: WorkerId, key: ReduceKey) {
        let job = &self.jobs[&key.job];
        let task = ReduceAssignment {
            key,
            operation: job.spec.operation.clone(),
            options: job.spec.options.clone(),
            sort: job.spec.sort,
            limit: job.spec.limit,
            reducers: job.reducers(),
            sources: job.sources(),
        };
        let worker = self
            .workers
            .get_mut(worker_id)
            .expect("listed worker exists");
        worker.reducing.insert(key);
        debug!(job_id = %key.job, partition = key.partition, attempt = %key.attempt,
            worker_id = %worker_id, "assign reduce");
        worker.tell(ToWorker::Reduce(task));
    }

    /// Hands the assignments made since the last call to the chunk reader, which reads the
    /// small ones in one blocking call off the scheduler task ([`reader::fill_small`]), then
    /// queues each on its worker's outbox. Large chunks are read by their worker's stream, and
    /// assignments by reference not at all.
    fn load(&mut self) {
        if self.loads.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.loads);
        let keys: Vec<(WorkerId, AttemptKey)> =
            batch.iter().map(|(w, _, a)| (*w, a.key())).collect();
        let commands = self.commands.clone();
        let roots = self.config.data_roots.clone();
        self.tasks.spawn(async move {
            let filled = tokio::task::spawn_blocking(move || {
                batch
                    .into_iter()
                    .map(|(worker, outbox, mut assignment)| {
                        let read = reader::fill_small(&mut assignment, &roots);
                        (worker, outbox, assignment, read)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let filled = match filled {
                Ok(filled) => filled,
                Err(join) => {
                    // Every assignment of the batch fails its job, rather than wait unsent.
                    for (worker, key) in keys {
                        let error = format!("reading the chunk failed: {join}");
                        let _ = commands
                            .send(Command::LoadFailed { worker, key, error })
                            .await;
                    }
                    return;
                }
            };
            for (worker, outbox, assignment, read) in filled {
                match read {
                    // A closed outbox means the worker left; its chunks were released then.
                    Ok(()) => {
                        let _ = outbox.send(ToWorker::Assign(assignment)).await;
                    }
                    Err(error) => {
                        let key = assignment.key();
                        let _ = commands
                            .send(Command::LoadFailed { worker, key, error })
                            .await;
                    }
                }
            }
        });
    }

    /// Gives idle workers backup attempts of straggling chunks, most overdue first, never on
    /// the worker already running the chunk. Runs on the tick: a chunk is a straggler only
    /// after seconds, and finding them takes a pass over a job's chunks, too costly to repeat
    /// after every command of a large job.
    pub(super) fn start_backups(&mut self) {
        let Some(policy) = self.config.scheduling.backups else {
            return;
        };
        let mut idle = self.workers.idle();
        let mut touched = Vec::new();
        for job_id in self.order.clone() {
            if idle.is_empty() {
                break;
            }
            for (chunk, runner) in self.jobs[&job_id].stragglers(policy) {
                let job = &self.jobs[&job_id];
                let workers = &self.workers;
                let Some(at) = idle.iter().position(|w| {
                    *w != runner
                        && workers
                            .get(*w)
                            .is_some_and(|worker| job.may_run(chunk, worker.owner_name()))
                }) else {
                    continue;
                };
                let worker_id = idle.remove(at);
                let job = self.jobs.get_mut(&job_id).expect("ordered job exists");
                if let Some(attempt) = job.assign_backup(chunk, worker_id) {
                    self.config.metrics.attempts.inc();
                    self.config.metrics.backups.inc();
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
}

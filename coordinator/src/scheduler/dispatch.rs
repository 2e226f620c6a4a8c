//! Assignment: which worker gets which chunk (and which idle worker gets a backup attempt of a
//! straggler), and loading and sending the chunks.

use std::collections::HashSet;
use std::path::PathBuf;

use bytes::Bytes;
use fanfold_common::chunker::{self, ChunkRange};
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use tracing::{debug, info};

use super::{Assignment, Command, Payload, Scheduler, ToWorker};

/// Chunks of at least this many bytes are read by their worker's stream when it is ready to
/// send them, not when they are assigned.
const READ_WHEN_SENT: u64 = 1 << 20;

impl Scheduler {
    /// Hands pending chunks to workers with free credits, oldest job first, one chunk per
    /// worker per round so work spreads across the fleet.
    ///
    /// Runs after every command, so it looks only at workers with a free credit: with a large
    /// fleet, most commands free one credit on one worker, and scanning and sorting every
    /// worker each time made dispatch the scheduler's main cost.
    pub(super) fn dispatch(&mut self) {
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
        let worker = self
            .workers
            .get_mut(&worker_id)
            .expect("listed worker exists");
        // The job names files as its submitter gave them, relative to this process's
        // directory; the worker needs a path that means the same from its own.
        let payload = if worker.shared_storage {
            Payload::Shared(std::path::absolute(&path).unwrap_or_else(|_| path.clone()))
        } else {
            Payload::Unread
        };
        let assignment = Assignment {
            job: job_id,
            chunk,
            attempt,
            operation: job.spec.operation.clone(),
            options: job.spec.options.clone(),
            path,
            range,
            payload,
            skip_bad_records: job.spec.skip_bad_records,
        };
        worker.holding.insert((job_id, chunk, attempt));
        debug!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker_id, "assign");
        let outbox = worker.outbox.clone();
        self.loads.push((worker_id, outbox, assignment));
    }

    /// Reads the bytes of the small assignments made since the last call, in one blocking call
    /// off the scheduler task, then queues each assignment on its worker's outbox. One batch
    /// per dispatch round: a blocking call per tiny chunk cost more in thread handoffs than the
    /// reads. Large chunks are left to the worker's stream, which reads each when it is ready
    /// to send it, so a chunk's bytes are not held for as long as it waits behind the one
    /// before. Assignments by reference are not read: their workers read them.
    fn load(&mut self) {
        if self.loads.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.loads);
        let ranges: Vec<Option<(PathBuf, ChunkRange)>> = batch
            .iter()
            .map(|(_, _, a)| {
                let small = a.range.len() < READ_WHEN_SENT;
                (matches!(a.payload, Payload::Unread) && small).then(|| (a.path.clone(), a.range))
            })
            .collect();
        let commands = self.commands.clone();
        self.tasks.spawn(async move {
            let reads = tokio::task::spawn_blocking(move || {
                ranges
                    .iter()
                    .map(|small| match small {
                        Some((path, range)) => chunker::read(path, *range)
                            .map(|data| Some(Payload::Inline(Bytes::from(data))))
                            .map_err(|e| e.to_string()),
                        None => Ok(None),
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_else(|join| vec![Err(join.to_string()); batch.len()]);
            for ((worker, outbox, mut assignment), read) in batch.into_iter().zip(reads) {
                match read {
                    Ok(read) => {
                        if let Some(payload) = read {
                            assignment.payload = payload;
                        }
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

    /// Gives idle workers backup attempts of straggling chunks, most overdue first, never on
    /// the worker already running the chunk. Runs on the tick: a chunk is a straggler only
    /// after seconds, and finding them takes a pass over a job's chunks, too costly to repeat
    /// after every command of a large job.
    pub(super) fn start_backups(&mut self) {
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
}

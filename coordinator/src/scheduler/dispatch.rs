//! Assignment: which worker gets which chunk, and sending it.

use std::collections::HashSet;

use bytes::Bytes;
use fanfold_common::chunker;
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use tracing::{debug, info};

use super::{Assignment, Command, Scheduler, ToWorker};

impl Scheduler {
    /// Hands pending chunks to workers with free credits, oldest job first, one chunk per
    /// worker per round so work spreads across the fleet; then gives idle workers backup
    /// attempts of stragglers.
    pub(super) fn dispatch(&mut self) {
        let mut ids: Vec<WorkerId> = self.workers.keys().copied().collect();
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
        if let Some(policy) = self.config.backups {
            for &worker_id in &ids {
                let worker = &self.workers[&worker_id];
                if !worker.holding.is_empty() || worker.free() == 0 {
                    continue; // only idle workers run backups
                }
                let found =
                    self.order.iter().copied().find_map(|id| {
                        self.jobs[&id].straggler(worker_id, policy).map(|c| (id, c))
                    });
                if let Some((job_id, chunk)) = found {
                    let job = self.jobs.get_mut(&job_id).expect("ordered job exists");
                    if let Some(attempt) = job.assign_backup(chunk, worker_id) {
                        info!(job_id = %job_id, chunk_id = %chunk, %attempt, worker_id = %worker_id,
                            "backup attempt of a straggler");
                        self.send(worker_id, job_id, chunk, attempt);
                        touched.insert(job_id);
                    }
                }
            }
        }
        for id in touched {
            self.publish(id);
        }
    }

    /// Records an assignment as held and sends it: reads the chunk's bytes off the scheduler
    /// task, then queues it on the worker's outbox. Credits bound how many of these run at once.
    fn send(&mut self, worker_id: WorkerId, job_id: JobId, chunk: ChunkId, attempt: Attempt) {
        let job = &self.jobs[&job_id];
        let (path, range) = job.range(chunk);
        let mut assignment = Assignment {
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
                            worker: worker_id,
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

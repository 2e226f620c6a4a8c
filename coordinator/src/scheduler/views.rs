//! Snapshots for the HTTP port: a job in detail (its chunks, reduce tasks, slowest chunks and
//! timeline), the attached workers, and the gauges of `/metrics`. Each is taken on the
//! scheduler task in one pass, like a status, so it is consistent with every earlier command.

use std::time::UNIX_EPOCH;

use fanfold_common::ids::{JobId, WorkerId};
use fanfold_common::spec::{JobState, JobStatus};
use serde::Serialize;

use super::{JobError, Scheduler};
use crate::job::timeline::TimelineRecord;
use crate::job::{ChunkRow, ReduceRow};
use crate::metrics::Gauges;

/// What of a job to include in its [`JobDetail`].
#[derive(Clone, Copy, Debug)]
pub struct DetailQuery {
    /// The chunk rows from this chunk...
    pub offset: u64,
    /// ...at most this many.
    pub limit: u64,
    /// The latest attempts of the timeline, at most this many.
    pub spans: usize,
    /// Whether to find the slowest chunks (a pass over every attempt).
    pub slowest: bool,
}

/// A job in detail.
#[derive(Clone, Debug)]
pub struct JobDetail {
    pub status: JobStatus,
    pub chunks: Vec<ChunkRow>,
    pub reduces: Vec<ReduceRow>,
    /// The chunks whose latest attempts took longest, longest first.
    pub slowest: Vec<ChunkRow>,
    /// The latest attempts (`spans` of the query) and the names of their workers.
    pub timeline: TimelineRecord,
}

/// An attached worker, as `/api/v1/workers` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerRow {
    pub id: u64,
    pub name: String,
    /// Where its stream comes from.
    pub address: String,
    pub slots: u32,
    /// Chunks and reduce tasks it holds now.
    pub running: u64,
    /// Tasks it finished whose results were kept, and its failed attempts.
    pub chunks_done: u64,
    pub failures: u64,
    /// Milliseconds since it was last heard from (heartbeats included).
    pub last_heartbeat_ms: u64,
    pub shared_storage: bool,
    pub draining: bool,
    pub protocol: u32,
    pub version: String,
    /// Where reducers fetch its map outputs.
    pub shuffle_address: String,
    /// Unix milliseconds.
    pub joined_ms: u64,
}

impl Scheduler {
    pub(super) fn detail(&self, id: JobId, query: DetailQuery) -> Result<JobDetail, JobError> {
        let job = self.job(id)?;
        let names = |w: WorkerId| self.workers.name_of(w);
        let timeline = job
            .timeline
            .record_latest(query.spans, |w| self.workers.name_of(WorkerId(w)));
        Ok(JobDetail {
            status: job.snapshot(self.worker_count()),
            chunks: job.chunk_rows(query.offset, query.limit, &names),
            reduces: job.reduce_rows(&names),
            slowest: if query.slowest {
                job.slowest_chunks(10, &names)
            } else {
                Vec::new()
            },
            timeline,
        })
    }

    pub(super) fn worker_rows(&self) -> Vec<WorkerRow> {
        self.workers
            .sorted()
            .into_iter()
            .map(|(id, w)| WorkerRow {
                id: id.0,
                name: w.name.clone(),
                address: w.address.clone(),
                slots: w.slots,
                running: (w.holding.len() + w.reducing.len()) as u64,
                chunks_done: w.done,
                failures: w.failures,
                last_heartbeat_ms: w.silent_for().as_millis() as u64,
                shared_storage: w.shared_storage,
                draining: w.is_draining(),
                protocol: w.protocol,
                version: w.version.clone(),
                shuffle_address: w.shuffle_address.clone(),
                joined_ms: w
                    .joined
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64,
            })
            .collect()
    }

    pub(super) fn gauges(&self) -> Gauges {
        let mut jobs = [0i64; 4];
        let (mut pending, mut running, mut done, mut queue) = (0i64, 0i64, 0i64, 0i64);
        for job in self.jobs.values() {
            let status = job.snapshot(0);
            let state = match status.state {
                JobState::Running => 0,
                JobState::Succeeded => 1,
                JobState::Failed => 2,
                JobState::Cancelled => 3,
            };
            jobs[state] += 1;
            if status.state == JobState::Running {
                let waiting = status.chunks_total - status.chunks_done - status.chunks_running;
                pending += waiting as i64;
                running += status.chunks_running as i64;
                done += status.chunks_done as i64;
                queue += waiting as i64;
                if status.chunks_done == status.chunks_total {
                    queue += (status.reduces_total - status.reduces_done - status.reduces_running)
                        as i64;
                }
            }
        }
        let workers = self.workers.sorted();
        Gauges {
            jobs: vec![
                ("running", jobs[0]),
                ("succeeded", jobs[1]),
                ("failed", jobs[2]),
                ("cancelled", jobs[3]),
            ],
            chunks: vec![("pending", pending), ("running", running), ("done", done)],
            workers_attached: workers.len() as i64,
            workers_draining: workers.iter().filter(|(_, w)| w.is_draining()).count() as i64,
            slots: workers.iter().map(|(_, w)| i64::from(w.slots)).sum(),
            queue_depth: queue,
        }
    }
}

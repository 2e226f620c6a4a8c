//! The fleet's vocabulary: what a coordinator and its workers say to each other, as domain
//! types both ends share. The wire forms (`fanfold.v1` `Assign`, `ChunkDone`, ...) live in
//! `fanfold_proto`; the conversions both ways are in [`crate::convert`]; only the two gRPC
//! adapters (the coordinator's fleet service and the worker's attachment) use them.
//!
//! Large inline chunks travel in pieces, a matter of the transport: the adapters cut and
//! gather them, and an [`Assignment`] always holds its whole payload.

use bytes::Bytes;

use crate::chunker::ChunkRange;
use crate::ids::{Attempt, ChunkId, JobId};
use crate::location::Location;
use crate::operation::{BadRecord, ChunkStats, Options};
use crate::partial::{ChunkPartial, Row, SortOrder};

/// One unit of work for a worker: a chunk of a job, one attempt of it.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub job: JobId,
    pub chunk: ChunkId,
    pub attempt: Attempt,
    pub operation: String,
    pub options: Options,
    /// The chunk's file, as the job names it (for keys, messages and decompression).
    pub location: Location,
    pub range: ChunkRange,
    pub payload: Payload,
    /// Isolate and report failing records instead of failing the chunk.
    pub skip_bad_records: bool,
    /// A partitioned job's map (at least 1): the output is cut into this many partitions and
    /// kept on the worker for the reducers. 0 sends the partial back.
    pub reducers: u32,
    /// The job maps each file whole (per-document jobs), so a compressed chunk is mapped in
    /// one piece, not block by block as it is decompressed.
    pub whole_file: bool,
}

impl Assignment {
    /// The assignment's job, chunk and attempt.
    pub fn key(&self) -> AttemptKey {
        AttemptKey {
            job: self.job,
            chunk: self.chunk,
            attempt: self.attempt,
        }
    }
}

/// One attempt of one chunk of one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    pub job: JobId,
    pub chunk: ChunkId,
    pub attempt: Attempt,
}

/// How an assignment's bytes reach its worker.
#[derive(Clone, Debug)]
pub enum Payload {
    /// Not read yet: the coordinator reads it before sending (never seen by a worker).
    Unread,
    /// The chunk's bytes, sent with the assignment.
    Inline(Bytes),
    /// The worker is on shared storage and reads the range itself from this location, valid
    /// from any working directory.
    Shared(Location),
}

/// One attempt of one reduce task (a partition) of a partitioned job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReduceKey {
    pub job: JobId,
    pub partition: u32,
    pub attempt: Attempt,
}

/// A map output a reducer fetches its partition from: the chunk, the attempt whose output
/// is in use, and the shuffle address of the worker that keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSource {
    pub chunk: ChunkId,
    pub attempt: Attempt,
    pub address: String,
}

/// A reduce task: fetch one partition from every map output, merge, finalize, send the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceAssignment {
    pub key: ReduceKey,
    pub operation: String,
    pub options: Options,
    pub sort: SortOrder,
    pub limit: Option<u64>,
    /// The job's partitions in all.
    pub reducers: u32,
    /// Every map output of the job, by chunk.
    pub sources: Vec<MapSource>,
}

/// What a coordinator sends a worker.
#[derive(Clone, Debug)]
pub enum ToWorker {
    Assign(Assignment),
    Reduce(ReduceAssignment),
    /// Drop queued chunks of this job and stop running ones.
    Cancel(JobId),
    /// Another attempt of this chunk won; drop this one.
    CancelAttempt(AttemptKey),
    /// List and cut some of its own files.
    ListLocal(LocalListing),
}

/// A worker's introduction, its first message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerHello {
    pub name: String,
    /// Chunks it maps at once.
    pub slots: u32,
    /// Its fanfold release.
    pub version: String,
    /// The operations it can run.
    pub operations: Vec<String>,
    /// It reads input locations as the coordinator names them (the same machine, or a shared
    /// volume mounted alike), so its chunks come by reference.
    pub shared_storage: bool,
    /// The fleet protocol revision it speaks (`fanfold_proto::PROTOCOL`).
    pub protocol: u32,
    /// `host:port` where reducers fetch the map outputs it keeps.
    pub shuffle_address: String,
    /// The directories whose files it offers as `worker://NAME/PATH` inputs.
    pub local_roots: Vec<String>,
}

/// A question to a worker that offers files of its own: which files do these patterns name,
/// and where are their record boundaries? Answered by [`FromWorker::LocalListed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalListing {
    pub request: u64,
    /// Absolute paths, directories or globs, beneath the worker's local roots.
    pub patterns: Vec<String>,
    pub chunk_size: u64,
    pub max_files: u64,
}

/// One of a worker's own files, as it listed and cut it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFile {
    pub path: String,
    pub len: u64,
    /// The end of each record-aligned chunk, in order, the last `len`; one chunk for a
    /// compressed file.
    pub ends: Vec<u64>,
}

/// A chunk's result: its partial, its counters and the records it skipped as bad.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkOutput {
    pub partial: ChunkPartial,
    pub stats: ChunkStats,
    /// Records skipped because mapping them failed (skip mode only).
    pub bad: Vec<BadRecord>,
    /// A partitioned job's map: its output stays on the worker (`partial` is then empty).
    pub map_output: Option<MapOutput>,
}

/// A map output kept on its worker for the reducers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapOutput {
    /// Each partition's bytes.
    pub partition_bytes: Vec<u64>,
}

/// How a reduce task went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReduceReport {
    /// Its part's rows were all sent (in [`FromWorker::PartRows`], before this).
    Done {
        /// Keys in the part before any limit.
        keys: u64,
        rows: u64,
        fetched_bytes: u64,
    },
    Failed {
        error: String,
        retryable: bool,
        /// The map output that could not be fetched, if that was why: it is lost.
        lost: Option<(ChunkId, Attempt)>,
    },
}

/// What a worker reports about one assignment.
#[derive(Debug, PartialEq)]
pub enum Report {
    Done(ChunkOutput),
    Failed {
        error: String,
        /// False when running it again cannot help (an unknown operation, a cancelled job).
        retryable: bool,
    },
    /// Handed back unstarted: by a draining worker, or by one that could not read the chunk
    /// by reference (`unreadable` says why).
    Released {
        unreadable: Option<String>,
    },
}

/// What a worker sends its coordinator.
#[derive(Debug, PartialEq)]
pub enum FromWorker {
    Hello(WorkerHello),
    Heartbeat,
    /// It takes no more chunks; it finishes or hands back what it holds, then detaches.
    Draining,
    Report {
        key: AttemptKey,
        report: Report,
    },
    /// Rows of a reduce task's part, in order.
    PartRows {
        key: ReduceKey,
        rows: Vec<Row>,
    },
    Reduced {
        key: ReduceKey,
        report: ReduceReport,
    },
    /// The answer to a [`ToWorker::ListLocal`]: the files, or why they could not be listed.
    LocalListed {
        request: u64,
        result: Result<Vec<LocalFile>, String>,
    },
}

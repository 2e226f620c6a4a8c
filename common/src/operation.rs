//! The operation model: an [`Operation`] maps a chunk of whole records to a keyed [`Partial`];
//! partials merge associatively and commutatively ([`Partial::merge`], value by value); the
//! job's folded partial is finalized (settled, sorted, limited) once, at the coordinator.
//!
//! This is the trait to implement for a custom job: see `examples/` for a complete one.
//! Built-in operations implement it too and are found by name in a [`crate::registry::Registry`]; a custom build
//! registers its own factories in the registry it hands the coordinator and the worker. Both
//! reject a name they do not know, listing what they know.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::partial::{self, ChunkPartial, MergeError, Partial, Row, SortOrder};

/// Operation options by name, as given in the job spec.
pub type Options = BTreeMap<String, String>;

/// One chunk handed to [`Operation::map`]: whole records, decompressed, with where they came
/// from.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// The records, in file order.
    pub data: &'a [u8],
    /// The input file, as the coordinator resolved it: the document a record belongs to.
    pub path: &'a str,
    /// Byte offset of `data` in the file (0 for a whole file); in a compressed file, its
    /// offset in the decompressed stream (a compressed chunk is mapped block by block).
    pub start: u64,
    /// How many bytes at the front of `data` are the file's first record, not this chunk's:
    /// a CSV chunk after the first is read with its file's header row in front (or, with
    /// `header=false`, the row that sets the field count), so it parses as the whole file
    /// does. 0 for every other chunk.
    pub header: usize,
    /// Set when the chunk's result is no longer wanted (job cancelled, worker stopping).
    stop: Option<&'a AtomicBool>,
}

impl<'a> Chunk<'a> {
    pub fn new(data: &'a [u8], path: &'a str, start: u64) -> Self {
        Chunk {
            data,
            path,
            start,
            header: 0,
            stop: None,
        }
    }

    /// A chunk read as [`crate::chunker::read`] reads `range`: its file's first record in
    /// front when the range carries one.
    pub fn of_range(data: &'a [u8], path: &'a str, range: crate::chunker::ChunkRange) -> Self {
        Chunk {
            start: range.start - range.header,
            header: range.header as usize,
            ..Chunk::new(data, path, range.start)
        }
    }

    /// The same chunk, with a flag the caller sets when the result is no longer wanted.
    pub fn with_stop(self, stop: &'a AtomicBool) -> Self {
        Chunk {
            stop: Some(stop),
            ..self
        }
    }

    /// The records in `range` of this chunk's data, as a chunk of their own (same file, same
    /// stop flag).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Chunk<'a> {
        Chunk {
            data: &self.data[range.clone()],
            path: self.path,
            start: self.start + range.start as u64,
            header: self.header.saturating_sub(range.start).min(range.len()),
            stop: self.stop,
        }
    }

    /// Whether the map may give up: a long-running map (a child process) should check this.
    pub fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// What a chunk's map saw, beyond its partial. Counted into the job only for the attempt whose
/// partial is folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub records_in: u64,
    pub bytes_in: u64,
    /// Records skipped on purpose: unparsable, wrong shape, missing field, not a number,
    /// invalid UTF-8 where text is needed, or holding a NUL byte.
    pub bad_records: u64,
    /// Counters a job defines itself (`GROUP.NAME`), e.g. from a streaming mapper.
    pub user: BTreeMap<String, u64>,
}

impl ChunkStats {
    /// Counts one record; `good` says whether it was used.
    pub fn record(&mut self, good: bool) {
        self.records_in += 1;
        self.bad_records += u64::from(!good);
    }
}

/// Why a chunk's map failed. Input that cannot be read at all fails the chunk; a single bad
/// record never does (it is counted instead).
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("{0}")]
    Failed(String),
}

/// A job's result: its rows in output order, and how many there were before the limit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finalized {
    pub keys: u64,
    pub rows: Vec<Row>,
}

impl Finalized {
    /// The default result: every value settled, keys ordered bytewise (or by value), limited.
    pub fn sorted(partial: Partial, sort: SortOrder, limit: Option<u64>) -> Finalized {
        Finalized {
            keys: partial.len() as u64,
            rows: partial::finalize(partial, sort, limit),
        }
    }
}

/// A map-reduce operation over chunks of records.
///
/// Contract: `map` is a pure function of the chunk and the operation's options (it may run
/// more than once for the same chunk, on different workers: only one result is folded); every
/// value it emits merges associatively and commutatively with any other value the operation
/// emits under the same key; `finalize` alone decides the output order.
pub trait Operation: Send + Sync + 'static {
    /// Maps one chunk to its partial, folding locally, and counts what it saw in `stats`.
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError>;

    /// [`Operation::map`] straight to the form a partial travels in: what a worker sends. An
    /// operation that counts can build its count columns without a [`Partial`] in between (a
    /// key allocated, hashed and copied again per distinct key); the result must stand for
    /// the same partial as `map`'s.
    fn map_columns(
        &self,
        chunk: &Chunk<'_>,
        stats: &mut ChunkStats,
    ) -> Result<ChunkPartial, MapError> {
        Ok(self.map(chunk, stats)?.into_columns())
    }

    /// Turns the job's folded partial into result rows: settles each value, sorts, keeps the
    /// first `limit`. The default orders keys bytewise. Runs once, at the coordinator; an error
    /// fails the job.
    fn finalize(
        &self,
        partial: Partial,
        sort: SortOrder,
        limit: Option<u64>,
    ) -> Result<Finalized, MapError> {
        Ok(Finalized::sorted(partial, sort, limit))
    }

    /// What a partitioned job routes a key by: keys with the same partition key meet in one
    /// reduce task, whose [`Operation::finalize`] sees them together (it runs once per
    /// partition there). The whole key by default; an operation whose finalize relates keys
    /// to each other routes them by what they share (grep's matched lines, by file).
    fn partition_key<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        key
    }

    /// The partition of `key` among `reducers` in a partitioned job: by default a stable hash
    /// of [`Operation::partition_key`]. A range-partitioned operation (a total-order sort)
    /// overrides it with its split keys.
    fn partition(&self, key: &[u8], reducers: u32) -> u32 {
        crate::shuffle::partition_of(self.partition_key(key), reducers)
    }

    /// Whether [`Operation::finalize`] is the default one (values settled, keys in byte order
    /// or by value, limited): a reduce task may then merge its key-sorted segments in order
    /// instead of folding them into a partial and sorting it again. Off unless an operation
    /// says so, so an operation with its own finalize is never bypassed.
    fn finalizes_by_key(&self) -> bool {
        false
    }

    /// For an operation that [`Operation::finalizes_by_key`]: the key a result row shows for
    /// `key`, applied to each row after ordering and limiting (a field-sorted line shows the
    /// line, a histogram slot its bucket). The key itself by default.
    fn row_key(&self, key: Vec<u8>) -> Vec<u8> {
        key
    }

    /// Whether the coordinator should sample the input for split keys when it plans a
    /// partitioned job: it then passes `reducers - 1` of them in the option `splits`, which
    /// the operation must accept (spelled by `crate::shuffle::splits_option`, read back by
    /// `crate::shuffle::parse_splits`).
    fn range_partitioned(&self) -> bool {
        false
    }

    /// How a file's records are cut into chunks: at newlines by default; CSV at newlines
    /// outside quotes, with the header in front of each chunk ([`Chunk::header`]); or not at
    /// all. Compressed files and whole-file jobs are one chunk per file anyway.
    fn cut(&self, _path: &str) -> crate::chunker::Cut {
        crate::chunker::Cut::Lines
    }

    /// Whether the operation runs programs named in its options (streaming). A [`crate::registry::Registry`]
    /// builds such an operation only if programs are allowed.
    fn runs_programs(&self) -> bool {
        false
    }
}

/// A record whose map failed, isolated from the rest of its chunk in skip mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// Byte offset of the record in its input file.
    pub offset: u64,
    pub record: Vec<u8>,
    pub error: String,
}

/// Maps a chunk like [`Operation::map`], but when mapping fails (an error or a panic) it
/// bisects the chunk at record boundaries until each failing record stands alone, maps
/// everything else, and returns the failing records instead of failing. Bad records count in
/// `stats` as records in and as bad records.
pub fn map_isolating(
    operation: &dyn Operation,
    chunk: &Chunk,
    stats: &mut ChunkStats,
) -> Result<(Partial, Vec<BadRecord>), MergeError> {
    let mut partial = Partial::new();
    let mut bad = Vec::new();
    isolate(operation, chunk, stats, &mut partial, &mut bad)?;
    Ok((partial, bad))
}

fn isolate(
    operation: &dyn Operation,
    chunk: &Chunk,
    stats: &mut ChunkStats,
    partial: &mut Partial,
    bad: &mut Vec<BadRecord>,
) -> Result<(), MergeError> {
    let data = chunk.data;
    if data.is_empty() || chunk.stopped() {
        return Ok(()); // nothing to map, or the result is no longer wanted
    }
    let mut local = ChunkStats::default();
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        operation.map(chunk, &mut local)
    }));
    let error = match mapped {
        Ok(Ok(mapped)) => {
            stats.records_in += local.records_in;
            stats.bytes_in += local.bytes_in;
            stats.bad_records += local.bad_records;
            for (name, amount) in local.user {
                *stats.user.entry(name).or_default() += amount;
            }
            return partial.merge(mapped);
        }
        Ok(Err(e)) => e.to_string(),
        Err(panic) => format!("map panicked: {}", panic_message(panic.as_ref())),
    };
    // Ends of the records in `data`: just past each '\n', and the end.
    let ends: Vec<usize> = memchr::memchr_iter(b'\n', data)
        .map(|i| i + 1)
        .filter(|&end| end < data.len())
        .chain([data.len()])
        .collect();
    if ends.len() == 1 {
        stats.records_in += 1;
        stats.bytes_in += data.len() as u64;
        stats.bad_records += 1;
        bad.push(BadRecord {
            offset: chunk.start,
            record: data.to_vec(),
            error,
        });
        return Ok(());
    }
    let cut = ends[ends.len() / 2 - 1];
    let head = chunk.slice(0..cut);
    let tail = chunk.slice(cut..data.len());
    isolate(operation, &head, stats, partial, bad)?;
    isolate(operation, &tail, stats, partial, bad)
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Builds an operation from its options, rejecting options it does not take.
pub type Factory = fn(&Options) -> Result<Arc<dyn Operation>, SpecError>;

/// An operation name or option that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("unknown operation '{name}' (known: {})", known.join(", "))]
    UnknownOperation { name: String, known: Vec<String> },
    #[error("operation '{operation}': {message}")]
    BadOption { operation: String, message: String },
    #[error(
        "operation '{0}' runs arbitrary programs and this process does not allow that; \
         start it with --allow-streaming (FANFOLD_ALLOW_STREAMING=true)"
    )]
    ProgramsNotAllowed(String),
}

impl SpecError {
    /// An option of `operation` that cannot be used, and why.
    pub fn bad_option(operation: &str, message: impl Into<String>) -> Self {
        SpecError::BadOption {
            operation: operation.to_owned(),
            message: message.into(),
        }
    }
}

/// Fails if `options` holds a name outside `allowed`.
pub fn check_options(
    operation: &str,
    options: &Options,
    allowed: &[&str],
) -> Result<(), SpecError> {
    match options.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(SpecError::BadOption {
            operation: operation.to_owned(),
            message: if allowed.is_empty() {
                format!("takes no option, got '{key}'")
            } else {
                format!("unknown option '{key}' (known: {})", allowed.join(", "))
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts records, failing on any chunk that holds a record starting with "bad" and
    /// panicking on one starting with "boom".
    struct Picky;

    impl Operation for Picky {
        fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
            let mut partial = Partial::new();
            for line in chunk.data.split_inclusive(|&b| b == b'\n') {
                if line.starts_with(b"bad") {
                    return Err(MapError::Failed("cannot parse".into()));
                }
                assert!(!line.starts_with(b"boom"), "exploded");
                stats.records_in += 1;
                stats.bytes_in += line.len() as u64;
                let key = line.strip_suffix(b"\n").unwrap_or(line).to_vec();
                partial.add(key, crate::partial::Value::Count(1))?;
            }
            Ok(partial)
        }
    }

    #[test]
    fn isolating_finds_exactly_the_failing_records() {
        let chunk = b"a\nb\nbad 1\nc\nd\ne\nboom\nf\nbad 2";
        let mut stats = ChunkStats::default();
        let (partial, bad) =
            map_isolating(&Picky, &Chunk::new(chunk, "in", 100), &mut stats).unwrap();
        let found: Vec<(u64, &[u8], &str)> = bad
            .iter()
            .map(|b| (b.offset, b.record.as_slice(), b.error.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (104, &b"bad 1\n"[..], "cannot parse"),
                (116, &b"boom\n"[..], "map panicked: exploded"),
                (123, &b"bad 2"[..], "cannot parse"),
            ]
        );
        assert_eq!(partial.len(), 6, "a b c d e f");
        assert_eq!(stats.records_in, 9);
        assert_eq!(stats.bad_records, 3);
        assert_eq!(stats.bytes_in, chunk.len() as u64);
    }

    #[test]
    fn isolating_a_clean_chunk_maps_it_once() {
        let mut stats = ChunkStats::default();
        let (partial, bad) =
            map_isolating(&Picky, &Chunk::new(b"x\ny\n", "in", 0), &mut stats).unwrap();
        assert!(bad.is_empty());
        assert_eq!(
            (partial.len(), stats.records_in, stats.bad_records),
            (2, 2, 0)
        );
    }
}

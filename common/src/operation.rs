//! The operation model: map a chunk of whole records to a keyed [`Partial`]; partials merge
//! associatively ([`Partial::merge`]); the job's partial is finalized by sorting and limiting.
//!
//! Built-in operations implement [`Operation`] and are found by name in a [`Registry`]. A
//! custom build registers its own factories; the coordinator and the worker reject a name they
//! do not know, listing what they know.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::partial::{MergeError, Partial};

/// Operation options by name, as given in the job spec.
pub type Options = BTreeMap<String, String>;

/// What a chunk's map saw, beyond its partial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub records_in: u64,
    pub bytes_in: u64,
    pub bad_records: u64,
}

/// Why a chunk's map failed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("{0}")]
    Failed(String),
}

/// A map-reduce operation over chunks of newline-delimited records.
pub trait Operation: Send + Sync + 'static {
    /// Maps one chunk (whole records, in file order) to its partial, folding locally.
    fn map(&self, chunk: &[u8], stats: &mut ChunkStats) -> Result<Partial, MapError>;
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
/// everything else, and returns the failing records instead of failing. `base` is the chunk's
/// offset in its file. Bad records count in `stats` as records in and as bad records.
pub fn map_isolating(
    operation: &dyn Operation,
    chunk: &[u8],
    base: u64,
    stats: &mut ChunkStats,
) -> Result<(Partial, Vec<BadRecord>), MergeError> {
    let mut partial = Partial::new();
    let mut bad = Vec::new();
    isolate(operation, chunk, base, stats, &mut partial, &mut bad)?;
    Ok((partial, bad))
}

fn isolate(
    operation: &dyn Operation,
    data: &[u8],
    offset: u64,
    stats: &mut ChunkStats,
    partial: &mut Partial,
    bad: &mut Vec<BadRecord>,
) -> Result<(), MergeError> {
    if data.is_empty() {
        return Ok(());
    }
    let mut local = ChunkStats::default();
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        operation.map(data, &mut local)
    }));
    let error = match mapped {
        Ok(Ok(mapped)) => {
            stats.records_in += local.records_in;
            stats.bytes_in += local.bytes_in;
            stats.bad_records += local.bad_records;
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
            offset,
            record: data.to_vec(),
            error,
        });
        return Ok(());
    }
    let cut = ends[ends.len() / 2 - 1];
    isolate(operation, &data[..cut], offset, stats, partial, bad)?;
    isolate(
        operation,
        &data[cut..],
        offset + cut as u64,
        stats,
        partial,
        bad,
    )
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
}

/// Operations by name.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    /// The operations that ship with fanfold.
    pub fn builtin() -> Self {
        let mut registry = Self {
            factories: BTreeMap::new(),
        };
        registry.register(crate::wordcount::NAME, crate::wordcount::factory);
        registry
    }

    /// Adds (or replaces) an operation under `name`.
    pub fn register(&mut self, name: &str, factory: Factory) {
        self.factories.insert(name.to_owned(), factory);
    }

    pub fn names(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// Builds the named operation with its options.
    pub fn build(&self, name: &str, options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| SpecError::UnknownOperation {
                name: name.to_owned(),
                known: self.names(),
            })?;
        factory(options)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
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
        fn map(&self, chunk: &[u8], stats: &mut ChunkStats) -> Result<Partial, MapError> {
            let mut partial = Partial::new();
            for line in chunk.split_inclusive(|&b| b == b'\n') {
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
        let (partial, bad) = map_isolating(&Picky, chunk, 100, &mut stats).unwrap();
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
        let (partial, bad) = map_isolating(&Picky, b"x\ny\n", 0, &mut stats).unwrap();
        assert!(bad.is_empty());
        assert_eq!(
            (partial.len(), stats.records_in, stats.bad_records),
            (2, 2, 0)
        );
    }

    #[test]
    fn unknown_operation_lists_known_ones() {
        let err = Registry::builtin()
            .build("sort", &Options::new())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unknown operation 'sort' (known: wordcount)"
        );
    }
}

//! The shuffle's domain: which partition a key belongs to, and a map's output cut into
//! partitions sorted by key.
//!
//! A partitioned job's map keeps its output on the worker, one sorted segment per partition
//! (the file layout is the worker's); each reduce task fetches its partition from every map
//! output and merges them. The partitioner must route a key to the same partition on every
//! worker, build and run, whichever attempt mapped it, so it is FNV-1a (64 bit) of the key's
//! bytes, a published function with fixed constants, and never a seeded hasher.

use crate::partial::{ChunkPartial, Columns, Counts, MergeError, Partial, Value};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The partition of `key` among `reducers` (at least 1).
pub fn partition_of(key: &[u8], reducers: u32) -> u32 {
    (fnv1a(key) % u64::from(reducers.max(1))) as u32
}

/// One partition of a map's output: count values in columns and the other values as entries,
/// each sorted by key, as a chunk's partial travels (without the hash map).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Segment {
    pub counts: Counts,
    pub entries: Vec<(Vec<u8>, Value)>,
}

impl Segment {
    /// The segment as a partial to fold.
    pub fn into_chunk_partial(self) -> Result<ChunkPartial, MergeError> {
        Ok(ChunkPartial {
            entries: Partial::from_entries(self.entries)?,
            counts: self.counts,
        })
    }
}

/// Cuts a map's partial into `reducers` segments, each sorted by key: a key goes to
/// partition `partition(key)` (the operation's choice: [`partition_of`] its key by default).
pub fn partition(
    partial: Partial,
    reducers: u32,
    partition: impl Fn(&[u8]) -> u32,
) -> Vec<Segment> {
    let reducers = reducers.max(1);
    let mut parts: Vec<Vec<(Vec<u8>, Value)>> = (0..reducers).map(|_| Vec::new()).collect();
    for (key, value) in partial.into_entries() {
        let p = partition(&key).min(reducers - 1);
        parts[p as usize].push((key, value));
    }
    parts
        .into_iter()
        .map(|mut entries| {
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut columns = Columns::with_capacity(entries.len());
            let mut others = Vec::new();
            for (key, value) in entries {
                match value {
                    Value::Count(n) => columns.push(&key, n),
                    other => others.push((key, other)),
                }
            }
            Segment {
                counts: columns.finish(),
                entries: others,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn partitions_hold_every_key_once_sorted_and_by_partition() {
        let mut partial = Partial::new();
        for i in 0..1000u32 {
            let key = format!("k{}", i * 7919 % 1000).into_bytes();
            let value = if i % 3 == 0 {
                Value::Max(f64::from(i))
            } else {
                Value::Count(u64::from(i))
            };
            partial.add(key, value).unwrap();
        }
        let original = partial.clone();
        let parts = partition(partial, 7, |k| partition_of(k, 7));
        assert_eq!(parts.len(), 7);
        let mut seen = 0;
        for (p, part) in parts.into_iter().enumerate() {
            let keys: Vec<Vec<u8>> = part.counts.iter().map(|(k, _)| k.to_vec()).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "counts sorted by key");
            assert!(
                part.entries.windows(2).all(|w| w[0].0 < w[1].0),
                "entries sorted"
            );
            let whole = part.into_chunk_partial().unwrap().into_partial().unwrap();
            for (key, value) in whole.into_entries() {
                assert_eq!(partition_of(&key, 7), p as u32);
                assert_eq!(original.get(&key), Some(&value));
                seen += 1;
            }
        }
        assert_eq!(seen, original.len());
        // A caller's partition key routes by a part of the key.
        let mut grouped = Partial::new();
        grouped.add(b"doc\x00a".to_vec(), Value::Count(1)).unwrap();
        grouped.add(b"doc\x00b".to_vec(), Value::Count(1)).unwrap();
        let parts = partition(grouped, 5, |k| partition_of(&k[..3], 5));
        assert_eq!(parts.iter().filter(|p| !p.counts.is_empty()).count(), 1);
    }
}

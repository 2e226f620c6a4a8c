//! The shuffle's domain: which partition a key belongs to, and a map's output cut into
//! partitions sorted by key.
//!
//! A partitioned job's map keeps its output on the worker, one sorted segment per partition
//! (the file layout is the worker's); each reduce task fetches its partition from every map
//! output and merges them. The partitioner must route a key to the same partition on every
//! worker, build and run, whichever attempt mapped it, so it is FNV-1a (64 bit) of the key's
//! bytes, a published function with fixed constants, and never a seeded hasher.

use crate::partial::{
    self, ChunkPartial, Columns, Counts, MergeError, Partial, Row, SortOrder, Value,
};

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

/// Split keys as a range-partitioned operation's `splits` option spells them (see
/// [`crate::operation::Operation::range_partitioned`]): hex, comma separated, ascending.
pub fn splits_option(splits: &[Vec<u8>]) -> String {
    splits
        .iter()
        .map(|k| k.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(",")
}

/// The split keys of a `splits` option, or why it is malformed.
pub fn parse_splits(text: &str) -> Result<Vec<Vec<u8>>, &'static str> {
    fn unhex(text: &str) -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect()
    }
    let splits = text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(unhex)
        .collect::<Option<Vec<_>>>()
        .ok_or("splits must be hex keys")?;
    if splits.windows(2).any(|w| w[0] > w[1]) {
        return Err("splits must ascend");
    }
    Ok(splits)
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

/// Cuts a map's output as it travels into `reducers` segments, each sorted by key (see
/// [`partition`]). Count columns alone are cut and sorted as they are, borrowed: a million-key
/// chunk was turned into a `Partial` first, a key allocated and hashed into a map per
/// distinct key, then sorted by keys read from the heap at every comparison. Anything else
/// goes through [`partition`].
pub fn partition_chunk(
    chunk: ChunkPartial,
    reducers: u32,
    partition_of: impl Fn(&[u8]) -> u32,
) -> Result<Vec<Segment>, MergeError> {
    if !chunk.entries.is_empty() {
        return Ok(partition(chunk.into_partial()?, reducers, partition_of));
    }
    let reducers = reducers.max(1);
    let mut parts: Vec<Vec<(u64, &[u8], u64)>> = (0..reducers).map(|_| Vec::new()).collect();
    for (key, n) in chunk.counts.iter() {
        let p = partition_of(key).min(reducers - 1);
        parts[p as usize].push((partial::key_prefix(key), key, n));
    }
    Ok(parts
        .into_iter()
        .map(|mut counts| {
            // The prefix decides most comparisons without reading the key.
            counts.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            let mut columns = Columns::with_capacity(counts.len());
            for (_, key, n) in counts {
                columns.push(key, n);
            }
            Segment {
                counts: columns.finish(),
                entries: Vec::new(),
            }
        })
        .collect())
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
            entries.sort_unstable_by(|a, b| partial::key_order(&a.0, &b.0));
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

/// An item with its key's prefix.
fn prefixed(item: Item<'_>) -> (u64, Item<'_>) {
    (partial::key_prefix(item.key()), item)
}

/// One item of a segment during a merge: a count, or an entry by its index.
#[derive(Clone, Copy)]
enum Item<'a> {
    Count(&'a [u8], u64),
    Entry(&'a [u8], usize, usize),
}

impl<'a> Item<'a> {
    fn key(&self) -> &'a [u8] {
        match *self {
            Item::Count(key, _) | Item::Entry(key, _, _) => key,
        }
    }
}

/// A partition's result from its key-sorted segments, in key order: equal keys merged with
/// the operation's merge, values settled, then ordered and limited as the default finalize
/// does. Returns the keys before the limit and the rows. Each segment holds two sorted runs
/// (its count column and its entries); a stable sort of all items is a merge of those runs
/// (the standard library's sort detects them), so nothing is hashed or sorted from scratch.
pub fn merge_sorted(
    segments: Vec<Segment>,
    sort: SortOrder,
    limit: Option<u64>,
) -> Result<(u64, Vec<Row>), MergeError> {
    let mut rows = Vec::new();
    merge_runs(segments, |key, value| {
        rows.push(Row {
            key: key.to_vec(),
            value: value.settle(),
        });
        Ok(())
    })?;
    Ok(finish(rows, sort, limit))
}

/// The keys before the limit, and the rows of a partition (in key order) ordered and limited
/// as the default finalize does.
pub fn finish(mut rows: Vec<Row>, sort: SortOrder, limit: Option<u64>) -> (u64, Vec<Row>) {
    let keys = rows.len() as u64;
    let rows = match sort {
        SortOrder::Key => {
            if let Some(n) = limit {
                rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
            }
            rows
        }
        SortOrder::ValueDesc => {
            partial::order(rows, sort, limit, |a, b| partial::key_order(&a.key, &b.key))
        }
    };
    (keys, rows)
}

/// Merges key-sorted segments into one run: `each` gets every key once, in key order, with
/// its values merged (not settled: a run may be merged again). Equal keys merge in segment
/// order.
pub fn merge_runs(
    segments: Vec<Segment>,
    mut each: impl FnMut(&[u8], Value) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    // Entries' keys stay put (items borrow them); their values are taken once each.
    let mut counts = Vec::with_capacity(segments.len());
    let mut entry_keys: Vec<Vec<Vec<u8>>> = Vec::with_capacity(segments.len());
    let mut values: Vec<Vec<Option<Value>>> = Vec::with_capacity(segments.len());
    for segment in segments {
        let (keys, vals): (Vec<_>, Vec<_>) = segment
            .entries
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .unzip();
        counts.push(segment.counts);
        entry_keys.push(keys);
        values.push(vals);
    }
    let total = counts.iter().map(Counts::len).sum::<usize>()
        + entry_keys.iter().map(Vec::len).sum::<usize>();
    // Each item with its key's prefix, which decides most comparisons without reading the key.
    let mut items: Vec<(u64, Item<'_>)> = Vec::with_capacity(total);
    for (s, column) in counts.iter().enumerate() {
        items.extend(column.iter().map(|(key, n)| prefixed(Item::Count(key, n))));
        items.extend(
            entry_keys[s]
                .iter()
                .enumerate()
                .map(|(i, key)| prefixed(Item::Entry(key, s, i))),
        );
    }
    // Stable: equal keys keep their segment order, and sorted runs are merged, not re-sorted.
    items.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key().cmp(b.1.key())));
    let mut current = Coalesce::default();
    for (_, item) in items {
        let key = item.key();
        let value = match item {
            Item::Count(_, n) => Value::Count(n),
            Item::Entry(_, s, i) => values[s][i].take().expect("each entry is taken once"),
        };
        if let Some((k, v)) = current.push(key, value)? {
            each(k, v)?;
        }
    }
    if let Some((k, v)) = current.finish() {
        each(k, v)?;
    }
    Ok(())
}

/// Merges the values of equal keys that arrive one after another (in key order), so each key
/// is handed on once with its values merged in arrival order.
pub struct Coalesce<K> {
    current: Option<(K, Value)>,
}

impl<K: PartialEq> Default for Coalesce<K> {
    fn default() -> Self {
        Coalesce { current: None }
    }
}

impl<K: PartialEq> Coalesce<K> {
    /// Takes the next key and value; returns the key before it with its merged value once
    /// that key's run has ended.
    pub fn push(&mut self, key: K, value: Value) -> Result<Option<(K, Value)>, MergeError> {
        match &mut self.current {
            Some((k, v)) if *k == key => {
                v.merge(value)?;
                Ok(None)
            }
            _ => Ok(self.current.replace((key, value))),
        }
    }

    /// The last key and its merged value.
    pub fn finish(self) -> Option<(K, Value)> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_sorted_segments_finalizes_like_folding_them() {
        // Three maps' outputs over overlapping keys, counts and maxima, cut into partitions.
        let mut maps = Vec::new();
        for m in 0..3u32 {
            let mut partial = Partial::new();
            for i in 0..500u32 {
                let key = format!("k{}", (i * 31 + m * 7) % 400).into_bytes();
                let value = if i % 4 == 0 {
                    Value::Max(f64::from(i + m))
                } else {
                    Value::Count(u64::from(i))
                };
                // One key, one kind, in every map: counts under k-keys, maxima under m-keys.
                let key = if matches!(value, Value::Max(_)) {
                    [b"m".as_slice(), &key].concat()
                } else {
                    key
                };
                partial.add(key, value).unwrap();
            }
            maps.push(partial);
        }
        for partition_index in 0..3u32 {
            let segments: Vec<Segment> = maps
                .iter()
                .map(|p| {
                    partition(p.clone(), 3, |k| partition_of(k, 3)).remove(partition_index as usize)
                })
                .collect();
            let mut folded = Partial::new();
            for segment in segments.clone() {
                folded.fold(segment.into_chunk_partial().unwrap()).unwrap();
            }
            for (sort, limit) in [
                (SortOrder::Key, None),
                (SortOrder::Key, Some(5)),
                (SortOrder::ValueDesc, Some(7)),
            ] {
                let (keys, rows) = merge_sorted(segments.clone(), sort, limit).unwrap();
                assert_eq!(keys, folded.len() as u64);
                assert_eq!(
                    rows,
                    partial::finalize(folded.clone(), sort, limit),
                    "{sort:?} {limit:?}"
                );
            }
        }
    }

    #[test]
    fn count_columns_are_cut_as_their_partial_is() {
        // Keys that share their 8-byte prefix, or differ only past it or by a zero byte.
        let mut keys: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("user-{:06}", i * 7919 % 3000).into_bytes())
            .collect();
        keys.extend(
            [
                &b"ab"[..],
                b"ab\0",
                b"ab\0\0",
                b"",
                b"\0",
                b"abcdefgh",
                b"abcdefgh\0",
            ]
            .map(<[u8]>::to_vec),
        );
        let mut counts = Partial::new();
        for (i, key) in keys.iter().enumerate() {
            counts.add_count(key, i as u64 % 5 + 1).unwrap();
        }
        let mut mixed = counts.clone();
        mixed.add(b"max".to_vec(), Value::Max(2.0)).unwrap();
        for partial in [counts, mixed] {
            for reducers in [1, 3, 7] {
                let by = |k: &[u8]| partition_of(k, reducers);
                let cut = partition_chunk(partial.clone().into_columns(), reducers, by).unwrap();
                assert_eq!(cut, partition(partial.clone(), reducers, by), "{reducers}");
            }
        }
    }

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

//! Keyed partial results and their associative, commutative merge.
//!
//! A chunk maps to a [`Partial`]; workers' partials fold into the job's partial at the
//! coordinator in whatever order they arrive; [`finalize`] makes the output order deterministic
//! only at the end. Keys are raw bytes: input need not be UTF-8.
//!
//! Over 500 lines: the value kinds, their one merge and their settling into output belong
//! together, since every new kind must be added to all three.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::sketch::{ExactSum, Sketch};

mod folded;
pub use folded::{CountRows, Folded};

/// An aggregate value. Every variant's merge is associative and commutative; [`Value::settle`]
/// turns an aggregate into what the result shows (a sum's rounded value, a set's size, ...).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// How many times a key occurred.
    Count(u64),
    /// The exact sum of numbers.
    Sum(ExactSum),
    Min(f64),
    Max(f64),
    /// Sum and count, for the mean.
    Mean {
        sum: ExactSum,
        count: u64,
    },
    /// The exact set of values seen; settles to its size.
    Distinct(BTreeSet<Vec<u8>>),
    /// A HyperLogLog sketch of the values seen; settles to its estimate.
    Sketch(Box<Sketch>),
    /// Occurrences of each value; settles to the `k` most frequent.
    TopK {
        k: u32,
        counts: BTreeMap<Vec<u8>, u64>,
    },
    /// A sorted set of documents (an inverted index's posting list).
    Postings(BTreeSet<Vec<u8>>),
    /// Every value, in no particular order until settled (then sorted).
    Collect(Vec<Vec<u8>>),
    /// A text; of two texts under one key the bytewise smaller is kept.
    Text(Vec<u8>),
    /// A settled number (a sum, mean, min or max as the result shows it).
    Number(f64),
}

/// Two values of different kinds met under one key: the operation is inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot merge {left} with {right}")]
pub struct MergeError {
    pub left: &'static str,
    pub right: &'static str,
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Count(_) => "count",
            Value::Sum(_) => "sum",
            Value::Min(_) => "min",
            Value::Max(_) => "max",
            Value::Mean { .. } => "mean",
            Value::Distinct(_) => "distinct",
            Value::Sketch(_) => "sketch",
            Value::TopK { .. } => "topk",
            Value::Postings(_) => "postings",
            Value::Collect(_) => "collect",
            Value::Text(_) => "text",
            Value::Number(_) => "number",
        }
    }

    pub fn merge(&mut self, other: Value) -> Result<(), MergeError> {
        match (self, other) {
            (Value::Count(a), Value::Count(b)) => *a += b,
            (Value::Sum(a), Value::Sum(b)) => a.merge(&b),
            (Value::Min(a), Value::Min(b)) => *a = a.min(b),
            (Value::Max(a), Value::Max(b)) => *a = a.max(b),
            (Value::Mean { sum, count }, Value::Mean { sum: s2, count: c2 }) => {
                sum.merge(&s2);
                *count += c2;
            }
            (Value::Distinct(a), Value::Distinct(b)) | (Value::Postings(a), Value::Postings(b)) => {
                if b.len() > a.len() {
                    let small = std::mem::replace(a, b);
                    a.extend(small);
                } else {
                    a.extend(b);
                }
            }
            (Value::Sketch(a), Value::Sketch(b)) => a.merge(&b),
            (Value::TopK { k, counts }, Value::TopK { k: k2, counts: c2 }) => {
                *k = (*k).max(k2);
                for (value, n) in c2 {
                    *counts.entry(value).or_default() += n;
                }
            }
            (Value::Collect(a), Value::Collect(b)) => a.extend(b),
            (Value::Text(a), Value::Text(b)) => {
                if b < *a {
                    *a = b;
                }
            }
            (left, right) => {
                return Err(MergeError {
                    left: left.kind(),
                    right: right.kind(),
                });
            }
        }
        Ok(())
    }

    /// What the result shows: sums, means, minima and maxima become numbers, sets and
    /// sketches their sizes, top-k its `k` most frequent values (ties by value), collected
    /// values sorted. Settled values are final; deterministic whatever the fold order.
    pub fn settle(self) -> Value {
        match self {
            Value::Sum(sum) => Value::Number(sum.value()),
            Value::Min(x) | Value::Max(x) => Value::Number(x),
            Value::Mean { sum, count } => Value::Number(sum.value() / count.max(1) as f64),
            Value::Distinct(set) => Value::Count(set.len() as u64),
            Value::Sketch(sketch) => Value::Count(sketch.estimate()),
            Value::TopK { k, counts } => {
                let mut top: Vec<(Vec<u8>, u64)> = counts.into_iter().collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                top.truncate(k as usize);
                Value::TopK {
                    k,
                    counts: top.into_iter().collect(),
                }
            }
            Value::Collect(mut values) => {
                values.sort_unstable();
                Value::Collect(values)
            }
            other => other,
        }
    }

    /// The ordering of `--sort value` (larger first): numbers by value, sets and lists by
    /// size, top-k by its largest count, text bytewise. Kinds never mix within one job.
    pub fn cmp_value(&self, other: &Value) -> Ordering {
        fn magnitude(v: &Value) -> Option<f64> {
            Some(match v {
                Value::Count(n) => *n as f64,
                Value::Number(x) | Value::Min(x) | Value::Max(x) => *x,
                Value::Sum(s) => s.value(),
                Value::Mean { sum, count } => sum.value() / (*count).max(1) as f64,
                Value::Distinct(s) | Value::Postings(s) => s.len() as f64,
                Value::Sketch(s) => s.estimate() as f64,
                Value::TopK { counts, .. } => counts.values().copied().max().unwrap_or(0) as f64,
                Value::Collect(v) => v.len() as f64,
                Value::Text(_) => return None,
            })
        }
        match (self, other) {
            (Value::Count(a), Value::Count(b)) => a.cmp(b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            _ => match (magnitude(self), magnitude(other)) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            },
        }
    }
}

/// Keys with their aggregated values; each key at most once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partial {
    entries: FxHashMap<Vec<u8>, Value>,
}

impl Partial {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty partial with room for `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Partial {
            entries: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.entries.get(key)
    }

    /// Adds one value under a key, merging with what is there.
    pub fn add(&mut self, key: Vec<u8>, value: Value) -> Result<(), MergeError> {
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut slot) => slot.get_mut().merge(value),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
        }
    }

    /// The value under `key`, inserting `make()` first if there is none: lets a map update an
    /// aggregate in place instead of building and merging one value per record.
    pub fn value_mut(&mut self, key: &[u8], make: impl FnOnce() -> Value) -> &mut Value {
        if !self.entries.contains_key(key) {
            self.entries.insert(key.to_vec(), make());
        }
        self.entries.get_mut(key).expect("just inserted")
    }

    /// Folds another partial into this one. The smaller map is folded into the larger.
    pub fn merge(&mut self, mut other: Partial) -> Result<(), MergeError> {
        if other.entries.len() > self.entries.len() {
            std::mem::swap(&mut self.entries, &mut other.entries);
        }
        for (key, value) in other.entries {
            self.add(key, value)?;
        }
        Ok(())
    }

    /// Folds another partial into this one and leaves it as it is: its values are cloned.
    pub fn merge_ref(&mut self, other: &Partial) -> Result<(), MergeError> {
        for (key, value) in &other.entries {
            match self.entries.get_mut(key) {
                Some(slot) => slot.merge(value.clone())?,
                None => {
                    self.entries.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(())
    }

    /// Builds a partial from entries, merging repeated keys.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Vec<u8>, Value)>,
    ) -> Result<Partial, MergeError> {
        let mut partial = Partial::new();
        for (key, value) in entries {
            partial.add(key, value)?;
        }
        Ok(partial)
    }

    pub fn into_entries(self) -> impl Iterator<Item = (Vec<u8>, Value)> {
        self.entries.into_iter()
    }

    /// Adds `n` to the count under `key`; allocates only for a key not yet here.
    pub fn add_count(&mut self, key: &[u8], n: u64) -> Result<(), MergeError> {
        match self.entries.get_mut(key) {
            Some(value) => value.merge(Value::Count(n)),
            None => {
                self.entries.insert(key.to_vec(), Value::Count(n));
                Ok(())
            }
        }
    }

    /// Folds a chunk's partial as it arrived: its entries, then its counts by borrowed key.
    pub fn fold(&mut self, chunk: ChunkPartial) -> Result<(), MergeError> {
        self.merge(chunk.entries)?;
        self.entries
            .reserve(chunk.counts.len().saturating_sub(self.entries.len()));
        for (key, n) in chunk.counts.iter() {
            self.add_count(key, n)?;
        }
        Ok(())
    }

    /// Splits off the count values into columns, for sending.
    pub fn into_columns(self) -> ChunkPartial {
        let mut entries = Partial::new();
        let mut columns = Columns::with_capacity(self.entries.len());
        for (key, value) in self.entries {
            match value {
                Value::Count(n) => columns.push(&key, n),
                other => {
                    entries.entries.insert(key, other);
                }
            }
        }
        ChunkPartial {
            entries,
            counts: columns.finish(),
        }
    }
}

/// A partial as it travels between processes: entries of any value, and count values in
/// columns ([`Counts`]). [`Partial::into_columns`] puts each key in one of the two; folding
/// merges a key found in both, as it would two partials.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkPartial {
    pub entries: Partial,
    pub counts: Counts,
}

impl ChunkPartial {
    /// The partial it stands for.
    pub fn into_partial(self) -> Result<Partial, MergeError> {
        let mut partial = Partial::new();
        partial.fold(self)?;
        Ok(partial)
    }
}

/// Count values in columns: the keys concatenated, each key's length, each key's count. They
/// fold into a [`Partial`] by borrowed key, so a key already there costs no allocation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    keys: Bytes,
    lengths: Vec<u32>,
    values: Vec<u64>,
}

/// The columns disagree: not as many lengths as counts, or lengths that do not add up to the
/// keys' bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{lengths} key lengths adding up to {sum} bytes, {values} counts, {bytes} key bytes")]
pub struct ColumnsError {
    pub lengths: usize,
    pub sum: u64,
    pub values: usize,
    pub bytes: usize,
}

impl Counts {
    pub fn new(keys: Bytes, lengths: Vec<u32>, values: Vec<u64>) -> Result<Counts, ColumnsError> {
        let sum: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        if lengths.len() != values.len() || sum != keys.len() as u64 {
            return Err(ColumnsError {
                lengths: lengths.len(),
                sum,
                values: values.len(),
                bytes: keys.len(),
            });
        }
        Ok(Counts {
            keys,
            lengths,
            values,
        })
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The keys' bytes, all together.
    pub fn key_bytes(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Each key and its count, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> {
        let mut at = 0;
        self.lengths
            .iter()
            .zip(&self.values)
            .map(move |(&len, &n)| {
                let key = &self.keys[at..at + len as usize];
                at += len as usize;
                (key, n)
            })
    }

    pub fn into_parts(self) -> (Bytes, Vec<u32>, Vec<u64>) {
        (self.keys, self.lengths, self.values)
    }
}

/// Builds [`Counts`] one key at a time.
#[derive(Default)]
pub struct Columns {
    keys: Vec<u8>,
    lengths: Vec<u32>,
    values: Vec<u64>,
}

impl Columns {
    /// Room for `keys` keys of a few bytes each.
    pub fn with_capacity(keys: usize) -> Self {
        Columns {
            keys: Vec::with_capacity(keys * 8),
            lengths: Vec::with_capacity(keys),
            values: Vec::with_capacity(keys),
        }
    }

    pub fn push(&mut self, key: &[u8], n: u64) {
        let len = u32::try_from(key.len()).expect("a key under 4 GiB");
        self.keys.extend_from_slice(key);
        self.lengths.push(len);
        self.values.push(n);
    }

    pub fn finish(self) -> Counts {
        Counts {
            keys: Bytes::from(self.keys),
            lengths: self.lengths,
            values: self.values,
        }
    }
}

/// How final rows are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Ascending by key bytes.
    #[default]
    Key,
    /// Descending by value, ties ascending by key.
    ValueDesc,
}

/// One output row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: Vec<u8>,
    pub value: Value,
}

/// Byte order of keys, as `a.cmp(b)`, but comparing the first eight bytes (zero-padded) as
/// one integer before calling `memcmp`: most keys differ there, and a sort of millions of
/// short keys spent a quarter of its time in `memcmp` calls. Where the padded prefixes are
/// equal, the whole keys decide (so `ab` still sorts before `ab\0`).
pub fn key_order(a: &[u8], b: &[u8]) -> Ordering {
    key_prefix(a).cmp(&key_prefix(b)).then_with(|| a.cmp(b))
}

/// A key's first eight bytes, zero-padded, as a big-endian integer: ordered as the keys are,
/// except where it is equal. Without a variable-length copy, which compiled to a `memcpy`
/// call per comparison.
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    if let Some(head) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    key.iter()
        .enumerate()
        .fold(0, |p, (i, &b)| p | u64::from(b) << (56 - 8 * i))
}

/// Orders a job's folded partial and keeps the first `limit` rows.
pub fn finalize(partial: Partial, sort: SortOrder, limit: Option<u64>) -> Vec<Row> {
    let rows = partial
        .into_entries()
        .map(|(key, value)| Row {
            key,
            value: value.settle(),
        })
        .collect();
    match (sort, limit) {
        (SortOrder::Key, None) => in_key_order(rows),
        _ => order(rows, sort, limit, |a, b| key_order(&a.key, &b.key)),
    }
}

/// Rows in [`key_order`]: their key prefixes and places are sorted, and each row is then
/// moved once into its place. Sorting the rows themselves moved every row (a key and a value,
/// over 60 bytes) a few dozen times: for a million rows, most of a finalize.
fn in_key_order(rows: Vec<Row>) -> Vec<Row> {
    let mut places: Vec<(u64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (key_prefix(&row.key), i))
        .collect();
    places.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| rows[a.1].key.cmp(&rows[b.1].key))
    });
    let mut rows: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
    places
        .into_iter()
        .map(|(_, i)| rows[i].take().expect("each place once"))
        .collect()
}

/// Sorts rows (by `by_key`, or by value descending with `by_key` breaking ties) and keeps the
/// first `limit`. Operations whose keys do not sort bytewise pass their own key order.
pub fn order(
    mut rows: Vec<Row>,
    sort: SortOrder,
    limit: Option<u64>,
    by_key: impl Fn(&Row, &Row) -> Ordering,
) -> Vec<Row> {
    let compare = |a: &Row, b: &Row| match sort {
        SortOrder::Key => by_key(a, b),
        SortOrder::ValueDesc => b.value.cmp_value(&a.value).then_with(|| by_key(a, b)),
    };
    first_in_order(&mut rows, limit, compare);
    rows
}

/// Keeps the first `limit` of `items` in `compare`'s order, sorted; only those are ordered.
pub(crate) fn first_in_order<T>(
    items: &mut Vec<T>,
    limit: Option<u64>,
    mut compare: impl FnMut(&T, &T) -> Ordering,
) {
    let limit = limit.map_or(items.len(), |n| usize::try_from(n).unwrap_or(usize::MAX));
    if limit < items.len() {
        if limit > 0 {
            items.select_nth_unstable_by(limit - 1, &mut compare);
        }
        items.truncate(limit);
    }
    items.sort_unstable_by(compare);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> Partial {
        Partial::from_entries(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), Value::Count(*v))),
        )
        .unwrap()
    }

    #[test]
    fn columns_fold_like_entries_and_mixed_values_keep_their_kind() {
        let mut mixed = counts(&[("a", 1), ("", 7), ("longer than sixteen bytes", 2)]);
        mixed.add(b"m".to_vec(), Value::Max(2.5)).unwrap();
        let sent = mixed.clone().into_columns();
        assert_eq!(sent.counts.len(), 3);
        assert_eq!(sent.entries.get(b"m"), Some(&Value::Max(2.5)));
        assert_eq!(sent.entries.len(), 1);
        assert_eq!(sent.clone().into_partial().unwrap(), mixed);
        // Folding the columns adds to what is there, allocating only new keys.
        let mut folded = counts(&[("a", 10), ("z", 1)]);
        let mut by_ref = Folded::new();
        by_ref.fold(folded.clone().into_columns()).unwrap();
        by_ref.fold_ref(&sent).unwrap();
        folded.fold(sent).unwrap();
        assert_eq!(
            by_ref.into_partial(),
            folded,
            "folding by reference folds the same"
        );
        let mut expected = counts(&[
            ("a", 11),
            ("", 7),
            ("longer than sixteen bytes", 2),
            ("z", 1),
        ]);
        expected.add(b"m".to_vec(), Value::Max(2.5)).unwrap();
        assert_eq!(folded, expected);
        // A count column cannot fold into a key holding another kind.
        let mut other = Partial::new();
        other.add(b"a".to_vec(), Value::Min(1.0)).unwrap();
        assert!(other.fold(counts(&[("a", 1)]).into_columns()).is_err());
    }

    #[test]
    fn columns_that_disagree_are_rejected() {
        let ok = Counts::new(Bytes::from_static(b"abcd"), vec![1, 3], vec![5, 6]).unwrap();
        let pairs: Vec<(&[u8], u64)> = ok.iter().collect();
        assert_eq!(pairs, [(&b"a"[..], 5), (&b"bcd"[..], 6)]);
        assert!(Counts::new(Bytes::from_static(b"abcd"), vec![1, 2], vec![5, 6]).is_err());
        assert!(Counts::new(Bytes::from_static(b"abc"), vec![1, 2], vec![5]).is_err());
        assert!(Counts::new(Bytes::new(), vec![u32::MAX, 1], vec![1, 1]).is_err());
    }

    #[test]
    fn merge_is_order_independent() {
        let parts = [
            counts(&[("a", 1), ("b", 2)]),
            counts(&[("b", 3), ("c", 4)]),
            counts(&[("a", 5)]),
        ];
        let mut forward = Partial::new();
        for p in parts.clone() {
            forward.merge(p).unwrap();
        }
        let mut backward = Partial::new();
        for p in parts.into_iter().rev() {
            backward.merge(p).unwrap();
        }
        assert_eq!(forward, backward);
        assert_eq!(forward, counts(&[("a", 6), ("b", 5), ("c", 4)]));
    }

    #[test]
    fn key_order_is_byte_order() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"ab",
            b"ab\0",
            b"ab\0\0\0\0\0\0\0",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefgi",
            b"b",
            b"\xff",
            b"\xff\xff",
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(key_order(a, b), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn finalize_sorts_and_limits() {
        let p = counts(&[("d", 1), ("a", 3), ("c", 3), ("b", 7)]);
        let keys = |rows: Vec<Row>| -> Vec<String> {
            rows.into_iter()
                .map(|row| String::from_utf8(row.key).unwrap())
                .collect()
        };
        assert_eq!(
            keys(finalize(p.clone(), SortOrder::Key, None)),
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            keys(finalize(p.clone(), SortOrder::ValueDesc, None)),
            ["b", "a", "c", "d"]
        );
        assert_eq!(
            keys(finalize(p.clone(), SortOrder::ValueDesc, Some(2))),
            ["b", "a"]
        );
        assert_eq!(
            keys(finalize(p.clone(), SortOrder::Key, Some(0))),
            Vec::<String>::new()
        );
        assert_eq!(keys(finalize(p, SortOrder::Key, Some(10))).len(), 4);
    }

    proptest::proptest! {
        /// Finalized rows come in the order a plain sort of the keys gives, keys sharing
        /// their first eight bytes (zero bytes and all) included.
        #[test]
        fn finalized_rows_are_in_byte_order(
            keys in proptest::collection::btree_set(
                proptest::collection::vec(proptest::prop_oneof![
                    proptest::strategy::Just(0u8),
                    proptest::strategy::Just(b'a'),
                    proptest::strategy::Just(0xff),
                ], 0..12),
                0..200,
            )
        ) {
            let partial = Partial::from_entries(
                keys.iter().map(|k| (k.clone(), Value::Count(k.len() as u64))),
            )
            .unwrap();
            let mut want: Vec<Vec<u8>> = keys.into_iter().collect();
            want.sort();
            let rows = finalize(partial, SortOrder::Key, None);
            proptest::prop_assert!(rows.iter().all(|r| r.value == Value::Count(r.key.len() as u64)));
            let got: Vec<Vec<u8>> = rows.into_iter().map(|r| r.key).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}

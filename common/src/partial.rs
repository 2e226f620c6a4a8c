//! Keyed partial results and their associative, commutative merge.
//!
//! A chunk maps to a [`Partial`]; workers' partials fold into the job's partial at the
//! coordinator in whatever order they arrive; [`finalize`] makes the output order deterministic
//! only at the end. Keys are raw bytes: input need not be UTF-8.

use std::cmp::Ordering;

use rustc_hash::FxHashMap;

/// An aggregate value. Every variant's merge is associative and commutative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// How many times a key occurred.
    Count(u64),
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
        }
    }

    pub fn merge(&mut self, other: Value) -> Result<(), MergeError> {
        match (self, other) {
            (Value::Count(a), Value::Count(b)) => *a += b,
        }
        Ok(())
    }

    /// Output order of values: larger first under [`SortOrder::ValueDesc`].
    fn cmp_value(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Count(a), Value::Count(b)) => a.cmp(b),
        }
    }
}

/// Keys with their aggregated values; each key at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partial {
    entries: FxHashMap<Vec<u8>, Value>,
}

impl Partial {
    pub fn new() -> Self {
        Self::default()
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<u8>,
    pub value: Value,
}

/// Orders a job's folded partial and keeps the first `limit` rows.
pub fn finalize(partial: Partial, sort: SortOrder, limit: Option<u64>) -> Vec<Row> {
    let mut rows: Vec<Row> = partial
        .into_entries()
        .map(|(key, value)| Row { key, value })
        .collect();
    let limit = limit.map_or(rows.len(), |n| usize::try_from(n).unwrap_or(usize::MAX));
    let compare = |a: &Row, b: &Row| match sort {
        SortOrder::Key => a.key.cmp(&b.key),
        SortOrder::ValueDesc => b.value.cmp_value(&a.value).then_with(|| a.key.cmp(&b.key)),
    };
    if limit < rows.len() {
        // Only the first `limit` rows need ordering.
        if limit > 0 {
            rows.select_nth_unstable_by(limit - 1, compare);
        }
        rows.truncate(limit);
    }
    rows.sort_unstable_by(compare);
    rows
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
}

//! The partial a job folds its chunks into at the coordinator: count columns into a table
//! that keeps a short key inside its slot, every other value into a [`Partial`]. It becomes
//! one `Partial` once, when the job is finalized, unless it holds counts alone and the
//! operation finalizes by key: then its rows come straight from the table ([`CountRows`]).
//!
//! Folding a million-key count into `Partial`'s map cost a pointer to follow (the key's own
//! allocation, somewhere on the heap) on every lookup and an allocation per new key; with the
//! key in the slot beside its full hash, a lookup reads one slot, and the chunks' keys, sent
//! in the same hash's order, land in neighbouring slots.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxBuildHasher;

use super::{ChunkPartial, Counts, MergeError, Partial, SortOrder, Value, key_order};

/// Keys this long or shorter live in their slot; longer ones in [`CountTable::long`].
const INLINE: usize = 12;

/// One key's count.
#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    count: u64,
    len: u32,
    /// The key if it is short, else its offset in the long keys (first 8 bytes).
    key: [u8; INLINE],
}

impl Slot {
    fn key<'a>(&'a self, long: &'a [u8]) -> &'a [u8] {
        let len = self.len as usize;
        if len <= INLINE {
            &self.key[..len]
        } else {
            let at = u64::from_le_bytes(self.key[..8].try_into().expect("8 bytes")) as usize;
            &long[at..at + len]
        }
    }
}

/// Counts by key.
#[derive(Default)]
struct CountTable {
    slots: HashTable<Slot>,
    /// The keys longer than [`INLINE`], one after another.
    long: Vec<u8>,
}

impl CountTable {
    fn add(&mut self, key: &[u8], n: u64) {
        let hash = FxBuildHasher.hash_one(key);
        let CountTable { slots, long } = self;
        let same = |s: &Slot| s.hash == hash && s.key(long) == key;
        match slots.entry(hash, same, |s| s.hash) {
            Entry::Occupied(mut slot) => slot.get_mut().count += n,
            Entry::Vacant(vacant) => {
                let mut slot = Slot {
                    hash,
                    count: n,
                    len: u32::try_from(key.len()).expect("a key under 4 GiB"),
                    key: [0; INLINE],
                };
                if key.len() <= INLINE {
                    slot.key[..key.len()].copy_from_slice(key);
                } else {
                    slot.key[..8].copy_from_slice(&(long.len() as u64).to_le_bytes());
                    long.extend_from_slice(key);
                }
                vacant.insert(slot);
            }
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        let hash = FxBuildHasher.hash_one(key);
        self.slots
            .find(hash, |s| s.hash == hash && s.key(&self.long) == key)
            .is_some()
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// A job's partial as its chunks fold in.
#[derive(Default)]
pub struct Folded {
    counts: CountTable,
    /// Every value that is not a count.
    rest: Partial,
}

impl Folded {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys folded so far.
    pub fn len(&self) -> usize {
        self.counts.len() + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds a chunk's partial as it arrived.
    pub fn fold(&mut self, chunk: ChunkPartial) -> Result<(), MergeError> {
        self.check_apart(&chunk)?;
        self.rest.merge(chunk.entries)?;
        self.add_counts(&chunk.counts);
        Ok(())
    }

    /// Folds a chunk's partial and leaves it as it is (its entries' values are cloned).
    pub fn fold_ref(&mut self, chunk: &ChunkPartial) -> Result<(), MergeError> {
        self.check_apart(chunk)?;
        self.rest.merge_ref(&chunk.entries)?;
        self.add_counts(&chunk.counts);
        Ok(())
    }

    fn add_counts(&mut self, counts: &Counts) {
        self.counts
            .slots
            .reserve(counts.len().saturating_sub(self.counts.len()), |s| s.hash);
        for (key, n) in counts.iter() {
            self.counts.add(key, n);
        }
    }

    /// Fails, as merging would, if a key would hold a count in one table and another kind of
    /// value in the other. (Rare, so checked only while both have keys.)
    fn check_apart(&self, chunk: &ChunkPartial) -> Result<(), MergeError> {
        let clash = |value: &Value| MergeError {
            left: "count",
            right: value.kind(),
        };
        if self.counts.len() > 0 {
            for (key, value) in &chunk.entries.entries {
                if self.counts.contains(key) {
                    return Err(clash(value));
                }
            }
        }
        if !self.rest.is_empty() {
            for (key, _) in chunk.counts.iter() {
                if let Some(value) = self.rest.get(key) {
                    return Err(clash(value));
                }
            }
        }
        // Within the chunk a key is in one of the two (`Partial::into_columns`); where it is
        // in both anyway, the counts' kind decides, as folding it into a `Partial` would.
        if !chunk.entries.is_empty() {
            for (key, _) in chunk.counts.iter() {
                if let Some(value) = chunk.entries.get(key) {
                    return Err(clash(value));
                }
            }
        }
        Ok(())
    }

    /// The partial it all folded into.
    pub fn into_partial(self) -> Partial {
        let Folded { counts, mut rest } = self;
        rest.entries.reserve(counts.len());
        for slot in counts.slots.iter() {
            rest.entries
                .insert(slot.key(&counts.long).to_vec(), Value::Count(slot.count));
        }
        rest
    }

    /// The rows of a partial of counts alone, as the default finalize orders and limits them
    /// (bytewise by key, or by count descending with ties by key), taken from the table: no
    /// `Partial` is built and no key is copied until a row is read. Gives `self` back if
    /// anything but counts was folded.
    pub fn into_count_rows(self, sort: SortOrder, limit: Option<u64>) -> Result<CountRows, Folded> {
        if !self.rest.is_empty() {
            return Err(self);
        }
        let CountTable { slots, long } = self.counts;
        let mut slots: Vec<Slot> = slots.into_iter().collect();
        let keys = slots.len() as u64;
        let by_key = |a: &Slot, b: &Slot| key_order(a.key(&long), b.key(&long));
        let compare = |a: &Slot, b: &Slot| match sort {
            SortOrder::Key => by_key(a, b),
            SortOrder::ValueDesc => b.count.cmp(&a.count).then_with(|| by_key(a, b)),
        };
        super::first_in_order(&mut slots, limit, compare);
        Ok(CountRows { slots, long, keys })
    }
}

/// A finalized count result, in its order: see [`Folded::into_count_rows`].
pub struct CountRows {
    slots: Vec<Slot>,
    long: Vec<u8>,
    keys: u64,
}

impl CountRows {
    /// Keys before the limit.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Rows after it.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The bytes of the rows' keys.
    pub fn key_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.len as usize).sum()
    }

    /// Each row's key and count, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.slots.iter().map(|s| (s.key(&self.long), s.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl Folded {
        /// The partial `into_partial` would give, leaving `self` as it is.
        fn clone_partial(&self) -> Partial {
            let mut copy = Folded {
                counts: CountTable {
                    slots: self.counts.slots.clone(),
                    long: self.counts.long.clone(),
                },
                rest: Partial::new(),
            };
            copy.rest
                .merge_ref(&self.rest)
                .expect("an empty partial takes anything");
            copy.into_partial()
        }
    }

    /// A chunk's partial: counts over keys from 0 to 20 bytes (around the inline length),
    /// and maybe a few sums.
    fn chunk() -> impl Strategy<Value = ChunkPartial> {
        let key = prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8)], 0..20);
        (
            prop::collection::vec((key.clone(), 1..5u64), 0..40),
            prop::collection::vec((key, -5.0..5.0f64), 0..3),
        )
            .prop_map(|(counts, sums)| {
                let mut partial = Partial::new();
                for (key, n) in counts {
                    partial.add_count(&key, n).unwrap();
                }
                for (key, x) in sums {
                    let mut sum = crate::sketch::ExactSum::new();
                    sum.add(x);
                    if !partial.entries.contains_key(&key) {
                        partial.add(key, Value::Sum(sum)).unwrap();
                    }
                }
                partial.into_columns()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Folding chunks here gives what folding them into one `Partial` gives, the same
        /// clash of kinds included.
        #[test]
        fn folds_as_a_partial_does(chunks in prop::collection::vec(chunk(), 1..6), by_ref: bool) {
            let mut want = Ok(Partial::new());
            let mut folded = Ok(Folded::new());
            for chunk in chunks {
                if let (Ok(w), Ok(f)) = (&mut want, &mut folded) {
                    let fold = if by_ref { f.fold_ref(&chunk) } else { f.fold(chunk.clone()) };
                    if let Err(e) = w.fold(chunk) {
                        want = Err(e);
                    }
                    if fold.is_err() {
                        folded = Err(());
                    }
                }
            }
            match (want, folded) {
                (Ok(want), Ok(folded)) => prop_assert_eq!(folded.into_partial(), want),
                (Err(_), Err(())) => {}
                (want, folded) => prop_assert!(false, "{:?} vs {}", want.err(), folded.is_ok()),
            }
        }

        /// Rows taken from the table are the default finalize's rows of the same partial, in
        /// either order, with or without a limit; anything but counts is refused.
        #[test]
        fn count_rows_are_the_finalized_rows(
            chunks in prop::collection::vec(chunk(), 1..6),
            by_value: bool,
            limit in prop::option::of(0..50u64),
        ) {
            let mut folded = Folded::new();
            for chunk in chunks {
                if folded.fold(chunk).is_err() {
                    return Ok(());
                }
            }
            let sort = if by_value { SortOrder::ValueDesc } else { SortOrder::Key };
            let only_counts = folded.rest.is_empty();
            let want_keys = folded.len() as u64;
            let want = super::super::finalize(folded.clone_partial(), sort, limit);
            match folded.into_count_rows(sort, limit) {
                Ok(rows) => {
                    prop_assert!(only_counts);
                    prop_assert_eq!(rows.keys(), want_keys);
                    prop_assert_eq!(rows.len(), want.len());
                    let got: Vec<(Vec<u8>, Value)> =
                        rows.iter().map(|(k, n)| (k.to_vec(), Value::Count(n))).collect();
                    let want: Vec<(Vec<u8>, Value)> =
                        want.into_iter().map(|r| (r.key, r.value)).collect();
                    prop_assert_eq!(got, want);
                }
                Err(back) => {
                    prop_assert!(!only_counts);
                    prop_assert_eq!(back.len() as u64, want_keys);
                }
            }
        }
    }
}

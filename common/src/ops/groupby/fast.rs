//! A chunk's groups: one table whose keys live in one arena, each key hashed once per record.
//! Group-by groups in it, and distinct counts its values in it.
//! A count's groups leave as the columns a worker sends, copied there once; other aggregates
//! as entries of a [`Partial`]. Against a `HashMap<Vec<u8>, Value>` this saves a lookup per
//! record and, for counts, an allocation per group.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxBuildHasher;

use crate::partial::{ChunkPartial, Columns, Counts, Partial, Value};

/// Where a group's key is in the arena, and its index in the aggregates.
struct Slot {
    hash: u64,
    start: usize,
    len: u32,
    index: u32,
}

/// The groups of one chunk.
pub(crate) struct Groups {
    slots: HashTable<Slot>,
    /// Every group's key, in first-seen order.
    keys: Vec<u8>,
    /// Each group's count, when counting.
    counts: Vec<u64>,
    /// Each group's aggregate otherwise.
    values: Vec<Value>,
    counting: bool,
}

/// A group's aggregate, to update.
pub(crate) enum Group<'a> {
    Count(&'a mut u64),
    Value(&'a mut Value),
}

impl Groups {
    /// Groups that count (`counting`) or hold any other aggregate.
    pub(crate) fn new(counting: bool) -> Self {
        Groups {
            slots: HashTable::with_capacity(256),
            keys: Vec::new(),
            counts: Vec::new(),
            values: Vec::new(),
            counting,
        }
    }

    /// The group of `key`, made if it is new (with `start()` as its aggregate, unless
    /// counting).
    pub(crate) fn group(&mut self, key: &[u8], start: impl FnOnce() -> Value) -> Group<'_> {
        let hash = FxBuildHasher.hash_one(key);
        let groups = self.counts.len() + self.values.len();
        let Groups { slots, keys, .. } = self;
        let same = |s: &Slot| s.len as usize == key.len() && &keys[s.start..][..key.len()] == key;
        let index = match slots.entry(hash, same, |s| s.hash) {
            Entry::Occupied(slot) => slot.get().index as usize,
            Entry::Vacant(vacant) => {
                vacant.insert(Slot {
                    hash,
                    start: keys.len(),
                    len: u32::try_from(key.len()).expect("a key under 4 GiB"),
                    index: u32::try_from(groups).expect("under 4 billion groups in a chunk"),
                });
                keys.extend_from_slice(key);
                if self.counting {
                    self.counts.push(0);
                } else {
                    self.values.push(start());
                }
                groups
            }
        };
        if self.counting {
            Group::Count(&mut self.counts[index])
        } else {
            Group::Value(&mut self.values[index])
        }
    }

    /// Adds one to the count of `key` (groups that count).
    pub(crate) fn count(&mut self, key: &[u8]) {
        debug_assert!(self.counting);
        if let Group::Count(n) = self.group(key, || Value::Count(0)) {
            *n += 1;
        }
    }

    /// The chunk's partial as it travels: counts in columns, other aggregates as entries,
    /// either way in the table's order, which is hash order. The coordinator folds them into a
    /// table hashed the same way, so consecutive keys land in neighbouring buckets: folding a
    /// million keys in first-seen order instead (the arena as it is, without this copy) was
    /// slower by more than the copy, every lookup a cache miss.
    pub(crate) fn finish(self) -> ChunkPartial {
        let key = |s: &Slot| &self.keys[s.start..][..s.len as usize];
        if self.counting {
            let mut columns = Columns::with_capacity(self.counts.len());
            for slot in self.slots.iter() {
                columns.push(key(slot), self.counts[slot.index as usize]);
            }
            return ChunkPartial {
                entries: Partial::new(),
                counts: columns.finish(),
            };
        }
        let mut values = self.values;
        let mut entries = Partial::with_capacity(values.len());
        for slot in self.slots.iter() {
            // Each group is moved out once; what is left in its place is never read.
            let value = std::mem::replace(&mut values[slot.index as usize], Value::Count(0));
            entries
                .add(key(slot).to_vec(), value)
                .expect("each key once in a chunk's groups");
        }
        ChunkPartial {
            entries,
            counts: Counts::default(),
        }
    }
}

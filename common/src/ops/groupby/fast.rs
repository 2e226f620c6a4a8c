//! A chunk's groups: one table whose keys live in one arena, each key hashed once per record.
//! A count's groups leave as the columns a worker sends, copied there once; other aggregates
//! as entries of a [`Partial`]. Against a `HashMap<Vec<u8>, Value>` this saves a lookup per
//! record and, for counts, an allocation per group.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxBuildHasher;

use crate::partial::{ChunkPartial, Columns, Counts, Partial, Value};

/// Where a group's arena key is, and its index in the aggregates.
struct Slot {
    hash: u64,
    start: usize,
    len: u32,
    index: u32,
}

/// The groups of one chunk.
pub(super) struct Groups {
    slots: HashTable<Slot>,
    /// Every group's key, in first-seen order.
    keys: Vec<u8>,
    lengths: Vec<u32>,
    /// Each group's count, when counting.
    counts: Vec<u64>,
    /// Each group's aggregate otherwise; `None` until its first record sets it.
    values: Vec<Option<Value>>,
    counting: bool,
}

/// A group's aggregate, to update.
pub(super) enum Group<'a> {
    Count(&'a mut u64),
    Value(&'a mut Option<Value>),
}

impl Groups {
    /// Groups that count (`counting`) or hold any other aggregate.
    pub(super) fn new(counting: bool) -> Self {
        Groups {
            slots: HashTable::with_capacity(256),
            keys: Vec::new(),
            lengths: Vec::new(),
            counts: Vec::new(),
            values: Vec::new(),
            counting,
        }
    }

    /// The group of `key`, made if it is new.
    pub(super) fn group(&mut self, key: &[u8]) -> Group<'_> {
        let hash = FxBuildHasher.hash_one(key);
        let Groups {
            slots,
            keys,
            lengths,
            ..
        } = self;
        let same = |s: &Slot| s.len as usize == key.len() && &keys[s.start..][..key.len()] == key;
        let index = match slots.entry(hash, same, |s| s.hash) {
            Entry::Occupied(slot) => slot.get().index as usize,
            Entry::Vacant(vacant) => {
                let index = lengths.len();
                let len = u32::try_from(key.len()).expect("a key under 4 GiB");
                vacant.insert(Slot {
                    hash,
                    start: keys.len(),
                    len,
                    index: u32::try_from(index).expect("under 4 billion groups in a chunk"),
                });
                keys.extend_from_slice(key);
                lengths.push(len);
                if self.counting {
                    self.counts.push(0);
                } else {
                    self.values.push(None);
                }
                index
            }
        };
        if self.counting {
            Group::Count(&mut self.counts[index])
        } else {
            Group::Value(&mut self.values[index])
        }
    }

    /// The chunk's partial as it travels: counts in columns, other aggregates as entries,
    /// either way in the table's order, which is hash order. The coordinator folds them into a
    /// table hashed the same way, so consecutive keys land in neighbouring buckets: folding a
    /// million keys in first-seen order instead (the arena as it is, without this copy) was
    /// slower by more than the copy, every lookup a cache miss.
    pub(super) fn finish(self) -> ChunkPartial {
        let key = |s: &Slot| &self.keys[s.start..][..s.len as usize];
        if self.counting {
            let mut columns = Columns::with_capacity(self.lengths.len());
            for slot in self.slots.iter() {
                columns.push(key(slot), self.counts[slot.index as usize]);
            }
            return ChunkPartial {
                entries: Partial::new(),
                counts: columns.finish(),
            };
        }
        let mut values = self.values;
        let mut entries = Partial::with_capacity(self.lengths.len());
        for slot in self.slots.iter() {
            if let Some(value) = values[slot.index as usize].take() {
                entries
                    .add(key(slot).to_vec(), value)
                    .expect("each key once in a chunk's groups");
            }
        }
        ChunkPartial {
            entries,
            counts: Counts::default(),
        }
    }
}

//! Word count: tokens are maximal runs of bytes that are not ASCII whitespace (exactly what
//! Python's `bytes.split()` yields: space, \t, \n, \v, \f, \r separate), no case folding.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::operation::{ChunkStats, MapError, Operation, Options, SpecError, check_options};
use crate::partial::{Partial, Value};

pub const NAME: &str = "wordcount";

/// Counts each token's occurrences.
#[derive(Debug, Default)]
pub struct WordCount;

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(NAME, options, &[])?;
    Ok(Arc::new(WordCount))
}

const fn whitespace_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    let separators = b" \t\n\x0b\x0c\r";
    while i < separators.len() {
        table[separators[i] as usize] = true;
        i += 1;
    }
    table
}

static WHITESPACE: [bool; 256] = whitespace_table();

impl Operation for WordCount {
    fn map(&self, chunk: &[u8], stats: &mut ChunkStats) -> Result<Partial, MapError> {
        // Keys are borrowed from the chunk until the local fold is done.
        let mut counts: FxHashMap<&[u8], u64> = FxHashMap::default();
        let mut start = None;
        for (i, &b) in chunk.iter().enumerate() {
            if WHITESPACE[b as usize] {
                if let Some(s) = start.take() {
                    *counts.entry(&chunk[s..i]).or_default() += 1;
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(s) = start {
            *counts.entry(&chunk[s..]).or_default() += 1;
        }
        stats.bytes_in += chunk.len() as u64;
        stats.records_in += memchr::memchr_iter(b'\n', chunk).count() as u64
            + u64::from(chunk.last().is_some_and(|&b| b != b'\n'));
        Ok(Partial::from_entries(
            counts
                .into_iter()
                .map(|(k, v)| (k.to_vec(), Value::Count(v))),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_python_bytes_split() {
        let mut stats = ChunkStats::default();
        let p = WordCount
            .map(b"a b\ta\r\nb\x0bc\x0c\xffd  a\n\nlast", &mut stats)
            .unwrap();
        // python3 -c "import collections; print(collections.Counter(
        //   b'a b\ta\r\nb\x0bc\x0c\xffd  a\n\nlast'.split()))"
        assert_eq!(p.get(b"a"), Some(&Value::Count(3)));
        assert_eq!(p.get(b"b"), Some(&Value::Count(2)));
        assert_eq!(p.get(b"c"), Some(&Value::Count(1)));
        assert_eq!(p.get(b"\xffd"), Some(&Value::Count(1)));
        assert_eq!(p.get(b"last"), Some(&Value::Count(1)));
        assert_eq!(p.len(), 5);
        assert_eq!(stats.records_in, 4);
        assert_eq!(stats.bytes_in, 22);
    }

    #[test]
    fn rejects_options() {
        let mut options = Options::new();
        options.insert("case".into(), "fold".into());
        assert!(factory(&options).is_err());
    }
}

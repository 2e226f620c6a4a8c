//! Word count. Tokenizers (`tokenizer=`):
//! - `whitespace` (default): maximal runs of bytes that are not ASCII whitespace (exactly what
//!   Python's `bytes.split()` yields: space, \t, \n, \v, \f, \r separate), case kept, any bytes.
//! - `unicode`: Unicode words (UAX #29 word boundaries, words holding a letter or digit),
//!   lowercased; a line that is not UTF-8 is a bad record.
//!
//! A line holding a NUL byte is binary data: skipped, counted as a bad record.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use unicode_segmentation::UnicodeSegmentation;

use crate::operation::{Chunk, ChunkStats, MapError, Operation, Options, SpecError, check_options};
use crate::partial::{Partial, Value};
use crate::records::lines;

pub const NAME: &str = "wordcount";

/// How text splits into terms; shared with the inverted index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tokenizer {
    #[default]
    Whitespace,
    Unicode,
}

impl Tokenizer {
    pub fn from_options(operation: &str, options: &Options) -> Result<Self, SpecError> {
        match options.get("tokenizer").map(String::as_str) {
            None | Some("whitespace") => Ok(Tokenizer::Whitespace),
            Some("unicode") => Ok(Tokenizer::Unicode),
            Some(other) => Err(SpecError::BadOption {
                operation: operation.to_owned(),
                message: format!("tokenizer '{other}' is not one of whitespace, unicode"),
            }),
        }
    }

    /// Calls `each` with every token of a line; `false` if the line is not usable (not UTF-8
    /// for the Unicode tokenizer).
    pub fn tokens(self, line: &[u8], mut each: impl FnMut(&[u8])) -> bool {
        match self {
            Tokenizer::Whitespace => {
                for token in line
                    .split(|b| WHITESPACE[*b as usize])
                    .filter(|t| !t.is_empty())
                {
                    each(token);
                }
                true
            }
            Tokenizer::Unicode => {
                let Ok(text) = std::str::from_utf8(line) else {
                    return false;
                };
                for word in text.unicode_words() {
                    each(word.to_lowercase().as_bytes());
                }
                true
            }
        }
    }
}

/// Counts each token's occurrences.
#[derive(Debug, Default)]
pub struct WordCount {
    tokenizer: Tokenizer,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(NAME, options, &["tokenizer"])?;
    Ok(Arc::new(WordCount {
        tokenizer: Tokenizer::from_options(NAME, options)?,
    }))
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
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        let data = chunk.data;
        stats.bytes_in += data.len() as u64;
        let mut counts: FxHashMap<Vec<u8>, u64> = FxHashMap::default();
        if self.tokenizer == Tokenizer::Whitespace && memchr::memchr(0, data).is_none() {
            // The common case, one pass over the chunk; keys borrowed until the fold is done.
            let mut borrowed: FxHashMap<&[u8], u64> = FxHashMap::default();
            for token in data
                .split(|b| WHITESPACE[*b as usize])
                .filter(|t| !t.is_empty())
            {
                *borrowed.entry(token).or_default() += 1;
            }
            stats.records_in += memchr::memchr_iter(b'\n', data).count() as u64
                + u64::from(data.last().is_some_and(|&b| b != b'\n'));
            return Ok(Partial::from_entries(
                borrowed
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), Value::Count(v))),
            )?);
        }
        for line in lines(data) {
            let good = !line.contains(&0)
                && self.tokenizer.tokens(line, |token| {
                    *counts.entry(token.to_vec()).or_default() += 1;
                });
            stats.record(good);
        }
        Ok(Partial::from_entries(
            counts.into_iter().map(|(k, v)| (k, Value::Count(v))),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(op: &WordCount, data: &[u8]) -> (Partial, ChunkStats) {
        let mut stats = ChunkStats::default();
        let p = op.map(&Chunk::new(data, "f.txt", 0), &mut stats).unwrap();
        (p, stats)
    }

    #[test]
    fn splits_like_python_bytes_split() {
        let (p, stats) = map(
            &WordCount::default(),
            b"a b\ta\r\nb\x0bc\x0c\xffd  a\n\nlast",
        );
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
    fn nul_lines_are_bad_records_and_unicode_words_fold_case() {
        let (p, stats) = map(&WordCount::default(), b"a b\nbin\0ary\nb\n");
        assert_eq!(p.get(b"b"), Some(&Value::Count(2)));
        assert_eq!(p.get(b"bin\0ary"), None);
        assert_eq!((stats.records_in, stats.bad_records), (3, 1));
        let unicode = WordCount {
            tokenizer: Tokenizer::Unicode,
        };
        let (p, stats) = map(&unicode, "Straße, STRASSE; Élan élan!\n\u{ff}\n".as_bytes());
        assert_eq!(p.get("straße".as_bytes()), Some(&Value::Count(1)));
        assert_eq!(p.get(b"strasse"), Some(&Value::Count(1)));
        assert_eq!(p.get("élan".as_bytes()), Some(&Value::Count(2)));
        assert_eq!(stats.bad_records, 0);
        let (_, stats) = map(&unicode, b"ok\n\xff\xfe\n");
        assert_eq!((stats.records_in, stats.bad_records), (2, 1));
    }

    #[test]
    fn rejects_unknown_options() {
        let mut options = Options::new();
        options.insert("case".into(), "fold".into());
        assert!(factory(&options).is_err());
        options.clear();
        options.insert("tokenizer".into(), "bpe".into());
        assert!(factory(&options).is_err());
    }
}

//! index: an inverted index, each term with the sorted list of documents (input files, by path)
//! that contain it.
//!
//! Options: `tokenizer=whitespace|unicode`, as word count. A line holding a NUL byte (or, for
//! the Unicode tokenizer, one that is not UTF-8) is a bad record.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::operation::{Chunk, ChunkStats, MapError, Operation, Options, SpecError, check_options};
use crate::ops::wordcount::Tokenizer;
use crate::partial::{Partial, Value};
use crate::records::lines;

pub const NAME: &str = "index";

pub struct Index {
    tokenizer: Tokenizer,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(NAME, options, &["tokenizer"])?;
    Ok(Arc::new(Index {
        tokenizer: Tokenizer::from_options(NAME, options)?,
    }))
}

impl Operation for Index {
    /// Its finalize is the default one.
    fn finalizes_by_key(&self) -> bool {
        true
    }

    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        stats.bytes_in += chunk.data.len() as u64;
        let mut terms: FxHashSet<Vec<u8>> = FxHashSet::default();
        for line in lines(chunk.data) {
            let good = !line.contains(&0)
                && self.tokenizer.tokens(line, |term| {
                    if !terms.contains(term) {
                        terms.insert(term.to_vec());
                    }
                });
            stats.record(good);
        }
        let document = chunk.path.as_bytes().to_vec();
        Ok(Partial::from_entries(terms.into_iter().map(|term| {
            (term, Value::Postings(BTreeSet::from([document.clone()])))
        }))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_merge_sorted() {
        let op = factory(&Options::new()).unwrap();
        let mut stats = ChunkStats::default();
        let mut p = op
            .map(&Chunk::new(b"x y\ny", "b.txt", 0), &mut stats)
            .unwrap();
        p.merge(
            op.map(&Chunk::new(b"y z\n", "a.txt", 0), &mut stats)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            p.get(b"y"),
            Some(&Value::Postings(
                [b"a.txt".to_vec(), b"b.txt".to_vec()].into()
            ))
        );
        assert_eq!(
            p.get(b"x"),
            Some(&Value::Postings([b"b.txt".to_vec()].into()))
        );
    }
}

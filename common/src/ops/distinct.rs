//! distinct: the distinct values of a field, or of whole lines, each with how often it occurs
//! (like `sort | uniq -c`).
//!
//! Options: `field=FIELD` (a CSV column or JSON dotted path; without it, every line of every
//! file is a value, whatever the format) and the input options `format`, `delimiter`, `header`.
//! A record without the field, or a line holding a NUL byte, is a bad record.

use std::sync::Arc;

use crate::chunker::Cut;
use crate::operation::{Chunk, ChunkStats, MapError, Operation, Options, SpecError, check_options};
use crate::ops::groupby::fast::Groups;
use crate::ops::groupby::needs_fields;
use crate::partial::{ChunkPartial, Partial};
use crate::records::{ChunkFields, Field, INPUT_OPTIONS, InputOptions, for_each_record, lines};

pub const NAME: &str = "distinct";

pub struct Distinct {
    field: Option<Field>,
    input: InputOptions,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    let mut allowed = vec!["field"];
    allowed.extend(INPUT_OPTIONS);
    check_options(NAME, options, &allowed)?;
    Ok(Arc::new(Distinct {
        field: options.get("field").map(|f| Field::new(f)),
        input: InputOptions::from_options(NAME, options)?,
    }))
}

impl Operation for Distinct {
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        Ok(self.map_columns(chunk, stats)?.into_partial()?)
    }

    /// Counts the values in group-by's table ([`Groups`]), whose counts leave as columns.
    fn map_columns(
        &self,
        chunk: &Chunk<'_>,
        stats: &mut ChunkStats,
    ) -> Result<ChunkPartial, MapError> {
        let mut groups = Groups::new(true);
        match &self.field {
            None => {
                stats.bytes_in += chunk.data.len() as u64;
                for line in lines(chunk.data) {
                    let good = !line.contains(&0);
                    if good {
                        groups.count(line);
                    }
                    stats.record(good);
                }
            }
            Some(field) => {
                needs_fields(NAME, &self.input, chunk.path)?;
                let mut fields = ChunkFields::new([Some(field)]);
                for_each_record(chunk, &self.input, stats, |record| {
                    let [value] = fields.get(record);
                    Ok(match value {
                        Some(value) => {
                            groups.count(&value.bytes());
                            true
                        }
                        None => false,
                    })
                })?;
            }
        }
        Ok(groups.finish())
    }

    fn cut(&self, path: &str) -> Cut {
        match self.field {
            Some(_) => self.input.cut(path),
            None => Cut::Lines,
        }
    }

    fn finalizes_by_key(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partial::Value;

    #[test]
    fn lines_and_fields() {
        let op = factory(&Options::new()).unwrap();
        let mut stats = ChunkStats::default();
        let p = op
            .map(&Chunk::new(b"a\r\nb\na\n\x00\n", "f.log", 0), &mut stats)
            .unwrap();
        assert_eq!(p.get(b"a"), Some(&Value::Count(2)));
        assert_eq!(p.len(), 2);
        assert_eq!((stats.records_in, stats.bad_records), (4, 1));
        let op = factory(&[("field".to_string(), "k".to_string())].into()).unwrap();
        let p = op
            .map(
                &Chunk::new(b"{\"k\":\"x\"}\n{\"k\":2}\n{\"j\":1}\n", "f.jsonl", 0),
                &mut stats,
            )
            .unwrap();
        assert_eq!(p.get(b"2"), Some(&Value::Count(1)));
        assert_eq!(p.len(), 2);
    }
}

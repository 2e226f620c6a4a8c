//! histogram: how many values of a numeric field fall in each bucket between given edges.
//!
//! Options: `edges=E0,E1,...,En` (required, at least two, strictly increasing), `field=FIELD`
//! (a CSV column or JSON dotted path; without it each text line is one number), and the input
//! options. Buckets are `[Ei,Ei+1)`, the last one closed `[En-1,En]` (as numpy's histogram);
//! values below E0 count in `<E0`, values above En in `>En`. Empty buckets are not shown. A value
//! that is not a finite number is a bad record. Sorting by key orders buckets by their edges.

use std::sync::Arc;

use crate::chunker::Cut;
use crate::operation::{
    Chunk, ChunkStats, Finalized, MapError, Operation, Options, SpecError, check_options,
};
use crate::ops::groupby::needs_fields;
use crate::partial::{self, Partial, Row, SortOrder, Value};
use crate::records::{
    ChunkFields, Field, FieldValue, Format, INPUT_OPTIONS, InputOptions, Record, for_each_record,
    number,
};

pub const NAME: &str = "histogram";

pub struct Histogram {
    field: Option<Field>,
    /// The edges as numbers and as the user wrote them (for labels).
    edges: Vec<(f64, String)>,
    input: InputOptions,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    let mut allowed = vec!["field", "edges"];
    allowed.extend(INPUT_OPTIONS);
    check_options(NAME, options, &allowed)?;
    let bad = |message: String| SpecError::bad_option(NAME, message);
    let text = options
        .get("edges")
        .ok_or_else(|| bad("option 'edges' is required (e.g. edges=0,10,100)".into()))?;
    let edges = text
        .split(',')
        .map(|e| {
            number(e.as_bytes())
                .map(|x| (x, e.trim().to_owned()))
                .ok_or_else(|| bad(format!("edge '{e}' is not a number")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if edges.len() < 2 || edges.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(bad(format!(
            "edges '{text}' must be at least two strictly increasing numbers"
        )));
    }
    Ok(Arc::new(Histogram {
        field: options.get("field").map(|f| Field::new(f)),
        edges,
        input: InputOptions::from_options(NAME, options)?,
    }))
}

impl Histogram {
    /// Slot 0 is below the first edge, slot i in 1..n the bucket [E(i-1), Ei), slot n above.
    fn slot(&self, x: f64) -> u32 {
        let n = self.edges.len();
        if x < self.edges[0].0 {
            0
        } else if x > self.edges[n - 1].0 {
            n as u32
        } else {
            // Buckets below x's: edges <= x, except that the last edge closes the last bucket.
            let at_or_below = self.edges.partition_point(|e| e.0 <= x);
            at_or_below.min(n - 1) as u32
        }
    }

    fn label(&self, slot: u32) -> String {
        let n = self.edges.len();
        let e = |i: usize| self.edges[i].1.as_str();
        match slot as usize {
            0 => format!("<{}", e(0)),
            s if s == n => format!(">{}", e(n - 1)),
            s if s == n - 1 => format!("[{},{}]", e(s - 1), e(s)),
            s => format!("[{},{})", e(s - 1), e(s)),
        }
    }
}

impl Operation for Histogram {
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        if self.field.is_some() {
            needs_fields(NAME, &self.input, chunk.path)?;
        } else if self.input.format_of(chunk.path) != Format::Text {
            return Err(MapError::Failed(format!(
                "{NAME}: '{}' has fields; name the numeric one with option field=",
                chunk.path
            )));
        }
        let mut counts = vec![0u64; self.edges.len() + 1];
        let mut fields = ChunkFields::new([self.field.as_ref()]);
        for_each_record(chunk, &self.input, stats, |record| {
            let value = match record {
                Record::Line(line) if self.field.is_none() => number(line),
                record => {
                    let [value] = fields.get(record);
                    value.as_ref().and_then(FieldValue::number)
                }
            };
            Ok(match value {
                Some(x) => {
                    counts[self.slot(x) as usize] += 1;
                    true
                }
                None => false,
            })
        })?;
        Ok(Partial::from_entries(
            counts
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(slot, n)| ((slot as u32).to_be_bytes().to_vec(), Value::Count(n))),
        )?)
    }

    fn finalize(
        &self,
        partial: Partial,
        sort: SortOrder,
        limit: Option<u64>,
    ) -> Result<Finalized, MapError> {
        // Keys are slots (big-endian, so bytewise order is bucket order) until labelled here.
        let keys = partial.len() as u64;
        let rows = partial::finalize(partial, sort, limit);
        Ok(Finalized {
            keys,
            rows: rows
                .into_iter()
                .map(|row| {
                    let slot = row.key.try_into().map_or(0, u32::from_be_bytes);
                    Row {
                        key: self.label(slot).into_bytes(),
                        value: row.value,
                    }
                })
                .collect(),
        })
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

    fn row_key(&self, key: Vec<u8>) -> Vec<u8> {
        let slot = key.try_into().map_or(0, u32::from_be_bytes);
        self.label(slot).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_numpy_edges() {
        let op = factory(&[("edges".to_string(), "0, 10,100".to_string())].into()).unwrap();
        let mut stats = ChunkStats::default();
        let p = op
            .map(
                &Chunk::new(b"-1\n0\n9.9\n10\n100\n100.5\nabc\n5e1\n", "n.txt", 0),
                &mut stats,
            )
            .unwrap();
        let done = op.finalize(p, SortOrder::Key, None).unwrap();
        let shown: Vec<(String, Value)> = done
            .rows
            .into_iter()
            .map(|r| (String::from_utf8(r.key).unwrap(), r.value))
            .collect();
        assert_eq!(
            shown,
            [
                ("<0".to_string(), Value::Count(1)),
                ("[0,10)".to_string(), Value::Count(2)),
                ("[10,100]".to_string(), Value::Count(3)),
                (">100".to_string(), Value::Count(1)),
            ]
        );
        assert_eq!(stats.bad_records, 1);
        let err = op
            .map(&Chunk::new(b"a\n1\n", "n.csv", 0), &mut stats)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "histogram: 'n.csv' has fields; name the numeric one with option field="
        );
        assert!(factory(&[("edges".to_string(), "5,1".to_string())].into()).is_err());
        assert!(factory(&[("edges".to_string(), "1".to_string())].into()).is_err());
    }
}

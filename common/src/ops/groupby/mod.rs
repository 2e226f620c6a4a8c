//! groupby: groups CSV rows or JSON Lines records by one field and aggregates another.
//!
//! Options: `key=FIELD` (required), `agg=` one of `count` (default: rows per group), `sum`,
//! `min`, `max`, `mean`, `distinct` (exact distinct count), `approx_distinct` (HyperLogLog,
//! standard error about 1.6%), `topk` (the `k` most frequent values, default `k=10`, shown as
//! `value=count,...`); `value=FIELD` (required unless `agg=count`); and the input options
//! `format`, `delimiter`, `header`. A field is a CSV column name (or 0-based index) or a JSON
//! dotted path. A record without the key or value field, or whose value is not a finite number
//! where one is needed, is a bad record.

pub(crate) mod fast;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::chunker::Cut;
use crate::operation::{Chunk, ChunkStats, MapError, Operation, Options, SpecError, check_options};
use crate::partial::{ChunkPartial, Partial, Value};
use crate::records::{
    ChunkFields, Field, FieldValue, Format, INPUT_OPTIONS, InputOptions, for_each_record,
};
use crate::sketch::{ExactSum, Sketch};

pub const NAME: &str = "groupby";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agg {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    Distinct,
    ApproxDistinct,
    TopK(u32),
}

pub struct GroupBy {
    key: Field,
    value: Option<Field>,
    agg: Agg,
    input: InputOptions,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    Ok(Arc::new(GroupBy::new(options)?))
}

impl GroupBy {
    fn new(options: &Options) -> Result<GroupBy, SpecError> {
        let mut allowed = vec!["key", "agg", "value", "k"];
        allowed.extend(INPUT_OPTIONS);
        check_options(NAME, options, &allowed)?;
        let bad = |message: String| SpecError::bad_option(NAME, message);
        let key = options
            .get("key")
            .ok_or_else(|| bad("option 'key' is required".into()))?;
        let k = match options.get("k") {
            None => 10,
            Some(k) => k
                .parse::<u32>()
                .ok()
                .filter(|&k| k > 0)
                .ok_or_else(|| bad(format!("k '{k}' is not a positive integer")))?,
        };
        let agg = match options.get("agg").map(String::as_str) {
            None | Some("count") => Agg::Count,
            Some("sum") => Agg::Sum,
            Some("min") => Agg::Min,
            Some("max") => Agg::Max,
            Some("mean") => Agg::Mean,
            Some("distinct") => Agg::Distinct,
            Some("approx_distinct") => Agg::ApproxDistinct,
            Some("topk") => Agg::TopK(k),
            Some(other) => {
                return Err(bad(format!(
                    "agg '{other}' is not one of count, sum, min, max, mean, distinct, approx_distinct, topk"
                )));
            }
        };
        let value = options.get("value").map(|v| Field::new(v));
        if value.is_none() && agg != Agg::Count {
            return Err(bad(format!(
                "agg '{}' needs option 'value'",
                options["agg"]
            )));
        }
        Ok(GroupBy {
            key: Field::new(key),
            value,
            agg,
            input: InputOptions::from_options(NAME, options)?,
        })
    }
}

/// Fails a chunk of plain text, which has no fields to group by.
pub fn needs_fields(operation: &str, input: &InputOptions, path: &str) -> Result<(), MapError> {
    if input.format_of(path) == Format::Text {
        return Err(MapError::Failed(format!(
            "{operation}: '{path}' is text, which has no fields; name a .csv/.jsonl file or set \
             option format=csv or format=jsonl"
        )));
    }
    Ok(())
}

impl Operation for GroupBy {
    /// Its finalize is the default one.
    fn finalizes_by_key(&self) -> bool {
        true
    }

    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        Ok(self.map_columns(chunk, stats)?.into_partial()?)
    }

    /// Groups into [`fast::Groups`]: counts leave as columns, other values as entries.
    fn map_columns(
        &self,
        chunk: &Chunk<'_>,
        stats: &mut ChunkStats,
    ) -> Result<ChunkPartial, MapError> {
        needs_fields(NAME, &self.input, chunk.path)?;
        let mut groups = fast::Groups::new(self.agg == Agg::Count);
        let mut fields = ChunkFields::new([Some(&self.key), self.value.as_ref()]);
        for_each_record(chunk, &self.input, stats, |record| {
            let [Some(key), value] = fields.get(record) else {
                return Ok(false);
            };
            if value.is_none() && self.value.is_some() {
                return Ok(false);
            }
            let Some(x) = self.number(value.as_ref()) else {
                return Ok(false);
            };
            match groups.group(&key.bytes(), || self.start(x)) {
                fast::Group::Count(n) => *n += 1,
                fast::Group::Value(slot) => {
                    // A number's text is made only for the aggregates that keep values.
                    let text = match (&value, self.agg) {
                        (Some(v), Agg::Distinct | Agg::ApproxDistinct | Agg::TopK(_)) => v.bytes(),
                        _ => Cow::Borrowed(&[][..]),
                    };
                    update(slot, x, &text);
                }
            }
            Ok(true)
        })?;
        Ok(groups.finish())
    }

    fn cut(&self, path: &str) -> Cut {
        self.input.cut(path)
    }
}

impl GroupBy {
    /// The value's number where the aggregate needs one (`None`: not a finite number, a bad
    /// record); 0 where it does not.
    fn number(&self, value: Option<&FieldValue<'_>>) -> Option<f64> {
        match self.agg {
            Agg::Sum | Agg::Min | Agg::Max | Agg::Mean => value?.number(),
            _ => Some(0.0),
        }
    }

    /// A group's aggregate before its first record (`x`: that record's number).
    fn start(&self, x: f64) -> Value {
        match self.agg {
            Agg::Count => Value::Count(0),
            Agg::Sum => Value::Sum(ExactSum::new()),
            Agg::Min => Value::Min(x),
            Agg::Max => Value::Max(x),
            Agg::Mean => Value::Mean {
                sum: ExactSum::new(),
                count: 0,
            },
            Agg::Distinct => Value::Distinct(BTreeSet::new()),
            Agg::ApproxDistinct => Value::Sketch(Box::new(Sketch::new())),
            Agg::TopK(k) => Value::TopK {
                k,
                counts: BTreeMap::new(),
            },
        }
    }
}

/// Adds one record (its value's bytes and number) to its group's aggregate.
fn update(slot: &mut Value, x: f64, value: &[u8]) {
    match slot {
        Value::Count(n) => *n += 1,
        Value::Sum(sum) => sum.add(x),
        Value::Min(m) => *m = m.min(x),
        Value::Max(m) => *m = m.max(x),
        Value::Mean { sum, count } => {
            sum.add(x);
            *count += 1;
        }
        Value::Distinct(set) => {
            if !set.contains(value) {
                set.insert(value.to_vec());
            }
        }
        Value::Sketch(sketch) => sketch.insert(value),
        Value::TopK { counts, .. } => match counts.get_mut(value) {
            Some(n) => *n += 1,
            None => {
                counts.insert(value.to_vec(), 1);
            }
        },
        _ => unreachable!("groupby only makes the values above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::operation::Finalized;
    use crate::partial::SortOrder;

    fn run(options: &[(&str, &str)], path: &str, data: &[u8]) -> (Finalized, ChunkStats) {
        let options: Options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let op = factory(&options).unwrap();
        let mut stats = ChunkStats::default();
        let p = op.map(&Chunk::new(data, path, 0), &mut stats).unwrap();
        (op.finalize(p, SortOrder::Key, None).unwrap(), stats)
    }

    fn shown(done: &Finalized) -> Vec<(String, Value)> {
        done.rows
            .iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(&r.key).into_owned(),
                    r.value.clone(),
                )
            })
            .collect()
    }

    const CSV: &[u8] = b"city,amount\nOslo,3\nLima,x\nOslo,4.5\nLima,1\nRome\n";

    #[test]
    fn aggregates_count_bad_numbers_and_short_rows() {
        let (done, stats) = run(
            &[("key", "city"), ("agg", "sum"), ("value", "amount")],
            "a.csv",
            CSV,
        );
        assert_eq!(
            shown(&done),
            [
                ("Lima".into(), Value::Number(1.0)),
                ("Oslo".into(), Value::Number(7.5))
            ]
        );
        assert_eq!((stats.records_in, stats.bad_records), (5, 2));
        let (done, _) = run(&[("key", "city")], "a.csv", CSV);
        assert_eq!(
            shown(&done),
            [
                ("Lima".into(), Value::Count(2)),
                ("Oslo".into(), Value::Count(2))
            ]
        );
        let (done, _) = run(
            &[("key", "city"), ("agg", "mean"), ("value", "amount")],
            "a.csv",
            CSV,
        );
        assert_eq!(shown(&done)[1], ("Oslo".into(), Value::Number(3.75)));
    }

    #[test]
    fn json_fields_distinct_and_topk() {
        let data = b"{\"u\":{\"id\":1},\"tag\":\"a\"}\n{\"u\":{\"id\":1},\"tag\":\"b\"}\n{\"u\":{\"id\":1},\"tag\":\"a\"}\n{\"tag\":\"a\"}\n";
        let (done, stats) = run(
            &[("key", "u.id"), ("agg", "distinct"), ("value", "tag")],
            "e.jsonl",
            data,
        );
        assert_eq!(shown(&done), [("1".into(), Value::Count(2))]);
        assert_eq!(stats.bad_records, 1);
        let (done, _) = run(
            &[
                ("key", "u.id"),
                ("agg", "topk"),
                ("value", "tag"),
                ("k", "1"),
            ],
            "e.jsonl",
            data,
        );
        assert_eq!(
            shown(&done),
            [(
                "1".into(),
                Value::TopK {
                    k: 1,
                    counts: [(b"a".to_vec(), 2)].into()
                }
            )]
        );
    }

    /// The plain group-by [`GroupBy::map`] must equal: a map from key to aggregate, every
    /// field looked up by name in every record.
    fn reference(op: &GroupBy, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Partial {
        let mut partial = Partial::new();
        for_each_record(chunk, &op.input, stats, |record| {
            let Some(key) = op.key.get(record) else {
                return Ok(false);
            };
            let value = match &op.value {
                Some(field) => match field.get(record) {
                    Some(v) => Some(v),
                    None => return Ok(false),
                },
                None => None,
            };
            let value = value.as_deref().unwrap_or_default();
            let Some(x) = op.number(Some(&FieldValue::Bytes(Cow::Borrowed(value)))) else {
                return Ok(false);
            };
            update(partial.value_mut(&key, || op.start(x)), x, value);
            Ok(true)
        })
        .unwrap();
        partial
    }

    /// A CSV or JSON Lines document of rows drawn from a small alphabet: repeated and empty
    /// keys, quoted keys holding the delimiter or a newline, numbers and non-numbers, rows
    /// short of a field, CRLF endings.
    fn document() -> impl Strategy<Value = (bool, Vec<u8>)> {
        let key = prop::sample::select(vec!["a", "b", "", "\"q,\nx\"", "é", "12", "a "]);
        let value = prop::sample::select(vec!["1", "2.5", "-3", "x", "", "1e3", " 4 ", "0.1"]);
        let row = (key, value, 0..8u8);
        (any::<bool>(), prop::collection::vec(row, 0..60)).prop_map(|(json, rows)| {
            let mut doc = Vec::new();
            if !json {
                doc.extend_from_slice(b"v,k\n");
            }
            for (key, value, shape) in rows {
                let line = match (json, shape) {
                    (true, 0) => "not json".to_owned(),
                    (true, 1) => format!("{{\"k\":{{\"n\":1}},\"v\":{value:?}}}"),
                    (true, 2) => format!("{{\"v\":{value:?}}}"),
                    (true, _) => {
                        let v = value
                            .trim()
                            .parse::<f64>()
                            .map_or(format!("{value:?}"), |_| value.trim().to_owned());
                        format!("{{\"k\":{key:?},\"v\":{v}}}")
                    }
                    (false, 0) => key.to_owned(),
                    (false, 1) => format!("{value},{key}\r"),
                    (false, _) => format!("{value},{key}"),
                };
                doc.extend_from_slice(line.as_bytes());
                doc.push(b'\n');
            }
            (json, doc)
        })
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn groups_equal_the_plain_map((json, doc) in document()) {
            let path = if json { "d.jsonl" } else { "d.csv" };
            for agg in ["count", "sum", "min", "max", "mean", "distinct", "topk"] {
                let options: Options = [("key", "k"), ("agg", agg), ("value", "v")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let op = GroupBy::new(&options).unwrap();
                let chunk = Chunk::new(&doc, path, 0);
                let (mut fast, mut plain) = (ChunkStats::default(), ChunkStats::default());
                let got = op.map(&chunk, &mut fast).unwrap();
                let want = reference(&op, &chunk, &mut plain);
                prop_assert_eq!(&got, &want, "agg {}", agg);
                prop_assert_eq!(
                    (fast.records_in, fast.bad_records, fast.bytes_in),
                    (plain.records_in, plain.bad_records, plain.bytes_in)
                );
            }
        }
    }

    #[test]
    fn text_input_fails_clearly_and_options_are_checked() {
        let op = factory(&[("key".to_string(), "a".to_string())].into()).unwrap();
        let err = op
            .map(
                &Chunk::new(b"x\n", "notes.txt", 0),
                &mut ChunkStats::default(),
            )
            .err()
            .unwrap();
        assert!(err.to_string().contains("'notes.txt' is text"), "{err}");
        assert!(
            factory(
                &[
                    ("key".to_string(), "a".to_string()),
                    ("agg".to_string(), "sum".to_string())
                ]
                .into()
            )
            .is_err()
        );
    }
}

//! sort: every line of the input, duplicates kept, in byte order (`LC_ALL=C sort`), or JSON
//! Lines records by a field (`field=PATH`, bytewise, or `numeric=true` for numbers; records
//! with equal fields in byte order of the whole line). Each line is a key counting its copies;
//! `--format lines` writes each line as many times as it occurred, so the result is the sorted
//! input.
//!
//! Partitioned (`--reducers R`), it is range-partitioned: the coordinator samples the input
//! when it plans the job and passes R-1 split keys in the internal option `splits` (hex, comma
//! separated), and every key below the first split goes to part 0, and so on, so `cat part-*`
//! is globally sorted and parts come out about equal however the keys are skewed (Hadoop's
//! TotalOrderPartitioner). A line holding a NUL byte, a JSON line that does not parse or lacks
//! the field, or (numeric) whose field is not a number, is a bad record.

use std::sync::Arc;

use crate::operation::{
    Chunk, ChunkStats, Finalized, MapError, Operation, Options, SpecError, check_options,
};
use crate::partial::{self, Partial, Row, SortOrder};
use crate::records::{Field, Record, lines, number};
use crate::shuffle;

pub const NAME: &str = "sort";

pub struct Sort {
    /// A JSON field to sort by, and whether it compares as a number.
    field: Option<(Field, bool)>,
    /// Range split keys (encoded like keys), ascending.
    splits: Vec<Vec<u8>>,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(NAME, options, &["field", "numeric", "splits"])?;
    let numeric = match options.get("numeric").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(SpecError::bad_option(
                NAME,
                format!("numeric must be true or false, got '{other}'"),
            ));
        }
    };
    let field = match options.get("field") {
        Some(f) => Some((Field::new(f), numeric)),
        None if numeric => {
            return Err(SpecError::bad_option(NAME, "numeric=true needs field="));
        }
        None => None,
    };
    let splits = match options.get("splits") {
        None => Vec::new(),
        Some(text) => {
            shuffle::parse_splits(text).map_err(|message| SpecError::bad_option(NAME, message))?
        }
    };
    Ok(Arc::new(Sort { field, splits }))
}

/// A number's bytes in an order that sorts like the number (IEEE 754 with the sign flipped).
fn ordered(x: f64) -> [u8; 8] {
    let bits = x.to_bits();
    let bits = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    bits.to_be_bytes()
}

/// `field ++ 00 00 ++ line`, with each 00 byte of the field written 00 ff, so keys sort by
/// field first, then by the whole line.
fn keyed(field: &[u8], line: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(field.len() + line.len() + 2);
    for &b in field {
        key.push(b);
        if b == 0 {
            key.push(0xff);
        }
    }
    key.extend_from_slice(&[0, 0]);
    key.extend_from_slice(line);
    key
}

/// The line a field-sorted key ends with.
fn line_of(key: &[u8]) -> &[u8] {
    let mut i = 0;
    while i + 1 < key.len() {
        match (key[i], key[i + 1]) {
            (0, 0) => return &key[i + 2..],
            (0, _) => i += 2,
            _ => i += 1,
        }
    }
    key
}

impl Operation for Sort {
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        let mut partial = Partial::new();
        stats.bytes_in += chunk.data.len() as u64;
        for line in lines(chunk.data) {
            let key = match &self.field {
                _ if line.contains(&0) => None,
                None => Some(std::borrow::Cow::Borrowed(line)),
                Some((field, numeric)) => std::str::from_utf8(line).ok().and_then(|text| {
                    let value = field.get(&Record::Json(text))?;
                    let sort_key = if *numeric {
                        ordered(number(&value)?).to_vec()
                    } else {
                        value.into_owned()
                    };
                    Some(std::borrow::Cow::Owned(keyed(&sort_key, line)))
                }),
            };
            stats.record(key.is_some());
            if let Some(key) = key {
                partial.add_count(&key, 1)?;
            }
        }
        Ok(partial)
    }

    /// Lines in key order (a field-sorted key becomes its line again), each counting its
    /// copies; `--sort value` orders by those counts.
    fn finalize(
        &self,
        partial: Partial,
        sort: SortOrder,
        limit: Option<u64>,
    ) -> Result<Finalized, MapError> {
        let keys = partial.len() as u64;
        let rows = partial::finalize(partial, sort, limit);
        let rows = match self.field {
            None => rows,
            Some(_) => rows
                .into_iter()
                .map(|row| Row {
                    key: line_of(&row.key).to_vec(),
                    value: row.value,
                })
                .collect(),
        };
        Ok(Finalized { keys, rows })
    }

    fn finalizes_by_key(&self) -> bool {
        true
    }

    fn row_key(&self, key: Vec<u8>) -> Vec<u8> {
        match self.field {
            None => key,
            Some(_) => line_of(&key).to_vec(),
        }
    }

    /// By range: keys below the first split key go to partition 0, and so on.
    fn partition(&self, key: &[u8], reducers: u32) -> u32 {
        let at = self.splits.partition_point(|split| split.as_slice() <= key);
        (at as u32).min(reducers.saturating_sub(1))
    }

    fn range_partitioned(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partial::Value;

    fn build(options: &[(&str, &str)]) -> Arc<dyn Operation> {
        factory(
            &options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn numbers_and_fields_keep_their_order_in_bytes() {
        let xs = [-1e300, -2.5, -0.0, 0.0, 1e-9, 3.0, 1e300];
        for w in xs.windows(2) {
            assert!(ordered(w[0]) <= ordered(w[1]), "{} {}", w[0], w[1]);
        }
        assert!(
            keyed(b"a", b"zz") < keyed(b"a\0", b"a"),
            "a shorter field sorts first"
        );
        assert!(keyed(b"a", b"y") < keyed(b"a", b"z"), "then by line");
        assert_eq!(line_of(&keyed(b"x\0y", b"the line")), b"the line");
    }

    #[test]
    fn lines_sort_with_their_duplicates_and_fields_sort_records() {
        let op = build(&[]);
        let mut stats = ChunkStats::default();
        let p = op
            .map(&Chunk::new(b"b\na\nb\nnul\0\n", "f", 0), &mut stats)
            .unwrap();
        let done = op.finalize(p, SortOrder::Key, None).unwrap();
        let rows: Vec<(&[u8], &Value)> = done.rows.iter().map(|r| (&r.key[..], &r.value)).collect();
        assert_eq!(
            rows,
            [(&b"a"[..], &Value::Count(1)), (&b"b"[..], &Value::Count(2))]
        );
        assert_eq!(stats.bad_records, 1);

        let op = build(&[("field", "n"), ("numeric", "true")]);
        let data = b"{\"n\":10}\n{\"n\":-1.5}\n{\"n\":9}\n{\"n\":\"x\"}\n{\"n\":9}\n";
        let p = op.map(&Chunk::new(data, "f.jsonl", 0), &mut stats).unwrap();
        let done = op.finalize(p, SortOrder::Key, None).unwrap();
        let lines: Vec<&[u8]> = done.rows.iter().map(|r| &r.key[..]).collect();
        assert_eq!(lines, [&b"{\"n\":-1.5}"[..], b"{\"n\":9}", b"{\"n\":10}"]);
        assert_eq!(done.rows[1].value, Value::Count(2));
    }

    #[test]
    fn splits_route_keys_by_range() {
        let splits = vec![b"g".to_vec(), b"p".to_vec()];
        let op = build(&[("splits", &shuffle::splits_option(&splits))]);
        let parts: Vec<u32> = [&b"a"[..], b"g", b"h", b"p", b"zz"]
            .iter()
            .map(|k| op.partition(k, 3))
            .collect();
        assert_eq!(parts, [0, 1, 1, 2, 2]);
        assert_eq!(op.partition(b"zz", 2), 1, "never past the last reducer");
        assert!(factory(&[("splits".to_string(), "zz".to_string())].into()).is_err());
        assert!(factory(&[("splits".to_string(), "70,67".to_string())].into()).is_err());
    }
}

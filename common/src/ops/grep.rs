//! grep: lines matching a regular expression (Rust `regex` syntax, matched on bytes, so lines
//! need not be UTF-8).
//!
//! Options: `pattern=REGEX` (required), `output=count|lines` (default `count`),
//! `ignore_case=true|false`, `invert=true|false`.
//! - `count`: one row per file with matching lines: `path -> number of matching lines`.
//! - `lines`: one row per matching line: `path:LINE -> the line`, LINE counted from 1 in its
//!   file. Sorting by key orders by path, then line number.
//!
//! Line numbers across chunks: a chunk does not know how many lines precede it in its file, so
//! `map` numbers lines within the chunk and also emits the chunk's line count under a marker
//! key; `finalize` turns those counts into each chunk's first line number (a prefix sum over
//! the file's chunks by offset). Lines holding a NUL byte are bad records and never match.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder};

use crate::operation::{
    Chunk, ChunkStats, Finalized, MapError, Operation, Options, SpecError, check_options,
};
use crate::partial::{self, Partial, Row, SortOrder, Value};
use crate::records::{lines, parse_bool};

pub const NAME: &str = "grep";

pub struct Grep {
    regex: Regex,
    invert: bool,
    lines: bool,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(
        NAME,
        options,
        &["pattern", "output", "ignore_case", "invert"],
    )?;
    let bad = |message: String| SpecError::bad_option(NAME, message);
    let pattern = options
        .get("pattern")
        .ok_or_else(|| bad("option 'pattern' is required".into()))?;
    let regex = RegexBuilder::new(pattern)
        .case_insensitive(parse_bool(NAME, options, "ignore_case", false)?)
        .build()
        .map_err(|e| bad(format!("bad pattern: {e}")))?;
    let lines = match options.get("output").map(String::as_str) {
        None | Some("count") => false,
        Some("lines") => true,
        Some(other) => return Err(bad(format!("output '{other}' is not one of count, lines"))),
    };
    Ok(Arc::new(Grep {
        regex,
        invert: parse_bool(NAME, options, "invert", false)?,
        lines,
    }))
}

/// Marker and match keys of `lines` mode: tag, path, NUL, chunk start, (line index).
const LINES_TAG: u8 = b'L';
const MATCH_TAG: u8 = b'M';

fn internal_key(tag: u8, path: &str, start: u64, line: Option<u64>) -> Vec<u8> {
    let mut key = Vec::with_capacity(path.len() + 18);
    key.push(tag);
    key.extend_from_slice(path.as_bytes());
    key.push(0);
    key.extend_from_slice(&start.to_be_bytes());
    if let Some(line) = line {
        key.extend_from_slice(&line.to_be_bytes());
    }
    key
}

fn parse_internal(key: &[u8]) -> Option<(u8, &[u8], u64, Option<u64>)> {
    let (&tag, rest) = key.split_first()?;
    let numbers = match tag {
        MATCH_TAG => 16,
        LINES_TAG => 8,
        _ => return None,
    };
    let path_end = rest.len().checked_sub(numbers + 1)?;
    if rest[path_end] != 0 {
        return None;
    }
    let digits = &rest[path_end + 1..];
    let start = u64::from_be_bytes(digits[..8].try_into().ok()?);
    let line = match tag {
        MATCH_TAG => Some(u64::from_be_bytes(digits[8..].try_into().ok()?)),
        _ => None,
    };
    Some((tag, &rest[..path_end], start, line))
}

impl Operation for Grep {
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        stats.bytes_in += chunk.data.len() as u64;
        let mut partial = Partial::new();
        let mut matching = 0u64;
        let mut index = 0u64;
        for line in lines(chunk.data) {
            let good = !line.contains(&0);
            stats.record(good);
            if good && self.regex.is_match(line) != self.invert {
                matching += 1;
                if self.lines {
                    partial.add(
                        internal_key(MATCH_TAG, chunk.path, chunk.start, Some(index)),
                        Value::Text(line.to_vec()),
                    )?;
                }
            }
            index += 1;
        }
        if self.lines {
            partial.add(
                internal_key(LINES_TAG, chunk.path, chunk.start, None),
                Value::Count(index),
            )?;
        } else if matching > 0 {
            partial.add(chunk.path.as_bytes().to_vec(), Value::Count(matching))?;
        }
        Ok(partial)
    }

    /// Matched lines are numbered from their file's chunks' line counts: a file's keys meet
    /// in one partition.
    fn partition_key<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        match parse_internal(key) {
            Some((_, path, _, _)) if self.lines => path,
            _ => key,
        }
    }

    fn finalize(
        &self,
        partial: Partial,
        sort: SortOrder,
        limit: Option<u64>,
    ) -> Result<Finalized, MapError> {
        if !self.lines {
            return Ok(Finalized::sorted(partial, sort, limit));
        }
        // Lines per chunk, by file and chunk offset, then each chunk's first line number.
        let mut chunk_lines: BTreeMap<(Vec<u8>, u64), u64> = BTreeMap::new();
        let mut matches = Vec::new();
        for (key, value) in partial.into_entries() {
            match (parse_internal(&key), value) {
                (Some((LINES_TAG, path, start, None)), Value::Count(n)) => {
                    chunk_lines.insert((path.to_vec(), start), n);
                }
                (Some((MATCH_TAG, path, start, Some(line))), Value::Text(text)) => {
                    matches.push((path.to_vec(), start, line, text));
                }
                _ => {}
            }
        }
        let mut first_line: BTreeMap<(Vec<u8>, u64), u64> = BTreeMap::new();
        let mut previous: Option<(Vec<u8>, u64)> = None;
        for ((path, start), n) in chunk_lines {
            let first = match &previous {
                Some((p, next)) if *p == path => *next,
                _ => 1,
            };
            first_line.insert((path.clone(), start), first);
            previous = Some((path, first + n));
        }
        let rows: Vec<Row> = matches
            .into_iter()
            .map(|(path, start, line, text)| {
                let number = first_line.get(&(path.clone(), start)).copied().unwrap_or(1) + line;
                let mut key = path;
                key.extend_from_slice(format!(":{number}").as_bytes());
                Row {
                    key,
                    value: Value::Text(text),
                }
            })
            .collect();
        Ok(Finalized {
            keys: rows.len() as u64,
            rows: partial::order(rows, sort, limit, |a, b| by_path_and_line(&a.key, &b.key)),
        })
    }
}

/// Orders `path:LINE` keys by path, then line number.
fn by_path_and_line(a: &[u8], b: &[u8]) -> Ordering {
    fn split(key: &[u8]) -> (&[u8], u64) {
        let colon = key.iter().rposition(|&b| b == b':').unwrap_or(key.len());
        let number = std::str::from_utf8(&key[(colon + 1).min(key.len())..])
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (&key[..colon], number)
    }
    split(a).cmp(&split(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grep(options: &[(&str, &str)]) -> Arc<dyn Operation> {
        let options: Options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        factory(&options).unwrap()
    }

    #[test]
    fn line_numbers_span_chunks() {
        let op = grep(&[("pattern", "^x"), ("output", "lines")]);
        let file = b"x1\ny\nx3\r\ny\nbin\0x\nx6\n";
        // Cut into chunks at line boundaries, fold in reverse order.
        let cuts = [(0usize, 5usize), (5, 11), (11, file.len())];
        let mut folded = Partial::new();
        let mut stats = ChunkStats::default();
        for (start, end) in cuts.into_iter().rev() {
            let chunk = Chunk::new(&file[start..end], "dir/f.txt", start as u64);
            folded.merge(op.map(&chunk, &mut stats).unwrap()).unwrap();
        }
        let done = op.finalize(folded, SortOrder::Key, None).unwrap();
        let keys: Vec<String> = done
            .rows
            .iter()
            .map(|r| String::from_utf8_lossy(&r.key).into_owned())
            .collect();
        assert_eq!(keys, ["dir/f.txt:1", "dir/f.txt:3", "dir/f.txt:6"]);
        assert_eq!(done.rows[1].value, Value::Text(b"x3".to_vec()));
        assert_eq!((stats.records_in, stats.bad_records), (6, 1));
        assert_eq!(done.keys, 3);
    }

    #[test]
    fn counts_per_file_and_rejects_bad_patterns() {
        let op = grep(&[("pattern", "A"), ("ignore_case", "true")]);
        let mut stats = ChunkStats::default();
        let p = op
            .map(&Chunk::new(b"a\nb\nA\n", "f", 0), &mut stats)
            .unwrap();
        assert_eq!(p.get(b"f"), Some(&Value::Count(2)));
        let err = factory(&[("pattern".to_string(), "(".to_string())].into())
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("operation 'grep': bad pattern"),
            "{err}"
        );
        assert!(factory(&Options::new()).is_err());
    }

    #[test]
    fn keys_order_by_line_number() {
        assert_eq!(by_path_and_line(b"f:9", b"f:10"), Ordering::Less);
        assert_eq!(by_path_and_line(b"a:9", b"b:1"), Ordering::Less);
    }
}

//! Result rows as text: TSV, CSV (RFC 4180) or JSON Lines, and each value kind's rendering.
//! Shared by `submit-job` (stdout, `--output`) and the coordinator (output directories).

use std::io::{self, Write};

use crate::partial::{Row, Value};

/// Output format of result rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `key<TAB>value` lines; keys are written as their raw bytes.
    #[default]
    Tsv,
    /// A `key,value` header, then one row per key, quoted as RFC 4180 says.
    Csv,
    /// `{"key": …, "value": …}` lines; keys that are not UTF-8 are decoded lossily.
    Jsonl,
    /// Each key alone on a line, as many times as its count says (once for other values):
    /// a sort's result as the sorted lines, `uniq -c` undone.
    Lines,
}

impl Format {
    /// The file name extension of the format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Tsv => "tsv",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Lines => "txt",
        }
    }

    /// The format's name, as `--format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Lines => "lines",
            other => other.extension(),
        }
    }
}

/// Writes rows in one format to a byte sink; a CSV header comes before the first row.
pub struct RowWriter<W: Write> {
    format: Format,
    out: W,
    header_written: bool,
}

impl<W: Write> RowWriter<W> {
    pub fn new(format: Format, out: W) -> Self {
        RowWriter {
            format,
            out,
            header_written: false,
        }
    }

    pub fn write(&mut self, row: &Row) -> io::Result<()> {
        match self.format {
            Format::Tsv => {
                self.out.write_all(&row.key)?;
                self.out.write_all(b"\t")?;
                self.out.write_all(&text(&row.value))?;
                self.out.write_all(b"\n")
            }
            Format::Csv => {
                self.header()?;
                write_csv_field(&mut self.out, &row.key)?;
                self.out.write_all(b",")?;
                write_csv_field(&mut self.out, &text(&row.value))?;
                self.out.write_all(b"\r\n")
            }
            Format::Jsonl => {
                let line = match std::str::from_utf8(&row.key) {
                    Ok(key) => serde_json::json!({"key": key, "value": json(&row.value)}),
                    // JSON strings are Unicode: such a key also goes exactly, in base64, so
                    // two keys never print alike and each can be recovered.
                    Err(_) => {
                        use base64::Engine;
                        serde_json::json!({
                            "key": String::from_utf8_lossy(&row.key),
                            "key_base64": base64::engine::general_purpose::STANDARD.encode(&row.key),
                            "value": json(&row.value),
                        })
                    }
                };
                writeln!(self.out, "{line}")
            }
            Format::Lines => {
                let copies = match row.value {
                    Value::Count(n) => n,
                    _ => 1,
                };
                for _ in 0..copies {
                    self.out.write_all(&row.key)?;
                    self.out.write_all(b"\n")?;
                }
                Ok(())
            }
        }
    }

    /// Writes the CSV header if it is due (so an empty CSV result still has one).
    pub fn header(&mut self) -> io::Result<()> {
        if self.format == Format::Csv && !self.header_written {
            self.header_written = true;
            self.out.write_all(b"key,value\r\n")?;
        }
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// A value as one field of text: numbers as Rust prints them (shortest form that reads back
/// exactly), lists joined with `,`, top-k as `value=count` pairs, text as its bytes.
pub fn text(value: &Value) -> Vec<u8> {
    fn join<'a>(items: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        out
    }
    match value.clone().settle() {
        Value::Count(n) => n.to_string().into_bytes(),
        Value::Number(x) => x.to_string().into_bytes(),
        Value::TopK { counts, .. } => {
            let mut pairs: Vec<(&Vec<u8>, &u64)> = counts.iter().collect();
            pairs.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let mut out = Vec::new();
            for (i, (v, n)) in pairs.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(v);
                out.extend_from_slice(format!("={n}").as_bytes());
            }
            out
        }
        Value::Postings(set) => join(set.iter()),
        Value::Collect(items) => join(items.iter()),
        Value::Text(t) => t,
        other => format!("{other:?}").into_bytes(),
    }
}

/// A value as JSON: numbers, arrays of strings, top-k as `[[value, count], ...]`.
pub fn json(value: &Value) -> serde_json::Value {
    let s = |b: &Vec<u8>| serde_json::Value::from(String::from_utf8_lossy(b).into_owned());
    match value.clone().settle() {
        Value::Count(n) => n.into(),
        Value::Number(x) => x.into(),
        Value::TopK { counts, .. } => {
            let mut pairs: Vec<(Vec<u8>, u64)> = counts.into_iter().collect();
            pairs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            pairs
                .iter()
                .map(|(v, n)| serde_json::json!([s(v), n]))
                .collect()
        }
        Value::Postings(set) => set.iter().map(s).collect(),
        Value::Collect(items) => items.iter().map(s).collect(),
        Value::Text(t) => s(&t),
        other => format!("{other:?}").into(),
    }
}

fn write_csv_field(out: &mut impl Write, field: &[u8]) -> io::Result<()> {
    if field
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        out.write_all(b"\"")?;
        for &b in field {
            if b == b'"' {
                out.write_all(b"\"\"")?;
            } else {
                out.write_all(&[b])?;
            }
        }
        out.write_all(b"\"")
    } else {
        out.write_all(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format, rows: &[Row]) -> String {
        let mut w = RowWriter::new(format, Vec::new());
        w.header().unwrap();
        for row in rows {
            w.write(row).unwrap();
        }
        String::from_utf8(w.into_inner()).unwrap()
    }

    #[test]
    fn keys_that_are_not_utf8_stay_distinct_and_recoverable_in_json_lines() {
        use base64::Engine;
        let keys: [&[u8]; 4] = [b"\xff", b"\xfe", b"ok", b"a\xffb"];
        let rows: Vec<Row> = keys
            .iter()
            .map(|k| Row {
                key: k.to_vec(),
                value: Value::Count(1),
            })
            .collect();
        let text = render(Format::Jsonl, &rows);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let recovered: Vec<Vec<u8>> = lines
            .iter()
            .map(|line| match line.get("key_base64") {
                Some(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64.as_str().unwrap())
                    .unwrap(),
                None => line["key"].as_str().unwrap().as_bytes().to_vec(),
            })
            .collect();
        assert_eq!(recovered, keys.map(<[u8]>::to_vec));
        assert!(lines[2].get("key_base64").is_none(), "a UTF-8 key is plain");
        let distinct: std::collections::HashSet<&str> = text.lines().collect();
        assert_eq!(distinct.len(), keys.len());
    }

    #[test]
    fn every_format_and_value_kind() {
        let rows = [
            Row {
                key: b"a,\"b\"".to_vec(),
                value: Value::Number(2.5),
            },
            Row {
                key: b"t".to_vec(),
                value: Value::TopK {
                    k: 2,
                    counts: [(b"x".to_vec(), 1), (b"y".to_vec(), 3)].into(),
                },
            },
            Row {
                key: b"p".to_vec(),
                value: Value::Postings([b"f1".to_vec(), b"f2".to_vec()].into()),
            },
        ];
        assert_eq!(
            render(Format::Tsv, &rows),
            "a,\"b\"\t2.5\nt\ty=3,x=1\np\tf1,f2\n"
        );
        assert_eq!(
            render(Format::Csv, &rows),
            "key,value\r\n\"a,\"\"b\"\"\",2.5\r\nt,\"y=3,x=1\"\r\np,\"f1,f2\"\r\n"
        );
        assert_eq!(
            render(Format::Jsonl, &rows[1..]),
            "{\"key\":\"t\",\"value\":[[\"y\",3],[\"x\",1]]}\n{\"key\":\"p\",\"value\":[\"f1\",\"f2\"]}\n"
        );
        assert_eq!(render(Format::Csv, &[]), "key,value\r\n");
    }
}

//! Writes result rows as TSV (the default), CSV or JSON Lines, to stdout or to a file.
//!
//! A file is written under a temporary name beside it and renamed when complete, so a reader
//! never sees half a result.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use fanfold_common::partial::{Row, Value};

/// Output format of result rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `key<TAB>value` lines; keys are written as their raw bytes.
    #[default]
    Tsv,
    /// A `key,value` header, then one row per key, quoted as RFC 4180 says.
    Csv,
    /// `{"key": …, "value": …}` lines; keys that are not UTF-8 are decoded lossily.
    Jsonl,
}

/// Where rows go.
pub struct Output {
    format: Format,
    out: BufWriter<Box<dyn Write>>,
    /// Temporary file and final path, when writing to a file.
    rename: Option<(PathBuf, PathBuf)>,
    header_written: bool,
}

impl Output {
    pub fn stdout(format: Format) -> Self {
        Output {
            format,
            out: BufWriter::new(Box::new(io::stdout().lock())),
            rename: None,
            header_written: false,
        }
    }

    pub fn file(format: Format, path: &Path) -> io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("'{}' is not a file path", path.display())))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = path.with_file_name(temp_name);
        let file = File::create(&temp)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Output {
            format,
            out: BufWriter::new(Box::new(file)),
            rename: Some((temp, path.to_path_buf())),
            header_written: false,
        })
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
                if !self.header_written {
                    self.header_written = true;
                    self.out.write_all(b"key,value\r\n")?;
                }
                write_csv_field(&mut self.out, &row.key)?;
                self.out.write_all(b",")?;
                write_csv_field(&mut self.out, &text(&row.value))?;
                self.out.write_all(b"\r\n")
            }
            Format::Jsonl => {
                let line = serde_json::json!({
                    "key": String::from_utf8_lossy(&row.key),
                    "value": json(&row.value),
                });
                writeln!(self.out, "{line}")
            }
        }
    }

    /// Flushes, and moves a finished file into place.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()?;
        if let Some((temp, path)) = self.rename.take() {
            std::fs::rename(&temp, &path)?;
        }
        Ok(())
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

impl Drop for Output {
    fn drop(&mut self) {
        // Not finished: remove the partial file rather than leave it behind.
        if let Some((temp, _)) = self.rename.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

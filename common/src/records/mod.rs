//! Records of a chunk in its input format, the fields of a record and numbers (decompression
//! is `crate::compression`'s).
//!
//! Formats: newline-delimited text (a record is a line, `\r\n` or `\n`), CSV (RFC 4180 quoting,
//! a header row by default; a quoted field may hold newlines, so a CSV file is cut only at
//! newlines outside quotes, each chunk read with the header in front: `crate::chunker::Cut`),
//! and JSON Lines (one JSON value per line; blank lines are skipped; a field is read by its
//! path in one pass over the line, no value tree built: `common/src/records/json.rs`). The
//! format comes from the `format` option or, by default, from the file name (after a
//! compression extension): `.csv`, `.tsv` (tab-delimited CSV), `.jsonl`/`.ndjson`/`.json`,
//! anything else is text.
//!
//! A record that cannot be used is skipped and counted as a bad record, never a failure:
//! a JSON line that does not parse, a CSV row with the wrong number of fields, a record holding
//! a NUL byte (binary data), and whatever an operation rejects (a missing field, a number that
//! does not parse, invalid UTF-8 where text is needed).
//!
//! Called by operations inside [`crate::operation::Operation::map`].

mod csv;
mod json;

use std::borrow::Cow;

use crate::chunker::Cut;
use crate::compression::strip_compression;
pub use crate::compression::{Compression, DECOMPRESSED_BLOCK, decompress, for_each_block};
use crate::operation::{Chunk, ChunkStats, MapError, Options, SpecError};
pub use csv::CsvRow;

/// How a file's records are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Csv,
    Jsonl,
}

/// The input options every record-reading operation takes: `format`, `delimiter`, `header`.
#[derive(Clone, Debug)]
pub struct InputOptions {
    /// `None`: decided by file name.
    format: Option<Format>,
    /// `None`: `,`, or tab for `.tsv` files.
    delimiter: Option<u8>,
    header: bool,
}

/// The option names [`InputOptions::from_options`] reads.
pub const INPUT_OPTIONS: [&str; 3] = ["format", "delimiter", "header"];

impl InputOptions {
    pub fn from_options(operation: &str, options: &Options) -> Result<Self, SpecError> {
        let bad = |message: String| SpecError::BadOption {
            operation: operation.to_owned(),
            message,
        };
        let format = match options.get("format").map(String::as_str) {
            None | Some("auto") => None,
            Some("text") => Some(Format::Text),
            Some("csv") => Some(Format::Csv),
            Some("jsonl") => Some(Format::Jsonl),
            Some(other) => {
                return Err(bad(format!(
                    "format '{other}' is not one of auto, text, csv, jsonl"
                )));
            }
        };
        let delimiter = match options.get("delimiter").map(String::as_str) {
            None => None,
            Some("\\t" | "tab") => Some(b'\t'),
            Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
            Some(d) => {
                return Err(bad(format!(
                    "delimiter '{d}' must be one ASCII character (or 'tab')"
                )));
            }
        };
        let header = parse_bool(operation, options, "header", true)?;
        Ok(InputOptions {
            format,
            delimiter,
            header,
        })
    }

    /// The format of a file, from the option or its name.
    pub fn format_of(&self, path: &str) -> Format {
        self.format.unwrap_or_else(|| {
            let name = strip_compression(path).to_ascii_lowercase();
            if name.ends_with(".csv") || name.ends_with(".tsv") {
                Format::Csv
            } else if name.ends_with(".jsonl")
                || name.ends_with(".ndjson")
                || name.ends_with(".json")
            {
                Format::Jsonl
            } else {
                Format::Text
            }
        })
    }

    /// How a file in these options' format is cut: CSV outside quotes, the rest at newlines.
    pub fn cut(&self, path: &str) -> Cut {
        match self.format_of(path) {
            Format::Csv => Cut::Csv {
                delimiter: self.delimiter_of(path),
            },
            Format::Text | Format::Jsonl => Cut::Lines,
        }
    }

    fn delimiter_of(&self, path: &str) -> u8 {
        self.delimiter.unwrap_or_else(|| {
            if strip_compression(path)
                .to_ascii_lowercase()
                .ends_with(".tsv")
            {
                b'\t'
            } else {
                b','
            }
        })
    }
}

/// Reads a `true`/`false` option.
pub fn parse_bool(
    operation: &str,
    options: &Options,
    name: &str,
    default: bool,
) -> Result<bool, SpecError> {
    match options.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true" | "yes" | "1") => Ok(true),
        Some("false" | "no" | "0") => Ok(false),
        Some(other) => Err(SpecError::BadOption {
            operation: operation.to_owned(),
            message: format!("option '{name}': '{other}' is not true or false"),
        }),
    }
}

/// One record of a chunk.
pub enum Record<'a> {
    /// A text line, without its line ending.
    Line(&'a [u8]),
    /// A CSV row and the file's header row, if it has one.
    Csv {
        header: Option<CsvRow<'a>>,
        row: CsvRow<'a>,
    },
    /// A JSON Lines record's text, checked UTF-8; [`Field::get`] reads it (and finds no
    /// field in a line that is not one JSON value).
    Json(&'a str),
}

/// A field of a record: a CSV column by header name (or 0-based index) or a JSON value by
/// dotted path (`user.address.city`; a numeric segment indexes an array).
#[derive(Clone, Debug)]
pub struct Field {
    name: String,
    segments: Vec<String>,
}

impl Field {
    pub fn new(name: &str) -> Self {
        Field {
            name: name.to_owned(),
            segments: name.split('.').map(str::to_owned).collect(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CSV column this field names in a file with `header`: the header's column of that
    /// name, else the name read as a 0-based index.
    pub fn column(&self, header: Option<CsvRow<'_>>) -> Option<usize> {
        header
            .and_then(|h| h.iter().position(|name| name == self.name.as_bytes()))
            .or_else(|| self.name.parse().ok())
    }

    /// The field's bytes: a JSON string's contents, other JSON scalars and composites as JSON
    /// text; `None` if the record lacks it, it is JSON `null`, or the record is a text line.
    pub fn get<'r>(&self, record: &Record<'r>) -> Option<Cow<'r, [u8]>> {
        match record {
            Record::Line(_) => None,
            Record::Csv { header, row } => row.get(self.column(*header)?).map(Cow::Borrowed),
            Record::Json(line) => {
                let [found] = json::get(line, [&self.segments]);
                found.map(FieldValue::into_bytes)
            }
        }
    }
}

/// Fields read from every record of one chunk. A CSV field's column is found in the header
/// at the chunk's first record and kept (every record of a chunk has its file's header), not
/// looked up by name in every record; a JSON record's fields are all read in one pass.
pub struct ChunkFields<'f, const N: usize> {
    /// A `None` field is not read.
    fields: [Option<&'f Field>; N],
    columns: Option<[Option<usize>; N]>,
}

impl<'f, const N: usize> ChunkFields<'f, N> {
    pub fn new(fields: [Option<&'f Field>; N]) -> Self {
        ChunkFields {
            fields,
            columns: None,
        }
    }

    /// What [`Field::get`] gives for `record`, for each field (`None` for a field not read),
    /// a JSON number with a fraction or exponent as the number.
    pub fn get<'r>(&mut self, record: &Record<'r>) -> [Option<FieldValue<'r>>; N] {
        match record {
            Record::Line(_) => std::array::from_fn(|_| None),
            Record::Csv { header, row } => {
                let fields = &self.fields;
                let columns = self.columns.get_or_insert_with(|| {
                    fields.map(|field| field.and_then(|f| f.column(*header)))
                });
                columns.map(|column| {
                    row.get(column?)
                        .map(|b| FieldValue::Bytes(Cow::Borrowed(b)))
                })
            }
            Record::Json(line) => {
                // The fields not read are looked for at no path: an empty path is none.
                let paths = self.fields.map(|f| f.map_or(&[][..], |f| &f.segments[..]));
                json::get(line, paths)
            }
        }
    }
}

/// A field's value as read: its bytes, or a JSON number with a fraction or an exponent as the
/// number it parsed to, so a sum need not print it and parse it back.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'r> {
    Bytes(Cow<'r, [u8]>),
    Float(f64),
}

impl<'r> FieldValue<'r> {
    /// The bytes [`Field::get`] gives: a number as its JSON text (`1e3` as `1000.0`).
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            FieldValue::Bytes(bytes) => Cow::Borrowed(bytes),
            FieldValue::Float(x) => Cow::Owned(float_text(*x)),
        }
    }

    pub fn into_bytes(self) -> Cow<'r, [u8]> {
        match self {
            FieldValue::Bytes(bytes) => bytes,
            FieldValue::Float(x) => Cow::Owned(float_text(x)),
        }
    }

    /// The value as a finite number, as [`number`] reads its bytes.
    pub fn number(&self) -> Option<f64> {
        match self {
            FieldValue::Bytes(bytes) => number(bytes),
            FieldValue::Float(x) => Some(*x).filter(|x| x.is_finite()),
        }
    }
}

/// A JSON number's text as its parsed value prints it.
fn float_text(x: f64) -> Vec<u8> {
    serde_json::Value::from(x).to_string().into_bytes()
}

/// Parses a finite number (surrounding ASCII whitespace allowed); `None` otherwise.
pub fn number(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?.trim_ascii();
    text.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The lines of a chunk, without line endings (`\n`, or `\r\n`). A final line without a newline
/// is a line; the empty string after a final newline is not.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// Calls `each` with every record of a chunk in its format. Records that cannot be parsed are
/// counted as bad without reaching `each`; `each` says whether it could use a record.
/// Counts records and bytes into `stats`. The file's first record in front of a CSV chunk
/// ([`Chunk::header`]) is read as the file's header (or, without one, sets the field count)
/// and is not a record of the chunk.
pub fn for_each_record(
    chunk: &Chunk<'_>,
    input: &InputOptions,
    stats: &mut ChunkStats,
    mut each: impl FnMut(&Record<'_>) -> Result<bool, MapError>,
) -> Result<(), MapError> {
    let (path, prefix) = (chunk.path, chunk.header.min(chunk.data.len()));
    let format = input.format_of(path);
    // Only a CSV chunk reads its file's first record; any other format starts past it.
    let data = match format {
        Format::Csv => chunk.data,
        Format::Text | Format::Jsonl => &chunk.data[prefix..],
    };
    stats.bytes_in += (chunk.data.len() - prefix) as u64;
    // A chunk without a NUL byte needs no look for one in every record.
    let nul = memchr::memchr(0, data).is_some();
    match format {
        Format::Text => {
            for line in lines(data) {
                let good = !(nul && line.contains(&0)) && each(&Record::Line(line))?;
                stats.record(good);
            }
        }
        Format::Jsonl => {
            for line in lines(data) {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                // Not UTF-8 or holding a NUL: not JSON text. Whether the rest is one JSON
                // value is found as its fields are read.
                let good = match std::str::from_utf8(line) {
                    Ok(text) if !(nul && line.contains(&0)) => each(&Record::Json(text))?,
                    _ => false,
                };
                stats.record(good);
            }
        }
        Format::Csv => {
            let mut rows = csv::Rows::new(data, input.delimiter_of(path));
            let header = input
                .header
                .then(|| rows.next().map(csv::OwnedRow::of))
                .flatten();
            // Every row has the field count of the file's first: its header, or (in front of
            // a later chunk) its first row, read for that.
            let mut fields = match &header {
                Some(header) => Some(header.row().len()),
                None if prefix > 0 && !input.header => rows.next().map(|row| row.len()),
                None => None,
            };
            while let Some(row) = rows.next() {
                let good = *fields.get_or_insert(row.len()) == row.len()
                    && !(nul && row.iter().any(|f| f.contains(&0)))
                    && each(&Record::Csv {
                        header: header.as_ref().map(csv::OwnedRow::row),
                        row,
                    })?;
                stats.record(good);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> InputOptions {
        let options: Options = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        InputOptions::from_options("test", &options).unwrap()
    }

    fn collect(
        data: &[u8],
        path: &str,
        input: &InputOptions,
        field: &str,
    ) -> (Vec<Option<String>>, ChunkStats) {
        let field = Field::new(field);
        let mut stats = ChunkStats::default();
        let mut seen = Vec::new();
        for_each_record(&Chunk::new(data, path, 0), input, &mut stats, |r| {
            let value = field
                .get(r)
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            let good = value.is_some();
            seen.push(value);
            Ok(good)
        })
        .unwrap();
        (seen, stats)
    }

    #[test]
    fn formats_follow_the_file_name_after_compression() {
        let auto = input(&[]);
        assert_eq!(auto.format_of("a/b.CSV.gz"), Format::Csv);
        assert_eq!(auto.format_of("x.ndjson.zst"), Format::Jsonl);
        assert_eq!(auto.format_of("x.log"), Format::Text);
        assert_eq!(
            input(&[("format", "jsonl")]).format_of("x.csv"),
            Format::Jsonl
        );
        assert!(
            InputOptions::from_options("t", &[("format".into(), "xml".into())].into()).is_err()
        );
    }

    #[test]
    fn csv_quotes_may_hold_newlines_and_bad_rows_are_counted() {
        let data = b"name,city\n\"Smith, J\",\"New\nYork\"\nshort\nx\0,y\nLee,Oslo\r\n";
        let (seen, stats) = collect(data, "p.csv", &input(&[]), "city");
        assert_eq!(
            seen,
            [Some("New\nYork".to_string()), Some("Oslo".to_string())]
        );
        assert_eq!((stats.records_in, stats.bad_records), (4, 2));
        let (seen, _) = collect(
            b"a;b\n1;2\n",
            "p.txt",
            &input(&[("format", "csv"), ("delimiter", ";"), ("header", "false")]),
            "1",
        );
        assert_eq!(seen, [Some("b".to_string()), Some("2".to_string())]);
    }

    #[test]
    fn json_paths_reach_nested_values_and_bad_lines_are_counted() {
        // A line that is not JSON text (a NUL, invalid UTF-8) never reaches the operation; one
        // that is not a JSON value has no fields.
        let data =
            b"{\"a\":{\"b\":[1,{\"c\":\"x\"}]}}\nnot json\n\n{\"a\":null}\n{\"a\":{\"b\":[2.5]}}\n\
                     {\"a\":\"\0\"}\n{\"a\":\"\xff\"}";
        let (seen, stats) = collect(data, "p.jsonl", &input(&[]), "a.b.1.c");
        assert_eq!(seen, [Some("x".to_string()), None, None, None]);
        assert_eq!((stats.records_in, stats.bad_records), (6, 5));
        let (seen, _) = collect(b"{\"a\":{\"b\":[2.5]}}\n", "p.json", &input(&[]), "a.b.0");
        assert_eq!(seen, [Some("2.5".to_string())]);
    }

    #[test]
    fn lines_numbers_and_compression() {
        let got: Vec<&[u8]> = lines(b"a\r\nb\n\nc").collect();
        assert_eq!(got, [&b"a"[..], b"b", b"", b"c"]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(number(b" 2.5 "), Some(2.5));
        assert_eq!(number(b"1e3"), Some(1000.0));
        assert_eq!(number(b"inf"), None);
        assert_eq!(number(b"12abc"), None);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"hello\nworld\n").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decompress("f.txt.gz", &gz).unwrap().as_ref(),
            b"hello\nworld\n"
        );
        let err = decompress("f.gz", b"plain").unwrap_err();
        assert!(err.starts_with("f.gz: not valid gzip"), "{err}");
        assert!(
            decompress("f.zst", b"plain")
                .unwrap_err()
                .starts_with("f.zst: not valid zstd")
        );
        assert_eq!(decompress("f.txt", b"x").unwrap().as_ref(), b"x");
    }
}

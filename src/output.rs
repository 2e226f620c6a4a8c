//! Writes result rows (see `fanfold_common::render`) to stdout or to a file.
//!
//! A file is written under a temporary name beside it and renamed when complete, so a reader
//! never sees half a result.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use fanfold_common::partial::Row;
use fanfold_common::render::{self, RowWriter};

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
    /// Each key alone, repeated as often as its count (a sort's sorted lines).
    Lines,
}

impl From<Format> for render::Format {
    fn from(format: Format) -> Self {
        match format {
            Format::Tsv => render::Format::Tsv,
            Format::Csv => render::Format::Csv,
            Format::Jsonl => render::Format::Jsonl,
            Format::Lines => render::Format::Lines,
        }
    }
}

/// Where rows go.
pub struct Output {
    out: RowWriter<BufWriter<Box<dyn Write>>>,
    /// Temporary file and final path, when writing to a file.
    rename: Option<(PathBuf, PathBuf)>,
}

impl Output {
    pub fn stdout(format: Format) -> Self {
        Output {
            out: RowWriter::new(format.into(), BufWriter::new(Box::new(io::stdout().lock()))),
            rename: None,
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
            out: RowWriter::new(format.into(), BufWriter::new(Box::new(file))),
            rename: Some((temp, path.to_path_buf())),
        })
    }

    pub fn write(&mut self, row: &Row) -> io::Result<()> {
        self.out.write(row)
    }

    /// Flushes, and moves a finished file into place.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.header()?;
        self.out.get_mut().flush()?;
        if let Some((temp, path)) = self.rename.take() {
            std::fs::rename(&temp, &path)?;
        }
        Ok(())
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

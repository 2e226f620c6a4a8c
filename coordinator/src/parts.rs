//! The part files of partitioned jobs on the coordinator: each reduce task's rows, written as
//! they arrive from its worker and never held together in memory.
//!
//! A part file is a run of length-delimited `fanfold.v1.Entry` messages (settled rows, in the
//! part's order), named after its job, partition, attempt and worker
//! (`JOB/part-00003-a2-w7`), so two attempts of one partition never write the same file. The
//! fleet adapter writes them; the scheduler keeps the winning attempt's file per partition and
//! removes the others; `GetResult` and the output directory read them back in partition
//! order. They live in the state directory (`parts/`) when there is one, so a finished
//! job's result survives a restart like an unpartitioned job's rows.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fanfold_common::fleet::ReduceKey;
use fanfold_common::ids::{JobId, WorkerId};
use fanfold_common::partial::Row;
use fanfold_proto::v1 as pb;
use prost::Message;

/// One partition's rows on disk, as a finished reduce task left them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub path: PathBuf,
    pub rows: u64,
    /// Keys in the partition before any limit.
    pub keys: u64,
}

/// Where a job's part files go.
pub fn job_dir(dir: &Path, job: JobId) -> PathBuf {
    dir.join(job.to_string())
}

/// The file of one reduce attempt's part, written by `worker`'s stream.
pub fn path(dir: &Path, key: ReduceKey, worker: WorkerId) -> PathBuf {
    job_dir(dir, key.job).join(format!(
        "part-{:05}-a{}-w{}",
        key.partition, key.attempt.0, worker.0
    ))
}

/// Removes every part file of a job (it failed or was cancelled).
pub fn remove_job(dir: &Path, job: JobId) {
    let _ = fs::remove_dir_all(job_dir(dir, job));
}

/// Writes one part as its rows come.
pub struct PartWriter {
    out: BufWriter<File>,
    pub path: PathBuf,
    pub rows: u64,
}

impl PartWriter {
    pub fn create(path: PathBuf) -> io::Result<PartWriter> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        Ok(PartWriter {
            out: BufWriter::with_capacity(256 << 10, File::create(&path)?),
            path,
            rows: 0,
        })
    }

    pub fn append(&mut self, rows: impl IntoIterator<Item = Row>) -> io::Result<()> {
        let mut buffer = Vec::new();
        for row in rows {
            buffer.clear();
            pb::Entry::from(row)
                .encode_length_delimited(&mut buffer)
                .expect("a Vec grows");
            self.out.write_all(&buffer)?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Flushes and syncs the part: it is whole on disk before the scheduler hears of it.
    pub fn finish(self) -> io::Result<(PathBuf, u64)> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((self.path, self.rows))
    }
}

/// Reads a part's rows back in order, as wire entries.
pub struct PartReader {
    input: BufReader<File>,
}

impl PartReader {
    pub fn open(path: &Path) -> io::Result<PartReader> {
        Ok(PartReader {
            input: BufReader::with_capacity(256 << 10, File::open(path)?),
        })
    }

    /// The next entry, `None` at the end. Read from the buffer in place where it holds the
    /// whole entry (nearly always): a read call per length byte and a fresh `Vec` per entry
    /// were most of streaming a million-row part.
    pub fn next_entry(&mut self) -> io::Result<Option<pb::Entry>> {
        let buffered = self.input.fill_buf()?;
        if buffered.is_empty() {
            return Ok(None);
        }
        let mut view = buffered;
        if let Ok(length) = prost::encoding::decode_varint(&mut view) {
            let head = buffered.len() - view.len();
            if let Some(body) = view.get(..length as usize) {
                let entry = pb::Entry::decode(body)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                self.input.consume(head + length as usize);
                return Ok(Some(entry));
            }
        }
        // The entry runs past the buffer (or its length does): read it piece by piece.
        let mut length = 0u64;
        let mut shift = 0;
        loop {
            let mut byte = [0u8];
            match self.input.read(&mut byte)? {
                0 if shift == 0 => return Ok(None),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                _ => {}
            }
            length |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a bad length"));
            }
        }
        let mut data = vec![0; length as usize];
        self.input.read_exact(&mut data)?;
        pb::Entry::decode(data.as_slice())
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Up to `n` entries; fewer only at the end.
    pub fn batch(&mut self, n: usize) -> io::Result<Vec<pb::Entry>> {
        let mut batch = Vec::with_capacity(n.min(4096));
        while batch.len() < n {
            match self.next_entry()? {
                Some(entry) => batch.push(entry),
                None => break,
            }
        }
        Ok(batch)
    }

    /// Every remaining row (for parts known to be small: a limited job's).
    pub fn rows(mut self) -> io::Result<Vec<Row>> {
        let mut rows = Vec::new();
        while let Some(entry) = self.next_entry()? {
            rows.push(
                Row::try_from(entry).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            );
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use fanfold_common::ids::Attempt;
    use fanfold_common::partial::Value;

    use super::*;

    #[test]
    fn rows_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let key = ReduceKey {
            job: JobId::new(),
            partition: 3,
            attempt: Attempt(2),
        };
        let file = path(dir.path(), key, WorkerId(7));
        assert!(file.ends_with(format!("{}/part-00003-a2-w7", key.job)));
        let rows: Vec<Row> = (0..300u64)
            .map(|i| Row {
                key: format!("k{i:04}").into_bytes(),
                value: if i % 2 == 0 {
                    Value::Count(i)
                } else {
                    Value::Text(vec![b'x'; i as usize])
                },
            })
            .collect();
        let mut writer = PartWriter::create(file.clone()).unwrap();
        writer.append(rows[..100].to_vec()).unwrap();
        writer.append(rows[100..].to_vec()).unwrap();
        assert_eq!(writer.finish().unwrap(), (file.clone(), 300));
        let mut reader = PartReader::open(&file).unwrap();
        assert_eq!(reader.batch(250).unwrap().len(), 250);
        assert_eq!(reader.batch(250).unwrap().len(), 50);
        assert!(reader.batch(250).unwrap().is_empty());
        assert_eq!(PartReader::open(&file).unwrap().rows().unwrap(), rows);
        remove_job(dir.path(), key.job);
        assert!(!file.exists());
    }

    #[test]
    fn entries_across_the_read_buffer_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("part");
        // Entries of up to 300 KiB: some straddle the 256 KiB buffer, some outgrow it.
        let rows: Vec<Row> = (0..2000u64)
            .map(|i| Row {
                key: i.to_be_bytes().to_vec(),
                value: Value::Text(vec![
                    b'a' + (i % 26) as u8;
                    (i * 7919 % 1500) as usize
                        * (1 + 200 * u64::from(i % 100 == 0)) as usize
                ]),
            })
            .collect();
        let mut writer = PartWriter::create(file.clone()).unwrap();
        writer.append(rows.clone()).unwrap();
        writer.finish().unwrap();
        assert_eq!(PartReader::open(&file).unwrap().rows().unwrap(), rows);
    }
}

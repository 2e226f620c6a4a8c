//! A reduce task's spilled runs: when the sorted segments it has fetched outgrow its share of
//! the worker's `--memory`, it merges them into one key-sorted run (values merged, not
//! settled) and writes the run to a file in the job's spill directory; at the end it merges
//! its runs and what it still holds, a key at a time, and never holds the partition whole
//! (Hadoop's reduce-side merge). A run file is a sequence of records: key length and key,
//! value length and value (`fanfold_common::convert::encode_value`), lengths as u32 LE.
//! Files are removed when the task ends, whatever the end, and with the job's spill directory.
//!
//! The merge's fan-in is bounded ([`FAN_IN`] sources at once, as Hadoop merges
//! `mapreduce.task.io.sort.factor` at a time): with more runs than that, the earliest are
//! first merged into one run on disk, a group at a time, so a task that spilled a thousand
//! times holds a thousand files' buffers and descriptors at no moment.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use fanfold_common::convert::{decode_value, encode_value};
use fanfold_common::partial::{Value, key_order};

/// A key and its merged value, read from a run.
type Merged = Result<(Vec<u8>, Value), String>;

/// The most sources one merge reads at once.
pub const FAN_IN: usize = 16;

/// The spilled runs of one reduce task, removed when it is dropped.
pub struct Runs {
    files: Vec<PathBuf>,
    /// Bytes written to them (merge passes included).
    pub bytes: u64,
    fan_in: usize,
    /// Merge passes that wrote a run of runs, and the most sources any merge read at once.
    pub passes: u32,
    pub widest: usize,
}

impl Default for Runs {
    fn default() -> Self {
        Runs::with_fan_in(FAN_IN)
    }
}

impl Runs {
    /// Runs merged at most `fan_in` (at least 2) at a time.
    pub fn with_fan_in(fan_in: usize) -> Self {
        Runs {
            files: Vec::new(),
            bytes: 0,
            fan_in: fan_in.max(2),
            passes: 0,
            widest: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Runs spilled so far.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Writes a key-sorted run to `path` (`write` calls `put` once per key, in order).
    pub fn spill(
        &mut self,
        path: PathBuf,
        write: impl FnOnce(&mut dyn FnMut(&[u8], Value) -> io::Result<()>) -> io::Result<()>,
    ) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        self.files.push(path.clone());
        self.bytes += write_run(&path, write)?;
        Ok(())
    }

    /// Merges the runs, in the order they were spilled, then `last` (held in memory, key
    /// sorted): `each` gets every key once, in key order, its values merged in that order.
    /// With more runs than the fan-in leaves room for beside `last`, the earliest are merged
    /// into runs of runs first.
    pub fn merge(
        &mut self,
        last: Vec<(Vec<u8>, Value)>,
        each: impl FnMut(Vec<u8>, Value) -> Result<(), String>,
    ) -> Result<(), String> {
        while self.files.len() >= self.fan_in {
            self.merge_earliest()?;
        }
        let mut sources = self.readers(self.files.len())?;
        sources.push(Box::new(last.into_iter().map(Ok)));
        self.widest = self.widest.max(sources.len());
        merge_sources(sources, each)
    }

    /// Merges the earliest `fan_in` runs into one, which takes their place.
    fn merge_earliest(&mut self) -> Result<(), String> {
        let sources = self.readers(self.fan_in)?;
        let path = self.files[0].with_extension(format!("m{}", self.passes));
        let written = write_run(&path, |put| {
            merge_sources(sources, |key, value| {
                put(&key, value).map_err(|e| e.to_string())
            })
            .map_err(io::Error::other)
        });
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(format!("{}: {e}", path.display()));
            }
        };
        for merged in self.files.drain(..self.fan_in) {
            let _ = std::fs::remove_file(merged);
        }
        self.files.insert(0, path);
        self.bytes += written;
        self.passes += 1;
        Ok(())
    }

    /// Readers of the earliest `n` runs, for one merge.
    fn readers(&mut self, n: usize) -> Result<Vec<Box<dyn Iterator<Item = Merged>>>, String> {
        self.widest = self.widest.max(n);
        let mut sources: Vec<Box<dyn Iterator<Item = Merged>>> = Vec::new();
        for path in &self.files[..n] {
            let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            sources.push(Box::new(RunReader {
                input: BufReader::with_capacity(64 << 10, file),
            }));
        }
        Ok(sources)
    }
}

/// Merges `sources` (each key sorted) a key at a time, equal keys' values in the sources'
/// order.
fn merge_sources(
    mut sources: Vec<Box<dyn Iterator<Item = Merged>>>,
    mut each: impl FnMut(Vec<u8>, Value) -> Result<(), String>,
) -> Result<(), String> {
    let mut heap = BinaryHeap::new();
    for (source, iter) in sources.iter_mut().enumerate() {
        if let Some(first) = iter.next() {
            let (key, value) = first?;
            heap.push(Head { key, value, source });
        }
    }
    let mut current = fanfold_common::shuffle::Coalesce::default();
    while let Some(Head { key, value, source }) = heap.pop() {
        if let Some(next) = sources[source].next() {
            let (k, v) = next?;
            heap.push(Head {
                key: k,
                value: v,
                source,
            });
        }
        if let Some((k, v)) = current.push(key, value).map_err(|e| e.to_string())? {
            each(k, v)?;
        }
    }
    if let Some((k, v)) = current.finish() {
        each(k, v)?;
    }
    Ok(())
}

/// Writes a key-sorted run to `path` (`write` calls `put` once per key, in order), synced;
/// returns its length.
fn write_run(
    path: &std::path::Path,
    write: impl FnOnce(&mut dyn FnMut(&[u8], Value) -> io::Result<()>) -> io::Result<()>,
) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut written = 0u64;
    write(&mut |key, value| {
        written += write_record(&mut out, key, value)?;
        Ok(())
    })?;
    out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    Ok(written)
}

/// Writes one record of a run; returns its length.
fn write_record(out: &mut impl Write, key: &[u8], value: Value) -> io::Result<u64> {
    let value = encode_value(value);
    let mut written = 0;
    for part in [key, &value[..]] {
        let len = u32::try_from(part.len()).map_err(|_| io::Error::other("too large"))?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(part)?;
        written += 4 + part.len() as u64;
    }
    Ok(written)
}

impl Drop for Runs {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The next key of one source; the smallest key comes first, then the earliest source.
struct Head {
    key: Vec<u8>,
    value: Value,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap is a max-heap.
        key_order(&other.key, &self.key).then_with(|| other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

/// Reads a run file's records in order.
struct RunReader {
    input: BufReader<File>,
}

impl RunReader {
    /// The next length-prefixed part; `None` at the end of the file.
    fn part(&mut self) -> io::Result<Option<Vec<u8>>> {
        // The end of the file only between records; anything cut short is corrupt.
        if io::BufRead::fill_buf(&mut self.input)?.is_empty() {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len)?;
        let mut part = vec![0u8; u32::from_le_bytes(len) as usize];
        self.input.read_exact(&mut part)?;
        Ok(Some(part))
    }
}

impl Iterator for RunReader {
    type Item = Merged;

    fn next(&mut self) -> Option<Self::Item> {
        let mut read = || -> Result<Option<(Vec<u8>, Value)>, String> {
            let Some(key) = self.part().map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let value = self
                .part()
                .map_err(|e| e.to_string())?
                .ok_or("a spilled run ends mid-record")?;
            Ok(Some((
                key,
                decode_value(&value).map_err(|e| e.to_string())?,
            )))
        };
        read().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The merge's keys and counts, in the order it gives them.
    fn counts(runs: &mut Runs, held: Vec<(Vec<u8>, Value)>) -> Vec<(Vec<u8>, u64)> {
        let mut got = Vec::new();
        runs.merge(held, |k, v| {
            let Value::Count(n) = v else { unreachable!() };
            got.push((k, n));
            Ok(())
        })
        .unwrap();
        got
    }

    #[test]
    fn runs_merge_into_each_key_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Runs::default();
        // Three runs and a held tail over overlapping keys: the merge is a sequential count.
        let mut expected = std::collections::BTreeMap::<Vec<u8>, u64>::new();
        let mut held = Vec::new();
        for r in 0..4u64 {
            let mut run: Vec<(Vec<u8>, Value)> = (0..300u64)
                .filter(|i| (i + r) % 3 != 0)
                .map(|i| {
                    (
                        format!("k{:04}", i * 7 % 500).into_bytes(),
                        Value::Count(r + 1),
                    )
                })
                .collect();
            run.sort_by(|a, b| key_order(&a.0, &b.0));
            run.dedup_by(|a, b| {
                if a.0 == b.0 {
                    b.1.merge(a.1.clone()).unwrap();
                    true
                } else {
                    false
                }
            });
            for (k, v) in &run {
                let Value::Count(n) = v else { unreachable!() };
                *expected.entry(k.clone()).or_default() += n;
            }
            if r == 3 {
                held = run;
            } else {
                runs.spill(dir.path().join(format!("run-{r}")), |put| {
                    run.into_iter().try_for_each(|(k, v)| put(&k, v))
                })
                .unwrap();
            }
        }
        assert!(runs.bytes > 0);
        assert_eq!(
            counts(&mut runs, held),
            expected.into_iter().collect::<Vec<_>>()
        );
        let files = runs.files.clone();
        drop(runs);
        assert!(
            files.iter().all(|f| !f.exists()),
            "runs are removed with the task"
        );
    }

    #[test]
    fn many_runs_merge_a_bounded_number_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Runs::with_fan_in(4);
        let mut expected = std::collections::BTreeMap::<Vec<u8>, u64>::new();
        // 23 runs of overlapping keys, each sorted: more than four merges' worth.
        for r in 0..23u64 {
            let mut run: Vec<(Vec<u8>, u64)> = (0..50u64)
                .map(|i| (format!("k{:03}", (i * 13 + r * 7) % 97).into_bytes(), r + 1))
                .collect();
            run.sort();
            run.dedup_by(|a, b| a.0 == b.0);
            for (k, n) in &run {
                *expected.entry(k.clone()).or_default() += n;
            }
            runs.spill(dir.path().join(format!("run-{r}.run")), |put| {
                run.into_iter()
                    .try_for_each(|(k, n)| put(&k, Value::Count(n)))
            })
            .unwrap();
        }
        let held = vec![(b"k000".to_vec(), Value::Count(1000))];
        *expected.entry(b"k000".to_vec()).or_default() += 1000;
        assert_eq!(
            counts(&mut runs, held),
            expected.into_iter().collect::<Vec<_>>()
        );
        assert!(runs.passes >= 6, "{} passes", runs.passes);
        assert!(runs.widest <= 4, "{} sources at once", runs.widest);
        // The merged runs went as they were merged; the rest go with the task.
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(left < 4, "{left} files left before the task ends");
        drop(runs);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

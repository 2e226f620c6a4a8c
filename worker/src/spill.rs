//! The worker's spill directory: the map outputs of partitioned jobs, kept for the reducers.
//!
//! One data file and one index per map attempt (`JOB/CHUNK-ATTEMPT.data` and `.index`), not a
//! file per partition: the data file holds the attempt's partitions one after another, each an
//! encoded, key-sorted segment; the index holds `partitions + 1` little-endian `u64` offsets.
//! Both are written under temporary names and renamed, so a file that exists is whole.
//!
//! Each worker owns a directory of its own under `--spill-dir` (`fanfold-spill-PID-N`, N
//! counting the workers this process started, as local mode starts several), removed when
//! the worker stops; one left by a process that was killed is removed by the next worker to
//! start there. Nothing is created until a partitioned job's map writes, so a worker that
//! runs no partitioned job needs no writable directory at all (a read-only container). A job's files go when the
//! coordinator says the job is over (its cancel, sent to every worker at a partitioned job's
//! end, whatever the end).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fanfold_common::ids::{Attempt, ChunkId, JobId};
use tracing::{debug, info};

const PREFIX: &str = "fanfold-spill-";

/// Spill directories this process has opened, to name the next one.
static OPENED: AtomicU64 = AtomicU64::new(0);

pub struct Spill {
    root: PathBuf,
}

impl Spill {
    /// This worker's directory under `dir` (created at the first write), after removing those
    /// of workers no longer running. A `dir` that cannot be read is left alone: it may never
    /// be needed, and the first write names it in its error.
    pub fn open(dir: &Path) -> Spill {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .map(|rest| rest.split('-').next().unwrap_or(rest))
            else {
                continue;
            };
            let alive = pid
                .parse::<u32>()
                .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive {
                info!(dir = %entry.path().display(), "removing a stopped worker's spill files");
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let n = OPENED.fetch_add(1, Ordering::Relaxed);
        let root = dir.join(format!("{PREFIX}{}-{n}", std::process::id()));
        // Left by an earlier process of this pid.
        let _ = fs::remove_dir_all(&root);
        Spill { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn base(&self, job: JobId, chunk: ChunkId, attempt: Attempt) -> PathBuf {
        self.root
            .join(job.to_string())
            .join(format!("{}-{}", chunk.0, attempt.0))
    }

    /// Keeps a map attempt's partitions; returns each one's size.
    pub fn write(
        &self,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        partitions: &[Vec<u8>],
    ) -> io::Result<Vec<u64>> {
        let base = self.base(job, chunk, attempt);
        fs::create_dir_all(base.parent().expect("under the job's directory")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("spill directory {}: {e}", self.root.display()),
            )
        })?;
        let data = base.with_extension("data");
        let index = base.with_extension("index");
        let temp = base.with_extension("data.tmp");
        let mut out = io::BufWriter::new(File::create(&temp)?);
        let mut offsets = Vec::with_capacity(partitions.len() + 1);
        let mut at = 0u64;
        offsets.push(0u64);
        for part in partitions {
            out.write_all(part)?;
            at += part.len() as u64;
            offsets.push(at);
        }
        out.flush()?;
        drop(out);
        fs::rename(&temp, &data)?;
        let bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let temp = base.with_extension("index.tmp");
        fs::write(&temp, bytes)?;
        fs::rename(&temp, &index)?;
        Ok(partitions.iter().map(|p| p.len() as u64).collect())
    }

    /// One partition of a kept map attempt's output.
    pub fn read(
        &self,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        partition: u32,
    ) -> io::Result<Vec<u8>> {
        let base = self.base(job, chunk, attempt);
        let index = fs::read(base.with_extension("index"))?;
        let offset = |i: usize| -> io::Result<u64> {
            index
                .get(i * 8..i * 8 + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("no partition {partition} in this map output"),
                    )
                })
        };
        let (start, end) = (offset(partition as usize)?, offset(partition as usize + 1)?);
        let mut file = File::open(base.with_extension("data"))?;
        file.seek(SeekFrom::Start(start))?;
        let mut data = vec![0; end.saturating_sub(start) as usize];
        file.read_exact(&mut data)?;
        Ok(data)
    }

    /// Removes a job's map outputs.
    pub fn remove_job(&self, job: JobId) {
        let dir = self.root.join(job.to_string());
        if dir.exists() {
            debug!(job_id = %job, "removing the job's map outputs");
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_come_back_as_written_and_go_with_their_job() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::open(dir.path());
        assert!(!spill.root().exists(), "nothing made before it is needed");
        let job = JobId::new();
        let parts = vec![b"first".to_vec(), Vec::new(), b"third part".to_vec()];
        let sizes = spill.write(job, ChunkId(2), Attempt(1), &parts).unwrap();
        assert_eq!(sizes, [5, 0, 10]);
        for (p, part) in parts.iter().enumerate() {
            let back = spill.read(job, ChunkId(2), Attempt(1), p as u32).unwrap();
            assert_eq!(&back, part);
        }
        assert!(spill.read(job, ChunkId(2), Attempt(1), 3).is_err());
        assert!(
            spill.read(job, ChunkId(2), Attempt(2), 0).is_err(),
            "another attempt"
        );
        spill.remove_job(job);
        assert!(spill.read(job, ChunkId(2), Attempt(1), 0).is_err());
        let root = spill.root().to_path_buf();
        drop(spill);
        assert!(!root.exists(), "a stopping worker leaves nothing");
    }

    #[test]
    fn a_dead_workers_directory_is_removed_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4194305 (above Linux's pid_max).
        let dead = dir.path().join(format!("{PREFIX}4194305-0"));
        fs::create_dir_all(dead.join("job")).unwrap();
        fs::write(dead.join("job/0-1.data"), b"x").unwrap();
        let other = dir.path().join("not-ours");
        fs::create_dir(&other).unwrap();
        let spill = Spill::open(dir.path());
        assert!(!dead.exists());
        assert!(other.exists(), "only spill directories are touched");
        let second = Spill::open(dir.path());
        assert_ne!(spill.root(), second.root(), "two workers in one process");
        // A directory that cannot be made fails the write, naming it.
        let nowhere = Spill::open(Path::new("/proc/fanfold-no-such-dir"));
        let error = nowhere
            .write(JobId::new(), ChunkId(0), Attempt(1), &[b"x".to_vec()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("/proc/fanfold-no-such-dir"), "{error}");
    }
}

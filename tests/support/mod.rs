//! Helpers for cross-process tests: start the real binaries on loopback, run `submit-job`,
//! generate inputs, and count words independently of fanfold's own code.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");
pub const WORKER: &str = env!("CARGO_BIN_EXE_worker");
pub const SUBMIT_JOB: &str = env!("CARGO_BIN_EXE_submit-job");

/// Longest a single `submit-job` call may take before the test fails instead of hanging.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Where child processes write their logs: `target/test-logs/<test>/<process>.log`.
pub fn log_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("test-logs")
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn log_file(test: &str, name: &str) -> std::fs::File {
    std::fs::File::create(log_dir(test).join(format!("{name}.log"))).unwrap()
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }
}

/// Starts a coordinator on `listen` (use port 0 for a free one); returns it and its address.
pub async fn coordinator(test: &str, listen: &str, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(COORDINATOR)
        .args(["--listen", listen])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log_file(test, "coordinator"))
        .kill_on_drop(true)
        .spawn()
        .expect("start coordinator");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("coordinator printed its address in time")
        .unwrap()
        .expect("coordinator printed a line");
    let addr = line
        .strip_prefix("coordinator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (Proc { child }, addr)
}

/// Starts a worker process attached to `coordinator`.
pub fn worker(test: &str, coordinator: &str, slots: u32, name: &str) -> Proc {
    worker_with(test, coordinator, slots, name, &[])
}

/// Starts a worker process with extra flags.
pub fn worker_with(test: &str, coordinator: &str, slots: u32, name: &str, extra: &[&str]) -> Proc {
    let child = Command::new(WORKER)
        .args(extra)
        .args([
            "--coordinator",
            coordinator,
            "--slots",
            &slots.to_string(),
            "--name",
            name,
        ])
        .args(["--heartbeat", "500ms"])
        .stdout(Stdio::null())
        .stderr(log_file(test, name))
        .kill_on_drop(true)
        .spawn()
        .expect("start worker");
    Proc { child }
}

/// Runs `submit-job` with `args` against `coordinator`, failing the test if it hangs.
pub async fn submit_job(coordinator: &str, args: &[&str]) -> Output {
    let run = Command::new(SUBMIT_JOB)
        .args(["--coordinator", coordinator])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("submit-job {args:?} did not finish in {COMMAND_TIMEOUT:?}"))
        .expect("run submit-job")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a command succeeded, showing its stderr if not.
pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr:\n{}",
        output.status.code(),
        stderr(output)
    );
}

/// Word counts computed directly, sharing no code with fanfold: split on the bytes Python's
/// `bytes.split()` treats as whitespace.
pub fn count_words(files: &[PathBuf]) -> HashMap<Vec<u8>, u64> {
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    for file in files {
        let data = std::fs::read(file).unwrap();
        for token in data
            .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
            .filter(|t| !t.is_empty())
        {
            match counts.get_mut(token) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(token.to_vec(), 1);
                }
            }
        }
    }
    counts
}

/// Parses `key<TAB>count` lines.
pub fn parse_tsv(bytes: &[u8]) -> HashMap<Vec<u8>, u64> {
    let mut rows = HashMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let tab = line.iter().rposition(|&b| b == b'\t').expect("a tab");
        let count = std::str::from_utf8(&line[tab + 1..])
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            rows.insert(line[..tab].to_vec(), count).is_none(),
            "key {:?} printed twice",
            String::from_utf8_lossy(&line[..tab])
        );
    }
    rows
}

/// A small deterministic generator (xorshift64*), so inputs are reproducible without a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes `files` text files of about `bytes_each` bytes under `dir` (in nested folders), with
/// a skewed vocabulary, every ASCII whitespace separator, CRLF lines, non-UTF-8 tokens, very
/// long lines, an empty file and a file without a final newline. Returns every file written.
pub fn generate_corpus(dir: &Path, files: usize, bytes_each: usize, seed: u64) -> Vec<PathBuf> {
    let mut rng = Rng::new(seed);
    let vocabulary: Vec<Vec<u8>> = (0..5000)
        .map(|i| {
            let mut word = format!("w{i}").into_bytes();
            if i % 97 == 0 {
                word.extend_from_slice(b"\xff\xfe"); // not UTF-8
            }
            if i % 13 == 0 {
                word[0] = b'W';
            }
            word
        })
        .collect();
    let separators: [&[u8]; 8] = [b" ", b" ", b" ", b"\t", b"  ", b"\x0b", b"\x0c", b" \r"];
    let mut written = Vec::new();
    for f in 0..files {
        let sub = dir.join(format!("part-{}", f % 3));
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join(format!("input-{f:03}.txt"));
        let mut data = Vec::with_capacity(bytes_each + 64);
        while data.len() < bytes_each {
            let words_in_line = if rng.below(500) == 0 {
                20_000
            } else {
                1 + rng.below(18)
            };
            for w in 0..words_in_line {
                if w > 0 {
                    data.extend_from_slice(separators[rng.below(8) as usize]);
                }
                // Zipf-like: small ranks far more often.
                let rank = (rng.below(5000) * rng.below(5000)) / 5000;
                data.extend_from_slice(&vocabulary[rank as usize]);
            }
            data.extend_from_slice(if rng.below(4) == 0 { b"\r\n" } else { b"\n" });
        }
        if f % 2 == 1 {
            data.extend_from_slice(b"unterminated last line");
        }
        std::fs::write(&path, &data).unwrap();
        written.push(path);
    }
    let empty = dir.join("part-0").join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    written.push(empty);
    written
}

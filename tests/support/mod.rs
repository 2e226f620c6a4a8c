//! Helpers for cross-process tests: start the real binaries on loopback, run `submit-job`,
//! generate inputs, and count words independently of fanfold's own code.

#![allow(dead_code)] // each test binary uses a different subset

pub mod auth;
pub mod s3;
pub mod web;

use std::collections::{BTreeMap, HashMap};
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

/// A process's log, appended to: a restarted process adds to the same file.
fn log_file(test: &str, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir(test).join(format!("{name}.log")))
        .unwrap()
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
    let (proc, grpc, _) = coordinator_with_http(test, listen, extra).await;
    (proc, grpc)
}

/// Starts a coordinator like [`coordinator`], its HTTP port on a free loopback port unless
/// `extra` names one; returns it, its gRPC address and its HTTP base URL (empty with
/// `--http-listen off`).
pub async fn coordinator_with_http(
    test: &str,
    listen: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    coordinator_with_env(test, listen, extra, &[]).await
}

/// Starts a coordinator like [`coordinator_with_http`] with extra environment variables.
pub async fn coordinator_with_env(
    test: &str,
    listen: &str,
    extra: &[&str],
    env: &[(String, String)],
) -> (Proc, String, String) {
    let mut child = Command::new(COORDINATOR)
        .args(["--listen", listen])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FANFOLD_HTTP_LISTEN", "127.0.0.1:0")
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
    // The HTTP line comes in the same write as the first, if there is one.
    let http = match tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await {
        Ok(Ok(Some(line))) => line
            .strip_prefix("status pages on ")
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    (Proc { child }, addr, http)
}

/// Runs a coordinator with `args` that must refuse to start: its output, once it has exited
/// with status 1 without serving.
pub async fn coordinator_refused(args: &[&str]) -> Output {
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(COORDINATOR)
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the coordinator exits")
    .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(!stdout(&refused).contains("listening"), "it did not serve");
    refused
}

/// The command that starts a worker process attached to `coordinator`, with extra flags.
pub fn worker_command(
    test: &str,
    coordinator: &str,
    slots: u32,
    name: &str,
    extra: &[&str],
) -> Command {
    let mut command = Command::new(WORKER);
    command
        .args(extra)
        .args(["--coordinator", coordinator, "--name", name])
        .args(["--slots", &slots.to_string(), "--heartbeat", "500ms"])
        .stdout(Stdio::null())
        .stderr(log_file(test, name))
        .kill_on_drop(true);
    command
}

/// Starts a worker process attached to `coordinator`.
pub fn worker(test: &str, coordinator: &str, slots: u32, name: &str) -> Proc {
    worker_with(test, coordinator, slots, name, &[])
}

/// Starts a worker process with extra flags.
pub fn worker_with(test: &str, coordinator: &str, slots: u32, name: &str, extra: &[&str]) -> Proc {
    let child = worker_command(test, coordinator, slots, name, extra)
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

/// The job id on the "job ID submitted" line of a `run`'s stderr.
pub fn submitted_job_id(out: &Output) -> String {
    let err = stderr(out);
    err.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {err}"))
        .to_owned()
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

/// A job's status as `submit-job status JOB --json` prints it (and `list --json` each job): the
/// fields tests read, by their documented names.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Status {
    pub job_id: String,
    pub state: String,
    pub finishing: bool,
    pub operation: String,
    pub inputs: Vec<String>,
    pub chunk_size: Option<u64>,
    pub chunks_total: u64,
    pub chunks_done: u64,
    pub chunks_running: u64,
    pub chunks_checkpointed: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub workers: u64,
    pub counters: Counters,
    pub error: Option<String>,
    pub submitted_at: Option<String>,
    pub finished_at: Option<String>,
    pub result_rows: u64,
    pub quarantine: Option<String>,
    pub reducers: Option<u32>,
    pub stage: Option<String>,
    pub reduces_total: u64,
    pub reduces_done: u64,
    pub reduces_running: u64,
    pub partition_bytes: Vec<u64>,
    pub slowest_running: Option<serde_json::Value>,
    pub page_url: Option<String>,
}

/// The `counters` of a [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Counters {
    pub records_in: u64,
    pub bytes_in: u64,
    pub bad_records: u64,
    pub keys_out: u64,
    pub attempts: u64,
    pub chunks_failed: u64,
    pub backups: u64,
    pub map_outputs_lost: u64,
    pub reduce_attempts: u64,
    pub shuffle_bytes: u64,
    /// `GROUP.NAME` -> amount.
    pub user: BTreeMap<String, u64>,
}

/// The JSON a command printed on stdout, e.g. `parse_json::<Status>(&out)` after
/// `status JOB --json`; fails the test, showing the exit code and stderr, if it is not that.
pub fn parse_json<T: serde::de::DeserializeOwned>(output: &Output) -> T {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "unexpected output ({e}): exit {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            stdout(output),
            stderr(output)
        )
    })
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

/// Polls `check` every 50 ms until it returns `Some`, failing the test after `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `submit-job status JOB --json`, parsed; `None` if the coordinator cannot be reached.
pub async fn job_status(coordinator: &str, job: &str) -> Option<Status> {
    let out = submit_job(coordinator, &["status", job, "--json"]).await;
    if out.stdout.is_empty() {
        return None;
    }
    Some(parse_json(&out))
}

/// `submit-job list --json`, parsed; `None` if the coordinator cannot be reached.
pub async fn list_jobs(coordinator: &str) -> Option<Vec<Status>> {
    let out = submit_job(coordinator, &["list", "--json"]).await;
    if out.stdout.is_empty() {
        return None;
    }
    Some(parse_json(&out))
}

/// Sends a signal by name (`STOP`, `CONT`, `TERM`) to a process.
pub fn signal(pid: i32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// User plus system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A generated corpus, with its word counts computed independently. It lives in a fixed folder
/// under the target directory, rewritten by each run: corpora are kept in statics, which are
/// never dropped, so a temporary directory would be left behind.
pub struct Corpus {
    pub root: PathBuf,
    pub files: Vec<PathBuf>,
    pub counts: HashMap<Vec<u8>, u64>,
    pub lines: u64,
    pub bytes: u64,
}

impl Corpus {
    pub fn generate(name: &str, files: usize, bytes_each: usize, seed: u64) -> Corpus {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("corpora")
            .join(name);
        let _ = std::fs::remove_dir_all(&root);
        let files = generate_corpus(&root, files, bytes_each, seed);
        let (mut lines, mut bytes) = (0, 0);
        for file in &files {
            let data = std::fs::read(file).unwrap();
            bytes += data.len() as u64;
            let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
            lines += newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"));
        }
        Corpus {
            counts: count_words(&files),
            root,
            files,
            lines,
            bytes,
        }
    }

    pub fn root(&self) -> &str {
        self.root.to_str().unwrap()
    }
}

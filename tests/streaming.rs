//! Cross-process tests of streaming jobs: shell mappers and reducers run by real workers and a
//! real coordinator, results compared with an independent count in Python, user counters, the
//! allow flag, failing mappers, and a worker killed mid-job (counters count once, no child
//! process left behind).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const ALLOW: &[&str] = &["--allow-streaming"];

/// Text files of ASCII words separated by spaces and tabs; returns them and their line count.
fn fixtures(dir: &Path) -> (Vec<PathBuf>, u64) {
    let mut rng = Rng::new(3);
    let mut files = Vec::new();
    let mut lines = 0;
    for f in 0..3 {
        let mut text = String::new();
        for _ in 0..(200 + 100 * f) {
            for w in 0..(1 + rng.below(9)) {
                if w > 0 {
                    text.push_str(if rng.below(4) == 0 { "\t" } else { " " });
                }
                text.push_str(&format!("w{}", rng.below(60) * rng.below(60) / 60));
            }
            text.push('\n');
            lines += 1;
        }
        let path = dir.join(format!("in-{f}.txt"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    (files, lines)
}

/// Word counts by Python's `bytes.split()`, independent of fanfold and of the shell programs.
fn python_counts(files: &[PathBuf]) -> HashMap<Vec<u8>, u64> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import collections, sys\n\
             c = collections.Counter(w for f in sys.argv[1:] for w in open(f, 'rb').read().split())\n\
             sys.stdout.buffer.write(b''.join(k + b'\\t' + str(n).encode() + b'\\n' for k, n in c.items()))",
        ])
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success());
    parse_tsv(&out.stdout)
}

const MAPPER: &str = "awk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" } \
    END { print \"reporter:counter:fanfold,lines,\" NR > \"/dev/stderr\" }'";

const REDUCER: &str = "awk -F'\\t' '$1 != k { if (NR > 1) print k \"\\t\" n; k = $1; n = 0 } \
    { n += $2 } END { if (NR > 0) print k \"\\t\" n }'";

/// The user counter `GROUP.NAME` of a status, if it has one.
fn counter(status: &Status, name: &str) -> Option<u64> {
    status.counters.user.get(name).copied()
}

async fn status_of(addr: &str, run: &std::process::Output) -> Status {
    let err = stderr(run);
    let job = err.split_whitespace().nth(1).unwrap().to_owned();
    job_status(addr, &job).await.expect("coordinator up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_mapper_with_builtin_and_shell_reducers() {
    let test = "streaming_reducers";
    let dir = tempfile::tempdir().unwrap();
    let (files, lines) = fixtures(dir.path());
    let expected = python_counts(&files);
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", ALLOW).await;
    let _workers: Vec<Proc> = (0..2)
        .map(|i| worker_with(test, &addr, 2, &format!("w{i}"), ALLOW))
        .collect();
    let input = dir.path().to_str().unwrap();
    for reducer in ["sum", REDUCER] {
        let run = submit_job(
            &addr,
            &[
                "run",
                "-q",
                input,
                "--chunk-size",
                "1KiB",
                "--mapper",
                MAPPER,
                "--reducer",
                reducer,
            ],
        )
        .await;
        assert_ok(&run);
        assert_eq!(parse_tsv(&run.stdout), expected, "reducer {reducer}");
        let status = status_of(&addr, &run).await;
        assert_eq!(counter(&status, "fanfold.lines"), Some(lines), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_needs_permission_and_a_failing_mapper_fails_the_job() {
    let test = "streaming_refusals";
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = fixtures(dir.path());
    let input = files[0].to_str().unwrap();

    // A coordinator that does not allow programs refuses the job at submission.
    let (_plain, plain_addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let refused = submit_job(&plain_addr, &["run", input, "--mapper", "cat"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("operation 'streaming' runs arbitrary programs"),
        "{}",
        stderr(&refused)
    );

    // A worker that does not allow them fails the chunk for good, saying why.
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", ALLOW).await;
    let worker = worker(test, &addr, 1, "careful");
    let run = submit_job(&addr, &["run", input, "--mapper", "cat"]).await;
    assert_eq!(run.status.code(), Some(1));
    let err = stderr(&run);
    assert!(
        err.contains(
            "failed after 1 attempt: worker careful: operation 'streaming' runs arbitrary programs"
        ) && err.contains("--allow-streaming"),
        "{err}"
    );
    drop(worker);

    // A mapper that exits non-zero fails its chunk with its stderr tail.
    let _allowed = worker_with(test, &addr, 1, "allowed", ALLOW);
    let run = submit_job(
        &addr,
        &[
            "run",
            input,
            "--mapper",
            "echo starting >&2; echo broken pipe dream >&2; exit 7",
        ],
    )
    .await;
    assert_eq!(run.status.code(), Some(1));
    let err = stderr(&run);
    assert!(
        err.contains("failed (exit status: 7); stderr: starting / broken pipe dream"),
        "{err}"
    );
}

/// Pids of mapper shells (`sh -c ...`) whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.starts_with(b"sh\0-c\0") && String::from_utf8_lossy(&c).contains(marker)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_leaves_no_child_and_counters_count_once() {
    let test = "streaming_worker_killed";
    let dir = tempfile::tempdir().unwrap();
    let (files, lines) = fixtures(dir.path());
    let expected = python_counts(&files);
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", ALLOW).await;
    let mut doomed = worker_with(test, &addr, 2, "doomed", ALLOW);
    let marker = format!("fanfold-test-marker-{}", std::process::id());
    // Slow enough that the doomed worker is mid-chunk when it is killed.
    let mapper = format!("sleep 2; : {marker}; {MAPPER}");
    let input = dir.path().to_str().unwrap().to_owned();
    let addr2 = addr.clone();
    let job = tokio::spawn(async move {
        submit_job(
            &addr2,
            &[
                "run",
                "-q",
                &input,
                "--chunk-size",
                "4KiB",
                "--mapper",
                &mapper,
                "--reducer",
                "sum",
            ],
        )
        .await
    });
    // Wait until the doomed worker runs mappers, then kill it (SIGKILL).
    let started = std::time::Instant::now();
    while processes_with(&marker).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no mapper started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.child.start_kill().unwrap();
    doomed.child.wait().await.unwrap();
    let _survivor = worker_with(test, &addr, 2, "survivor", ALLOW);
    let run = job.await.unwrap();
    assert_ok(&run);
    assert_eq!(parse_tsv(&run.stdout), expected);
    let status = status_of(&addr, &run).await;
    assert_eq!(counter(&status, "fanfold.lines"), Some(lines), "{status:?}");
    assert!(
        status.counters.attempts > status.chunks_done,
        "some chunks were retried: {status:?}"
    );
    // The killed worker's mapper shells died with it.
    let started = std::time::Instant::now();
    while !processes_with(&marker).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mapper processes outlived their worker: {:?}",
            processes_with(&marker)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_kills_its_running_mappers() {
    let test = "streaming_cancel";
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = fixtures(dir.path());
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", ALLOW).await;
    let _worker = worker_with(test, &addr, 2, "w", ALLOW);
    let marker = format!("fanfold-cancel-marker-{}", std::process::id());
    let mapper = format!("sleep 60; : {marker}; cat");
    let input = files[0].to_str().unwrap();
    let submitted = submit_job(&addr, &["run", input, "--detach", "--mapper", &mapper]).await;
    assert_ok(&submitted);
    let job = stdout(&submitted).trim().to_owned();
    let started = std::time::Instant::now();
    while processes_with(&marker).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no mapper started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ok(&submit_job(&addr, &["cancel", &job]).await);
    let cancelled = std::time::Instant::now();
    while !processes_with(&marker).is_empty() {
        assert!(
            cancelled.elapsed() < Duration::from_secs(10),
            "mappers of a cancelled job still run: {:?}",
            processes_with(&marker)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The worker is free again: a new job runs to the end.
    let run = submit_job(&addr, &["run", "-q", input, "--mapper", "head -n 1"]).await;
    assert_ok(&run);
    assert_eq!(run.stdout.iter().filter(|&&b| b == b'\n').count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopping_gracefully_kills_its_mappers_and_the_job_still_succeeds() {
    let test = "streaming_worker_stops";
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = fixtures(dir.path());
    let expected = python_counts(&files[..1]);
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", ALLOW).await;
    // Draining waits this long for running chunks, then stops them.
    let drain = [ALLOW, &["--drain-timeout", "1s"]].concat();
    let mut stopping = worker_with(test, &addr, 1, "stopping", &drain);
    let marker = format!("fanfold-stop-marker-{}", std::process::id());
    let ready = dir.path().join("ready");
    // Hangs until `ready` exists, so the first worker is mid-chunk when it is told to stop.
    let mapper = format!(
        "while [ ! -e {} ]; do sleep 0.1; done; : {marker}; {MAPPER}",
        ready.display()
    );
    let input = files[0].to_str().unwrap().to_owned();
    let addr2 = addr.clone();
    let job = tokio::spawn(async move {
        submit_job(
            &addr2,
            &["run", "-q", &input, "--mapper", &mapper, "--reducer", "sum"],
        )
        .await
    });
    let started = std::time::Instant::now();
    while processes_with(&marker).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no mapper started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &stopping.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), stopping.child.wait())
        .await
        .expect("the worker stops at its drain deadline even with a mapper running")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        processes_with(&marker).is_empty(),
        "its mapper died with it"
    );
    std::fs::write(&ready, b"").unwrap();
    let _survivor = worker_with(test, &addr, 1, "survivor", ALLOW);
    let run = job.await.unwrap();
    assert_ok(&run);
    assert_eq!(parse_tsv(&run.stdout), expected);
}

//! The coordinator killed (SIGKILL) at a spread of moments in the last part of a job: after its
//! last chunk is folded, while it finalizes, keeps the rows, commits the output directory and
//! journals the success, and just after. After every restart on the same state directory the
//! job ends succeeded with the exact result and its output directory intact, and a success a
//! client saw before the kill is still a success after it. Results are checked against a plain
//! sequential count.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// Kills per mode.
const TRIES: u64 = 30;

/// The spread of delays after the last chunk is folded: 0, STEP, 2 STEP, ...
const STEP: Duration = Duration::from_millis(20);

/// A corpus with a large vocabulary, so finalizing, keeping the rows and writing the output
/// take a while: about 60,000 distinct words in 256 KiB chunks.
fn corpus(dir: &Path) -> (PathBuf, HashMap<Vec<u8>, u64>) {
    let path = dir.join("words.txt");
    let mut rng = Rng::new(41);
    let mut data = Vec::with_capacity(3 << 20);
    while data.len() < (2 << 20) {
        for w in 0..6 {
            if w > 0 {
                data.push(b' ');
            }
            data.extend_from_slice(format!("u{}", rng.below(80_000)).as_bytes());
        }
        data.push(b'\n');
    }
    std::fs::write(&path, &data).unwrap();
    let counts = count_words(std::slice::from_ref(&path));
    (path, counts)
}

/// The job ids the coordinator lists (none while it cannot be reached).
async fn listed(addr: &str) -> Vec<String> {
    list_jobs(addr)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|j| j.job_id)
        .collect()
}

/// Runs `TRIES` jobs, killing the coordinator once in each, and checks each one's end.
async fn crash_every_try(name: &str, with_output_dir: bool) {
    let test = format!("crash_points_{name}");
    let scratch = tempfile::tempdir().unwrap();
    let (input, expected) = corpus(scratch.path());
    let state_dir = |try_no: u64| {
        let dir = scratch.path().join(format!("state-{try_no}"));
        dir.to_str().unwrap().to_owned()
    };
    let first = state_dir(0);
    let flags = ["--state-dir", first.as_str(), "--no-backups"];
    let (mut coordinator_proc, addr) = coordinator(&test, "127.0.0.1:0", &flags).await;
    let _worker = worker(&test, &addr, 2, "w");
    let mut known: HashSet<String> = HashSet::new();
    let (mut inside, mut after_success) = (0, 0);
    for try_no in 0..TRIES {
        // Each try on a state directory of its own, so a restart restores one job's state.
        let state = state_dir(try_no);
        let flags = ["--state-dir", state.as_str(), "--no-backups"];
        if try_no > 0 {
            coordinator_proc.child.start_kill().unwrap();
            coordinator_proc.child.wait().await.unwrap();
            let (fresh, again) = coordinator(&test, &addr, &flags).await;
            assert_eq!(again, addr);
            coordinator_proc = fresh;
        }
        let out_file = scratch.path().join(format!("result-{try_no}.tsv"));
        let out_dir = scratch.path().join(format!("out-{try_no}"));
        let mut args: Vec<String> = [
            "run",
            input.to_str().unwrap(),
            "--chunk-size",
            "256KiB",
            "-q",
            "--output",
            out_file.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec();
        if with_output_dir {
            args.extend(["--output-dir".into(), out_dir.display().to_string()]);
        }
        let mut client = tokio::process::Command::new(SUBMIT_JOB)
            .args(["--coordinator", &addr])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let job = until("the job to be listed", Duration::from_secs(60), || async {
            listed(&addr)
                .await
                .into_iter()
                .find(|id| !known.contains(id))
        })
        .await;
        known.insert(job.clone());
        // The last chunk is folded: the job is finishing, or already over.
        let folded = until(
            "the job's chunks to be folded",
            Duration::from_secs(120),
            || async {
                job_status(&addr, &job).await.filter(|s| {
                    s.state != "running" || s.finishing || s.chunks_done == s.chunks_total
                })
            },
        )
        .await;
        assert_ne!(folded.state, "failed", "{folded:?}");
        tokio::time::sleep(STEP * try_no as u32).await;
        let client_done = client.try_wait().unwrap();
        eprintln!(
            "{name} try {try_no}: kill at {:?}, client done: {}",
            started.elapsed(),
            client_done.is_some()
        );
        coordinator_proc.child.start_kill().unwrap(); // SIGKILL
        coordinator_proc.child.wait().await.unwrap();
        let saw_success = match client_done {
            Some(exit) => {
                assert!(exit.success(), "try {try_no}: the client failed: {exit:?}");
                after_success += 1;
                true
            }
            None => {
                inside += 1;
                false
            }
        };
        let (restarted, again) = coordinator(&test, &addr, &flags).await;
        assert_eq!(again, addr);
        coordinator_proc = restarted;
        let first = job_status(&addr, &job)
            .await
            .expect("the restarted coordinator answers");
        if saw_success {
            assert_eq!(
                first.state, "succeeded",
                "try {try_no}: a client saw the job succeed before the kill: {first:?}"
            );
        } else {
            assert!(
                first.state == "running" || first.state == "succeeded",
                "try {try_no}: {first:?}"
            );
        }
        // The client rides through the restart and gets the exact result.
        let exit = tokio::time::timeout(COMMAND_TIMEOUT, client.wait_with_output())
            .await
            .expect("the client ends")
            .unwrap();
        assert!(
            exit.status.success(),
            "try {try_no}: the client failed after the restart: {}",
            String::from_utf8_lossy(&exit.stderr)
        );
        let got = parse_tsv(&std::fs::read(&out_file).unwrap());
        assert!(got == expected, "try {try_no}: the result differs");
        let last = job_status(&addr, &job).await.unwrap();
        assert_eq!(last.state, "succeeded", "try {try_no}: {last:?}");
        let fetched = submit_job(&addr, &["result", &job]).await;
        assert_ok(&fetched);
        assert!(
            parse_tsv(&fetched.stdout) == expected,
            "try {try_no}: the fetched result differs"
        );
        if with_output_dir {
            let part = std::fs::read(out_dir.join("part-00000.tsv")).unwrap();
            assert!(
                parse_tsv(&part) == expected,
                "try {try_no}: the output directory differs"
            );
            assert_eq!(
                std::fs::read_to_string(out_dir.join("_SUCCESS")).unwrap(),
                format!("job_id {job}\n"),
                "try {try_no}"
            );
            let leftovers: Vec<String> = std::fs::read_dir(scratch.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".out-"))
                .collect();
            assert!(leftovers.is_empty(), "try {try_no}: left {leftovers:?}");
        }
    }
    eprintln!("{name}: {inside} kills before the client heard the end, {after_success} after it");
    // The spread must reach into the job's last moments, or this test proves nothing.
    assert!(
        inside >= 3,
        "only {inside} of {TRIES} kills landed before the job ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_a_jobs_last_moments_the_coordinator_keeps_its_promise() {
    crash_every_try("result", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_committing_an_output_directory_the_job_ends_with_it_intact() {
    crash_every_try("output_dir", true).await;
}

//! Worker files end to end: real workers started with `--local-root`, each over its own
//! directory of generated logs, a real coordinator that cannot read them, the real
//! `submit-job`. Results are compared with an independent sequential count of the files;
//! the JSON API shows which worker mapped each chunk. A worker killed with SIGKILL mid-job
//! either comes back within the lease (the job is exact) or fails the job, naming it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// A chunk as `/api/v1/jobs/{id}/chunks` lists it.
#[derive(serde::Deserialize)]
struct Chunk {
    file: String,
    state: String,
    worker: Option<String>,
}

#[derive(serde::Deserialize)]
struct Chunks {
    chunks: Vec<Chunk>,
}

/// Three directories of generated text under one parent, one per worker.
fn worker_dirs(parent: &Path) -> Vec<(PathBuf, Vec<PathBuf>)> {
    (0..3u64)
        .map(|i| {
            let dir = parent.join(format!("host-{i}"));
            std::fs::create_dir(&dir).unwrap();
            let files = generate_corpus(&dir, 3, 150_000 + 40_000 * i as usize, 11 + i);
            (dir, files)
        })
        .collect()
}

fn start_local_worker(test: &str, addr: &str, name: &str, root: &Path, extra: &[&str]) -> Proc {
    let mut flags = vec!["--local-root", root.to_str().unwrap()];
    flags.extend_from_slice(extra);
    worker_with(test, addr, 2, name, &flags)
}

async fn attached(http: &str, n: usize) {
    #[derive(serde::Deserialize)]
    struct Worker {}
    until("workers attached", Duration::from_secs(30), || async {
        let workers: Vec<Worker> = web::get_json(http, "/api/v1/workers").await;
        (workers.len() == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_maps_its_own_files_and_the_counts_are_exact() {
    let test = "worker_files";
    let parent = tempfile::tempdir().unwrap();
    let dirs = worker_dirs(parent.path());
    let (_coordinator, addr, http) = coordinator_with_http(test, "127.0.0.1:0", &[]).await;
    let _workers: Vec<Proc> = dirs
        .iter()
        .enumerate()
        .map(|(i, (dir, _))| start_local_worker(test, &addr, &format!("w{i}"), dir, &[]))
        .collect();
    attached(&http, 3).await;

    // The same path pattern on every worker: each answers with the files beneath its root.
    let everywhere = format!("worker://*{}/*", parent.path().display());
    let out = submit_job(
        &addr,
        &[
            "run",
            &everywhere,
            "--op",
            "wordcount",
            "--chunk-size",
            "32KiB",
        ],
    )
    .await;
    assert_ok(&out);
    let all: Vec<PathBuf> = dirs.iter().flat_map(|(_, f)| f.clone()).collect();
    assert!(
        parse_tsv(&out.stdout) == count_words(&all),
        "counts differ from the independent count over the union"
    );
    let id = submitted_job_id(&out);
    let chunks: Chunks =
        web::get_json(&http, &format!("/api/v1/jobs/{id}/chunks?limit=100000")).await;
    assert!(
        chunks.chunks.len() > all.len(),
        "files were cut into chunks"
    );
    for chunk in &chunks.chunks {
        assert_eq!(chunk.state, "done");
        let worker = chunk.worker.as_deref().expect("a worker ran it");
        let i: usize = worker[1..].parse().unwrap();
        let owned = format!("worker://{worker}{}/", dirs[i].0.display());
        assert!(
            chunk.file.starts_with(&owned),
            "{} was mapped by {worker}",
            chunk.file
        );
    }

    // Named workers, mixed with a file the coordinator reads (and sends inline).
    let extra = parent.path().join("coordinator.txt");
    std::fs::write(&extra, "alpha beta\nbeta gamma\n").unwrap();
    let one = format!("worker://w1{}", dirs[1].0.display());
    let out = submit_job(
        &addr,
        &[
            "run",
            &one,
            extra.to_str().unwrap(),
            "--op",
            "wordcount",
            "-q",
        ],
    )
    .await;
    assert_ok(&out);
    let mut both = dirs[1].1.clone();
    both.push(extra.clone());
    assert!(parse_tsv(&out.stdout) == count_words(&both));

    // Inputs that overlap name each file once.
    let a_file = format!("worker://w1{}", dirs[1].1[0].display());
    let out = submit_job(&addr, &["run", &one, &a_file, "--op", "wordcount", "-q"]).await;
    assert_ok(&out);
    assert!(parse_tsv(&out.stdout) == count_words(&dirs[1].1));

    // Clear refusals, naming the input and the worker.
    let nobody = format!("worker://nobody{}", dirs[0].0.display());
    let out = submit_job(&addr, &["run", &nobody, "--op", "wordcount", "-q"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no worker named 'nobody'"),
        "{}",
        stderr(&out)
    );
    // w0 does not offer w1's directory, however the path is written.
    let elsewhere = format!("worker://w0{}", dirs[1].0.display());
    let out = submit_job(&addr, &["run", &elsewhere, "--op", "wordcount", "-q"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&elsewhere) && err.contains("no file matches"),
        "{err}"
    );
    let dotted = format!("worker://w0{}/../host-1", dirs[0].0.display());
    let out = submit_job(&addr, &["run", &dotted, "--op", "wordcount", "-q"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let bad = submit_job(&addr, &["run", "worker://w0", "--op", "wordcount", "-q"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("worker://NAME/PATH"),
        "{}",
        stderr(&bad)
    );
}

/// Two directories of words and spaces only (what the awk mapper splits as the oracle
/// does), under one parent.
fn plain_dirs(parent: &Path) -> Vec<(PathBuf, Vec<PathBuf>)> {
    let mut rng = Rng::new(5);
    (0..2)
        .map(|i| {
            let dir = parent.join(format!("host-{i}"));
            std::fs::create_dir(&dir).unwrap();
            let files = (0..3)
                .map(|f| {
                    let mut text = String::new();
                    while text.len() < 100_000 {
                        for _ in 0..1 + rng.below(8) {
                            text.push_str(&format!("w{} ", rng.below(500)));
                        }
                        text.push('\n');
                    }
                    let path = dir.join(format!("app-{f}.log"));
                    std::fs::write(&path, text).unwrap();
                    path
                })
                .collect();
            (dir, files)
        })
        .collect()
}

/// Submits a job, waits until w0 has mapped some of its chunks, checks the job still runs,
/// and kills `owner` (SIGKILL); returns the job id.
async fn submit_then_kill(addr: &str, http: &str, args: &[&str], owner: &mut Proc) -> String {
    let out = submit_job(addr, args).await;
    assert_ok(&out);
    let id = stdout(&out).trim().to_owned();
    until(
        "some of w0's chunks done",
        Duration::from_secs(60),
        || async {
            let chunks: Chunks =
                web::get_json(http, &format!("/api/v1/jobs/{id}/chunks?limit=100000")).await;
            let done = chunks
                .chunks
                .iter()
                .filter(|c| c.state == "done" && c.worker.as_deref() == Some("w0"))
                .count();
            (done >= 2).then_some(())
        },
    )
    .await;
    let before = job_status(addr, &id).await.unwrap();
    assert_eq!(before.state, "running", "the job ended before the kill");
    owner.child.start_kill().unwrap(); // SIGKILL
    owner.child.wait().await.unwrap();
    id
}

/// A mapper that takes its time over each chunk, so a job lasts while a worker is killed.
const SLOW_MAPPER: &str = "sleep 0.25; awk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_leaves_fails_its_files_unless_it_comes_back_within_the_lease() {
    let test = "worker_files_leave";
    let parent = tempfile::tempdir().unwrap();
    let dirs = plain_dirs(parent.path());
    let (_coordinator, addr, http) = coordinator_with_http(
        test,
        "127.0.0.1:0",
        &["--allow-streaming", "--worker-timeout", "3s"],
    )
    .await;
    let streaming = ["--allow-streaming"];
    let mut owner = start_local_worker(test, &addr, "w0", &dirs[0].0, &streaming);
    let _other = start_local_worker(test, &addr, "w1", &dirs[1].0, &streaming);
    attached(&http, 2).await;
    let inputs = [
        format!("worker://w0{}", dirs[0].0.display()),
        format!("worker://w1{}", dirs[1].0.display()),
    ];
    let job = |inputs: &[String]| {
        let mut args = vec!["run".to_owned()];
        args.extend_from_slice(inputs);
        let flags = [
            "--mapper",
            SLOW_MAPPER,
            "--reducer",
            "sum",
            "--chunk-size",
            "16KiB",
        ];
        for flag in flags.into_iter().chain(["--detach"]) {
            args.push(flag.to_owned());
        }
        args
    };
    let args = job(&inputs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Killed and back at once, under the same name: the job is exact.
    let id = submit_then_kill(&addr, &http, &args, &mut owner).await;
    owner = start_local_worker(test, &addr, "w0", &dirs[0].0, &streaming);
    let status = until("the job to end", Duration::from_secs(120), || async {
        let status = job_status(&addr, &id).await?;
        (status.state != "running").then_some(status)
    })
    .await;
    assert_eq!(status.state, "succeeded", "{:?}", status.error);
    let result = submit_job(&addr, &["result", &id]).await;
    assert_ok(&result);
    let both: Vec<PathBuf> = dirs[..2].iter().flat_map(|(_, f)| f.clone()).collect();
    assert!(
        parse_tsv(&result.stdout) == count_words(&both),
        "counts differ after w0 came back"
    );

    // Killed for good: its chunks wait a lease, then the job fails, naming it.
    let id = submit_then_kill(&addr, &http, &args, &mut owner).await;
    let status = until("the job to fail", Duration::from_secs(60), || async {
        let status = job_status(&addr, &id).await?;
        (status.state != "running").then_some(status)
    })
    .await;
    assert_eq!(status.state, "failed");
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("worker 'w0' left and did not come back within 3s"),
        "{error}"
    );
}

/// A worker's peak resident memory (`VmHWM`), in MiB.
fn peak_rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_log_is_mapped_as_it_is_decompressed_in_bounded_memory() {
    let test = "worker_files_gzip";
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB of text as 64 gzip members of the same MiB (a valid gzip stream: members
    // concatenate); its counts are 64 times the MiB's.
    let mut rng = Rng::new(9);
    let mut base = String::new();
    while base.len() < (1 << 20) - 64 {
        for _ in 0..1 + rng.below(10) {
            base.push_str(&format!("w{} ", rng.below(3000)));
        }
        base.push('\n');
    }
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut member, base.as_bytes()).unwrap();
    let member = member.finish().unwrap();
    let copies = 64u64;
    let log = dir.path().join("app.log.gz");
    std::fs::write(&log, member.repeat(copies as usize)).unwrap();
    let one = dir.path().join("one.txt");
    std::fs::write(&one, &base).unwrap();
    let expected: std::collections::HashMap<Vec<u8>, u64> = count_words(&[one])
        .into_iter()
        .map(|(k, n)| (k, n * copies))
        .collect();

    let (_coordinator, addr, http) = coordinator_with_http(test, "127.0.0.1:0", &[]).await;
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::rename(&log, logs.join("app.log.gz")).unwrap();
    let worker = start_local_worker(test, &addr, "w0", &logs, &[]);
    attached(&http, 1).await;
    let input = format!("worker://w0{}/app.log.gz", logs.display());
    let out = submit_job(&addr, &["run", &input, "--op", "wordcount", "-q"]).await;
    assert_ok(&out);
    assert!(
        parse_tsv(&out.stdout) == expected,
        "counts differ from 64 x the MiB's"
    );
    // Decompressed whole, the file alone would take 64 MiB beside the worker's own (about
    // 20 MiB); block by block it takes one block (16 MiB).
    let peak = peak_rss_mib(worker.pid());
    assert!(
        peak < 60,
        "the worker peaked at {peak} MiB for a 64 MiB decompressed file"
    );
}

//! Object storage end to end: a real S3-compatible server (`s3s-fs`, in this test process on
//! a loopback port), a real coordinator and real workers that reach it with the AWS
//! environment variables, the real `submit-job`. Every result over objects is compared with
//! the same job over the same files read locally (the server keeps objects as plain files),
//! and word counts with an independent sequential count.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::s3::S3;
use support::*;

/// A coordinator (HTTP port on) and workers that all read `s3`.
struct Fleet {
    procs: Vec<Proc>,
    addr: String,
    http: String,
}

async fn fleet(test: &str, s3: &S3, workers: u32, coordinator_flags: &[&str]) -> Fleet {
    let (coordinator, addr, http) =
        coordinator_with_env(test, "127.0.0.1:0", coordinator_flags, &s3.env()).await;
    let mut procs = vec![coordinator];
    for i in 0..workers {
        procs.push(start_worker(test, s3, &addr, &format!("worker-{i}")));
    }
    Fleet { procs, addr, http }
}

fn start_worker(test: &str, s3: &S3, addr: &str, name: &str) -> Proc {
    let child = worker_command(test, addr, 2, name, &[])
        .envs(s3.env())
        .spawn()
        .expect("start worker");
    Proc { child }
}

/// Runs `submit-job run --quiet ARGS`; its stdout and the job's final status.
async fn run(addr: &str, args: &[&str]) -> (Vec<u8>, Status) {
    let mut all = vec!["run", "--quiet"];
    all.extend_from_slice(args);
    let out = submit_job(addr, &all).await;
    assert_ok(&out);
    let status = submit_job(addr, &["status", &submitted_job_id(&out), "--json"]).await;
    (out.stdout, parse_json(&status))
}

/// The coordinator's count of input bytes it sent to workers itself.
async fn bytes_sent(http: &str) -> f64 {
    let metrics = web::parse_metrics(&web::get(http, "/metrics").await.body);
    metrics["fanfold_chunk_bytes_sent_total"]
}

/// CSV and JSON Lines files of `n` records each, under `dir`.
fn records(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let mut rng = Rng::new(7);
    let regions = ["north", "south", "east", "west", "Zürich"];
    let mut csv = String::from("region,user,amount\n");
    let mut jsonl = String::new();
    for i in 0..n {
        let region = regions[rng.below(5) as usize];
        let user = rng.below(300);
        let cents = rng.below(100_000);
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        csv.push_str(&format!("{region},u{user},{amount}\n"));
        jsonl.push_str(&format!(
            "{{\"i\":{i},\"user\":{{\"country\":\"{region}\",\"id\":\"u{user}\"}},\"latency_ms\":{amount}}}\n"
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    let (c, j) = (dir.join("sales.csv"), dir.join("events.jsonl"));
    std::fs::write(&c, csv).unwrap();
    std::fs::write(&j, jsonl).unwrap();
    (c, j)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Every operation over objects gives what it gives over the same files read locally; the
/// workers read the objects themselves (the coordinator sent no chunk bytes); a large object
/// is split in many chunks; a glob over prefixes and gzip objects work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_over_objects_matches_the_same_files_read_locally() {
    let s3 = S3::start();
    let bucket = s3.bucket("data");
    let text = generate_corpus(&bucket.join("text"), 6, 1 << 20, 11);
    let (csv, jsonl) = records(&bucket.join("records"), 20_000);
    let f = fleet("objects_ops", &s3, 2, &[]).await;
    let small = ["--chunk-size", "64KiB"];
    let local = |p: &Path| p.display().to_string();
    let text_dir = local(&bucket.join("text"));
    let (csv_local, jsonl_local) = (local(&csv), local(&jsonl));
    let jobs: Vec<(Vec<&str>, &str, String)> = vec![
        (
            vec!["--op", "wordcount"],
            "s3://data/text/",
            text_dir.clone(),
        ),
        (vec!["--op", "index"], "s3://data/text", text_dir.clone()),
        (
            vec![
                "--op",
                "grep",
                "--option",
                "pattern=w1[0-9]+",
                "--option",
                "output=lines",
            ],
            "s3://data/text/",
            text_dir.clone(),
        ),
        (
            vec!["--op", "distinct"],
            "s3://data/text/",
            text_dir.clone(),
        ),
        (
            vec!["--op", "sort", "--reducers", "3"],
            "s3://data/text/",
            text_dir.clone(),
        ),
        (
            vec![
                "--op",
                "groupby",
                "--option",
                "key=region",
                "--option",
                "agg=sum",
                "--option",
                "value=amount",
            ],
            "s3://data/records/sales.csv",
            csv_local.clone(),
        ),
        (
            vec![
                "--op",
                "groupby",
                "--option",
                "key=user",
                "--option",
                "agg=count",
                "--reducers",
                "3",
            ],
            "s3://data/records/sales.csv",
            csv_local.clone(),
        ),
        (
            vec![
                "--op",
                "groupby",
                "--option",
                "key=user.country",
                "--option",
                "agg=mean",
                "--option",
                "value=latency_ms",
            ],
            "s3://data/records/events.jsonl",
            jsonl_local.clone(),
        ),
        (
            vec!["--op", "distinct", "--option", "field=user.id"],
            "s3://data/records/*.jsonl",
            jsonl_local.clone(),
        ),
        (
            vec![
                "--op",
                "histogram",
                "--option",
                "field=latency_ms",
                "--option",
                "edges=0,10,100,500",
            ],
            "s3://data/records/events.jsonl",
            jsonl_local.clone(),
        ),
    ];
    for (op, url, path) in &jobs {
        let mut over_objects = vec![*url];
        over_objects.extend(op.iter().copied());
        over_objects.extend(small);
        let mut over_files = vec![path.as_str()];
        over_files.extend(op.iter().copied());
        over_files.extend(small);
        let (from_store, status) = run(&f.addr, &over_objects).await;
        let (from_disk, _) = run(&f.addr, &over_files).await;
        // Names of files (index values) differ only in where the bucket is.
        let from_disk = String::from_utf8_lossy(&from_disk)
            .replace(&format!("{}/", bucket.display()), "s3://data/")
            .into_bytes();
        let from_store = String::from_utf8_lossy(&from_store)
            .into_owned()
            .into_bytes();
        assert!(!from_disk.is_empty(), "{op:?}: the fixture gives rows");
        assert!(from_store == from_disk, "{op:?}: {url} differs from {path}");
        assert_eq!(status.state, "succeeded", "{op:?}");
        if url.starts_with("s3://data/text") {
            assert!(status.chunks_total >= 40, "many chunks: {status:?}");
        }
    }
    // The word count against an independent count of the files.
    let (counted, _) = run(&f.addr, &["s3://data/text/"]).await;
    assert!(parse_tsv(&counted) == count_words(&text), "word counts");
    // The workers read every object chunk themselves. (The local runs above were inline.)
    let before = bytes_sent(&f.http).await;
    let (_, status) = run(&f.addr, &["s3://data/text/", "--chunk-size", "64KiB"]).await;
    assert!(status.chunks_total >= 40);
    assert_eq!(
        bytes_sent(&f.http).await,
        before,
        "the coordinator sent no chunk bytes"
    );

    // One large object in many chunks; gzip objects under a glob of prefixes, one chunk each.
    let mut big = Vec::new();
    for file in &text {
        big.extend(std::fs::read(file).unwrap());
        if !big.ends_with(b"\n") {
            big.push(b'\n');
        }
    }
    s3.put("data", "big/all.txt", &big);
    let (whole, status) = run(
        &f.addr,
        &["s3://data/big/all.txt", "--chunk-size", "128KiB"],
    )
    .await;
    // Long lines make some chunks longer than the chunk size; still many chunks.
    assert!(status.chunks_total >= 20, "{status:?}");
    assert!(parse_tsv(&whole) == count_words(&[s3.file("data", "big/all.txt")]));
    let mut expected_files = Vec::new();
    for (day, file) in text.iter().enumerate() {
        let data = std::fs::read(file).unwrap();
        s3.put(
            "data",
            &format!("logs/2026-11-0{day}/app.txt.gz"),
            &gzip(&data),
        );
        s3.put(
            "data",
            &format!("logs/2026-12-0{day}/app.txt.gz"),
            &gzip(b"not this"),
        );
        s3.put("data", &format!("logs/2026-11-0{day}/_SUCCESS"), b"");
        expected_files.push(file.clone());
    }
    let (globbed, status) = run(&f.addr, &["s3://data/logs/2026-11-*/*.gz"]).await;
    assert_eq!(
        status.chunks_total as usize,
        text.len(),
        "one chunk per gzip object"
    );
    assert!(
        parse_tsv(&globbed) == count_words(&expected_files),
        "glob over prefixes"
    );
    drop(f.procs);
}

/// Many small objects under nested prefixes: every one is read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_objects() {
    let s3 = S3::start();
    s3.bucket("small");
    let mut rng = Rng::new(3);
    let mut files = Vec::new();
    for i in 0..400 {
        let words: Vec<String> = (0..rng.below(40))
            .map(|_| format!("t{}", rng.below(90)))
            .collect();
        files.push(s3.put(
            "small",
            &format!("p{}/q{}/o{i}.txt", i % 7, i % 3),
            words.join(" ").as_bytes(),
        ));
    }
    let f = fleet("objects_many", &s3, 2, &[]).await;
    let (counts, status) = run(&f.addr, &["s3://small/"]).await;
    assert!(parse_tsv(&counts) == count_words(&files));
    assert!(
        status.chunks_total <= 400 && status.chunks_total > 300,
        "{status:?}"
    );
}

/// An object changed after planning fails its job clearly (no mixing of versions); a wrong
/// secret and a missing bucket or object fail at submission, naming the URL, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_objects_refused_credentials_and_missing_buckets_fail_clearly() {
    let s3 = S3::start();
    s3.bucket("data");
    s3.put("data", "a.txt", b"alpha beta\n".repeat(10_000).as_slice());
    // No worker yet: the job is planned and waits.
    let f = fleet("objects_changed", &s3, 0, &[]).await;
    let out = submit_job(
        &f.addr,
        &[
            "run",
            "s3://data/a.txt",
            "--detach",
            "--chunk-size",
            "16KiB",
            "--output-dir",
            "s3://data/out/",
        ],
    )
    .await;
    assert_ok(&out);
    let job = stdout(&out).trim().to_owned();
    s3.put("data", "a.txt", b"gamma delta\n".repeat(10_000).as_slice());
    let mut procs = f.procs;
    procs.push(start_worker("objects_changed", &s3, &f.addr, "late"));
    let status = until("the job ends", Duration::from_secs(60), || async {
        job_status(&f.addr, &job)
            .await
            .filter(|s| s.state != "running")
    })
    .await;
    assert_eq!(status.state, "failed", "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(
        error.contains("s3://data/a.txt") && error.contains("changed since the job was planned"),
        "{error}"
    );
    assert!(
        !s3.file("data", "out").exists(),
        "a failed job writes no output"
    );

    let missing = submit_job(&f.addr, &["run", "s3://nobucket/x/"]).await;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("s3://nobucket/x/"),
        "{}",
        stderr(&missing)
    );
    let none = submit_job(&f.addr, &["run", "s3://data/no/such/key.txt"]).await;
    assert!(
        stderr(&none).contains("no file matches"),
        "{}",
        stderr(&none)
    );

    let denied_s3 = s3.env_with_secret("wrong-secret");
    let (_denied, addr, _) =
        coordinator_with_env("objects_denied", "127.0.0.1:0", &[], &denied_s3).await;
    let started = std::time::Instant::now();
    let denied = submit_job(&addr, &["run", "s3://data/a.txt"]).await;
    assert!(!denied.status.success());
    let message = stderr(&denied);
    assert!(message.contains("s3://data/a.txt"), "{message}");
    assert!(
        !message.contains("wrong-secret"),
        "no secret in errors: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a refusal is not retried"
    );
    drop(procs);
}

/// Results go to the store: parts, then `_SUCCESS`; an existing output is refused unless
/// overwritten; with data and output roots in the store, objects outside them are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_to_the_store_commit_with_success_last() {
    let s3 = S3::start();
    let bucket = s3.bucket("data");
    let text = generate_corpus(&bucket.join("in"), 3, 256 << 10, 5);
    let f = fleet(
        "objects_output",
        &s3,
        2,
        &[
            "--data-root",
            "s3://data/in/",
            "--output-root",
            "s3://data/results/",
        ],
    )
    .await;
    for reducers in ["0", "3"] {
        let mut args = vec![
            "s3://data/in/",
            "--output-dir",
            "s3://data/results/wc/",
            "--overwrite",
        ];
        if reducers != "0" {
            args.extend(["--reducers", reducers]);
        }
        let (_, status) = run(&f.addr, &args).await;
        assert_eq!(status.state, "succeeded");
        let dir = s3.file("data", "results/wc");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        assert!(names.contains(&"_SUCCESS".to_owned()), "{names:?}");
        let parts: Vec<PathBuf> = names
            .iter()
            .filter(|n| n.starts_with("part-"))
            .map(|n| dir.join(n))
            .collect();
        let want_parts = if reducers == "0" { 1 } else { 3 };
        assert_eq!(parts.len(), want_parts, "{names:?}");
        let mut all = Vec::new();
        for part in &parts {
            all.extend(std::fs::read(part).unwrap());
        }
        assert!(
            parse_tsv(&all) == count_words(&text),
            "parts hold the counts"
        );
    }
    let again = submit_job(
        &f.addr,
        &[
            "run",
            "s3://data/in/",
            "--output-dir",
            "s3://data/results/wc/",
        ],
    )
    .await;
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    s3.put("data", "secret/keys.txt", b"top secret\n");
    for (input, output) in [
        ("s3://data/secret/keys.txt", "s3://data/results/x/"),
        ("s3://data/in/../secret/keys.txt", "s3://data/results/x/"),
        ("s3://data/in/", "s3://data/elsewhere/"),
        // The output root itself, which every job's results share, is no one's directory.
        ("s3://data/in/", "s3://data/results/"),
    ] {
        let refused = submit_job(
            &f.addr,
            &["run", input, "--output-dir", output, "--overwrite"],
        )
        .await;
        assert!(!refused.status.success());
        assert!(
            stderr(&refused).contains("outside the allowed roots")
                || stderr(&refused).contains("not allowed"),
            "{}",
            stderr(&refused)
        );
    }
}

/// A worker killed (SIGKILL) mid-job over objects: its chunks run again elsewhere and the
/// counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing() {
    let s3 = S3::start();
    let bucket = s3.bucket("data");
    let text = generate_corpus(&bucket.join("in"), 4, 2 << 20, 9);
    let f = fleet("objects_kill", &s3, 2, &[]).await;
    let out = submit_job(
        &f.addr,
        &["run", "s3://data/in/", "--detach", "--chunk-size", "32KiB"],
    )
    .await;
    assert_ok(&out);
    let job = stdout(&out).trim().to_owned();
    until("some chunks are done", Duration::from_secs(60), || async {
        job_status(&f.addr, &job)
            .await
            .filter(|s| s.chunks_done >= 5)
    })
    .await;
    signal(f.procs[1].pid(), "KILL");
    let status = until("the job ends", Duration::from_secs(120), || async {
        job_status(&f.addr, &job)
            .await
            .filter(|s| s.state != "running")
    })
    .await;
    assert_eq!(status.state, "succeeded", "{status:?}");
    let result = submit_job(&f.addr, &["result", &job]).await;
    assert_ok(&result);
    assert!(parse_tsv(&result.stdout) == count_words(&text));
}

//! Cross-process tests: a real coordinator and real worker processes on 127.0.0.1, driven by the
//! real `submit-job`, checked against an independent sequential word count.

mod support;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use support::*;

/// A generated multi-file corpus of about 32 MB, shared by the tests of this binary.
fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| Corpus::generate("cluster", 8, 4 << 20, 42))
}

/// Runs word count over the corpus on `workers` workers of `slots` slots and checks the result,
/// the counters and the `status`, `result` and `list` commands against independent numbers.
async fn word_count_matches(test: &str, workers: u32, slots: u32, chunk_size: &str) {
    word_count_matches_with(test, workers, slots, chunk_size, &[]).await;
}

async fn word_count_matches_with(
    test: &str,
    workers: u32,
    slots: u32,
    chunk_size: &str,
    worker_flags: &[&str],
) {
    let corpus = corpus();
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let _workers: Vec<Proc> = (0..workers)
        .map(|i| worker_with(test, &addr, slots, &format!("worker-{i}"), worker_flags))
        .collect();
    let out = tempfile::tempdir().unwrap();
    let result = out.path().join("counts.tsv");
    let root = corpus.root();
    let submitted = SystemTime::now();
    let run = submit_job(
        &addr,
        &[
            "run",
            root,
            "--chunk-size",
            chunk_size,
            "--output",
            result.to_str().unwrap(),
        ],
    )
    .await;
    assert_ok(&run);
    assert!(
        run.stdout.is_empty(),
        "the result went to the file, not stdout"
    );
    let got = parse_tsv(&std::fs::read(&result).unwrap());
    assert_eq!(got.len(), corpus.counts.len(), "distinct words");
    assert!(
        got == corpus.counts,
        "word counts differ from the sequential count"
    );

    // The job id is on the "submitted" line of stderr.
    let err = stderr(&run);
    let job = err
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {err}"))
        .to_owned();
    let out = submit_job(&addr, &["status", &job, "--json"]).await;
    assert_ok(&out);
    let status: Status = parse_json(&out);
    assert_eq!(status.state, "succeeded");
    // Every chunk but a file's last is at least the chunk size; and the test wants many.
    let most = corpus.bytes / chunk_bytes(chunk_size) + corpus.files.len() as u64;
    assert!(
        status.chunks_done == status.chunks_total && (30..=most).contains(&status.chunks_total),
        "{status:?}"
    );
    assert_eq!(status.counters.bytes_in, corpus.bytes);
    assert_eq!(status.counters.records_in, corpus.lines);
    assert_eq!(status.counters.keys_out, corpus.counts.len() as u64);
    assert_eq!(
        status.counters.attempts, status.chunks_total,
        "no fault, no retry"
    );
    assert_status_json(&out, &status, corpus, chunk_size, submitted);

    // The kept result can be fetched again, in JSON Lines too.
    let again = submit_job(&addr, &["result", &job]).await;
    assert_ok(&again);
    assert!(parse_tsv(&again.stdout) == corpus.counts);
    let jsonl = submit_job(&addr, &["result", &job, "--format", "jsonl"]).await;
    assert_ok(&jsonl);
    assert_eq!(stdout(&jsonl).lines().count(), corpus.counts.len());
    let first: serde_json::Value =
        serde_json::from_str(stdout(&jsonl).lines().next().unwrap()).unwrap();
    assert!(
        first["key"].is_string() && first["value"].is_u64(),
        "{first}"
    );

    let list = submit_job(&addr, &["list", "--json"]).await;
    assert_ok(&list);
    let jobs: Vec<Status> = parse_json(&list);
    assert!(
        jobs.iter()
            .any(|j| j.job_id == job && j.state == "succeeded"),
        "{jobs:?}"
    );
}

/// The rest of a finished word count's `status --json`: every documented field is there, and
/// those known without fanfold have their values.
fn assert_status_json(
    out: &std::process::Output,
    status: &Status,
    corpus: &Corpus,
    chunk_size: &str,
    submitted: SystemTime,
) {
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut fields: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    let mut documented = vec![
        "job_id",
        "state",
        "finishing",
        "operation",
        "options",
        "inputs",
        "chunk_size",
        "sort",
        "limit",
        "whole_file",
        "skip_bad_records",
        "timeout_seconds",
        "output_dir",
        "chunks_total",
        "chunks_done",
        "chunks_running",
        "chunks_checkpointed",
        "bytes_total",
        "bytes_done",
        "workers",
        "counters",
        "error",
        "submitted_at",
        "finished_at",
        "result_rows",
        "quarantine",
        "reducers",
        "owner",
        "stage",
        "reduces_total",
        "reduces_done",
        "reduces_running",
        "partition_bytes",
        "slowest_running",
        "page_url",
    ];
    documented.sort_unstable();
    assert_eq!(fields, documented);
    let mut counters: Vec<&str> = raw["counters"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    counters.sort_unstable();
    assert_eq!(
        counters,
        [
            "attempts",
            "backups",
            "bad_records",
            "bytes_in",
            "chunks_failed",
            "keys_out",
            "map_outputs_lost",
            "records_in",
            "reduce_attempts",
            "shuffle_bytes",
            "user"
        ]
    );
    assert!(!status.finishing && status.error.is_none() && status.quarantine.is_none());
    assert_eq!(status.operation, "wordcount");
    assert_eq!(status.inputs, [corpus.root()]);
    assert_eq!(status.chunk_size, Some(chunk_bytes(chunk_size)));
    assert_eq!(
        (raw["sort"].as_str(), raw["limit"].as_u64()),
        (Some("key"), None)
    );
    assert_eq!(
        (status.bytes_done, status.bytes_total),
        (corpus.bytes, corpus.bytes)
    );
    assert_eq!(status.chunks_running, 0);
    assert_eq!(status.result_rows, corpus.counts.len() as u64);
    assert!(status.counters.user.is_empty());
    // Submitted after this test asked and finished before it looked (to the millisecond).
    let time = |field: &Option<String>| {
        let text = field
            .as_deref()
            .unwrap_or_else(|| panic!("no time in {status:?}"));
        humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    let (start, end) = (time(&status.submitted_at), time(&status.finished_at));
    let millisecond = Duration::from_millis(1);
    assert!(
        submitted <= start + millisecond && start <= end && end <= SystemTime::now(),
        "{status:?}"
    );
}

fn chunk_bytes(text: &str) -> u64 {
    text.trim_end_matches("KiB").parse::<u64>().unwrap() << 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_count_words_exactly() {
    word_count_matches("three_workers", 3, 2, "256KiB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_counts_words_exactly() {
    // Chunks of 1 MiB and more are read as they are sent; smaller ones when assigned.
    word_count_matches("one_worker", 1, 2, "1024KiB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_per_worker_counts_words_exactly() {
    word_count_matches("one_slot", 3, 1, "384KiB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reading_shared_storage_count_words_exactly() {
    word_count_matches_with("shared_storage", 2, 2, "256KiB", &["--shared-storage"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_and_limited_output_matches_python() {
    let test = "sort_limit";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let files = generate_corpus(dir.path(), 1, 200_000, 7);
    std::fs::rename(&files[0], &input).unwrap();
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let _worker = worker(test, &addr, 2, "w");
    let run = submit_job(
        &addr,
        &[
            "run",
            input.to_str().unwrap(),
            "--sort",
            "value",
            "--limit",
            "25",
            "--chunk-size",
            "16KiB",
            "-q",
        ],
    )
    .await;
    assert_ok(&run);
    // Python orders by count descending, then by key bytes ascending.
    let script = "import collections,sys\n\
        c=collections.Counter(open(sys.argv[1],'rb').read().split())\n\
        for k,v in sorted(c.items(), key=lambda kv:(-kv[1],kv[0]))[:25]:\n\
        \x20   sys.stdout.buffer.write(k+b'\\t'+str(v).encode()+b'\\n')\n";
    let python = std::process::Command::new("python3")
        .args(["-c", script, input.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    assert!(
        python.status.success(),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    assert_eq!(stdout(&run), String::from_utf8_lossy(&python.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_the_coordinator_attaches_once_it_is_up() {
    let test = "worker_first";
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let _worker = worker(test, &addr, 1, "early");
    // Let the worker fail to connect a few times first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_coordinator, bound) = coordinator(test, &addr, &[]).await;
    assert_eq!(bound, addr);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "b a b\nc b\n").unwrap();
    let run = submit_job(&addr, &["run", input.to_str().unwrap(), "-q"]).await;
    assert_ok(&run);
    assert_eq!(stdout(&run), "a\t1\nb\t3\nc\t1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_workers_waits_visibly_and_can_be_cancelled() {
    let test = "no_workers";
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "x y z\n").unwrap();
    let submitted = submit_job(&addr, &["run", input.to_str().unwrap(), "--detach"]).await;
    assert_ok(&submitted);
    let job = stdout(&submitted).trim().to_owned();
    let status = submit_job(&addr, &["status", &job, "--json"]).await;
    assert_ok(&status);
    let status: Status = parse_json(&status);
    assert_eq!(status.state, "running");
    assert_eq!(status.workers, 0);
    let early = submit_job(&addr, &["result", &job]).await;
    assert_eq!(early.status.code(), Some(1));
    assert!(stderr(&early).contains("is running"), "{}", stderr(&early));

    let cancel = submit_job(&addr, &["cancel", &job]).await;
    assert_ok(&cancel);
    let status = submit_job(&addr, &["status", &job]).await;
    assert_eq!(
        status.status.code(),
        Some(1),
        "a cancelled job's status exits 1"
    );
    let status = submit_job(&addr, &["status", &job, "--json"]).await;
    assert_eq!(status.status.code(), Some(1), "with --json too");
    assert_eq!(parse_json::<Status>(&status).state, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_job_reports_errors_in_one_line_with_exit_codes() {
    let test = "cli_errors";
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let one_line_error = |output: &std::process::Output, needle: &str| {
        assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(output));
        let err = stderr(output);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("submit-job: error: ") && err.contains(needle),
            "{err}"
        );
    };

    let unknown = "0b5e6c1e-8d4f-4d5e-9a45-3f1c2b7d9e10";
    one_line_error(&submit_job(&addr, &["status", unknown]).await, "not found");
    let json = submit_job(&addr, &["status", unknown, "--json"]).await;
    one_line_error(&json, "not found");
    assert!(json.stdout.is_empty(), "no JSON for an unknown job");
    one_line_error(&submit_job(&addr, &["result", unknown]).await, "not found");
    one_line_error(&submit_job(&addr, &["cancel", unknown]).await, "not found");

    let missing = Path::new("/nonexistent/fanfold/input.txt");
    one_line_error(
        &submit_job(&addr, &["run", missing.to_str().unwrap()]).await,
        "input '/nonexistent/fanfold/input.txt'",
    );
    // A URL is a location of its own, not a relative path under the client's directory.
    one_line_error(
        &submit_job(&addr, &["run", "hdfs://nn/logs/"]).await,
        "input 'hdfs://nn/logs/': hdfs:// inputs are not supported",
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "x\n").unwrap();
    one_line_error(
        &submit_job(&addr, &["run", input.to_str().unwrap(), "--op", "nope"]).await,
        "unknown operation 'nope' (known: distinct, grep, groupby, histogram, index, sort, streaming, wordcount)",
    );

    // Not a job id at all: a usage error.
    let bad = submit_job(&addr, &["status", "not-a-job"]).await;
    assert_eq!(bad.status.code(), Some(2));

    // Nothing listens on this port: a clear error, quickly, not a hang.
    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let unreachable = submit_job(&closed, &["list"]).await;
    one_line_error(
        &unreachable,
        &format!("cannot reach the coordinator at http://{closed}"),
    );
}

/// A file cut short after its job was planned fails the job with an error naming the file and
/// the chunk, whether its chunks are read when assigned (small) or when sent (large).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cut_short_after_planning_fails_its_job_naming_the_chunk() {
    for (test, chunk_size) in [("cut_short_small", "64KiB"), ("cut_short_large", "2MiB")] {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_corpus(dir.path(), 1, 6 << 20, 3);
        let input = files[0].to_str().unwrap();
        let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
        let submitted = submit_job(
            &addr,
            &["run", input, "--chunk-size", chunk_size, "--detach"],
        )
        .await;
        assert_ok(&submitted);
        let job = stdout(&submitted).trim().to_owned();
        // No worker yet, so nothing has been read: cut the file, then let a worker come.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&files[0])
            .unwrap();
        file.set_len(1 << 20).unwrap();
        let _worker = worker(test, &addr, 1, "w");
        let status = until("the job to end", Duration::from_secs(60), || async {
            job_status(&addr, &job)
                .await
                .filter(|s| s.state != "running")
        })
        .await;
        assert_eq!(status.state, "failed", "{test}: {status:?}");
        let error = status
            .error
            .as_deref()
            .unwrap_or_else(|| panic!("{test}: no error in {status:?}"));
        assert!(
            error.contains("cannot read chunk")
                && error.contains(input)
                && error.contains("shorter than when the job was planned"),
            "{test}: {error}"
        );
    }
}

/// A worker of another fleet protocol revision is refused with an error saying so, instead of
/// attaching and dropping fields it does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_another_protocol_is_refused() {
    use fanfold_proto::v1 as pb;
    use fanfold_proto::v1::fleet_service_client::FleetServiceClient;

    let (_coordinator, addr) = coordinator("other_protocol", "127.0.0.1:0", &[]).await;
    let mut client = FleetServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let hello = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Hello(pb::Hello {
            name: "old".into(),
            slots: 1,
            version: "0.0.1".into(),
            operations: vec!["wordcount".into()],
            shared_storage: false,
            protocol: fanfold_proto::PROTOCOL - 1,
            shuffle_address: String::new(),
            local_roots: Vec::new(),
        })),
    };
    // The stream stays open after the hello, as a worker's does.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests.send(hello).await.unwrap();
    let refused = client
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect_err("attach refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("fleet protocol"),
        "{}",
        refused.message()
    );
}

/// A coordinator that other machines could reach refuses to start without authentication
/// unless told `--insecure`; then it serves, and warns at every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_on_a_reachable_address_starts_only_when_told_it_is_insecure() {
    let test = "exposure";
    let refused = coordinator_refused(&["--listen", "0.0.0.0:0", "--http-listen", "off"]).await;
    let why = stderr(&refused);
    assert!(
        why.contains("refusing to listen on 0.0.0.0:") && why.contains("--insecure"),
        "{why}"
    );

    // The log of this run only: logs are appended to across runs.
    let _ = std::fs::remove_file(log_dir(test).join("coordinator.log"));
    let (_coordinator, addr) = coordinator(test, "0.0.0.0:0", &["--insecure"]).await;
    let port = addr.rsplit_once(':').unwrap().1;
    assert_ok(&submit_job(&format!("127.0.0.1:{port}"), &["list"]).await);
    let log = std::fs::read_to_string(log_dir(test).join("coordinator.log")).unwrap();
    assert!(log.contains("listening with no authentication"), "{log}");
}

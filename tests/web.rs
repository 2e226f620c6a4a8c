//! The coordinator's HTTP port on a real cluster: the pages, the JSON API and `/metrics` while a
//! job runs and after it, checked against `submit-job status --json`, Python's Prometheus
//! parser and an independent word count; the pages in headless Chromium, whose live refresh
//! must advance; history after a coordinator killed with SIGKILL; the cancel button and bad
//! requests; and the CLI's page URL and straggler line.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::web::{self, attribute, number_in};
use support::*;

const ALLOW: &[&str] = &["--allow-streaming"];

/// A mapper that takes about 0.3 s per chunk and counts words split on spaces, so a job of a few
/// dozen chunks runs for seconds on two one-slot workers. The chunk holding the input's last
/// line (`LASTLINE`) waits until `gate` exists (at most a minute), so the job cannot end before
/// the test has looked at it running.
fn slow_mapper(gate: &Path) -> String {
    format!(
        "input=$(cat); sleep 0.3; case \"$input\" in *LASTLINE*) n=0; \
         while [ ! -e '{}' ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done;; esac; \
         printf '%s\\n' \"$input\" | tr ' ' '\\n' | awk 'NF {{ print $0 \"\\t1\" }}'",
        gate.display()
    )
}

/// Lines of a few words, about `bytes` in all, the last one `LASTLINE`.
fn input(dir: &Path, bytes: usize) -> PathBuf {
    let mut text = String::new();
    let mut i = 0u64;
    while text.len() < bytes {
        text.push_str(&format!("alpha{} beta{} gamma\n", i % 37, i % 11));
        i += 1;
    }
    text.push_str("LASTLINE gamma\n");
    let path = dir.join("words.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// Word counts of `path` split on spaces and newlines, computed here.
fn counted(path: &Path) -> HashMap<Vec<u8>, u64> {
    let mut counts = HashMap::new();
    for word in std::fs::read(path)
        .unwrap()
        .split(|b| *b == b' ' || *b == b'\n')
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_vec()).or_default() += 1;
    }
    counts
}

/// A free loopback port, for a worker's metrics.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn submit_detached(addr: &str, path: &Path, chunk: &str, gate: &Path) -> String {
    let mapper = slow_mapper(gate);
    let out = submit_job(
        addr,
        &[
            "run",
            path.to_str().unwrap(),
            "--chunk-size",
            chunk,
            "--mapper",
            &mapper,
            "--reducer",
            "sum",
            "--detach",
        ],
    )
    .await;
    assert_ok(&out);
    stdout(&out).trim().to_owned()
}

async fn status(addr: &str, id: &str) -> Status {
    job_status(addr, id).await.expect("coordinator answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_api_and_metrics_follow_a_running_job_and_survive_a_restart() {
    let test = "web_running";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // 120 chunks of at least 0.3 s each on two slots: the job runs well past the browser's
    // start (Chromium took 6.7 s to load its first page on a busy CI machine, by when 50
    // chunks had all but finished and the live page had nothing left to show advancing).
    let path = input(dir.path(), 120 * 1024);
    let extra = [
        ALLOW,
        &["--no-backups", "--state-dir", state.to_str().unwrap()],
    ]
    .concat();
    let (coordinator, addr, base) = coordinator_with_http(test, "127.0.0.1:0", &extra).await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let ports = [free_port(), free_port()];
    let _workers: Vec<Proc> = (0..2)
        .map(|i| {
            let metrics = format!("127.0.0.1:{}", ports[i]);
            worker_with(
                test,
                &addr,
                1,
                &format!("w{i}"),
                &[ALLOW, &["--metrics-listen", &metrics]].concat(),
            )
        })
        .collect();
    let gate = dir.path().join("go");
    let id = submit_detached(&addr, &path, "1KiB", &gate).await;

    // While it runs.
    let before = until("a few chunks done", Duration::from_secs(60), || async {
        let s = status(&addr, &id).await;
        (s.chunks_done >= 3).then_some(s)
    })
    .await;
    let api: Status = web::get_json(&base, &format!("/api/v1/jobs/{id}")).await;
    let after = status(&addr, &id).await;
    assert_eq!(
        before.state, "running",
        "the job is slow enough to be seen running"
    );
    assert_eq!(api.job_id, id);
    assert_eq!(api.state, "running");
    assert_eq!(api.chunks_total, before.chunks_total);
    assert_eq!(api.bytes_total, before.bytes_total);
    assert!(
        before.chunks_done <= api.chunks_done && api.chunks_done <= after.chunks_done,
        "{} <= {} <= {}",
        before.chunks_done,
        api.chunks_done,
        after.chunks_done
    );
    assert!(before.counters.attempts <= api.counters.attempts);
    let page_url = format!("{base}/jobs/{id}");
    assert_eq!(api.page_url.as_deref(), Some(page_url.as_str()));
    assert_eq!(before.page_url.as_deref(), Some(page_url.as_str()));

    let jobs: Vec<Status> = web::get_json(&base, "/api/v1/jobs").await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, id);
    let index = web::get(&base, "/").await;
    assert_eq!(index.code, 200);
    assert!(
        index.body.contains(&format!("id=\"job-{id}\"")),
        "{}",
        index.body
    );
    let page = web::get(&base, &format!("/jobs/{id}")).await;
    assert_eq!(page.code, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    assert_eq!(
        attribute(&page.body, "main", "data-final").as_deref(),
        Some("false")
    );
    assert!(page.body.contains("<svg id=\"timeline\""), "{}", page.body);
    assert!(page.body.contains("class=\"span "), "attempts are drawn");
    assert!(
        page.body.contains("action=\"/jobs/"),
        "a cancel button while it runs"
    );

    // The chunks, in two pages, cover the file exactly in order.
    #[derive(serde::Deserialize)]
    struct Chunk {
        chunk: u64,
        file: String,
        start: u64,
        end: u64,
        state: String,
        attempts: u32,
    }
    #[derive(serde::Deserialize)]
    struct Chunks {
        chunks_total: u64,
        chunks: Vec<Chunk>,
    }
    let first: Chunks = web::get_json(&base, &format!("/api/v1/jobs/{id}/chunks?limit=10")).await;
    let rest: Chunks = web::get_json(
        &base,
        &format!("/api/v1/jobs/{id}/chunks?offset=10&limit=100000"),
    )
    .await;
    assert_eq!(first.chunks.len(), 10);
    assert_eq!(first.chunks_total, before.chunks_total);
    let all: Vec<Chunk> = first.chunks.into_iter().chain(rest.chunks).collect();
    assert_eq!(all.len() as u64, before.chunks_total);
    let size = std::fs::metadata(&path).unwrap().len();
    let mut at = 0;
    for (i, c) in all.iter().enumerate() {
        assert_eq!(c.chunk, i as u64);
        assert_eq!(c.file, path.to_str().unwrap());
        assert_eq!(c.start, at, "chunk {i} starts where the last ended");
        at = c.end;
        assert!(["pending", "running", "done"].contains(&c.state.as_str()));
        assert_eq!(c.attempts == 0, c.state == "pending");
    }
    assert_eq!(at, size);

    #[derive(serde::Deserialize)]
    struct Worker {
        name: String,
        slots: u32,
        protocol: u32,
        draining: bool,
    }
    let mut workers: Vec<Worker> = web::get_json(&base, "/api/v1/workers").await;
    workers.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        workers.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["w0", "w1"]
    );
    assert!(
        workers
            .iter()
            .all(|w| w.slots == 1 && w.protocol == fanfold_proto::PROTOCOL && !w.draining)
    );

    // A real browser: the job row, the progress and the timeline, and a live refresh that
    // advances while the job runs.
    if web::browser_available() {
        let shots = log_dir(test);
        let seen = web::browse(&format!("{base}/"), 0.5, Some(&shots.join("jobs.png"))).await;
        assert!(
            seen.last.contains(&format!("id=\"job-{id}\"")),
            "{}",
            seen.last
        );
        let seen = web::browse(&page_url, 3.0, Some(&shots.join("job.png"))).await;
        assert!(
            seen.first.contains("<svg id=\"timeline\""),
            "{}",
            seen.first
        );
        assert!(seen.first.contains("id=\"progress\""));
        let refreshes: u64 = attribute(&seen.last, "main", "data-refreshes")
            .and_then(|n| n.parse().ok())
            .expect("the live refresh counts itself");
        assert!(refreshes >= 1, "the page refreshed itself");
        let (early, late) = (
            number_in(&seen.first, "chunks-done").unwrap(),
            number_in(&seen.last, "chunks-done").unwrap(),
        );
        assert!(late > early, "the live page advanced: {early} -> {late}");
    }

    // After it.
    std::fs::write(&gate, b"").unwrap();
    let done = until("the job ends", Duration::from_secs(120), || async {
        let s = status(&addr, &id).await;
        (s.state != "running").then_some(s)
    })
    .await;
    assert_eq!(done.state, "succeeded", "{:?}", done.error);
    let result = submit_job(&addr, &["result", &id]).await;
    assert_ok(&result);
    assert_eq!(parse_tsv(&result.stdout), counted(&path));
    let api: Status = web::get_json(&base, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(api.state, "succeeded");
    assert_eq!(api.counters, done.counters);
    assert_eq!(api.result_rows, done.result_rows);
    let page = web::get(&base, &format!("/jobs/{id}")).await;
    assert_eq!(
        attribute(&page.body, "main", "data-final").as_deref(),
        Some("true")
    );
    assert_eq!(
        attribute(&page.body, "timeline", "data-spans"),
        Some(done.counters.attempts.to_string()),
        "one bar per attempt"
    );
    assert!(
        !page.body.contains("action=\"/jobs/"),
        "no cancel button once it ended"
    );

    let metrics = web::get(&base, "/metrics").await;
    assert!(metrics.headers["content-type"].starts_with("application/openmetrics-text"));
    let m = web::parse_metrics(&metrics.body);
    let value = |name: &str| {
        *m.get(name)
            .unwrap_or_else(|| panic!("no sample {name} in {m:?}"))
    };
    assert_eq!(value("fanfold_jobs{state=succeeded}"), 1.0);
    assert_eq!(value("fanfold_jobs{state=running}"), 0.0);
    assert_eq!(value("fanfold_jobs_submitted_total"), 1.0);
    assert_eq!(
        value("fanfold_chunk_attempts_total"),
        done.counters.attempts as f64
    );
    assert_eq!(value("fanfold_chunk_failures_total"), 0.0);
    assert_eq!(value("fanfold_bytes_folded_total"), done.bytes_total as f64);
    assert_eq!(value("fanfold_bytes_folded_total"), size as f64);
    assert_eq!(
        value("fanfold_records_folded_total"),
        done.counters.records_in as f64
    );
    assert_eq!(
        value("fanfold_chunk_map_seconds_count"),
        done.chunks_total as f64
    );
    assert_eq!(value("fanfold_result_rows_total"), done.result_rows as f64);
    assert_eq!(value("fanfold_workers{state=attached}"), 2.0);
    assert_eq!(value("fanfold_slots"), 2.0);
    assert_eq!(value("fanfold_queue_depth"), 0.0);
    assert_eq!(
        value("fanfold_grpc_requests_total{code=OK,method=SubmitJob}"),
        1.0
    );
    assert!(value("fanfold_journal_commit_seconds_count") >= 1.0);
    // Each worker's own metrics add up to the job's.
    let mut mapped = 0.0;
    let mut read = 0.0;
    for port in ports {
        let text = web::get(&format!("http://127.0.0.1:{port}"), "/metrics").await;
        let w = web::parse_metrics(&text.body);
        assert_eq!(w["fanfold_worker_slots"], 1.0);
        assert_eq!(w["fanfold_worker_slots_busy"], 0.0);
        assert!(w["fanfold_worker_resident_bytes"] > 1e6);
        mapped += w["fanfold_worker_chunks_mapped_total"];
        read += w["fanfold_worker_bytes_read_total"];
    }
    assert_eq!(mapped, done.chunks_total as f64);
    assert_eq!(read, size as f64);

    // History: a coordinator killed and started again on the same state shows the job and its
    // timeline as they were.
    signal(coordinator.pid(), "KILL");
    drop(coordinator);
    let (_coordinator, addr, base) = coordinator_with_http(test, "127.0.0.1:0", &extra).await;
    let again: Status = web::get_json(&base, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(again.state, "succeeded");
    assert_eq!(again.counters, done.counters);
    #[derive(serde::Deserialize)]
    struct Span {
        outcome: String,
        worker: u64,
    }
    #[derive(serde::Deserialize)]
    struct Timeline {
        spans: Vec<Span>,
        workers: HashMap<String, String>,
    }
    let timeline: Timeline = web::get_json(&base, &format!("/api/v1/jobs/{id}/timeline")).await;
    assert_eq!(timeline.spans.len() as u64, done.counters.attempts);
    assert!(timeline.spans.iter().all(|s| s.outcome == "done"));
    let mut names: Vec<&str> = timeline
        .spans
        .iter()
        .map(|s| timeline.workers[&s.worker.to_string()].as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names, ["w0", "w1"], "workers named though they are gone");
    let page = web::get(&base, &format!("/jobs/{id}")).await;
    assert_eq!(
        attribute(&page.body, "timeline", "data-spans"),
        Some(done.counters.attempts.to_string())
    );
    let chunks: Chunks =
        web::get_json(&base, &format!("/api/v1/jobs/{id}/chunks?limit=100000")).await;
    assert_eq!(chunks.chunks.len() as u64, done.chunks_total);
    assert!(
        chunks
            .chunks
            .iter()
            .all(|c| c.state == "done" && c.attempts >= 1),
        "a restored job's chunks are done, with their attempts"
    );
    assert_eq!(status(&addr, &id).await.state, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_button_works_from_this_origin_only_and_bad_requests_say_why() {
    let test = "web_cancel";
    let dir = tempfile::tempdir().unwrap();
    let path = input(dir.path(), 60 * 1024);
    let (_coordinator, addr, base) = coordinator_with_http(test, "127.0.0.1:0", ALLOW).await;
    let _worker = worker_with(test, &addr, 1, "w0", ALLOW);
    let gate = dir.path().join("go");
    std::fs::write(&gate, b"").unwrap();
    let id = submit_detached(&addr, &path, "1KiB", &gate).await;

    assert_eq!(web::get(&base, "/healthz").await.body, "ok\n");
    let ready = web::get(&base, "/readyz").await;
    assert_eq!((ready.code, ready.body.as_str()), (200, "ready\n"));
    let version: serde_json::Value = web::get_json(&base, "/api/v1/version").await;
    assert_eq!(version["protocol"], fanfold_proto::PROTOCOL);

    let unknown = "0b5e6c1e-8d4f-4d5e-9a45-3f1c2b7d9e10";
    let missing = web::get(&base, &format!("/api/v1/jobs/{unknown}")).await;
    assert_eq!(missing.code, 404);
    assert!(missing.body.contains(unknown), "{}", missing.body);
    let page = web::get(&base, &format!("/jobs/{unknown}")).await;
    assert_eq!(page.code, 404);
    assert!(page.body.contains("No job"), "{}", page.body);
    let bad = web::get(&base, "/api/v1/jobs/not-a-job").await;
    assert_eq!(bad.code, 400);
    assert!(bad.body.contains("not-a-job"), "{}", bad.body);

    // A name re-pointed at 127.0.0.1 (DNS rebinding) reaches the port with its own Host.
    let rebound = web::request(&base, "GET", "/api/v1/jobs", &[("Host", "evil.example")]).await;
    assert_eq!(rebound.code, 403, "{}", rebound.body);
    assert!(rebound.body.contains("evil.example"), "{}", rebound.body);
    for host in ["localhost:1", "coordinator:8080"] {
        let named = web::request(&base, "GET", "/healthz", &[("Host", host)]).await;
        assert_eq!(named.code, 200, "{host} is served");
    }
    // Pages may not be framed elsewhere: the cancel button cannot be clickjacked.
    let page = web::get(&base, &format!("/jobs/{id}")).await;
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.headers["content-security-policy"].contains("frame-ancestors 'none'"));
    // A page elsewhere cannot cancel through the browser: its Origin is not this port's.
    let host = base.trim_start_matches("http://").to_owned();
    let cancel = format!("/jobs/{id}/cancel");
    let foreign = web::request(&base, "POST", &cancel, &[("Origin", "http://evil.example")]).await;
    assert_eq!(foreign.code, 403, "{}", foreign.body);
    assert_eq!(status(&addr, &id).await.state, "running");
    // The page's own form posts from this origin, and is sent back to the job's page.
    let origin = format!("http://{host}");
    let own = web::request(&base, "POST", &cancel, &[("Origin", &origin)]).await;
    assert_eq!(own.code, 303, "{}", own.body);
    assert_eq!(own.headers["location"], format!("/jobs/{id}"));
    let ended = status(&addr, &id).await;
    assert_eq!(ended.state, "cancelled");
    let page = web::get(&base, &format!("/jobs/{id}")).await;
    assert_eq!(
        attribute(&page.body, "main", "data-final").as_deref(),
        Some("true")
    );
    assert!(page.body.contains("cancelled by request"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_page_url_and_names_the_chunk_a_job_waits_on() {
    let test = "web_cli";
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("a-fast.txt");
    std::fs::write(&fast, "one two\n".repeat(50)).unwrap();
    let slow = dir.path().join("z-slow.txt");
    std::fs::write(&slow, "SLOW three\n").unwrap();
    let extra = [ALLOW, &["--no-backups"]].concat();
    let (_coordinator, addr, base) = coordinator_with_http(test, "127.0.0.1:0", &extra).await;
    let _workers: Vec<Proc> = (0..2)
        .map(|i| worker_with(test, &addr, 1, &format!("w{i}"), ALLOW))
        .collect();
    // Only the chunk holding SLOW takes long.
    let mapper =
        "awk '/SLOW/ { system(\"sleep 4\") } { for (i = 1; i <= NF; i++) print $i \"\\t1\" }'";
    let run = submit_job(
        &addr,
        &[
            "run",
            dir.path().to_str().unwrap(),
            "--chunk-size",
            "1KiB",
            "--mapper",
            mapper,
            "--reducer",
            "sum",
        ],
    )
    .await;
    assert_ok(&run);
    let err = stderr(&run);
    let id = err
        .split_whitespace()
        .nth(1)
        .expect("the job id on the first line")
        .to_owned();
    assert!(
        err.contains(&format!("status page: {base}/jobs/{id}")),
        "{err}"
    );
    assert!(
        err.contains("waiting on chunk") && err.contains("z-slow.txt"),
        "the straggler is named: {err}"
    );
    let text = submit_job(&addr, &["status", &id]).await;
    assert_ok(&text);
    assert!(
        stdout(&text).contains(&format!("page       {base}/jobs/{id}\n")),
        "{}",
        stdout(&text)
    );
}

/// The HTTP port, like the gRPC one, is served to other machines only when told `--insecure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_port_other_machines_can_reach_needs_insecure() {
    let refused =
        coordinator_refused(&["--listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0"]).await;
    let why = stderr(&refused);
    assert!(
        why.contains("refusing to listen on 0.0.0.0:") && why.contains("--insecure"),
        "{why}"
    );
    let (_coordinator, _addr, base) = coordinator_with_http(
        "web_insecure",
        "127.0.0.1:0",
        &["--http-listen", "0.0.0.0:0", "--insecure"],
    )
    .await;
    let port = base.rsplit(':').next().unwrap();
    assert!(base.starts_with("http://0.0.0.0:"), "{base}");
    let local = format!("http://127.0.0.1:{port}");
    let answer = web::get(&local, "/healthz").await;
    assert_eq!(answer.body, "ok\n");
    // Published from a container or forwarded, the port is still not served to a re-pointed
    // name, unless it is listed.
    let rebound = web::request(&local, "GET", "/", &[("Host", "evil.example")]).await;
    assert_eq!(rebound.code, 403, "{}", rebound.body);
    let (_listed, _addr, listed) = coordinator_with_http(
        "web_insecure",
        "127.0.0.1:0",
        &["--http-allowed-hosts", "coord.example.org,other.example"],
    )
    .await;
    let named = web::request(&listed, "GET", "/", &[("Host", "coord.example.org:80")]).await;
    assert_eq!(named.code, 200, "{}", named.body);
}

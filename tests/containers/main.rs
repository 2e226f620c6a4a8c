//! Container tests: the fanfold image run as a coordinator and worker containers on a private
//! Docker network, driven from the host by the real `submit-job`, checked against an independent
//! sequential word count, and broken on purpose while a job runs: a worker killed, a worker
//! paused and resumed, a worker added, the coordinator killed and restarted on its volume.
//!
//! The image is built once per run by `deploy/build-image.sh` if its tag is missing. Without a
//! Docker engine the tests skip, unless `FANFOLD_REQUIRE_DOCKER=1` (see `harness`).

#[path = "../support/mod.rs"]
mod support;

mod harness;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use harness::{Cluster, WorkerSpec, docker};
use support::{
    Status, assert_ok, count_words, generate_corpus, parse_json, parse_tsv, stdout, until,
};

/// Chunks a worker holds at most: 1 slot + 1 prefetch.
const CREDITS_PER_WORKER: u64 = 2;
/// Small chunks and slow workers keep a job running for several seconds: time to break things.
const CHUNK_SIZE: &str = "32KiB";
const SLOW_WORKER: WorkerSpec = WorkerSpec {
    millicores: 100,
    debug_log: false,
    shared_storage: false,
    mount_data: false,
};
/// For tests that break nothing mid-job.
const FAST_WORKER: WorkerSpec = WorkerSpec {
    millicores: 1000,
    debug_log: false,
    shared_storage: false,
    mount_data: false,
};
/// Longest a job may take in these tests before they fail instead of hanging.
const JOB_LIMIT: Duration = Duration::from_secs(300);

/// A generated corpus of about 32 MB under a folder the coordinator container mounts at `/data`.
struct Corpus {
    root: PathBuf,
    counts: HashMap<Vec<u8>, u64>,
    bytes: u64,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        // A fixed folder under the target dir, rewritten by each run: a static is never dropped,
        // so a temporary directory would be left behind.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containers-data");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // The container runs as an unprivileged user: the mounted folder must be readable.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let files = generate_corpus(&root.join("corpus"), 8, 4 << 20, 2026);
        let counts = count_words(&files);
        let bytes = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        Corpus {
            root,
            counts,
            bytes,
        }
    })
}

/// Submits a word count of the whole corpus without waiting; returns the job id.
async fn submit(cluster: &Cluster) -> String {
    let out = cluster
        .submit_job(&[
            "run",
            "/data/corpus",
            "--chunk-size",
            CHUNK_SIZE,
            "--detach",
        ])
        .await;
    assert_ok(&out);
    stdout(&out).trim().to_owned()
}

/// `(done, total)` chunks of a status.
fn chunks(status: &Status) -> (u64, u64) {
    (status.chunks_done, status.chunks_total)
}

/// Waits until at least `fraction` of the job's chunks are done while it still runs, so that
/// what the test does next happens mid-job; returns that status.
async fn wait_until_partly_done(cluster: &Cluster, job: &str, fraction: f64) -> Status {
    let status = cluster
        .wait_for_status(job, JOB_LIMIT, "the job to get going", |s| {
            let (done, total) = chunks(s);
            s.state != "running" || done as f64 >= fraction * total as f64
        })
        .await;
    let (done, total) = chunks(&status);
    assert!(
        status.state == "running" && done < total,
        "the job finished before the test could break anything; it needs to run longer:\n{status:?}"
    );
    status
}

/// Waits for the job to end, checks it succeeded with the exact sequential answer, and returns
/// its final status.
async fn expect_exact_result(cluster: &Cluster, job: &str) -> Status {
    let status = cluster
        .wait_for_status(job, JOB_LIMIT, "the job to end", |s| s.state != "running")
        .await;
    assert_eq!(status.state, "succeeded", "{status:?}");
    let result = cluster.submit_job(&["result", job]).await;
    assert_ok(&result);
    let got = parse_tsv(&result.stdout);
    let expected = &corpus().counts;
    assert_eq!(got.len(), expected.len(), "distinct words");
    assert!(
        &got == expected,
        "word counts differ from the sequential count"
    );
    assert_eq!(
        status.counters.keys_out,
        expected.len() as u64,
        "{status:?}"
    );
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_containers_count_words_exactly() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "three", &corpus().root).await;
    for _ in 0..3 {
        cluster.add_worker(FAST_WORKER).await;
    }
    let job = submit(&cluster).await;
    let status = expect_exact_result(&cluster, &job).await;
    let (done, total) = chunks(&status);
    assert!(done == total && total >= 100, "{status:?}");
    assert_eq!(status.counters.attempts, total, "no fault, no retry");
}

/// Over TLS: the coordinator container serves a certificate its CA signed, workers on the
/// network and `submit-job` on the host trust that CA, and the count is exact; a client that
/// does not trust it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_coordinator_container_serves_workers_and_clients_that_trust_its_ca() {
    let Some(docker) = docker() else { return };
    let tls = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tls.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cluster = Cluster::start_tls(docker, "tls", &corpus().root, tls.path()).await;
    for _ in 0..2 {
        cluster.add_worker(FAST_WORKER).await;
    }
    let job = submit(&cluster).await;
    expect_exact_result(&cluster, &job).await;
    let untrusted = support::submit_job(&cluster.address, &["list"]).await;
    assert!(
        !untrusted.status.success(),
        "a client without the CA was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_a_shared_volume_read_chunks_themselves_and_one_without_it_gets_them_inline() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "shared", &corpus().root).await;
    let shared = WorkerSpec {
        shared_storage: true,
        mount_data: true,
        ..FAST_WORKER
    };
    // Claims shared storage but has no volume: a misconfigured worker.
    let misconfigured = WorkerSpec {
        shared_storage: true,
        mount_data: false,
        debug_log: true,
        ..FAST_WORKER
    };
    let reader = cluster.add_worker(shared).await;
    let blind = cluster.add_worker(misconfigured).await;
    let job = submit(&cluster).await;
    let status = expect_exact_result(&cluster, &job).await;
    assert_eq!(
        status.counters.chunks_failed, 0,
        "a hand-back is not a failure"
    );
    // The misconfigured worker handed back the one chunk it could not read, then mapped chunks
    // sent inline.
    let coordinator = cluster.coordinator_log().await;
    let switched: Vec<&str> = coordinator
        .lines()
        .filter(|l| l.contains("cannot read shared storage"))
        .collect();
    assert_eq!(switched.len(), 1, "{coordinator}");
    assert!(switched[0].contains(&blind), "{}", switched[0]);
    let blind_log = cluster.worker_log(&blind).await;
    assert!(blind_log.contains("handing it back"), "{blind_log}");
    assert!(
        blind_log.contains("chunk mapped"),
        "it mapped inline chunks:\n{blind_log}"
    );
    // The other read its chunks itself, and never needed them inline.
    assert!(
        !cluster
            .worker_log(&reader)
            .await
            .contains("handing it back")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_container_killed_mid_job_leaves_the_answer_exact() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "kill", &corpus().root).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(cluster.add_worker(SLOW_WORKER).await);
    }
    let job = submit(&cluster).await;
    wait_until_partly_done(&cluster, &job, 0.2).await;
    let victim = &names[0];
    // A zero timeout: SIGKILL at once, no chance to say goodbye.
    cluster
        .worker(victim)
        .stop_with_timeout(Some(0))
        .await
        .unwrap();

    let status = expect_exact_result(&cluster, &job).await;
    let (_, total) = chunks(&status);
    assert!(
        status.counters.attempts > total,
        "the killed worker's chunks were attempted again:\n{status:?}"
    );
    // The coordinator let the dead worker go. (Its chunks may have gone back to the queue
    // before that, when their leases expired: the attempts above are the proof they ran again.)
    cluster
        .wait_for_coordinator_line(
            &["worker detached", &format!("name={victim} ")],
            Duration::from_secs(30),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_container_comes_back_and_its_late_results_are_not_folded() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "partition", &corpus().root).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(cluster.add_worker(SLOW_WORKER).await);
    }
    let job = submit(&cluster).await;
    wait_until_partly_done(&cluster, &job, 0.2).await;
    let victim = &names[1];
    // Frozen: its connection stays open but nothing comes out of it, as in a network partition.
    cluster.worker(victim).pause().await.unwrap();
    let name = format!("name={victim} ");
    // Given up on for its silence: its chunks go back to the queue.
    cluster
        .wait_for_coordinator_line(
            &["worker detached", &name, "lease expired"],
            Duration::from_secs(30),
        )
        .await;
    // Back from the partition: it finishes the chunks it held (their results are late, for
    // attempts already handed to others) and attaches again.
    cluster.worker(victim).unpause().await.unwrap();

    // Folding any late result as well would inflate the counts: the exact answer shows that
    // each chunk was folded once.
    let status = expect_exact_result(&cluster, &job).await;
    let (_, total) = chunks(&status);
    assert!(
        status.counters.attempts > total,
        "the partitioned worker's chunks were handed to others:\n{status:?}"
    );
    cluster
        .wait_until_attached(victim, 2, Duration::from_secs(30))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_container_added_mid_job_receives_chunks() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "add", &corpus().root).await;
    cluster.add_worker(SLOW_WORKER).await;
    let job = submit(&cluster).await;
    wait_until_partly_done(&cluster, &job, 0.1).await;
    let late = cluster
        .add_worker(WorkerSpec {
            debug_log: true,
            ..SLOW_WORKER
        })
        .await;

    let status = expect_exact_result(&cluster, &job).await;
    assert_eq!(
        status.counters.attempts,
        chunks(&status).1,
        "no fault, no retry"
    );
    let log = cluster.worker_log(&late).await;
    let mapped = log
        .lines()
        .filter(|l| l.contains("chunk mapped") && l.contains(&job))
        .count();
    assert!(
        mapped > 0,
        "the added worker mapped no chunk of job {job}:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reattach_to_a_restarted_coordinator_container_and_jobs_run_again() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "restart", &corpus().root).await;
    let mut names = Vec::new();
    for _ in 0..2 {
        names.push(cluster.add_worker(FAST_WORKER).await);
    }
    let first = submit(&cluster).await;
    expect_exact_result(&cluster, &first).await;

    // Same container, same state volume, same address on the network; a clean stop.
    cluster.restart_coordinator(Duration::from_secs(10)).await;
    for name in &names {
        cluster
            .wait_until_attached(name, 2, Duration::from_secs(30))
            .await;
    }
    let second = submit(&cluster).await;
    let status = expect_exact_result(&cluster, &second).await;
    assert_eq!(status.workers, 2, "{status:?}");
    assert_eq!(
        status.counters.attempts,
        chunks(&status).1,
        "no fault, no retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumes_when_its_coordinator_container_restarts_mid_job() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "resume", &corpus().root).await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(cluster.add_worker(SLOW_WORKER).await);
    }
    let job = submit(&cluster).await;
    let before = wait_until_partly_done(&cluster, &job, 0.3).await;
    let (done_before, _) = chunks(&before);

    // A clean stop (SIGTERM) of the same container, same state volume: the job is still
    // there, with every chunk folded before the stop (a clean stop writes its last
    // checkpoint), and the workers come back.
    cluster.restart_coordinator(Duration::from_secs(10)).await;
    let resumed = cluster.submit_job(&["status", &job, "--json"]).await;
    assert_ok(&resumed);
    let resumed: Status = parse_json(&resumed);
    assert!(
        chunks(&resumed).0 >= done_before,
        "{done_before} chunks were done before the restart:\n{resumed:?}"
    );
    for name in &names {
        cluster
            .wait_until_attached(name, 2, Duration::from_secs(60))
            .await;
    }
    let status = expect_exact_result(&cluster, &job).await;
    // Only chunks in flight at the restart ran again: at most the workers' credits
    // (3 workers x (1 slot + 1 prefetch)).
    let redone = status.counters.attempts - chunks(&status).1;
    assert!(redone <= 6, "{redone} chunks redone:\n{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumes_from_its_checkpoints_when_its_coordinator_container_is_killed_mid_job() {
    let Some(docker) = docker() else { return };
    let mut cluster = Cluster::start(docker, "crash", &corpus().root).await;
    let workers = 3;
    for _ in 0..workers {
        cluster.add_worker(SLOW_WORKER).await;
    }
    let job = submit(&cluster).await;
    let total = cluster.job_status(&job).await.unwrap().chunks_total;
    let before = until(
        "a third of the chunks to be checkpointed",
        JOB_LIMIT,
        || async {
            cluster
                .job_status(&job)
                .await
                .filter(|s| s.state != "running" || s.chunks_checkpointed >= total / 3)
        },
    )
    .await;
    assert_eq!(before.state, "running", "the job ended before the kill");
    let checkpointed = before.chunks_checkpointed;

    // SIGKILL: nothing is flushed on the way out; only what the volume holds survives.
    cluster.restart_coordinator(Duration::ZERO).await;
    let resumed = until("the restarted coordinator to answer", JOB_LIMIT, || {
        cluster.job_status(&job)
    })
    .await;
    assert!(
        resumed.chunks_done >= checkpointed,
        "{checkpointed} chunks were checkpointed before the kill, {resumed:?} after it"
    );

    let status = expect_exact_result(&cluster, &job).await;
    assert_eq!(status.counters.bytes_in, corpus().bytes, "{status:?}");
    // Only chunks in flight since the last checkpoint are run again: at most the fleet's
    // credits.
    let redone = status.counters.attempts - total;
    assert!(
        redone <= workers * CREDITS_PER_WORKER,
        "{redone} chunks redone after one restart:\n{status:?}"
    );
}

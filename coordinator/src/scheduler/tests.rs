//! Whole jobs through the scheduler with in-memory fake workers and the in-memory store:
//! no sockets. Tests that need time use tokio's paused clock.
//!
//! Over 500 lines: one file of whole-job scenarios sharing the fake workers at its top.

use std::collections::HashMap;

use fanfold_common::partial::Value;
use fanfold_common::registry::Registry;
use fanfold_common::spec::JobState;

use std::sync::Arc;

use fanfold_common::chunker;
use fanfold_common::fleet::{ChunkOutput, Payload, WorkerHello};
use fanfold_common::operation::{BadRecord, ChunkStats};
use fanfold_common::spec::{JobSpec, JobStatus};
use tokio::sync::oneshot;

use super::*;
use crate::job::Plan;
use fanfold_common::ids::ChunkId;

struct Fake {
    id: WorkerId,
    inbox: mpsc::Receiver<ToWorker>,
}

async fn attach(handle: &Handle, slots: u32) -> Fake {
    attach_with(handle, slots, false).await
}

async fn attach_with(handle: &Handle, slots: u32, shared_storage: bool) -> Fake {
    let (outbox, inbox) = mpsc::channel(outbox_capacity(slots + 1));
    let hello = WorkerHello {
        name: format!("fake-{slots}"),
        slots,
        version: fanfold_common::VERSION.into(),
        operations: Vec::new(),
        shared_storage,
        protocol: fanfold_proto::PROTOCOL,
        shuffle_address: String::new(),
        local_roots: Vec::new(),
    };
    let id = handle
        .worker_joined(hello, "127.0.0.1:1".into(), outbox)
        .await
        .unwrap();
    Fake { id, inbox }
}

async fn next_assignment(fake: &mut Fake) -> Assignment {
    loop {
        match fake.inbox.recv().await.expect("worker outbox open") {
            ToWorker::Assign(a) => return a,
            _ => continue,
        }
    }
}

fn mapped(a: &Assignment) -> Report {
    let op = Registry::builtin().build("wordcount", &a.options).unwrap();
    let mut stats = ChunkStats::default();
    let path = a.location.to_string();
    let Payload::Inline(data) = &a.payload else {
        panic!("a small chunk is read when assigned: {:?}", a.payload);
    };
    let chunk = fanfold_common::operation::Chunk::of_range(data, &path, a.range);
    let partial = op.map(&chunk, &mut stats).unwrap();
    Report::Done(ChunkOutput {
        partial: partial.into_columns(),
        stats,
        bad: Vec::new(),
        map_output: None,
    })
}

/// A fake worker that maps everything it is given, until its outbox closes.
fn diligent(handle: &Handle, fake: Fake) -> tokio::task::JoinHandle<()> {
    recording(handle, fake, Arc::default())
}

/// A diligent fake worker that also notes each chunk it was given.
fn recording(
    handle: &Handle,
    mut fake: Fake,
    handed: Arc<std::sync::Mutex<Vec<ChunkId>>>,
) -> tokio::task::JoinHandle<()> {
    let handle = handle.clone();
    tokio::spawn(async move {
        while let Some(message) = fake.inbox.recv().await {
            if let ToWorker::Assign(a) = message {
                handed.lock().unwrap().push(a.chunk);
                let report = mapped(&a);
                let _ = handle.report(fake.id, a.key(), report).await;
            }
        }
    })
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        scheduling: Scheduling {
            prefetch: 1,
            max_attempts: 3,
            worker_timeout: Duration::from_secs(5),
            backups: None,
        },
        tick: Duration::from_millis(100),
        quarantine_dir: std::env::temp_dir(),
        metrics: crate::metrics::Metrics::new(),
        parts_dir: std::env::temp_dir().join("fanfold-scheduler-tests"),
        data_roots: Default::default(),
        output_roots: Default::default(),
        limits: Default::default(),
        retention: Default::default(),
    }
}

/// Writes three small files; returns a spec and plan over them and their word counts,
/// computed independently.
async fn inputs(dir: &std::path::Path, chunk_size: u64) -> (JobSpec, Plan, HashMap<Vec<u8>, u64>) {
    let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
    for f in 0..3 {
        let text: String = (0..400)
            .map(|i| format!("w{} x{}\n", i % 37, (i * f) % 11))
            .collect();
        for word in text.split_whitespace() {
            *expected.entry(word.as_bytes().to_vec()).or_default() += 1;
        }
        std::fs::write(dir.join(format!("{f}.txt")), text).unwrap();
    }
    let spec = JobSpec {
        inputs: vec![dir.display().to_string()],
        operation: "wordcount".into(),
        chunk_size: Some(chunk_size),
        ..Default::default()
    };
    let (spec, plan) = crate::intake::admit(
        spec,
        &crate::intake::Rules::open(Registry::builtin(), 1 << 20),
        None,
        None,
    )
    .await
    .unwrap();
    (spec, plan, expected)
}

struct Running {
    handle: Handle,
    id: JobId,
    expected: HashMap<Vec<u8>, u64>,
    /// Cancels the scheduler when the test ends.
    _stop: tokio_util::sync::DropGuard,
}

async fn start(dir: &std::path::Path, chunk_size: u64, config: SchedulerConfig) -> Running {
    let (spec, plan, expected) = inputs(dir, chunk_size).await;
    let stop = CancellationToken::new();
    let store = Store::in_memory().unwrap();
    let handle = spawn(
        config,
        Some(store),
        Vec::new(),
        &Registry::builtin(),
        &TaskTracker::new(),
        stop.clone(),
    );
    let id = handle.submit(spec, plan).await.unwrap().id;
    Running {
        handle,
        id,
        expected,
        _stop: stop.drop_guard(),
    }
}

async fn finished(handle: &Handle, id: JobId) -> JobStatus {
    let mut updates = handle.watch(id).await.unwrap();
    updates
        .wait_for(|s| s.state.is_final())
        .await
        .unwrap()
        .clone()
}

async fn result(handle: &Handle, id: JobId) -> HashMap<Vec<u8>, u64> {
    let status = finished(handle, id).await;
    assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
    let crate::job::JobResult::Rows(rows) = handle.result(id).await.unwrap() else {
        panic!("a job folded at the coordinator keeps its rows in memory");
    };
    rows.iter()
        .map(|r| match r.value {
            Value::Count(n) => (r.key.clone(), n),
            ref other => panic!("word count gave {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn credits_bound_what_a_worker_holds() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), 1024, config()).await;
    let mut fake = attach(&job.handle, 2).await;
    let status = job.handle.get(job.id).await.unwrap();
    assert!(status.chunks_total > 3);
    assert_eq!(status.chunks_running, 3, "slots 2 + prefetch 1");
    // Answering one frees exactly one credit.
    let a = next_assignment(&mut fake).await;
    job.handle
        .report(fake.id, a.key(), mapped(&a))
        .await
        .unwrap();
    let status = job.handle.get(job.id).await.unwrap();
    assert_eq!((status.chunks_done, status.chunks_running), (1, 3));
}

#[tokio::test]
async fn shared_storage_workers_get_references_until_they_cannot_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = start(dir.path(), 1024, config()).await;
    let mut fake = attach_with(&job.handle, 1, true).await;
    // By reference: no bytes, an absolute path to the chunk's file.
    let a = next_assignment(&mut fake).await;
    let Payload::Shared(shared) = a.payload.clone() else {
        panic!("a reference, not bytes: {:?}", a.payload);
    };
    assert!(shared.as_path().unwrap().is_absolute());
    assert_eq!(shared, a.location.absolute());
    let data = chunker::read(&shared, a.range, &Default::default()).unwrap();
    let by_reference = Assignment {
        payload: Payload::Inline(data.into()),
        ..a
    };
    let report = mapped(&by_reference);
    job.handle
        .report(fake.id, by_reference.key(), report)
        .await
        .unwrap();
    // The worker cannot read the next one: handed back, not failed; inline from then on.
    let b = next_assignment(&mut fake).await;
    assert!(matches!(b.payload, Payload::Shared(_)));
    let unreadable = Some("No such file or directory".to_owned());
    let released = Report::Released { unreadable };
    job.handle.report(fake.id, b.key(), released).await.unwrap();
    let c = next_assignment(&mut fake).await;
    assert!(matches!(&c.payload, Payload::Inline(d) if !d.is_empty()));
    job.handle
        .report(fake.id, c.key(), mapped(&c))
        .await
        .unwrap();
    let _worker = diligent(&job.handle, fake);
    let expected = std::mem::take(&mut job.expected);
    assert_eq!(result(&job.handle, job.id).await, expected);
    let status = job.handle.get(job.id).await.unwrap();
    assert_eq!(
        status.counters.chunks_failed, 0,
        "a hand-back is not a failure"
    );
}

#[tokio::test]
async fn a_vanished_workers_chunks_are_redone_and_its_late_results_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), 1024, config()).await;
    let mut doomed = attach(&job.handle, 1).await;
    let held = [
        next_assignment(&mut doomed).await,
        next_assignment(&mut doomed).await,
    ];
    job.handle.worker_left(doomed.id).await;
    let good = diligent(&job.handle, attach(&job.handle, 2).await);
    let got = result(&job.handle, job.id).await;
    // The departed worker's results arrive late: they must not count twice.
    for a in &held {
        job.handle
            .report(doomed.id, a.key(), mapped(a))
            .await
            .unwrap();
    }
    assert_eq!(got, job.expected);
    assert_eq!(result(&job.handle, job.id).await, job.expected);
    let status = job.handle.get(job.id).await.unwrap();
    assert_eq!(status.counters.attempts, status.chunks_total + 2);
    good.abort();
}

#[tokio::test(start_paused = true)]
async fn a_silent_workers_lease_expires_and_its_chunks_move() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), 1024, config()).await;
    let mut silent = attach(&job.handle, 2).await;
    let held = next_assignment(&mut silent).await;
    // Heartbeats keep the lease alive...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        job.handle.heartbeat(silent.id).await.unwrap();
    }
    assert_eq!(job.handle.get(job.id).await.unwrap().workers, 1);
    // ...silence past the timeout ends it: the worker is detached, its outbox closed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(job.handle.get(job.id).await.unwrap().workers, 0);
    while silent.inbox.recv().await.is_some() {}
    let good = diligent(&job.handle, attach(&job.handle, 2).await);
    let got = result(&job.handle, job.id).await;
    // The silent worker wakes up and reports: fenced off.
    job.handle
        .report(silent.id, held.key(), mapped(&held))
        .await
        .unwrap();
    assert_eq!(got, job.expected);
    assert_eq!(result(&job.handle, job.id).await, job.expected);
    good.abort();
}

#[tokio::test]
async fn a_failing_chunk_is_retried_then_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), 1 << 20, config()).await;
    let mut fake = attach(&job.handle, 1).await;
    let mut failures = 0;
    loop {
        let a = next_assignment(&mut fake).await;
        let report = if a.location.to_string().ends_with("1.txt") {
            failures += 1;
            Report::Failed {
                error: "disk on fire".into(),
                retryable: true,
            }
        } else {
            mapped(&a)
        };
        job.handle.report(fake.id, a.key(), report).await.unwrap();
        let now = job.handle.get(job.id).await.unwrap();
        if now.state.is_final() || now.finishing {
            break;
        }
    }
    // The end is announced once the journal holds it.
    let mut updates = job.handle.watch(job.id).await.unwrap();
    let status = updates
        .wait_for(|s| s.state.is_final())
        .await
        .unwrap()
        .clone();
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(failures, 3, "max_attempts");
    let error = status.error.unwrap();
    assert!(
        error.contains("1.txt bytes 0..") && error.contains("after 3 attempts: disk on fire"),
        "{error}"
    );
}

#[tokio::test]
async fn skipped_records_of_folded_chunks_are_quarantined_once() {
    let dir = tempfile::tempdir().unwrap();
    let quarantine = tempfile::tempdir().unwrap();
    let config = SchedulerConfig {
        quarantine_dir: quarantine.path().to_path_buf(),
        ..config()
    };
    let job = start(dir.path(), 1 << 20, config).await;
    let mut fake = attach(&job.handle, 1).await;
    let mut expected_lines = Vec::new();
    while !job.handle.get(job.id).await.unwrap().state.is_final() {
        let Ok(Some(ToWorker::Assign(a))) =
            tokio::time::timeout(Duration::from_millis(200), fake.inbox.recv()).await
        else {
            continue; // the job is finalizing
        };
        let Report::Done(ChunkOutput {
            partial, mut stats, ..
        }) = mapped(&a)
        else {
            unreachable!()
        };
        // Pretend the chunk's first record failed and was skipped.
        let bad = BadRecord {
            offset: a.range.start,
            record: b"w0 x0\n".to_vec(),
            error: "cannot\tparse".into(),
        };
        stats.bad_records += 1;
        expected_lines.push(format!(
            "{}\t{}\tcannot parse\tw0 x0",
            a.location, a.range.start
        ));
        let report = Report::Done(ChunkOutput {
            partial,
            stats: stats.clone(),
            bad: vec![bad.clone()],
            map_output: None,
        });
        job.handle.report(fake.id, a.key(), report).await.unwrap();
        // A duplicate report of the same attempt must not add the records again.
        let again = Report::Done(ChunkOutput {
            partial: Default::default(),
            stats,
            bad: vec![bad],
            map_output: None,
        });
        job.handle.report(fake.id, a.key(), again).await.unwrap();
    }
    let status = finished(&job.handle, job.id).await;
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.counters.bad_records, expected_lines.len() as u64);
    let file = status.quarantine.expect("a quarantine file");
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    expected_lines.sort();
    assert_eq!(lines, expected_lines);
}

#[tokio::test(start_paused = true)]
async fn a_straggler_gets_a_backup_on_an_idle_worker_and_the_first_result_wins() {
    let dir = tempfile::tempdir().unwrap();
    let policy = BackupPolicy {
        min_age: Duration::from_secs(2),
        slowdown: 3,
    };
    let mut config = config();
    config.scheduling.backups = Some(policy);
    let job = start(dir.path(), 4096, config).await;
    // The slow worker sits on its first chunk and does all the others it gets.
    let slow = attach(&job.handle, 1).await;
    let (stuck_tx, stuck_rx) = oneshot::channel();
    let (cancels_tx, mut cancels) = mpsc::unbounded_channel();
    let slow_task = {
        let handle = job.handle.clone();
        let mut slow = slow;
        tokio::spawn(async move {
            let mut stuck_tx = Some(stuck_tx);
            while let Some(message) = slow.inbox.recv().await {
                match message {
                    ToWorker::Assign(a) => match stuck_tx.take() {
                        Some(tx) => {
                            let _ = tx.send((slow.id, a));
                        }
                        None => {
                            let report = mapped(&a);
                            let _ = handle.report(slow.id, a.key(), report).await;
                        }
                    },
                    ToWorker::CancelAttempt(key) => {
                        let _ = cancels_tx.send((key.chunk, key.attempt));
                    }
                    ToWorker::Cancel(_) | ToWorker::Reduce(_) | ToWorker::ListLocal(_) => {}
                }
            }
        })
    };
    let (slow_id, stuck) = stuck_rx.await.unwrap();
    let fast = attach(&job.handle, 1).await;
    let fast_id = fast.id;
    let fast_task = diligent(&job.handle, fast);
    let keep_alive = {
        let handle = job.handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = handle.heartbeat(slow_id).await;
                let _ = handle.heartbeat(fast_id).await;
            }
        })
    };
    let got = result(&job.handle, job.id).await;
    assert_eq!(got, job.expected);
    let status = job.handle.get(job.id).await.unwrap();
    assert_eq!(status.counters.backups, 1);
    assert_eq!(status.counters.attempts, status.chunks_total + 1);
    // The original attempt is told to stop, and its late result changes nothing.
    assert_eq!(cancels.recv().await.unwrap(), (stuck.chunk, stuck.attempt));
    job.handle
        .report(slow_id, stuck.key(), mapped(&stuck))
        .await
        .unwrap();
    assert_eq!(result(&job.handle, job.id).await, job.expected);
    keep_alive.abort();
    fast_task.abort();
    slow_task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_run_without_stragglers_makes_no_backups() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.scheduling.backups = Some(BackupPolicy {
        min_age: Duration::from_secs(2),
        slowdown: 3,
    });
    let job = start(dir.path(), 1024, config).await;
    let a = diligent(&job.handle, attach(&job.handle, 2).await);
    let b = diligent(&job.handle, attach(&job.handle, 1).await);
    assert_eq!(result(&job.handle, job.id).await, job.expected);
    let status = job.handle.get(job.id).await.unwrap();
    assert_eq!(status.counters.backups, 0);
    assert_eq!(status.counters.attempts, status.chunks_total);
    a.abort();
    b.abort();
}

#[tokio::test]
async fn a_restarted_scheduler_resumes_from_its_checkpoints_without_redoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (spec, plan, expected) = inputs(dir.path(), 1024).await;
    let total = plan.chunks.len() as u64;
    let store = Store::open(state.path()).unwrap();
    let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
    let handle = spawn(
        config(),
        Some(store.clone()),
        Vec::new(),
        &Registry::builtin(),
        &tasks,
        stop.clone(),
    );
    let id = handle.submit(spec, plan).await.unwrap().id;
    let mut fake = attach(&handle, 1).await;
    // Fold five chunks, wait until they are durable, then leave one assignment unanswered.
    for _ in 0..5 {
        let a = next_assignment(&mut fake).await;
        handle.report(fake.id, a.key(), mapped(&a)).await.unwrap();
    }
    let mut updates = handle.watch(id).await.unwrap();
    updates
        .wait_for(|s| s.chunks_checkpointed == 5)
        .await
        .unwrap();
    let _unanswered = next_assignment(&mut fake).await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    drop(store);

    let store = Store::open(state.path()).unwrap();
    let restored = store.load().unwrap();
    assert_eq!(restored.len(), 1);
    let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
    let handle = spawn(
        config(),
        Some(store),
        restored,
        &Registry::builtin(),
        &tasks,
        stop.clone(),
    );
    let status = handle.get(id).await.unwrap();
    assert_eq!((status.chunks_done, status.chunks_checkpointed), (5, 5));
    let handed = Arc::default();
    let worker = recording(&handle, attach(&handle, 1).await, Arc::clone(&handed));
    assert_eq!(result(&handle, id).await, expected);
    let handed = handed.lock().unwrap().len() as u64;
    assert_eq!(handed, total - 5, "checkpointed chunks are not recomputed");
    worker.abort();
    stop.cancel();
    tasks.close();
    tasks.wait().await;

    // A finished job's result survives another restart.
    let store = Store::open(state.path()).unwrap();
    let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
    let handle = spawn(
        config(),
        Some(store.clone()),
        store.load().unwrap(),
        &Registry::builtin(),
        &tasks,
        stop.clone(),
    );
    assert_eq!(result(&handle, id).await, expected);
    stop.cancel();
}

#[tokio::test]
async fn a_result_asked_for_while_its_job_finishes_waits_for_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), 1 << 20, config()).await;
    let mut fake = attach(&job.handle, 1).await;
    let total = job.handle.get(job.id).await.unwrap().chunks_total;
    for _ in 0..total {
        let a = next_assignment(&mut fake).await;
        job.handle
            .report(fake.id, a.key(), mapped(&a))
            .await
            .unwrap();
    }
    // Every chunk is folded: the job is finishing (or, on a fast machine, over). A plain
    // result says so rather than "running"; one that waits gets the rows.
    match job.handle.result(job.id).await {
        Err(JobError::Finishing(_)) | Ok(_) => {}
        Err(other) => panic!("{other}"),
    }
    let rows = job
        .handle
        .result_when_ended(job.id, &CancellationToken::new())
        .await
        .unwrap();
    let crate::job::JobResult::Rows(rows) = rows else {
        panic!("a job folded at the coordinator keeps its rows in memory");
    };
    let got: HashMap<Vec<u8>, u64> = rows
        .iter()
        .map(|r| match r.value {
            Value::Count(n) => (r.key.clone(), n),
            ref other => panic!("word count gave {other:?}"),
        })
        .collect();
    assert_eq!(got, job.expected);
    let status = job.handle.get(job.id).await.unwrap();
    assert_eq!(
        (status.state, status.finishing),
        (JobState::Succeeded, false)
    );
}

#[tokio::test]
async fn a_job_that_cannot_be_restored_fails_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, plan, _) = inputs(dir.path(), 1024).await;
    assert!(plan.chunks.len() >= 2);
    let output = |value: Value| {
        let mut partial = fanfold_common::partial::Partial::new();
        partial.add(b"a".to_vec(), value).unwrap();
        ChunkOutput {
            partial: partial.into_columns(),
            stats: ChunkStats::default(),
            bad: Vec::new(),
            map_output: None,
        }
    };
    // Two stored chunks whose values cannot merge (a count and a maximum under one key).
    let id = JobId::new();
    let restored = crate::store::Restored {
        timeline: None,
        job: id,
        spec,
        files: plan.files,
        chunks_planned: plan.chunks,
        submitted_at: SystemTime::now(),
        state: JobState::Running,
        error: None,
        counters: Default::default(),
        finished_at: None,
        chunks: vec![
            (ChunkId(0), output(Value::Count(1))),
            (ChunkId(1), output(Value::Max(1.5))),
        ],
        quarantine: None,
        rows: None,
        parts: None,
    };
    let stop = CancellationToken::new();
    let handle = spawn(
        config(),
        Some(Store::in_memory().unwrap()),
        vec![restored],
        &Registry::builtin(),
        &TaskTracker::new(),
        stop.clone(),
    );
    let status = finished(&handle, id).await;
    assert_eq!(status.state, JobState::Failed);
    let error = status.error.unwrap();
    assert!(error.contains("cannot fold restored chunk 1"), "{error}");
    // Nothing waits on it: a cancel and a result are answered at once.
    assert_eq!(handle.cancel(id).await.unwrap().state, JobState::Failed);
    assert!(matches!(
        handle.result_when_ended(id, &stop).await,
        Err(JobError::NoResult { .. })
    ));
    stop.cancel();
}

/// Answers every assignment with `answer` until the job ends; returns how many it answered.
async fn answer_until_final(
    job: &Running,
    fake: &mut Fake,
    mut answer: impl FnMut(&Assignment) -> Report,
) -> usize {
    let mut answered = 0;
    while !job.handle.get(job.id).await.unwrap().state.is_final() {
        let Ok(Some(ToWorker::Assign(a))) =
            tokio::time::timeout(Duration::from_millis(100), fake.inbox.recv()).await
        else {
            continue;
        };
        answered += 1;
        let report = answer(&a);
        job.handle.report(fake.id, a.key(), report).await.unwrap();
    }
    answered
}

/// Every chunk and attempt of a job.
async fn everything(job: &Running, slowest: bool) -> JobDetail {
    let query = DetailQuery {
        offset: 0,
        limit: u64::MAX,
        spans: usize::MAX,
        slowest,
    };
    job.handle.detail(job.id, query).await.unwrap()
}

/// What the status page reads: a chunk failed once shows two attempts, its failed one and its
/// folded one in the timeline, the worker's failure, and gauges that match the ended job.
#[tokio::test]
async fn a_jobs_detail_shows_every_attempt_and_the_gauges_match_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), 4096, config()).await;
    let mut fake = attach(&job.handle, 1).await;
    let mut failed_once = false;
    let attempts = answer_until_final(&job, &mut fake, |a| {
        if a.chunk == ChunkId(0) && !failed_once {
            failed_once = true;
            Report::Failed {
                error: "disk on fire".into(),
                retryable: true,
            }
        } else {
            mapped(a)
        }
    })
    .await;
    let detail = everything(&job, true).await;
    assert_eq!(detail.status.state, JobState::Succeeded);
    assert_eq!(detail.chunks.len() as u64, detail.status.chunks_total);
    assert!(detail.chunks.iter().all(|c| c.state == "done"));
    assert_eq!(detail.chunks[0].attempts, 2);
    assert!(detail.chunks[1..].iter().all(|c| c.attempts == 1));
    assert_eq!(detail.timeline.spans.len(), attempts);
    let first: Vec<_> = detail
        .timeline
        .spans
        .iter()
        .filter(|s| s.task == 0)
        .map(|s| (s.attempt, s.outcome, s.error.clone()))
        .collect();
    use crate::job::timeline::Outcome;
    assert_eq!(
        first,
        [
            (1, Outcome::Failed, Some("disk on fire".into())),
            (2, Outcome::Done, None)
        ]
    );
    assert_eq!(
        detail.timeline.workers.values().collect::<Vec<_>>(),
        ["fake-1"]
    );
    let records: u64 = detail.chunks.iter().filter_map(|c| c.records).sum();
    assert_eq!(records, detail.status.counters.records_in);

    let workers = job.handle.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(
        (workers[0].chunks_done, workers[0].failures),
        (detail.status.chunks_total, 1)
    );
    let gauges = job.handle.gauges().await.unwrap();
    assert_eq!(
        gauges.jobs,
        [
            ("running", 0),
            ("succeeded", 1),
            ("failed", 0),
            ("cancelled", 0)
        ]
    );
    assert_eq!(gauges.chunks, [("pending", 0), ("running", 0), ("done", 0)]);
    assert_eq!(
        (gauges.workers_attached, gauges.slots, gauges.queue_depth),
        (1, 1, 0)
    );
}

/// A failed job's chunks show how they ended: the one that failed for good as failed, the
/// folded ones done, the rest not run.
#[tokio::test]
async fn a_failed_jobs_chunks_show_how_each_ended() {
    let dir = tempfile::tempdir().unwrap();
    let job = start(dir.path(), 1024, config()).await;
    let mut fake = attach(&job.handle, 1).await;
    answer_until_final(&job, &mut fake, |a| {
        if a.chunk == ChunkId(1) {
            Report::Failed {
                error: "unreadable".into(),
                retryable: false,
            }
        } else {
            mapped(a)
        }
    })
    .await;
    let detail = everything(&job, false).await;
    assert_eq!(detail.status.state, JobState::Failed);
    assert_eq!(detail.chunks[0].state, "done");
    assert_eq!(detail.chunks[1].state, "failed");
    // Chunk 2 may have been prefetched (then cancelled with the job) or never handed out.
    assert!(
        detail.chunks[2..]
            .iter()
            .all(|c| ["not_run", "cancelled", "done"].contains(&c.state))
    );
    assert!(
        detail.chunks.iter().any(|c| c.state == "not_run"),
        "{:?}",
        detail.chunks
    );
    assert!(detail.status.slowest_running.is_none());
}

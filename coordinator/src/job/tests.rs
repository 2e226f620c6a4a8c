//! The chunk lifecycle and exactly-once rules of one job, without a scheduler or sockets.

use super::*;
use fanfold_common::partial::Value;
use fanfold_common::partial::{ChunkPartial, Partial};
use fanfold_common::registry::Registry;
use std::time::Duration;

fn wordcount() -> Arc<dyn Operation> {
    Registry::builtin()
        .build("wordcount", &Default::default())
        .unwrap()
}

fn job(chunks: u64) -> Job {
    let plan = Plan {
        files: vec![Location::local("in.txt")],
        chunks: (0..chunks)
            .map(|i| ChunkRange {
                file: 0,
                start: i * 10,
                end: i * 10 + 10,
                header: 0,
            })
            .collect(),
        operation: Some(wordcount()),
    };
    Job::new(JobId::new(), JobSpec::default(), plan, SystemTime::now())
}

fn one(key: &str) -> ChunkPartial {
    Partial::from_entries([(key.as_bytes().to_vec(), Value::Count(1))])
        .unwrap()
        .into_columns()
}

fn out(partial: ChunkPartial) -> ChunkOutput {
    ChunkOutput {
        partial,
        stats: NO_STATS,
        bad: Vec::new(),
        map_output: None,
    }
}

fn folded(c: Completion) -> bool {
    matches!(c, Completion::Folded { .. })
}

const W1: WorkerId = WorkerId(1);
const W2: WorkerId = WorkerId(2);
const NO_STATS: ChunkStats = ChunkStats {
    records_in: 0,
    bytes_in: 0,
    bad_records: 0,
    user: std::collections::BTreeMap::new(),
};

#[test]
fn a_chunk_folds_exactly_once_and_stale_attempts_are_dropped() {
    let mut job = job(1);
    let (chunk, first) = job.assign_next(W1).unwrap();
    job.release(chunk, first); // W1 vanished
    let (again, second) = job.assign_next(W2).unwrap();
    assert_eq!((again, second), (chunk, Attempt(2)));
    // W1's late result for attempt 1 must not fold.
    assert!(!folded(
        job.complete(chunk, first, out(one("late")), false).unwrap()
    ));
    assert!(folded(
        job.complete(chunk, second, out(one("x")), false).unwrap()
    ));
    // A duplicate of the winning result must not fold either.
    assert!(!folded(
        job.complete(chunk, second, out(one("x")), false).unwrap()
    ));
    assert!(job.ready_to_finalize());
    let folded = job.take_for_finalize().folded.into_partial();
    assert_eq!(folded.get(b"x"), Some(&Value::Count(1)));
    assert_eq!(folded.get(b"late"), None);
}

#[test]
fn failures_retry_until_the_limit_then_name_the_chunk() {
    let mut job = job(2);
    let (chunk, a1) = job.assign_next(W1).unwrap();
    assert_eq!(job.fail(chunk, a1, "boom", true, 2), FailOutcome::Retry);
    let (same, a2) = job.assign_next(W2).unwrap();
    assert_eq!(same, chunk, "a retried chunk goes first");
    assert_eq!(job.fail(chunk, a1, "stale", true, 2), FailOutcome::Stale);
    assert_eq!(
        job.fail(chunk, a2, "boom again", true, 2),
        FailOutcome::JobFailed
    );
    assert_eq!(job.state(), JobState::Failed);
    assert_eq!(
        job.snapshot(0).state,
        JobState::Running,
        "the end is announced only once durable"
    );
    assert!(job.snapshot(0).finishing);
    assert!(job.end_durable());
    let status = job.snapshot(0);
    assert_eq!(status.state, JobState::Failed);
    assert!(!status.finishing);
    assert_eq!(
        status.error.as_deref(),
        Some("chunk 0 (in.txt bytes 0..10) failed after 2 attempts: boom again")
    );
    assert_eq!(status.counters.attempts, 2);
    assert_eq!(status.counters.chunks_failed, 2);
    assert!(
        job.assign_next(W1).is_none(),
        "a failed job hands out nothing"
    );
}

#[test]
fn a_non_retryable_failure_fails_at_once() {
    let mut job = job(1);
    let (chunk, a1) = job.assign_next(W1).unwrap();
    assert_eq!(
        job.fail(chunk, a1, "unknown op", false, 5),
        FailOutcome::JobFailed
    );
}

#[test]
fn a_job_without_chunks_is_ready_at_once() {
    assert!(job(0).ready_to_finalize());
}

#[tokio::test(start_paused = true)]
async fn a_straggler_gets_one_backup_and_the_first_result_wins() {
    let policy = BackupPolicy {
        min_age: Duration::from_secs(1),
        slowdown: 3,
    };
    let mut job = job(3);
    let (c0, a0) = job.assign_next(W1).unwrap();
    let (c1, a1) = job.assign_next(W1).unwrap();
    let (slow, slow_attempt) = job.assign_next(W2).unwrap();
    assert_eq!(
        job.straggler(W1, policy),
        None,
        "no finished chunk to compare with yet"
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(folded(job.complete(c0, a0, out(one("a")), false).unwrap()));
    assert!(folded(job.complete(c1, a1, out(one("b")), false).unwrap()));
    // Median 500ms: the bar is max(1s, 3 x 500ms) = 1.5s of running.
    tokio::time::advance(Duration::from_millis(900)).await;
    assert_eq!(job.straggler(W1, policy), None);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(
        job.straggler(W2, policy),
        None,
        "never a backup on the same worker"
    );
    assert_eq!(job.straggler(W1, policy), Some(slow));
    let backup = job.assign_backup(slow, W1).unwrap();
    assert_eq!(job.straggler(W1, policy), None, "one backup per chunk");
    // The backup wins; the original is the loser to cancel, and its late result is dropped.
    let won = job.complete(slow, backup, out(one("c")), false).unwrap();
    assert_eq!(
        won,
        Completion::Folded {
            losers: vec![(W2, slow_attempt)],
            kept: None,
        }
    );
    assert!(!folded(
        job.complete(slow, slow_attempt, out(one("c")), false)
            .unwrap()
    ));
    let status = job.snapshot(0);
    assert_eq!((status.counters.attempts, status.counters.backups), (4, 1));
    assert_eq!(
        job.take_for_finalize().folded.into_partial().get(b"c"),
        Some(&Value::Count(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_backup_leaves_the_original_running() {
    let policy = BackupPolicy {
        min_age: Duration::ZERO,
        slowdown: 1,
    };
    let mut job = job(2);
    let (c0, a0) = job.assign_next(W1).unwrap();
    let (slow, original) = job.assign_next(W2).unwrap();
    tokio::time::advance(Duration::from_millis(10)).await;
    assert!(folded(job.complete(c0, a0, out(one("a")), false).unwrap()));
    tokio::time::advance(Duration::from_millis(20)).await;
    let backup = job
        .assign_backup(job.straggler(W1, policy).unwrap(), W1)
        .unwrap();
    assert_eq!(
        job.fail(slow, backup, "oops", true, 1),
        FailOutcome::OtherAttemptRuns
    );
    assert!(folded(
        job.complete(slow, original, out(one("b")), false).unwrap()
    ));
    assert!(job.ready_to_finalize());
}

#[test]
fn restored_chunks_are_not_handed_out_again() {
    let mut job = job(3);
    job.restore_chunk(ChunkId(1), out(one("r"))).unwrap();
    job.restore_chunk(ChunkId(1), out(one("r"))).unwrap(); // twice: folded once
    let handed: Vec<ChunkId> = std::iter::from_fn(|| job.assign_next(W1).map(|(c, _)| c)).collect();
    assert_eq!(handed, [ChunkId(0), ChunkId(2)]);
    let status = job.snapshot(0);
    assert_eq!((status.chunks_done, status.chunks_checkpointed), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_timeout_fails_clearly() {
    let mut job = job(2);
    job.spec.timeout = Some(Duration::from_secs(5));
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(!job.check_timeout());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(job.check_timeout());
    assert_eq!(
        job.snapshot(0).error.as_deref(),
        Some("timed out after 5s with 0/2 chunks done")
    );
}

#[test]
fn a_success_is_announced_only_after_rows_output_and_end_are_durable() {
    let mut job = job(1);
    let (chunk, attempt) = job.assign_next(W1).unwrap();
    assert!(folded(
        job.complete(chunk, attempt, out(one("a")), false).unwrap()
    ));
    job.take_for_finalize();
    assert!(!job.ready_to_finalize(), "finalized once");
    let row = Row {
        key: b"a".to_vec(),
        value: Value::Count(1),
    };
    assert!(job.finalized(1, JobResult::Rows(Arc::new(vec![row.clone()])), None));
    assert!(job.rows_kept() && !job.ready_to_commit());
    assert!(!job.succeed(), "not before the rows are durable");
    assert!(job.rows_durable());
    assert!(!job.rows_durable(), "once");
    assert!(job.ready_to_commit());
    // The output directory is committed: the job has succeeded, and says so once durable.
    assert!(job.succeed());
    assert_eq!(job.state(), JobState::Succeeded);
    let before = job.snapshot(0);
    assert_eq!((before.state, before.finishing), (JobState::Running, true));
    assert!(job.end_durable());
    let after = job.snapshot(0);
    assert_eq!((after.state, after.finishing), (JobState::Succeeded, false));
    assert!(matches!(job.result(), Some(JobResult::Rows(rows)) if *rows == vec![row]));
}

#[test]
fn a_job_committing_its_result_finishes_whatever_is_asked() {
    let mut job = job(1);
    job.spec.timeout = Some(std::time::Duration::ZERO);
    let (chunk, attempt) = job.assign_next(W1).unwrap();
    job.complete(chunk, attempt, out(one("a")), false).unwrap();
    job.take_for_finalize();
    assert!(job.finalized(1, JobResult::Rows(Arc::new(vec![])), None));
    assert!(job.rows_durable());
    // Its output directory may be half committed: a cancel or a timeout must not end it now.
    job.cancel();
    assert!(!job.check_timeout());
    assert!(job.succeed());
    assert!(job.end_durable());
    assert_eq!(job.snapshot(0).state, JobState::Succeeded);
}

#[test]
fn a_job_cancelled_while_finalizing_ends_cancelled_without_rows() {
    let mut job = job(1);
    let (chunk, attempt) = job.assign_next(W1).unwrap();
    job.complete(chunk, attempt, out(one("a")), false).unwrap();
    job.take_for_finalize();
    job.cancel();
    assert!(
        !job.finalized(1, JobResult::Rows(Arc::new(vec![])), None),
        "late rows do not revive it"
    );
    assert!(!job.succeed());
    assert!(job.end_durable());
    assert_eq!(job.snapshot(0).state, JobState::Cancelled);
    assert!(job.result().is_none());
}

/// A job over one shared file and one file of each of two workers' own, two chunks each.
fn job_with_worker_files() -> Job {
    let own = |worker: &str| {
        Location::Worker(fanfold_common::location::WorkerFile {
            worker: worker.into(),
            path: "/var/log/app.log".into(),
        })
    };
    let plan = Plan {
        files: vec![Location::local("in.txt"), own("a"), own("b")],
        chunks: (0..6)
            .map(|i| ChunkRange {
                file: i / 2,
                start: u64::from(i % 2) * 10,
                end: u64::from(i % 2) * 10 + 10,
                header: 0,
            })
            .collect(),
        operation: Some(wordcount()),
    };
    Job::new(JobId::new(), JobSpec::default(), plan, SystemTime::now())
}

#[test]
fn a_workers_own_files_go_to_it_alone_its_own_first() {
    let mut job = job_with_worker_files();
    let chunk = |task: Option<Task>| match task {
        Some(Task::Map(chunk, _)) => chunk.0,
        other => panic!("{other:?}"),
    };
    // Worker "a" takes its own two chunks first, then shared ones.
    let taken: Vec<u64> = (0..3)
        .map(|_| chunk(job.assign_task(W1, Some("a"))))
        .collect();
    assert_eq!(taken, vec![2, 3, 0]);
    // A worker with no files of its own never gets b's, even one named "b".
    assert_eq!(chunk(job.assign_task(W2, None)), 1);
    assert!(!job.has_pending_for(None) && job.has_pending_for(Some("b")));
    assert!(job.assign_task(W2, None).is_none());
    assert!(job.assign_task(W2, Some("other")).is_none());
    assert!(job.may_run(ChunkId(4), Some("b")) && !job.may_run(ChunkId(4), Some("a")));
    assert!(!job.may_run(ChunkId(4), None));
    assert!(job.may_run(ChunkId(0), None));
}

#[tokio::test(start_paused = true)]
async fn chunks_waiting_for_an_absent_worker_fail_the_job_after_a_lease() {
    let lease = Duration::from_secs(10);
    let mut job = job_with_worker_files();
    // b is around: nothing happens, however long.
    tokio::time::advance(lease * 2).await;
    assert!(!job.check_owners(|name| name == "b" || name == "a", lease));
    // b left: its chunks wait a lease for it...
    assert!(!job.check_owners(|name| name == "a", lease));
    tokio::time::advance(lease / 2).await;
    assert!(!job.check_owners(|name| name == "a", lease));
    // ...and it coming back resets the wait.
    assert!(!job.check_owners(|_| true, lease));
    tokio::time::advance(lease / 2).await;
    assert!(!job.check_owners(|name| name == "a", lease));
    tokio::time::advance(lease).await;
    assert!(job.check_owners(|name| name == "a", lease));
    assert_eq!(job.state(), JobState::Failed);
    let error = job.snapshot(1).error.unwrap_or_default();
    assert!(error.contains("worker 'b' left"), "{error}");
}

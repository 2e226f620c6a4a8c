//! Faults injected for real into real processes: workers killed with SIGKILL, frozen with
//! SIGSTOP, drained with SIGTERM; the coordinator killed and restarted on its state directory;
//! jobs cancelled mid-flight. Every result is checked against an independent sequential count.

mod support;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use support::*;

/// 16 MiB over 4 files: with 32 KiB chunks, a few hundred chunks.
fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| Corpus::generate("faults", 4, 4 << 20, 9))
}

const CHUNK: &str = "32KiB";

/// Submits word count over the corpus and returns the job id at once.
async fn submit(addr: &str) -> String {
    submit_chunked(addr, CHUNK).await
}

async fn submit_chunked(addr: &str, chunk_size: &str) -> String {
    let out = submit_job(
        addr,
        &[
            "run",
            corpus().root(),
            "--chunk-size",
            chunk_size,
            "--detach",
        ],
    )
    .await;
    assert_ok(&out);
    stdout(&out).trim().to_owned()
}

/// Word count over the corpus with `extra` flags, detached: the job id.
async fn submit_with(addr: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", corpus().root(), "--chunk-size", CHUNK, "--detach"];
    args.extend_from_slice(extra);
    let out = submit_job(addr, &args).await;
    assert_ok(&out);
    stdout(&out).trim().to_owned()
}

/// `submit-job run` of the corpus with `extra` flags, waiting for the result into `result` on
/// its own task (it rides through coordinator restarts), and the job's id once it is listed.
async fn run_waiting(
    addr: &str,
    extra: &[&str],
    result: &std::path::Path,
) -> (tokio::task::JoinHandle<std::process::Output>, String) {
    let waiting = {
        let addr = addr.to_owned();
        let mut args: Vec<String> = ["run", corpus().root(), "--chunk-size", CHUNK, "-q"]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(["--output".into(), result.to_str().unwrap().to_owned()]);
        tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            submit_job(&addr, &args).await
        })
    };
    let job = until(
        "the job to be submitted",
        Duration::from_secs(60),
        || async {
            list_jobs(addr)
                .await?
                .into_iter()
                .find(|j| j.state == "running")
                .map(|j| j.job_id)
        },
    )
    .await;
    (waiting, job)
}

async fn wait_final(addr: &str, job: &str) -> Status {
    until("the job to end", Duration::from_secs(240), || async {
        job_status(addr, job).await.filter(|s| s.state != "running")
    })
    .await
}

/// Fetches a job's result and checks it against the independent count.
async fn assert_exact(addr: &str, job: &str) {
    let out = submit_job(addr, &["result", job]).await;
    assert_ok(&out);
    let got = parse_tsv(&out.stdout);
    assert_eq!(got.len(), corpus().counts.len(), "distinct words");
    assert!(
        got == corpus().counts,
        "word counts differ from the sequential count"
    );
}

/// Input counters count each chunk once, whatever was retried.
fn assert_counted_once(status: &Status) {
    assert_eq!(status.counters.bytes_in, corpus().bytes, "{status:?}");
    assert_eq!(status.chunks_done, status.chunks_total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_storm_kills_workers_and_the_answer_stays_exact() {
    let test = "crash_storm";
    for round in 0..3u64 {
        let (_coordinator, addr) =
            coordinator(test, "127.0.0.1:0", &["--worker-timeout", "2s"]).await;
        let mut workers: Vec<Proc> = (0..3)
            .map(|i| worker(test, &addr, 1, &format!("r{round}-w{i}")))
            .collect();
        // Small chunks, and kills paced by the job's progress rather than by the clock: a
        // kill lands as the folded chunks pass each of three marks (a quarter apart, with
        // jitter), so however fast the job runs the storm hits it three times mid-flight.
        let job = submit_chunked(&addr, "16KiB").await;
        let mut rng = Rng::new(round + 1);
        let mut marks: Vec<u64> = (1..=3u64).map(|i| i * 25 - 5 + rng.below(10)).collect();
        let mut kills_mid_job = 0;
        let mut started = 3;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let status = job_status(&addr, &job).await.expect("coordinator up");
            if status.state != "running" {
                break;
            }
            let percent_done = status.chunks_done * 100 / status.chunks_total.max(1);
            if marks.first().is_none_or(|&mark| percent_done < mark) {
                continue;
            }
            marks.remove(0);
            let victim = rng.below(workers.len() as u64) as usize;
            let mut dead = workers.swap_remove(victim);
            dead.child.start_kill().unwrap(); // SIGKILL
            dead.child.wait().await.unwrap();
            kills_mid_job += 1;
            workers.push(worker(test, &addr, 1, &format!("r{round}-w{started}")));
            started += 1;
        }
        assert!(
            kills_mid_job >= 2,
            "round {round}: only {kills_mid_job} kills landed mid-job"
        );
        let status = wait_final(&addr, &job).await;
        assert_eq!(status.state, "succeeded", "{status:?}");
        assert_counted_once(&status);
        assert!(status.counters.attempts >= status.chunks_total);
        assert_exact(&addr, &job).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_workers_chunks_move_and_its_late_results_are_not_folded() {
    let test = "sigstop";
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &["--worker-timeout", "2s"]).await;
    let frozen = worker(test, &addr, 2, "frozen");
    let job = submit(&addr).await;
    until(
        "the first worker to fold some chunks",
        Duration::from_secs(60),
        || async { job_status(&addr, &job).await.filter(|s| s.chunks_done >= 3) },
    )
    .await;
    signal(frozen.pid(), "STOP");
    let _rescuer = worker(test, &addr, 2, "rescuer");
    let status = wait_final(&addr, &job).await;
    assert_eq!(status.state, "succeeded", "{status:?}");
    assert!(
        status.counters.attempts > status.chunks_total,
        "the frozen worker's chunks were reassigned: {status:?}"
    );
    assert_counted_once(&status);

    // Thawed, the worker finishes what it held and reports it on its dead attachment, then
    // attaches again: none of that may change the job.
    signal(frozen.pid(), "CONT");
    until(
        "the thawed worker to reattach",
        Duration::from_secs(30),
        || async { job_status(&addr, &job).await.filter(|s| s.workers == 2) },
    )
    .await;
    let after = job_status(&addr, &job).await.unwrap();
    assert_eq!(after.counters, status.counters);
    assert_exact(&addr, &job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_is_killed_twice_and_the_job_resumes_from_its_checkpoints() {
    let test = "coordinator_restart";
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_owned();
    let flags = [
        "--state-dir",
        state_dir.as_str(),
        "--no-backups",
        "--worker-timeout",
        "3s",
    ];
    let (mut coordinator_proc, addr) = coordinator(test, "127.0.0.1:0", &flags).await;
    let _workers: Vec<Proc> = (0..2)
        .map(|i| worker(test, &addr, 1, &format!("w{i}")))
        .collect();
    // `submit-job run` waits through both restarts (it reconnects) and writes the result.
    let out = tempfile::tempdir().unwrap();
    let result = out.path().join("counts.tsv");
    let (waiting, job) = run_waiting(&addr, &[], &result).await;
    let total = job_status(&addr, &job).await.unwrap().chunks_total;
    for kill in 1..=2u64 {
        let target = kill * total / 3;
        let before = until(
            "checkpoints to pass the kill point",
            Duration::from_secs(120),
            || async {
                job_status(&addr, &job)
                    .await
                    .filter(|s| s.chunks_checkpointed >= target)
            },
        )
        .await;
        assert_eq!(before.state, "running", "the job ended before kill {kill}");
        let checkpointed = before.chunks_checkpointed;
        coordinator_proc.child.start_kill().unwrap(); // SIGKILL
        coordinator_proc.child.wait().await.unwrap();
        let (restarted, again) = coordinator(test, &addr, &flags).await;
        assert_eq!(again, addr);
        coordinator_proc = restarted;
        let resumed = job_status(&addr, &job)
            .await
            .expect("restarted coordinator answers");
        assert!(
            resumed.chunks_done >= checkpointed,
            "kill {kill}: {checkpointed} chunks were checkpointed, {resumed:?} resumed"
        );
    }
    let ran = waiting.await.unwrap();
    assert_ok(&ran);
    assert!(
        stderr(&ran).contains("reconnecting"),
        "the client saw the coordinator go: {}",
        stderr(&ran)
    );
    let got = parse_tsv(&std::fs::read(&result).unwrap());
    assert!(
        got == corpus().counts,
        "word counts differ from the sequential count"
    );
    let status = job_status(&addr, &job).await.unwrap();
    assert_eq!(status.state, "succeeded");
    assert_counted_once(&status);
    // Only chunks in flight at each kill's last checkpoint are redone: at most the fleet's
    // credits (2 workers x (1 slot + 1 prefetch)) per kill.
    let redone = status.counters.attempts - status.chunks_total;
    assert!(redone <= 2 * 4, "{redone} chunks redone: {status:?}");
    // SIGTERM stops the coordinator cleanly, and the finished result is still there after it
    // starts again.
    signal(coordinator_proc.pid(), "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), coordinator_proc.child.wait())
        .await
        .expect("the coordinator exits on SIGTERM")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    let (_last, _) = coordinator(test, &addr, &flags).await;
    assert_exact(&addr, &job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_work_on_every_worker_promptly() {
    let test = "cancel";
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let scratch = tempfile::tempdir().unwrap();
    // Workers get their own temporary directory, to check that nothing is left in it.
    let workers: Vec<Proc> = (0..2)
        .map(|i| {
            let child = worker_command(test, &addr, 1, &format!("w{i}"), &[])
                .env("TMPDIR", scratch.path())
                .spawn()
                .unwrap();
            Proc { child }
        })
        .collect();
    let job = submit(&addr).await;
    until(
        "some chunks to be done",
        Duration::from_secs(60),
        || async { job_status(&addr, &job).await.filter(|s| s.chunks_done >= 2) },
    )
    .await;
    let cancel = submit_job(&addr, &["cancel", &job]).await;
    assert_ok(&cancel);
    let status = job_status(&addr, &job).await.unwrap();
    assert_eq!(status.state, "cancelled");
    assert_eq!(status.chunks_running, 0);
    // Idle means at most 2 clock ticks (20 ms: heartbeats) of CPU over half a second, where
    // mapping would use all of it; it must come within two seconds.
    until("workers to go idle", Duration::from_secs(2), || async {
        let before: Vec<u64> = workers.iter().map(|w| cpu_ticks(w.pid())).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after: Vec<u64> = workers.iter().map(|w| cpu_ticks(w.pid())).collect();
        before
            .iter()
            .zip(&after)
            .all(|(b, a)| a - b <= 2)
            .then_some(())
    })
    .await;
    assert!(std::fs::read_dir(scratch.path()).unwrap().next().is_none());
    // The coordinator goes on serving: a new job runs to the exact answer.
    let next = submit(&addr).await;
    wait_final(&addr, &next).await;
    assert_exact(&addr, &next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_which_exits_zero_and_nothing_is_lost() {
    let test = "drain";
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let mut leaving = worker(test, &addr, 2, "leaving");
    let job = submit(&addr).await;
    until("the worker to be busy", Duration::from_secs(60), || async {
        job_status(&addr, &job).await.filter(|s| s.chunks_done >= 3)
    })
    .await;
    let _staying = worker(test, &addr, 2, "staying");
    signal(leaving.pid(), "TERM");
    let exit = tokio::time::timeout(Duration::from_secs(60), leaving.child.wait())
        .await
        .expect("the worker drains and exits")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "a drained worker exits 0");
    let status = wait_final(&addr, &job).await;
    assert_eq!(status.state, "succeeded", "{status:?}");
    assert_eq!(
        status.counters.chunks_failed, 0,
        "handing back is not failing"
    );
    assert_counted_once(&status);
    assert_exact(&addr, &job).await;
    let log = std::fs::read_to_string(log_dir(test).join("leaving.log")).unwrap();
    assert!(log.contains("draining") && log.contains("drained"), "{log}");
}

/// A streaming mapper that dies on any record starting with "POISON", and otherwise emits
/// `word<TAB>1` for each whitespace-separated word.
const POISONED_MAPPER: &str = "awk '/^POISON/ { print \"poisoned record\" > \"/dev/stderr\"; exit 3 } \
                               { for (i = 1; i <= NF; i++) print $i \"\\t1\" }'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_fails_the_job_clearly_or_is_quarantined_in_skip_mode() {
    let test = "poison";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.txt");
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!("alpha beta{} gamma{}\n", i % 7, i % 13));
        if i == 1700 {
            text.push_str("POISON pill here\n");
        }
    }
    std::fs::write(&input, &text).unwrap();
    let poison_offset = text.find("POISON").unwrap();
    // The independent answer: every word of every line except the poisoned one.
    let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with("POISON")) {
        for word in line.split_whitespace() {
            *expected.entry(word.as_bytes().to_vec()).or_default() += 1;
        }
    }

    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let (_coordinator, addr) = coordinator(
        test,
        "127.0.0.1:0",
        &[
            "--allow-streaming",
            "--max-attempts",
            "2",
            "--state-dir",
            state_dir,
        ],
    )
    .await;
    let _workers: Vec<Proc> = (0..2)
        .map(|i| worker_with(test, &addr, 1, &format!("w{i}"), &["--allow-streaming"]))
        .collect();
    let input = input.to_str().unwrap();
    let job = [
        "run",
        input,
        "--mapper",
        POISONED_MAPPER,
        "--reducer",
        "sum",
        "--chunk-size",
        "8KiB",
    ];

    // Without skip mode the job fails, naming the file, the byte range, the attempts and the
    // mapper's error.
    let failed = submit_job(&addr, &[&job[..], &["-q"]].concat()).await;
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    assert!(err.contains("failed after 2 attempts"), "{err}");
    assert!(err.contains(&format!("{input} bytes ")), "{err}");
    assert!(err.contains("poisoned record"), "{err}");

    // In skip mode it finishes; the quarantine holds exactly the poisoned record.
    let out = submit_job(&addr, &[&job[..], &["-q", "--skip-bad-records"]].concat()).await;
    assert_ok(&out);
    assert!(
        parse_tsv(&out.stdout) == expected,
        "counts differ from the independent count"
    );
    let id = list_jobs(&addr)
        .await
        .expect("coordinator up")
        .into_iter()
        .rfind(|j| j.state == "succeeded")
        .expect("the skip-mode job")
        .job_id;
    let status = job_status(&addr, &id).await.unwrap();
    assert_eq!(status.counters.bad_records, 1);
    let quarantine =
        std::fs::read_to_string(status.quarantine.expect("a quarantine file")).unwrap();
    let fields: Vec<&str> = quarantine.trim_end().split('\t').collect();
    assert_eq!(quarantine.lines().count(), 1, "{quarantine}");
    assert_eq!(fields[0], input);
    assert_eq!(fields[1], poison_offset.to_string());
    assert!(fields[2].contains("poisoned record"), "{quarantine}");
    assert_eq!(fields[3], "POISON pill here");
}

/// The job dirs left in the workers' spill directories under `spill` (each worker's own
/// directory holds one per partitioned job whose map outputs it keeps).
fn spilled_jobs(spill: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(spill)
        .unwrap()
        .flatten()
        .flat_map(|worker| std::fs::read_dir(worker.path()).into_iter().flatten())
        .flatten()
        .map(|job| job.path())
        .collect()
}

/// A partitioned job whose worker is killed after its maps finished and before any reducer
/// fetched: only the map outputs that worker kept are mapped again, nothing is counted
/// twice, the answer is exact, and no map output is left on any worker once the job is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_its_maps_loses_only_its_map_outputs() {
    let test = "partitioned_kill";
    let spill = tempfile::tempdir().unwrap();
    let spill_dir = spill.path().to_str().unwrap();
    // A long lease: the frozen worker must not be given up on.
    let (_coordinator, addr) = coordinator(test, "127.0.0.1:0", &["--worker-timeout", "60s"]).await;
    let flags = ["--spill-dir", spill_dir];
    let mut a = worker_with(test, &addr, 1, "a", &flags);
    let b = worker_with(test, &addr, 1, "b", &flags);
    let job = submit_with(&addr, &["--reducers", "3"]).await;
    until("a few maps", Duration::from_secs(60), || async {
        job_status(&addr, &job).await.filter(|s| s.chunks_done >= 4)
    })
    .await;
    // B freezes holding its chunks, so the map stage cannot end; A maps everything else.
    signal(b.pid(), "STOP");
    // Nothing pending: A has mapped all but what B holds (and A's own last ones).
    let before = until("A to map all it can", Duration::from_secs(120), || async {
        job_status(&addr, &job)
            .await
            .filter(|s| s.chunks_done + s.chunks_running == s.chunks_total)
    })
    .await;
    assert_eq!(before.stage.as_deref(), Some("map"), "{before:?}");
    assert_eq!(before.reduces_done, 0);
    signal(a.pid(), "KILL");
    let _ = a.child.wait().await;
    let lost = until(
        "A's map outputs to be lost",
        Duration::from_secs(30),
        || async {
            job_status(&addr, &job)
                .await
                .filter(|s| s.counters.map_outputs_lost > 0)
        },
    )
    .await;
    // A fresh worker and the thawed one map what was lost, then reduce.
    let _c = worker_with(test, &addr, 1, "c", &flags);
    signal(b.pid(), "CONT");
    let done = wait_final(&addr, &job).await;
    assert_eq!(done.state, "succeeded", "{:?}", done.error);
    assert_exact(&addr, &job).await;
    assert_counted_once(&done);
    let outputs_lost = done.counters.map_outputs_lost;
    // Only A's outputs were lost: at most what was done when it died, less B's own.
    assert!(
        outputs_lost >= lost.counters.map_outputs_lost && outputs_lost < before.chunks_done,
        "lost {outputs_lost} of {} mapped: {done:?}",
        before.chunks_done
    );
    // Every chunk mapped once, plus once more for each lost output and each of A's in-flight
    // attempts (at most its slot and prefetch).
    let attempts = done.counters.attempts;
    let floor = done.chunks_total + outputs_lost;
    assert!(
        (floor..=floor + 2).contains(&attempts),
        "{attempts} map attempts for {} chunks, {outputs_lost} lost",
        done.chunks_total
    );
    assert_eq!(done.reduces_done, 3);
    // The job's map outputs go from every worker once it is over; A's directory went when C
    // started beside it.
    until("no map outputs left", Duration::from_secs(10), || async {
        spilled_jobs(spill.path()).is_empty().then_some(())
    })
    .await;
}

/// The coordinator is killed while a partitioned job reduces: restarted on its state
/// directory, it runs the job again (map outputs are not kept across a restart) and the client
/// that waited gets the exact answer; killed again after the job succeeded, it still serves
/// the result from the part files in its state directory; and no map output is left on the
/// workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_is_killed_while_a_partitioned_job_reduces() {
    let test = "partitioned_restart";
    let state = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap().to_owned();
    let flags = ["--state-dir", state_dir.as_str(), "--worker-timeout", "3s"];
    let (mut coordinator_proc, addr) = coordinator(test, "127.0.0.1:0", &flags).await;
    let spill_flags = ["--spill-dir", spill.path().to_str().unwrap()];
    let _workers: Vec<Proc> = (0..2)
        .map(|i| worker_with(test, &addr, 1, &format!("w{i}"), &spill_flags))
        .collect();
    let out = tempfile::tempdir().unwrap();
    let result = out.path().join("counts.tsv");
    // Many partitions: each reduce task fetches from every map output, so the reduce stage
    // lasts long enough to be caught.
    let (waiting, job) = run_waiting(&addr, &["--reducers", "64"], &result).await;
    let reducing = until("the reduce stage", Duration::from_secs(120), || async {
        job_status(&addr, &job)
            .await
            .filter(|s| s.stage.as_deref() == Some("reduce") && s.reduces_done < 64)
    })
    .await;
    assert_eq!(reducing.state, "running");
    coordinator_proc.child.start_kill().unwrap(); // SIGKILL
    coordinator_proc.child.wait().await.unwrap();
    let (restarted, again) = coordinator(test, &addr, &flags).await;
    assert_eq!(again, addr);
    coordinator_proc = restarted;
    let ran = waiting.await.unwrap();
    assert_ok(&ran);
    let got = parse_tsv(&std::fs::read(&result).unwrap());
    assert!(
        got == corpus().counts,
        "word counts differ from the sequential count"
    );
    let status = job_status(&addr, &job).await.unwrap();
    assert_eq!(status.state, "succeeded");
    assert_counted_once(&status);
    assert_eq!((status.reduces_total, status.reduces_done), (64, 64));
    // Killed after the success, it serves the same result from its state directory.
    coordinator_proc.child.start_kill().unwrap();
    coordinator_proc.child.wait().await.unwrap();
    let (_last, _) = coordinator(test, &addr, &flags).await;
    assert_exact(&addr, &job).await;
    until("no map outputs left", Duration::from_secs(10), || async {
        spilled_jobs(spill.path()).is_empty().then_some(())
    })
    .await;
}

/// A serving worker is frozen (SIGSTOP) while reducers fetch from it: its lease runs out, its
/// map outputs are mapped again elsewhere, the fetches from it fail and are retried from the
/// new outputs, and the answer is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_serving_worker_is_routed_around() {
    let test = "partitioned_sigstop";
    let spill = tempfile::tempdir().unwrap();
    let (_coordinator, addr) = coordinator(
        test,
        "127.0.0.1:0",
        &["--worker-timeout", "2s", "--no-backups"],
    )
    .await;
    let flags = ["--spill-dir", spill.path().to_str().unwrap()];
    let _a = worker_with(test, &addr, 1, "a", &flags);
    let b = worker_with(test, &addr, 1, "b", &flags);
    let job = submit_with(&addr, &["--reducers", "64"]).await;
    until("the reduce stage", Duration::from_secs(120), || async {
        job_status(&addr, &job)
            .await
            .filter(|s| s.stage.as_deref() == Some("reduce") && s.reduces_done < 32)
    })
    .await;
    signal(b.pid(), "STOP");
    let _c = worker_with(test, &addr, 1, "c", &flags);
    let done = wait_final(&addr, &job).await;
    signal(b.pid(), "CONT");
    assert_eq!(done.state, "succeeded", "{:?}", done.error);
    assert_exact(&addr, &job).await;
    assert_counted_once(&done);
    assert!(done.counters.map_outputs_lost > 0, "{done:?}");
    assert_eq!(done.reduces_done, 64);
}

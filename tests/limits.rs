//! How much: limits on jobs not yet ended, retention of finished jobs and their results,
//! results too large for memory kept on disk, and clients that misbehave. Real binaries on
//! loopback.

mod support;

use std::path::Path;
use std::time::Duration;

use fanfold_proto::v1 as pb;
use fanfold_proto::v1::job_service_client::JobServiceClient;
use support::auth::{new_token, tokens_file, with_token};
use support::*;
use tokio::io::AsyncWriteExt;
use tonic::Code;
use tonic::transport::Channel;

fn wordcount(input: &Path) -> pb::JobSpec {
    pb::JobSpec {
        inputs: vec![input.display().to_string()],
        operation: "wordcount".into(),
        ..Default::default()
    }
}

async fn jobs_client(addr: &str) -> JobServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    JobServiceClient::new(channel).max_decoding_message_size(64 << 20)
}

/// Submits `spec` as `token`; the answer's job id, or its refusal.
async fn submit(
    jobs: &mut JobServiceClient<Channel>,
    spec: pb::JobSpec,
    token: Option<&str>,
) -> Result<String, tonic::Status> {
    let request = with_token(pb::SubmitJobRequest { spec: Some(spec) }, token);
    Ok(jobs
        .submit_job(request)
        .await?
        .into_inner()
        .status
        .unwrap()
        .job_id)
}

/// Waits until none of the coordinator's jobs is running.
async fn all_ended(addr: &str) -> Vec<Status> {
    until("every job ends", Duration::from_secs(300), || async {
        let jobs = list_jobs(addr).await?;
        jobs.iter().all(|j| j.state != "running").then_some(jobs)
    })
    .await
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

/// With `--keep-jobs 2 --keep-results 3s`, finished jobs beyond the newest two go at once and
/// the rest after three seconds: their statuses and results are gone from memory and from
/// the state directory (a restart does not bring them back), and asking for one says it
/// expired rather than that it never was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_expire_with_their_results_and_say_so() {
    let test = "retention";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_s = state.display().to_string();
    let flags = [
        "--state-dir",
        &state_s,
        "--keep-jobs",
        "2",
        "--keep-results",
        "3s",
    ];
    let (mut coordinator_proc, addr) = coordinator(test, "127.0.0.1:0", &flags).await;
    let _worker = worker(test, &addr, 1, "w1");
    let mut ids = Vec::new();
    for i in 0..4 {
        let input = dir.path().join(format!("in-{i}.txt"));
        std::fs::write(&input, format!("job{i} words words\n")).unwrap();
        let ran = submit_job(
            &addr,
            &["run", "--op", "wordcount", &input.display().to_string()],
        )
        .await;
        assert_ok(&ran);
        assert_eq!(
            parse_tsv(&ran.stdout),
            count_words(std::slice::from_ref(&input))
        );
        let listed = list_jobs(&addr).await.unwrap();
        ids.push(listed.last().unwrap().job_id.clone());
    }
    let kept = until(
        "only the newest two are kept",
        Duration::from_secs(10),
        || async {
            let jobs = list_jobs(&addr).await?;
            (jobs.len() == 2).then_some(jobs)
        },
    )
    .await;
    let kept: Vec<&str> = kept.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(kept, [ids[2].as_str(), ids[3].as_str()]);
    let old = submit_job(&addr, &["result", &ids[0]]).await;
    assert!(!old.status.success());
    let said = stderr(&old);
    assert!(
        said.contains("expired") && said.contains("newest 2"),
        "{said}"
    );
    until(
        "the rest expire after 3s",
        Duration::from_secs(15),
        || async { list_jobs(&addr).await.filter(|jobs| jobs.is_empty()) },
    )
    .await;
    let newest = submit_job(&addr, &["status", &ids[3]]).await;
    assert!(stderr(&newest).contains("expired"), "{}", stderr(&newest));

    // Gone from the state directory too: a coordinator started on it knows none of them.
    // Killed and reaped first: a second coordinator refuses a state directory still in use.
    coordinator_proc.child.start_kill().unwrap();
    coordinator_proc.child.wait().await.unwrap();
    let (_again, addr) = coordinator(test, "127.0.0.1:0", &flags).await;
    assert!(list_jobs(&addr).await.unwrap().is_empty());
    let unknown = submit_job(&addr, &["status", &ids[3]]).await;
    assert!(
        stderr(&unknown).contains("not found"),
        "{}",
        stderr(&unknown)
    );
}

/// A thousand finished jobs, each with a result of about 1 MiB (65,536 rows), stay on disk,
/// not in the coordinator's memory: its resident memory stays under the bound the README
/// states, and each result is still served whole, from its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_large_results_stay_on_disk_not_in_memory() {
    const JOBS: usize = 1000;
    const BOUND: u64 = 256 << 20;
    let test = "large_results";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("distinct.txt");
    let text: String = (0..65_536u32).map(|i| format!("word-{i:08x}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let state = dir.path().join("state");
    let (coordinator_proc, addr) = coordinator(
        test,
        "127.0.0.1:0",
        &["--state-dir", &state.display().to_string()],
    )
    .await;
    let _w1 = worker(test, &addr, 1, "w1");
    let _w2 = worker(test, &addr, 1, "w2");
    let mut jobs = jobs_client(&addr).await;
    let mut submitted = 0;
    while submitted < JOBS {
        match submit(&mut jobs, wordcount(&input), None).await {
            Ok(_) => submitted += 1,
            // Over the limit on jobs not yet ended: wait for some to end.
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    let ended = all_ended(&addr).await;
    assert_eq!(ended.len(), JOBS);
    assert!(ended.iter().all(|j| j.state == "succeeded"));
    let resident = rss(coordinator_proc.pid());
    eprintln!("coordinator RSS after {JOBS} jobs: {} MiB", resident >> 20);
    assert!(resident < BOUND, "coordinator RSS {} MiB", resident >> 20);
    // Each result is kept in a file of the state directory and served from there.
    let kept = walkdir(&state.join("parts"));
    assert_eq!(kept, JOBS, "one result file per job");
    let first = submit_job(&addr, &["result", &ended[0].job_id]).await;
    assert_ok(&first);
    assert_eq!(
        parse_tsv(&first.stdout),
        count_words(std::slice::from_ref(&input))
    );
}

/// Files under `dir`, recursively.
fn walkdir(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            n += walkdir(&entry.path());
        } else {
            n += 1;
        }
    }
    n
}

/// With `--max-active-jobs 3 --max-active-jobs-per-principal 2` and no worker yet, a
/// principal's third job and anyone's fourth are refused with RESOURCE_EXHAUSTED naming the
/// limit; once jobs end, submissions are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_over_the_limits_wait_for_jobs_to_end() {
    let test = "job_limits";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "limit words\n").unwrap();
    let (fleet, fleet_line) = new_token("fleet", "worker").await;
    let (alice, alice_line) = new_token("alice", "submit").await;
    let (bob, bob_line) = new_token("bob", "submit").await;
    let tokens = tokens_file(dir.path(), &[fleet_line, alice_line, bob_line]);
    let (_coordinator, addr) = coordinator(
        test,
        "127.0.0.1:0",
        &[
            "--auth-tokens",
            tokens.to_str().unwrap(),
            "--max-active-jobs",
            "3",
            "--max-active-jobs-per-principal",
            "2",
        ],
    )
    .await;
    let mut jobs = jobs_client(&addr).await;
    for _ in 0..2 {
        submit(&mut jobs, wordcount(&input), Some(&alice))
            .await
            .unwrap();
    }
    // A submission refused over a limit, its message naming `limit`.
    let exhausted = |answer: Result<String, tonic::Status>, limit: &str| {
        let refused = answer.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(refused.message().contains(limit), "{}", refused.message());
    };
    let third = submit(&mut jobs, wordcount(&input), Some(&alice)).await;
    exhausted(third, "principal 'alice'");
    submit(&mut jobs, wordcount(&input), Some(&bob))
        .await
        .unwrap();
    let fourth = submit(&mut jobs, wordcount(&input), Some(&bob)).await;
    exhausted(fourth, "--max-active-jobs");

    let _worker = worker_command(test, &addr, 1, "w1", &[])
        .env("FANFOLD_TOKEN", &fleet)
        .spawn()
        .map(|child| Proc { child })
        .unwrap();
    until("alice may submit again", Duration::from_secs(60), || {
        let mut jobs = jobs.clone();
        let spec = wordcount(&input);
        let alice = alice.clone();
        async move { submit(&mut jobs, spec, Some(&alice)).await.ok() }
    })
    .await;
}

/// Garbage on the gRPC port, hundreds of idle connections, a thousand submissions at once and
/// a client that leaves in the middle of a large result: the coordinator keeps serving, and
/// a normal job afterwards gets the right answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_stop_the_coordinator_or_starve_others() {
    let test = "hostile_clients";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hostile words words\n").unwrap();
    let large = dir.path().join("large.txt");
    let text: String = (0..200_000u32).map(|i| format!("w{i:07}\n")).collect();
    std::fs::write(&large, text).unwrap();
    let (mut coordinator_proc, addr) =
        coordinator(test, "127.0.0.1:0", &["--max-active-jobs", "100"]).await;
    let _worker = worker(test, &addr, 2, "w1");

    // Garbage, and a connection that sends half an HTTP/2 preface and stalls.
    let mut rng = Rng::new(7);
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let junk: Vec<u8> = (0..65_536).map(|_| rng.next() as u8).collect();
        let _ = stream.write_all(&junk).await;
    }
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = stream.write_all(b"PRI * HTTP/2.0\r\n").await;
        idle.push(stream);
    }

    // A large result, read one batch and dropped.
    let mut jobs = jobs_client(&addr).await;
    let big = submit(&mut jobs, wordcount(&large), None).await.unwrap();
    until("the large job ends", Duration::from_secs(120), || async {
        job_status(&addr, &big)
            .await
            .filter(|s| s.state != "running")
    })
    .await;
    let mut stream = jobs
        .get_result(pb::GetResultRequest {
            job_id: big.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);

    // A thousand submissions at once on one connection: the limit (100 not yet ended)
    // refuses the excess, and every accepted one ends.
    let burst: Vec<_> = (0..1000)
        .map(|_| {
            let mut jobs = jobs.clone();
            let spec = wordcount(&input);
            tokio::spawn(async move { submit(&mut jobs, spec, None).await })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for answer in burst {
        match answer.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(
        accepted >= 1 && refused >= 1,
        "accepted {accepted}, refused {refused}"
    );

    // Someone else is still served, correctly.
    let ran = submit_job(
        &addr,
        &["run", "--op", "wordcount", &input.display().to_string()],
    )
    .await;
    assert_ok(&ran);
    assert_eq!(
        parse_tsv(&ran.stdout),
        count_words(std::slice::from_ref(&input))
    );
    let ended = all_ended(&addr).await;
    assert!(ended.iter().all(|j| j.state == "succeeded"), "{ended:?}");
    let whole = submit_job(&addr, &["result", &big]).await;
    assert_ok(&whole);
    assert_eq!(
        parse_tsv(&whole.stdout),
        count_words(std::slice::from_ref(&large))
    );
    drop(idle);
    assert!(
        coordinator_proc.child.try_wait().unwrap().is_none(),
        "still running"
    );
}

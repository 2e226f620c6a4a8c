//! Who may do what, over what: tokens and roles on every RPC and on the HTTP port, and
//! inputs and outputs confined to their roots. Real binaries on loopback; tokens come from
//! `coordinator token new` (TLS is in `tests/tls.rs`).

mod support;

use std::path::Path;
use std::time::Duration;

use fanfold_proto::v1 as pb;
use fanfold_proto::v1::fleet_service_client::FleetServiceClient;
use fanfold_proto::v1::job_service_client::JobServiceClient;
use support::auth::{new_token, submit_as, tokens_file, with_token};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

fn wordcount(input: &Path) -> pb::JobSpec {
    pb::JobSpec {
        inputs: vec![input.display().to_string()],
        operation: "wordcount".into(),
        ..Default::default()
    }
}

/// Waits until job `id` is final, asking as `token`.
async fn wait_final(jobs: &mut JobServiceClient<Channel>, id: &str, token: &str) {
    until("the job ends", Duration::from_secs(60), || {
        let mut jobs = jobs.clone();
        let request = with_token(pb::GetJobRequest { job_id: id.into() }, Some(token));
        async move {
            let status = jobs.get_job(request).await.ok()?.into_inner();
            (status.state != pb::JobState::Running as i32).then_some(())
        }
    })
    .await
}

/// Every RPC of the job and fleet services, asked by no token, a wrong token and each role:
/// exactly what the role grants succeeds; the rest is UNAUTHENTICATED (no or a wrong token)
/// or PERMISSION_DENIED (a role that does not grant it), and no refusal names the job's data.
/// The HTTP port asks the same of pages and API routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_succeeds_exactly_as_the_callers_role_grants() {
    let test = "every_call_by_role";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let input = data.join("private-words.txt");
    std::fs::write(&input, "alpha beta alpha\ngamma alpha\n").unwrap();

    let (worker_token, worker_line) = new_token("fleet", "worker").await;
    let (alice, alice_line) = new_token("alice", "submit").await;
    let (bob, bob_line) = new_token("bob", "submit").await;
    let (dash, dash_line) = new_token("dash", "read").await;
    let (root, root_line) = new_token("root", "admin").await;
    let tokens = tokens_file(
        dir.path(),
        &[worker_line, alice_line, bob_line, dash_line, root_line],
    );
    let data_root = data.display().to_string();
    let (_coordinator, addr, http) = coordinator_with_http(
        test,
        "127.0.0.1:0",
        &[
            "--auth-tokens",
            tokens.to_str().unwrap(),
            "--data-root",
            &data_root,
        ],
    )
    .await;
    let _worker = worker_command(test, &addr, 1, "w1", &[])
        .env("FANFOLD_TOKEN", &worker_token)
        .spawn()
        .map(|child| Proc { child })
        .unwrap();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut jobs = JobServiceClient::new(channel.clone());
    let mut fleet = FleetServiceClient::new(channel);

    // Alice's job, which every principal then asks about.
    let submitted = jobs
        .submit_job(with_token(
            pb::SubmitJobRequest {
                spec: Some(wordcount(&input)),
            },
            Some(&alice),
        ))
        .await
        .unwrap()
        .into_inner();
    let job = submitted.status.unwrap().job_id;
    wait_final(&mut jobs, &job, &alice).await;

    let callers: [(&str, Option<&str>); 7] = [
        ("no token", None),
        (
            "a wrong token",
            Some("ff_0000000000000000000000000000000000000000000000000000000000000000"),
        ),
        ("worker", Some(&worker_token)),
        ("alice (owner)", Some(&alice)),
        ("bob (other submitter)", Some(&bob)),
        ("read", Some(&dash)),
        ("admin", Some(&root)),
    ];
    // What each may do: submit, get, list, watch, result, cancel, attach (alice's job).
    let grants: [[bool; 7]; 7] = [
        [false; 7],
        [false; 7],
        [false, false, false, false, false, false, true],
        [true, true, true, true, true, true, false],
        [true, false, true, false, false, false, false],
        [false, true, true, true, true, false, false],
        [true; 7],
    ];
    let secrets = [
        input.display().to_string(),
        alice.clone(),
        bob.clone(),
        root.clone(),
    ];
    for ((who, token), granted) in callers.iter().zip(grants) {
        let mut answers: Vec<(&str, Result<(), tonic::Status>)> = Vec::new();
        let submit = jobs
            .submit_job(with_token(
                pb::SubmitJobRequest {
                    spec: Some(wordcount(&input)),
                },
                *token,
            ))
            .await;
        if let Ok(response) = &submit {
            let id = response.get_ref().status.as_ref().unwrap().job_id.clone();
            wait_final(&mut jobs, &id, token.unwrap()).await;
        }
        answers.push(("SubmitJob", submit.map(drop)));
        let id = || pb::GetJobRequest {
            job_id: job.clone(),
        };
        answers.push((
            "GetJob",
            jobs.get_job(with_token(id(), *token)).await.map(drop),
        ));
        let listed = jobs
            .list_jobs(with_token(pb::ListJobsRequest {}, *token))
            .await;
        if let Ok(listed) = &listed {
            let sees = listed.get_ref().jobs.iter().any(|j| j.job_id == job);
            assert_eq!(sees, granted[1], "{who} sees alice's job in the list");
        }
        answers.push(("ListJobs", listed.map(drop)));
        let watch = pb::WatchJobRequest {
            job_id: job.clone(),
        };
        let watched = match jobs.watch_job(with_token(watch, *token)).await {
            Ok(stream) => stream.into_inner().message().await.map(drop),
            Err(e) => Err(e),
        };
        answers.push(("WatchJob", watched));
        let result = pb::GetResultRequest {
            job_id: job.clone(),
        };
        let fetched = match jobs.get_result(with_token(result, *token)).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut rows = 0;
                loop {
                    match stream.message().await {
                        Ok(Some(batch)) => rows += batch.rows.len(),
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                .map(|()| assert_eq!(rows, 3, "{who}: alpha, beta, gamma"))
            }
            Err(e) => Err(e),
        };
        answers.push(("GetResult", fetched));
        let cancel = pb::CancelJobRequest {
            job_id: job.clone(),
        };
        answers.push((
            "CancelJob",
            jobs.cancel_job(with_token(cancel, *token)).await.map(drop),
        ));
        let hello = pb::WorkerMessage {
            kind: Some(pb::worker_message::Kind::Hello(pb::Hello {
                name: "probe".into(),
                slots: 1,
                version: "test".into(),
                operations: vec!["wordcount".into()],
                shared_storage: false,
                protocol: fanfold_proto::PROTOCOL,
                shuffle_address: String::new(),
                local_roots: Vec::new(),
            })),
        };
        let attached = fleet
            .attach(with_token(tokio_stream::iter([hello]), *token))
            .await
            .map(drop);
        answers.push(("Attach", attached));

        for ((call, answer), allowed) in answers.into_iter().zip(granted) {
            match answer {
                Ok(()) => assert!(allowed, "{who}: {call} succeeded"),
                Err(status) => {
                    assert!(!allowed, "{who}: {call} refused: {status:?}");
                    let expected = if token.is_none() || who.starts_with("a wrong") {
                        Code::Unauthenticated
                    } else {
                        Code::PermissionDenied
                    };
                    assert_eq!(
                        status.code(),
                        expected,
                        "{who}: {call}: {}",
                        status.message()
                    );
                    for secret in &secrets {
                        assert!(
                            !status.message().contains(secret.as_str()),
                            "{who}: {call}: {status:?}"
                        );
                    }
                }
            }
        }
    }

    // The HTTP port: a token (Bearer, or Basic for browsers) for every page and API route,
    // and what each role grants; probes and the scrape stay open.
    let anonymous = web::get(&http, "/api/v1/jobs").await;
    assert_eq!(anonymous.code, 401, "{anonymous:?}");
    assert!(
        anonymous.headers["www-authenticate"].starts_with("Basic"),
        "{anonymous:?}"
    );
    assert_eq!(web::get(&http, "/").await.code, 401);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(web::get(&http, open).await.code, 200, "{open}");
    }
    let bearer = |token: &str| format!("Bearer {token}");
    let job_path = format!("/api/v1/jobs/{job}");
    let base = http.clone();
    let ask = move |path: String, token: String| {
        let base = base.clone();
        async move { web::request(&base, "GET", &path, &[("Authorization", &token)]).await }
    };
    assert_eq!(ask(job_path.clone(), bearer(&bob)).await.code, 403);
    assert_eq!(ask(job_path.clone(), bearer(&worker_token)).await.code, 403);
    let seen = ask(job_path.clone(), bearer(&dash)).await;
    assert_eq!(seen.code, 200, "{seen:?}");
    assert!(seen.body.contains("\"owner\":\"alice\""), "{}", seen.body);
    let bobs: Vec<serde_json::Value> =
        serde_json::from_str(&ask("/api/v1/jobs".into(), bearer(&bob)).await.body).unwrap();
    assert!(
        !bobs.is_empty() && bobs.iter().all(|j| j["owner"] == "bob"),
        "{bobs:?}"
    );
    let basic = std::process::Command::new("python3")
        .args([
            "-c",
            "import base64,sys; print(base64.b64encode(b'any:' + sys.argv[1].encode()).decode())",
        ])
        .arg(&alice)
        .output()
        .unwrap();
    let basic = format!("Basic {}", String::from_utf8(basic.stdout).unwrap().trim());
    let page = ask(format!("/jobs/{job}"), basic).await;
    assert_eq!(page.code, 200, "{page:?}");
    let cancel = web::request(
        &http,
        "POST",
        &format!("/api/v1/jobs/{job}/cancel"),
        &[("Authorization", &bearer(&dash))],
    )
    .await;
    assert_eq!(
        cancel.code, 403,
        "a read principal cannot cancel: {cancel:?}"
    );

    // The CLI reads FANFOLD_TOKEN; without one it is told how to give one.
    let words = submit_as(
        &addr,
        &alice,
        &["run", "--op", "wordcount", &input.display().to_string()],
    )
    .await;
    assert_ok(&words);
    assert_eq!(
        parse_tsv(&words.stdout),
        count_words(std::slice::from_ref(&input))
    );
    // With tokens and no --output-root, only an admin may write an output directory.
    let target = dir.path().join("out");
    let target = target.display().to_string();
    let input_s = input.display().to_string();
    let args = [
        "run",
        "--op",
        "wordcount",
        "--output-dir",
        &target,
        &input_s,
    ];
    let denied = submit_as(&addr, &alice, &args).await;
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("no --output-root"),
        "{}",
        stderr(&denied)
    );
    assert!(!dir.path().join("out").exists());
    assert_ok(&submit_as(&addr, &root, &args).await);
    assert!(dir.path().join("out/_SUCCESS").exists());
    let refused = submit_job(&addr, &["status", &job]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("FANFOLD_TOKEN"),
        "{}",
        stderr(&refused)
    );
}

/// With data and output roots, inputs and outputs outside them are refused naming the path
/// (`..`, absolute paths, symlinks out of a root as a file or a directory, /proc, devices,
/// FIFOs), a symlink swapped in after submission fails the job when its chunk is read, and a
/// job inside the roots runs as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_and_outputs_stay_inside_their_roots() {
    let test = "roots";
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    std::fs::create_dir_all(data.join("logs")).unwrap();
    std::fs::create_dir(&out).unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "secret words\n").unwrap();
    let inside = data.join("logs/app.log");
    std::fs::write(&inside, "one two two\nthree three three\n").unwrap();
    std::os::unix::fs::symlink(&secret, data.join("link-out.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), data.join("dir-out")).unwrap();
    let fifo = data.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );

    let (data_s, out_s) = (data.display().to_string(), out.display().to_string());
    let (_coordinator, addr) = coordinator(
        test,
        "127.0.0.1:0",
        &["--data-root", &data_s, "--output-root", &out_s],
    )
    .await;
    let path = |p: &Path| p.display().to_string();
    for refused in [
        path(&secret),
        format!("{data_s}/../secret.txt"),
        path(&data.join("link-out.txt")),
        path(&data.join("dir-out/secret.txt")),
        path(&data.join("dir-out")),
        "/proc/self/environ".to_owned(),
        "/dev/zero".to_owned(),
        path(&fifo),
        format!("{}/*.txt", dir.path().display()),
    ] {
        let answer = submit_job(&addr, &["run", "--op", "wordcount", &refused]).await;
        assert!(!answer.status.success(), "{refused} was read");
        let error = stderr(&answer);
        assert!(
            error.contains(&format!("input '{refused}'")),
            "{refused}: {error}"
        );
        assert!(!error.contains("secret words"), "{error}");
    }
    for output in [path(&dir.path().join("elsewhere")), format!("{out_s}/../x")] {
        let answer = submit_job(
            &addr,
            &[
                "run",
                "--op",
                "wordcount",
                "--output-dir",
                &output,
                &path(&inside),
            ],
        )
        .await;
        assert!(!answer.status.success(), "{output} was written");
        assert!(
            stderr(&answer).contains(&format!("output directory '{output}'")),
            "{}",
            stderr(&answer)
        );
    }
    assert!(!dir.path().join("elsewhere").exists());

    // Inside the roots, a job runs as usual; its answer is a plain count's.
    let _worker = worker(test, &addr, 1, "w1");
    let target = out.join("counts");
    let ran = submit_job(
        &addr,
        &[
            "run",
            "--op",
            "wordcount",
            "--output-dir",
            &path(&target),
            &path(&inside),
        ],
    )
    .await;
    assert_ok(&ran);
    assert_eq!(
        parse_tsv(&ran.stdout),
        count_words(std::slice::from_ref(&inside))
    );
    assert!(target.join("_SUCCESS").exists());

    // A file replaced by a symlink out of the root after submission: the coordinator opens
    // it beneath the root when it reads the chunk, and the job fails naming the file.
    let swapped = data.join("swapped.txt");
    std::fs::write(&swapped, "fine words\n").unwrap();
    let (_paused, paused_addr) =
        coordinator("roots_swap", "127.0.0.1:0", &["--data-root", &data_s]).await;
    let submitted = submit_job(
        &paused_addr,
        &["run", "--detach", "--op", "wordcount", &path(&swapped)],
    )
    .await;
    assert_ok(&submitted);
    let job = stdout(&submitted).trim().to_owned();
    std::fs::remove_file(&swapped).unwrap();
    std::os::unix::fs::symlink(&secret, &swapped).unwrap();
    let _late = worker("roots_swap", &paused_addr, 1, "late");
    let ended = until("the swapped job ends", Duration::from_secs(60), || {
        let (addr, job) = (paused_addr.clone(), job.clone());
        async move {
            job_status(&addr, &job)
                .await
                .filter(|s| s.state != "running")
        }
    })
    .await;
    assert_eq!(ended.state, "failed", "{ended:?}");
    let error = ended.error.unwrap_or_default();
    assert!(
        error.contains("swapped.txt") && error.contains("out of its root"),
        "{error}"
    );
    assert!(!error.contains("secret words"), "{error}");
}

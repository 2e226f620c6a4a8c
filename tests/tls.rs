//! TLS on the gRPC port: who trusts it gets through, who does not fails fast and clearly,
//! and mutual TLS keeps out workers without a certificate. Certificates come from `rcgen`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::auth::certificates;
use support::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// TLS on the gRPC port: a worker and a client that trust its CA work; a client with another
/// CA, or speaking plain text, fails at once with a clear error; with --tls-client-ca a
/// worker must present a certificate that CA signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_those_who_trust_it_and_mutual_tls_refuses_workers_without_a_certificate() {
    let test = "tls";
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(&["localhost", "127.0.0.1"]);
    let (other_ca, _, _) = certificates(&["localhost"]);
    let (client_ca, client_cert, client_key) = certificates(&["worker"]);
    let ca = write(dir.path(), "ca.pem", &ca);
    let other_ca = write(dir.path(), "other-ca.pem", &other_ca);
    let cert = write(dir.path(), "cert.pem", &cert);
    let key = write(dir.path(), "key.pem", &key);
    let client_ca = write(dir.path(), "client-ca.pem", &client_ca);
    let client_cert = write(dir.path(), "client-cert.pem", &client_cert);
    let client_key = write(dir.path(), "client-key.pem", &client_key);
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "tls words words\n").unwrap();
    let input_s = input.display().to_string();

    let (_coordinator, addr) = coordinator(
        test,
        "127.0.0.1:0",
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca,
        ],
    )
    .await;
    let url = format!("https://{addr}");
    // A worker without a client certificate is refused; one with it works.
    let _bare = worker_with(test, &url, 1, "bare", &["--tls-ca", &ca]);
    let _worker = worker_with(
        test,
        &url,
        1,
        "w1",
        &[
            "--tls-ca",
            &ca,
            "--tls-cert",
            &client_cert,
            "--tls-key",
            &client_key,
        ],
    );
    let ran = submit_job(
        &url,
        &["--tls-ca", &ca, "run", "--op", "wordcount", &input_s],
    )
    .await;
    assert_ok(&ran);
    assert_eq!(
        parse_tsv(&ran.stdout),
        count_words(std::slice::from_ref(&input))
    );
    until(
        "the bare worker is refused",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(log_dir(test).join("bare.log")).unwrap_or_default();
            log.contains("client certificate").then_some(())
        },
    )
    .await;
    let listed = submit_job(&url, &["--tls-ca", &ca, "list", "--json"]).await;
    assert_ok(&listed);

    let started = std::time::Instant::now();
    let wrong = submit_job(&url, &["--tls-ca", &other_ca, "list"]).await;
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("cannot reach the coordinator"),
        "{}",
        stderr(&wrong)
    );
    let plain = submit_job(&format!("http://{addr}"), &["list"]).await;
    assert!(!plain.status.success());
    let with_ca_plain = submit_job(&format!("http://{addr}"), &["--tls-ca", &ca, "list"]).await;
    assert!(
        stderr(&with_ca_plain).contains("plain http://"),
        "{}",
        stderr(&with_ca_plain)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refusals do not hang"
    );
}

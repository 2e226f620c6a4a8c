//! Credentials for cross-process tests: fresh tokens from `coordinator token new`, a private
//! tokens file, requests and `submit-job` runs that present a token, and TLS certificates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use super::{COMMAND_TIMEOUT, COORDINATOR, SUBMIT_JOB, assert_ok, stdout};

/// `coordinator token new NAME ROLE`: the token and its line for the tokens file.
pub async fn new_token(name: &str, role: &str) -> (String, String) {
    let out = tokio::process::Command::new(COORDINATOR)
        .args(["token", "new", name, role])
        .output()
        .await
        .unwrap();
    assert_ok(&out);
    let text = stdout(&out);
    let mut lines = text.lines();
    let token = lines.next().unwrap().to_owned();
    let line = lines.next().unwrap().to_owned();
    assert!(
        line.starts_with(&format!("{name} {role} sha256:")),
        "{line}"
    );
    (token, line)
}

/// Writes a private tokens file of `lines`.
pub fn tokens_file(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A request carrying `token` as a bearer token (none: no `authorization`).
pub fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// Runs `submit-job` with `FANFOLD_TOKEN` set to `token`.
pub async fn submit_as(coordinator: &str, token: &str, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(SUBMIT_JOB)
        .args(["--coordinator", coordinator])
        .args(args)
        .env("FANFOLD_TOKEN", token)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .expect("submit-job finished")
        .unwrap()
}

/// A CA, and a certificate it signed for `names`, as PEM: (ca, cert, key).
pub fn certificates(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

//! `submit-job probe URL`: one HTTP GET, exit 0 on a 2xx answer. The container image has no
//! shell and no curl; compose's health check probes the coordinator's `/readyz` with this.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the whole request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `http://host:port/path` split into the address to dial and the path to ask for.
fn split(url: &str) -> anyhow::Result<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{url}: only http:// URLs can be probed"))?;
    Ok(match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    })
}

/// GETs `url`; the status line's code.
async fn get(url: &str) -> anyhow::Result<u16> {
    let (host, path) = split(url)?;
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("cannot connect to {host}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    // The status line is all that is needed; read until it is complete.
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("{url}: not an HTTP answer"))?;
    Ok(code)
}

pub async fn probe(url: &str) -> anyhow::Result<ExitCode> {
    let code = tokio::time::timeout(PROBE_TIMEOUT, get(url))
        .await
        .map_err(|_| anyhow!("{url}: no answer within {PROBE_TIMEOUT:?}"))??;
    if !(200..300).contains(&code) {
        bail!("{url} answered {code}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split("http://127.0.0.1:8080/readyz").unwrap(),
            ("127.0.0.1:8080", "/readyz")
        );
        assert_eq!(split("http://h:1").unwrap(), ("h:1", "/"));
        assert!(split("https://h:1/x").is_err());
    }
}

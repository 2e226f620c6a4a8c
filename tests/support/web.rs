//! Talking to a coordinator's HTTP port as its users do: plain HTTP/1.1 requests over a real
//! socket, Prometheus text parsed by Python's `prometheus_client` (tests/support/metrics.py),
//! and pages loaded by headless Chromium (tests/support/browser.py).

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP answer: status code, headers (lowercase names) and body.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// Sends `method path` to `base` (`http://host:port`) with extra headers; one request per
/// connection (`Connection: close`), so the body is whatever comes before the close.
pub async fn request(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(host),
    )
    .await
    .expect("connect in time")
    .unwrap_or_else(|e| panic!("connect to {host}: {e}"));
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert_ne!(
        headers.get("transfer-encoding").map(String::as_str),
        Some("chunked"),
        "a full body was expected"
    );
    Answer {
        code,
        headers,
        body: body.to_owned(),
    }
}

pub async fn get(base: &str, path: &str) -> Answer {
    request(base, "GET", path, &[]).await
}

/// GET of a JSON route that must answer 200, parsed.
pub async fn get_json<T: serde::de::DeserializeOwned>(base: &str, path: &str) -> T {
    let answer = get(base, path).await;
    assert_eq!(answer.code, 200, "GET {path}: {}", answer.body);
    serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", answer.body))
}

/// Runs a Python helper of tests/support with `args`, feeding it `input`; its stdout.
fn python(script: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/");
    let mut child = std::process::Command::new("python3")
        .arg(format!("{path}{script}"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `/metrics` text parsed by `prometheus_client`'s OpenMetrics parser: every sample by
/// `name{label=value,...}`.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    serde_json::from_str(&python("metrics.py", &[], text)).expect("metrics.py prints JSON")
}

/// Whether the browser tests can run here: Chromium and the Python DevTools client. CI sets
/// `FANFOLD_REQUIRE_BROWSER=1` (and installs both), so there they must.
pub fn browser_available() -> bool {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let client = std::process::Command::new("python3")
        .args(["-c", "import websocket"])
        .output()
        .is_ok_and(|o| o.status.success());
    let available = chromium && client;
    if !available {
        assert!(
            std::env::var_os("FANFOLD_REQUIRE_BROWSER").is_none(),
            "FANFOLD_REQUIRE_BROWSER is set but chromium or python's websocket-client is missing"
        );
        eprintln!("no chromium or websocket-client here: the browser part is not run");
    }
    available
}

/// What the browser saw: the DOM once the page loaded and `seconds` later.
#[derive(Debug, serde::Deserialize)]
pub struct Seen {
    pub first: String,
    pub last: String,
}

/// Loads `url` in headless Chromium, returning its DOM at load and `seconds` later, and saving
/// a screenshot to `screenshot` if given.
pub async fn browse(url: &str, seconds: f64, screenshot: Option<&std::path::Path>) -> Seen {
    let url = url.to_owned();
    let shot = screenshot.map(|p| p.to_string_lossy().into_owned());
    let out = tokio::task::spawn_blocking(move || {
        let mut args = vec![url, seconds.to_string()];
        args.extend(shot);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python("browser.py", &args, "")
    })
    .await
    .unwrap();
    serde_json::from_str(&out).expect("browser.py prints JSON")
}

/// The number in `<... id="ID">N<` of a page, e.g. `chunks-done`.
pub fn number_in(html: &str, id: &str) -> Option<u64> {
    let marker = format!("id=\"{id}\">");
    let at = html.find(&marker)? + marker.len();
    html[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// The value of `attr="..."` on the element with `id`.
pub fn attribute(html: &str, id: &str, attr: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!("{attr}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..].split('"').next()?.to_owned())
}

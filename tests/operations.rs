//! Cross-process tests of the built-in operations: real coordinator and worker processes, the
//! real `submit-job`, every result compared with an independent sequential computation in
//! Python (`tests/support/oracle.py`), counters included.
//!
//! Over 500 lines: a test per operation and input format, all on the one shared cluster.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use support::*;

/// A coordinator and its workers, killed when dropped.
struct Cluster {
    _procs: Vec<Proc>,
    addr: String,
}

async fn cluster(test: &str, workers: u32, slots: u32) -> Cluster {
    cluster_with(test, workers, slots, &[]).await
}

/// A cluster whose workers start with `extra` flags.
async fn cluster_with(test: &str, workers: u32, slots: u32, extra: &[&str]) -> Cluster {
    let (coordinator, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let mut procs = vec![coordinator];
    procs.extend(
        (0..workers).map(|i| worker_with(test, &addr, slots, &format!("worker-{i}"), extra)),
    );
    Cluster {
        _procs: procs,
        addr,
    }
}

/// What the oracle computed.
#[derive(Debug)]
struct Expected {
    rows: BTreeMap<String, Json>,
    records: u64,
    bad: u64,
}

fn oracle(op: &str, options: &[(&str, &str)], files: &[PathBuf]) -> Expected {
    let options: serde_json::Map<String, Json> = options
        .iter()
        .map(|(k, v)| (k.to_string(), Json::from(*v)))
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oracle.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(op)
        .arg(Json::Object(options).to_string())
        .args(files)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Json = serde_json::from_slice(&out.stdout).unwrap();
    Expected {
        rows: parsed["rows"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        records: parsed["records"].as_u64().unwrap(),
        bad: parsed["bad"].as_u64().unwrap(),
    }
}

/// Bytes as a string one char per byte (latin-1), as the oracle writes keys.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// A finished run: its result rows (TSV or JSONL as asked) and its status.
struct Ran {
    stdout: Vec<u8>,
    status: Status,
}

impl Ran {
    /// `key<TAB>value` rows, both latin-1, split at the first tab.
    fn tsv(&self) -> Vec<(String, String)> {
        self.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| {
                let tab = line.iter().position(|&b| b == b'\t').expect("a tab");
                (latin1(&line[..tab]), latin1(&line[tab + 1..]))
            })
            .collect()
    }

    fn jsonl(&self) -> Vec<(String, Json)> {
        String::from_utf8(self.stdout.clone())
            .unwrap()
            .lines()
            .map(|line| {
                let row: Json = serde_json::from_str(line).unwrap();
                (
                    row["key"].as_str().unwrap().to_owned(),
                    row["value"].clone(),
                )
            })
            .collect()
    }
}

/// Runs `submit-job run` with `args`, asserts success, and fetches the job's status.
async fn run(addr: &str, args: &[&str]) -> Ran {
    let mut all = vec!["run", "--quiet"];
    all.extend_from_slice(args);
    let out = submit_job(addr, &all).await;
    assert_ok(&out);
    let job = submitted_job_id(&out);
    let status = submit_job(addr, &["status", &job, "--json"]).await;
    assert_ok(&status);
    Ran {
        stdout: out.stdout,
        status: parse_json(&status),
    }
}

/// `--op NAME --option k=v ...` arguments.
fn op_args(op: &str, options: &[(&str, &str)]) -> Vec<String> {
    let mut args = vec!["--op".to_string(), op.to_string()];
    for (k, v) in options {
        args.push("--option".into());
        args.push(format!("{k}={v}"));
    }
    args
}

/// Runs an operation over `inputs` and checks rows and counters against the oracle. `json`
/// picks JSON Lines output (for UTF-8 keys and structured values) over TSV (raw bytes).
async fn check(
    addr: &str,
    op: &str,
    options: &[(&str, &str)],
    inputs: &[PathBuf],
    files: &[PathBuf],
    extra: &[&str],
    json: bool,
) -> Status {
    let expected = oracle(op, options, files);
    assert!(
        !expected.rows.is_empty(),
        "{op} {options:?}: the fixture must give rows"
    );
    let mut args: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    args.extend(op_args(op, options));
    args.extend(extra.iter().map(|s| s.to_string()));
    if json {
        args.extend(["--format".into(), "jsonl".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run(addr, &args).await;
    let got: BTreeMap<String, Json> = if json {
        // The oracle spells keys as latin-1 of their bytes.
        ran.jsonl()
            .into_iter()
            .map(|(k, v)| (latin1(k.as_bytes()), v))
            .collect()
    } else {
        ran.tsv()
            .into_iter()
            .map(|(k, v)| (k, tsv_value(&v, &expected.rows)))
            .collect()
    };
    let what = format!("{op} {options:?}");
    assert_eq!(got.len(), expected.rows.len(), "{what}: number of rows");
    for (key, want) in &expected.rows {
        let have = got
            .get(key)
            .unwrap_or_else(|| panic!("{what}: key {key:?} missing"));
        assert!(
            same(have, want, options),
            "{what}: key {key:?}: got {have}, want {want}"
        );
    }
    assert_eq!(
        ran.status.counters.records_in, expected.records,
        "{what}: records_in"
    );
    assert_eq!(
        ran.status.counters.bad_records, expected.bad,
        "{what}: bad_records"
    );
    assert_eq!(
        ran.status.counters.keys_out,
        expected.rows.len() as u64,
        "{what}: keys_out"
    );
    // A partitioned job ran its reduce tasks on the workers.
    let reducers = extra
        .iter()
        .position(|a| *a == "--reducers")
        .map(|i| extra[i + 1].parse::<u64>().unwrap());
    if let Some(r) = reducers {
        let s = &ran.status;
        assert_eq!(
            (s.reduces_total, s.reduces_done),
            (r, r),
            "{what}: reduce tasks"
        );
        assert_eq!(s.partition_bytes.len() as u64, r, "{what}: partitions");
        assert_eq!(
            s.partition_bytes.iter().sum::<u64>(),
            s.counters.shuffle_bytes,
            "{what}: shuffle bytes"
        );
    } else {
        assert_eq!(ran.status.reduces_total, 0, "{what}: not partitioned");
    }
    ran.status
}

/// Reads a TSV value in the shape the oracle uses: a number, a list, or text.
fn tsv_value(text: &str, sample: &BTreeMap<String, Json>) -> Json {
    match sample.values().next() {
        Some(Json::Number(_)) => Json::from(
            text.parse::<f64>()
                .unwrap_or_else(|e| panic!("{text:?}: {e}")),
        ),
        Some(Json::Array(_)) => text.split(',').map(Json::from).collect(),
        _ => Json::from(text),
    }
}

/// Equal, numbers compared as f64; approximate distinct counts within their stated error.
fn same(have: &Json, want: &Json, options: &[(&str, &str)]) -> bool {
    match (have.as_f64(), want.as_f64()) {
        (Some(h), Some(w)) if options.contains(&("agg", "approx_distinct")) => {
            (h - w).abs() <= (w * 0.05).max(1.0)
        }
        (Some(h), Some(w)) => h == w,
        _ => have == want,
    }
}

// ------------------------------------------------------------------------------ fixtures --

/// Text files: Unicode words, punctuation, tabs, CRLF, invalid UTF-8 lines, NUL lines, an
/// empty file, a file that is one huge line; and gzip and zstd copies of one of them.
fn text_fixtures(dir: &Path) -> Vec<PathBuf> {
    let mut rng = Rng::new(7);
    let words = [
        "alpha", "Beta", "GAMMA", "élan", "Élan", "Straße", "naïve", "Zürich", "42", "x7", "año",
        "Ωmega", "delta", "alpha", "alpha", "beta",
    ];
    let separators = [" ", " ", ", ", "; ", "! ", "\t", " (", ") ", "? "];
    let mut files = Vec::new();
    for f in 0..4 {
        let mut data = Vec::new();
        for line in 0..(300 + f * 150) {
            if line % 97 == 13 {
                data.extend_from_slice(b"bad \xff\xfe bytes alpha");
            } else if line % 89 == 5 {
                data.extend_from_slice(b"nul\0inside alpha");
            } else {
                for w in 0..(1 + rng.below(12)) {
                    if w > 0 {
                        data.extend_from_slice(separators[rng.below(9) as usize].as_bytes());
                    }
                    data.extend_from_slice(words[rng.below(16) as usize].as_bytes());
                }
            }
            data.extend_from_slice(if rng.below(3) == 0 { b"\r\n" } else { b"\n" });
        }
        let path = dir.join(format!("text-{f}.txt"));
        std::fs::write(&path, &data).unwrap();
        files.push(path);
    }
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    files.push(empty);
    let huge = dir.join("one-line.txt");
    let line: Vec<u8> = (0..60_000)
        .flat_map(|i| format!("{} ", words[i % 16]).into_bytes())
        .collect();
    std::fs::write(&huge, line).unwrap();
    files.push(huge);
    for (ext, command) in [("gz", "gzip"), ("zst", "zstd")] {
        let copy = dir.join(format!("text-copy.txt.{ext}"));
        let out = std::process::Command::new(command)
            .args(["-c", files[1].to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(&copy, out.stdout).unwrap();
        files.push(copy);
    }
    files
}

/// CSV files (plain, gzip, zstd): quoted fields with delimiters, quotes and newlines, CRLF,
/// numbers that do not parse, rows of the wrong length, a NUL byte.
fn csv_fixtures(dir: &Path) -> Vec<PathBuf> {
    let mut rng = Rng::new(11);
    let regions = ["north", "south", "east", "west", "Zürich"];
    let products = ["apple", "pear", "fig", "kiwi", "plum", "lime"];
    let mut files = Vec::new();
    for f in 0..3 {
        let mut data = String::from("region,product,amount,note\n");
        for i in 0..(400 + f * 100) {
            let region = regions[rng.below(5) as usize];
            let product = products[rng.below(6) as usize];
            let amount = match rng.below(40) {
                0 => "n/a".to_string(),
                1 => String::new(),
                _ => format!("{}.{:02}", rng.below(1000), rng.below(100)),
            };
            let note = match rng.below(6) {
                0 => "\"has, comma\"".to_string(),
                1 => "\"two\nlines\"".to_string(),
                2 => "\"say \"\"hi\"\"\"".to_string(),
                _ => format!("n{i}"),
            };
            if i % 111 == 50 {
                data.push_str("short,row\n");
            } else if i % 157 == 30 {
                data.push_str(&format!("{region},nul\0,1,x\n"));
            } else {
                data.push_str(&format!("{region},{product},{amount},{note}"));
                data.push_str(if rng.below(4) == 0 { "\r\n" } else { "\n" });
            }
        }
        let path = dir.join(format!("sales-{f}.csv"));
        std::fs::write(&path, &data).unwrap();
        files.push(path);
    }
    let mut out = Vec::new();
    for (path, (ext, command)) in files
        .iter()
        .zip([("", ""), ("gz", "gzip"), ("zst", "zstd")])
    {
        if command.is_empty() {
            out.push(path.clone());
            continue;
        }
        let compressed = std::process::Command::new(command)
            .args(["-c", path.to_str().unwrap()])
            .output()
            .unwrap();
        let target = PathBuf::from(format!("{}.{ext}", path.display()));
        std::fs::write(&target, compressed.stdout).unwrap();
        std::fs::remove_file(path).unwrap();
        out.push(target);
    }
    out
}

/// JSON Lines: nested objects, arrays, numbers as numbers and as strings, missing fields,
/// nulls, lines that are not JSON, blank lines, invalid UTF-8.
fn jsonl_fixtures(dir: &Path, seed: u64) -> Vec<PathBuf> {
    let mut rng = Rng::new(seed);
    let countries = ["no", "pe", "it", "ch", "jp"];
    let mut files = Vec::new();
    for f in 0..3 {
        let mut data = Vec::new();
        for i in 0..(300 + f * 200) {
            let line = match rng.below(50) {
                0 => "not json at all".to_string(),
                1 => String::new(),
                2 => "{\"user\":{\"id\":3}}".to_string(),
                3 => "{\"user\":null,\"amount\":1}".to_string(),
                4 => "{\"user\":{\"id\":1,\"country\":\"no\"},\"amount\":\"12.5\"}".to_string(),
                5 => "{\"user\":{\"id\":2,\"country\":\"pe\"},\"amount\":\"lots\"}".to_string(),
                6 => "[1,2,3]".to_string(),
                _ => format!(
                    "{{\"user\":{{\"id\":{},\"country\":\"{}\"}},\"amount\":{},\"tags\":[\"t{}\",\"u{}\"],\"seq\":{i}}}",
                    rng.below(40),
                    countries[rng.below(5) as usize],
                    (rng.below(20_000) as f64 - 2_000.0) / 8.0,
                    rng.below(7),
                    rng.below(300),
                ),
            };
            data.extend_from_slice(line.as_bytes());
            if i % 173 == 7 {
                data.extend_from_slice(b"{\"user\":{\"id\":\"\xff\"}}");
            }
            data.push(b'\n');
        }
        let path = dir.join(format!("events-{f}.jsonl"));
        std::fs::write(&path, &data).unwrap();
        files.push(path);
    }
    files
}

// ---------------------------------------------------------------------------------- tests --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_operations_match_python() {
    let dir = tempfile::tempdir().unwrap();
    let files = text_fixtures(dir.path());
    let c = cluster("ops_text", 2, 2).await;
    let root = vec![dir.path().to_path_buf()];
    let small = ["--chunk-size", "1KiB"];
    check(&c.addr, "wordcount", &[], &root, &files, &small, false).await;
    let unicode = [("tokenizer", "unicode")];
    check(&c.addr, "wordcount", &unicode, &root, &files, &small, false).await;
    check(&c.addr, "index", &[], &root, &files, &small, false).await;
    check(&c.addr, "index", &unicode, &root, &files, &small, false).await;
    let count = [("pattern", "alpha.*(GAMMA|Zürich)")];
    check(&c.addr, "grep", &count, &root, &files, &small, false).await;
    let lines = [
        ("pattern", "^(beta|gamma)\\b"),
        ("output", "lines"),
        ("ignore_case", "true"),
    ];
    check(&c.addr, "grep", &lines, &root, &files, &small, false).await;
    let invert = [("pattern", "a"), ("invert", "true"), ("output", "lines")];
    check(&c.addr, "grep", &invert, &root, &files, &small, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_lines_match_python() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    for i in 0..3000u32 {
        match i % 101 {
            7 => data.extend_from_slice(b"bin\0ary"),
            9 => data.extend_from_slice(b"caf\xe9 latin-1"),
            _ => data.extend_from_slice(format!("value {}", (i * 7919) % 263).as_bytes()),
        }
        data.extend_from_slice(if i % 5 == 0 { b"\r\n" } else { b"\n" });
    }
    let path = dir.path().join("values.log");
    std::fs::write(&path, data).unwrap();
    let c = cluster("ops_distinct", 2, 1).await;
    let files = vec![path];
    check(
        &c.addr,
        "distinct",
        &[],
        &files,
        &files,
        &["--chunk-size", "1KiB"],
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_jsonl_operations_match_python() {
    let dir = tempfile::tempdir().unwrap();
    let csv = csv_fixtures(&dir.path().join("csv").tap_mkdir());
    let jsonl = jsonl_fixtures(&dir.path().join("jsonl").tap_mkdir(), 5);
    let csv_root = vec![dir.path().join("csv")];
    let jsonl_root = vec![dir.path().join("jsonl")];
    let c = cluster("ops_fields", 2, 2).await;
    let small = ["--chunk-size", "1KiB"];
    for agg in [
        "count",
        "sum",
        "min",
        "max",
        "mean",
        "distinct",
        "approx_distinct",
        "topk",
    ] {
        let mut options = vec![("key", "region"), ("agg", agg)];
        if agg != "count" {
            options.push((
                "value",
                if agg.ends_with("distinct") || agg == "topk" {
                    "product"
                } else {
                    "amount"
                },
            ));
        }
        if agg == "topk" {
            options.push(("k", "3"));
        }
        let status = check(&c.addr, "groupby", &options, &csv_root, &csv, &small, true).await;
        // The plain CSV is cut outside its quoted newlines; the compressed two are one
        // chunk each.
        let plain = std::fs::metadata(&csv[0]).unwrap().len();
        assert!(
            status.chunks_total >= 2 + plain / 1024,
            "{agg}: {} chunks",
            status.chunks_total
        );
    }
    // Cut smaller, more cuts fall inside quoted fields holding newlines.
    for size in ["1025", "1337", "2000"] {
        let options = [("key", "region"), ("agg", "sum"), ("value", "amount")];
        let cut = ["--chunk-size", size];
        check(&c.addr, "groupby", &options, &csv_root, &csv, &cut, true).await;
    }
    for agg in ["sum", "mean", "max", "distinct", "topk"] {
        let value = if agg == "distinct" || agg == "topk" {
            "tags.0"
        } else {
            "amount"
        };
        let options = [("key", "user.country"), ("agg", agg), ("value", value)];
        check(
            &c.addr,
            "groupby",
            &options,
            &jsonl_root,
            &jsonl,
            &small,
            true,
        )
        .await;
    }
    let options = [("key", "user.id"), ("agg", "count")];
    check(
        &c.addr,
        "groupby",
        &options,
        &jsonl_root,
        &jsonl,
        &small,
        true,
    )
    .await;
    check(
        &c.addr,
        "distinct",
        &[("field", "product")],
        &csv_root,
        &csv,
        &small,
        true,
    )
    .await;
    check(
        &c.addr,
        "distinct",
        &[("field", "user.country")],
        &jsonl_root,
        &jsonl,
        &small,
        true,
    )
    .await;
    let histogram = [("field", "amount"), ("edges", "-100,0,10.5,500,1000")];
    check(
        &c.addr,
        "histogram",
        &histogram,
        &jsonl_root,
        &jsonl,
        &small,
        true,
    )
    .await;
    check(
        &c.addr,
        "histogram",
        &histogram,
        &csv_root,
        &csv,
        &small,
        true,
    )
    .await;
}

/// Every built-in operation, reduced on the workers in 1, 3 and 7 partitions, gives the
/// oracle's answer: the same as the unpartitioned runs of the tests above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_operations_match_python() {
    let dir = tempfile::tempdir().unwrap();
    let text = text_fixtures(&dir.path().join("text").tap_mkdir());
    let csv = csv_fixtures(&dir.path().join("csv").tap_mkdir());
    let jsonl = jsonl_fixtures(&dir.path().join("jsonl").tap_mkdir(), 11);
    let roots = |name: &str| vec![dir.path().join(name)];
    // Workers with the least memory a reduce task may have (64 KiB): a partition larger
    // than that is spilled as sorted runs and merged from disk.
    let c = cluster_with("ops_partitioned", 3, 2, &["--memory", "64KiB"]).await;
    let lines = [("pattern", "^(beta|gamma)\\b"), ("output", "lines")];
    let count = [("pattern", "alpha.*(GAMMA|Zürich)")];
    let mean = [("key", "user.id"), ("agg", "mean"), ("value", "amount")];
    let distinct = [("key", "region"), ("agg", "distinct"), ("value", "product")];
    let topk = [
        ("key", "region"),
        ("agg", "topk"),
        ("value", "product"),
        ("k", "3"),
    ];
    let histogram = [("field", "amount"), ("edges", "-100,0,10.5,500,1000")];
    for reducers in ["1", "3", "7"] {
        let extra = ["--chunk-size", "1KiB", "--reducers", reducers];
        let t = (&roots("text"), &text);
        check(&c.addr, "wordcount", &[], t.0, t.1, &extra, false).await;
        check(&c.addr, "index", &[], t.0, t.1, &extra, false).await;
        check(&c.addr, "grep", &count, t.0, t.1, &extra, false).await;
        check(&c.addr, "grep", &lines, t.0, t.1, &extra, false).await;
        let j = (&roots("jsonl"), &jsonl);
        check(&c.addr, "groupby", &mean, j.0, j.1, &extra, true).await;
        check(&c.addr, "histogram", &histogram, j.0, j.1, &extra, true).await;
        let country = [("field", "user.country")];
        check(&c.addr, "distinct", &country, j.0, j.1, &extra, true).await;
        let v = (&roots("csv"), &csv);
        check(&c.addr, "groupby", &distinct, v.0, v.1, &extra, true).await;
        check(&c.addr, "groupby", &topk, v.0, v.1, &extra, true).await;
        check(
            &c.addr,
            "distinct",
            &[("field", "product")],
            v.0,
            v.1,
            &extra,
            true,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_do_not_depend_on_chunk_size_workers_or_slots() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = jsonl_fixtures(dir.path(), 9);
    let root = vec![dir.path().to_path_buf()];
    let mean = [("key", "user.id"), ("agg", "mean"), ("value", "amount")];
    let lines = [("pattern", "\"t[0-2]\""), ("output", "lines")];
    let edges = [("field", "amount"), ("edges", "0,100,200,300")];
    // The extremes, then random draws (FANFOLD_TEST_SEED repeats a run; the seed is printed).
    let seed = std::env::var("FANFOLD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("chunking sweep: FANFOLD_TEST_SEED={seed}");
    let mut rng = Rng::new(seed);
    let mut configs = vec![(1024, 1, 1), (1024, 3, 2), (16 << 20, 1, 3)];
    for _ in 0..3 {
        configs.push((
            1024 + rng.below(40 * 1024),
            1 + rng.below(3),
            1 + rng.below(3),
        ));
    }
    for (i, (chunk_size, workers, slots)) in configs.into_iter().enumerate() {
        let c = cluster(&format!("ops_sweep_{i}"), workers as u32, slots as u32).await;
        let size = chunk_size.to_string();
        let plain = ["--chunk-size", &size];
        // Every other run reduces on the workers, in 1 to 7 partitions.
        let reducers = (1 + rng.below(7)).to_string();
        let partitioned = ["--chunk-size", &size, "--reducers", &reducers];
        let extra: &[&str] = if i % 2 == 1 { &partitioned } else { &plain };
        let what = format!(
            "seed {seed}: chunk size {chunk_size}, {workers} workers x {slots} slots, {extra:?}"
        );
        eprintln!("{what}");
        check(&c.addr, "groupby", &mean, &root, &jsonl, extra, true).await;
        check(&c.addr, "grep", &lines, &root, &jsonl, extra, false).await;
        check(&c.addr, "histogram", &edges, &root, &jsonl, extra, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_files_compression_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let files = text_fixtures(dir.path());
    let c = cluster("ops_bad_input", 2, 1).await;
    let root = dir.path().display().to_string();

    // Whole-file mode: one chunk per non-empty file, same result as split chunks.
    let ran = run(&c.addr, &[&root, "--whole-file", "--chunk-size", "1KiB"]).await;
    let non_empty = files
        .iter()
        .filter(|f| std::fs::metadata(f).unwrap().len() > 0)
        .count();
    assert_eq!(
        done_and_running(&ran.status),
        (non_empty as u64, non_empty as u64, 0)
    );
    let expected = oracle("wordcount", &[], &files);
    assert_eq!(ran.tsv().len(), expected.rows.len());
    assert_eq!(ran.status.counters.records_in, expected.records);

    // Compressed files are one chunk each even when chunks are small.
    let gz = dir.path().join("text-copy.txt.gz").display().to_string();
    let ran = run(&c.addr, &[&gz, "--chunk-size", "1KiB"]).await;
    assert_eq!(done_and_running(&ran.status), (1, 1, 0));

    // A file that claims to be gzip but is not: the job fails naming the file.
    let broken = dir.path().join("broken.log.gz");
    std::fs::write(&broken, b"this is not gzip\n").unwrap();
    let out = submit_job(&c.addr, &["run", broken.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}: not valid gzip", broken.display())),
        "{err}"
    );

    // Grouping plain text: no fields, a clear error naming the file.
    let text = files[0].display().to_string();
    let out = submit_job(
        &c.addr,
        &["run", &text, "--op", "groupby", "--option", "key=a"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is text, which has no fields"),
        "{}",
        stderr(&out)
    );

    // Bad options are refused at submission.
    for (args, needle) in [
        (vec!["--op", "grep"], "option 'pattern' is required"),
        (vec!["--op", "grep", "--option", "pattern=("], "bad pattern"),
        (
            vec![
                "--op",
                "groupby",
                "--option",
                "key=a",
                "--option",
                "agg=median",
            ],
            "agg 'median' is not one of",
        ),
        (
            vec!["--op", "histogram", "--option", "edges=3,1"],
            "strictly increasing",
        ),
        (
            vec!["--op", "wordcount", "--option", "colour=blue"],
            "unknown option 'colour' (known: tokenizer)",
        ),
    ] {
        let mut all = vec!["run", text.as_str()];
        all.extend(args);
        let out = submit_job(&c.addr, &all).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_directory_is_committed_whole_and_not_clobbered() {
    let dir = tempfile::tempdir().unwrap();
    let csv = csv_fixtures(&dir.path().join("in").tap_mkdir());
    let c = cluster("ops_output_dir", 1, 2).await;
    let out = dir.path().join("result");
    let (input, target) = (
        dir.path().join("in").display().to_string(),
        out.display().to_string(),
    );
    let options = [
        ("key", "product"),
        ("agg", "topk"),
        ("value", "region"),
        ("k", "2"),
    ];
    let mut args = vec![input.clone()];
    args.extend(op_args("groupby", &options));
    args.extend(["--format", "csv", "--output-dir", &target].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run(&c.addr, &args).await;

    // What the client printed and what the coordinator wrote are the same CSV, and Python's
    // csv module reads it back to the oracle's answer.
    let part = out.join("part-00000.csv");
    assert_eq!(std::fs::read(&part).unwrap(), ran.stdout);
    assert!(out.join("_SUCCESS").exists());
    let read_back = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys\n\
             rows = {r['key']: [[v, int(n)] for v, n in (p.rsplit('=', 1) for p in r['value'].split(','))]\n\
                     for r in csv.DictReader(open(sys.argv[1], newline='', encoding='latin-1'))}\n\
             print(json.dumps(rows))",
            part.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        read_back.status.success(),
        "{}",
        String::from_utf8_lossy(&read_back.stderr)
    );
    let got: BTreeMap<String, Json> = serde_json::from_slice(&read_back.stdout).unwrap();
    assert_eq!(got, oracle("groupby", &options, &csv).rows);
    let siblings: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        siblings.len(),
        2,
        "no temporary directory left: {siblings:?}"
    );

    // The same target again is refused at submission, and nothing runs.
    let again = submit_job(&c.addr, &[&["run"], &args[..]].concat()).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains(&format!("output directory '{target}' exists")),
        "{}",
        stderr(&again)
    );
    // Unless asked to overwrite: then the new result replaces the old, in another format.
    let mut overwrite: Vec<&str> = args.clone();
    overwrite.retain(|a| *a != "csv");
    overwrite.retain(|a| *a != "--format");
    overwrite.push("--overwrite");
    run(&c.addr, &overwrite).await;
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["_SUCCESS", "part-00000.tsv"]);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// Chunks done, in total and running (checkpoints are not checked here).
fn done_and_running(status: &Status) -> (u64, u64, u64) {
    (
        status.chunks_done,
        status.chunks_total,
        status.chunks_running,
    )
}

/// A total-order sort over skewed keys, range-partitioned in 4 parts: `cat part-*` equals GNU
/// sort's output byte for byte, duplicates kept, and the parts are within 2x of each other;
/// JSON Lines sorted by a numeric field match Python's sort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_order_sort_matches_gnu_sort() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(17);
    let mut data = Vec::new();
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    for i in 0..60_000u64 {
        // Skewed: seven lines in ten start with "aa", and one in twenty is a repeat.
        let mut line: Vec<u8> = if rng.below(10) < 7 {
            b"aa".to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..(1 + rng.below(12)) {
            line.push(letters[rng.below(26) as usize]);
        }
        if i % 20 == 0 {
            line = b"aab repeated".to_vec();
        }
        data.extend_from_slice(&line);
        data.push(b'\n');
    }
    let input = dir.path().join("keys.txt");
    std::fs::write(&input, &data).unwrap();
    let sorted = std::process::Command::new("sort")
        .env("LC_ALL", "C")
        .arg(&input)
        .output()
        .unwrap();
    assert!(sorted.status.success());
    let c = cluster("ops_sort", 2, 2).await;
    let out = dir.path().join("sorted");
    let args = [
        input.to_str().unwrap(),
        "--op",
        "sort",
        "--reducers",
        "4",
        "--chunk-size",
        "32KiB",
        "--format",
        "lines",
        "--output-dir",
        out.to_str().unwrap(),
    ];
    let ran = run(&c.addr, &args).await;
    assert_eq!(
        ran.stdout, sorted.stdout,
        "the result in order is GNU sort's"
    );
    let mut parts: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    assert_eq!(parts.len(), 4);
    let sizes: Vec<u64> = parts
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    let joined: Vec<u8> = parts
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(joined == sorted.stdout, "cat part-* is globally sorted");
    let (low, high) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(
        *high <= 2 * *low,
        "parts within 2x of each other: {sizes:?}"
    );
    assert_eq!(ran.status.counters.records_in, 60_000);

    // JSON Lines by a numeric field, ties by the whole line, against Python.
    let jsonl = jsonl_fixtures(&dir.path().join("jsonl").tap_mkdir(), 3);
    let script = "import json,sys\nrows=[]\nfor p in sys.argv[1:]:\n  for l in open(p,'rb').read().split(b'\\n'):\n    l=l.rstrip(b'\\r')\n    try: v=json.loads(l)['amount']\n    except Exception: continue\n    if isinstance(v,bool): continue\n    try: x=float(v.strip() if isinstance(v,str) else v)\n    except Exception: continue\n    if x==x and abs(x)!=float('inf'): rows.append((x,l))\nrows.sort()\nsys.stdout.buffer.write(b''.join(l+b'\\n' for _,l in rows))\n";
    let expected = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&jsonl)
        .output()
        .unwrap();
    assert!(
        expected.status.success(),
        "{}",
        String::from_utf8_lossy(&expected.stderr)
    );
    let root = dir.path().join("jsonl");
    let args = [
        root.to_str().unwrap(),
        "--op",
        "sort",
        "--option",
        "field=amount",
        "--option",
        "numeric=true",
        "--reducers",
        "3",
        "--chunk-size",
        "1KiB",
        "--format",
        "lines",
    ];
    let ran = run(&c.addr, &args).await;
    assert!(!expected.stdout.is_empty());
    assert!(
        ran.stdout == expected.stdout,
        "records sorted by amount differ from Python's sort"
    );

    // `--reducers auto`: a sort is spread over every slot of the fleet (2 workers x 2), a
    // small count is folded at the coordinator; both exact.
    let input = input.to_str().unwrap();
    let auto = [
        input,
        "--op",
        "sort",
        "--reducers",
        "auto",
        "--format",
        "lines",
    ];
    let ran = run(&c.addr, &auto).await;
    assert_eq!(ran.status.reducers, Some(4));
    assert!(
        ran.stdout == sorted.stdout,
        "the auto-partitioned sort is GNU sort's"
    );
    let ran = run(&c.addr, &[input, "--reducers", "auto"]).await;
    assert_eq!(ran.status.reducers, None);
    assert!(parse_tsv(&ran.stdout) == count_words(&[std::path::PathBuf::from(input)]));
}

/// A distinct over many keys on workers whose `--memory` is far smaller than a partition:
/// each reduce task spills several sorted runs and merges them; the counts are exact
/// against a sequential count, and the workers' metrics show the spills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_tasks_spill_beyond_their_memory_and_stay_exact() {
    let test = "ops_spill";
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(17);
    let mut text = String::new();
    let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
    for _ in 0..120_000 {
        let key = format!("user-{}", rng.below(60_000));
        *expected.entry(key.clone().into_bytes()).or_default() += 1;
        text.push_str(&key);
        text.push('\n');
    }
    let input = dir.path().join("ids.txt");
    std::fs::write(&input, &text).unwrap();
    let (coordinator_proc, addr) = coordinator(test, "127.0.0.1:0", &[]).await;
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let spill_dir = spill.to_str().unwrap();
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let _procs: Vec<Proc> = std::iter::once(coordinator_proc)
        .chain(ports.iter().enumerate().map(|(i, port)| {
            let listen = format!("127.0.0.1:{port}");
            let flags = [
                "--memory",
                "256KiB",
                "--metrics-listen",
                &listen,
                "--spill-dir",
                spill_dir,
            ];
            worker_with(test, &addr, 2, &format!("worker-{i}"), &flags)
        }))
        .collect();
    let args = [
        input.to_str().unwrap(),
        "--op",
        "distinct",
        "--reducers",
        "2",
        "--chunk-size",
        "64KiB",
    ];
    let ran = run(&addr, &args).await;
    assert!(
        parse_tsv(&ran.stdout) == expected,
        "distinct counts differ from a sequential count"
    );
    // The first 100 keys bytewise, and the 10 most frequent (ties by key), from the counts.
    let mut by_key: Vec<(&Vec<u8>, &u64)> = expected.iter().collect();
    by_key.sort();
    let first: Vec<String> = by_key[..100]
        .iter()
        .map(|(k, n)| format!("{}\t{n}", String::from_utf8_lossy(k)))
        .collect();
    let ran = run(&addr, &[&args[..], &["--limit", "100"]].concat()).await;
    assert_eq!(
        stdout_lines(&ran.stdout),
        first,
        "--limit 100 after spilling"
    );
    by_key.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = by_key[..10]
        .iter()
        .map(|(k, n)| format!("{}\t{n}", String::from_utf8_lossy(k)))
        .collect();
    let value = [&args[..], &["--sort", "value", "--limit", "10"]].concat();
    let ran = run(&addr, &value).await;
    assert_eq!(
        stdout_lines(&ran.stdout),
        top,
        "--sort value --limit 10 after spilling"
    );
    // A total-order sort spills the same way: the parts in order are GNU sort's order.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    let sort = [
        input.to_str().unwrap(),
        "--op",
        "sort",
        "--reducers",
        "2",
        "--format",
        "lines",
    ];
    let sort = [&sort[..], &["--chunk-size", "64KiB"]].concat();
    let ran = run(&addr, &sort).await;
    assert!(
        stdout_lines(&ran.stdout) == lines,
        "the sort after spilling is not in order"
    );
    // No run is left in the workers' spill directories.
    let left: Vec<_> = walk_files(&spill)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "run"))
        .collect();
    assert!(left.is_empty(), "runs left behind: {left:?}");
    let mut spilled = 0.0;
    for port in ports {
        let base = format!("http://127.0.0.1:{port}");
        let metrics = web::parse_metrics(&web::get(&base, "/metrics").await.body);
        spilled += metrics["fanfold_worker_reduce_spilled_bytes_total"];
    }
    // Each task holds 64 KiB; its partition is about ten times that.
    assert!(spilled > 256.0 * 1024.0, "spilled {spilled} bytes");
}

/// Lines of a result, without their newlines.
fn stdout_lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every file beneath `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

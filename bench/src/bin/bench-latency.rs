//! Small-job latency on a warm cluster: submits a word count over one small file `--runs`
//! times, one after another over one connection, and times each from submission until the
//! whole result is in hand (submit, watch until succeeded, fetch the rows). Every result is
//! checked against a count made here, with a plain split on ASCII whitespace.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::ensure;
use clap::Parser;
use fanfold_proto::v1 as pb;

#[derive(Parser)]
struct Args {
    /// Coordinator URL, e.g. http://127.0.0.1:7077.
    #[arg(long)]
    coordinator: String,
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Untimed runs first, so connections and workers are warm.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// The input file (absolute path).
    input: String,
}

fn expected(path: &str) -> anyhow::Result<HashMap<Vec<u8>, u64>> {
    let data = std::fs::read(path)?;
    let mut counts = HashMap::new();
    for word in data
        .split(|b| b" \t\n\x0b\x0c\r".contains(b))
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_vec()).or_default() += 1;
    }
    Ok(counts)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let want = expected(&args.input)?;
    let mut jobs = fanfold_bench::jobs(fanfold_bench::channel(&args.coordinator).await?);
    let spec = fanfold_bench::wordcount(std::slice::from_ref(&args.input), 0);
    let mut times = Vec::with_capacity(args.runs);
    for run in 0..args.warmup + args.runs {
        let started = Instant::now();
        let id = fanfold_bench::submit(&mut jobs, spec.clone()).await?;
        fanfold_bench::wait(&mut jobs, &id).await?;
        let rows = fanfold_bench::result(&mut jobs, &id).await?;
        let elapsed = started.elapsed();
        let got: HashMap<Vec<u8>, u64> = rows
            .into_iter()
            .map(|e| match e.value.and_then(|v| v.kind) {
                Some(pb::value::Kind::Count(n)) => (e.key, n),
                // Not a count: cannot equal the expected counts, so the check below fails.
                _ => (e.key, u64::MAX),
            })
            .collect();
        ensure!(got == want, "wrong result in run {run}");
        if run >= args.warmup {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}",
        serde_json::json!({
            "runs": times.len(), "p50_ms": at(0.5), "p99_ms": at(0.99),
            "min_ms": times[0], "max_ms": times[times.len() - 1],
        })
    );
    Ok(())
}

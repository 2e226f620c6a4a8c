//! A custom fanfold job in Rust: word bigram counts, shipped in its own coordinator and worker.
//!
//! A job is an [`Operation`]: `map` turns one chunk of whole records into a keyed [`Partial`]
//! whose values merge associatively and commutatively (here [`Value::Count`]); `finalize` (the
//! default here) sorts and limits the folded result. A factory builds it from the job's options,
//! and a [`Registry`] maps its name to the factory. Give that registry to the coordinator and to
//! every worker, and `submit-job run --op bigrams ...` works against that cluster.
//!
//! ```sh
//! # everything in one process, on this machine
//! cargo run --release --example custom_job -- local samples/
//! # or a real cluster: a coordinator and workers that know "bigrams"
//! cargo run --release --example custom_job -- coordinator 0.0.0.0:7077
//! cargo run --release --example custom_job -- worker http://coord-host:7077
//! submit-job --coordinator coord-host:7077 run /data --op bigrams --option lowercase=true
//! ```

use std::sync::Arc;

use fanfold::client::Client;
use fanfold::local::LocalCluster;
use fanfold_common::operation::{
    Chunk, ChunkStats, MapError, Operation, Options, SpecError, check_options,
};
use fanfold_common::partial::{Partial, Row, SortOrder, Value};
use fanfold_common::records::{lines, parse_bool};
use fanfold_common::registry::Registry;
use fanfold_common::spec::{JobSpec, JobState};

/// The name jobs use to ask for this operation.
pub const NAME: &str = "bigrams";

/// Counts pairs of adjacent words (whitespace-separated) within each line.
pub struct Bigrams {
    lowercase: bool,
}

/// Builds the operation from the job's options, refusing options it does not know.
pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(NAME, options, &["lowercase"])?;
    Ok(Arc::new(Bigrams {
        lowercase: parse_bool(NAME, options, "lowercase", false)?,
    }))
}

impl Operation for Bigrams {
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        stats.bytes_in += chunk.data.len() as u64;
        let mut partial = Partial::new();
        for line in lines(chunk.data) {
            stats.record(true);
            let line = if self.lowercase {
                line.to_ascii_lowercase()
            } else {
                line.to_vec()
            };
            let words: Vec<&[u8]> = line
                .split(u8::is_ascii_whitespace)
                .filter(|w| !w.is_empty())
                .collect();
            for pair in words.windows(2) {
                let key = [pair[0], b" ", pair[1]].concat();
                // Local fold: one value per key per chunk, merged again at the coordinator.
                partial.add(key, Value::Count(1))?;
            }
        }
        Ok(partial)
    }
}

/// The built-in operations plus this one.
pub fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register(NAME, factory);
    registry
}

/// Runs the job on an in-process cluster (coordinator + workers over loopback gRPC).
async fn run_locally(
    inputs: Vec<String>,
    options: Options,
    limit: Option<u64>,
) -> anyhow::Result<Vec<Row>> {
    let config = fanfold_coordinator::Config {
        registry: registry(),
        ..Default::default()
    };
    let cluster = LocalCluster::start(2, 1, config).await?;
    let outcome = async {
        let mut client = Client::connect(&cluster.address).await?;
        let spec = JobSpec {
            inputs,
            operation: NAME.into(),
            options,
            sort: SortOrder::ValueDesc,
            limit,
            ..Default::default()
        };
        let job = client.submit(&spec).await?;
        let done = client.watch(job.id, |_| {}).await?;
        anyhow::ensure!(
            done.state == JobState::Succeeded,
            "job {}: {:?}",
            done.state.as_str(),
            done.error
        );
        let mut rows = Vec::new();
        client
            .result(job.id, |row| {
                rows.push(row);
                Ok(())
            })
            .await?;
        Ok(rows)
    }
    .await;
    cluster.stop().await;
    outcome
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fanfold_common::telemetry::init(false, "warn");
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("local") if args.len() > 1 => {
            let cwd = std::env::current_dir()?;
            let inputs = args[1..]
                .iter()
                .map(|a| cwd.join(a).display().to_string())
                .collect();
            for row in run_locally(inputs, Options::new(), Some(10)).await? {
                if let Value::Count(n) = row.value {
                    println!("{}\t{n}", String::from_utf8_lossy(&row.key));
                }
            }
        }
        Some("coordinator") => {
            let listeners = fanfold_coordinator::Listeners::bind(
                args.get(1).map_or("0.0.0.0:7077", String::as_str),
            )
            .await?;
            println!("coordinator listening on {}", listeners.grpc.local_addr()?);
            let config = fanfold_coordinator::Config {
                registry: registry(),
                ..Default::default()
            };
            fanfold_coordinator::run(listeners, config, fanfold::shutdown_on_signals()).await?;
        }
        Some("worker") => {
            let address = args.get(1).map_or("http://127.0.0.1:7077", String::as_str);
            let mut config =
                fanfold_worker::Config::new(address, format!("bigrams-{}", std::process::id()), 2);
            config.registry = registry();
            fanfold_worker::run(config, fanfold::shutdown_on_signals()).await;
        }
        _ => anyhow::bail!("usage: custom_job local INPUT... | coordinator [ADDR] | worker [URL]"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The example end to end: real gRPC between an in-process coordinator and workers, the
    //! result compared with a plain sequential count that shares no code with the operation.

    use std::collections::HashMap;

    use tokio_util::sync::CancellationToken;

    use super::*;

    fn sequential(texts: &[&str]) -> HashMap<Vec<u8>, u64> {
        let mut counts = HashMap::new();
        for text in texts {
            for line in text.lines() {
                let words: Vec<String> = line.split_whitespace().map(str::to_lowercase).collect();
                for i in 1..words.len() {
                    *counts
                        .entry(format!("{} {}", words[i - 1], words[i]).into_bytes())
                        .or_default() += 1;
                }
            }
        }
        counts
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bigrams_run_on_a_cluster_and_match_a_sequential_count() {
        let dir = tempfile::tempdir().unwrap();
        let a = "The quick brown fox\njumps over the lazy dog\nthe quick BROWN cat\n".repeat(200);
        let b = "over the lazy dog the end\n\nsolo\n".repeat(300);
        std::fs::write(dir.path().join("a.txt"), &a).unwrap();
        std::fs::write(dir.path().join("b.txt"), &b).unwrap();
        let mut options = Options::new();
        options.insert("lowercase".into(), "true".into());
        let rows = run_locally(vec![dir.path().display().to_string()], options, None)
            .await
            .unwrap();
        let got: HashMap<Vec<u8>, u64> = rows
            .into_iter()
            .map(|row| match row.value {
                Value::Count(n) => (row.key, n),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, sequential(&[&a, &b]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_without_the_job_rejects_it_naming_what_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a b c\n").unwrap();
        // The coordinator knows the job, its only worker does not.
        let listeners = fanfold_coordinator::Listeners::bind("127.0.0.1:0")
            .await
            .unwrap();
        let address = format!("http://{}", listeners.grpc.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let config = fanfold_coordinator::Config {
            registry: registry(),
            ..Default::default()
        };
        let coordinator = tokio::spawn(fanfold_coordinator::run(
            listeners,
            config,
            shutdown.clone(),
        ));
        let worker = tokio::spawn(fanfold_worker::run(
            fanfold_worker::Config::new(&address, "plain", 1),
            shutdown.clone(),
        ));
        let mut client = Client::connect(&address).await.unwrap();
        let spec = JobSpec {
            inputs: vec![dir.path().display().to_string()],
            operation: NAME.into(),
            ..Default::default()
        };
        let job = client.submit(&spec).await.unwrap();
        let done = client.watch(job.id, |_| {}).await.unwrap();
        assert_eq!(done.state, JobState::Failed);
        let error = done.error.unwrap();
        assert!(
            error.ends_with(
                "worker plain: unknown operation 'bigrams' (known: distinct, grep, groupby, histogram, index, streaming, wordcount)"
            ),
            "{error}"
        );
        // And a coordinator without it refuses the job at once, listing its own.
        let spec = JobSpec {
            operation: "trigrams".into(),
            ..spec
        };
        let refused = client.submit(&spec).await.unwrap_err().to_string();
        assert_eq!(
            refused,
            "unknown operation 'trigrams' (known: bigrams, distinct, grep, groupby, histogram, index, streaming, wordcount)"
        );
        drop(client);
        shutdown.cancel();
        worker.await.unwrap();
        coordinator.await.unwrap().unwrap();
    }
}

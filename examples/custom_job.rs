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
//! # or a real cluster: a coordinator and workers that know "bigrams", taking every flag and
//! # FANFOLD_* variable of the `coordinator` and `worker` binaries
//! cargo run --release --example custom_job -- coordinator --listen 0.0.0.0:7077 --insecure
//! cargo run --release --example custom_job -- worker --coordinator coord-host:7077
//! submit-job --coordinator coord-host:7077 run /data --op bigrams --option lowercase=true
//! ```

use std::sync::Arc;

use clap::Parser;
use fanfold::client::Client;
use fanfold::config::{CoordinatorFlags, WorkerFlags};
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
    let cluster = LocalCluster::start(2, 1, config, None).await?;
    let outcome = async {
        let mut client = Client::connect(&cluster.address, &Default::default()).await?;
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

/// Word bigram counts on fanfold: on this machine alone, or as a coordinator and workers that
/// know the `bigrams` operation.
#[derive(Parser, Debug)]
enum Cli {
    /// Count the bigrams of INPUT... on an in-process cluster and print the ten most frequent.
    Local {
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// A coordinator that also knows `bigrams`; the flags of the `coordinator` binary.
    Coordinator(CoordinatorFlags),
    /// A worker that also knows `bigrams`; the flags of the `worker` binary.
    Worker(WorkerFlags),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Local { inputs } => {
            fanfold_common::telemetry::init(false, "warn");
            let cwd = std::env::current_dir()?;
            let inputs = inputs
                .iter()
                .map(|a| cwd.join(a).display().to_string())
                .collect();
            for row in run_locally(inputs, Options::new(), Some(10)).await? {
                if let Value::Count(n) = row.value {
                    println!("{}\t{n}", String::from_utf8_lossy(&row.key));
                }
            }
        }
        Cli::Coordinator(flags) => {
            fanfold_common::telemetry::init(flags.log_json, "info");
            // The same flags as the `coordinator` binary; only the registry is this build's.
            let config = flags.config(registry())?;
            let (listeners, exposure) = flags.listen().await?;
            if exposure == fanfold::config::Exposure::Insecure {
                tracing::warn!("listening with no authentication (--insecure)");
            }
            println!("coordinator listening on {}", listeners.grpc.local_addr()?);
            fanfold_coordinator::run(listeners, config, fanfold::shutdown_on_signals()).await?;
        }
        Cli::Worker(flags) => {
            fanfold_common::telemetry::init(flags.log_json, "info");
            let config = flags.config(registry())?;
            fanfold_worker::run(config, fanfold::shutdown_on_signals()).await?;
        }
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

    #[test]
    fn its_coordinator_and_worker_take_the_binaries_flags_and_know_bigrams() {
        let cli = Cli::try_parse_from([
            "custom_job",
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--chunk-size",
            "1MiB",
            "--no-backups",
        ])
        .unwrap();
        let Cli::Coordinator(flags) = cli else {
            panic!("{cli:?}")
        };
        assert_eq!(flags.listen, "127.0.0.1:0");
        let config = flags.config(registry()).unwrap();
        assert_eq!(config.default_chunk_size, 1 << 20);
        assert!(config.scheduling.backups.is_none());
        assert!(config.registry.names().contains(&NAME.to_owned()));

        let cli = Cli::try_parse_from([
            "custom_job",
            "worker",
            "--coordinator",
            "coord-host:7077",
            "--slots",
            "2",
            "--name",
            "bigrams-1",
        ])
        .unwrap();
        let Cli::Worker(flags) = cli else {
            panic!("{cli:?}")
        };
        let config = flags.config(registry()).unwrap();
        assert_eq!(config.coordinator, "http://coord-host:7077");
        assert_eq!((config.name.as_str(), config.slots), ("bigrams-1", 2));
        assert!(config.registry.names().contains(&NAME.to_owned()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_without_the_job_rejects_it_naming_what_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a b c\n").unwrap();
        // The coordinator knows the job, its only worker does not.
        let listeners = fanfold_coordinator::Listeners::bind("127.0.0.1:0", None)
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
        let mut client = Client::connect(&address, &Default::default())
            .await
            .unwrap();
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
                "worker plain: unknown operation 'bigrams' (known: distinct, grep, groupby, histogram, index, sort, streaming, wordcount)"
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
            "unknown operation 'trigrams' (known: bigrams, distinct, grep, groupby, histogram, index, sort, streaming, wordcount)"
        );
        drop(client);
        shutdown.cancel();
        worker.await.unwrap().unwrap();
        coordinator.await.unwrap().unwrap();
    }
}

//! `submit-job`'s command line: the clap definitions, which hold its help text, and the body of
//! each command. The `submit-job` binary parses a [`Cli`] and calls [`Cli::execute`].

mod probe;
mod run;
mod status;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fanfold_common::ids::JobId;
use fanfold_common::registry::Registry;
use fanfold_common::spec::JobState;

use crate::client::Client;
use crate::flags;
use crate::local::LocalCluster;
pub use run::{OutputArgs, RunArgs, Sort};
pub use status::{CountersView, OutputDirView, StatusView, list_text, slowest_text, status_text};

/// Run map-reduce jobs on a fanfold cluster, or on this machine alone with `local`.
///
/// Exit status: 0 when the job (or request) succeeded, 1 when it failed, was cancelled or the
/// coordinator could not be reached, 2 on bad usage.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Coordinator address, `host:port` or a URL.
    #[arg(long, global = true, env = "FANFOLD_COORDINATOR", default_value = "127.0.0.1:7077", value_parser = flags::endpoint)]
    coordinator: String,
    #[command(flatten)]
    auth: crate::config::ClientAuthFlags,
    #[command(subcommand)]
    command: Command,
}

/// The commands of `submit-job`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Submit a job, follow its progress and print its result.
    Run(RunArgs),
    /// Run a job on an in-process coordinator and workers: no setup needed.
    Local {
        #[command(flatten)]
        run: RunArgs,
        /// Workers to start.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
        workers: u32,
        /// Slots per worker [default: available cores / workers, at least 1].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        slots: Option<u32>,
        /// Allow streaming jobs (they run arbitrary programs).
        #[arg(long, env = "FANFOLD_ALLOW_STREAMING")]
        allow_streaming: bool,
        /// Serve the status pages, JSON API and metrics on this loopback address while the job
        /// runs (e.g. 127.0.0.1:8080); none by default.
        #[arg(long, value_parser = loopback_address)]
        http_listen: Option<String>,
    },
    /// Show a job's state, progress and counters.
    Status {
        job: JobId,
        /// Print the status as one JSON object (its fields are listed in README.md).
        #[arg(long)]
        json: bool,
    },
    /// List the coordinator's jobs.
    List {
        /// Print a JSON array of job statuses, each as `status --json` prints one.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a running job.
    Cancel { job: JobId },
    /// Print (or write) a finished job's result.
    Result {
        job: JobId,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Exit 0 if an http:// URL answers 2xx within 5 s: a health check for the container
    /// image, which has no curl (e.g. `probe http://127.0.0.1:8080/readyz`).
    Probe { url: String },
}

/// A `host:port` on a loopback address: local mode has no authentication.
fn loopback_address(raw: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr = raw
        .parse()
        .map_err(|e| format!("{raw} is not an IP address and port: {e}"))?;
    if addr.ip().is_loopback() {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw} is not a loopback address; local mode serves only this machine"
        ))
    }
}

impl Cli {
    /// Runs the command; the exit code says how the job (or request) ended. An error is one
    /// that stopped the command itself: a coordinator out of reach, a job it does not know.
    pub async fn execute(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Local {
                run,
                workers,
                slots,
                allow_streaming,
                http_listen,
            } => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                let slots = slots.unwrap_or((cores / workers).max(1));
                let config = fanfold_coordinator::Config {
                    registry: Registry::builtin().allow_programs(allow_streaming),
                    ..Default::default()
                };
                let cluster = LocalCluster::start(workers, slots, config, http_listen.as_deref())
                    .await
                    .context("cannot start the local cluster")?;
                let outcome = match Client::connect(&cluster.address, &Default::default()).await {
                    Ok(mut client) => run::run_job(&mut client, run).await,
                    Err(e) => Err(e),
                };
                cluster.stop().await;
                outcome
            }
            Command::Probe { url } => probe::probe(&url).await,
            command => {
                let mut client = Client::connect(&self.coordinator, &self.auth.security()?).await?;
                match command {
                    Command::Run(run) => run::run_job(&mut client, run).await,
                    Command::Status { job, json } => {
                        let status = client.status(job).await?;
                        if json {
                            println!("{}", serde_json::to_string(&StatusView::from(&status))?);
                        } else {
                            print!("{}", status_text(&status));
                        }
                        Ok(exit_for(status.state))
                    }
                    Command::List { json } => {
                        let jobs = client.list().await?;
                        if json {
                            let views: Vec<StatusView> =
                                jobs.iter().map(StatusView::from).collect();
                            println!("{}", serde_json::to_string(&views)?);
                        } else {
                            print!("{}", list_text(&jobs));
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::Cancel { job } => {
                        let status = client.cancel(job).await?;
                        eprintln!("job {} is {}", status.id, status.state.as_str());
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::Result { job, output } => {
                        run::write_result(&mut client, job, &output).await?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::Local { .. } | Command::Probe { .. } => {
                        unreachable!("handled above")
                    }
                }
            }
        }
    }
}

/// `status` exits 0 for a job that runs or succeeded, 1 for one that failed or was cancelled.
fn exit_for(state: JobState) -> ExitCode {
    match state {
        JobState::Running | JobState::Succeeded => ExitCode::SUCCESS,
        JobState::Failed | JobState::Cancelled => ExitCode::FAILURE,
    }
}

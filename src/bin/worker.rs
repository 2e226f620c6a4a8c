//! `worker`: attaches to a coordinator and maps chunks on its cores. Its flags are
//! `fanfold::config::WorkerFlags`.

use std::process::ExitCode;

use clap::Parser;
use fanfold::config::WorkerFlags;
use fanfold_common::registry::Registry;

/// The fanfold worker: dials the coordinator (retrying until it is up) and runs chunks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    flags: WorkerFlags,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args { flags } = Args::parse();
    fanfold_common::telemetry::init(flags.log_json, "info");
    let config = match flags.config(Registry::builtin()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::from(2);
        }
    };
    if flags.insecure && !flags.shuffle_listen.ip().is_loopback() {
        tracing::warn!(addr = %flags.shuffle_listen, "serving map outputs with no \
            authentication (--insecure): anyone who reaches this port can read them");
    }
    match fanfold_worker::run(config, fanfold::shutdown_on_signals()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {}", fanfold_common::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

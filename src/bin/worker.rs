//! `worker`: attaches to a coordinator and maps chunks on its cores. Its flags are
//! `fanfold::config::WorkerFlags`.

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
async fn main() {
    let Args { flags } = Args::parse();
    fanfold_common::telemetry::init(flags.log_json, "info");
    let config = flags.config(Registry::builtin());
    fanfold_worker::run(config, fanfold::shutdown_on_signals()).await;
}

//! `worker`: attaches to a coordinator and maps chunks on its cores.

use std::time::Duration;

use clap::Parser;
use fanfold::flags;
use fanfold_common::registry::Registry;

/// The fanfold worker: dials the coordinator (retrying until it is up) and runs chunks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Coordinator address, `host:port` or a URL.
    #[arg(long, env = "FANFOLD_COORDINATOR", default_value = "127.0.0.1:7077", value_parser = flags::endpoint)]
    coordinator: String,
    /// Chunks mapped at once [default: available cores].
    #[arg(long, env = "FANFOLD_SLOTS", value_parser = clap::value_parser!(u32).range(1..))]
    slots: Option<u32>,
    /// Name in the coordinator's logs [default: HOSTNAME-PID].
    #[arg(long, env = "FANFOLD_WORKER_NAME")]
    name: Option<String>,
    /// Interval between heartbeats; keep it well under the coordinator's worker timeout.
    #[arg(long, env = "FANFOLD_HEARTBEAT", default_value = "2s", value_parser = flags::duration)]
    heartbeat: Duration,
    /// On SIGTERM or SIGINT, how long running chunks may take to finish before detaching.
    #[arg(long, env = "FANFOLD_DRAIN_TIMEOUT", default_value = "30s", value_parser = flags::duration)]
    drain_timeout: Duration,
    /// Run streaming jobs' mapper commands: they run arbitrary programs as this user. Without
    /// it, such chunks fail (not retried) with an error that says so.
    #[arg(long, env = "FANFOLD_ALLOW_STREAMING")]
    allow_streaming: bool,
    /// This worker sees the coordinator's input files at the same paths (the same machine, or
    /// a shared volume mounted at the same path): it reads its chunks itself instead of
    /// receiving their bytes. A chunk it cannot read is handed back and sent inline.
    #[arg(long, env = "FANFOLD_SHARED_STORAGE")]
    shared_storage: bool,
    /// Log JSON lines instead of text.
    #[arg(long, env = "FANFOLD_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    fanfold_common::telemetry::init(args.log_json, "info");
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let name = args.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let mut config = fanfold_worker::Config::new(args.coordinator, name, slots);
    config.heartbeat = args.heartbeat;
    config.drain_timeout = args.drain_timeout;
    config.shared_storage = args.shared_storage;
    config.registry = Registry::builtin().allow_programs(args.allow_streaming);
    fanfold_worker::run(config, fanfold::shutdown_on_signals()).await;
}

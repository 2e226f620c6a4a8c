//! `coordinator`: serves jobs to clients and chunks to workers on one port.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fanfold::flags;
use fanfold_common::registry::Registry;

/// The fanfold coordinator: splits jobs into chunks, fans them out to workers, folds results.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on for clients, workers and health probes.
    #[arg(long, env = "FANFOLD_LISTEN", default_value = "0.0.0.0:7077")]
    listen: String,
    /// Chunk size for jobs that do not set one (e.g. 8MiB).
    #[arg(long, env = "FANFOLD_CHUNK_SIZE", default_value = "16MiB", value_parser = flags::size)]
    chunk_size: u64,
    /// Chunks a worker may hold beyond its slots, so it never waits between chunks.
    #[arg(long, env = "FANFOLD_PREFETCH", default_value_t = 1)]
    prefetch: u32,
    /// Failed attempts per chunk before its failure fails the job.
    #[arg(long, env = "FANFOLD_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Silence after which a worker counts as gone and its chunks are re-queued.
    #[arg(long, env = "FANFOLD_WORKER_TIMEOUT", default_value = "10s", value_parser = flags::duration)]
    worker_timeout: Duration,
    /// Directory for durable state (jobs, checkpoints, results); jobs resume from it after a
    /// restart. Without it, state lives in memory only.
    #[arg(long, env = "FANFOLD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// A chunk running this long, and 4 times the job's median chunk time, gets a backup
    /// attempt on an idle worker once nothing else is pending.
    #[arg(long, env = "FANFOLD_BACKUP_AFTER", default_value = "10s", value_parser = flags::duration)]
    backup_after: Duration,
    /// Never start backup attempts of straggling chunks.
    #[arg(long, env = "FANFOLD_NO_BACKUPS")]
    no_backups: bool,
    /// Accept streaming jobs, whose reducer command runs here: they run arbitrary programs.
    #[arg(long, env = "FANFOLD_ALLOW_STREAMING")]
    allow_streaming: bool,
    /// Log JSON lines instead of text.
    #[arg(long, env = "FANFOLD_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    return_large_buffers_to_the_os();
    fanfold_common::telemetry::init(args.log_json, "info");
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coordinator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Makes glibc's malloc serve every allocation of 1 MiB or more (chunk bytes, their encoded
/// messages, partials' tables) with its own mapping, unmapped when freed. By default the
/// threshold rises after such a buffer is freed, later buffers come from per-thread arenas that
/// are seldom trimmed, and the coordinator's resident memory grew with the number of chunks
/// it had passed along rather than with the work in flight (see bench/NOTES.md).
fn return_large_buffers_to_the_os() {
    // SAFETY: mallopt only sets a process-wide allocator parameter under the allocator's own
    // lock; a failure (return 0) leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    fanfold_common::spec::check_chunk_size(args.chunk_size).context("--chunk-size")?;
    let listeners = fanfold_coordinator::Listeners::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The bound address on stdout, for people and for scripts that listen on port 0.
    println!("coordinator listening on {}", listeners.grpc.local_addr()?);
    let config = fanfold_coordinator::Config {
        default_chunk_size: args.chunk_size,
        prefetch: args.prefetch,
        max_attempts: args.max_attempts,
        worker_timeout: args.worker_timeout,
        backups: (!args.no_backups).then_some(fanfold_coordinator::BackupPolicy {
            min_age: args.backup_after,
            slowdown: 4,
        }),
        state_dir: args.state_dir,
        registry: Registry::builtin().allow_programs(args.allow_streaming),
    };
    if config.state_dir.is_none() {
        tracing::warn!("no --state-dir: jobs and results will not survive a restart");
    }
    fanfold_coordinator::run(listeners, config, fanfold::shutdown_on_signals()).await?;
    Ok(())
}

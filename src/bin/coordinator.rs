//! `coordinator`: serves jobs to clients and chunks to workers on one port. Its flags are
//! `fanfold::config::CoordinatorFlags`.

use std::process::ExitCode;

use clap::Parser;
use fanfold::config::{CoordinatorFlags, Exposure};
use fanfold_common::registry::Registry;

/// The fanfold coordinator: splits jobs into chunks, fans them out to workers, folds results.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    flags: CoordinatorFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Manage the tokens file (--auth-tokens).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Subcommand, Debug)]
enum TokenCommand {
    /// Print a fresh token for a principal, then its line for the tokens file. Give the token
    /// to the principal (FANFOLD_TOKEN or --token-file); the file keeps only its hash.
    New {
        /// The principal's name, as logs and job owners show it.
        name: String,
        /// worker (attach only), submit (its own jobs), read (see every job) or admin.
        role: fanfold_coordinator::auth::Role,
        /// Let the principal submit jobs that run programs (streaming).
        #[arg(long)]
        programs: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args { flags, command } = Args::parse();
    raise_open_file_limit();
    if let Some(Command::Token(TokenCommand::New {
        name,
        role,
        programs,
    })) = command
    {
        return match fanfold_coordinator::auth::new_token(&name, role, programs) {
            Ok((token, line)) => {
                println!("{token}\n{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("coordinator: {e}");
                ExitCode::from(2)
            }
        };
    }
    return_large_buffers_to_the_os();
    fanfold_common::telemetry::init(flags.log_json, "info");
    match serve(flags).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coordinator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard limit: every client and worker connection
/// is a descriptor, and a soft limit of 1024 would let a few hundred idle connections stop the
/// coordinator from opening inputs or accepting more.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
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

async fn serve(flags: CoordinatorFlags) -> anyhow::Result<()> {
    let config = flags.config(Registry::builtin())?;
    let (listeners, exposure) = flags.listen().await?;
    let bound = listeners.grpc.local_addr()?;
    match exposure {
        Exposure::Insecure => tracing::warn!(addr = %bound, "listening with no authentication \
            (--insecure): anyone who reaches this port can run jobs over any file this \
            coordinator can read"),
        Exposure::Authenticated if config.tls.is_none() => tracing::warn!(addr = %bound,
            "tokens and data travel in plain text: give --tls-cert and --tls-key, or keep \
            the network private"),
        _ => {}
    }
    if config.access.required() && config.data_roots.is_empty() {
        tracing::warn!(
            "no --data-root: every principal that may submit can read any file \
            this coordinator can"
        );
    }
    // The bound addresses on stdout, in one write, for people and for scripts that listen on
    // port 0 (the gRPC address first).
    match listeners
        .http
        .as_ref()
        .map(|h| h.local_addr())
        .transpose()?
    {
        Some(http) => println!("coordinator listening on {bound}\nstatus pages on http://{http}/"),
        None => println!("coordinator listening on {bound}"),
    }
    if config.state_dir.is_none() {
        tracing::warn!("no --state-dir: jobs and results will not survive a restart");
    }
    fanfold_coordinator::run(listeners, config, fanfold::shutdown_on_signals()).await?;
    Ok(())
}

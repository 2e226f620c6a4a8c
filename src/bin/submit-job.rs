//! `submit-job`: submit, follow, inspect and cancel fanfold jobs, or run one locally.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fanfold::client::Client;
use fanfold::flags;
use fanfold::local::LocalCluster;
use fanfold::output::{Format, Output};
use fanfold::progress::Progress;
use fanfold_common::ids::JobId;
use fanfold_common::operation::Options;
use fanfold_common::partial::SortOrder;
use fanfold_common::registry::Registry;
use fanfold_common::spec::{JobSpec, JobState, JobStatus, OutputDir};

/// Run map-reduce jobs on a fanfold cluster, or on this machine alone with `local`.
///
/// Exit status: 0 when the job (or request) succeeded, 1 when it failed, was cancelled or the
/// coordinator could not be reached, 2 on bad usage.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// Coordinator address, `host:port` or a URL.
    #[arg(long, global = true, env = "FANFOLD_COORDINATOR", default_value = "127.0.0.1:7077", value_parser = flags::endpoint)]
    coordinator: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    },
    /// Show a job's state, progress and counters.
    Status { job: JobId },
    /// List the coordinator's jobs.
    List,
    /// Cancel a running job.
    Cancel { job: JobId },
    /// Print (or write) a finished job's result.
    Result {
        job: JobId,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Input files, directories (read recursively) or glob patterns, on the coordinator's
    /// filesystem. Relative paths are made absolute against this directory.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Operation to run: wordcount, grep, groupby, distinct, histogram, index, streaming (or a
    /// custom one the cluster knows); README.md lists each one's options.
    #[arg(long, default_value = "wordcount")]
    op: String,
    /// Streaming: run CMD (with `sh -c`) on each chunk, records on stdin, `key<TAB>value` lines
    /// on stdout. Same as `--op streaming --option mapper=CMD`.
    #[arg(long, value_name = "CMD", conflicts_with = "op")]
    mapper: Option<String>,
    /// Streaming: fold each key's values with sum, count, min, max, mean, distinct or collect
    /// (the default), or run CMD once over all `key<TAB>value` lines sorted by key.
    #[arg(long, value_name = "NAME|CMD", requires = "mapper")]
    reducer: Option<String>,
    /// Operation option as NAME=VALUE; repeat for more.
    #[arg(long = "option", value_name = "NAME=VALUE", value_parser = option)]
    options: Vec<(String, String)>,
    /// Target chunk size [default: the coordinator's].
    #[arg(long, value_parser = flags::size)]
    chunk_size: Option<u64>,
    /// Row order of the result.
    #[arg(long, value_enum, default_value_t = Sort::Key)]
    sort: Sort,
    /// Keep only the first N rows after sorting.
    #[arg(long)]
    limit: Option<u64>,
    /// One chunk per input file: each file is mapped whole (per-document jobs).
    #[arg(long)]
    whole_file: bool,
    /// Have the coordinator also write the result to DIR (on its filesystem) as part files in
    /// the --format, committed atomically.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<String>,
    /// Replace --output-dir if it exists (otherwise the job is refused).
    #[arg(long, requires = "output_dir")]
    overwrite: bool,
    /// When mapping a chunk fails, isolate the failing records, write them to a quarantine
    /// file on the coordinator and go on, instead of failing the job.
    #[arg(long)]
    skip_bad_records: bool,
    /// Fail the job if it has not finished this long after submission (e.g. 30m).
    #[arg(long, value_parser = flags::duration)]
    timeout: Option<std::time::Duration>,
    /// Print the job id and return at once instead of waiting.
    #[arg(long)]
    detach: bool,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct OutputArgs {
    /// Result format.
    #[arg(long, value_enum, default_value_t = Format::Tsv)]
    format: Format,
    /// Write the result to FILE (atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Sort {
    /// Ascending by key.
    Key,
    /// Descending by value, ties by key.
    Value,
}

fn option(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fanfold_common::telemetry::init(false, "warn");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("submit-job: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Local {
            run,
            workers,
            slots,
            allow_streaming,
        } => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let slots = slots.unwrap_or((cores / workers).max(1));
            let config = fanfold_coordinator::Config {
                registry: Registry::builtin().allow_programs(allow_streaming),
                ..Default::default()
            };
            let cluster = LocalCluster::start(workers, slots, config)
                .await
                .context("cannot start the local cluster")?;
            let outcome = match Client::connect(&cluster.address).await {
                Ok(mut client) => run_job(&mut client, run).await,
                Err(e) => Err(e),
            };
            cluster.stop().await;
            outcome
        }
        command => {
            let mut client = Client::connect(&cli.coordinator).await?;
            match command {
                Command::Run(run) => run_job(&mut client, run).await,
                Command::Status { job } => {
                    let status = client.status(job).await?;
                    print_status(&status);
                    Ok(exit_for(status.state))
                }
                Command::List => {
                    let jobs = client.list().await?;
                    println!(
                        "{:<36}  {:<9}  {:>13}  {:<10}  inputs",
                        "job", "state", "chunks", "operation"
                    );
                    for job in jobs {
                        println!(
                            "{:<36}  {:<9}  {:>13}  {:<10}  {}",
                            job.id,
                            job.state.as_str(),
                            format!("{}/{}", job.chunks_done, job.chunks_total),
                            job.spec.operation,
                            job.spec.inputs.join(" ")
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Command::Cancel { job } => {
                    let status = client.cancel(job).await?;
                    eprintln!("job {} is {}", status.id, status.state.as_str());
                    Ok(ExitCode::SUCCESS)
                }
                Command::Result { job, output } => {
                    write_result(&mut client, job, &output).await?;
                    Ok(ExitCode::SUCCESS)
                }
                Command::Local { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// Submits, follows and prints a job; the exit code says how it ended.
async fn run_job(client: &mut Client, args: RunArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut options: Options = args.options.into_iter().collect();
    let operation = match args.mapper {
        Some(mapper) => {
            options.insert("mapper".into(), mapper);
            if let Some(reducer) = args.reducer {
                options.insert("reducer".into(), reducer);
            }
            "streaming".to_owned()
        }
        None => args.op,
    };
    let spec = JobSpec {
        inputs: args.inputs.iter().map(|i| absolute(&cwd, i)).collect(),
        operation,
        options,
        chunk_size: args.chunk_size,
        sort: match args.sort {
            Sort::Key => SortOrder::Key,
            Sort::Value => SortOrder::ValueDesc,
        },
        limit: args.limit,
        whole_file: args.whole_file,
        output: args.output_dir.as_deref().map(|dir| OutputDir {
            path: absolute(&cwd, dir),
            format: args.output.format.into(),
            overwrite: args.overwrite,
        }),
        timeout: args.timeout,
        skip_bad_records: args.skip_bad_records,
    };
    let submitted = client.submit(&spec).await?;
    if args.detach {
        println!("{}", submitted.id);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "job {} submitted: {} chunks, {}",
        submitted.id,
        submitted.chunks_total,
        bytesize::ByteSize(submitted.bytes_total)
    );
    let mut progress = Progress::new(args.quiet);
    let done = client.watch(submitted.id, |s| progress.update(s)).await?;
    match done.state {
        JobState::Succeeded => {
            write_result(client, done.id, &args.output).await?;
            Ok(ExitCode::SUCCESS)
        }
        state => {
            eprintln!(
                "submit-job: job {} {}: {}",
                done.id,
                state.as_str(),
                done.error.as_deref().unwrap_or("no reason given")
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn write_result(client: &mut Client, job: JobId, args: &OutputArgs) -> anyhow::Result<()> {
    let mut out = match &args.output {
        Some(path) => Output::file(args.format, path)?,
        None => Output::stdout(args.format),
    };
    let rows = client.result(job, |row| out.write(&row)).await?;
    out.finish().context("cannot write the result")?;
    if let Some(path) = &args.output {
        eprintln!("wrote {rows} rows to {}", path.display());
    }
    Ok(())
}

fn absolute(cwd: &Path, input: &str) -> String {
    if Path::new(input).is_absolute() {
        input.to_owned()
    } else {
        cwd.join(input).display().to_string()
    }
}

fn exit_for(state: JobState) -> ExitCode {
    match state {
        JobState::Running | JobState::Succeeded => ExitCode::SUCCESS,
        JobState::Failed | JobState::Cancelled => ExitCode::FAILURE,
    }
}

fn print_status(s: &JobStatus) {
    let c = &s.counters;
    println!("job        {}", s.id);
    if s.finishing && !s.state.is_final() {
        println!("state      {} (finishing)", s.state.as_str());
    } else {
        println!("state      {}", s.state.as_str());
    }
    println!("operation  {}", s.spec.operation);
    println!("inputs     {}", s.spec.inputs.join(" "));
    println!(
        "chunks     {}/{} done, {} running, {} checkpointed",
        s.chunks_done, s.chunks_total, s.chunks_running, s.chunks_checkpointed
    );
    println!(
        "bytes      {}/{}",
        bytesize::ByteSize(s.bytes_done),
        bytesize::ByteSize(s.bytes_total)
    );
    println!("workers    {}", s.workers);
    println!(
        "counters   records_in={} bytes_in={} bad_records={} keys_out={} attempts={} chunks_failed={} backups={}",
        c.records_in, c.bytes_in, c.bad_records, c.keys_out, c.attempts, c.chunks_failed, c.backups
    );
    for (name, amount) in &c.user {
        println!("counter    {name}={amount}");
    }
    if s.state == JobState::Succeeded {
        println!("rows       {}", s.result_rows);
    }
    if let Some(quarantine) = &s.quarantine {
        println!("quarantine {quarantine}");
    }
    if let Some(error) = &s.error {
        println!("error      {error}");
    }
}

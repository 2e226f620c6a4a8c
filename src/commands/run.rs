//! `submit-job run` and `local`: the job flags, the [`JobSpec`] they make, following a job to
//! its end, and writing a result (also for `submit-job result`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use fanfold_common::ids::JobId;
use fanfold_common::operation::Options;
use fanfold_common::partial::SortOrder;
use fanfold_common::spec::{JobSpec, JobState, OutputDir};

use crate::client::Client;
use crate::flags;
use crate::output::{Format, Output};
use crate::progress::Progress;

/// What to run and how to show it, for `run` and `local`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Input files, directories (read recursively) or glob patterns, on the coordinator's
    /// filesystem. Relative paths are made absolute against this directory.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Operation to run: wordcount, grep, groupby, distinct, histogram, index, sort, streaming (or a
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
    /// Target chunk size, 1KiB..256MiB [default: the coordinator's].
    #[arg(long, value_parser = flags::chunk_size)]
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
    /// Reduce on the workers in R partitions (for many keys): map outputs stay on the workers,
    /// each of R reduce tasks merges one partition and the result comes as R parts. `auto`
    /// lets the coordinator pick R from the input's size and the fleet (one per 256 MiB, at
    /// most two per worker slot; none for 256 MiB or less). Without it, the coordinator folds every
    /// chunk's partial.
    #[arg(long, value_name = "R|auto", value_parser = reducers)]
    reducers: Option<Reducers>,
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

/// Where and how a result is written.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Result format.
    #[arg(long, value_enum, default_value_t = Format::Tsv)]
    format: Format,
    /// Write the result to FILE (atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Row order of a result, as `--sort` names it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Sort {
    /// Ascending by key.
    Key,
    /// Descending by value, ties by key.
    Value,
}

/// What `--reducers` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reducers {
    Count(u32),
    Auto,
}

fn reducers(text: &str) -> Result<Reducers, String> {
    match text {
        "auto" => Ok(Reducers::Auto),
        n => n
            .parse()
            .map(Reducers::Count)
            .map_err(|_| format!("'{n}' is neither a number of partitions nor auto")),
    }
}

fn option(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))
}

impl RunArgs {
    /// The job these flags ask for, relative paths made absolute against `cwd`.
    fn spec(&self, cwd: &Path) -> JobSpec {
        let mut options: Options = self.options.iter().cloned().collect();
        let operation = match &self.mapper {
            Some(mapper) => {
                options.insert("mapper".into(), mapper.clone());
                if let Some(reducer) = &self.reducer {
                    options.insert("reducer".into(), reducer.clone());
                }
                "streaming".to_owned()
            }
            None => self.op.clone(),
        };
        JobSpec {
            inputs: self.inputs.iter().map(|i| absolute(cwd, i)).collect(),
            operation,
            options,
            chunk_size: self.chunk_size,
            sort: match self.sort {
                Sort::Key => SortOrder::Key,
                Sort::Value => SortOrder::ValueDesc,
            },
            limit: self.limit,
            whole_file: self.whole_file,
            output: self.output_dir.as_deref().map(|dir| OutputDir {
                path: absolute(cwd, dir),
                format: self.output.format.into(),
                overwrite: self.overwrite,
            }),
            timeout: self.timeout,
            skip_bad_records: self.skip_bad_records,
            reducers: match self.reducers {
                Some(Reducers::Count(n)) => Some(n),
                _ => None,
            },
            reducers_auto: self.reducers == Some(Reducers::Auto),
            owner: None,
        }
    }
}

/// Submits, follows and prints a job; the exit code says how it ended.
pub(super) async fn run_job(client: &mut Client, args: RunArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let submitted = client.submit(&args.spec(&cwd)).await?;
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
    if let Some(url) = &submitted.page_url {
        eprintln!("status page: {url}");
    }
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

/// Fetches a finished job's rows and writes them as `args` say.
pub(super) async fn write_result(
    client: &mut Client,
    job: JobId,
    args: &OutputArgs,
) -> anyhow::Result<()> {
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

/// A relative path made absolute against the client's directory; an absolute path or a URL
/// (`s3://bucket/key`: the coordinator says whether it can read it) as it is.
fn absolute(cwd: &Path, input: &str) -> String {
    if Path::new(input).is_absolute() || fanfold_common::location::scheme(input).is_some() {
        input.to_owned()
    } else {
        cwd.join(input).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use fanfold_common::render;

    use super::*;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        run: RunArgs,
    }

    fn spec(args: &[&str]) -> JobSpec {
        let parsed = Run::try_parse_from([&["run"], args].concat()).unwrap();
        parsed.run.spec(Path::new("/home/me"))
    }

    #[test]
    fn flags_make_the_job_spec() {
        let streaming = spec(&[
            "rel/in.txt",
            "/abs/*.csv",
            "--mapper",
            "cut -f1",
            "--reducer",
            "sum",
            "--option",
            "k=v=w",
            "--chunk-size",
            "64KiB",
            "--sort",
            "value",
            "--limit",
            "5",
            "--whole-file",
            "--output-dir",
            "out",
            "--overwrite",
            "--format",
            "csv",
            "--skip-bad-records",
            "--timeout",
            "30m",
            "--reducers",
            "4",
        ]);
        let options = [("k", "v=w"), ("mapper", "cut -f1"), ("reducer", "sum")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(
            streaming,
            JobSpec {
                inputs: vec!["/home/me/rel/in.txt".into(), "/abs/*.csv".into()],
                operation: "streaming".into(),
                options,
                chunk_size: Some(64 << 10),
                sort: SortOrder::ValueDesc,
                limit: Some(5),
                timeout: Some(Duration::from_secs(30 * 60)),
                skip_bad_records: true,
                whole_file: true,
                output: Some(OutputDir {
                    path: "/home/me/out".into(),
                    format: render::Format::Csv,
                    overwrite: true,
                }),
                reducers: Some(4),
                reducers_auto: false,
                owner: None,
            }
        );
        let auto = spec(&["in.txt", "--reducers", "auto"]);
        assert!(auto.reducers_auto && auto.reducers.is_none());
        assert!(Run::try_parse_from(["run", "x", "--reducers", "many"]).is_err());
        assert_eq!(
            spec(&["in.txt"]),
            JobSpec {
                inputs: vec!["/home/me/in.txt".into()],
                operation: "wordcount".into(),
                ..Default::default()
            }
        );
        assert_eq!(
            spec(&["s3://bucket/logs/", "file:///data/x"]).inputs,
            ["s3://bucket/logs/", "file:///data/x"],
            "URLs are not taken for relative paths"
        );
        assert!(Run::try_parse_from(["run", "x", "--option", "novalue"]).is_err());
        assert!(Run::try_parse_from(["run", "x", "--overwrite"]).is_err());
    }
}

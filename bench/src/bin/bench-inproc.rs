//! The in-process limit: the same word count code the workers run (the registry's
//! `wordcount` through the `Operation` trait, folded with `Partial::merge`), driven over the
//! same record-aligned chunks by one thread per core, with no gRPC and no coordinator.
//!
//!     bench-inproc --threads 2 --chunk-size 16777216 --output counts.tsv FILE...
//!
//! Writes the result sorted by key as `word<TAB>count` lines, like `submit-job`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use fanfold_common::chunker;
use fanfold_common::input;
use fanfold_common::operation::{Chunk, ChunkStats, Options};
use fanfold_common::partial::{self, Partial, SortOrder, Value};
use fanfold_common::registry::Registry;

#[derive(Parser)]
struct Args {
    /// Threads mapping chunks [default: available cores].
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value_t = fanfold_common::spec::DEFAULT_CHUNK_SIZE)]
    chunk_size: u64,
    #[arg(long)]
    output: PathBuf,
    #[arg(required = true)]
    inputs: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = std::time::Instant::now();
    let files = input::resolve(&args.inputs, &Default::default(), usize::MAX)?;
    let chunks = chunker::plan(
        &files,
        args.chunk_size,
        |_| chunker::Cut::Lines,
        &Default::default(),
    )?;
    let operation = Registry::builtin().build("wordcount", &Options::new())?;
    let next = AtomicUsize::new(0);
    let partials: Vec<anyhow::Result<(Partial, ChunkStats)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut folded = Partial::new();
                    let mut stats = ChunkStats::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&range) = chunks.get(i) else { break };
                        let location = &files[range.file as usize].location;
                        let data = chunker::read(location, range, &Default::default())?;
                        let name = location.to_string();
                        let chunk = Chunk::new(&data, &name, range.start);
                        folded.merge(operation.map(&chunk, &mut stats)?)?;
                    }
                    Ok((folded, stats))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("mapping thread panicked"))
            .collect()
    });
    let mut folded = Partial::new();
    let mut bytes = 0;
    for part in partials {
        let (partial, stats) = part?;
        folded.merge(partial)?;
        bytes += stats.bytes_in;
    }
    let rows = partial::finalize(folded, SortOrder::Key, None);
    let mut out = BufWriter::new(std::fs::File::create(&args.output)?);
    for row in &rows {
        let Value::Count(n) = row.value else {
            anyhow::bail!("word count gave a value that is not a count");
        };
        out.write_all(&row.key)?;
        writeln!(out, "\t{n}")?;
    }
    out.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bytes": bytes, "chunks": chunks.len(), "threads": threads,
            "rows": rows.len(), "seconds": seconds,
        })
    );
    Ok(())
}

//! Scheduler throughput at fleet scale: opens `--workers` real Attach streams to a coordinator
//! (several streams share each HTTP/2 connection), each advertising `--slots` slots and
//! answering every assignment at once with an empty partial, then submits one word-count job
//! over `--input` with tiny chunks and times it from submission to completion.
//!
//! Reports chunks per second, the coordinator's CPU time per chunk (from /proc, given its pid)
//! and checks exactness first: the job succeeded, every chunk was assigned exactly once and
//! answered, and the bytes the workers received add up to the job's bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use fanfold_proto::MAX_MESSAGE_BYTES;
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::fleet_service_client::FleetServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// Coordinator URL, e.g. http://127.0.0.1:7077.
    #[arg(long)]
    coordinator: String,
    /// The coordinator's process id, to read its CPU time.
    #[arg(long)]
    coordinator_pid: String,
    #[arg(long, default_value_t = 1000)]
    workers: usize,
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Attach streams per HTTP/2 connection (servers cap concurrent streams per connection).
    #[arg(long, default_value_t = 50)]
    streams_per_connection: usize,
    /// Chunk size in bytes (1 KiB is the smallest a job may ask for).
    #[arg(long, default_value_t = 1024)]
    chunk_size: u64,
    #[arg(required = true)]
    input: Vec<String>,
}

fn message(kind: pb::worker_message::Kind) -> pb::WorkerMessage {
    pb::WorkerMessage { kind: Some(kind) }
}

/// Bytes the simulated fleet received, to check against the job's total.
static BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One simulated worker; returns the chunks it answered.
async fn worker(
    channel: Channel,
    name: String,
    slots: u32,
    welcomed: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<u64>> {
    let mut client = FleetServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (outbox, outgoing) = mpsc::channel(slots as usize + 16);
    let hello = pb::Hello {
        name,
        slots,
        version: fanfold_common::VERSION.into(),
        operations: vec!["wordcount".into()],
        // Inline, so the coordinator reads every chunk it hands out.
        shared_storage: false,
        protocol: fanfold_proto::PROTOCOL,
        // Runs no partitioned jobs: nothing to fetch.
        shuffle_address: String::new(),
        local_roots: Vec::new(),
    };
    outbox
        .send(message(pb::worker_message::Kind::Hello(hello)))
        .await?;
    let mut inbound = client
        .attach(ReceiverStream::new(outgoing))
        .await
        .context("attach")?
        .into_inner();
    let mut answered = Vec::new();
    let mut beats = tokio::time::interval(Duration::from_secs(2));
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            _ = beats.tick() => {
                outbox.send(message(pb::worker_message::Kind::Heartbeat(pb::Heartbeat {}))).await?;
                continue;
            }
            next = inbound.message() => next.context("attach stream")?,
        };
        let Some(pb::CoordinatorMessage { kind: Some(kind) }) = next else {
            break;
        };
        match kind {
            pb::coordinator_message::Kind::Welcome(_) => {
                welcomed.fetch_add(1, Ordering::Relaxed);
            }
            pb::coordinator_message::Kind::Assign(a) => {
                let bytes = a.data.len() as u64;
                BYTES.fetch_add(bytes, Ordering::Relaxed);
                answered.push(a.chunk);
                let done = pb::ChunkDone {
                    job_id: a.job_id,
                    chunk: a.chunk,
                    attempt: a.attempt,
                    partial: Some(pb::Partial::default()),
                    counters: Some(pb::ChunkCounters {
                        bytes_in: bytes,
                        ..Default::default()
                    }),
                    bad_records: Vec::new(),
                    map_output: None,
                };
                outbox
                    .send(message(pb::worker_message::Kind::Done(done)))
                    .await?;
            }
            pb::coordinator_message::Kind::Cancel(_)
            | pb::coordinator_message::Kind::CancelAttempt(_) => {}
            // Its 1 KiB chunks come whole, never in pieces.
            pb::coordinator_message::Kind::Piece(_) => anyhow::bail!("unexpected chunk piece"),
            pb::coordinator_message::Kind::Reduce(_) => anyhow::bail!("unexpected reduce task"),
            pb::coordinator_message::Kind::ListLocal(_) => anyhow::bail!("unexpected listing"),
        }
    }
    Ok(answered)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stop = CancellationToken::new();
    let welcomed = Arc::new(AtomicUsize::new(0));
    let mut fleet = Vec::new();
    let mut channel = None;
    for i in 0..args.workers {
        if i % args.streams_per_connection == 0 {
            channel = Some(fanfold_bench::channel(&args.coordinator).await?);
        }
        let channel = channel.clone().expect("opened above");
        fleet.push(tokio::spawn(worker(
            channel,
            format!("sim-{i}"),
            args.slots,
            Arc::clone(&welcomed),
            stop.clone(),
        )));
    }
    let attach_deadline = Instant::now() + Duration::from_secs(60);
    while welcomed.load(Ordering::Relaxed) < args.workers {
        ensure!(
            Instant::now() < attach_deadline,
            "workers did not all attach"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut jobs = fanfold_bench::jobs(fanfold_bench::channel(&args.coordinator).await?);
    let planning = Instant::now();
    let job_id = fanfold_bench::submit(
        &mut jobs,
        fanfold_bench::wordcount(&args.input, args.chunk_size),
    )
    .await?;
    let planned = planning.elapsed();
    let (started, cpu_before) = (
        Instant::now(),
        fanfold_bench::cpu_time(&args.coordinator_pid)?,
    );
    let self_before = fanfold_bench::cpu_time("self")?;
    let status = fanfold_bench::wait(&mut jobs, &job_id).await?;
    let elapsed = started.elapsed();
    let cpu = fanfold_bench::cpu_time(&args.coordinator_pid)? - cpu_before;
    let self_cpu = fanfold_bench::cpu_time("self")? - self_before;
    stop.cancel();

    // Exactness before any number: every chunk answered and folded once. Chunks held too long
    // may have been assigned again (a backup, or a re-queue after a lost lease); the job's
    // byte counter counts folded chunks only, so it matches the job's bytes only if each chunk
    // was folded exactly once.
    let mut answered = Vec::new();
    for w in fleet {
        answered.extend(w.await??);
    }
    answered.sort_unstable();
    answered.dedup();
    let total = status.chunks_total;
    let counters = status.counters.unwrap_or_default();
    ensure!(status.chunks_done == total, "not every chunk was folded");
    ensure!(
        answered.iter().copied().eq(0..total),
        "the fleet did not answer every chunk"
    );
    ensure!(
        counters.bytes_in == status.bytes_total,
        "folded bytes do not add up to the job's bytes"
    );
    let seconds = elapsed.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "workers": args.workers, "slots": args.slots, "chunks": total,
            "bytes": status.bytes_total, "planning_seconds": planned.as_secs_f64(),
            "seconds": seconds, "chunks_per_second": total as f64 / seconds,
            "coordinator_cpu_seconds": cpu.as_secs_f64(),
            "coordinator_cpu_us_per_chunk": cpu.as_secs_f64() * 1e6 / total as f64,
            "loadgen_cpu_seconds": self_cpu.as_secs_f64(),
            "attempts": counters.attempts, "backups": counters.backups,
            "bytes_sent": BYTES.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

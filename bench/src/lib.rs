//! Shared pieces of the benchmark drivers that `bench/run` starts: gRPC connections to a
//! coordinator, submitting a job and waiting for it, reading a process's CPU time, and an
//! S3-compatible server ([`s3`], which the tests serve too).
//!
//! The drivers print one JSON object on stdout; `bench/run` checks, tabulates and plots them.

use std::time::Duration;

pub mod s3;

use anyhow::{Context, bail};
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::job_service_client::JobServiceClient;
use fanfold_proto::{MAX_MESSAGE_BYTES, transport};
use tonic::transport::Channel;

/// Opens one HTTP/2 connection to the coordinator at `address` (`http://host:port`, a
/// coordinator without tokens).
pub async fn channel(address: &str) -> anyhow::Result<Channel> {
    transport::connect(address, &transport::ClientTls::default())
        .await
        .with_context(|| format!("cannot reach {address}"))
}

pub fn jobs(channel: Channel) -> JobServiceClient<Channel> {
    JobServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A word-count job over `inputs` (absolute paths) with `chunk_size` bytes per chunk (0: the
/// coordinator's default).
pub fn wordcount(inputs: &[String], chunk_size: u64) -> pb::JobSpec {
    pb::JobSpec {
        inputs: inputs.to_vec(),
        operation: "wordcount".into(),
        chunk_size,
        sort: pb::SortOrder::Key as i32,
        ..Default::default()
    }
}

/// Submits `spec`; returns the job id.
pub async fn submit(
    client: &mut JobServiceClient<Channel>,
    spec: pb::JobSpec,
) -> anyhow::Result<String> {
    let response = client
        .submit_job(pb::SubmitJobRequest { spec: Some(spec) })
        .await
        .context("submit")?
        .into_inner();
    Ok(response.status.context("no status")?.job_id)
}

/// Waits until the job is final; fails unless it succeeded. Returns its last status.
pub async fn wait(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
) -> anyhow::Result<pb::JobStatus> {
    let mut updates = client
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.to_owned(),
        })
        .await
        .context("watch")?
        .into_inner();
    while let Some(status) = updates.message().await.context("watch stream")? {
        let state = pb::JobState::try_from(status.state).unwrap_or(pb::JobState::Unspecified);
        match state {
            pb::JobState::Succeeded => return Ok(status),
            pb::JobState::Failed | pb::JobState::Cancelled => {
                bail!("job {job_id} ended {state:?}: {}", status.error)
            }
            _ => {}
        }
    }
    bail!("watch of job {job_id} ended before the job did")
}

/// Every result row of a finished job, in output order.
pub async fn result(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
) -> anyhow::Result<Vec<pb::Entry>> {
    let mut batches = client
        .get_result(pb::GetResultRequest {
            job_id: job_id.to_owned(),
        })
        .await
        .context("result")?
        .into_inner();
    let mut rows = Vec::new();
    while let Some(batch) = batches.message().await.context("result stream")? {
        rows.extend(batch.rows);
    }
    Ok(rows)
}

/// User plus system CPU time a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').context("odd stat line")? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let (utime, stime): (u64, u64) = (fields[11].parse()?, fields[12].parse()?);
    // Linux reports these in clock ticks, 100 per second on every mainstream configuration.
    Ok(Duration::from_millis((utime + stime) * 10))
}

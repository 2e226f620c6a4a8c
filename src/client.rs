//! The job client used by `submit-job` (and local mode): connects, turns gRPC statuses into
//! one-line errors, and streams results.

use std::time::Duration;

use anyhow::{Context, anyhow};
use fanfold_common::ids::JobId;
use fanfold_common::partial::Row;
use fanfold_common::spec::{JobSpec, JobStatus};
use fanfold_proto::transport::{ClientSecurity, Connection};
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::job_service_client::JobServiceClient;
use fanfold_proto::{MAX_MESSAGE_BYTES, transport};

/// How long a watch keeps trying to reach a coordinator that went away (e.g. restarting).
const RECONNECT_FOR: Duration = Duration::from_secs(120);

pub struct Client {
    inner: JobServiceClient<Connection>,
    address: String,
    security: ClientSecurity,
}

impl Client {
    /// Connects, failing fast with a clear message if nothing answers at `address`; every
    /// request presents `security`'s token.
    pub async fn connect(address: &str, security: &ClientSecurity) -> anyhow::Result<Self> {
        let inner = Self::channel(address, security).await?;
        Ok(Client {
            inner,
            address: address.to_owned(),
            security: security.clone(),
        })
    }

    async fn channel(
        address: &str,
        security: &ClientSecurity,
    ) -> anyhow::Result<JobServiceClient<Connection>> {
        let channel = transport::dial(address, security)
            .await
            .map_err(|e| anyhow!(fanfold_common::error_chain(&e)))
            .with_context(|| format!("cannot reach the coordinator at {address}"))?;
        Ok(JobServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    fn error(&self, status: tonic::Status) -> anyhow::Error {
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown
                if status.message().contains("transport") || status.message().is_empty() =>
            {
                anyhow!(
                    "lost the coordinator at {}: {}",
                    self.address,
                    status.message()
                )
            }
            _ => anyhow!("{}", status.message()),
        }
    }

    pub async fn submit(&mut self, spec: &JobSpec) -> anyhow::Result<JobStatus> {
        let response = self
            .inner
            .submit_job(pb::SubmitJobRequest {
                spec: Some(spec.into()),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        decode(
            response
                .status
                .ok_or_else(|| anyhow!("coordinator sent no status"))?,
            &self.address,
        )
    }

    pub async fn status(&mut self, id: JobId) -> anyhow::Result<JobStatus> {
        let request = pb::GetJobRequest {
            job_id: id.to_string(),
        };
        let status = self
            .inner
            .get_job(request)
            .await
            .map_err(|s| self.error(s))?;
        decode(status.into_inner(), &self.address)
    }

    pub async fn list(&mut self) -> anyhow::Result<Vec<JobStatus>> {
        let jobs = self
            .inner
            .list_jobs(pb::ListJobsRequest {})
            .await
            .map_err(|s| self.error(s))?;
        jobs.into_inner()
            .jobs
            .into_iter()
            .map(|j| decode(j, &self.address))
            .collect()
    }

    pub async fn cancel(&mut self, id: JobId) -> anyhow::Result<JobStatus> {
        let request = pb::CancelJobRequest {
            job_id: id.to_string(),
        };
        let status = self
            .inner
            .cancel_job(request)
            .await
            .map_err(|s| self.error(s))?;
        decode(status.into_inner(), &self.address)
    }

    /// Follows a job until it is final, calling `on_update` with each status; returns the last.
    /// Rides through a coordinator restart: while the connection is lost it keeps reconnecting
    /// and watching again, for up to [`RECONNECT_FOR`].
    pub async fn watch(
        &mut self,
        id: JobId,
        mut on_update: impl FnMut(&JobStatus),
    ) -> anyhow::Result<JobStatus> {
        // When the coordinator was lost, if it is now.
        let mut lost_since: Option<tokio::time::Instant> = None;
        loop {
            let request = pb::WatchJobRequest {
                job_id: id.to_string(),
            };
            let lost = match self.inner.watch_job(request).await {
                Ok(updates) => {
                    let mut updates = updates.into_inner();
                    loop {
                        match updates.message().await {
                            Ok(Some(update)) => {
                                let status = decode(update, &self.address)?;
                                if lost_since.take().is_some() {
                                    eprintln!(
                                        "submit-job: reconnected; job {id} is {}",
                                        status.state.as_str()
                                    );
                                }
                                on_update(&status);
                                if status.state.is_final() {
                                    return Ok(status);
                                }
                            }
                            Ok(None) => break None,
                            Err(status) => break Some(status),
                        }
                    }
                }
                Err(status) => Some(status),
            };
            match lost {
                Some(status) if status.code() == tonic::Code::NotFound && lost_since.is_some() => {
                    return Err(anyhow!(
                        "job {id} is gone: the coordinator restarted without its state"
                    ));
                }
                Some(status) if !is_connection_loss(&status) => return Err(self.error(status)),
                _ => self.reconnect(id, &mut lost_since).await?,
            }
        }
    }

    /// Waits a moment and dials the coordinator again after the connection was lost, noting
    /// when it was first lost; gives up once it has been gone for [`RECONNECT_FOR`].
    async fn reconnect(
        &mut self,
        id: JobId,
        lost_since: &mut Option<tokio::time::Instant>,
    ) -> anyhow::Result<()> {
        let since = match *lost_since {
            Some(since) => since,
            None => {
                eprintln!(
                    "submit-job: lost the coordinator at {}; reconnecting",
                    self.address
                );
                *lost_since.insert(tokio::time::Instant::now())
            }
        };
        if since.elapsed() >= RECONNECT_FOR {
            return Err(anyhow!(
                "gave up on job {id}: the coordinator at {} has been unreachable for \
                 {RECONNECT_FOR:?}",
                self.address
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(inner) = Self::channel(&self.address, &self.security).await {
            self.inner = inner;
        }
        Ok(())
    }

    /// Streams a finished job's rows into `sink`, in output order. Rides through a coordinator
    /// restart like [`Client::watch`]: a finished result is durable and its order fixed, so
    /// after reconnecting it asks again and skips the rows it already has.
    pub async fn result(
        &mut self,
        id: JobId,
        mut sink: impl FnMut(Row) -> std::io::Result<()>,
    ) -> anyhow::Result<u64> {
        let mut rows = 0;
        let mut lost_since: Option<tokio::time::Instant> = None;
        loop {
            let request = pb::GetResultRequest {
                job_id: id.to_string(),
            };
            let lost = match self.inner.get_result(request).await {
                Ok(batches) => {
                    let mut batches = batches.into_inner();
                    let mut seen = 0;
                    loop {
                        match batches.message().await {
                            Ok(Some(batch)) => {
                                if lost_since.take().is_some() {
                                    eprintln!(
                                        "submit-job: reconnected; fetching job {id}'s result"
                                    );
                                }
                                for entry in batch.rows {
                                    seen += 1;
                                    if seen <= rows {
                                        continue; // delivered before the connection was lost
                                    }
                                    sink(Row::try_from(entry)?)
                                        .context("cannot write the result")?;
                                    rows += 1;
                                }
                            }
                            Ok(None) => return Ok(rows),
                            Err(status) => break status,
                        }
                    }
                }
                Err(status) => status,
            };
            if !is_connection_loss(&lost) {
                return Err(self.error(lost));
            }
            self.reconnect(id, &mut lost_since).await?;
        }
    }
}

/// A status that means the connection went away, not that the request was refused.
fn is_connection_loss(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    )
}

fn decode(status: pb::JobStatus, dialled: &str) -> anyhow::Result<JobStatus> {
    let mut status =
        JobStatus::try_from(status).context("malformed job status from the coordinator")?;
    if let Some(url) = &mut status.page_url {
        *url = reachable_url(url, dialled);
    }
    Ok(status)
}

/// A page URL whose host is unspecified (a coordinator serving on 0.0.0.0 or `[::]`) with
/// the host this client dialled instead.
fn reachable_url(url: &str, dialled: &str) -> String {
    let host_of = |address: &str| {
        let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.rfind(':') {
            Some(colon) if !authority.ends_with(']') => authority[..colon].to_owned(),
            _ => authority.to_owned(),
        }
    };
    for unspecified in ["0.0.0.0", "[::]"] {
        let prefix = format!("http://{unspecified}:");
        if let Some(rest) = url.strip_prefix(&prefix) {
            return format!("http://{}:{rest}", host_of(dialled));
        }
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::reachable_url;

    #[test]
    fn an_unspecified_page_host_becomes_the_dialled_one() {
        let page = "http://0.0.0.0:8080/jobs/j";
        assert_eq!(
            reachable_url(page, "http://10.1.2.3:7077"),
            "http://10.1.2.3:8080/jobs/j"
        );
        assert_eq!(
            reachable_url("http://[::]:8080/jobs/j", "coord.example:7077"),
            "http://coord.example:8080/jobs/j"
        );
        assert_eq!(
            reachable_url(page, "http://[fd00::1]:7077"),
            "http://[fd00::1]:8080/jobs/j"
        );
        let kept = "http://127.0.0.1:8080/jobs/j";
        assert_eq!(reachable_url(kept, "http://10.1.2.3:7077"), kept);
    }
}

//! The JobService gRPC adapter: converts wire types, hands submissions to intake, asks the
//! scheduler, and maps errors to gRPC statuses in one place each.

use std::pin::Pin;
use std::sync::Arc;

use fanfold_common::ids::JobId;
use fanfold_common::spec::JobSpec;
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::job_service_server::JobService;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use crate::auth::Principal;
use crate::intake::{self, IntakeError};
use crate::job::JobResult;
use crate::metrics::Metrics;
use crate::parts::{Part, PartReader};
use crate::scheduler::{Handle, JobError};

/// Rows per `ResultBatch` message.
const ROWS_PER_BATCH: usize = 4096;

pub struct Api {
    pub scheduler: Handle,
    pub metrics: Metrics,
    /// The HTTP port's base URL (`http://host:port`), for each status's page URL.
    pub page_base: Option<Arc<str>>,
    pub intake: intake::Rules,
    /// How planning reaches the workers that list their own files.
    pub workers: crate::worker_files::WorkerFiles,
    /// Callers present tokens (then only admins may write outside output roots).
    pub tokens_required: bool,
    /// Submissions planned at once; the rest wait their turn (a burst of submissions cannot
    /// take every blocking thread).
    pub planning: Arc<tokio::sync::Semaphore>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

/// The one mapping from refused submissions to gRPC statuses.
fn refused(e: IntakeError) -> Status {
    match e {
        IntakeError::Interrupted(_) => Status::unavailable(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// The one mapping from job errors to gRPC statuses.
fn status(e: JobError) -> Status {
    match e {
        JobError::NotFound(_) | JobError::Expired { .. } => Status::not_found(e.to_string()),
        JobError::Limit(_) => Status::resource_exhausted(e.to_string()),
        JobError::NoResult { .. } => Status::failed_precondition(e.to_string()),
        JobError::Finishing(_) => Status::unavailable(e.to_string()),
        JobError::ShuttingDown | JobError::WorkerRefused(_) => Status::unavailable(e.to_string()),
    }
}

fn job_id(raw: &str) -> Result<JobId, Status> {
    raw.parse()
        .map_err(|e: fanfold_common::ids::BadJobId| Status::invalid_argument(e.to_string()))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A status on the wire, with its page's URL when there is an HTTP port.
fn wire_status(status: &fanfold_common::spec::JobStatus, page_base: Option<&str>) -> pb::JobStatus {
    let mut wire = pb::JobStatus::from(status);
    if let Some(base) = page_base {
        wire.page_url = crate::web::page_url(base, status.id);
    }
    wire
}

/// The caller the authentication interceptor found (crate::auth::Interceptor); a request
/// without one is refused, never served as someone.
fn caller<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no principal"))
}

/// Refuses what `who`'s role does not grant, naming the principal and the action only.
fn granted(allowed: bool, who: &Principal, action: impl FnOnce() -> String) -> Result<(), Status> {
    who.grant(allowed, action)
        .map_err(Status::permission_denied)
}

impl Api {
    fn wire(&self, status: &fanfold_common::spec::JobStatus) -> pb::JobStatus {
        wire_status(status, self.page_base.as_deref())
    }

    /// Counts the request by method and answer, logs it with its principal, and returns the
    /// answer.
    fn counted<T>(
        &self,
        method: &'static str,
        who: &Principal,
        answer: Result<T, Status>,
    ) -> Result<T, Status> {
        self.metrics.grpc(method, &answer);
        match &answer {
            Ok(_) => tracing::info!(principal = %who.name, method, outcome = "ok", "request"),
            Err(status) => tracing::info!(
                principal = %who.name,
                method,
                outcome = ?status.code(),
                "request refused"
            ),
        }
        answer
    }

    /// Job `raw`'s status, if `who` may see it.
    async fn visible(
        &self,
        who: &Principal,
        raw: &str,
    ) -> Result<fanfold_common::spec::JobStatus, Status> {
        let id = job_id(raw)?;
        let job = self.scheduler.get(id).await.map_err(status)?;
        granted(who.may_see(&job), who, || format!("see job {id}"))?;
        Ok(job)
    }
}

#[tonic::async_trait]
impl JobService for Api {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let Ok(who) = caller(&request) else {
            return Err(Status::unauthenticated("no principal"));
        };
        let answer = async {
            granted(who.may_submit(), &who, || "submit jobs".into())?;
            let mut spec: JobSpec = request
                .into_inner()
                .spec
                .ok_or_else(|| Status::invalid_argument("missing field 'spec'"))?
                .try_into()?;
            spec.owner = Some(who.name.to_string());
            let runs_programs = self
                .intake
                .registry
                .build(&spec.operation, &spec.options)
                .is_ok_and(|op| op.runs_programs());
            granted(
                spec.output.is_none()
                    || !self.intake.output_roots.is_empty()
                    || !self.tokens_required
                    || who.role == crate::auth::Role::Admin,
                &who,
                || "write an output directory: this coordinator has no --output-root".into(),
            )?;
            granted(who.programs || !runs_programs, &who, || {
                format!(
                    "run programs (operation '{}'): its line in the tokens file needs +programs",
                    spec.operation
                )
            })?;
            let permit = Arc::clone(&self.planning)
                .acquire_owned()
                .await
                .map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
            let (spec, plan) = intake::admit(spec, &self.intake, Some(&self.workers), Some(permit))
                .await
                .map_err(refused)?;
            let status = self.scheduler.submit(spec, plan).await.map_err(status)?;
            Ok(Response::new(pb::SubmitJobResponse {
                status: Some(self.wire(&status)),
            }))
        }
        .await;
        self.counted("SubmitJob", &who, answer)
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        let who = caller(&request)?;
        let answer = async {
            let job = self.visible(&who, &request.get_ref().job_id).await?;
            Ok(Response::new(self.wire(&job)))
        }
        .await;
        self.counted("GetJob", &who, answer)
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let who = caller(&request)?;
        let answer = async {
            granted(who.may_see_workers(), &who, || "list jobs".into())?;
            let jobs = self.scheduler.list().await.map_err(status)?;
            Ok(Response::new(pb::ListJobsResponse {
                jobs: jobs
                    .iter()
                    .filter(|j| who.may_see(j))
                    .map(|j| self.wire(j))
                    .collect(),
            }))
        }
        .await;
        self.counted("ListJobs", &who, answer)
    }

    type WatchJobStream = BoxStream<pb::JobStatus>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let who = caller(&request)?;
        let answer = async {
            let id = self.visible(&who, &request.get_ref().job_id).await?.id;
            let mut updates = self.scheduler.watch(id).await.map_err(status)?;
            let (tx, rx) = mpsc::channel(4);
            let shutdown = self.shutdown.clone();
            let page_base = self.page_base.clone();
            self.tasks.spawn(async move {
                loop {
                    let current = updates.borrow_and_update().clone();
                    let last = current.state.is_final();
                    if tx.send(Ok(wire_status(&current, page_base.as_deref()))).await.is_err() || last {
                        return;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            let _ = tx.send(Err(Status::unavailable("the coordinator is shutting down"))).await;
                            return;
                        }
                        _ = tx.closed() => return,
                        changed = updates.changed() => if changed.is_err() { return },
                    }
                }
            });
            Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as Self::WatchJobStream))
        }
        .await;
        self.counted("WatchJob", &who, answer)
    }

    type GetResultStream = BoxStream<pb::ResultBatch>;

    async fn get_result(
        &self,
        request: Request<pb::GetResultRequest>,
    ) -> Result<Response<Self::GetResultStream>, Status> {
        let who = caller(&request)?;
        let answer = async {
            let id = self.visible(&who, &request.get_ref().job_id).await?.id;
            let result = self
                .scheduler
                .result_when_ended(id, &self.shutdown)
                .await
                .map_err(status)?;
            let rows = match result {
                JobResult::Rows(rows) => rows,
                JobResult::Parts(parts) => return Ok(Response::new(stream_parts(parts))),
            };
            let batches = rows.len().div_ceil(ROWS_PER_BATCH);
            // Batches are built lazily as the client reads, from the shared finished result.
            let stream = tokio_stream::iter((0..batches).map(move |i| {
                let rows = Arc::clone(&rows);
                let end = rows.len().min((i + 1) * ROWS_PER_BATCH);
                Ok(pb::ResultBatch {
                    rows: rows[i * ROWS_PER_BATCH..end]
                        .iter()
                        .cloned()
                        .map(Into::into)
                        .collect(),
                })
            }));
            Ok(Response::new(Box::pin(stream) as Self::GetResultStream))
        }
        .await;
        self.counted("GetResult", &who, answer)
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        let who = caller(&request)?;
        let answer = async {
            let id = job_id(&request.get_ref().job_id)?;
            let job = self.scheduler.get(id).await.map_err(status)?;
            granted(who.may_cancel(&job), &who, || format!("cancel job {id}"))?;
            let job = self.scheduler.cancel(id).await.map_err(status)?;
            Ok(Response::new(self.wire(&job)))
        }
        .await;
        self.counted("CancelJob", &who, answer)
    }
}

/// A partitioned job's rows, read from its part files in partition order as the client reads;
/// at most one batch is in memory.
fn stream_parts(parts: Arc<Vec<Part>>) -> BoxStream<pb::ResultBatch> {
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        // Every part is opened first: a result that expires while it streams (retention
        // removes its files) is still read whole from the open files.
        let mut readers = Vec::with_capacity(parts.len());
        for (n, part) in parts.iter().enumerate() {
            match PartReader::open(&part.path) {
                Ok(reader) => readers.push((part, reader)),
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(format!(
                        "cannot read part {n} of the result: {e}"
                    ))));
                    return;
                }
            }
        }
        for (part, mut reader) in readers {
            loop {
                match reader.batch(ROWS_PER_BATCH) {
                    Ok(rows) if rows.is_empty() => break,
                    Ok(rows) => {
                        if tx.blocking_send(Ok(pb::ResultBatch { rows })).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "cannot read part {}: {e}",
                            part.path.display()
                        ))));
                        return;
                    }
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

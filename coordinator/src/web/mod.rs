//! The coordinator's HTTP port (axum): status pages, the JSON API under `/api/v1/`, Prometheus
//! `/metrics`, and `/healthz` and `/readyz`. Every route reads the scheduler's snapshots
//! through the same [`Handle`] the gRPC adapter uses, so a page, the API and `submit-job
//! status` show the same job the same way (the JSON job object is `submit-job status --json`'s,
//! `fanfold_common::status_view`).
//!
//! Pages are rendered on the server ([`pages`]) and readable without JavaScript; a little
//! plain JavaScript (`assets/page.js`, embedded in the binary like the stylesheet) refreshes a
//! page's main part once a second and stops when the job is final. Nothing is fetched from
//! anywhere else.
//!
//! The only route that changes anything is a job's cancel (`POST`). A browser's cross-site
//! form post carries an `Origin` that differs from the `Host` it was sent to: such a request
//! is refused, so a page elsewhere cannot cancel jobs through a user's browser. Every request
//! must name this port by an IP address, `localhost`, a single-label name (a compose service,
//! a Kubernetes Service in its namespace) or a name it is told (`--http-advertise`'s host,
//! `--http-allowed-hosts`): a site whose name an attacker re-points at this address (DNS
//! rebinding) reaches the port with its own dotted name as `Host`, and is refused, whether the
//! port is on loopback or published from a container. Pages may not be framed by other sites
//! (`frame-ancestors 'none'`), so the cancel button cannot be clickjacked.
//!
//! With a tokens file, every page and API route asks for a token, as `Authorization: Bearer`
//! or as a browser's Basic credentials (any user name, the token as the password), and shows
//! only what the principal's role grants ([`crate::auth::Principal`]), as the gRPC API does.
//! `/healthz`, `/readyz`, `/metrics` (no job data, no per-job labels) and the static assets
//! stay open for probes and scrapers.

mod guard;
mod pages;
mod timeline;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use fanfold_common::ids::JobId;
use fanfold_common::spec::JobStatus;
use fanfold_common::status_view::StatusView;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Principal};
use crate::metrics::Metrics;
use crate::scheduler::{DetailQuery, Handle, JobError};

/// What every route shares.
#[derive(Clone)]
pub struct Web {
    pub scheduler: Handle,
    pub metrics: Metrics,
    /// `http://host:port` of this port, for page URLs in statuses.
    pub base: Arc<str>,
    /// Dotted host names this port answers to besides IP addresses, `localhost` and
    /// single-label names.
    pub allowed_hosts: Arc<Vec<String>>,
    /// Who may look: the same principals as the gRPC port's.
    pub access: Access,
    pub shutdown: CancellationToken,
}

/// A job's page URL under `base`.
pub fn page_url(base: &str, id: JobId) -> String {
    format!("{base}/jobs/{id}")
}

/// The base URL a listener on `addr` is reached at.
pub fn base_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}

/// Serves `web` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, web: Web) -> std::io::Result<()> {
    let shutdown = web.shutdown.clone();
    axum::serve(listener, router(web))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(index_page))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/cancel", post(cancel_form))
        .route("/workers", get(workers_page))
        .route("/assets/page.js", get(script))
        .route("/assets/page.css", get(stylesheet))
        .route("/api/v1/jobs", get(api_jobs))
        .route("/api/v1/jobs/{id}", get(api_job))
        .route("/api/v1/jobs/{id}/chunks", get(api_chunks))
        .route("/api/v1/jobs/{id}/reduces", get(api_reduces))
        .route("/api/v1/jobs/{id}/timeline", get(api_timeline))
        .route("/api/v1/jobs/{id}/cancel", post(api_cancel))
        .route("/api/v1/workers", get(api_workers))
        .route("/api/v1/version", get(api_version))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::guard,
        ))
        .with_state(web)
}

/// Refuses what `who`'s role does not grant.
fn granted(allowed: bool, who: &Principal, action: impl FnOnce() -> String) -> Result<(), Failure> {
    who.grant(allowed, action)
        .map_err(|refused| Failure(StatusCode::FORBIDDEN, refused))
}

/// An error as an HTTP answer: JSON `{"error": ...}` with a status code.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (self.0, Json(Body { error: self.1 })).into_response()
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        let code = match e {
            JobError::NotFound(_) | JobError::Expired { .. } => StatusCode::NOT_FOUND,
            JobError::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            JobError::NoResult { .. } => StatusCode::CONFLICT,
            JobError::Finishing(_) | JobError::ShuttingDown | JobError::WorkerRefused(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Failure(code, e.to_string())
    }
}

fn parse_id(raw: &str) -> Result<JobId, Failure> {
    raw.parse()
        .map_err(|e: fanfold_common::ids::BadJobId| Failure(StatusCode::BAD_REQUEST, e.to_string()))
}

impl Web {
    /// A status with its page URL, as `submit-job` receives it.
    fn paged(&self, mut status: JobStatus) -> JobStatus {
        status.page_url = Some(page_url(&self.base, status.id));
        status
    }

    /// A job in detail for the API: `limit` chunks from `offset`, the latest `spans` attempts
    /// (the page asks for its slowest chunks too).
    async fn detail(
        &self,
        id: JobId,
        offset: u64,
        limit: u64,
        spans: usize,
    ) -> Result<crate::scheduler::JobDetail, JobError> {
        let query = DetailQuery {
            offset,
            limit,
            spans,
            slowest: false,
        };
        self.scheduler.detail(id, query).await
    }

    /// Every job `who` may see, newest first.
    async fn jobs(&self, who: &Principal) -> Result<Vec<JobStatus>, Failure> {
        granted(who.may_see_workers(), who, || "list jobs".into())?;
        let mut jobs = self.scheduler.list().await?;
        jobs.retain(|j| who.may_see(j));
        jobs.reverse();
        Ok(jobs.into_iter().map(|j| self.paged(j)).collect())
    }

    /// Job `id`'s status, if `who` may see it.
    async fn visible(&self, who: &Principal, id: JobId) -> Result<JobStatus, Failure> {
        let status = self.scheduler.get(id).await?;
        granted(who.may_see(&status), who, || format!("see job {id}"))?;
        Ok(self.paged(status))
    }

    /// The fleet's workers, if `who` may see them.
    async fn workers(&self, who: &Principal) -> Result<Vec<crate::scheduler::WorkerRow>, Failure> {
        granted(who.may_see_workers(), who, || "see the workers".into())?;
        Ok(self.scheduler.workers().await?)
    }

    /// Cancels job `id`, if `who` may.
    async fn cancel(&self, who: &Principal, id: JobId) -> Result<JobStatus, Failure> {
        let status = self.scheduler.get(id).await?;
        granted(who.may_cancel(&status), who, || format!("cancel job {id}"))?;
        Ok(self.paged(self.scheduler.cancel(id).await?))
    }
}

#[derive(Debug, Deserialize)]
struct ChunksQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    100
}

/// Chunks per API page, at most.
const MAX_LIMIT: u64 = 10_000;

/// Attempts drawn in a job page's timeline, at most (the latest ones).
const PAGE_SPANS: usize = 2_000;

#[derive(Debug, Deserialize)]
struct PageQuery {
    /// `main`: only the page's main part, for the live refresh.
    part: Option<String>,
    /// The first chunk of the chunk table.
    #[serde(default)]
    chunks: u64,
}

async fn index_page(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, Failure> {
    let jobs = web.jobs(&who).await?;
    let workers = web.workers(&who).await?;
    Ok(Html(pages::index(&jobs, &workers, q.part.is_some())))
}

async fn job_page(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, Failure> {
    let id = parse_id(&id)?;
    match web.visible(&who, id).await {
        Err(Failure(StatusCode::NOT_FOUND, _)) => {}
        Err(refused) => return Err(refused),
        Ok(_) => {}
    }
    let query = DetailQuery {
        offset: q.chunks,
        limit: pages::CHUNKS_PER_PAGE,
        spans: PAGE_SPANS,
        slowest: true,
    };
    let detail = match web.scheduler.detail(id, query).await {
        Ok(detail) => detail,
        Err(e @ (JobError::NotFound(_) | JobError::Expired { .. })) => {
            let page = match e {
                JobError::Expired { .. } => pages::not_found(&format!("{e}.")),
                _ => pages::not_found(&format!("No job {id} on this coordinator.")),
            };
            return Ok((StatusCode::NOT_FOUND, Html(page)).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let mut detail = detail;
    detail.status = web.paged(detail.status);
    Ok(Html(pages::job(&detail, q.chunks, q.part.is_some())).into_response())
}

async fn workers_page(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, Failure> {
    let workers = web.workers(&who).await?;
    Ok(Html(pages::workers(&workers, q.part.is_some())))
}

async fn cancel_form(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Redirect, Failure> {
    guard::same_origin(&headers)?;
    let id = parse_id(&id)?;
    web.cancel(&who, id).await?;
    Ok(Redirect::to(&format!("/jobs/{id}")))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/page.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/page.css"),
    )
}

async fn api_jobs(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Failure> {
    let jobs = web.jobs(&who).await?;
    let views: Vec<StatusView> = jobs.iter().map(StatusView::from).collect();
    Ok(Json(views).into_response())
}

async fn api_job(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let status = web.visible(&who, parse_id(&id)?).await?;
    Ok(Json(StatusView::from(&status)).into_response())
}

#[derive(Serialize)]
struct ChunkPage<'a> {
    job_id: String,
    chunks_total: u64,
    offset: u64,
    limit: u64,
    chunks: &'a [crate::job::ChunkRow],
}

async fn api_chunks(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ChunksQuery>,
) -> Result<Response, Failure> {
    let id = web.visible(&who, parse_id(&id)?).await?.id;
    let limit = q.limit.min(MAX_LIMIT);
    let detail = web.detail(id, q.offset, limit, 0).await?;
    Ok(Json(ChunkPage {
        job_id: id.to_string(),
        chunks_total: detail.status.chunks_total,
        offset: q.offset,
        limit,
        chunks: &detail.chunks,
    })
    .into_response())
}

async fn api_reduces(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let id = web.visible(&who, parse_id(&id)?).await?.id;
    let detail = web.detail(id, 0, 0, 0).await?;
    Ok(Json(detail.reduces).into_response())
}

async fn api_timeline(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let id = web.visible(&who, parse_id(&id)?).await?.id;
    let detail = web.detail(id, 0, 0, usize::MAX).await?;
    Ok(Json(detail.timeline).into_response())
}

async fn api_cancel(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    guard::same_origin(&headers)?;
    let status = web.cancel(&who, parse_id(&id)?).await?;
    Ok(Json(StatusView::from(&status)).into_response())
}

async fn api_workers(
    State(web): State<Web>,
    Extension(who): Extension<Principal>,
) -> Result<Response, Failure> {
    Ok(Json(web.workers(&who).await?).into_response())
}

async fn api_version() -> Response {
    #[derive(Serialize)]
    struct Version {
        version: &'static str,
        protocol: u32,
    }
    Json(Version {
        version: fanfold_common::VERSION,
        protocol: fanfold_proto::PROTOCOL,
    })
    .into_response()
}

async fn metrics(State(web): State<Web>) -> Result<Response, Failure> {
    let gauges = web.scheduler.gauges().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        web.metrics.render(&gauges),
    )
        .into_response())
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the state is loaded (it is before this port serves) and while the scheduler
/// answers and the coordinator is not shutting down.
async fn readyz(State(web): State<Web>) -> Response {
    if web.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match web.scheduler.gauges().await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

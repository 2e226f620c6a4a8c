//! What every request of the HTTP port passes first: the `Host` check (DNS rebinding), the
//! principal from its `Authorization` (pages and the API; probes, the scrape and assets stay
//! open), the headers that forbid framing and sniffing, and for a cancel the `Origin` check.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Failure, Web};
use crate::auth::Access;

/// Whether a request naming `host` (a `Host` header: a name or address, maybe with a port)
/// is served: IP addresses, `localhost`, single-label names and the `allowed` names.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    !name.is_empty()
        && (name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || !name.contains('.')
            || allowed.iter().any(|a| a.eq_ignore_ascii_case(name)))
}

/// Refuses requests that name a host this port does not answer to (DNS rebinding), and
/// forbids framing the pages elsewhere (clickjacking).
pub(super) async fn guard(
    State(web): State<Web>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut response = if host_allowed(&host, &web.allowed_hosts) {
        authenticated(&web.access, request, next).await
    } else {
        Failure(
            StatusCode::FORBIDDEN,
            format!(
                "this port does not answer to Host '{host}': name it by address or list the \
                 name in --http-allowed-hosts"
            ),
        )
        .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Routes anyone may ask for: probes, the scrape (no job data) and the static assets.
fn open_route(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics") || path.starts_with("/assets/")
}

/// Runs the request as the principal its `Authorization` names; asks for credentials (401,
/// with a Basic challenge a browser answers) when there is none or it is not valid.
async fn authenticated(
    access: &Access,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if open_route(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    match access.authenticate(presented) {
        Ok(principal) => {
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let name = principal.name.clone();
            request.extensions_mut().insert(principal);
            let response = next.run(request).await;
            let status = response.status().as_u16();
            // Reads that succeed are many (a page refreshes every second): debug level.
            if method == axum::http::Method::GET && response.status().is_success() {
                tracing::debug!(principal = %name, %method, path, status, "HTTP request");
            } else {
                tracing::info!(principal = %name, %method, path, status, "HTTP request");
            }
            response
        }
        Err(e) => {
            tracing::warn!(path = %request.uri().path(), outcome = "unauthenticated", "HTTP request refused: {e}");
            let mut response = Failure(StatusCode::UNAUTHORIZED, e.to_string()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"fanfold\", charset=\"UTF-8\""),
            );
            response
        }
    }
}

/// Refuses a browser's cross-site request: its `Origin`, when present, must name the host it
/// was sent to.
pub(super) fn same_origin(headers: &HeaderMap) -> Result<(), Failure> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default();
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(Failure(
            StatusCode::FORBIDDEN,
            format!("cross-origin request from {origin} refused"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn addresses_plain_names_and_listed_names_are_served_other_names_are_not() {
        let listed = vec!["coord.example.org".to_owned()];
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "10.0.0.1:8080",
            "[::1]:80",
            "[fd00::1]",
            "coordinator:8080",
            "fanfold-coordinator",
            "Coord.Example.org:8080",
        ] {
            assert!(host_allowed(host, &listed), "{host}");
        }
        for host in [
            "",
            ":80",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(host, &listed), "{host}");
        }
    }
}

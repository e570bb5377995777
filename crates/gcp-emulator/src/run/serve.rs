//! Serving a service's traffic: a request to `/_run/HOST/PATH` (or one whose `Host` is a Cloud Run host) reaches
//! the revision Cloud Run would pick for it, forwarded to that revision's process and streamed back. Not an API
//! call: no latency, faults, quotas, counters or request log.

use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use super::supervisor::{Phase, RequestGuard, Supervisor};
use crate::App;
use crate::model::Outcome;
use crate::wire::Caller;

/// Path prefix of served traffic: `/_run/HOST/...`.
const RUN_PREFIX: &str = "/_run/";
/// How long a request waits for a cold start (Cloud Run's default request timeout).
const COLD_START_WAIT: Duration = Duration::from_secs(300);
/// How long a request waits for an instance being stopped to end before one is started (its grace and a margin).
const STOPPING_WAIT: Duration = Duration::from_secs(5);
/// Headers that belong to one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
/// Cloud Run reads the IAM token from here when the `Authorization` header is the application's own.
const SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";

/// A request for a service's URL: the Cloud Run host, and the path and query to forward.
#[derive(Debug)]
pub(crate) struct RunRoute {
    pub(crate) host: String,
    pub(crate) path_and_query: String,
}

/// Whether a request is traffic for a service: `/_run/HOST/...`, or any path with a Cloud Run host
/// (`*.run.app`) as its absolute-form host or `Host` header.
pub(crate) fn route(uri: &Uri, headers: &HeaderMap) -> Option<RunRoute> {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Some(rest) = uri.path().strip_prefix(RUN_PREFIX) {
        let (host, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        return Some(RunRoute {
            host: host.to_ascii_lowercase(),
            path_and_query: format!("{path}{query}"),
        });
    }
    let host = uri.host().map(str::to_string).or_else(|| {
        let h = headers.get(header::HOST)?.to_str().ok()?;
        Some(h.split(':').next().unwrap_or(h).to_string())
    })?;
    let host = host.to_ascii_lowercase();
    host.ends_with(".run.app").then(|| RunRoute {
        host,
        path_and_query: format!("{}{query}", uri.path()),
    })
}

/// What the state decided about a request, before any await.
enum Decision {
    Refused(Response),
    /// The revision to forward to, and what to start it with if it has no process.
    Forward {
        revision: String,
        runnable: bool,
        ready: bool,
    },
}

/// Serves one request for a service's URL.
pub(crate) async fn proxy(
    app: &Arc<App>,
    route: RunRoute,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Utc::now();
    let token = headers
        .get(SERVERLESS_AUTHORIZATION)
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|h| h.to_str().ok());
    let roll = rand::random::<f64>();
    let decision = {
        let mut st = app.lock();
        let principal = match st.iam.tokens.caller(token, now) {
            Caller::Principal(p) => Some(p),
            _ => None,
        };
        let mut run = st.cloud_run();
        run.settle(now);
        match run.service_of_host(&route.host) {
            None => Decision::Refused(not_found()),
            Some((name, tag)) => match run.store.services.get(&name) {
                None => Decision::Refused(not_found()),
                Some(s) => {
                    if app.config.enforce_auth && !run.may_invoke(s, principal.as_deref(), now) {
                        Decision::Refused(forbidden(&route.path_and_query))
                    } else {
                        match run.pick_revision(s, tag.as_deref(), roll) {
                            None if tag.is_some() => Decision::Refused(not_found()),
                            None => Decision::Refused(unavailable(
                                "No revision of this service is ready to serve traffic.",
                            )),
                            Some(revision) => {
                                let r = run.store.revisions.get(&revision);
                                Decision::Forward {
                                    runnable: r.is_some_and(|r| run.live_command(r).is_some()),
                                    ready: r.is_some_and(|r| r.outcome == Outcome::Ready),
                                    revision,
                                }
                            }
                        }
                    }
                }
            },
        }
    };
    let (revision, runnable, ready) = match decision {
        Decision::Refused(response) => return response,
        Decision::Forward {
            revision,
            runnable,
            ready,
        } => (revision, runnable, ready),
    };
    let short = revision.rsplit('/').next().unwrap_or("").to_string();
    let (Some(supervisor), true) = (&app.live, runnable) else {
        return unavailable(&format!(
            "Revision {short} has no process: the emulator runs only images given a command (--run-image), and only simulates the start-up of others."
        ));
    };
    // An instance asked to stop just after it was picked takes no request: another one is started.
    for _ in 0..2 {
        if let Err(response) = ensure_serving(app, supervisor, &revision, &short, ready).await {
            return response;
        }
        // Counted from here until the response body ends, so an instance streaming an answer is not idle.
        if let Some((port, guard)) = supervisor.request(&revision) {
            return match forward(port, &route, method, &headers, body, guard).await {
                Ok(response) => response,
                Err(e) => unavailable(&format!("The container of revision {short} did not answer: {e}")),
            };
        }
    }
    unavailable(&format!("Revision {short} is shutting down its instance; retry."))
}

/// Waits until an instance of `revision` serves: the running one, or one started for this request (a cold start)
/// once an instance being stopped has ended.
async fn ensure_serving(
    app: &Arc<App>,
    supervisor: &Arc<Supervisor>,
    revision: &str,
    short: &str,
    ready: bool,
) -> Result<(), Response> {
    if let Some(mut stopping) = supervisor.stopping(revision) {
        let _ = tokio::time::timeout(STOPPING_WAIT, stopping.wait_for(|p| *p == Phase::Ended)).await;
    }
    let existing = supervisor
        .phase(revision)
        .filter(|phase| *phase.borrow() != Phase::Ended);
    let mut phase = match existing {
        Some(phase) => phase,
        // A Ready revision without a process (its process ended, or the state was loaded from a file): a cold
        // start, as Cloud Run starts an instance for a request.
        _ if ready => {
            let launch = {
                let mut st = app.lock();
                let run = st.cloud_run();
                run.store.revisions.get(revision).map(|r| run.launch(r, false))
            };
            match launch {
                Some(Ok(launch)) => supervisor.start(Arc::downgrade(app), launch),
                Some(Err(detail)) => {
                    return Err(unavailable(&format!(
                        "Revision {short} could not be started: {detail}"
                    )));
                }
                None => return Err(not_found()),
            }
        }
        _ => return Err(unavailable(&format!("Revision {short} is not ready."))),
    };
    // Copied out at once: the watch's borrow must not live across an await.
    let settled = tokio::time::timeout(COLD_START_WAIT, phase.wait_for(|p| *p != Phase::Starting))
        .await
        .map(|waited| waited.map(|p| *p));
    match settled {
        Ok(Ok(Phase::Serving(_))) => Ok(()),
        Ok(_) => Err(unavailable(&format!(
            "The container of revision {short} is not running; see its logs at {}",
            supervisor.logs_url(revision)
        ))),
        Err(_) => Err(unavailable(&format!("Revision {short} did not start in time."))),
    }
}

/// One HTTP/1 exchange with a revision's process on a fresh connection.
pub(super) async fn send(
    port: u16,
    request: axum::http::Request<Body>,
) -> Result<axum::http::Response<hyper::body::Incoming>, String> {
    let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| e.to_string())
}

async fn forward(
    port: u16,
    route: &RunRoute,
    method: Method,
    headers: &HeaderMap,
    body: Bytes,
    guard: RequestGuard,
) -> Result<Response, String> {
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(route.path_and_query.as_str())
        .body(Body::from(body))
        .map_err(|e| e.to_string())?;
    let forwarded = request.headers_mut();
    for (name, value) in headers {
        if name != header::HOST && name.as_str() != SERVERLESS_AUTHORIZATION {
            forwarded.append(name.clone(), value.clone());
        }
    }
    strip_hop_by_hop(forwarded);
    // The container sees the host the client addressed, as behind Cloud Run's front end.
    if let Ok(host) = HeaderValue::from_str(&route.host) {
        forwarded.insert(header::HOST, host);
    }
    let response = send(port, request).await?;
    let (mut parts, incoming) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        Body::new(Counted {
            incoming,
            _guard: guard,
        }),
    ))
}

/// A response body that keeps its request counted until it ends (or the client goes away).
struct Counted {
    incoming: Incoming,
    _guard: RequestGuard,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().incoming).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    for name in named {
        headers.remove(name);
    }
}

fn html(status: StatusCode, title: &str, heading: &str, detail: &str) -> Response {
    let page = format!(
        "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>{} {title}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: {heading}</h1>\n<h2>{detail}</h2>\n<h2></h2>\n</body></html>\n",
        status.as_u16()
    );
    let mut response = Response::new(Body::from(page));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    response
}

/// Cloud Run's answer to a caller without `run.routes.invoke`.
fn forbidden(path: &str) -> Response {
    let path = path.split('?').next().unwrap_or("/");
    let escaped = path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    html(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "Forbidden",
        &format!("Your client does not have permission to get URL <code>{escaped}</code> from this server."),
    )
}

/// Google's front end's answer for a host (or tag) that names no service.
fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Page not found",
        "Page not found",
        "The requested URL was not found on this server.",
    )
}

fn unavailable(explanation: &str) -> Response {
    let mut response = Response::new(Body::from(format!("Service Unavailable: {explanation}\n")));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn routes_prefixed_paths_and_run_hosts_only() {
        let none = HeaderMap::new();
        let r = route(
            &"/_run/llm-abc-uc.a.run.app/v1/models?x=1".parse().unwrap(),
            &none,
        )
        .unwrap();
        assert_eq!(r.host, "llm-abc-uc.a.run.app");
        assert_eq!(r.path_and_query, "/v1/models?x=1");
        let bare = route(&"/_run/llm-abc-uc.a.run.app".parse().unwrap(), &none).unwrap();
        assert_eq!(bare.path_and_query, "/");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("tag---llm-abc-uc.a.run.app:80"),
        );
        let by_host = route(&"/health".parse().unwrap(), &headers).unwrap();
        assert_eq!(by_host.host, "tag---llm-abc-uc.a.run.app");
        assert_eq!(by_host.path_and_query, "/health");
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8085"));
        assert!(route(&"/v2/projects/p".parse().unwrap(), &headers).is_none());
    }
}

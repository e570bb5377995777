//! Credentials on the wire: static tokens, anonymous, and Application Default Credentials through the
//! metadata server (what GKE Workload Identity uses), offline: `GCE_METADATA_HOST` points google-cloud-auth
//! at a fake metadata server started here, which also plays Secret Manager so we can see the
//! `Authorization` header the client sends.
//!
//! The environment variable must be set before the credentials read it, and this workspace forbids the
//! `unsafe` `std::env::set_var`, so the client runs in a child process: this test binary re-executes itself
//! running only `mds_child`, with the environment prepared.
#![allow(clippy::unwrap_used, clippy::panic)]

mod fake;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const TOKEN: &str = "ya29.fake-metadata-token";
const ENDPOINT_VAR: &str = "LITELLM_GCP_TEST_ENDPOINT";

#[derive(Clone, Default)]
struct Seen {
    token_requests: Arc<Mutex<u32>>,
    rejected_without_flavor: Arc<Mutex<u32>>,
    api_authorization: Arc<Mutex<Vec<Option<String>>>>,
}

fn has_flavor(headers: &HeaderMap) -> bool {
    headers.get("metadata-flavor").is_some_and(|v| v == "Google")
}

async fn token(State(seen): State<Seen>, headers: HeaderMap) -> Response {
    if !has_flavor(&headers) {
        *seen.rejected_without_flavor.lock().unwrap() += 1;
        return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header").into_response();
    }
    *seen.token_requests.lock().unwrap() += 1;
    let body = format!(r#"{{"access_token":"{TOKEN}","expires_in":3599,"token_type":"Bearer"}}"#);
    (
        [
            ("content-type", "application/json"),
            ("metadata-flavor", "Google"),
        ],
        body,
    )
        .into_response()
}

async fn universe(headers: HeaderMap) -> Response {
    if !has_flavor(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    ([("metadata-flavor", "Google")], "googleapis.com").into_response()
}

/// Any other request is an API call: record its credentials and answer like Secret Manager's GetSecret.
async fn api(State(seen): State<Seen>, request: Request) -> Response {
    let auth = request
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    seen.api_authorization.lock().unwrap().push(auth);
    if request.uri().path() != "/v1/projects/p/secrets/x" {
        return (
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":404,"message":"no","status":"NOT_FOUND"}}"#,
        )
            .into_response();
    }
    let body = r#"{"name":"projects/p/secrets/x","labels":{"managed-by":"litellm-operator"},"etag":"\"1\"","replication":{"automatic":{}}}"#;
    ([("content-type", "application/json")], body).into_response()
}

#[tokio::test]
async fn metadata_server_token_is_fetched_once_and_sent_as_bearer() {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(token),
        )
        .route("/computeMetadata/v1/universe/universe-domain", get(universe))
        .fallback(api)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let exe = std::env::current_exe().unwrap();
    let output = tokio::process::Command::new(exe)
        .args([
            "mds_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GCE_METADATA_HOST", addr.to_string())
        .env(ENDPOINT_VAR, format!("http://{addr}"))
        // Nothing else may provide credentials: no key file, no gcloud ADC file.
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_CLOUD_RUST_LOGGING")
        .env("HOME", std::env::temp_dir().join("litellm-gcp-no-home"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );

    let auth = seen.api_authorization.lock().unwrap().clone();
    assert_eq!(auth.len(), 3, "{auth:?}");
    for a in &auth {
        assert_eq!(a.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    }
    // One shared credential cache: one token fetch for three calls.
    assert_eq!(*seen.token_requests.lock().unwrap(), 1);
    assert_eq!(*seen.rejected_without_flavor.lock().unwrap(), 0);
}

#[tokio::test]
#[ignore = "run in a child process by metadata_server_token_is_fetched_once_and_sent_as_bearer"]
async fn mds_child() {
    use litellm_operator_gcp::{CredentialsSource, Gcp, GcpConfig, SecretName, SecretStore};
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        // Run directly (e.g. `--include-ignored`) rather than by the parent: nothing to do.
        return;
    };
    let config = GcpConfig {
        endpoint: Some(endpoint.parse().unwrap()),
        credentials: CredentialsSource::ApplicationDefault,
        ..GcpConfig::default()
    };
    let gcp = Gcp::connect(&config, &mut prometheus_client::registry::Registry::default())
        .await
        .unwrap();
    for _ in 0..3 {
        let secret = gcp
            .find_secret(&SecretName::new("p", "x"))
            .await
            .unwrap()
            .unwrap();
        assert!(secret.is_managed());
    }
}

#[tokio::test]
async fn static_tokens_are_sent_as_bearer_and_anonymous_sends_nothing() {
    use litellm_operator_gcp::{AccessToken, CredentialsSource, Gcp, GcpConfig, SecretName, SecretStore};
    let fake = fake::Fake::start(|_| fake::error(404, "NOT_FOUND", "no such secret")).await;
    let token = GcpConfig {
        credentials: CredentialsSource::StaticToken(AccessToken::new("static-123")),
        ..GcpConfig::emulator(fake.url.parse().unwrap())
    };
    let anonymous = GcpConfig::emulator(fake.url.parse().unwrap());
    for config in [token, anonymous] {
        let gcp = Gcp::connect(&config, &mut prometheus_client::registry::Registry::default())
            .await
            .unwrap();
        assert_eq!(gcp.find_secret(&SecretName::new("p", "x")).await.unwrap(), None);
    }
    let seen: Vec<_> = fake.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(seen, [Some("Bearer static-123".to_owned()), None]);
}

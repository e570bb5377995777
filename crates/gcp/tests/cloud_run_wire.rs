//! Cloud Run v2 calls on the wire: writes return the operation without waiting for it, only etag-guarded
//! updates are retried, deletes of missing services are done, revisions are paged.
#![allow(clippy::unwrap_used, clippy::panic)]

mod fake;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake::{Fake, error};
use litellm_operator_gcp::{
    CloudRun, Error, Gcp, GcpConfig, RateLimits, RetrySettings, Service, ServiceName,
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

const OP: &str = "projects/p/locations/us-central1/operations/op-1";

async fn connect(url: &str) -> Gcp {
    let config = GcpConfig {
        retry: RetrySettings {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetrySettings::default()
        },
        rate_limits: RateLimits::unlimited(),
        ..GcpConfig::emulator(url.parse().unwrap())
    };
    Gcp::connect(&config, &mut Registry::default()).await.unwrap()
}

fn name() -> ServiceName {
    ServiceName::new("p", "us-central1", "proxy")
}

fn desired() -> Service {
    // The operator builds the full desired service; here one field is enough to see it on the wire.
    serde_json::from_value(json!({"description": "litellm", "labels": {"managed-by": "litellm-operator"}}))
        .unwrap()
}

#[tokio::test]
async fn create_returns_the_pending_operation_and_get_operation_reports_completion() {
    let polls = Arc::new(Mutex::new(0));
    let p = polls.clone();
    let fake = Fake::start(move |seen| match (seen.method.as_str(), seen.path()) {
        ("POST", "/v2/projects/p/locations/us-central1/services") => {
            (200, json!({"name": OP, "done": false}).to_string())
        }
        ("GET", path) if path == format!("/v2/{OP}") => {
            let mut n = p.lock().unwrap();
            *n += 1;
            let done = *n > 1;
            (200, json!({"name": OP, "done": done}).to_string())
        }
        _ => error(404, "NOT_FOUND", "no"),
    })
    .await;
    let gcp = connect(&fake.url).await;
    let op = gcp.create_service(&name(), desired()).await.unwrap();
    assert_eq!((op.name.as_str(), op.done, op.error.clone()), (OP, false, None));
    // Exactly one request: nothing waited on the operation.
    assert_eq!(fake.seen().len(), 1);
    let create = &fake.seen()[0];
    assert!(create.uri.contains("serviceId=proxy"), "{}", create.uri);
    let body: Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(body["description"], "litellm");
    assert!(
        body.get("name").is_none(),
        "name must be left to serviceId: {body}"
    );

    assert!(!gcp.get_operation(OP).await.unwrap().done);
    assert!(gcp.get_operation(OP).await.unwrap().done);
}

#[tokio::test]
async fn a_failed_operation_reports_its_error() {
    let fake = Fake::start(|_| {
        let body = json!({"name": OP, "done": true, "error": {"code": 9, "message": "Revision 'proxy-00002' is not ready"}});
        (200, body.to_string())
    })
    .await;
    let gcp = connect(&fake.url).await;
    let op = gcp.get_operation(OP).await.unwrap();
    let err = op.error.unwrap();
    assert_eq!(err.code, "FAILED_PRECONDITION");
    assert!(err.message.contains("not ready"));
}

#[tokio::test]
async fn creates_are_not_retried_and_updates_only_with_an_etag() {
    let fake = Fake::start(|_| error(503, "UNAVAILABLE", "try again")).await;
    let gcp = connect(&fake.url).await;
    let err = gcp.create_service(&name(), desired()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(fake.count("POST", "/services"), 1);

    gcp.update_service(&name(), desired()).await.unwrap_err();
    assert_eq!(
        fake.count("PATCH", "/services/proxy"),
        1,
        "an unconditional update is not repeated"
    );

    let mut guarded = desired();
    guarded.etag = "\"etag-1\"".to_owned();
    gcp.update_service(&name(), guarded).await.unwrap_err();
    assert_eq!(
        fake.count("PATCH", "/services/proxy"),
        1 + 3,
        "an etag-guarded update is retried to the bound"
    );
    let patch: Value = serde_json::from_str(&fake.seen().last().unwrap().body).unwrap();
    assert_eq!(patch["etag"], "\"etag-1\"");
    assert_eq!(patch["name"], name().to_string());
}

#[tokio::test]
async fn get_and_delete_treat_missing_services_as_absent() {
    let fake = Fake::start(|_| {
        error(
            404,
            "NOT_FOUND",
            "Resource 'proxy' of kind 'SERVICE' does not exist.",
        )
    })
    .await;
    let gcp = connect(&fake.url).await;
    assert!(gcp.get_service(&name()).await.unwrap().is_none());
    assert!(gcp.delete_service(&name()).await.unwrap().is_none());
    assert!(
        gcp.get_revision("projects/p/locations/us-central1/services/proxy/revisions/x")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(fake.count("DELETE", "/services/proxy"), 1);
}

#[tokio::test]
async fn revisions_are_listed_across_pages() {
    let fake = Fake::start(|seen| {
        let rev = |n: u32| json!({"name": format!("projects/p/locations/us-central1/services/proxy/revisions/proxy-0000{n}")});
        if seen.uri.contains("pageToken=next") {
            (200, json!({"revisions": [rev(3)]}).to_string())
        } else {
            (200, json!({"revisions": [rev(1), rev(2)], "nextPageToken": "next"}).to_string())
        }
    })
    .await;
    let gcp = connect(&fake.url).await;
    let revisions = gcp.list_revisions(&name()).await.unwrap();
    let names: Vec<_> = revisions
        .iter()
        .map(|r| r.name.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["proxy-00001", "proxy-00002", "proxy-00003"]);
    assert_eq!(fake.count("GET", "/services/proxy/revisions"), 2);
}

//! Least privilege on the Kubernetes side: the operator watches Secrets by metadata only on the wire (the API
//! server sends `PartialObjectMetadata`, so no Secret value of the cluster passes through it) and reads the data
//! of exactly the Secrets its deployments reference.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Request;
use kube::client::{Body, ClientBuilder};
use litellm_operator_tests::fixtures::minimal;
use litellm_operator_tests::{ControlPlane, World};

/// One request the operator's client sent: method, path and query, Accept header.
#[derive(Clone, Debug)]
struct Sent {
    method: String,
    uri: String,
    accept: String,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Sent>>>);

impl<S> tower::Layer<S> for Recorder {
    type Service = Recording<S>;
    fn layer(&self, inner: S) -> Recording<S> {
        Recording {
            inner,
            sent: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Recording<S> {
    inner: S,
    sent: Recorder,
}

impl<S: tower::Service<Request<Body>>> tower::Service<Request<Body>> for Recording<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.sent.0.lock().unwrap().push(Sent {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            accept,
        });
        self.inner.call(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_config_maps_are_watched_by_metadata_only_and_secrets_read_only_where_referenced() {
    let cp = ControlPlane::shared().await.unwrap();
    let recorder = Recorder::default();
    let client = ClientBuilder::try_from(cp.config().clone())
        .unwrap()
        .with_layer(&recorder)
        .build();
    let w = World::builder("metaonly").operator_client(client).start().await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    // A Secret no deployment references: its value must never reach the operator.
    w.put_secret("unrelated", &[("token", "never-read-by-the-operator")])
        .await;
    let name = w.create(minimal("metaonly")).await;
    w.wait_ready(&name).await;
    // An edit of the unrelated Secret still arrives through the watch, as metadata.
    w.put_secret("unrelated", &[("token", "changed")]).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let sent = recorder.0.lock().unwrap().clone();
    let collection = format!("/api/v1/namespaces/{}/secrets?", w.ns);
    let lists: Vec<&Sent> = sent.iter().filter(|s| s.uri.contains(&collection)).collect();
    assert!(
        lists.iter().any(|s| s.uri.contains("watch=true")),
        "the operator watches Secrets: {sent:#?}"
    );
    for s in &lists {
        assert!(
            s.accept.contains("as=PartialObjectMetadata"),
            "a list or watch of Secrets asked for full objects: {s:?}"
        );
    }
    let item = format!("/api/v1/namespaces/{}/secrets/", w.ns);
    let reads: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.method == "GET" && s.uri.contains(&item))
        .collect();
    assert!(!reads.is_empty(), "the referenced Secret is read: {sent:#?}");
    for s in reads {
        let full = !s.accept.contains("as=PartialObjectMetadata");
        assert!(
            !full || s.uri.ends_with("/secrets/creds"),
            "the operator read a Secret no deployment references: {s:?}"
        );
    }
    // ConfigMaps (`spec.config.configMapKeyRef`) are watched the same way: metadata only.
    let config_maps: Vec<&Sent> = sent.iter().filter(|s| s.uri.contains("/configmaps?")).collect();
    assert!(
        config_maps.iter().any(|s| s.uri.contains("watch=true")),
        "the operator watches ConfigMaps: {sent:#?}"
    );
    for s in &config_maps {
        assert!(
            s.accept.contains("as=PartialObjectMetadata"),
            "a list or watch of ConfigMaps asked for full objects: {s:?}"
        );
    }
}

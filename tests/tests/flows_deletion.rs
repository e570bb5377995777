//! End-to-end flows, deletion: the deletion policy is followed, abandoned secrets lose our bindings, the escape
//! hatch leaves Google untouched, and deleting the namespace releases the finalizer. The operator runs in-process
//! against a real kube-apiserver + etcd and the Google emulator; each test has its own namespace, emulator and
//! operator instance ([`World`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use kube::api::{Api, DeleteParams};
use litellm_operator_gcp::{IamPolicies, PolicyTarget, SecretName, SecretStore};
use litellm_operator_tests::fixtures::{PROJECT, RUNTIME_SA, minimal, runbook};
use litellm_operator_tests::{World, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_follows_the_deletion_policy() {
    let w = World::runbook("delete").await;
    let mut manifest = runbook("delete");
    manifest["spec"]["deletionPolicy"] = json!({"service": "Delete", "secrets": "Delete"});
    let name = w.create(manifest).await;
    w.wait_ready(&name).await;
    w.delete_and_wait(&name).await;
    assert!(!w.service_exists("delete").await);
    assert!(!w.secret_exists("database-url").await);
    // The external secret is not ours: it stays.
    assert!(w.secret_exists("tavily-api-key").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_secrets_stay_but_lose_our_bindings() {
    let w = World::runbook("abandon").await;
    let name = w.create(runbook("abandon")).await;
    w.wait_ready(&name).await;
    w.delete_and_wait(&name).await;
    let db = SecretName::new(PROJECT, "database-url");
    assert!(
        w.gcp.find_secret(&db).await.unwrap().is_some(),
        "secrets: Abandon keeps the secret"
    );
    let policy = w.gcp.get_policy(&PolicyTarget::Secret(db)).await.unwrap();
    assert!(
        !policy
            .bindings
            .iter()
            .any(|b| b.members.iter().any(|m| m.contains(RUNTIME_SA))),
        "our accessor binding is removed: {policy:?}"
    );
    assert!(!w.service_exists("abandon").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_escape_hatch_leaves_google_untouched() {
    let w = World::new("hatch").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let mut manifest = minimal("hatch");
    manifest["spec"]["deletionPolicy"] = json!({"service": "Delete", "secrets": "Delete"});
    let name = w.create(manifest).await;
    w.wait_ready(&name).await;
    w.annotate(&name, "litellm.dev/deletion-policy", "Abandon").await;
    w.delete_and_wait(&name).await;
    assert!(w.service_exists("hatch").await);
    assert!(w.secret_exists("hatch-database-url").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_releases_the_finalizer() {
    let w = World::new("nsdelete").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("nsdelete")).await;
    w.wait_ready(&name).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(w.client.clone());
    namespaces.delete(&w.ns, &DeleteParams::default()).await.unwrap();
    // kube-controller-manager's namespace controller deletes the resource; our finalizer cleans up and lets go.
    eventually(
        "the namespace to be deleted (stuck terminating?)",
        Duration::from_secs(60),
        || async { namespaces.get_opt(&w.ns).await.unwrap().is_none() },
    )
    .await;
    assert!(!w.service_exists("nsdelete").await);
}

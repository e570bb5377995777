//! End-to-end flows, deletion: the deletion policy is followed, abandoned secrets lose our bindings, the escape
//! hatch leaves Google untouched, deleting the namespace releases the finalizer, and a resource being deleted
//! reads `Deleting` (or why its cleanup waits), never Ready. The operator runs in-process against a real
//! kube-apiserver + etcd and the Google emulator; each test has its own namespace, emulator and operator instance
//! ([`World`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, WatchEvent, WatchParams};
use litellm_operator_api::LiteLLMDeployment;
use litellm_operator_gcp::{IamPolicies, PolicyTarget, SecretName, SecretStore};
use litellm_operator_tests::fixtures::{PROJECT, RUNTIME_SA, minimal, runbook};
use litellm_operator_tests::{World, condition, eventually};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_being_deleted_never_reads_ready_and_says_why_cleanup_waits() {
    let w = World::new("deleting").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("deleting")).await;
    w.wait_ready(&name).await;

    // Every version of the resource from here on, in order, as a watch delivers them.
    let ready = w.deployments().get(&name).await.unwrap();
    let since = ready.metadata.resource_version.clone().unwrap();
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let mut stream = w.deployments().watch(&params, &since).await.unwrap().boxed();
    let versions = tokio::spawn(async move {
        let mut seen: Vec<LiteLLMDeployment> = Vec::new();
        while let Some(event) = stream.next().await {
            match event.unwrap() {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => seen.push(o),
                WatchEvent::Deleted(o) => {
                    seen.push(o);
                    break;
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => panic!("watch: {e:?}"),
            }
        }
        seen
    });

    // The operator may not delete the service: cleanup cannot finish.
    w.emulator.state().add_fault(
        gcp_emulator::FaultRule::new(
            "Services.DeleteService",
            Some(gcp_emulator::Code::PermissionDenied),
        )
        .with_message("Permission 'run.services.delete' denied on resource"),
    );
    w.deployments()
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let status = w
        .wait_for(
            &name,
            "Ready=False/PermissionDenied while the finalizer holds",
            Duration::from_secs(30),
            |s| condition(s, "Ready").1 == "PermissionDenied",
        )
        .await;
    let (ready_status, _, message) = condition(&status, "Ready");
    assert_eq!(ready_status, "False");
    assert!(
        message.contains("run.services.delete") && message.contains("deletion waits until this succeeds"),
        "{message}"
    );
    let held = w.deployments().get(&name).await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(
        held.metadata.finalizers.as_deref(),
        Some(&["litellm.dev/cleanup".to_owned()][..])
    );
    assert_eq!(
        status.observed_generation, held.metadata.generation,
        "the status describes the deletion"
    );
    assert!(w.service_exists("deleting").await, "cleanup did not happen");
    assert!(w.calls().count("Services.DeleteService") >= 1);

    // The escape hatch still releases it.
    w.annotate(&name, "litellm.dev/deletion-policy", "Abandon").await;
    w.wait_gone(&name).await;
    assert!(w.service_exists("deleting").await);

    let versions = tokio::time::timeout(Duration::from_secs(10), versions)
        .await
        .expect("the watch to see the deletion")
        .unwrap();
    let summary: Vec<(bool, String, String, Option<i64>)> = versions
        .iter()
        .map(|o| {
            let s = o.status.clone().unwrap_or_default();
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready");
            (
                o.metadata.deletion_timestamp.is_some(),
                ready.map(|c| c.status.clone()).unwrap_or_default(),
                ready.map(|c| c.reason.clone()).unwrap_or_default(),
                ready.and_then(|c| c.observed_generation),
            )
        })
        .collect();
    let deleted: Vec<_> = summary.iter().filter(|v| v.0).collect();
    // Only the version the deletion itself made still carries the status from before (Ready=True, an older
    // generation); from the operator's first write on, Ready is False.
    let (first, rest) = deleted.split_first().expect("versions after deletionTimestamp");
    assert_eq!(first.1, "True", "{summary:?}");
    assert!(
        rest.iter().all(|v| v.1 == "False"),
        "Ready=True after deletionTimestamp was set: {summary:?}"
    );
    // It says Deleting before the cleanup's failure.
    let reasons: Vec<&str> = rest.iter().map(|v| v.2.as_str()).collect();
    let deleting = reasons.iter().position(|r| *r == "Deleting");
    let denied = reasons.iter().position(|r| *r == "PermissionDenied");
    assert!(
        deleting.is_some() && deleting < denied,
        "Deleting, then PermissionDenied: {summary:?}"
    );
    // A cleanup that keeps failing the same way writes no new status.
    let denied = denied.unwrap_or_default();
    assert!(
        reasons[denied..].iter().all(|r| *r == "PermissionDenied"),
        "{summary:?}"
    );
}

//! End-to-end flows, ownership: a Google secret that is not ours is a conflict until adopted, a second deployment
//! cannot take the first one's secret, a paused resource gets no Google writes, and a secret value reaches no Event,
//! status or metric. The operator runs in-process against a real kube-apiserver + etcd and the Google emulator; each
//! test has its own namespace, emulator and operator instance ([`World`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use litellm_operator_gcp::{SecretName, SecretStore, SecretVersionStore, VersionRef};
use litellm_operator_tests::fixtures::{PROJECT, minimal};
use litellm_operator_tests::{World, condition, pinned};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_secret_that_is_not_ours_is_a_conflict_until_adopted() {
    let w = World::new("adopt").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    // Someone created database-url by hand (the gcloud runbook): no labels at all.
    let created = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/{PROJECT}/secrets?secretId=database-url",
            w.emulator_url()
        ))
        .json(&json!({"replication": {"automatic": {}}}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());

    let name = w.create(minimal("adopt")).await;
    let status = w
        .wait_for(&name, "Conflict", Duration::from_secs(30), |s| {
            condition(s, "SecretsReady").1 == "Conflict"
        })
        .await;
    assert!(
        condition(&status, "SecretsReady").2.contains("litellm.dev/adopt"),
        "{status:?}"
    );
    assert_eq!(
        pinned(&status, "LITELLM_MASTER_KEY"),
        "1",
        "other secrets still converge"
    );

    w.annotate(&name, "litellm.dev/adopt", "true").await;
    let status = w.wait_ready(&name).await;
    assert_eq!(pinned(&status, "DATABASE_URL"), "1");
    // Adoption put our labels on it: it stays ours once the annotation is gone.
    let db = w
        .gcp
        .find_secret(&SecretName::new(PROJECT, "database-url"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.labels.get("managed-by").map(String::as_str),
        Some("litellm-operator")
    );
    w.annotate(&name, "litellm.dev/adopt", "false").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = w.wait_ready(&name).await;
    assert_eq!(condition(&status, "SecretsReady").0, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deployment_cannot_take_the_first_ones_secret() {
    let w = World::new("claim").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let first = w.create(minimal("first")).await;
    w.wait_ready(&first).await;
    let mut second = minimal("second");
    second["spec"]["service"]["name"] = json!("second");
    let second = w.create(second).await;
    let status = w
        .wait_for(&second, "Conflict", Duration::from_secs(30), |s| {
            condition(s, "SecretsReady").1 == "Conflict"
        })
        .await;
    assert!(
        condition(&status, "SecretsReady").2.contains("database-url"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_resource_gets_no_google_writes() {
    let w = World::new("paused").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("paused")).await;
    w.wait_ready(&name).await;
    w.annotate(&name, "litellm.dev/paused", "true").await;
    w.wait_for(&name, "Paused", Duration::from_secs(30), |s| {
        condition(s, "Ready").1 == "Paused"
    })
    .await;
    let before = w.calls();
    w.put_secret("creds", &[("database-url", "postgres://changed")])
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = w.calls();
    // Counted by the emulator, whoever called: `*` spans Secret Manager and Cloud Run.
    for method in ["*.AddSecretVersion", "*.UpdateService", "*.SetIamPolicy"] {
        assert_eq!(before.count(method), after.count(method), "{method} while paused");
    }
    // Unpausing rolls the change out.
    w.annotate(&name, "litellm.dev/paused", "false").await;
    w.wait_for(&name, "DATABASE_URL pinned to 2", Duration::from_secs(30), |s| {
        pinned(s, "DATABASE_URL") == "2" && condition(s, "Ready").0 == "True"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_value_reaches_no_event_status_or_metric() {
    const CANARY: &str = "canary-7f3d9a1c-never-print-me";
    let w = World::new("canary").await;
    w.put_secret("creds", &[("database-url", CANARY)]).await;
    let name = w.create(minimal("canary")).await;
    w.wait_ready(&name).await;
    // Rotate once more so every write path has run.
    w.put_secret("creds", &[("database-url", &format!("{CANARY}-2"))])
        .await;
    w.wait_for(&name, "rotation", Duration::from_secs(30), |s| {
        pinned(s, "DATABASE_URL") == "2" && condition(s, "Ready").0 == "True"
    })
    .await;

    let events = w.events().await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| !e.contains("canary-7f3d")), "{events:?}");
    let status = serde_json::to_string(&w.deployments().get(&name).await.unwrap()).unwrap();
    assert!(!status.contains("canary-7f3d"));
    assert!(!w.metrics.encode().contains("canary-7f3d"));
    // It did reach Secret Manager.
    let db = SecretName::new(PROJECT, "database-url");
    assert_eq!(
        w.gcp
            .access_version(&db, VersionRef::Number(2))
            .await
            .unwrap()
            .payload
            .expose(),
        format!("{CANARY}-2").as_bytes()
    );
}

//! End-to-end flows, ownership: a Google secret that is not ours is a conflict until adopted, a second deployment
//! cannot take the first one's secret, a paused resource gets no Google writes, and a secret value reaches no Event,
//! status or metric. The operator runs in-process against a real kube-apiserver + etcd and the Google emulator; each
//! test has its own namespace, emulator and operator instance ([`World`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use litellm_operator_api::AppliedBinding;
use litellm_operator_gcp::{
    CloudRun, IamPolicies, PolicyTarget, SecretName, SecretStore, SecretVersionStore, ServiceName, VersionRef,
};
use litellm_operator_tests::fixtures::{PROJECT, REGION, RUNTIME_SA, minimal};
use litellm_operator_tests::{Calls, World, condition, pinned};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_secret_that_is_not_ours_is_a_conflict_until_adopted() {
    let w = World::new("adopt").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    // Someone created adopt-database-url (the default id of its DATABASE_URL) by hand: no labels at all.
    w.gcp
        .create_secret(
            &SecretName::new(PROJECT, "adopt-database-url"),
            &Default::default(),
        )
        .await
        .unwrap();

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
        .find_secret(&SecretName::new(PROJECT, "adopt-database-url"))
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
    // Default ids are unique per deployment; the second one names the first one's secret explicitly, and asks to
    // adopt: another deployment's secret is never adopted.
    let mut second = minimal("second");
    second["spec"]["secrets"][1]["secretId"] = json!("first-database-url");
    second["metadata"]["annotations"] = json!({"litellm.dev/adopt": "true"});
    let second = w.create(second).await;
    let status = w
        .wait_for(&second, "Conflict", Duration::from_secs(30), |s| {
            condition(s, "SecretsReady").1 == "Conflict"
        })
        .await;
    let message = condition(&status, "SecretsReady").2;
    assert!(
        message.contains("first-database-url") && message.contains("_first") && !message.contains("adopt it"),
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
    let db = SecretName::new(PROJECT, "canary-database-url");
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

/// Members holding `secretAccessor` on secret `id`.
async fn accessors(w: &World, id: &str) -> Vec<String> {
    let target = PolicyTarget::Secret(SecretName::new(PROJECT, id));
    w.gcp
        .get_policy(&target)
        .await
        .unwrap()
        .bindings
        .into_iter()
        .filter(|b| b.role == "roles/secretmanager.secretAccessor" && b.condition.is_none())
        .flat_map(|b| b.members)
        .collect()
}

/// Google writes (any outcome) in `calls`.
fn writes(calls: &Calls) -> u64 {
    [
        "*.Create*",
        "*.Update*",
        "*.Delete*",
        "*.Add*",
        "*.Set*",
        "*.Enable*",
        "*.Disable*",
        "*.Destroy*",
    ]
    .iter()
    .map(|p| calls.count(p))
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_sharing_a_binding_never_revokes_it_from_the_one_that_granted_it() {
    // Regression: a second deployment that found the first one's accessor binding in place recorded it as its
    // own, and its deletion revoked it: the first one's new instances could not read their database URL.
    let w = World::new("shared").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let mut first = minimal("first");
    first["spec"]["deletionPolicy"] = json!({"service": "Delete", "secrets": "Abandon"});
    let first = w.create(first).await;
    w.wait_ready(&first).await;
    let member = format!("serviceAccount:{RUNTIME_SA}");
    assert!(accessors(&w, "first-database-url").await.contains(&member));

    // The second reads the first one's database URL as an external secret, with the same runtime account.
    let mut second = minimal("second");
    second["spec"]["secrets"] =
        json!([{"env": "DATABASE_URL", "secretId": "first-database-url", "external": {"version": "latest"}}]);
    second["spec"]["deletionPolicy"] = json!({"service": "Delete", "secrets": "Abandon"});
    let second = w.create(second).await;
    let status = w.wait_ready(&second).await;
    let shared = AppliedBinding {
        resource: format!("projects/{PROJECT}/secrets/first-database-url"),
        role: "roles/secretmanager.secretAccessor".into(),
        member: member.clone(),
    };
    assert!(
        status.applied_bindings.contains(&shared),
        "shared: the first one's write added it, both need it: {status:?}"
    );
    w.delete_and_wait(&second).await;
    assert!(
        accessors(&w, "first-database-url").await.contains(&member),
        "the first deployment still needs its binding"
    );
    let events = w.events().await;
    assert!(
        events.iter().any(|e| e.starts_with("IamBindingHandedOver")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("IamBindingRemoved") && e.contains("first-database-url")),
        "{events:?}"
    );
    let status = w.wait_ready(&first).await;
    assert!(status.applied_bindings.contains(&shared));

    // When the last deployment that needs it goes, the grant goes too: nothing leaks.
    w.delete_and_wait(&first).await;
    assert!(
        !accessors(&w, "first-database-url").await.contains(&member),
        "the binding leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_never_takes_another_deployments_secret_or_service() {
    // Regression: with the adopt annotation, a second deployment relabelled the first one's service and secret,
    // and its deletion (deletionPolicy Delete) deleted them.
    let w = World::new("cross").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let first = w.create(minimal("first")).await;
    let before = w.wait_ready(&first).await;
    let service = ServiceName::new(PROJECT, REGION, "first");
    let live = w.gcp.get_service(&service).await.unwrap().unwrap();

    let mut second = minimal("second");
    second["metadata"]["annotations"] = json!({"litellm.dev/adopt": "true"});
    second["spec"]["service"]["name"] = json!("first");
    second["spec"]["secrets"][1]["secretId"] = json!("first-database-url");
    second["spec"]["deletionPolicy"] = json!({"service": "Delete", "secrets": "Delete"});
    let calls = w.calls();
    let second = w.create(second).await;
    let status = w
        .wait_for(&second, "Conflict", Duration::from_secs(30), |s| {
            condition(s, "Ready").1 == "Conflict"
        })
        .await;
    let message = condition(&status, "Ready").2;
    assert!(
        message.contains("services/first") && message.contains("_first") && !message.contains("adopt it"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        writes(&w.calls().since(&calls)),
        0,
        "a conflict on the service stops every write, secrets included"
    );

    w.delete_and_wait(&second).await;
    assert!(
        w.service_exists("first").await,
        "the first one's service was deleted"
    );
    assert!(
        w.secret_exists("first-database-url").await,
        "the first one's secret was deleted"
    );
    let after = w.gcp.get_service(&service).await.unwrap().unwrap();
    assert_eq!(after.labels, live.labels);
    let status = w.wait_ready(&first).await;
    assert_eq!(status.latest_ready_revision, before.latest_ready_revision);
}

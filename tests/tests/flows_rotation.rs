//! End-to-end flows, rotation and rollout: editing a source rotates the secret and retires old versions, a revision
//! denied while IAM propagates is rolled again, a failed revision keeps traffic and old versions, and neither a lost
//! status write nor an operator restarted mid-rollout duplicates anything. The operator runs in-process against a
//! real kube-apiserver + etcd and the Google emulator; each test has its own namespace, emulator and operator
//! instance ([`World`]).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use litellm_operator::controller::Settings;
use litellm_operator_gcp::{
    SecretName, SecretPayload, SecretStore, SecretVersionStore, VersionRef, VersionState,
};
use litellm_operator_tests::fixtures::{PROJECT, RUNBOOK_CREDENTIAL_KEYS, minimal, runbook};
use litellm_operator_tests::world::{fast_emulator, fast_settings};
use litellm_operator_tests::{Patience, World, condition, eventually, pinned};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_kubernetes_secret_rotates_and_retires_old_versions() {
    let w = World::runbook("rotate").await;
    let mut manifest = runbook("rotate");
    manifest["spec"]["secretPolicy"]["keepEnabledVersions"] = json!(1);
    let name = w.create(manifest).await;
    let first = w.wait_ready(&name).await;
    assert_eq!(pinned(&first, "DATABASE_URL"), "1");

    let data: Vec<(&str, &str)> = RUNBOOK_CREDENTIAL_KEYS
        .iter()
        .map(|k| {
            (
                *k,
                if *k == "database-url" {
                    "value-2"
                } else {
                    "value-1"
                },
            )
        })
        .collect();
    w.put_secret("litellm-credentials", &data).await;
    let rotated = w
        .wait_for(
            &name,
            "DATABASE_URL pinned to 2 and Ready",
            Duration::from_secs(60),
            |s| pinned(s, "DATABASE_URL") == "2" && condition(s, "Ready").0 == "True",
        )
        .await;
    assert_ne!(
        rotated.latest_ready_revision, first.latest_ready_revision,
        "a new revision serves the new version"
    );
    // Only the changed secret got a new version.
    assert_eq!(pinned(&rotated, "UI_PASSWORD"), "1");
    let db = SecretName::new(PROJECT, "database-url");
    assert_eq!(
        w.gcp
            .access_version(&db, VersionRef::Number(2))
            .await
            .unwrap()
            .payload
            .expose(),
        b"value-2"
    );
    // keepEnabledVersions: 1 -> the old version is disabled once the new revision is Ready.
    eventually("version 1 to be disabled", Duration::from_secs(20), || async {
        let v1 = w
            .gcp
            .get_version(&db, VersionRef::Number(1))
            .await
            .unwrap()
            .unwrap();
        if v1.state == VersionState::Disabled {
            Ok(())
        } else {
            Err(format!("version 1 still {:?}", v1.state))
        }
    })
    .await;
    let versions = w.gcp.list_versions(&db).await.unwrap();
    assert_eq!(versions.len(), 2, "never two versions of one value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_denied_while_iam_propagates_is_rolled_again_until_ready() {
    let w = World::builder("propagation")
        .emulator(gcp_emulator::Config {
            iam_propagation: Duration::from_secs(3),
            ..fast_emulator()
        })
        .settings(Settings {
            iam_retry_delay: Duration::from_secs(1),
            ..fast_settings()
        })
        .start()
        .await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("propagation")).await;
    let status = w.wait_ready(&name).await;
    // The first revision started before the fresh accessor grants propagated and failed; a later one serves.
    let ready = status.latest_ready_revision.unwrap();
    assert!(
        !ready.starts_with("propagation-00001-"),
        "expected a re-rolled revision, got {ready}"
    );
    let events = w.events().await;
    assert!(
        events.iter().any(|e| e.starts_with("RevisionRetried")),
        "{events:?}"
    );
    // The grant was made once, not repeated (counted by the emulator, secrets and services alike).
    assert_eq!(w.calls().count("*.SetIamPolicy"), 2, "{:?}", w.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_revision_keeps_traffic_and_old_versions() {
    let w = World::builder("failed")
        .emulator(gcp_emulator::Config {
            crashing_images: vec!["example.com/litellm:broken".into()],
            ..fast_emulator()
        })
        .start()
        .await;
    w.put_secret("creds", &[("database-url", "postgres://one")]).await;
    let mut manifest = minimal("failed");
    manifest["spec"]["secretPolicy"] = json!({"keepEnabledVersions": 1});
    let name = w.create(manifest).await;
    let first = w.wait_ready(&name).await;

    w.patch_spec(&name, json!({"service": {"image": "example.com/litellm:broken"}}))
        .await;
    let failed = w
        .wait_for(&name, "RevisionFailed", Duration::from_secs(30), |s| {
            condition(s, "ServiceReady").1 == "RevisionFailed"
        })
        .await;
    assert_eq!(
        failed.latest_ready_revision, first.latest_ready_revision,
        "traffic stays on the last ready revision"
    );
    assert_ne!(failed.latest_created_revision, first.latest_created_revision);
    assert!(
        condition(&failed, "Ready").2.contains("traffic stays on"),
        "{failed:?}"
    );

    // A rotation while new revisions cannot start: the new version is pinned, the old one stays enabled.
    w.put_secret("creds", &[("database-url", "postgres://two")]).await;
    w.wait_for(&name, "DATABASE_URL pinned to 2", Duration::from_secs(30), |s| {
        pinned(s, "DATABASE_URL") == "2" && condition(s, "ServiceReady").1 == "RevisionFailed"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db = SecretName::new(PROJECT, "failed-database-url");
    let v1 = w
        .gcp
        .get_version(&db, VersionRef::Number(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        v1.state,
        VersionState::Enabled,
        "no version is retired while the new revision is not Ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_added_before_a_lost_status_write_is_reused_not_duplicated() {
    let w = World::new("lost").await;
    w.put_secret("creds", &[("database-url", "postgres://same")])
        .await;
    // State after a crash between addVersion and the status write: our secret with the value, no status record.
    let db = SecretName::new(PROJECT, "lost-database-url");
    let labels = BTreeMap::from([("litellm-deployment".to_owned(), format!("{}_lost", w.ns))]);
    w.gcp
        .create_secret(
            &db,
            &litellm_operator_gcp::NewSecret {
                labels,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.gcp
        .add_version(&db, &SecretPayload::new(b"postgres://same".to_vec()))
        .await
        .unwrap();

    let name = w.create(minimal("lost")).await;
    let status = w.wait_ready(&name).await;
    assert_eq!(pinned(&status, "DATABASE_URL"), "1");
    assert_eq!(
        w.gcp.list_versions(&db).await.unwrap().len(),
        1,
        "the same value was added twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_rollout_converges_without_duplicates() {
    let mut w = World::new("restart").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("restart")).await;
    // Stop the operator as soon as the service exists, before its revision is Ready.
    eventually(
        "the service to be created",
        Patience::new(Duration::from_secs(30)).every(Duration::from_millis(20)),
        || w.service_exists("restart"),
    )
    .await;
    w.stop_operator();

    // A new operator process (fresh memory) takes over.
    w.start_operator().await;
    let status = w.wait_ready(&name).await;
    assert!(
        status
            .latest_ready_revision
            .as_deref()
            .unwrap()
            .starts_with("restart-00001-"),
        "{status:?}"
    );
    for id in ["restart-database-url", "restart-litellm-master-key"] {
        let versions = w.gcp.list_versions(&SecretName::new(PROJECT, id)).await.unwrap();
        assert_eq!(versions.len(), 1, "{id} has {} versions", versions.len());
    }
}

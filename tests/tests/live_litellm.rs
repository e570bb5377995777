//! The values the operator puts in Secret Manager, pins and injects reach a real LiteLLM proxy and work: the
//! emulator runs each Cloud Run revision of the live image as a LiteLLM process fed from the pinned versions, and
//! the service URL answers through it. Needs the virtualenv of `make litellm`.
//!
//! One idle proxy holds about 240 MiB and starts in about 5 s, so each test keeps its live revisions few.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use litellm_operator::controller::Settings;
use litellm_operator_api::LiteLLMDeploymentStatus;
use litellm_operator_gcp::{CloudRun, SecretName, SecretVersionStore, ServiceName, VersionRef};
use litellm_operator_tests::fixtures::{PROJECT, REGION};
use litellm_operator_tests::live::{MOCK_ANSWER, answer, chat, live_deployment, live_emulator};
use litellm_operator_tests::world::fast_settings;
use litellm_operator_tests::{World, condition, eventually, pinned};
use serde_json::{Value, json};

/// Long enough for a LiteLLM process to start (5 to 8 s here) behind the operator's own steps.
const LIVE_READY: Duration = Duration::from_secs(120);

fn ready(s: &LiteLLMDeploymentStatus) -> bool {
    condition(s, "Ready").0 == "True"
}

/// The value of version `version` of secret `id`, read from Secret Manager as the project's owner.
async fn secret_value(w: &World, id: &str, version: &str) -> String {
    let number: u64 = version.parse().unwrap_or_else(|_| panic!("version {version}"));
    let got = w
        .gcp
        .access_version(&SecretName::new(PROJECT, id), VersionRef::Number(number))
        .await
        .unwrap_or_else(|e| panic!("access {id}/{version}: {e}"));
    String::from_utf8(got.payload.expose().to_vec()).unwrap()
}

/// The lines revision `revision` of service `service` wrote (stdout and stderr), as the emulator keeps them the way
/// Cloud Logging would show them.
async fn revision_logs(w: &World, service: &str, revision: &str) -> Vec<String> {
    let name = format!("projects/{PROJECT}/locations/{REGION}/services/{service}/revisions/{revision}");
    w.emulator
        .state()
        .revision_logs(&name)
        .into_iter()
        .filter(|e| e.stream == "stdout" || e.stream == "stderr")
        .map(|e| e.text)
        .collect()
}

/// The short names of every revision of `service`, oldest first.
async fn revisions(w: &World, service: &str) -> Vec<String> {
    let mut names: Vec<String> = w
        .gcp
        .list_revisions(&ServiceName::new(PROJECT, REGION, service))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// Waits until a chat completion through `url` with `key` answers `status`, and returns the body.
async fn chat_until(url: &str, key: &str, status: u16, what: &str) -> Value {
    eventually(what, Duration::from_secs(30), || async {
        let (got, body) = chat(url, key).await;
        if got == status {
            Ok(body)
        } else {
            Err(format!("{got}: {body}"))
        }
    })
    .await
}

async fn live_world(test: &str) -> World {
    let w = World::builder(test).emulator(live_emulator()).start().await;
    w.put_secret("keys", &[("master-key", "sk-live-first-key")]).await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_url_answers_with_the_master_key_from_secret_manager_and_refuses_others() {
    let w = live_world("live-chat").await;
    let name = w.create(live_deployment("live-chat")).await;
    let status = w.wait_for(&name, "Ready", LIVE_READY, ready).await;
    let url = status.url.clone().unwrap();

    // The key a client uses is the one Secret Manager holds at the pinned version.
    let key = secret_value(
        &w,
        "live-chat-litellm-master-key",
        &pinned(&status, "LITELLM_MASTER_KEY"),
    )
    .await;
    let body = chat_until(&url, &key, 200, "a chat completion with the master key").await;
    assert_eq!(answer(&body), Some(MOCK_ANSWER), "{body}");

    let (refused, body) = chat(&url, "sk-not-the-master-key").await;
    assert!(
        (400..500).contains(&refused),
        "LiteLLM refuses another key: {refused} {body}"
    );
    // The proxy's own log names no key (the emulator keeps it the way Cloud Logging would).
    let revision = status.latest_ready_revision.clone().unwrap();
    let logs = revision_logs(&w, "live-chat", &revision).await;
    assert!(!logs.is_empty(), "the process logged its start");
    let salt = secret_value(
        &w,
        "live-chat-litellm-salt-key",
        &pinned(&status, "LITELLM_SALT_KEY"),
    )
    .await;
    assert!(
        !logs.iter().any(|l| l.contains(&key) || l.contains(&salt)),
        "a key reached the logs"
    );
}

/// After a rotation of the master key of deployment `name` (service `service`) from `first`: waits until version 2
/// is pinned in a new Ready revision, then checks that the value of version 2 works, `old_key` is refused, and the
/// salt key kept its one version. Returns the new key.
async fn after_master_key_rotation(
    w: &World,
    name: &str,
    service: &str,
    first: &LiteLLMDeploymentStatus,
    old_key: &str,
) -> String {
    let rotated = w
        .wait_for(name, "the new key pinned and Ready", LIVE_READY, |s| {
            pinned(s, "LITELLM_MASTER_KEY") == "2"
                && ready(s)
                && s.latest_ready_revision != first.latest_ready_revision
        })
        .await;
    let url = rotated.url.clone().unwrap();
    let new_key = secret_value(w, &format!("{service}-litellm-master-key"), "2").await;
    assert_ne!(new_key, old_key);
    let body = chat_until(&url, &new_key, 200, "the new key works").await;
    assert_eq!(answer(&body), Some(MOCK_ANSWER), "{body}");
    let (old, body) = chat(&url, old_key).await;
    assert!((400..500).contains(&old), "the old key is refused: {old} {body}");

    // The salt key encrypts what LiteLLM stores: it never changes under a running deployment.
    let salt = SecretName::new(PROJECT, format!("{service}-litellm-salt-key"));
    assert_eq!(pinned(&rotated, "LITELLM_SALT_KEY"), "1");
    assert_eq!(pinned(first, "LITELLM_SALT_KEY"), "1");
    let versions = w.gcp.list_versions(&salt).await.unwrap();
    assert_eq!(
        versions.len(),
        1,
        "the salt key got another version: {versions:?}"
    );
    new_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_rolls_a_revision_that_accepts_only_the_new_key_and_keeps_the_salt_key() {
    let w = live_world("live-rotate").await;
    let name = w.create(live_deployment("live-rotate")).await;
    let first = w.wait_for(&name, "Ready", LIVE_READY, ready).await;
    let url = first.url.clone().unwrap();
    chat_until(&url, "sk-live-first-key", 200, "the first key works").await;

    w.put_secret("keys", &[("master-key", "sk-live-second-key")])
        .await;
    let new_key = after_master_key_rotation(&w, &name, "live-rotate", &first, "sk-live-first-key").await;
    assert_eq!(new_key, "sk-live-second-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_generated_master_key_rolls_a_revision_that_accepts_only_the_new_key_and_keeps_the_salt_key()
 {
    let w = World::builder("live-rotate-generated")
        .emulator(live_emulator())
        .start()
        .await;
    let mut manifest = live_deployment("live-generated");
    manifest["spec"]["secrets"][0] =
        json!({"env": "LITELLM_MASTER_KEY", "generate": {"length": 32, "prefix": "sk-"}});
    let name = w.create(manifest.clone()).await;
    let first = w.wait_for(&name, "Ready", LIVE_READY, ready).await;
    let url = first.url.clone().unwrap();
    let old_key = secret_value(&w, "live-generated-litellm-master-key", "1").await;
    chat_until(&url, &old_key, 200, "the generated key works").await;

    let mut secrets = manifest["spec"]["secrets"].clone();
    secrets[0]["generate"]["rotation"] = json!("2026-12-01");
    w.patch_spec(&name, json!({"secrets": secrets})).await;
    let new_key = after_master_key_rotation(&w, &name, "live-generated", &first, &old_key).await;
    assert!(
        new_key.starts_with("sk-") && new_key.len() == 35,
        "a generated value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_denied_a_secret_never_starts_its_process() {
    // Grants take 6 s to reach Cloud Run: the first revision starts before the operator's fresh accessor grants do.
    let w = World::builder("live-denied")
        .emulator(gcp_emulator::Config {
            iam_propagation: Duration::from_secs(6),
            ..live_emulator()
        })
        .settings(Settings {
            iam_retry_delay: Duration::from_secs(1),
            ..fast_settings()
        })
        .start()
        .await;
    w.put_secret("keys", &[("master-key", "sk-live-first-key")]).await;
    let name = w.create(live_deployment("live-denied")).await;
    let status = w.wait_for(&name, "Ready", LIVE_READY, ready).await;
    let serving = status.latest_ready_revision.clone().unwrap();
    assert!(
        !serving.starts_with("live-denied-00001-"),
        "the first revision was denied and a later one serves: {serving}"
    );
    let all = revisions(&w, "live-denied").await;
    let first = all
        .iter()
        .find(|r| r.starts_with("live-denied-00001-"))
        .unwrap_or_else(|| panic!("no first revision in {all:?}"));
    assert!(
        revision_logs(&w, "live-denied", first).await.is_empty(),
        "the denied revision's process never started"
    );
    chat_until(
        &status.url.unwrap(),
        "sk-live-first-key",
        200,
        "the re-rolled revision serves",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_makes_litellm_exit_fails_its_revision_with_the_log_tail_and_keeps_traffic() {
    let w = live_world("live-crash").await;
    let name = w.create(live_deployment("live-crash")).await;
    let first = w.wait_for(&name, "Ready", LIVE_READY, ready).await;
    let url = first.url.clone().unwrap();
    chat_until(&url, "sk-live-first-key", 200, "the first revision serves").await;

    // Valid YAML the operator accepts, that LiteLLM cannot start with: a database it has no client for here.
    let crashing = format!(
        "{}  database_url: postgresql://litellm@127.0.0.1:1/litellm\n",
        litellm_operator_tests::live::mock_config()
    );
    w.patch_spec(&name, json!({"config": {"inline": crashing}})).await;
    let failed = w
        .wait_for(&name, "the new revision failed", LIVE_READY, |s| {
            let (ready, reason, _) = condition(s, "Ready");
            ready == "False" && reason.contains("Revision")
        })
        .await;
    let (_, reason, message) = condition(&failed, "Ready");
    assert!(
        message.contains("failed to start and listen on the port"),
        "Cloud Run's start-up failure reaches the condition ({reason}): {message}"
    );
    assert!(
        !message.contains("prisma"),
        "the log itself stays in the logs: {message}"
    );
    assert_eq!(
        failed.latest_ready_revision, first.latest_ready_revision,
        "traffic stays on the previous revision"
    );
    let body = chat_until(
        &url,
        "sk-live-first-key",
        200,
        "the previous revision still serves",
    )
    .await;
    assert_eq!(answer(&body), Some(MOCK_ANSWER));

    // The failed revision's own log tail, kept by the emulator, says why.
    let failed_revision = revisions(&w, "live-crash").await.pop().unwrap();
    assert_eq!(
        failed.latest_created_revision.as_deref(),
        Some(failed_revision.as_str())
    );
    let logs = revision_logs(&w, "live-crash", &failed_revision).await;
    assert!(
        logs.iter().any(|l| l.contains("prisma")),
        "the log tail names the cause: {logs:?}"
    );
}

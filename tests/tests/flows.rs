//! End-to-end flows: the operator running in-process against a real kube-apiserver + etcd and the Google
//! emulator. Each test has its own namespace, its own emulator and its own operator instance watching only that
//! namespace.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use litellm_operator::controller::{self, Context, Settings};
use litellm_operator::metrics::{Health, Metrics};
use litellm_operator_api::{LiteLLMDeployment, LiteLLMDeploymentStatus};
use litellm_operator_gcp::{
    CloudRun, Gcp, GcpConfig, IamPolicies, PolicyTarget, SecretName, SecretPayload, SecretStore,
    SecretVersionStore, ServiceName, VersionRef, VersionState,
};
use litellm_operator_tests::{ControlPlane, install_crd, repo_path};
use serde_json::{Value, json};

const PROJECT: &str = "my-project";
const REGION: &str = "us-central1";
const RUNTIME_SA: &str = "litellm-run@my-project.iam.gserviceaccount.com";

/// One test's world: control plane namespace, emulator, operator.
struct World {
    client: Client,
    ns: String,
    gcp: Gcp,
    metrics: Arc<Metrics>,
    emulator_url: String,
    _emulator: gcp_emulator::Emulator,
    operator: tokio::task::JoinHandle<()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.operator.abort();
    }
}

async fn world(test: &str) -> World {
    world_with(test, gcp_emulator::Config::default(), Settings::default()).await
}

/// A world with emulator and controller settings of the test's choosing (fast defaults otherwise).
async fn world_with(test: &str, emulator: gcp_emulator::Config, settings: Settings) -> World {
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();
    let crd = std::fs::read_to_string(repo_path("crds/litellmdeployments.yaml")).unwrap();
    install_crd(&client, &crd).await.unwrap();
    let ns = cp.namespace(test).await.unwrap();

    let emulator = gcp_emulator::spawn(gcp_emulator::Config {
        revision_startup: Duration::from_millis(300),
        ..emulator
    })
    .await
    .unwrap();
    let (gcp, metrics, operator) = start_operator(&client, &ns, &emulator.url(), settings).await;
    World {
        client,
        ns,
        gcp,
        metrics,
        emulator_url: emulator.url(),
        _emulator: emulator,
        operator,
    }
}

/// An operator instance (as a fresh process would have it) watching `ns`, talking to the emulator at `url` with
/// the binary's quota buckets. Unset resync and poll intervals are shortened for tests.
async fn start_operator(
    client: &Client,
    ns: &str,
    url: &str,
    settings: Settings,
) -> (Gcp, Arc<Metrics>, tokio::task::JoinHandle<()>) {
    let config = GcpConfig {
        rate_limits: litellm_operator::gcp_config::rate_limits(0.8),
        ..GcpConfig::emulator(url.parse().unwrap())
    };
    let mut metrics = Metrics::new();
    let gcp = Gcp::connect(&config, &mut metrics.registry).await.unwrap();
    let metrics = Arc::new(metrics);
    let defaults = Settings::default();
    let ctx = Arc::new(Context::new(
        client.clone(),
        gcp.clone(),
        kube::runtime::events::Reporter {
            controller: "litellm-operator".into(),
            instance: None,
        },
        metrics.clone(),
        Settings {
            namespace: Some(ns.to_owned()),
            resync: if settings.resync == defaults.resync {
                Duration::from_secs(2)
            } else {
                settings.resync
            },
            progress_poll: Duration::from_millis(300),
            ..settings
        },
    ));
    (
        gcp,
        metrics,
        tokio::spawn(controller::run(ctx, Health::default())),
    )
}

impl World {
    fn deployments(&self) -> Api<LiteLLMDeployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn put_secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        self.secrets()
            .patch(
                name,
                &PatchParams::apply("flows-test").force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap();
    }

    async fn create(&self, manifest: Value) -> String {
        let mut obj: LiteLLMDeployment = serde_json::from_value(manifest).unwrap();
        obj.metadata.namespace = Some(self.ns.clone());
        let created = self
            .deployments()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
        created.metadata.name.unwrap()
    }

    async fn status(&self, name: &str) -> LiteLLMDeploymentStatus {
        self.deployments()
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    /// Waits until `check` accepts the status, failing with the last status after `timeout`.
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&LiteLLMDeploymentStatus) -> bool,
    ) -> LiteLLMDeploymentStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status(name).await;
            if check(&status) {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last status: {}",
                    serde_json::to_string_pretty(&status).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_ready(&self, name: &str) -> LiteLLMDeploymentStatus {
        self.wait_for(name, "Ready=True", Duration::from_secs(60), |s| {
            condition(s, "Ready").0 == "True"
        })
        .await
    }

    /// Google calls so far by method, from the operator's own metrics.
    fn calls(&self) -> BTreeMap<String, u64> {
        let text = self.metrics.encode();
        let mut calls = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("gcp_api_calls_total{")) {
            let method = line
                .split("method=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default();
            let count: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            *calls.entry(method.to_owned()).or_insert(0) += count as u64;
        }
        calls
    }
}

fn condition(status: &LiteLLMDeploymentStatus, type_: &str) -> (String, String, String) {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

fn pinned(status: &LiteLLMDeploymentStatus, env: &str) -> String {
    status
        .secrets
        .iter()
        .find(|p| p.env == env)
        .and_then(|p| p.version.clone())
        .unwrap_or_default()
}

/// The runbook example from `examples/`, renamed into the test's world.
fn runbook(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_path("examples/litellm-deployment.yaml")).unwrap();
    let mut d: Value = litellm_operator_tests::yaml_documents(&text, "example")
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "LiteLLMDeployment")
        .unwrap();
    d["metadata"] = json!({"name": name});
    d["spec"]["service"]["name"] = json!(name);
    d
}

const CREDENTIAL_KEYS: [&str; 8] = [
    "database-url",
    "ui-username",
    "ui-password",
    "redis-host",
    "redis-password",
    "langfuse-secret-key",
    "langfuse-public-key",
    "context7-api-key",
];

async fn runbook_world(test: &str) -> World {
    let w = world(test).await;
    let data: Vec<(&str, &str)> = CREDENTIAL_KEYS.iter().map(|k| (*k, "value-1")).collect();
    w.put_secret("litellm-credentials", &data).await;
    // TAVILY_API_KEY is external: another team created it and added a version.
    let tavily = SecretName::new(PROJECT, "tavily-api-key");
    w.gcp.create_secret(&tavily, &Default::default()).await.unwrap();
    w.gcp
        .add_version(&tavily, &SecretPayload::new(b"tvly-1".to_vec()))
        .await
        .unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_stack_converges_to_ready() {
    let w = runbook_world("converge").await;
    let name = w.create(runbook("litellm-proxy")).await;
    let status = w.wait_ready(&name).await;

    // Every secret exists with a concrete pinned version and an accessor binding for the runtime account.
    assert_eq!(status.secrets.len(), 11, "{status:?}");
    for pinned_secret in &status.secrets {
        let version: u64 = pinned_secret.version.as_deref().unwrap().parse().unwrap();
        let secret = SecretName::parse(&pinned_secret.secret).unwrap();
        let v = w
            .gcp
            .get_version(&secret, VersionRef::Number(version))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.state, VersionState::Enabled);
        let policy = w
            .gcp
            .get_policy(&PolicyTarget::Secret(secret.clone()))
            .await
            .unwrap();
        let accessor = policy
            .bindings
            .iter()
            .find(|b| b.role == "roles/secretmanager.secretAccessor")
            .unwrap();
        assert!(
            accessor.members.contains(&format!("serviceAccount:{RUNTIME_SA}")),
            "{secret}"
        );
    }
    // Generated keys carry the prefix and length, and are in Secret Manager only.
    let master = w
        .gcp
        .access_version(
            &SecretName::new(PROJECT, "litellm-master-key"),
            VersionRef::Latest,
        )
        .await
        .unwrap();
    assert_eq!(master.payload.len(), 51);
    assert!(master.payload.expose().starts_with(b"sk-"));

    // The service pins every secret to the version in status, never `latest`.
    let service = w
        .gcp
        .get_service(&ServiceName::new(PROJECT, REGION, "litellm-proxy"))
        .await
        .unwrap()
        .unwrap();
    let service = serde_json::to_value(&service).unwrap();
    let env = service["template"]["containers"][0]["env"].as_array().unwrap();
    for p in &status.secrets {
        let e = env.iter().find(|e| e["name"] == p.env.as_str()).unwrap();
        assert_eq!(
            e["valueSource"]["secretKeyRef"]["version"],
            p.version.clone().unwrap().as_str(),
            "{}",
            p.env
        );
    }
    assert_eq!(
        env.iter().find(|e| e["name"] == "STORE_MODEL_IN_DB").unwrap()["value"],
        "True"
    );
    assert!(
        status.url.as_deref().unwrap_or_default().starts_with("https://"),
        "{status:?}"
    );
    assert!(status.latest_ready_revision.is_some());
    // allowUnauthenticated: allUsers may invoke.
    let policy = w
        .gcp
        .get_policy(&PolicyTarget::Service(ServiceName::new(
            PROJECT,
            REGION,
            "litellm-proxy",
        )))
        .await
        .unwrap();
    assert!(
        policy
            .bindings
            .iter()
            .any(|b| b.role == "roles/run.invoker" && b.members.contains(&"allUsers".to_owned()))
    );
    assert_eq!(status.applied_bindings.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_resource_makes_no_google_writes_and_no_status_writes() {
    let w = runbook_world("steady").await;
    let name = w.create(runbook("steady")).await;
    w.wait_ready(&name).await;
    // Let the last post-Ready reconcile settle, then watch a few resyncs (2 s each).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = w.calls();
    let status_writes = w.metrics.encode();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = w.calls();
    let writes = [
        "CreateSecret",
        "AddSecretVersion",
        "SetIamPolicy",
        "CreateService",
        "UpdateService",
        "DisableSecretVersion",
    ];
    for method in writes {
        assert_eq!(
            before.get(method),
            after.get(method),
            "{method} was called in steady state: {after:?}"
        );
    }
    assert_eq!(
        before.get("AccessSecretVersion"),
        after.get("AccessSecretVersion"),
        "payload read in steady state"
    );
    let resyncs =
        after.get("GetService").copied().unwrap_or(0) - before.get("GetService").copied().unwrap_or(0);
    assert!(
        resyncs >= 2,
        "expected resyncs to read the service: {before:?} -> {after:?}"
    );
    let writes_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("litellm_operator_status_writes_total"))
            .map(str::to_owned)
    };
    assert_eq!(
        writes_line(&status_writes),
        writes_line(&w.metrics.encode()),
        "status written in steady state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_kubernetes_secret_rotates_and_retires_old_versions() {
    let w = runbook_world("rotate").await;
    let mut manifest = runbook("rotate");
    manifest["spec"]["secretPolicy"]["keepEnabledVersions"] = json!(1);
    let name = w.create(manifest).await;
    let first = w.wait_ready(&name).await;
    assert_eq!(pinned(&first, "DATABASE_URL"), "1");

    let data: Vec<(&str, &str)> = CREDENTIAL_KEYS
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v1 = w
            .gcp
            .get_version(&db, VersionRef::Number(1))
            .await
            .unwrap()
            .unwrap();
        if v1.state == VersionState::Disabled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "version 1 still {:?}",
            v1.state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let versions = w.gcp.list_versions(&db).await.unwrap();
    assert_eq!(versions.len(), 2, "never two versions of one value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_outside_the_operator_is_put_back() {
    let w = runbook_world("drift").await;
    let name = w.create(runbook("drift")).await;
    w.wait_ready(&name).await;
    let service_name = ServiceName::new(PROJECT, REGION, "drift");
    let mut live = serde_json::to_value(w.gcp.get_service(&service_name).await.unwrap().unwrap()).unwrap();
    live["template"]["containers"][0]["image"] = json!("example.com/someone-else:latest");
    w.gcp
        .update_service(&service_name, serde_json::from_value(live).unwrap())
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let live = serde_json::to_value(w.gcp.get_service(&service_name).await.unwrap().unwrap()).unwrap();
        if live["template"]["containers"][0]["image"] == "ghcr.io/berriai/litellm:main-stable" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "drift not corrected: {}",
            live["template"]["containers"][0]["image"]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    w.wait_ready(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_secret_is_reported_and_the_rest_converges() {
    let w = world("missing").await;
    let manifest = json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": "missing"},
        "spec": {
            "project": PROJECT, "region": REGION,
            "service": {"image": "ghcr.io/berriai/litellm:main-stable", "serviceAccount": RUNTIME_SA},
            "secrets": [
                {"env": "LITELLM_MASTER_KEY", "generate": {"length": 32}},
                {"env": "OPENAI_API_KEY", "fromSecret": {"name": "not-there-yet", "key": "openai"}}
            ]
        }
    });
    let name = w.create(manifest).await;
    let status = w
        .wait_for(&name, "SecretSourceMissing", Duration::from_secs(30), |s| {
            condition(s, "SecretsReady").1 == "SecretSourceMissing"
        })
        .await;
    assert!(
        condition(&status, "SecretsReady").2.contains("not-there-yet"),
        "{status:?}"
    );
    assert_eq!(
        pinned(&status, "LITELLM_MASTER_KEY"),
        "1",
        "the other secret still converged"
    );
    assert_eq!(condition(&status, "Ready").0, "False");

    // Creating the Secret is picked up by the Secret watch.
    w.put_secret("not-there-yet", &[("openai", "sk-openai")]).await;
    w.wait_ready(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_reported_without_calling_google() {
    let w = world("invalid").await;
    let manifest = json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": "invalid"},
        "spec": {
            "project": PROJECT, "region": REGION,
            "service": {"image": "ghcr.io/berriai/litellm:main-stable", "serviceAccount": RUNTIME_SA,
                        "resources": {"cpu": "3", "memory": "4Gi"}}
        }
    });
    let name = w.create(manifest).await;
    let status = w
        .wait_for(&name, "InvalidSpec", Duration::from_secs(30), |s| {
            condition(s, "Ready").1 == "InvalidSpec"
        })
        .await;
    assert!(
        condition(&status, "Ready")
            .2
            .contains("spec.service.resources.cpu"),
        "{status:?}"
    );
    assert!(
        w.calls().is_empty(),
        "Google was called for an invalid spec: {:?}",
        w.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_follows_the_deletion_policy() {
    let w = runbook_world("delete").await;
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
    let w = runbook_world("abandon").await;
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

fn minimal(name: &str) -> Value {
    json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": name},
        "spec": {
            "project": PROJECT, "region": REGION,
            "service": {"image": "ghcr.io/berriai/litellm:main-stable", "serviceAccount": RUNTIME_SA},
            "secrets": [
                {"env": "LITELLM_MASTER_KEY", "generate": {"length": 32, "prefix": "sk-"}},
                {"env": "DATABASE_URL", "fromSecret": {"name": "creds", "key": "database-url"}}
            ]
        }
    })
}

impl World {
    async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.deployments()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    async fn patch_spec(&self, name: &str, patch: Value) {
        self.deployments()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": patch})),
            )
            .await
            .unwrap();
    }

    /// `reason: note` of every Event in the namespace.
    async fn events(&self) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    async fn delete_and_wait(&self, name: &str) {
        self.deployments()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        self.wait_gone(name).await;
    }

    async fn service_exists(&self, service: &str) -> bool {
        self.gcp
            .get_service(&ServiceName::new(PROJECT, REGION, service))
            .await
            .unwrap()
            .is_some()
    }

    async fn secret_exists(&self, id: &str) -> bool {
        self.gcp
            .find_secret(&SecretName::new(PROJECT, id))
            .await
            .unwrap()
            .is_some()
    }

    async fn wait_gone(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.deployments().get_opt(name).await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "finalizer not released");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_denied_while_iam_propagates_is_rolled_again_until_ready() {
    let w = world_with(
        "propagation",
        gcp_emulator::Config {
            iam_propagation: Duration::from_secs(3),
            ..gcp_emulator::Config::default()
        },
        Settings {
            iam_retry_delay: Duration::from_secs(1),
            ..Settings::default()
        },
    )
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
    // The grant was made once, not repeated.
    assert_eq!(
        w.calls().get("SetIamPolicy").copied().unwrap_or(0),
        2,
        "{:?}",
        w.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_revision_keeps_traffic_and_old_versions() {
    let w = world_with(
        "failed",
        gcp_emulator::Config {
            crashing_images: vec!["example.com/litellm:broken".into()],
            ..gcp_emulator::Config::default()
        },
        Settings::default(),
    )
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
    let db = SecretName::new(PROJECT, "database-url");
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
    let w = world("lost").await;
    w.put_secret("creds", &[("database-url", "postgres://same")])
        .await;
    // State after a crash between addVersion and the status write: our secret with the value, no status record.
    let db = SecretName::new(PROJECT, "database-url");
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
async fn an_existing_secret_that_is_not_ours_is_a_conflict_until_adopted() {
    let w = world("adopt").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    // Someone created database-url by hand (the gcloud runbook): no labels at all.
    let created = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/{PROJECT}/secrets?secretId=database-url",
            w.emulator_url
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
    let w = world("claim").await;
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
    let w = world("paused").await;
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
    for method in ["AddSecretVersion", "UpdateService", "SetIamPolicy"] {
        assert_eq!(before.get(method), after.get(method), "{method} while paused");
    }
    // Unpausing rolls the change out.
    w.annotate(&name, "litellm.dev/paused", "false").await;
    w.wait_for(&name, "DATABASE_URL pinned to 2", Duration::from_secs(30), |s| {
        pinned(s, "DATABASE_URL") == "2" && condition(s, "Ready").0 == "True"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_escape_hatch_leaves_google_untouched() {
    let w = world("hatch").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let mut manifest = minimal("hatch");
    manifest["spec"]["deletionPolicy"] = json!({"service": "Delete", "secrets": "Delete"});
    let name = w.create(manifest).await;
    w.wait_ready(&name).await;
    w.annotate(&name, "litellm.dev/deletion-policy", "Abandon").await;
    w.delete_and_wait(&name).await;
    assert!(w.service_exists("hatch").await);
    assert!(w.secret_exists("database-url").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_value_reaches_no_event_status_or_metric() {
    const CANARY: &str = "canary-7f3d9a1c-never-print-me";
    let w = world("canary").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_releases_the_finalizer() {
    let w = world("nsdelete").await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("nsdelete")).await;
    w.wait_ready(&name).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(w.client.clone());
    namespaces.delete(&w.ns, &DeleteParams::default()).await.unwrap();
    // kube-controller-manager's namespace controller deletes the resource; our finalizer cleans up and lets go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while namespaces.get_opt(&w.ns).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace stuck terminating"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!w.service_exists("nsdelete").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_rollout_converges_without_duplicates() {
    let mut w = world_with(
        "restart",
        gcp_emulator::Config::default(),
        Settings {
            progress_poll: Duration::from_millis(300),
            ..Settings::default()
        },
    )
    .await;
    w.put_secret("creds", &[("database-url", "postgres://db")]).await;
    let name = w.create(minimal("restart")).await;
    // Stop the operator as soon as the service exists, before its revision is Ready.
    let service = ServiceName::new(PROJECT, REGION, "restart");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while w.gcp.get_service(&service).await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "service never created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.operator.abort();

    // A new operator process (fresh memory) takes over.
    let (_, _, operator) = start_operator(&w.client, &w.ns, &w.emulator_url, Settings::default()).await;
    w.operator = operator;
    let status = w.wait_ready(&name).await;
    assert!(
        status
            .latest_ready_revision
            .as_deref()
            .unwrap()
            .starts_with("restart-00001-"),
        "{status:?}"
    );
    for id in ["database-url", "litellm-master-key"] {
        let versions = w.gcp.list_versions(&SecretName::new(PROJECT, id)).await.unwrap();
        assert_eq!(versions.len(), 1, "{id} has {} versions", versions.len());
    }
}

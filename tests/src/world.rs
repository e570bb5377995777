//! One test's world for end-to-end flows: its own namespace on the shared control plane, its own Google emulator,
//! and an operator instance (in-process, as a fresh `litellm-operator run` would have it) watching only that
//! namespace.
#![allow(
    clippy::panic,
    reason = "a test fixture: a failed Kubernetes or Google request fails the test with its error"
)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use litellm_operator::controller::{self, Context, Settings};
use litellm_operator::metrics::{Health, Metrics};
use litellm_operator::plan::tenancy::{Rules, TenancyPolicy};
use litellm_operator_api::{LiteLLMDeployment, LiteLLMDeploymentStatus};
use litellm_operator_gcp::{
    AccessToken, CloudRun, CredentialsSource, Gcp, GcpConfig, SecretName, SecretPayload, SecretStore,
    SecretVersionStore, ServiceName,
};
use serde_json::{Value, json};

use crate::calls::Calls;
use crate::control_plane::ControlPlane;
use crate::eventually::eventually;
use crate::fixtures::{
    OPERATOR_ACCOUNT, PROJECT, REGION, RUNBOOK_CREDENTIAL_KEYS, RUNTIME_SA, documented_operator_permissions,
};
use crate::manifests::install_litellm_crd;

/// The field manager of the Kubernetes Secrets a [`World`] writes.
const SECRET_FIELD_MANAGER: &str = "flows-test";

/// How long [`World::wait_ready`] waits for Ready=True.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The emulator a [`World`] starts unless told otherwise: defaults, with revisions starting in 300 ms, callers'
/// permissions checked (see [`grant_operator`]), and the accounts of the fixtures existing (the runtime account
/// and the operator's own; as in Google, no other account exists until a test seeds it).
pub fn fast_emulator() -> gcp_emulator::Config {
    gcp_emulator::Config {
        revision_startup: Duration::from_millis(300),
        enforce_auth: true,
        service_accounts: vec![RUNTIME_SA.to_owned(), OPERATOR_ACCOUNT.to_owned()],
        ..gcp_emulator::Config::default()
    }
}

/// What [`OPERATOR_ACCOUNT`] is granted in a [`World`] whose emulator checks callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OperatorGrants {
    /// The guide's custom role on [`PROJECT`], and `roles/iam.serviceAccountUser` on the project, so it covers
    /// every runtime account a test names.
    #[default]
    Tests,
    /// Exactly what docs/security.md grants: the custom role on the project and `roles/iam.serviceAccountUser` on
    /// [`RUNTIME_SA`] only, less `without` (one permission of the role, or `iam.serviceAccounts.actAs`).
    Guide { without: Option<String> },
}

/// Grants [`OPERATOR_ACCOUNT`] the guide's custom role (the exact permission list of docs/security.md) and
/// `actAs` as `grants` says, and returns a token that authenticates as it.
pub fn grant_operator(state: &gcp_emulator::StateHandle, grants: &OperatorGrants) -> String {
    let without = match grants {
        OperatorGrants::Tests => None,
        OperatorGrants::Guide { without } => without.as_deref(),
    };
    let permissions = documented_operator_permissions();
    let permissions: Vec<&str> = permissions
        .iter()
        .map(String::as_str)
        .filter(|p| Some(*p) != without)
        .collect();
    let role = state.put_custom_role(PROJECT, "litellmOperator", &permissions);
    let member = format!("serviceAccount:{OPERATOR_ACCOUNT}");
    state.grant_on_project(PROJECT, &role, &member);
    match grants {
        OperatorGrants::Tests => state.grant_on_project(PROJECT, "roles/iam.serviceAccountUser", &member),
        OperatorGrants::Guide { .. } if without != Some("iam.serviceAccounts.actAs") => {
            state.grant_on_service_account(RUNTIME_SA, "roles/iam.serviceAccountUser", &member);
        }
        OperatorGrants::Guide { .. } => {}
    }
    state
        .mint_token(&member)
        .unwrap_or_else(|e| panic!("token for {member}: {e}"))
}

/// The controller settings of a [`World`]'s operator unless told otherwise: the binary's defaults with a 2 s resync
/// and a 300 ms progress poll. The namespace is always the world's own.
///
/// Tenancy is permissive here (every project, account, external secret, adoption): these worlds test the other
/// features; the tenancy tests set their own policy.
pub fn fast_settings() -> Settings {
    Settings {
        resync: Duration::from_secs(2),
        progress_poll: Duration::from_millis(300),
        tenancy: TenancyPolicy {
            tenants: Vec::new(),
            default: Rules::permissive(),
        },
        ..Settings::default()
    }
}

/// `(status, reason, message)` of condition `type_`, empty strings when there is none.
pub fn condition(status: &LiteLLMDeploymentStatus, type_: &str) -> (String, String, String) {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// Whether the Ready condition is True.
pub fn is_ready(status: &LiteLLMDeploymentStatus) -> bool {
    condition(status, "Ready").0 == "True"
}

/// The secret version pinned for environment variable `env`, empty when none is.
pub fn pinned(status: &LiteLLMDeploymentStatus, env: &str) -> String {
    status
        .secrets
        .iter()
        .find(|p| p.env == env)
        .and_then(|p| p.version.clone())
        .unwrap_or_default()
}

/// How to build a [`World`]: [`World::builder`], then [`emulator`](Self::emulator) and
/// [`settings`](Self::settings) to change the defaults ([`fast_emulator`], [`fast_settings`]), then
/// [`start`](Self::start).
#[must_use]
pub struct WorldBuilder {
    test: String,
    emulator: gcp_emulator::Config,
    settings: Settings,
    operator_client: Option<Client>,
    grants: OperatorGrants,
}

impl std::fmt::Debug for WorldBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldBuilder")
            .field("test", &self.test)
            .field("emulator", &self.emulator)
            .field("settings", &self.settings)
            .field("operator_client", &self.operator_client.is_some())
            .field("grants", &self.grants)
            .finish()
    }
}

impl WorldBuilder {
    /// The emulator's configuration, e.g. `Config { iam_propagation: ..., ..fast_emulator() }`.
    pub fn emulator(mut self, config: gcp_emulator::Config) -> Self {
        self.emulator = config;
        self
    }

    /// The operator's settings, e.g. `Settings { iam_retry_delay: ..., ..fast_settings() }`. The namespace is
    /// replaced by the world's own.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// What the operator's Google account is granted when the emulator checks callers.
    pub fn grants(mut self, grants: OperatorGrants) -> Self {
        self.grants = grants;
        self
    }

    /// The Kubernetes client the operator uses (for example one whose requests a test records); the test's own
    /// client stays the plain one.
    pub fn operator_client(mut self, client: Client) -> Self {
        self.operator_client = Some(client);
        self
    }

    /// Installs the CRD on the shared control plane, makes the namespace, starts the emulator and the operator.
    pub async fn start(self) -> World {
        let cp = ControlPlane::shared()
            .await
            .unwrap_or_else(|e| panic!("control plane: {e}"));
        let client = cp.client().unwrap_or_else(|e| panic!("{e}"));
        install_litellm_crd(&client)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ns = cp.namespace(&self.test).await.unwrap_or_else(|e| panic!("{e}"));
        let enforce_auth = self.emulator.enforce_auth;
        let emulator = gcp_emulator::spawn(self.emulator)
            .await
            .unwrap_or_else(|e| panic!("emulator: {e}"));
        let token = enforce_auth.then(|| grant_operator(&emulator.state(), &self.grants));
        let settings = Settings {
            namespace: Some(ns.clone()),
            ..self.settings
        };
        let operator_client = self.operator_client.unwrap_or_else(|| client.clone());
        let (metrics, operator) =
            spawn_operator(&operator_client, &emulator.url(), token.clone(), settings.clone()).await;
        let gcp = owner_client(&emulator).await;
        World {
            token,
            client,
            ns,
            gcp,
            metrics,
            emulator,
            settings,
            operator_client,
            operator: Some(operator),
        }
    }
}

/// One test's world: a namespace on the shared control plane, a Google emulator, and an operator instance
/// watching that namespace and talking to that emulator. Dropping it stops the operator and the emulator.
pub struct World {
    /// An admin client of the control plane.
    pub client: Client,
    /// The world's namespace.
    pub ns: String,
    /// The test's own Google client, acting as the project's owner (so a test may inspect and change what the
    /// operator's narrower role may not). Its calls show in the emulator's counters like the operator's.
    pub gcp: Gcp,
    /// The running operator instance's metrics.
    pub metrics: Arc<Metrics>,
    /// The emulator; [`emulator.state()`](gcp_emulator::Emulator::state) reaches its state, counters and faults.
    pub emulator: gcp_emulator::Emulator,
    settings: Settings,
    /// The client operator instances use.
    operator_client: Client,
    /// The operator's Google token, when the emulator checks callers.
    token: Option<String>,
    operator: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("ns", &self.ns)
            .field("emulator", &self.emulator.url())
            .field("operator_running", &self.operator.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_operator();
    }
}

/// An operator instance (as a fresh process would have it) talking to the emulator at `url` with the binary's quota
/// buckets.
async fn spawn_operator(
    client: &Client,
    url: &str,
    token: Option<String>,
    settings: Settings,
) -> (Arc<Metrics>, tokio::task::JoinHandle<()>) {
    let endpoint = url.parse().unwrap_or_else(|e| panic!("emulator URL {url}: {e}"));
    let mut config = GcpConfig {
        rate_limits: litellm_operator::gcp_config::rate_limits(0.8),
        ..GcpConfig::emulator(endpoint)
    };
    if let Some(token) = token {
        config.credentials = CredentialsSource::StaticToken(AccessToken::new(token));
    }
    let mut metrics = Metrics::new();
    let gcp = Gcp::connect(&config, metrics.gcp_registry())
        .await
        .unwrap_or_else(|e| panic!("Google clients: {e}"));
    let metrics = Arc::new(metrics);
    let ctx = Arc::new(Context::new(
        client.clone(),
        gcp.clone(),
        kube::runtime::events::Reporter {
            controller: "litellm-operator".into(),
            instance: None,
        },
        metrics.clone(),
        settings,
    ));
    (metrics, tokio::spawn(controller::run(ctx, Health::default())))
}

/// The project owner of [`PROJECT`] (`user:owner@example.com`), for the test's own Google calls.
pub async fn owner_client(emulator: &gcp_emulator::Emulator) -> Gcp {
    let member = "user:owner@example.com";
    let state = emulator.state();
    state.grant_on_project(PROJECT, "roles/owner", member);
    let token = state
        .mint_token(member)
        .unwrap_or_else(|e| panic!("token for {member}: {e}"));
    let endpoint = emulator
        .url()
        .parse()
        .unwrap_or_else(|e| panic!("emulator URL: {e}"));
    let config = GcpConfig {
        credentials: CredentialsSource::StaticToken(AccessToken::new(token)),
        ..GcpConfig::emulator(endpoint)
    };
    Gcp::connect(&config, &mut Default::default())
        .await
        .unwrap_or_else(|e| panic!("Google clients: {e}"))
}

impl World {
    /// A world with the fast defaults ([`fast_emulator`], [`fast_settings`]); `test` prefixes the namespace.
    pub async fn new(test: &str) -> World {
        Self::builder(test).start().await
    }

    /// A world to configure before [`start`](WorldBuilder::start); `test` prefixes the namespace.
    pub fn builder(test: &str) -> WorldBuilder {
        WorldBuilder {
            test: test.to_owned(),
            emulator: fast_emulator(),
            settings: fast_settings(),
            operator_client: None,
            grants: OperatorGrants::default(),
        }
    }

    /// A world with the runbook's inputs ([`fixtures::runbook`](crate::fixtures::runbook)): the Kubernetes Secret
    /// `litellm-credentials` with every [`RUNBOOK_CREDENTIAL_KEYS`] set to `value-1`, and the external Google secret
    /// `tavily-api-key` (another team's) with version 1 `tvly-1`.
    pub async fn runbook(test: &str) -> World {
        let w = Self::new(test).await;
        let data: Vec<(&str, &str)> = RUNBOOK_CREDENTIAL_KEYS.iter().map(|k| (*k, "value-1")).collect();
        w.put_secret("litellm-credentials", &data).await;
        w.add_external_secret("tavily-api-key", b"tvly-1").await;
        w
    }

    /// Stops the operator instance (as if its process died); no-op when none runs.
    pub fn stop_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.abort();
        }
    }

    /// Replaces the operator's settings (the namespace stays the world's own), for the next
    /// [`start_operator`](Self::start_operator): settings that name the namespace can only be written once it exists.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = Settings {
            namespace: Some(self.ns.clone()),
            ..settings
        };
    }

    /// Starts a new operator instance with fresh memory, stopping the running one first. [`metrics`](Self::metrics)
    /// become the new instance's.
    pub async fn start_operator(&mut self) {
        self.stop_operator();
        let (metrics, operator) = spawn_operator(
            &self.operator_client,
            &self.emulator.url(),
            self.token.clone(),
            self.settings.clone(),
        )
        .await;
        self.metrics = metrics;
        self.operator = Some(operator);
    }

    /// The emulator's base URL, for raw HTTP requests.
    pub fn emulator_url(&self) -> String {
        self.emulator.url()
    }

    /// The Google calls the emulator has answered so far, whoever made them.
    pub fn calls(&self) -> Calls {
        Calls::of(&self.emulator.state())
    }

    /// LiteLLMDeployments in the world's namespace.
    pub fn deployments(&self) -> Api<LiteLLMDeployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Kubernetes Secrets in the world's namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates or replaces (server-side apply) the Kubernetes Secret `name` with exactly `data`.
    pub async fn put_secret(&self, name: &str, data: &[(&str, &str)]) {
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
                &PatchParams::apply(SECRET_FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap_or_else(|e| panic!("apply Secret {name}: {e}"));
    }

    /// Creates Google secret `id` in [`PROJECT`] without our labels (as another team would) with one version
    /// holding `payload`.
    pub async fn add_external_secret(&self, id: &str, payload: &[u8]) {
        let secret = SecretName::new(PROJECT, id);
        self.gcp
            .create_secret(&secret, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("create {secret}: {e}"));
        self.gcp
            .add_version(&secret, &SecretPayload::new(payload.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("add a version to {secret}: {e}"));
    }

    /// Creates the LiteLLMDeployment `manifest` in the world's namespace and returns its name.
    pub async fn create(&self, manifest: Value) -> String {
        let mut obj: LiteLLMDeployment =
            serde_json::from_value(manifest).unwrap_or_else(|e| panic!("not a LiteLLMDeployment: {e}"));
        obj.metadata.namespace = Some(self.ns.clone());
        let created = self
            .deployments()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create LiteLLMDeployment: {e}"));
        created.metadata.name.unwrap_or_default()
    }

    /// The status of LiteLLMDeployment `name` (empty when it has none yet).
    pub async fn status(&self, name: &str) -> LiteLLMDeploymentStatus {
        self.deployments()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get LiteLLMDeployment {name}: {e}"))
            .status
            .unwrap_or_default()
    }

    /// Waits until `check` accepts the status of `name` and returns that status; fails the test with `what` and the
    /// last status after `timeout`.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&LiteLLMDeploymentStatus) -> bool,
    ) -> LiteLLMDeploymentStatus {
        eventually(what, timeout, || async {
            let status = self.status(name).await;
            if check(&status) {
                Ok(status)
            } else {
                Err(serde_json::to_string_pretty(&status).unwrap_or_default())
            }
        })
        .await
    }

    /// Waits (up to [`READY_TIMEOUT`]) until `name` is Ready=True.
    pub async fn wait_ready(&self, name: &str) -> LiteLLMDeploymentStatus {
        self.wait_for(name, "Ready=True", READY_TIMEOUT, is_ready).await
    }

    /// Sets annotation `key` of `name` to `value`.
    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.deployments()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("annotate {name}: {e}"));
    }

    /// Merges `patch` into the spec of `name`.
    pub async fn patch_spec(&self, name: &str, patch: Value) {
        self.deployments()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": patch})),
            )
            .await
            .unwrap_or_else(|e| panic!("patch the spec of {name}: {e}"));
    }

    /// `reason: note` of every Event in the namespace.
    pub async fn events(&self) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("list Events: {e}"))
            .items
            .into_iter()
            .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Deletes `name` and waits until it is gone (the operator released its finalizer).
    pub async fn delete_and_wait(&self, name: &str) {
        self.deployments()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
        self.wait_gone(name).await;
    }

    /// Waits (up to 30 s) until `name` no longer exists.
    pub async fn wait_gone(&self, name: &str) {
        eventually(
            &format!("the finalizer of {name} to be released"),
            Duration::from_secs(30),
            || async {
                self.deployments()
                    .get_opt(name)
                    .await
                    .unwrap_or_else(|e| panic!("get {name}: {e}"))
                    .is_none()
            },
        )
        .await;
    }

    /// Whether Cloud Run service `service` exists in [`PROJECT`]/[`REGION`].
    pub async fn service_exists(&self, service: &str) -> bool {
        self.gcp
            .get_service(&ServiceName::new(PROJECT, REGION, service))
            .await
            .unwrap_or_else(|e| panic!("get service {service}: {e}"))
            .is_some()
    }

    /// Whether Google secret `id` exists in [`PROJECT`].
    pub async fn secret_exists(&self, id: &str) -> bool {
        self.gcp
            .find_secret(&SecretName::new(PROJECT, id))
            .await
            .unwrap_or_else(|e| panic!("find secret {id}: {e}"))
            .is_some()
    }
}

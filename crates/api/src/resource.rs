//! The `LiteLLMDeployment` custom resource: spec, status and the CEL rules the API server enforces.
//!
//! Every field carries a `///` doc comment: it becomes the schema description that `kubectl explain` prints and
//! the text of `docs/crd-reference.md`. A field with a default ends it with `Default: `value`.` (the exact value for
//! a scalar, in words for an object), since `kubectl explain` shows no `default`. [`crate::crd`] joins the wrapped
//! lines of each paragraph, so write whole sentences and separate paragraphs with a blank `///` line.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names;

/// A LiteLLM proxy on Google Cloud Run whose credentials live in Google Secret Manager.
///
/// The controller keeps the Secret Manager secrets and versions, their IAM bindings and the Cloud Run service
/// converged with this spec, and reports progress in `status`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    doc = "A LiteLLM proxy on Google Cloud Run with every credential in Google Secret Manager.",
    group = "litellm.dev",
    version = "v1alpha1",
    kind = "LiteLLMDeployment",
    plural = "litellmdeployments",
    shortname = "llmd",
    category = "litellm",
    namespaced,
    status = "LiteLLMDeploymentStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.latestReadyRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // `kubectl get -o wide` only (priority 1): where it runs, and why it is (not) Ready.
    printcolumn = r#"{"name":"Project","type":"string","priority":1,"jsonPath":".spec.project"}"#,
    printcolumn = r#"{"name":"Region","type":"string","priority":1,"jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    // On the whole object, where `metadata.name` is visible: `spec.service.name` may be added or removed while it
    // equals `metadata.name` (the same Cloud Run service), never changed to another service.
    validation = kube::core::Rule::new(SERVICE_NAME_IMMUTABLE_RULE)
        .message(SERVICE_NAME_IMMUTABLE_MESSAGE)
        .field_path(".spec.service.name")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.secrets) || !has(self.service.env) || self.secrets.all(s, !(s.env in self.service.env))",
        "message": "a secret's env name must not also be set in service.env: credentials belong in spec.secrets, never in plain env"
    },
]))]
pub struct LiteLLMDeploymentSpec {
    /// Google Cloud project id that holds the secrets and the Cloud Run service. Immutable.
    #[schemars(
        length(min = 6, max = 63),
        regex(pattern = r"^([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$"),
        extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "project is immutable"}])
    )]
    pub project: String,

    /// Cloud Run region, for example `us-central1`. Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]+-[a-z]+[0-9]+$"),
        extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "region is immutable"}])
    )]
    pub region: String,

    /// The Cloud Run service that runs the LiteLLM proxy.
    pub service: ServiceSpec,

    /// Credentials: each becomes a Secret Manager secret, an accessor binding for the runtime service account and
    /// an environment variable of the service pinned to a concrete secret version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        extend(
            "x-kubernetes-list-type" = "map",
            "x-kubernetes-list-map-keys" = ["env"],
            "x-kubernetes-validations" = [{
                "rule": "self.all(a, self.exists_one(b, (has(b.secretId) ? b.secretId : (has(b.external) ? '' : '~') + b.env.lowerAscii().replace('_', '-')) == (has(a.secretId) ? a.secretId : (has(a.external) ? '' : '~') + a.env.lowerAscii().replace('_', '-'))))",
                "message": "secret ids must be unique (secretId defaults to the service name and the env name in lower case with '_' replaced by '-', or for external secrets to the env name alone)"
            }]
        )
    )]
    pub secrets: Vec<SecretSpec>,

    /// LiteLLM's proxy configuration (`model_list`, `router_settings`, `general_settings`, `litellm_settings`,
    /// ...), as YAML: `inline`, or a key of a ConfigMap (`configMapKeyRef`). It is kept as a Secret Manager secret
    /// the operator owns, like a `fromSecret` credential: the runtime service account gets an accessor binding on it,
    /// and the service mounts it, pinned to a concrete version, as the file `/etc/litellm/config.yaml` and starts
    /// LiteLLM with `--config /etc/litellm/config.yaml`. A change of the YAML adds a secret version and rolls out a
    /// revision pinned to it. Refer to credentials of `spec.secrets` as `os.environ/NAME` instead of writing them
    /// here. Default: none, LiteLLM runs without a config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSpec>,

    /// How Secret Manager secrets are created and how many versions stay enabled. Default: `Automatic` replication,
    /// 2 enabled versions.
    #[serde(default)]
    pub secret_policy: SecretPolicy,

    /// What happens to the Google resources when this LiteLLMDeployment is deleted. Default: the Cloud Run service
    /// is deleted, the Secret Manager secrets are kept.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The root CEL rule that keeps the Cloud Run service the same: the effective name (`spec.service.name`, else
/// `metadata.name`) never changes, so `spec.service.name` may be added or removed while it equals `metadata.name`.
/// It sits on the whole object because only there can CEL see `metadata.name`.
pub const SERVICE_NAME_IMMUTABLE_RULE: &str = "(has(self.spec.service.name) ? self.spec.service.name : self.metadata.name) == \
     (has(oldSelf.spec.service.name) ? oldSelf.spec.service.name : oldSelf.metadata.name)";

/// The message of [`SERVICE_NAME_IMMUTABLE_RULE`].
pub const SERVICE_NAME_IMMUTABLE_MESSAGE: &str = "service.name is immutable: it may only be added or removed while it \
     equals metadata.name, which names the same Cloud Run service";

/// The Cloud Run v2 service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Cloud Run service id: lowercase letters, digits and hyphens, starting with a letter, not ending with a
    /// hyphen, at most 49 characters. Default: `metadata.name`. Immutable: it may be added or removed only while it
    /// equals `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 49), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: Option<String>,

    /// Container image of the LiteLLM proxy, for example `ghcr.io/berriai/litellm:main-stable`. Pin a digest
    /// for reproducible rollouts.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,

    /// Port the proxy listens on; Cloud Run sends requests to it and sets `PORT` to it. Default: `4000`.
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// CPU and memory limits of each instance. Default: 1 CPU and `2Gi`.
    #[serde(default)]
    pub resources: Resources,

    /// Instance counts and per-instance concurrency. Default: 0 to 10 instances, 80 concurrent requests each.
    #[serde(default)]
    pub scaling: Scaling,

    /// Runtime identity of the service, for example `litellm-run@my-project.iam.gserviceaccount.com`. It is
    /// granted `roles/secretmanager.secretAccessor` on each secret in `spec.secrets`.
    #[schemars(
        length(min = 3, max = 254),
        regex(pattern = r"^[a-zA-Z0-9._%+-]+@[a-z0-9.-]+\.gserviceaccount\.com$")
    )]
    pub service_account: String,

    /// When true, `allUsers` is granted `roles/run.invoker` on the service so the proxy is reachable without a
    /// Google identity (LiteLLM still checks its own keys). Turning it off removes only the binding the operator
    /// added. Default: `false`.
    #[serde(default)]
    pub allow_unauthenticated: bool,

    /// Where requests may come from: `All` (the internet), `Internal` (the VPC and Google services in the same
    /// project) or `InternalAndCloudLoadBalancing` (`Internal` plus Google Cloud external Application Load
    /// Balancers). Default: `All`.
    #[serde(default)]
    pub ingress: Ingress,

    /// Plain, non-secret environment variables, for example `STORE_MODEL_IN_DB: "True"`. Credentials go in
    /// `spec.secrets`. `PORT` and the `K_*` variables are reserved by Cloud Run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 200,
        "x-kubernetes-validations" = [
            {"rule": "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))", "message": "env names must match [A-Za-z_][A-Za-z0-9_]*"},
            {"rule": "self.all(k, !(k in ['PORT', 'K_SERVICE', 'K_REVISION', 'K_CONFIGURATION']))", "message": "PORT, K_SERVICE, K_REVISION and K_CONFIGURATION are reserved by Cloud Run"}
        ]
    ))]
    pub env: BTreeMap<String, String>,

    /// Cloud SQL instances mounted through the Cloud SQL connector, as `project:region:instance`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 10),
        inner(regex(pattern = r"^[^:\s]+(:[^:\s]+)?:[a-z0-9-]+:[a-z0-9][-a-z0-9]*$"))
    )]
    pub cloud_sql_instances: Vec<String>,

    /// Serverless VPC access, for example to reach Memorystore Redis or a private Cloud SQL address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_access: Option<VpcAccess>,

    /// Labels put on the Cloud Run service (the operator adds `managed-by: litellm-operator` and
    /// `litellm-deployment: <namespace>_<name>`, which mark it as owned).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: BTreeMap<String, String>,

    /// Maximum time a request may take before Cloud Run answers 504, in seconds. Default: `300`.
    #[serde(default = "defaults::request_timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub request_timeout_seconds: i32,

    /// Health probes. Default: LiteLLM's own endpoints, `/health/liveliness` and `/health/readiness`.
    #[serde(default)]
    pub probes: Probes,
}

/// CPU and memory of each instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU limit as a Kubernetes quantity: `1`, `2`, `4`, `6`, `8` (a number or a string), or below one CPU in
    /// millis (`500m`). Default: `1`.
    #[serde(default = "defaults::cpu", deserialize_with = "quantity::deserialize_cpu")]
    #[schemars(schema_with = "quantity::cpu_schema")]
    pub cpu: String,

    /// Memory limit as a Kubernetes quantity, from `512Mi` to `32Gi`; a plain number counts bytes and must be a whole
    /// number of `Mi`. Default: `2Gi`.
    #[serde(
        default = "defaults::memory",
        deserialize_with = "quantity::deserialize_memory"
    )]
    #[schemars(schema_with = "quantity::memory_schema")]
    pub memory: String,
}

/// How many instances run and how many requests each takes at once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minInstances <= self.maxInstances",
    "message": "scaling.minInstances must not exceed scaling.maxInstances"
}]))]
pub struct Scaling {
    /// Instances kept warm; 0 lets the service scale to zero. Default: `0`.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub min_instances: i32,

    /// Upper bound on instances. Default: `10`.
    #[serde(default = "defaults::max_instances")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_instances: i32,

    /// Concurrent requests per instance. Default: `80`.
    #[serde(default = "defaults::concurrency")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: i32,
}

/// Who may reach the service over the network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Ingress {
    /// Reachable from the internet.
    #[default]
    All,
    /// Reachable only from the VPC and from Google services in the same project.
    Internal,
    /// Internal plus Google Cloud external Application Load Balancers.
    InternalAndCloudLoadBalancing,
}

/// Serverless VPC access: a connector or Direct VPC egress through a network interface.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.connector) != has(self.networkInterfaces)",
    "message": "vpcAccess needs exactly one of connector or networkInterfaces"
}]))]
pub struct VpcAccess {
    /// Serverless VPC Access connector, `projects/P/locations/R/connectors/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub connector: Option<String>,

    /// Direct VPC egress: the network interfaces of each instance (Cloud Run accepts one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1))]
    pub network_interfaces: Option<Vec<NetworkInterface>>,

    /// Which outbound traffic goes through the VPC: `PrivateRangesOnly` (only traffic to private, RFC 1918 ranges)
    /// or `AllTraffic`. Default: `PrivateRangesOnly`.
    #[serde(default)]
    pub egress: VpcEgress,
}

/// One Direct VPC egress interface.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    /// VPC network name or resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub network: Option<String>,

    /// Subnetwork name or resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub subnetwork: Option<String>,

    /// Network tags applied to the instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tags: Vec<String>,
}

/// Which outbound traffic is sent through the VPC.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VpcEgress {
    /// Only traffic to private (RFC 1918) ranges.
    #[default]
    PrivateRangesOnly,
    /// All outbound traffic.
    AllTraffic,
}

/// Health probes of the container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    /// Restarts an instance that stops answering. Default: HTTP GET `/health/liveliness`, every 10 seconds, failed
    /// after 3 consecutive failures. `enabled: false` runs none, as Cloud Run does when a service sets none.
    #[serde(default = "defaults::liveness")]
    pub liveness: LivenessProbe,

    /// Gates traffic to a new instance (and so a new revision's readiness) until it answers. Default: HTTP GET
    /// `/health/readiness`, which also checks the database and cache connections, every 10 seconds for up to 240
    /// seconds (24 failures). `type: TCP` only opens a connection to the port, as Cloud Run's own default startup
    /// probe does (`periodSeconds: 240`, `timeoutSeconds: 240`, `failureThreshold: 1`).
    #[serde(default = "defaults::startup")]
    pub startup: StartupProbe,
}

/// The liveness probe: an HTTP GET on the container port, or none.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LivenessProbe {
    /// Whether the service has a liveness probe; the other fields count only when it does. Default: `true`.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,

    /// Path requested, starting with `/`. Default: `/health/liveliness`.
    #[serde(default = "defaults::liveness_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^\s]*$"))]
    pub path: String,

    /// Seconds after start before the first probe. Default: `0`.
    #[serde(default)]
    #[schemars(range(min = 0, max = 240))]
    pub initial_delay_seconds: i32,

    /// Seconds between probes. Default: `10`.
    #[serde(default = "defaults::probe_period_seconds")]
    #[schemars(range(min = 1, max = 240))]
    pub period_seconds: i32,

    /// Seconds before one probe times out. Default: `5`.
    #[serde(default = "defaults::probe_timeout_seconds")]
    #[schemars(range(min = 1, max = 240))]
    pub timeout_seconds: i32,

    /// Consecutive failures before the probe counts as failed. Default: `3`.
    #[serde(default = "defaults::probe_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

/// What a probe checks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeType {
    /// HTTP GET on `path`: healthy when it answers 2xx or 3xx.
    #[default]
    Http,
    /// A TCP connection to the port: healthy when it opens.
    Tcp,
}

/// The startup probe. Its `failureThreshold` defaults to 24, so a new instance gets 240 seconds (24 periods of
/// 10 seconds) to start, the same whether `probes.startup` is left out or only some of its fields are set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartupProbe {
    /// `HTTP` (GET `path`) or `TCP` (a connection to the port; `path` is not used). Default: `HTTP`.
    #[serde(rename = "type", default)]
    pub kind: ProbeType,

    /// Path requested by an `HTTP` probe, starting with `/`. Default: `/health/readiness`.
    #[serde(default = "defaults::startup_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^\s]*$"))]
    pub path: String,

    /// Seconds after start before the first probe. Default: `0`.
    #[serde(default)]
    #[schemars(range(min = 0, max = 240))]
    pub initial_delay_seconds: i32,

    /// Seconds between probes. Default: `10`.
    #[serde(default = "defaults::probe_period_seconds")]
    #[schemars(range(min = 1, max = 240))]
    pub period_seconds: i32,

    /// Seconds before one probe times out. Default: `5`.
    #[serde(default = "defaults::probe_timeout_seconds")]
    #[schemars(range(min = 1, max = 240))]
    pub timeout_seconds: i32,

    /// Consecutive failures before the instance counts as failed to start. Default: `24`, which with the default
    /// `periodSeconds` gives a new instance 240 seconds to start.
    #[serde(default = "defaults::startup_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

/// One credential: a Secret Manager secret, an accessor binding and an environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.fromSecret) ? 1 : 0) + (has(self.generate) ? 1 : 0) + (has(self.external) ? 1 : 0) == 1",
    "message": "each secret needs exactly one source: fromSecret, generate or external"
}, {
    "rule": "!(self.env == 'LITELLM_SALT_KEY' && has(self.generate) && has(self.generate.rotation) && self.generate.rotation != '')",
    "message": "LITELLM_SALT_KEY is never rotated: LiteLLM encrypts the credentials it stores with it"
}]))]
pub struct SecretSpec {
    /// Environment variable the service reads the value from, for example `DATABASE_URL`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
        extend("x-kubernetes-validations" = [{
            "rule": "!(self in ['PORT', 'K_SERVICE', 'K_REVISION', 'K_CONFIGURATION'])",
            "message": "PORT, K_SERVICE, K_REVISION and K_CONFIGURATION are reserved by Cloud Run"
        }])
    )]
    pub env: String,

    /// Secret Manager secret id. For `fromSecret` and `generate` it defaults to the Cloud Run service name and
    /// `env` in lower case with `_` replaced by `-` (`litellm-proxy-database-url`), so two deployments in one
    /// project never collide; for `external` to `env` alone (`TAVILY_API_KEY` -> `tavily-api-key`), the name
    /// another team gave it. Set it to keep the names a gcloud runbook created (`litellm-operator import` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub secret_id: Option<String>,

    /// Take the value from a key of a Kubernetes Secret in the same namespace. Editing that Secret adds a new
    /// secret version and rolls out a revision pinned to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_secret: Option<SecretKeySelector>,

    /// Generate a random value once and keep it only in Secret Manager (master keys, salt keys). It is never
    /// regenerated while an enabled version exists, unless `generate.rotation` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GeneratedValue>,

    /// The value is managed outside the operator: it only grants access and pins the resolved version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalValue>,
}

/// A key of a Kubernetes Secret in the LiteLLMDeployment's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Kubernetes Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Key within the Secret's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// LiteLLM's proxy configuration: exactly one of `inline` or `configMapKeyRef`.
///
/// `Debug` leaves the YAML out: it may hold credentials, and must not reach a log line.
#[derive(Serialize, Deserialize, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.inline) != has(self.configMapKeyRef)",
    "message": "config needs exactly one of inline or configMapKeyRef"
}]))]
pub struct ConfigSpec {
    /// The configuration as YAML text: a mapping such as `model_list: [...]`, `general_settings: {...}`. At most
    /// 64 KiB, the most Secret Manager keeps in one version. The operator checks that it parses, that it is a
    /// mapping and that each `model_list` entry has `model_name` and `litellm_params.model`, before any Google call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub inline: Option<String>,

    /// Take the YAML from a key of a ConfigMap in the same namespace. Editing that ConfigMap adds a new secret
    /// version and rolls out a revision pinned to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,

    /// Secret Manager secret id of the configuration. Default: the Cloud Run service name and `-config`
    /// (`litellm-proxy-config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub secret_id: Option<String>,
}

impl std::fmt::Debug for ConfigSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSpec")
            .field(
                "inline",
                &self.inline.as_ref().map(|t| format!("<{} bytes>", t.len())),
            )
            .field("config_map_key_ref", &self.config_map_key_ref)
            .field("secret_id", &self.secret_id)
            .finish()
    }
}

/// A key of a ConfigMap in the LiteLLMDeployment's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeySelector {
    /// Name of the ConfigMap.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Key within the ConfigMap's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A value generated once from a cryptographically secure random source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedValue {
    /// Number of random characters (letters and digits), not counting the prefix. Default: `48`.
    #[serde(default = "defaults::generate_length")]
    #[schemars(range(min = 16, max = 4096))]
    pub length: i32,

    /// Text put before the random characters, for example `sk-` for LiteLLM keys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 32), regex(pattern = r"^[A-Za-z0-9_.-]*$"))]
    pub prefix: String,

    /// Any text, for example a date. Changing it rotates the value: a new value is generated, the service rolls
    /// out a revision pinned to it, and the old versions are retired like those of any other secret. Empty: the
    /// value is generated once and kept (emptying it rotates nothing). Not allowed on `LITELLM_SALT_KEY`, which encrypts the credentials LiteLLM
    /// stores.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 63), regex(pattern = r"^[A-Za-z0-9_.:-]*$"))]
    pub rotation: String,
}

/// A secret whose versions are added by someone else.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalValue {
    /// Version to pin: a number, or `latest`, which is resolved to the newest enabled version's number (a newer
    /// version rolls out like a rotation). Default: `latest`.
    #[serde(default = "defaults::latest")]
    #[schemars(length(min = 1, max = 20), regex(pattern = r"^(latest|[1-9][0-9]*)$"))]
    pub version: String,
}

/// How Secret Manager secrets are created and retired.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.replication == 'UserManaged' ? (has(self.replicaLocations) && size(self.replicaLocations) > 0) : !has(self.replicaLocations)",
    "message": "replicaLocations is required with replication UserManaged and not allowed with Automatic"
}]))]
pub struct SecretPolicy {
    /// Replication of new secrets: `Automatic` (Google chooses the locations) or `UserManaged` (replicas only in
    /// `replicaLocations`). Fixed at creation by Google: changing it later does not move existing secrets.
    /// Default: `Automatic`.
    #[serde(default)]
    pub replication: Replication,

    /// Regions that hold the replicas when `replication` is `UserManaged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16), inner(regex(pattern = r"^[a-z]+-[a-z]+[0-9]+$")))]
    pub replica_locations: Option<Vec<String>>,

    /// Versions of each secret left enabled after a rotation's new revision is Ready (the pinned one included);
    /// older versions are disabled, never destroyed. Default: `2`.
    #[serde(default = "defaults::keep_enabled_versions")]
    #[schemars(range(min = 1, max = 100))]
    pub keep_enabled_versions: i32,

    /// Extra labels put on every secret (the operator adds `managed-by: litellm-operator` and
    /// `litellm-deployment: <namespace>_<name>`, which mark it as owned).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: BTreeMap<String, String>,
}

/// Secret Manager replication.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Replication {
    /// Google chooses the locations.
    #[default]
    Automatic,
    /// Replicas only in `replicaLocations`.
    UserManaged,
}

/// What deleting the LiteLLMDeployment does to each Google resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionPolicy {
    /// The Cloud Run service: `Delete` it, or `Abandon` it (leave it in place). Default: `Delete`.
    #[serde(default = "defaults::delete")]
    pub service: Deletion,

    /// The Secret Manager secrets the operator created: `Abandon` them (leave them in place) or `Delete` them (only
    /// those that carry the operator's label or are recorded in status). Accessor bindings the operator added are
    /// removed either way. Default: `Abandon`, so credentials outlive the deployment unless you say otherwise.
    #[serde(default)]
    pub secrets: Deletion,
}

/// Delete a Google resource, or leave it in place.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Deletion {
    /// Leave the resource in place.
    #[default]
    Abandon,
    /// Delete the resource (only when it carries the operator's label or is recorded in status).
    Delete,
}

/// Observed state, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiteLLMDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `SecretsReady`, `IamReady` and `ServiceReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// URL of the Cloud Run service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Newest revision created from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_created_revision: Option<String>,

    /// Newest revision that became Ready and serves traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision: Option<String>,

    /// One entry per secret (the configuration of `spec.config` included): the Secret Manager secret and the
    /// version the service is pinned to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["env"]))]
    pub secrets: Vec<PinnedSecret>,

    /// IAM bindings the operator added; it only ever removes bindings listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_bindings: Vec<AppliedBinding>,
}

/// A secret and the version the service is pinned to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedSecret {
    /// Where the service reads the secret: the environment variable name, or for `spec.config` the path of the
    /// file it is mounted as, `/etc/litellm/config.yaml`.
    pub env: String,

    /// Secret resource name, `projects/P/secrets/ID`.
    pub secret: String,

    /// Pinned version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// For `fromSecret` and `spec.config`: what produced `version` (the `resourceVersion` of the Kubernetes Secret
    /// or ConfigMap, or `generation-N` of this LiteLLMDeployment for inline YAML), so an unchanged source never adds
    /// a version nor reads one. For `generate` with a `rotation`: `rotation:TEXT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_resource_version: Option<String>,

    /// When Secret Manager created the pinned version (RFC 3339), so its age can be watched (a credential
    /// pinned for a long time may be due for rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_create_time: Option<String>,
}

/// One IAM member the operator added to one role on one resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedBinding {
    /// Resource name, for example `projects/P/secrets/ID` or `projects/P/locations/R/services/S`.
    pub resource: String,

    /// Role, for example `roles/secretmanager.secretAccessor`.
    pub role: String,

    /// Member, for example `serviceAccount:run@P.iam.gserviceaccount.com` or `allUsers`.
    pub member: String,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            name: None,
            image: String::new(),
            port: defaults::port(),
            resources: Resources::default(),
            scaling: Scaling::default(),
            service_account: String::new(),
            allow_unauthenticated: false,
            ingress: Ingress::default(),
            env: BTreeMap::new(),
            cloud_sql_instances: Vec::new(),
            vpc_access: None,
            labels: BTreeMap::new(),
            request_timeout_seconds: defaults::request_timeout_seconds(),
            probes: Probes::default(),
        }
    }
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu: defaults::cpu(),
            memory: defaults::memory(),
        }
    }
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min_instances: 0,
            max_instances: defaults::max_instances(),
            concurrency: defaults::concurrency(),
        }
    }
}

impl Default for Probes {
    fn default() -> Self {
        Self {
            liveness: defaults::liveness(),
            startup: defaults::startup(),
        }
    }
}

impl Default for SecretPolicy {
    fn default() -> Self {
        Self {
            replication: Replication::default(),
            replica_locations: None,
            keep_enabled_versions: defaults::keep_enabled_versions(),
            labels: BTreeMap::new(),
        }
    }
}

impl Default for DeletionPolicy {
    fn default() -> Self {
        Self {
            service: Deletion::Delete,
            secrets: Deletion::Abandon,
        }
    }
}

impl SecretSpec {
    /// The Secret Manager secret id: `secretId`, else for `external` the env name in lower case with `_` replaced by
    /// `-`, else the service name `service` and that (see [`names::owned_secret_id`]).
    pub fn effective_secret_id(&self, service: &str) -> String {
        match (&self.secret_id, &self.external) {
            (Some(id), _) => id.clone(),
            (None, Some(_)) => names::default_secret_id(&self.env),
            (None, None) => names::owned_secret_id(service, &self.env),
        }
    }

    /// Where the value comes from, when exactly one source is set.
    pub fn source(&self) -> Option<SecretSource<'_>> {
        match (&self.from_secret, &self.generate, &self.external) {
            (Some(s), None, None) => Some(SecretSource::FromSecret(s)),
            (None, Some(g), None) => Some(SecretSource::Generate(g)),
            (None, None, Some(e)) => Some(SecretSource::External(e)),
            _ => None,
        }
    }
}

impl ConfigSpec {
    /// The Secret Manager secret id: `secretId`, else the service name `service` and `-config` (see
    /// [`names::config_secret_id`]).
    pub fn effective_secret_id(&self, service: &str) -> String {
        self.secret_id
            .clone()
            .unwrap_or_else(|| names::config_secret_id(service))
    }

    /// Where the YAML comes from, when exactly one source is set.
    pub fn source(&self) -> Option<ConfigSource<'_>> {
        match (&self.inline, &self.config_map_key_ref) {
            (Some(text), None) => Some(ConfigSource::Inline(text)),
            (None, Some(r)) => Some(ConfigSource::ConfigMap(r)),
            _ => None,
        }
    }
}

/// The one source of LiteLLM's configuration.
#[derive(Clone, Copy, PartialEq)]
pub enum ConfigSource<'a> {
    /// The YAML in the spec.
    Inline(&'a str),
    /// A key of a ConfigMap.
    ConfigMap(&'a ConfigMapKeySelector),
}

impl std::fmt::Debug for ConfigSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::Inline(text) => write!(f, "Inline(<{} bytes>)", text.len()),
            ConfigSource::ConfigMap(r) => f.debug_tuple("ConfigMap").field(r).finish(),
        }
    }
}

/// The one source of a secret's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SecretSource<'a> {
    /// A key of a Kubernetes Secret.
    FromSecret(&'a SecretKeySelector),
    /// Generated once by the operator.
    Generate(&'a GeneratedValue),
    /// Managed elsewhere.
    External(&'a ExternalValue),
}

impl LiteLLMDeployment {
    /// The Cloud Run service id: `spec.service.name`, or `metadata.name`.
    pub fn service_name(&self) -> String {
        self.spec
            .service
            .name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }

    /// Whether it asks to adopt existing unlabelled Google resources (`litellm.dev/adopt: "true"`).
    pub fn adopts(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::ADOPT_ANNOTATION))
            .is_some_and(|v| v == "true")
    }
}

/// Kubernetes quantities as people write them: `cpu: 2` as well as `cpu: "2"` or `cpu: 500m`.
///
/// The schema is `x-kubernetes-int-or-string` with the `anyOf` integer/string pair (restored by [`crate::crd`]
/// after kube's structural rewrite drops the types from `anyOf`). `pattern` and the lengths apply to strings only,
/// `minimum`, `maximum` and `multipleOf` to numbers only, so both forms keep bounds the API server enforces.
mod quantity {
    use std::fmt;

    use schemars::{Schema, SchemaGenerator, json_schema};
    use serde::Deserializer;
    use serde::de::{Error, Visitor};

    const MI: u64 = 1 << 20;

    /// A string as is, or a whole number of CPUs as its digits (`2` -> `"2"`).
    pub fn deserialize_cpu<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(Quantity(|n| n.to_string()))
    }

    /// A string as is, or a number of bytes as a whole number of `Mi` (`2147483648` -> `"2048Mi"`), the form Cloud
    /// Run takes. A number that is not a whole number of `Mi` stays digits, which validation refuses.
    pub fn deserialize_memory<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(Quantity(|n| match n {
            n if n > 0 && n % MI == 0 => format!("{}Mi", n / MI),
            n => n.to_string(),
        }))
    }

    struct Quantity(fn(u64) -> String);

    impl Visitor<'_> for Quantity {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a Kubernetes quantity: a string such as \"500m\" or \"2Gi\", or an integer")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<String, E> {
            Ok((self.0)(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<String, E> {
            // Negative: never valid, kept as written for validation to refuse.
            Ok(u64::try_from(v).map_or_else(|_| v.to_string(), self.0))
        }
    }

    /// `1` to `8` CPUs as a number; as a string also fractions and millis (`0.5`, `500m`).
    pub fn cpu_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 1,
            "maximum": 8,
            "minLength": 1,
            "maxLength": 8,
            "pattern": r"^([1-9][0-9]{0,3}m|[1-8](\.[0-9]+)?|0\.[0-9]+)$",
        })
    }

    /// 128Mi to 32Gi in whole `Mi` as a number of bytes; as a string a count of `Mi`, `Gi`, `M` or `G`.
    pub fn memory_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 128 * MI,
            "maximum": 32 * 1024 * MI,
            "multipleOf": MI,
            "minLength": 2,
            "maxLength": 12,
            "pattern": r"^[1-9][0-9]*(Mi|Gi|M|G)$",
        })
    }
}

mod defaults {
    use super::{LivenessProbe, ProbeType, StartupProbe};

    pub fn port() -> i32 {
        4000
    }
    pub fn cpu() -> String {
        "1".into()
    }
    pub fn memory() -> String {
        "2Gi".into()
    }
    pub fn max_instances() -> i32 {
        10
    }
    pub fn concurrency() -> i32 {
        80
    }
    pub fn request_timeout_seconds() -> i32 {
        300
    }
    pub fn probe_period_seconds() -> i32 {
        10
    }
    pub fn probe_timeout_seconds() -> i32 {
        5
    }
    pub fn probe_failure_threshold() -> i32 {
        3
    }
    pub fn startup_failure_threshold() -> i32 {
        24
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn liveness_path() -> String {
        "/health/liveliness".into()
    }
    pub fn startup_path() -> String {
        "/health/readiness".into()
    }
    pub fn liveness() -> LivenessProbe {
        LivenessProbe {
            enabled: enabled(),
            path: liveness_path(),
            initial_delay_seconds: 0,
            period_seconds: probe_period_seconds(),
            timeout_seconds: probe_timeout_seconds(),
            failure_threshold: probe_failure_threshold(),
        }
    }
    pub fn startup() -> StartupProbe {
        StartupProbe {
            kind: ProbeType::Http,
            path: startup_path(),
            initial_delay_seconds: 0,
            period_seconds: probe_period_seconds(),
            timeout_seconds: probe_timeout_seconds(),
            failure_threshold: startup_failure_threshold(),
        }
    }
    pub fn generate_length() -> i32 {
        48
    }
    pub fn latest() -> String {
        "latest".into()
    }
    pub fn keep_enabled_versions() -> i32 {
        2
    }
    pub fn delete() -> super::Deletion {
        super::Deletion::Delete
    }
}

//! The emulated world: every resource the APIs serve, kept in one structure behind one lock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Everything the emulator knows. Durable parts are persisted with `--state`; `runtime` (faults, counters,
/// request log, quota buckets) is not.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct State {
    /// Secret Manager secrets by full name (`projects/p/secrets/x`).
    pub secrets: BTreeMap<String, Secret>,
    /// Seeded or created service accounts by email (in the lenient mode, while empty, every well-formed account
    /// exists).
    pub service_accounts: BTreeMap<String, ServiceAccount>,
    /// Deleted service accounts by email, with the `uniqueId` each had. A deleted account does not exist (not even
    /// while none are seeded) until it is created or seeded again.
    pub deleted_service_accounts: BTreeMap<String, String>,
    /// IAM policies of service accounts (as resources), by email.
    pub service_account_policies: BTreeMap<String, Policy>,
    /// Service Usage: APIs enabled by name, by project number. Every API counts as enabled anyway.
    pub enabled_services: BTreeMap<String, BTreeSet<String>>,
    /// Cloud Run services by full name (`projects/p/locations/r/services/s`).
    pub services: BTreeMap<String, Service>,
    /// Cloud Run revisions by full name.
    pub revisions: BTreeMap<String, Revision>,
    /// Long-running operations by full name.
    pub operations: BTreeMap<String, Operation>,
    /// Container images whose revisions fail to start.
    pub crashing_images: BTreeSet<String>,
    /// Access tokens the emulator minted (admin API, `generateAccessToken`), by token.
    pub tokens: BTreeMap<String, crate::auth::Token>,
    /// Projects whose GKE Workload Identity pool (`PROJECT.svc.id.goog`) exists.
    pub identity_pools: BTreeSet<String>,
    /// Project numbers set through the admin API, by project id; other projects get a stable hashed number.
    pub project_numbers: BTreeMap<String, u64>,
    /// IAM policies of projects, by project number (Resource Manager).
    pub project_policies: BTreeMap<String, Policy>,
    /// Custom roles by full name (`projects/P/roles/ID`).
    pub custom_roles: BTreeMap<String, crate::auth::CustomRole>,
    /// Source of etags and unique ids.
    pub counter: u64,
    #[serde(skip)]
    pub runtime: crate::runtime::Runtime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub create_time: DateTime<Utc>,
    pub replication: Value,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub version_aliases: BTreeMap<String, i64>,
    /// Other updatable fields kept verbatim (topics, rotation, expireTime, ttl, versionDestroyTtl, ...).
    pub extra: Map<String, Value>,
    pub etag: String,
    pub versions: BTreeMap<u64, SecretVersion>,
    pub policy: Policy,
    /// Every policy this secret had, for judging access "as it stood" some time ago.
    pub policy_history: Vec<PolicyChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
}

impl VersionState {
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    pub id: u64,
    pub create_time: DateTime<Utc>,
    pub state: VersionState,
    pub destroy_time: Option<DateTime<Utc>>,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    pub crc32c: u32,
    pub client_checksum: bool,
    pub etag: String,
}

// Payloads never reach logs, not even through Debug.
impl std::fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVersion")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("data", &format_args!("<{} bytes redacted>", self.data.len()))
            .finish_non_exhaustive()
    }
}

/// An IAM policy. `etag` is empty until the policy is first set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub version: i64,
    pub bindings: Vec<Value>,
    pub audit_configs: Vec<Value>,
    #[serde(with = "base64_bytes")]
    pub etag: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyChange {
    pub at: DateTime<Utc>,
    pub bindings: Vec<Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    pub email: String,
    pub project_id: String,
    pub unique_id: String,
    pub display_name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// The user-settable fields, with server defaults filled in.
    pub spec: Map<String, Value>,
    pub etag: String,
    pub latest_created: Option<String>,
    pub latest_ready: Option<String>,
    /// Why the latest created revision failed, when it did.
    pub failure: Option<String>,
    pub last_transition: DateTime<Utc>,
    pub policy: Policy,
    /// When a delete was asked for: the service is gone once the deletion settles.
    #[serde(default)]
    pub delete_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Outcome {
    Pending,
    Ready,
    Failed { reason: String, message: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub name: String,
    pub service: String,
    pub uid: String,
    pub generation: i64,
    pub create_time: DateTime<Utc>,
    pub template: Value,
    pub labels: Value,
    pub annotations: Value,
    pub launch_stage: Value,
    pub ready_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub settled_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    pub create_time: DateTime<Utc>,
    /// The resource type of metadata and response (`google.cloud.run.v2.Service` or `...Revision`).
    pub type_url: String,
    pub metadata: Value,
    /// The revision whose start-up decides the outcome, if any.
    pub awaits_revision: Option<String>,
    pub target: String,
    pub done: bool,
    pub response: Option<Value>,
    pub error: Option<Value>,
}

mod base64_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::wire::b64(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        crate::wire::b64_decode(&text).ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }
}

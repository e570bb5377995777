//! The emulated world: [`State`], one store per API behind one lock, and the resource types the stores keep.
//!
//! Each API owns its data: [`secretmanager::Store`] (secrets), [`iam::Store`] (service accounts, their policies,
//! custom roles, tokens, Workload Identity pools), [`resourcemanager::Store`] (project numbers and policies),
//! [`serviceusage::Store`] (APIs enabled by name) and [`run::Store`] (services, revisions, operations, crashing
//! images). A call changes its own API's store and reads the others only through what it is handed: a store
//! (`&iam::Store` to check that a policy's members exist), a read-only view ([`auth::Policies`] for permission
//! checks, [`iam::KnownProjects`]) or, for Cloud Run, [`run::CloudRun`], which lends the run store together with
//! the stores start-up judging reads. The few operations that change several stores at once live here, on
//! [`State`]: deleting a service account (every policy naming it changes) and renaming secrets by project number.
//!
//! The state file keeps the format of the flat state that came before the stores: [`StateFile`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::auth::{self, Tokens};
use crate::error::ApiResult;
use crate::roles::CustomRoles;
use crate::runtime::Runtime;
use crate::{iam, resourcemanager, run, secretmanager, serviceusage};

/// Everything the emulator knows: one store per API, the counter etags and unique ids come from, and the
/// per-process [`Runtime`]. The stores are persisted with `--state` (as a [`StateFile`]); the runtime, and the
/// settings some stores carry from the configuration, are not.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub secretmanager: secretmanager::Store,
    pub iam: iam::Store,
    pub resourcemanager: resourcemanager::Store,
    pub serviceusage: serviceusage::Store,
    pub run: run::Store,
    /// Source of etags and unique ids, shared by every API.
    pub counter: u64,
    pub runtime: Runtime,
}

impl State {
    /// Cloud Run's store to change, with the counter and the stores its calls read (secrets, accounts, roles and
    /// project policies judge a revision's start-up; project numbers name its hosts).
    pub fn cloud_run(&mut self) -> run::CloudRun<'_> {
        run::CloudRun {
            store: &mut self.run,
            counter: &mut self.counter,
            secretmanager: &self.secretmanager,
            iam: &self.iam,
            resourcemanager: &self.resourcemanager,
        }
    }

    /// What a permission check reads: project policies and custom roles.
    pub fn policies(&self) -> auth::Policies<'_> {
        auth::Policies {
            resourcemanager: &self.resourcemanager,
            custom_roles: &self.iam.custom_roles,
        }
    }

    /// The projects IAM can name a default compute account's project from.
    pub fn known_projects(&self) -> iam::KnownProjects<'_> {
        iam::KnownProjects {
            resourcemanager: &self.resourcemanager,
            run: &self.run,
        }
    }

    /// `DELETE /v1/projects/{p}/serviceAccounts/{email}`: IAM removes the account (see
    /// [`iam::Store::delete_service_account`]), then every policy that named it, in every API, names the deleted
    /// account instead (`deleted:serviceAccount:EMAIL?uid=UNIQUE_ID`), each with a new etag, as Google does.
    pub fn delete_service_account(
        &mut self,
        project: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        let known = iam::KnownProjects {
            resourcemanager: &self.resourcemanager,
            run: &self.run,
        };
        let deleted = self.iam.delete_service_account(project, email, known)?;
        let (member, replacement) = (deleted.member.as_str(), deleted.replacement.as_str());
        let counter = &mut self.counter;
        self.secretmanager
            .replace_member(member, replacement, now, counter);
        self.run.replace_member(member, replacement, counter);
        self.iam.replace_member(member, replacement, counter);
        self.resourcemanager.replace_member(member, replacement, counter);
        Ok(json!({}))
    }

    /// Renames secrets kept under a project id (state files written before names carried numbers).
    pub fn number_secret_names(&mut self) {
        let resourcemanager = &self.resourcemanager;
        self.secretmanager.rename(|name| resourcemanager.numbered(name));
    }
}

/// The state file: every store's persisted fields side by side in one object, named as in the flat state the stores
/// replaced, so files written before (and after) load alike. Borrowed to write, owned once read.
#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StateFile<'a> {
    /// Secret Manager secrets by full name (`projects/NUMBER/secrets/x`).
    pub secrets: Cow<'a, BTreeMap<String, Secret>>,
    /// Seeded or created service accounts by email.
    pub service_accounts: Cow<'a, BTreeMap<String, ServiceAccount>>,
    /// Deleted service accounts by email, with the `uniqueId` each had.
    pub deleted_service_accounts: Cow<'a, BTreeMap<String, String>>,
    /// IAM policies of service accounts (as resources), by email.
    pub service_account_policies: Cow<'a, BTreeMap<String, Policy>>,
    /// Service Usage: APIs enabled by name, by project number.
    pub enabled_services: Cow<'a, BTreeMap<String, BTreeSet<String>>>,
    /// Cloud Run services by full name (`projects/p/locations/r/services/s`).
    pub services: Cow<'a, BTreeMap<String, Service>>,
    /// Cloud Run revisions by full name.
    pub revisions: Cow<'a, BTreeMap<String, Revision>>,
    /// Cloud Run long-running operations by full name.
    pub operations: Cow<'a, BTreeMap<String, Operation>>,
    /// Container images whose revisions fail to start.
    pub crashing_images: Cow<'a, BTreeSet<String>>,
    /// Access tokens the emulator minted, by token.
    pub tokens: Cow<'a, Tokens>,
    /// Projects whose GKE Workload Identity pool exists.
    pub identity_pools: Cow<'a, BTreeSet<String>>,
    /// Project numbers set through the admin API, by project id.
    pub project_numbers: Cow<'a, BTreeMap<String, u64>>,
    /// IAM policies of projects, by project number.
    pub project_policies: Cow<'a, BTreeMap<String, Policy>>,
    /// Custom roles by full name (`projects/P/roles/ID`).
    pub custom_roles: Cow<'a, CustomRoles>,
    pub counter: u64,
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Destructured without `..`: a store's new field must be given a place in the file (or left out on purpose).
        let State {
            secretmanager: secretmanager::Store { secrets },
            iam:
                iam::Store {
                    service_accounts,
                    deleted_service_accounts,
                    service_account_policies,
                    custom_roles,
                    tokens,
                    identity_pools,
                    any_account_exists: _,
                },
            resourcemanager:
                resourcemanager::Store {
                    project_numbers,
                    project_policies,
                },
            serviceusage: serviceusage::Store { enabled_services },
            run:
                run::Store {
                    services,
                    revisions,
                    operations,
                    crashing_images,
                    timing: _,
                    live: _,
                },
            counter,
            runtime: _,
        } = self;
        StateFile {
            secrets: Cow::Borrowed(secrets),
            service_accounts: Cow::Borrowed(service_accounts),
            deleted_service_accounts: Cow::Borrowed(deleted_service_accounts),
            service_account_policies: Cow::Borrowed(service_account_policies),
            enabled_services: Cow::Borrowed(enabled_services),
            services: Cow::Borrowed(services),
            revisions: Cow::Borrowed(revisions),
            operations: Cow::Borrowed(operations),
            crashing_images: Cow::Borrowed(crashing_images),
            tokens: Cow::Borrowed(tokens),
            identity_pools: Cow::Borrowed(identity_pools),
            project_numbers: Cow::Borrowed(project_numbers),
            project_policies: Cow::Borrowed(project_policies),
            custom_roles: Cow::Borrowed(custom_roles),
            counter: *counter,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let file = StateFile::deserialize(d)?;
        Ok(State {
            secretmanager: secretmanager::Store {
                secrets: file.secrets.into_owned(),
            },
            iam: iam::Store {
                service_accounts: file.service_accounts.into_owned(),
                deleted_service_accounts: file.deleted_service_accounts.into_owned(),
                service_account_policies: file.service_account_policies.into_owned(),
                custom_roles: file.custom_roles.into_owned(),
                tokens: file.tokens.into_owned(),
                identity_pools: file.identity_pools.into_owned(),
                any_account_exists: false,
            },
            resourcemanager: resourcemanager::Store {
                project_numbers: file.project_numbers.into_owned(),
                project_policies: file.project_policies.into_owned(),
            },
            serviceusage: serviceusage::Store {
                enabled_services: file.enabled_services.into_owned(),
            },
            run: run::Store {
                services: file.services.into_owned(),
                revisions: file.revisions.into_owned(),
                operations: file.operations.into_owned(),
                crashing_images: file.crashing_images.into_owned(),
                timing: run::Timing::default(),
                live: None,
            },
            counter: file.counter,
            runtime: Runtime::default(),
        })
    }
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

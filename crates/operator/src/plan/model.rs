//! What the planner sees: the inputs of one deployment, the Google state observed for it, and its record of
//! what it created and granted. Plain data, no clients; the executor feeds each action's effect back in with
//! [`Model::absorb`], and `plan` (the CLI) does the same with the predicted effect.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use litellm_operator_api::{AppliedBinding, PinnedSecret};
use litellm_operator_gcp::{SecretPayload, VersionState};
use serde_json::Value;

use super::action::{Action, Effect};

/// A given value (`fromSecret`, `spec.config`), as the front end read it (a Kubernetes Secret or ConfigMap, a
/// manifest file, the spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The value, and the source object's `resourceVersion` when it has one.
    Value {
        /// The bytes (redacted in `Debug`).
        payload: SecretPayload,
        /// `resourceVersion` of the Kubernetes Secret or ConfigMap, `generation-N` for inline configuration;
        /// `None` for files.
        revision: Option<String>,
    },
    /// The Secret or its key is missing.
    Missing {
        /// Which, for people.
        message: String,
    },
}

/// Other LiteLLMDeployments the operator manages: what they need and what their records hold. IAM bindings are
/// shared between deployments (same runtime account, same secret), so revoking one is a question for all of them.
pub trait Peers {
    /// Whether another managed deployment needs `binding` (its spec asks for it).
    fn needs(&self, binding: &AppliedBinding) -> bool;
    /// Whether another managed deployment's record holds `binding` (an operator write added it).
    fn records(&self, binding: &AppliedBinding) -> bool;
}

/// A set of peers known up front.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSet {
    /// Bindings other deployments need.
    pub needs: BTreeSet<AppliedBinding>,
    /// Bindings other deployments' records hold.
    pub records: BTreeSet<AppliedBinding>,
}

impl Peers for PeerSet {
    fn needs(&self, binding: &AppliedBinding) -> bool {
        self.needs.contains(binding)
    }
    fn records(&self, binding: &AppliedBinding) -> bool {
        self.records.contains(binding)
    }
}

/// The clock and timing rules, passed in so planning stays pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Now, in seconds since the Unix epoch.
    pub now: i64,
    /// How long after a change to wait before rolling a revision denied while a grant propagates.
    pub iam_retry_delay: Duration,
    /// How long after a change such revisions are rolled again.
    pub iam_propagation_timeout: Duration,
}

/// This deployment's record of what is its own: the pins of its running revision and the bindings an operator
/// write added. The controller keeps it in status, the CLI in its state file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// One per secret: the version pinned last.
    pub pins: Vec<PinnedSecret>,
    /// Bindings an operator write added (or that this deployment took over from a peer that added them).
    pub bindings: BTreeSet<AppliedBinding>,
}

impl Record {
    /// The recorded pin of `env` on `resource`, as a number.
    pub fn pin(&self, env: &str, resource: &str) -> Option<(u64, Option<&str>)> {
        self.pins
            .iter()
            .find(|p| p.env == env && p.secret == resource)
            .and_then(|p| {
                let n = p.version.as_deref()?.parse().ok()?;
                Some((n, p.source_resource_version.as_deref()))
            })
    }
}

/// One version's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionView {
    /// Its number.
    pub number: u64,
    /// Its state.
    pub state: VersionState,
    /// When it was created, in seconds since the Unix epoch (`None` for one this pass added: the next full pass
    /// reads it).
    pub created: Option<i64>,
}

/// A secret as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretView {
    /// It does not exist.
    Missing,
    /// It exists.
    Present(SecretState),
    /// Not read: a light pass trusts the record, whose input is unchanged since the last full pass.
    Trusted,
}

/// An existing secret.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretState {
    /// Its labels (empty for external secrets, whose labels are never read).
    pub labels: BTreeMap<String, String>,
    /// Its etag.
    pub etag: String,
    /// Its versions, newest first.
    pub versions: Vec<VersionView>,
    /// The value of the newest enabled version, when it was read (only when a given value's source changed).
    pub newest_payload: Option<SecretPayload>,
}

impl SecretState {
    /// Newest enabled version.
    pub fn newest_enabled(&self) -> Option<u64> {
        self.versions
            .iter()
            .find(|v| v.state == VersionState::Enabled)
            .map(|v| v.number)
    }

    /// Whether version `n` exists and is enabled.
    pub fn enabled(&self, n: u64) -> bool {
        self.versions
            .iter()
            .any(|v| v.number == n && v.state == VersionState::Enabled)
    }

    /// The number the next added version gets.
    pub fn next_number(&self) -> u64 {
        self.versions.iter().map(|v| v.number).max().unwrap_or(0) + 1
    }
}

/// The members of an IAM policy's unconditional bindings, as `(role, member)`; members compare case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyView(pub BTreeSet<(String, String)>);

impl PolicyView {
    /// Whether `role` is granted to `member` unconditionally.
    pub fn has(&self, role: &str, member: &str) -> bool {
        self.0
            .iter()
            .any(|(r, m)| r == role && m.eq_ignore_ascii_case(member))
    }
}

/// The Google state of one deployment and its record, as the planner sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// Secrets by resource name (`projects/P/secrets/S`).
    pub secrets: BTreeMap<String, SecretView>,
    /// IAM policies by resource name; a resource missing here was not read.
    pub policies: BTreeMap<String, PolicyView>,
    /// The live service in REST JSON shape, `None` when it does not exist.
    pub service: Option<Value>,
    /// What is ours.
    pub record: Record,
}

impl Model {
    /// The secret at `resource` (missing when never observed).
    pub fn secret(&self, resource: &str) -> &SecretView {
        self.secrets.get(resource).unwrap_or(&SecretView::Missing)
    }

    /// Feeds the effect of one performed (or predicted) action back in, so the next phase plans from it.
    pub fn absorb(&mut self, action: &Action, effect: &Effect) {
        match (action, effect) {
            (Action::CreateSecret { secret, labels, .. }, _) => {
                self.secrets.insert(
                    secret.to_string(),
                    SecretView::Present(SecretState {
                        labels: labels.clone(),
                        ..SecretState::default()
                    }),
                );
                self.policies.insert(secret.to_string(), PolicyView::default());
            }
            (Action::AdoptSecret { secret, labels, .. }, _) => {
                if let Some(SecretView::Present(s)) = self.secrets.get_mut(&secret.to_string()) {
                    s.labels = labels.clone();
                }
            }
            (Action::AddVersion { secret, value, .. }, Effect::VersionAdded(number)) => {
                if let Some(SecretView::Present(s)) = self.secrets.get_mut(&secret.to_string()) {
                    s.versions.insert(
                        0,
                        VersionView {
                            number: *number,
                            state: VersionState::Enabled,
                            created: None,
                        },
                    );
                    s.newest_payload = value.payload().cloned();
                }
            }
            (Action::Grant(b), Effect::Granted { changed }) => {
                self.policies
                    .entry(b.resource.clone())
                    .or_default()
                    .0
                    .insert((b.role.clone(), b.member.clone()));
                if *changed {
                    self.record.bindings.insert(b.clone());
                }
            }
            (Action::Revoke(b), _) => {
                if let Some(p) = self.policies.get_mut(&b.resource) {
                    p.0.retain(|(r, m)| !(*r == b.role && m.eq_ignore_ascii_case(&b.member)));
                }
                self.record.bindings.remove(b);
            }
            (Action::RecordBinding(b), _) => {
                self.record.bindings.insert(b.clone());
            }
            (Action::ForgetBinding(b), _) => {
                self.record.bindings.remove(b);
            }
            (Action::CreateService { service, body }, _) => {
                let mut live = body.clone();
                live["name"] = Value::from(service.to_string());
                live["generation"] = Value::from("1");
                live["reconciling"] = Value::from(true);
                self.service = Some(live);
                self.policies.insert(service.to_string(), PolicyView::default());
            }
            (Action::UpdateService { body, .. }, _) => {
                let mut live = body.clone();
                let generation = live["generation"]
                    .as_str()
                    .and_then(|g| g.parse::<i64>().ok())
                    .or_else(|| live["generation"].as_i64())
                    .unwrap_or(0);
                live["generation"] = Value::from((generation + 1).to_string());
                live["reconciling"] = Value::from(true);
                self.service = Some(live);
            }
            (Action::DisableVersion { secret, number, .. }, _) => {
                if let Some(SecretView::Present(s)) = self.secrets.get_mut(&secret.to_string()) {
                    for v in s.versions.iter_mut().filter(|v| v.number == *number) {
                        v.state = VersionState::Disabled;
                    }
                }
            }
            (Action::DeleteService { service }, _) => {
                self.service = None;
                self.policies.remove(&service.to_string());
            }
            (Action::DeleteSecret { secret, .. }, _) => {
                self.secrets.insert(secret.to_string(), SecretView::Missing);
                self.policies.remove(&secret.to_string());
            }
            // An effect that does not match its action changes nothing (the executor never produces one).
            (Action::AddVersion { .. } | Action::Grant(_), _) => {}
        }
    }
}

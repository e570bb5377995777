//! The pure planner: desired state + observed Google state + this deployment's record -> a plan of ordered
//! actions, per-secret problems and pins. No I/O: no Kubernetes client, no Google client, no clock.
//!
//! The controller and the CLI both run it, through the one executor (`crate::execute`): phase by phase, each
//! phase planned from the state the phases before it left ([`Model::absorb`]). `litellm-operator plan` runs the
//! same loop with predicted effects and performs nothing.
//!
//! Every ownership decision is made here, by one rule ([`ownership`]); every IAM revoke by another ([`iam`]).

pub mod action;
pub mod cleanup;
pub mod desired;
pub mod iam;
pub mod model;
mod outcome;
pub mod ownership;
pub mod rollout;
pub mod secrets;
pub mod service;
pub mod service_diff;
pub mod tenancy;

use std::collections::BTreeMap;

use litellm_operator_api::names::{SECRET_ACCESSOR_ROLE, reason};
use litellm_operator_api::{AppliedBinding, PinnedSecret};
use litellm_operator_gcp::SecretName;

pub use self::action::{Action, ActionKind, Effect, NewValue, Phase, ServiceChange};
use self::desired::DesiredSource as Src;
pub use self::desired::{
    Delivery, DesiredReplication, DesiredSecret, DesiredSource, DesiredState, desired_state,
};
pub use self::model::{
    Clock, Model, PeerSet, Peers, PolicyView, Record, SecretState, SecretView, Source, VersionView,
};
pub use self::outcome::Outcome;
pub use self::secrets::{Pin, Problem, ProblemKind};
pub use self::service::ServiceState;

/// Everything the planner needs besides the model.
pub struct Inputs<'a> {
    /// The desired state.
    pub desired: &'a DesiredState,
    /// Given values (`fromSecret`, `spec.config`) by [`DesiredSecret::key`].
    pub sources: &'a BTreeMap<String, Source>,
    /// Adoption of unlabelled resources is switched on.
    pub adopt: bool,
    /// The spec changed since the record was written (an update then is not a drift correction).
    pub spec_changed: bool,
    /// The clock and IAM retry timing.
    pub clock: Clock,
    /// Other managed deployments.
    pub peers: &'a (dyn Peers + Sync),
}

/// One secret's line in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretLine {
    /// Env var, or the configuration's file path ([`DesiredSecret::key`]).
    pub env: String,
    /// `projects/P/secrets/S`.
    pub resource: String,
    /// Pin or problem.
    pub pin: Result<Pin, Problem>,
}

/// The plan for one deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Actions in phase order.
    pub actions: Vec<Action>,
    /// A problem that stops everything (the service belongs to someone else).
    pub conflict: Option<Problem>,
    /// One line per secret, in spec order.
    pub secrets: Vec<SecretLine>,
    /// Bindings needed that are neither in place nor planned (their secret has a problem).
    pub waiting_bindings: Vec<AppliedBinding>,
    /// Recorded bindings kept until another deployment that needs them records them.
    pub handover: Vec<AppliedBinding>,
    /// Where the service stands.
    pub service: ServiceState,
}

impl Plan {
    /// The actions of one phase.
    pub fn phase(&self, phase: Phase) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(move |a| a.phase() == phase)
    }

    /// Whether the plan changes nothing (the proof of convergence).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Pins by [`DesiredSecret::key`], when every secret has one.
    pub fn pins(&self) -> Option<BTreeMap<String, String>> {
        self.secrets
            .iter()
            .map(|s| {
                s.pin
                    .as_ref()
                    .ok()
                    .map(|p| (s.env.clone(), p.version.to_string()))
            })
            .collect()
    }

    /// The record's pins after this plan: new pins of versions that exist, and the old pin for a secret with a
    /// problem (its running revision still uses it) or whose version is still to be added (an add that failed must
    /// be planned again, not taken as done). A pin's version creation time comes from the versions `model` read,
    /// else from the record when it pinned the same version (a light pass reads no versions).
    pub fn pinned(&self, model: &Model) -> Vec<PinnedSecret> {
        let old = &model.record;
        let exists = |resource: &str, version: u64| match model.secrets.get(resource) {
            Some(SecretView::Present(state)) => state.versions.iter().any(|v| v.number == version),
            // A light pass pins from the record.
            Some(SecretView::Trusted) => true,
            Some(SecretView::Missing) | None => false,
        };
        self.secrets
            .iter()
            .filter_map(|s| match &s.pin {
                Ok(pin) if exists(&s.resource, pin.version) => {
                    let version = pin.version.to_string();
                    let observed = match model.secrets.get(&s.resource) {
                        Some(SecretView::Present(state)) => state
                            .versions
                            .iter()
                            .find(|v| v.number == pin.version)
                            .and_then(|v| v.created)
                            .and_then(rfc3339),
                        _ => None,
                    };
                    let recorded = old
                        .pins
                        .iter()
                        .find(|p| {
                            p.env == s.env && p.secret == s.resource && p.version.as_ref() == Some(&version)
                        })
                        .and_then(|p| p.version_create_time.clone());
                    Some(PinnedSecret {
                        env: s.env.clone(),
                        secret: s.resource.clone(),
                        version: Some(version),
                        source_resource_version: pin.source_revision.clone(),
                        version_create_time: observed.or(recorded),
                    })
                }
                _ => old
                    .pins
                    .iter()
                    .find(|p| p.env == s.env && p.secret == s.resource)
                    .cloned(),
            })
            .collect()
    }

    /// The three step outcomes, as the conditions show them.
    pub fn outcomes(&self, desired: &DesiredState) -> [Outcome; 3] {
        if let Some(conflict) = &self.conflict {
            // Nothing is written while it lasts: every step shows it, so `Ready` does too.
            let conflict = Outcome::not_ready(conflict.kind.reason(), conflict.message.clone());
            return [conflict.clone(), conflict.clone(), conflict];
        }
        let problems: Vec<&Problem> = self.secrets.iter().filter_map(|s| s.pin.as_ref().err()).collect();
        let secrets = match problems.first() {
            None => Outcome::ready(format!(
                "{} secrets pinned to concrete versions",
                self.secrets.len()
            )),
            Some(first) => Outcome::not_ready(
                first.kind.reason(),
                problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        let pending: Vec<String> = self
            .waiting_bindings
            .iter()
            .chain(self.actions.iter().filter_map(|a| match a {
                Action::Grant(b) => Some(b),
                _ => None,
            }))
            .map(|b| format!("{} on {}", b.role, b.resource))
            .collect();
        let iam = if pending.is_empty() {
            Outcome::ready(format!("{} bindings in place", desired.bindings.len()))
        } else {
            Outcome::not_ready(
                reason::RECONCILING,
                format!("waiting to grant {}", pending.join(", ")),
            )
        };
        let service = match &self.service {
            ServiceState::WaitingForSecrets => Outcome::not_ready(
                reason::RECONCILING,
                "waiting for every secret to have a pinned version",
            ),
            ServiceState::Creating => {
                Outcome::not_ready(reason::RECONCILING, "creating the Cloud Run service")
            }
            ServiceState::Updating => Outcome::not_ready(reason::RECONCILING, "rolling out a new revision"),
            ServiceState::Rolling { revision } => Outcome::not_ready(
                reason::RECONCILING,
                format!("revision {} is starting", revision.as_deref().unwrap_or("(new)")),
            ),
            ServiceState::Ready { revision } => Outcome::ready(format!("revision {revision} is serving")),
            ServiceState::Failed { message } => Outcome::not_ready(reason::REVISION_FAILED, message.clone()),
            ServiceState::Propagating { message } => {
                Outcome::not_ready(reason::IAM_PROPAGATING, message.clone())
            }
        };
        [secrets, iam, service]
    }

    /// Whether Google is working on something (look again soon) rather than waiting for a person.
    pub fn in_flight(&self) -> bool {
        self.conflict.is_none() && (self.service.in_flight() || !self.actions.is_empty())
    }

    /// Whether everything converged: nothing to do, nothing waiting, the latest revision serves.
    pub fn converged(&self) -> bool {
        self.conflict.is_none()
            && self.actions.is_empty()
            && self.waiting_bindings.is_empty()
            && self.secrets.iter().all(|s| s.pin.is_ok())
            && matches!(self.service, ServiceState::Ready { .. })
    }
}

/// Plans one deployment.
pub fn plan(inputs: &Inputs<'_>, model: &Model) -> Plan {
    let desired = inputs.desired;
    let mut plan = Plan {
        actions: Vec::new(),
        conflict: None,
        secrets: Vec::new(),
        waiting_bindings: Vec::new(),
        handover: Vec::new(),
        service: ServiceState::WaitingForSecrets,
    };
    // A service that is not ours stops everything before the first write.
    if let Some(conflict) = service::conflict(desired, model, inputs.adopt) {
        plan.conflict = Some(conflict);
        return plan;
    }

    // Secrets and versions.
    for secret in &desired.secrets {
        let decision = secrets::decide(
            desired,
            secret,
            inputs.sources.get(secret.key()),
            model,
            inputs.adopt,
        );
        plan.actions.extend(decision.actions);
        plan.secrets.push(SecretLine {
            env: secret.key().to_owned(),
            resource: secret.resource.clone(),
            pin: decision.pin,
        });
    }

    // Accessor bindings, for the secrets that are pinned (the others wait with their problem).
    let pinned = |resource: &str| {
        plan.secrets
            .iter()
            .any(|s| s.resource == resource && s.pin.is_ok())
    };
    let pinned: Vec<bool> = desired.bindings.iter().map(|b| pinned(&b.resource)).collect();
    let service_exists = model.service.is_some();
    for (binding, secret_pinned) in desired.bindings.iter().zip(pinned) {
        let on_secret = binding.role == SECRET_ACCESSOR_ROLE;
        let ready = if on_secret {
            secret_pinned && secret_exists(model, &binding.resource)
        } else {
            service_exists
        };
        if !ready {
            // A secret still to be created is granted once it exists (the next phase); the service's invoker
            // once the service exists.
            let planned_create = plan.actions.iter().any(|a| match a {
                Action::CreateSecret { secret, .. } => secret.to_string() == binding.resource,
                _ => false,
            });
            if !(planned_create || (!on_secret && !service_exists)) {
                plan.waiting_bindings.push(binding.clone());
            }
            continue;
        }
        if let iam::Grant::Planned(action) = iam::need(binding, model, inputs.peers) {
            plan.actions.push(action);
        }
    }

    // The service, once every secret has a pin.
    let pins = plan.pins();
    // An update is a change when the spec or a pin moved; otherwise it puts back an outside edit.
    let recorded: BTreeMap<String, String> = model
        .record
        .pins
        .iter()
        .filter_map(|p| Some((p.env.clone(), p.version.clone()?)))
        .collect();
    let spec_changed = inputs.spec_changed || pins.as_ref() != Some(&recorded);
    let decision = service::decide(desired, pins.as_ref(), model, spec_changed, &inputs.clock);
    plan.actions.extend(decision.action);
    plan.service = decision.state;

    // Bindings no longer needed. The invoker goes at once (a service made private must be private now); an
    // accessor binding only once the serving revision is pinned to the spec's secrets, as its instances may
    // still read the old secret until then.
    let serving = matches!(plan.service, ServiceState::Ready { .. }) && serves_latest(model);
    for binding in &model.record.bindings {
        if desired.bindings.contains(binding) {
            continue;
        }
        if binding.role == SECRET_ACCESSOR_ROLE && !serving {
            continue;
        }
        match iam::release(binding, inputs.peers) {
            iam::Release::Revoke(action) | iam::Release::HandOver(action) => plan.actions.push(action),
            iam::Release::Wait => plan.handover.push(binding.clone()),
        }
    }

    // Retire: only while the serving revision is the one pinned to these versions.
    if serving && plan.actions.is_empty() {
        for (secret, line) in desired.secrets.iter().zip(&plan.secrets) {
            if matches!(secret.source, Src::External { .. }) {
                continue;
            }
            let (Ok(pin), SecretView::Present(state)) = (&line.pin, model.secret(&secret.resource)) else {
                continue;
            };
            let enabled: Vec<u64> = state
                .versions
                .iter()
                .filter(|v| v.state == litellm_operator_gcp::VersionState::Enabled)
                .map(|v| v.number)
                .collect();
            for number in beyond_keep(&enabled, pin.version, desired.keep_enabled_versions) {
                plan.actions.push(Action::DisableVersion {
                    secret: SecretName::new(&desired.project, &secret.secret_id),
                    number,
                    keep: desired.keep_enabled_versions,
                });
            }
        }
    }
    plan.actions.sort_by_key(Action::phase);
    plan
}

fn secret_exists(model: &Model, resource: &str) -> bool {
    matches!(
        model.secret(resource),
        SecretView::Present(_) | SecretView::Trusted
    )
}

/// Whether every bit of traffic goes to the latest ready revision (none pinned to an older one by name).
fn serves_latest(model: &Model) -> bool {
    let Some(live) = &model.service else {
        return false;
    };
    let latest_ready = live["latestReadyRevision"]
        .as_str()
        .map(|s| s.rsplit('/').next().unwrap_or_default().to_owned());
    live["traffic"].as_array().is_none_or(|targets| {
        targets.iter().all(|t| {
            let percent = t["percent"].as_i64().unwrap_or(0);
            let latest = t["type"].as_str() == Some("TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST");
            let named = t["revision"]
                .as_str()
                .map(|r| r.rsplit('/').next().unwrap_or_default().to_owned());
            percent == 0 || latest || named == latest_ready
        })
    })
}

/// Versions to disable: enabled ones beyond the newest `keep`, never `pinned`. `enabled` is newest first.
pub fn beyond_keep(enabled: &[u64], pinned: u64, keep: usize) -> Vec<u64> {
    let mut kept: Vec<u64> = vec![pinned];
    kept.extend(
        enabled
            .iter()
            .copied()
            .filter(|n| *n != pinned)
            .take(keep.saturating_sub(1)),
    );
    enabled.iter().copied().filter(|n| !kept.contains(n)).collect()
}

/// Runs the phases of `plan` against `model` with predicted effects: what `litellm-operator plan` shows. Returns
/// every action in order and the model as it would be after them.
pub fn predict(inputs: &Inputs<'_>, mut model: Model, phases: &[Phase]) -> (Vec<Action>, Model) {
    let mut done = Vec::new();
    for phase in phases {
        let step = plan(inputs, &model);
        let actions: Vec<Action> = step.phase(*phase).cloned().collect();
        for action in actions {
            model.absorb(&action, &Effect::predicted(&action));
            done.push(action);
        }
    }
    (done, model)
}

#[cfg(test)]
mod tests;

/// `seconds` since the Unix epoch as RFC 3339 (UTC, whole seconds), as Kubernetes writes times.
fn rfc3339(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

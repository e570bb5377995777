//! The Cloud Run service: created or patched only when an owned field differs; a revision denied a secret while
//! a fresh grant propagates is rolled again, within a budget. The long-running operation is never awaited: the
//! next pass observes `reconciling`, `observedGeneration`, `terminalCondition` and the revisions.

use std::collections::BTreeMap;

use serde_json::Value;

use super::action::{Action, ServiceChange};
use super::desired::{self, DesiredState};
use super::model::{Clock, Model};
use super::ownership::{Ownership, Write};
use super::rollout::{Rollout, rollout};
use super::secrets::{Problem, ProblemKind};
use super::service_diff;

/// Template annotation counting revisions rolled again while a new grant propagates.
pub const IAM_RETRY_ANNOTATION: &str = "litellm.dev/iam-retry";

/// Where the service stands once the plan is carried out (before Cloud Run acts on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// Not every secret is pinned: the service is not written (never `latest`, never half a set).
    WaitingForSecrets,
    /// It is being created.
    Creating,
    /// An update was sent: a new revision is rolling out.
    Updating,
    /// Cloud Run is rolling out a revision.
    Rolling {
        /// The revision, when known.
        revision: Option<String>,
    },
    /// The latest revision serves.
    Ready {
        /// Its short name.
        revision: String,
    },
    /// The latest revision failed; traffic stays on the last Ready one.
    Failed {
        /// Cloud Run's message.
        message: String,
    },
    /// The latest revision was denied a secret while a grant propagates; it is rolled again after a delay.
    Propagating {
        /// Cloud Run's message.
        message: String,
    },
}

impl ServiceState {
    /// Whether Google is working on something we asked for (look again soon).
    pub fn in_flight(&self) -> bool {
        matches!(
            self,
            ServiceState::Creating
                | ServiceState::Updating
                | ServiceState::Rolling { .. }
                | ServiceState::Propagating { .. }
        )
    }
}

/// The decision for the service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceDecision {
    /// The write, if any.
    pub action: Option<Action>,
    /// Where it stands.
    pub state: ServiceState,
}

/// A service that exists and is not ours to write stops the whole plan, before any write.
pub fn conflict(desired: &DesiredState, model: &Model, adopt: bool) -> Option<Problem> {
    let live = model.service.as_ref()?;
    let labels: BTreeMap<String, String> = serde_json::from_value(live["labels"].clone()).unwrap_or_default();
    match Ownership::of(&labels, &desired.owner()).write(adopt) {
        Write::Allowed | Write::AdoptFirst => None,
        Write::Refused(refusal) => Some(Problem {
            kind: ProblemKind::Conflict,
            message: refusal.message(
                "Cloud Run service",
                &desired.service_resource,
                "set spec.service.name to another name",
            ),
        }),
    }
}

/// Decides the service. `pins` is `None` while some secret has no pin; `spec_changed` says whether the spec or a
/// pin changed since the last pass (an update then is a change, otherwise it puts back an outside edit).
pub fn decide(
    desired: &DesiredState,
    pins: Option<&BTreeMap<String, String>>,
    model: &Model,
    spec_changed: bool,
    clock: &Clock,
) -> ServiceDecision {
    let name = desired.service_name();
    let Some(pins) = pins else {
        return ServiceDecision {
            action: None,
            state: ServiceState::WaitingForSecrets,
        };
    };
    let want = desired::service(desired, pins);
    let Some(live) = &model.service else {
        return ServiceDecision {
            action: Some(Action::CreateService {
                service: name,
                body: want,
            }),
            state: ServiceState::Creating,
        };
    };
    let drift = service_diff::drift(&want, live);
    if !drift.is_empty() {
        let change = if spec_changed {
            ServiceChange::Spec(drift)
        } else {
            ServiceChange::Drift(drift)
        };
        let mut body = service_diff::merge_owned(live, &want);
        if change.rolls_revision() {
            // A change starts a fresh IAM-propagation retry budget.
            if let Some(annotations) = body["template"]["annotations"].as_object_mut() {
                annotations.remove(IAM_RETRY_ANNOTATION);
            }
        } else {
            // The template already matches the spec (labels or ingress differ, e.g. adopting a service): send it
            // back exactly as it is, so Cloud Run rolls no revision for a difference of form (a secret named by
            // id rather than by full name, a server-filled field).
            body["template"] = live["template"].clone();
        }
        return ServiceDecision {
            action: Some(Action::UpdateService {
                service: name,
                body,
                change,
            }),
            state: ServiceState::Updating,
        };
    }
    match rollout(live) {
        Rollout::InProgress { revision } => ServiceDecision {
            action: None,
            state: ServiceState::Rolling { revision },
        },
        Rollout::Ready { revision } => ServiceDecision {
            action: None,
            state: ServiceState::Ready { revision },
        },
        Rollout::Failed { message } if denied_a_secret(&message) => retry(live, message, clock, name),
        Rollout::Failed { message } => ServiceDecision {
            action: None,
            state: ServiceState::Failed { message },
        },
    }
}

/// Cloud Run's words for a revision whose account cannot read a secret version yet.
fn denied_a_secret(message: &str) -> bool {
    message.contains("secretmanager.versions.access") || message.contains("Permission denied on secret")
}

/// Cloud Run does not retry such a revision: roll a new one (a template annotation bump, which counts the
/// attempts) `iam_retry_delay` after the last update, at most `iam_propagation_timeout / iam_retry_delay` times
/// after a change. The grant itself is not repeated: it is in the policy, it just has not propagated.
fn retry(
    live: &Value,
    message: String,
    clock: &Clock,
    name: litellm_operator_gcp::ServiceName,
) -> ServiceDecision {
    let since_update = live["updateTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| clock.now.saturating_sub(t.timestamp()).max(0))
        .unwrap_or(i64::MAX);
    let attempts: u32 = live["template"]["annotations"][IAM_RETRY_ANNOTATION]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let budget = clock.iam_propagation_timeout.as_secs() / clock.iam_retry_delay.as_secs().max(1);
    if u64::from(attempts) >= budget {
        return ServiceDecision {
            action: None,
            state: ServiceState::Failed {
                message: format!(
                    "{message}; still denied after {attempts} retries over {:?}: check that the runtime service \
                     account is the one granted and that the secret version is enabled",
                    clock.iam_propagation_timeout
                ),
            },
        };
    }
    let due = u64::try_from(since_update).unwrap_or(u64::MAX) >= clock.iam_retry_delay.as_secs();
    let action = due.then(|| {
        let mut body = live.clone();
        body["template"]["annotations"][IAM_RETRY_ANNOTATION] = Value::from((attempts + 1).to_string());
        Action::UpdateService {
            service: name,
            body,
            change: ServiceChange::IamRetry(attempts + 1),
        }
    });
    ServiceDecision {
        action,
        state: ServiceState::Propagating { message },
    }
}

//! Step 4: the Cloud Run service. Created or patched only when an owned field differs from the live service;
//! the long-running operation is never awaited: the next reconcile observes `reconciling`, `observedGeneration`,
//! `terminalCondition` and the revisions.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::runtime::events::EventType;
use litellm_operator_api::names::{self, ADOPT_ANNOTATION, reason};
use litellm_operator_api::{LiteLLMDeployment, LiteLLMDeploymentStatus};
use litellm_operator_gcp::{CloudRun, Service, ServiceName};
use serde_json::Value;

use super::Context;
use crate::conditions::Outcome;
use crate::desired::{self, DesiredState};
use crate::error::{Error, Result};
use crate::service_diff;
use crate::service_json::{self, Rollout};

/// What the service step found.
pub(super) struct ServiceOutcome {
    /// Condition `ServiceReady`.
    pub outcome: Outcome,
    /// Whether the service exists (so its IAM policy can be edited).
    pub exists: bool,
    /// `status.url`.
    pub url: Option<String>,
    /// `status.latestCreatedRevision`.
    pub latest_created: Option<String>,
    /// `status.latestReadyRevision`.
    pub latest_ready: Option<String>,
}

pub(super) async fn converge(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    pinned: &BTreeMap<String, String>,
    old: &LiteLLMDeploymentStatus,
    ctx: &Context,
) -> Result<ServiceOutcome> {
    let name = ServiceName::new(&desired.project, &desired.region, &desired.service_name);
    let live = ctx
        .gcp
        .get_service(&name)
        .await
        .map_err(Error::google("service"))?;
    let live_json = match &live {
        Some(s) => Some(to_json(s, &name)?),
        None => None,
    };

    // Every secret must be pinned before the service can reference it: never deploy `latest` or a half set.
    let all_pinned = desired.secrets.iter().all(|s| pinned.contains_key(&s.env));
    if !all_pinned {
        let mut out = observe(live_json.as_ref());
        out.outcome = Outcome::not_ready(
            reason::RECONCILING,
            "waiting for every secret to have a pinned version",
        );
        return Ok(out);
    }
    let want = desired::service(obj, desired, pinned);

    let Some(live_json) = live_json else {
        let service = from_json(want, &name)?;
        ctx.gcp
            .create_service(&name, service)
            .await
            .map_err(Error::google("service"))?;
        ctx.event(
            obj,
            EventType::Normal,
            "ServiceCreated",
            format!("Created Cloud Run service {name}"),
        )
        .await;
        return Ok(ServiceOutcome {
            outcome: Outcome::not_ready(reason::RECONCILING, "creating the Cloud Run service"),
            exists: true,
            url: None,
            latest_created: None,
            latest_ready: None,
        });
    };

    if !owned(obj, desired, &live_json) {
        return Err(Error::NotOwned {
            resource: name.to_string(),
        });
    }

    let drift = service_diff::drift(&want, &live_json);
    if !drift.is_empty() {
        let mut merged = service_diff::merge_owned(&live_json, &want);
        // A change starts a fresh IAM-propagation retry budget.
        if let Some(annotations) = merged["template"]["annotations"].as_object_mut() {
            annotations.remove(IAM_RETRY_ANNOTATION);
        }
        let patch = from_json(merged, &name)?;
        ctx.gcp
            .update_service(&name, patch)
            .await
            .map_err(Error::google("service"))?;
        let spec_unchanged = obj.metadata.generation == old.observed_generation
            && old
                .secrets
                .iter()
                .all(|p| p.version.as_ref() == pinned.get(&p.env));
        if spec_unchanged && old.observed_generation.is_some() {
            ctx.event(
                obj,
                EventType::Warning,
                "DriftCorrected",
                format!(
                    "Put back fields changed outside the operator on {name}: {}",
                    drift.join(", ")
                ),
            )
            .await;
        } else {
            ctx.event(
                obj,
                EventType::Normal,
                "ServiceUpdated",
                format!("Updated {name}: {}", drift.join(", ")),
            )
            .await;
        }
        let mut out = observe(Some(&live_json));
        out.outcome = Outcome::not_ready(reason::RECONCILING, "rolling out a new revision");
        return Ok(out);
    }
    let observed = observe(Some(&live_json));
    if observed.outcome.reason == reason::IAM_PROPAGATING {
        return retry_after_iam_propagation(obj, &name, &live_json, observed, ctx).await;
    }
    Ok(observed)
}

/// Template annotation counting revisions re-rolled while a new grant propagates.
const IAM_RETRY_ANNOTATION: &str = "litellm.dev/iam-retry";

/// A revision that failed on secret access right after a grant is not retried by Cloud Run: roll a new one (a
/// template annotation bump) every `iam_retry_delay`, for up to `iam_propagation_timeout` after the last spec
/// change. The grant itself is not repeated: it is already in the policy, it just has not propagated.
async fn retry_after_iam_propagation(
    obj: &LiteLLMDeployment,
    name: &ServiceName,
    live: &Value,
    mut observed: ServiceOutcome,
    ctx: &Context,
) -> Result<ServiceOutcome> {
    let since_update = live["updateTime"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| {
            k8s_openapi::jiff::Timestamp::now()
                .duration_since(t)
                .unsigned_abs()
        })
        .unwrap_or_default();
    let attempts: u32 = live["template"]["annotations"][IAM_RETRY_ANNOTATION]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let settings = &ctx.settings;
    let budget = settings.iam_propagation_timeout.as_secs() / settings.iam_retry_delay.as_secs().max(1);
    if u64::from(attempts) >= budget {
        observed.outcome = Outcome::not_ready(
            reason::REVISION_FAILED,
            format!(
                "{}; still denied after {} retries over {:?}: check that the runtime service account is the one \
                 granted and that the secret version is enabled",
                observed.outcome.message, attempts, settings.iam_propagation_timeout
            ),
        );
        return Ok(observed);
    }
    if since_update < settings.iam_retry_delay {
        return Ok(observed);
    }
    let mut patch = live.clone();
    patch["template"]["annotations"][IAM_RETRY_ANNOTATION] = Value::from((attempts + 1).to_string());
    ctx.gcp
        .update_service(name, from_json(patch, name)?)
        .await
        .map_err(Error::google("service"))?;
    ctx.event(
        obj,
        EventType::Normal,
        "RevisionRetried",
        format!(
            "Rolled a new revision of {name}: the last one could not read a secret while the new accessor grant \
             propagates (attempt {})",
            attempts + 1
        ),
    )
    .await;
    Ok(observed)
}

/// Ours when it carries our labels for this LiteLLMDeployment, or when adoption is on.
fn owned(obj: &LiteLLMDeployment, desired: &DesiredState, live: &Value) -> bool {
    if obj.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true") {
        return true;
    }
    let label = |k: &str| live["labels"][k].as_str().map(str::to_owned);
    label(names::MANAGED_BY_LABEL).as_deref() == Some(names::MANAGED_BY_VALUE)
        && label(names::OWNER_LABEL).as_ref() == desired.service_labels.get(names::OWNER_LABEL)
}

/// Readiness of an unchanged service from what Cloud Run reports.
fn observe(live: Option<&Value>) -> ServiceOutcome {
    let Some(live) = live else {
        return ServiceOutcome {
            outcome: Outcome::not_ready(reason::RECONCILING, "the Cloud Run service does not exist yet"),
            exists: false,
            url: None,
            latest_created: None,
            latest_ready: None,
        };
    };
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let short = |v: &Value| text(v).map(|s| s.rsplit('/').next().unwrap_or_default().to_owned());
    let latest_created = short(&live["latestCreatedRevision"]);
    let latest_ready = short(&live["latestReadyRevision"]);
    let outcome = match service_json::rollout(live) {
        Rollout::InProgress { revision } => Outcome::not_ready(
            reason::RECONCILING,
            format!("revision {} is starting", revision.as_deref().unwrap_or("(new)")),
        ),
        Rollout::Ready { revision } => Outcome::ready(format!("revision {revision} is serving")),
        Rollout::Failed { message } => {
            let propagating = message.contains("secretmanager.versions.access")
                || message.contains("Permission denied on secret");
            Outcome::not_ready(
                if propagating {
                    reason::IAM_PROPAGATING
                } else {
                    reason::REVISION_FAILED
                },
                message,
            )
        }
    };
    ServiceOutcome {
        outcome,
        exists: true,
        url: text(&live["uri"]),
        latest_created,
        latest_ready,
    }
}

fn to_json(service: &Service, name: &ServiceName) -> Result<Value> {
    service_json::to_json(service, name).map_err(|message| Error::Serialization {
        resource: name.to_string(),
        message,
    })
}

fn from_json(value: Value, name: &ServiceName) -> Result<Service> {
    service_json::from_json(value, name).map_err(|message| Error::Serialization {
        resource: name.to_string(),
        message,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    #[test]
    fn ready_only_when_the_latest_revision_serves() {
        let live = json!({
            "uri": "https://s-abc.a.run.app", "generation": "3", "observedGeneration": "3",
            "terminalCondition": {"state": "CONDITION_SUCCEEDED"},
            "latestCreatedRevision": "projects/p/locations/r/services/s/revisions/s-00003-abc",
            "latestReadyRevision": "projects/p/locations/r/services/s/revisions/s-00003-abc"
        });
        let out = observe(Some(&live));
        assert!(out.outcome.ok, "{:?}", out.outcome);
        assert_eq!(out.latest_ready.as_deref(), Some("s-00003-abc"));
        assert_eq!(out.url.as_deref(), Some("https://s-abc.a.run.app"));
    }

    #[test]
    fn a_rollout_in_progress_is_reconciling() {
        let live = json!({"generation": "4", "observedGeneration": "3", "reconciling": true,
            "terminalCondition": {"state": "CONDITION_SUCCEEDED"}});
        assert_eq!(observe(Some(&live)).outcome.reason, reason::RECONCILING);
    }

    #[test]
    fn a_secret_access_failure_is_iam_propagation() {
        let live = json!({"generation": "4", "observedGeneration": "4",
            "terminalCondition": {"state": "CONDITION_FAILED", "message": "Revision 's-00004-xyz' is not ready: Permission denied on secret: projects/p/secrets/x/versions/2 for Revision service account run@p.iam.gserviceaccount.com."},
            "latestCreatedRevision": "s-00004-xyz", "latestReadyRevision": "s-00003-abc"});
        let out = observe(Some(&live));
        assert_eq!(out.outcome.reason, reason::IAM_PROPAGATING);
        assert!(out.outcome.message.contains("traffic stays on s-00003-abc"));
    }

    #[test]
    fn another_failure_is_revision_failed() {
        let live = json!({"generation": "4", "observedGeneration": "4",
            "terminalCondition": {"state": "CONDITION_FAILED", "message": "container crashed"},
            "latestCreatedRevision": "s-00004-xyz", "latestReadyRevision": "s-00003-abc"});
        assert_eq!(observe(Some(&live)).outcome.reason, reason::REVISION_FAILED);
    }
}

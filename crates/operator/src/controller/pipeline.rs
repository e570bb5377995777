//! The controller's front end to the shared pipeline: inputs from Kubernetes Secrets and ConfigMaps, the record in
//! status, Events for every action performed; and cleanup on deletion through the same planner and executor.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use litellm_operator_api::names::{self, condition};
use litellm_operator_api::{LiteLLMDeployment, LiteLLMDeploymentStatus};
use litellm_operator_gcp::SecretPayload;

use super::{Context, now};
use crate::conditions::{self, Outcome};
use crate::error::{Error, Result};
use crate::execute::{self, Execution};
use crate::observe;
use crate::permissions::explain;
use crate::plan::cleanup::{self, Teardown};
use crate::plan::{self, DesiredSource, DesiredState, Inputs, Phase, Record, ServiceState, Source};

/// Whether everything converged (look again at the resync interval), work is in flight on Google's side (poll
/// soon), or the resource waits for a person (a missing source, a conflict, a failed revision: look again now and
/// then; a change to the resource or its Secrets triggers a pass anyway).
pub(super) struct Progress {
    pub converged: bool,
    pub in_flight: bool,
}

/// Runs observe -> plan -> execute for every apply phase, writing the outcome into `status`. A failing action
/// stops the phases after it; its error is returned (after `status` says what failed) so the error policy can
/// back off.
pub(super) async fn apply(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    status: &mut LiteLLMDeploymentStatus,
    ctx: &Context,
) -> (Progress, Option<Error>) {
    let old = status.clone();
    let generation = obj.metadata.generation;
    // Shortly after a full pass of the same generation (a rollout being polled, our own status write coming back
    // through the watch), trust the record for unchanged inputs: one Google read for the service instead of a
    // read per secret and per policy. The periodic resync always makes a full pass.
    let holds = |type_: &str| {
        old.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    let light = ctx.recently_fully_checked(obj)
        && old.observed_generation == generation
        && holds(condition::SECRETS_READY)
        && holds(condition::IAM_READY);

    let runtime_sa = desired.service_spec.service_account.as_str();
    // A condition message names the fix too: for a missing permission, the command that grants it.
    let stopped = |status: &mut LiteLLMDeploymentStatus, e: Error| {
        let failed = Outcome::not_ready(e.reason(), explain(&e, runtime_sa));
        let blocked = Outcome::not_ready(names::reason::RECONCILING, "waiting for secrets");
        conditions::set_all(
            &mut status.conditions,
            &failed,
            &blocked,
            &blocked,
            generation,
            &now(),
        );
        (
            Progress {
                converged: false,
                in_flight: false,
            },
            Some(e),
        )
    };
    let sources = match sources(obj, desired, ctx).await {
        Ok(s) => s,
        Err(e) => return stopped(status, e),
    };
    let record = Record {
        pins: old.secrets.clone(),
        bindings: old.applied_bindings.iter().cloned().collect(),
    };
    let gcp = match ctx.gcp_for(&obj.namespace().unwrap_or_default()).await {
        Ok(g) => g,
        Err(e) => return stopped(status, e),
    };
    let model = match observe::deployment(&gcp, desired, &sources, record, light).await {
        Ok(m) => m,
        Err(e) => return stopped(status, e),
    };
    let peers = ctx.peers(obj);
    let inputs = Inputs {
        desired,
        sources: &sources,
        adopt: obj.adopts(),
        spec_changed: old.observed_generation != generation,
        clock: ctx.clock(),
        peers: &peers,
    };
    let Execution {
        performed,
        model,
        error,
    } = execute::run(&gcp, model, &Phase::APPLY, |m| plan::plan(&inputs, m).actions).await;
    ctx.report(obj, &performed).await;

    let after = plan::plan(&inputs, &model);
    status.secrets = after.pinned(&model);
    status.applied_bindings = model.record.bindings.iter().cloned().collect();
    // Another deployment's service is not ours to report.
    let live = model.service.as_ref().filter(|_| after.conflict.is_none());
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let short =
        |v: Option<&serde_json::Value>| text(v).map(|s| s.rsplit('/').next().unwrap_or_default().to_owned());
    status.url = text(live.map(|l| &l["uri"]));
    status.latest_created_revision = short(live.map(|l| &l["latestCreatedRevision"]));
    status.latest_ready_revision = short(live.map(|l| &l["latestReadyRevision"]));
    if !after.handover.is_empty() {
        ctx.hand_over(obj, &after.handover);
    }

    let [mut secrets, mut iam, mut service] = after.outcomes(desired);
    if let Some(e) = &error {
        let failed = Outcome::not_ready(e.reason(), explain(e, runtime_sa));
        match e {
            Error::Act { kind, .. } => match kind.phase() {
                Phase::Access | Phase::Invoker | Phase::Revoke => iam = failed,
                Phase::Service => service = failed,
                _ => secrets = failed,
            },
            _ => secrets = failed,
        }
    }
    conditions::set_all(
        &mut status.conditions,
        &secrets,
        &iam,
        &service,
        generation,
        &now(),
    );
    let mut in_flight = after.in_flight();
    if !light && error.is_none() {
        ctx.record_full_pass(obj);
    } else if light && !holds(condition::SERVICE_READY) && matches!(after.service, ServiceState::Ready { .. })
    {
        // The revision pinned to the new versions just became Ready: look again at once with a full pass, which
        // retires old versions and revokes what the old revision needed (a light pass does not read them).
        ctx.forget(obj);
        in_flight = true;
    }
    (
        Progress {
            converged: error.is_none() && after.converged(),
            in_flight,
        },
        error,
    )
}

/// The given values: `fromSecret` sources read from Kubernetes Secrets, a `spec.config` from its ConfigMap, both in
/// the resource's namespace (each object once), and inline configuration from the spec.
async fn sources(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    ctx: &Context,
) -> Result<BTreeMap<String, Source>> {
    let ns = obj.namespace().unwrap_or_default();
    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let mut read: BTreeMap<String, Option<KubeSecret>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for secret in &desired.secrets {
        let given = &secret.source;
        let source = match given {
            DesiredSource::FromSecret(selector) => {
                if !read.contains_key(&selector.name) {
                    let found = secrets.get_opt(&selector.name).await.map_err(Error::Kubernetes)?;
                    read.insert(selector.name.clone(), found);
                }
                let found = read.get(&selector.name).and_then(Option::as_ref);
                match found.and_then(|f| Some((f, f.data.as_ref()?.get(&selector.key)?))) {
                    Some((found, value)) => Source::Value {
                        payload: SecretPayload::new(value.0.clone()),
                        revision: given.revision(found.metadata.resource_version.as_deref()),
                    },
                    None => Source::Missing {
                        message: given.missing(&ns, found.is_some()),
                    },
                }
            }
            DesiredSource::FromConfigMap(selector) => {
                let found = config_maps
                    .get_opt(&selector.name)
                    .await
                    .map_err(Error::Kubernetes)?;
                match found
                    .as_ref()
                    .and_then(|f| Some((f, f.data.as_ref()?.get(&selector.key)?)))
                {
                    Some((found, value)) => Source::Value {
                        payload: SecretPayload::new(value.clone().into_bytes()),
                        revision: given.revision(found.metadata.resource_version.as_deref()),
                    },
                    None => Source::Missing {
                        message: given.missing(&ns, found.is_some()),
                    },
                }
            }
            other => match other.spec_value() {
                Some(value) => value,
                None => continue,
            },
        };
        out.insert(secret.key().to_owned(), source);
    }
    Ok(out)
}

/// Deletion: follow `deletionPolicy` through the cleanup planner, treat not-found as done, touch only what is
/// ours. Works even when the spec no longer validates.
pub(super) async fn cleanup(obj: &LiteLLMDeployment, ctx: &Context) -> Result<Requeue> {
    if obj
        .annotations()
        .get(names::DELETION_POLICY_ANNOTATION)
        .map(String::as_str)
        == Some("Abandon")
    {
        ctx.event(
            obj,
            EventType::Warning,
            "CleanupSkipped",
            format!(
                "{} is Abandon: left the service, secrets and bindings in Google untouched",
                names::DELETION_POLICY_ANNOTATION
            ),
        )
        .await;
        return Ok(Requeue::await_change());
    }
    let teardown = Teardown::of(obj);
    let status = obj.status.clone().unwrap_or_default();
    let record = Record {
        pins: status.secrets.clone(),
        bindings: status.applied_bindings.iter().cloned().collect(),
    };
    let gcp = ctx.gcp_for(&obj.namespace().unwrap_or_default()).await?;
    let model = observe::teardown(&gcp, &teardown, record).await?;
    let peers = ctx.peers(obj);
    let first = cleanup::plan(&teardown, &model, &peers);
    if first.service_deleting {
        return Err(Error::InProgress {
            what: format!("deletion of {}", teardown.service),
        });
    }
    for kept in &first.kept {
        ctx.event(obj, EventType::Warning, "ResourceKept", kept.clone())
            .await;
    }
    let Execution { performed, error, .. } = execute::run(&gcp, model, &Phase::CLEANUP, |m| {
        cleanup::plan(&teardown, m, &peers).actions
    })
    .await;
    ctx.report(obj, &performed).await;
    let deleting = performed
        .iter()
        .any(|p| p.effect == plan::Effect::Deleting { done: false });
    if let Some(e) = error {
        return Err(e);
    }
    if deleting {
        // Deletion is a long-running operation: wait for it before releasing the finalizer.
        return Err(Error::InProgress {
            what: format!("deletion of {}", teardown.service),
        });
    }
    if !first.handover.is_empty() {
        ctx.hand_over(obj, &first.handover);
        return Err(Error::InProgress {
            what: format!(
                "hand-over of {} binding(s) to the LiteLLMDeployments that still need them",
                first.handover.len()
            ),
        });
    }
    Ok(Requeue::await_change())
}

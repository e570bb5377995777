//! The apply pipeline after `desired`: secrets -> IAM -> service -> retire, filling in the new status; and
//! cleanup on deletion.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use litellm_operator_api::names::{self, ADOPT_ANNOTATION, condition, reason};
use litellm_operator_api::{
    AppliedBinding, Deletion, LiteLLMDeployment, LiteLLMDeploymentStatus, SecretSource,
};
use litellm_operator_gcp::{CloudRun, SecretName, SecretStore, ServiceName};

use super::{Context, iam, now, retire, secrets, service};
use crate::conditions::{self, Outcome};
use crate::desired::DesiredState;
use crate::error::{Error, ErrorClass, Result};

/// Whether everything converged (look again at the resync interval), work is in flight on Google's side (poll
/// soon), or the resource waits for a person (a missing source, a conflict, a failed revision: look again now and
/// then; a change to the resource or its Secrets triggers a pass anyway).
pub(super) struct Progress {
    pub converged: bool,
    pub in_flight: bool,
}

/// A step failed: the ones after it did not run.
fn stopped(error: Error) -> (Progress, Option<Error>) {
    (
        Progress {
            converged: false,
            in_flight: false,
        },
        Some(error),
    )
}

/// Runs the Google steps, writing their outcome into `status`. A failing step stops the ones after it; its
/// error is returned (after `status` says what failed) so the error policy can back off.
pub(super) async fn apply(
    obj: &LiteLLMDeployment,
    desired: &DesiredState,
    status: &mut LiteLLMDeploymentStatus,
    ctx: &Context,
) -> (Progress, Option<Error>) {
    let old = status.clone();
    let generation = obj.metadata.generation;
    let blocked = |step: &str| Outcome::not_ready(reason::RECONCILING, format!("waiting for {step}"));

    let failed = |e: &Error| Outcome::not_ready(e.reason(), e.to_string());
    // Shortly after a full pass of the same generation (a rollout being polled, our own status write coming back
    // through the watch), trust status for unchanged inputs: one Kubernetes read per source Secret and one Google
    // read for the service, instead of a read per secret and per policy.
    let holds = |type_: &str| {
        old.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    let light = ctx.recently_fully_checked(obj)
        && old.observed_generation == generation
        && holds(condition::SECRETS_READY)
        && holds(condition::IAM_READY);
    let secrets = match secrets::converge(obj, desired, &old, light, ctx).await {
        Ok(s) => s,
        Err(e) => {
            conditions::set_all(
                &mut status.conditions,
                &failed(&e),
                &blocked("secrets"),
                &blocked("secrets"),
                generation,
                &now(),
            );
            return stopped(e);
        }
    };
    status.secrets = secrets.statuses;

    // Accessor bindings for the secrets that exist; the invoker binding once the service exists.
    let (secret_bindings, service_bindings): (Vec<AppliedBinding>, Vec<AppliedBinding>) = desired
        .bindings
        .iter()
        .cloned()
        .partition(|b| b.role == names::SECRET_ACCESSOR_ROLE);
    let secret_bindings: Vec<AppliedBinding> = secret_bindings
        .into_iter()
        .filter(|b| {
            desired
                .secrets
                .iter()
                .any(|s| s.resource == b.resource && secrets.pinned.contains_key(&s.env))
        })
        .collect();
    // In a light pass, bindings recorded as ours are not read again (the resync's full pass checks them).
    let recorded = |b: &AppliedBinding| light && old.applied_bindings.contains(b);
    let (known, secret_bindings): (Vec<AppliedBinding>, Vec<AppliedBinding>) =
        secret_bindings.into_iter().partition(|b| recorded(b));
    let (known_service, service_bindings): (Vec<AppliedBinding>, Vec<AppliedBinding>) =
        service_bindings.into_iter().partition(|b| recorded(b));
    let mut applied = match iam::grant(obj, &secret_bindings, ctx).await {
        Ok(a) => a,
        Err(e) => {
            conditions::set_all(
                &mut status.conditions,
                &secrets.outcome,
                &failed(&e),
                &blocked("IAM"),
                generation,
                &now(),
            );
            return stopped(e);
        }
    };

    applied.extend(known);
    let service = match service::converge(obj, desired, &secrets.pinned, &old, ctx).await {
        Ok(s) => s,
        Err(e) => {
            status.applied_bindings = merged(&old.applied_bindings, &applied);
            let iam_outcome = iam::outcome(&desired.bindings, &applied);
            conditions::set_all(
                &mut status.conditions,
                &secrets.outcome,
                &iam_outcome,
                &failed(&e),
                generation,
                &now(),
            );
            return stopped(e);
        }
    };
    status.url = service.url.clone();
    status.latest_created_revision = service.latest_created.clone();
    status.latest_ready_revision = service.latest_ready.clone();

    let mut error = None;
    if service.exists {
        applied.extend(known_service);
        match iam::grant(obj, &service_bindings, ctx).await {
            Ok(a) => applied.extend(a),
            Err(e) => error = Some(e),
        }
    }
    if error.is_none()
        && let Err(e) = iam::revoke_unneeded(obj, &old.applied_bindings, &desired.bindings, ctx).await
    {
        error = Some(e);
    }
    // Records stay for every binding still needed (one skipped this pass, e.g. its secret has a problem, must
    // still be revoked later when the spec drops it); after a failure, every old record stays.
    let still_needed: Vec<AppliedBinding> = if error.is_none() {
        old.applied_bindings
            .iter()
            .filter(|b| desired.bindings.contains(b))
            .cloned()
            .collect()
    } else {
        old.applied_bindings.clone()
    };
    status.applied_bindings = merged(&still_needed, &applied);
    let iam_outcome = match &error {
        Some(e) => failed(e),
        None => iam::outcome(&desired.bindings, &applied),
    };

    // Retire only once the revision pinned to the new versions serves, and only when it just became Ready.
    let was_ready = old
        .conditions
        .iter()
        .any(|c| c.type_ == condition::SERVICE_READY && c.status == "True");
    if error.is_none()
        && service.outcome.ok
        && secrets.outcome.ok
        && !was_ready
        && let Err(e) = retire::converge(obj, desired, &secrets.pinned, ctx).await
    {
        error = Some(e);
    }

    conditions::set_all(
        &mut status.conditions,
        &secrets.outcome,
        &iam_outcome,
        &service.outcome,
        generation,
        &now(),
    );
    if !light && error.is_none() {
        ctx.record_full_pass(obj);
    }
    let converged = secrets.outcome.ok && iam_outcome.ok && service.outcome.ok && error.is_none();
    let in_flight = [&secrets.outcome, &iam_outcome, &service.outcome]
        .iter()
        .any(|o| o.reason == reason::RECONCILING || o.reason == reason::IAM_PROPAGATING);
    (Progress { converged, in_flight }, error)
}

/// Old records kept until they are confirmed, plus the new ones.
fn merged(old: &[AppliedBinding], new: &[AppliedBinding]) -> Vec<AppliedBinding> {
    let mut all: Vec<AppliedBinding> = old.to_vec();
    all.extend(new.iter().filter(|b| !old.contains(b)).cloned());
    all.sort();
    all
}

/// Deletion: follow `deletionPolicy`, treat not-found as done, and touch only what carries our labels or was
/// recorded in status. Works even when the spec no longer validates.
pub(super) async fn cleanup(obj: &LiteLLMDeployment, ctx: &Context) -> Result<Action> {
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
        return Ok(Action::await_change());
    }
    let spec = &obj.spec;
    let status = obj.status.clone().unwrap_or_default();
    let owner = names::owner_label_value(&obj.namespace().unwrap_or_default(), &obj.name_any());
    let adopt = obj.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true");
    let ours = |labels: &BTreeMap<String, String>| {
        adopt
            || (labels.get(names::MANAGED_BY_LABEL).map(String::as_str) == Some(names::MANAGED_BY_VALUE)
                && labels.get(names::OWNER_LABEL) == Some(&owner))
    };

    let service_name = ServiceName::new(&spec.project, &spec.region, obj.service_name());
    let service_deleted = spec.deletion_policy.service == Deletion::Delete;
    if service_deleted
        && let Some(live) = ctx
            .gcp
            .get_service(&service_name)
            .await
            .map_err(Error::google("cleanup"))?
    {
        let labels: BTreeMap<String, String> = live.labels.clone().into_iter().collect();
        if ours(&labels) {
            // Deletion is a long-running operation: wait for it (a service being deleted carries deleteTime)
            // before releasing the finalizer, without issuing the delete twice.
            if live.delete_time.is_some() {
                return Err(Error::InProgress {
                    what: format!("deletion of {service_name}"),
                });
            }
            let operation = ctx
                .gcp
                .delete_service(&service_name)
                .await
                .map_err(Error::google("cleanup"))?;
            ctx.event(
                obj,
                EventType::Normal,
                "ServiceDeleted",
                format!("Deleted Cloud Run service {service_name}"),
            )
            .await;
            if operation.is_some_and(|op| !op.done) {
                return Err(Error::InProgress {
                    what: format!("deletion of {service_name}"),
                });
            }
        } else {
            ctx.event(
                obj,
                EventType::Warning,
                "ServiceKept",
                format!("Left {service_name} in place: it is not managed by this LiteLLMDeployment"),
            )
            .await;
        }
    }

    // Our bindings go either way (a deleted service takes its own policy with it).
    for binding in &status.applied_bindings {
        if service_deleted && binding.resource == service_name.to_string() {
            continue;
        }
        iam::revoke(obj, binding, ctx).await?;
    }

    if spec.deletion_policy.secrets == Deletion::Delete {
        let recorded = status.secrets.iter().filter_map(|p| SecretName::parse(&p.secret));
        let declared = spec
            .secrets
            .iter()
            .filter(|s| !matches!(s.source(), Some(SecretSource::External(_))))
            .map(|s| SecretName::new(&spec.project, s.effective_secret_id()));
        let external: Vec<String> = spec
            .secrets
            .iter()
            .filter(|s| matches!(s.source(), Some(SecretSource::External(_))))
            .map(|s| names::secret_resource(&spec.project, &s.effective_secret_id()))
            .collect();
        let mut names: Vec<SecretName> = declared
            .chain(recorded)
            .filter(|n| !external.contains(&n.to_string()))
            .collect();
        names.sort_by_key(ToString::to_string);
        names.dedup();
        for name in names {
            let Some(found) = ctx
                .gcp
                .find_secret(&name)
                .await
                .map_err(Error::google("cleanup"))?
            else {
                continue;
            };
            if !ours(&found.labels) {
                continue;
            }
            if ctx
                .gcp
                .delete_secret(&name, Some(&found.etag))
                .await
                .map_err(Error::google("cleanup"))?
            {
                ctx.event(
                    obj,
                    EventType::Normal,
                    "SecretDeleted",
                    format!("Deleted secret {name}"),
                )
                .await;
            }
        }
    }
    Ok(Action::await_change())
}

/// Warning Event text for a failure, with the fix when Google says a permission is missing.
pub(super) fn explain(error: &Error, desired_service_account: &str) -> String {
    if error.class() != ErrorClass::PermissionDenied {
        return error.to_string();
    }
    let hint = match error {
        Error::Google { step: "secrets" | "retire" | "cleanup", .. } => {
            "grant the operator's Google service account roles/secretmanager.admin (or the custom role in docs/security.md)".to_owned()
        }
        Error::Google { step: "iam", .. } => {
            "grant the operator's Google service account roles/secretmanager.admin on the secrets and roles/run.admin on the service".to_owned()
        }
        _ => format!(
            "grant the operator's Google service account roles/run.admin, and roles/iam.serviceAccountUser on {desired_service_account} \
             (gcloud iam service-accounts add-iam-policy-binding {desired_service_account} --member=serviceAccount:OPERATOR_SA --role=roles/iam.serviceAccountUser)"
        ),
    };
    format!("{error}; {hint}")
}

//! What the status says while a LiteLLMDeployment is being deleted: every condition `False/Deleting` naming what
//! the operator does (the `deletionPolicy`, or the escape hatch), then, if cleanup fails, every condition `False`
//! with the failure's reason and the operator's explanation while the finalizer holds. A resource being deleted
//! never keeps showing `Ready=True`.
//!
//! The API server bumps `metadata.generation` when it sets `deletionTimestamp`, so a status whose `Ready` is False
//! for the current generation already reports this deletion: it is not announced again, and a failing cleanup that
//! keeps failing the same way writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use litellm_operator_api::names::{DELETION_POLICY_ANNOTATION, condition, reason};
use litellm_operator_api::{Deletion, LiteLLMDeployment, LiteLLMDeploymentStatus};
use tracing::warn;

use super::{Context, now, write_status};
use crate::conditions::{self, Outcome};
use crate::error::{Error, ErrorClass};

/// Whether the escape hatch tells the operator to leave Google alone.
fn abandons(obj: &LiteLLMDeployment) -> bool {
    obj.annotations()
        .get(DELETION_POLICY_ANNOTATION)
        .map(String::as_str)
        == Some("Abandon")
}

/// `False/Deleting`, saying what the deletion does in Google.
pub(super) fn deleting(obj: &LiteLLMDeployment) -> Outcome {
    let message = if abandons(obj) {
        format!(
            "being deleted: {DELETION_POLICY_ANNOTATION} is Abandon, leaving the service, secrets and bindings in \
             Google untouched"
        )
    } else {
        let word = |d: Deletion| match d {
            Deletion::Delete => "Delete",
            Deletion::Abandon => "Abandon",
        };
        let policy = &obj.spec.deletion_policy;
        format!(
            "being deleted: applying deletionPolicy (service: {}, secrets: {}) and removing the IAM bindings it \
             granted",
            word(policy.service),
            word(policy.secrets)
        )
    };
    Outcome::not_ready(reason::DELETING, message)
}

/// What a finished cleanup pass leaves in the conditions: still `Deleting` while Google works (the service's
/// deletion, a binding's hand-over), otherwise the failure's reason and explanation, with the escape hatch.
pub(super) fn after_cleanup(obj: &LiteLLMDeployment, error: &Error) -> Outcome {
    if error.class() == ErrorClass::InProgress {
        return deleting(obj);
    }
    Outcome::not_ready(error.reason(), failure_note(obj, error))
}

/// The explanation of a failed cleanup (also the note of its Warning Event): the error, what to grant, and the
/// escape hatch. Names resources and permissions, never a value.
pub(super) fn failure_note(obj: &LiteLLMDeployment, error: &Error) -> String {
    let after = format!(
        "; deletion waits until this succeeds (or set {DELETION_POLICY_ANNOTATION}: Abandon to leave Google \
         untouched)"
    );
    crate::permissions::explain_then(error, &obj.spec.service.service_account, &after)
}

/// Whether the status already reports this deletion: `Ready` is False for the generation the deletion set.
pub(super) fn reported(obj: &LiteLLMDeployment) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == condition::READY
                && c.status == "False"
                && c.observed_generation == obj.metadata.generation
        })
    })
}

/// `obj`'s status with every condition set to `outcome` for its current generation. The record (pins, bindings,
/// revisions) is kept: cleanup works from it.
pub(super) fn status(obj: &LiteLLMDeployment, outcome: &Outcome, now: &Time) -> LiteLLMDeploymentStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    conditions::set_all_blocked(&mut status.conditions, outcome, obj.metadata.generation, now);
    status.observed_generation = obj.metadata.generation;
    status
}

/// Writes `outcome` into `obj`'s conditions (nothing when they already say it) and returns `obj` as it now is. A
/// failed write is logged, never fatal: it must not stop the cleanup the finalizer waits for.
pub(super) async fn report(obj: &LiteLLMDeployment, outcome: &Outcome, ctx: &Context) -> LiteLLMDeployment {
    let status = status(obj, outcome, &now());
    match write_status(obj, status.clone(), ctx).await {
        Ok(_) => {
            let mut obj = obj.clone();
            obj.status = Some(status);
            obj
        }
        Err(error) => {
            warn!(name = %obj.name_any(), error = %error, "Could not write the status of a deletion");
            obj.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::plan::desired::example;
    use litellm_operator_gcp::Error as GcpError;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    /// The runbook example, Ready at generation 3, then deleted (the API server bumps the generation to 4).
    fn deleted_ready() -> LiteLLMDeployment {
        let mut obj = example();
        obj.metadata.generation = Some(3);
        let ok = Outcome::ready("serving");
        let mut ready = LiteLLMDeploymentStatus {
            observed_generation: Some(3),
            ..Default::default()
        };
        conditions::set_all(&mut ready.conditions, &ok, &ok, &ok, Some(3), &at(1));
        obj.status = Some(ready);
        obj.metadata.generation = Some(4);
        obj
    }

    fn ready(status: &LiteLLMDeploymentStatus) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::READY)
            .unwrap()
    }

    #[test]
    fn deleting_names_the_deletion_policy_or_the_escape_hatch() {
        let mut obj = deleted_ready();
        obj.spec.deletion_policy.service = Deletion::Delete;
        obj.spec.deletion_policy.secrets = Deletion::Abandon;
        let o = deleting(&obj);
        assert!(!o.ok);
        assert_eq!(o.reason, "Deleting");
        assert!(
            o.message
                .contains("applying deletionPolicy (service: Delete, secrets: Abandon)"),
            "{}",
            o.message
        );
        obj.spec.deletion_policy.secrets = Deletion::Delete;
        assert!(deleting(&obj).message.contains("secrets: Delete"));
        obj.annotations_mut()
            .insert(DELETION_POLICY_ANNOTATION.to_owned(), "Abandon".to_owned());
        let o = deleting(&obj);
        assert_eq!(o.reason, "Deleting");
        assert!(
            o.message
                .contains("litellm.dev/deletion-policy is Abandon, leaving the service"),
            "{}",
            o.message
        );
    }

    #[test]
    fn a_deleted_ready_resource_reads_deleting_on_every_condition_at_the_deletion_generation() {
        let obj = deleted_ready();
        assert!(!reported(&obj), "Ready=True does not report a deletion");
        let s = status(&obj, &deleting(&obj), &at(50));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.conditions.len(), 4);
        for c in &s.conditions {
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", "Deleting"),
                "{c:?}"
            );
            assert_eq!(c.observed_generation, Some(4));
            assert_eq!(c.last_transition_time, at(50), "True -> False is a transition");
        }
        // The record cleanup works from is kept.
        assert_eq!(s.secrets, obj.status.as_ref().unwrap().secrets);
        assert_eq!(s.applied_bindings, obj.status.as_ref().unwrap().applied_bindings);

        // Once written, the deletion is reported; the same outcome again is the same status (no write).
        let mut written = obj.clone();
        written.status = Some(s.clone());
        assert!(reported(&written));
        assert_eq!(status(&written, &deleting(&written), &at(99)), s);
    }

    #[test]
    fn a_failed_cleanup_reads_its_reason_and_in_progress_stays_deleting() {
        let obj = deleted_ready();
        let service = "projects/p/locations/us-central1/services/litellm-proxy";
        let denied = Error::Act {
            kind: crate::plan::ActionKind::DeleteService,
            action: format!("delete Cloud Run service {service}"),
            source: GcpError::PermissionDenied {
                resource: service.to_owned(),
                permission: Some("run.services.delete".to_owned()),
                message: "Permission 'run.services.delete' denied".to_owned(),
            },
        };
        let o = after_cleanup(&obj, &denied);
        assert_eq!((o.ok, o.reason.as_str()), (false, "PermissionDenied"));
        assert!(o.message.contains("run.services.delete"), "{}", o.message);
        assert!(
            o.message.contains("deletion waits until this succeeds"),
            "{}",
            o.message
        );
        let s = status(&obj, &o, &at(60));
        assert_eq!(
            (ready(&s).status.as_str(), ready(&s).reason.as_str()),
            ("False", "PermissionDenied")
        );

        let waiting = Error::InProgress {
            what: "deletion of the service".into(),
        };
        assert_eq!(after_cleanup(&obj, &waiting), deleting(&obj));
    }

    #[test]
    fn a_false_ready_of_an_older_generation_does_not_report_the_deletion() {
        let mut obj = deleted_ready();
        let failed = Outcome::not_ready(reason::REVISION_FAILED, "revision x failed");
        let mut s = obj.status.clone().unwrap();
        conditions::set_all_blocked(&mut s.conditions, &failed, Some(3), &at(2));
        obj.status = Some(s);
        assert!(!reported(&obj));
        obj.status = None;
        assert!(!reported(&obj));
    }
}

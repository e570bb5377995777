//! Deletion, through the same rules: the service and secrets go only when `deletionPolicy` says `Delete` and they
//! are ours (labelled ours, never merely unlabelled); our recorded bindings are revoked unless another managed
//! deployment needs them. Works from the spec's names alone, so an invalid spec can still be deleted.

use std::collections::BTreeMap;

use litellm_operator_api::names::{self, SECRET_ACCESSOR_ROLE};
use litellm_operator_api::{AppliedBinding, Deletion, LiteLLMDeployment, SecretSource};
use litellm_operator_gcp::{SecretName, ServiceName};

use super::action::Action;
use super::iam::{self, Release};
use super::model::{Model, Peers, SecretView};
use super::ownership::Ownership;

/// What a deletion works from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Teardown {
    /// Our owner label value.
    pub owner: String,
    /// The service.
    pub service: ServiceName,
    /// Delete the service.
    pub delete_service: bool,
    /// Delete the secrets.
    pub delete_secrets: bool,
    /// Secrets we may have created: declared (not external; the configuration's too) and recorded, minus the
    /// external ones.
    pub secrets: Vec<SecretName>,
}

impl Teardown {
    /// From the resource, whether or not its spec validates.
    pub fn of(obj: &LiteLLMDeployment) -> Self {
        let spec = &obj.spec;
        let namespace = obj.metadata.namespace.as_deref().unwrap_or("default");
        let name = obj.metadata.name.as_deref().unwrap_or_default();
        let external: Vec<String> = spec
            .secrets
            .iter()
            .filter(|s| matches!(s.source(), Some(SecretSource::External(_))))
            .map(|s| names::secret_resource(&spec.project, &s.effective_secret_id(&obj.service_name())))
            .collect();
        let config = spec
            .config
            .iter()
            .map(|c| SecretName::new(&spec.project, c.effective_secret_id(&obj.service_name())));
        let declared = spec
            .secrets
            .iter()
            .filter(|s| !matches!(s.source(), Some(SecretSource::External(_))))
            .map(|s| SecretName::new(&spec.project, s.effective_secret_id(&obj.service_name())))
            .chain(config);
        let recorded = obj
            .status
            .iter()
            .flat_map(|s| &s.secrets)
            .filter_map(|p| SecretName::parse(&p.secret));
        let mut secrets: Vec<SecretName> = declared
            .chain(recorded)
            .filter(|n| !external.contains(&n.to_string()))
            .collect();
        secrets.sort();
        secrets.dedup();
        Self {
            owner: names::owner_label_value(namespace, name),
            service: ServiceName::new(&spec.project, &spec.region, obj.service_name()),
            delete_service: spec.deletion_policy.service == Deletion::Delete,
            delete_secrets: spec.deletion_policy.secrets == Deletion::Delete,
            secrets,
        }
    }
}

/// The deletion plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanupPlan {
    /// Actions in phase order.
    pub actions: Vec<Action>,
    /// The service is being deleted already: wait for it.
    pub service_deleting: bool,
    /// Resources left in place because they are not ours, with why.
    pub kept: Vec<String>,
    /// Bindings that wait for another deployment that needs them to record them.
    pub handover: Vec<AppliedBinding>,
}

/// Plans the deletion of one deployment.
pub fn plan(teardown: &Teardown, model: &Model, peers: &(dyn Peers + Sync)) -> CleanupPlan {
    let mut out = CleanupPlan::default();
    let mut service_goes = false;
    if teardown.delete_service
        && let Some(live) = &model.service
    {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(live["labels"].clone()).unwrap_or_default();
        if Ownership::of(&labels, &teardown.owner).may_delete() {
            service_goes = true;
            if live["deleteTime"].as_str().is_some_and(|t| !t.is_empty()) {
                out.service_deleting = true;
            } else {
                out.actions.push(Action::DeleteService {
                    service: teardown.service.clone(),
                });
            }
        } else {
            out.kept.push(format!(
                "Left {} in place: it is not managed by this LiteLLMDeployment",
                teardown.service
            ));
        }
    }

    let service = teardown.service.to_string();
    for binding in &model.record.bindings {
        // A deleted service takes its own policy with it.
        if service_goes && binding.resource == service {
            continue;
        }
        // So does a deleted secret.
        if teardown.delete_secrets
            && binding.role == SECRET_ACCESSOR_ROLE
            && deletable(teardown, model, &binding.resource)
        {
            continue;
        }
        match iam::release(binding, peers) {
            Release::Revoke(action) | Release::HandOver(action) => out.actions.push(action),
            Release::Wait => out.handover.push(binding.clone()),
        }
    }

    if teardown.delete_secrets {
        for name in &teardown.secrets {
            if let SecretView::Present(state) = model.secret(&name.to_string()) {
                if Ownership::of(&state.labels, &teardown.owner).may_delete() {
                    out.actions.push(Action::DeleteSecret {
                        secret: name.clone(),
                        etag: state.etag.clone(),
                    });
                } else {
                    out.kept.push(format!(
                        "Left secret {name} in place: it is not managed by this LiteLLMDeployment"
                    ));
                }
            }
        }
    }
    out.actions.sort_by_key(Action::phase);
    out
}

fn deletable(teardown: &Teardown, model: &Model, resource: &str) -> bool {
    teardown.secrets.iter().any(|n| n.to_string() == resource)
        && matches!(model.secret(resource), SecretView::Present(s) if Ownership::of(&s.labels, &teardown.owner).may_delete())
}

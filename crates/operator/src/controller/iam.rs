//! Step 3: additive IAM. Each binding the spec needs is added with a read-modify-write under the policy etag;
//! bindings are removed only when the operator added them (recorded in `status.appliedBindings`) and the spec no
//! longer needs them. Other members, roles and conditional bindings are never touched.

use futures::StreamExt;
use kube::runtime::events::EventType;
use litellm_operator_api::names::reason;
use litellm_operator_api::{AppliedBinding, LiteLLMDeployment};
use litellm_operator_gcp::{
    Error as GcpError, IamPolicies, PolicyChange, PolicyTarget, SecretName, ServiceName,
};

use super::Context;
use crate::conditions::Outcome;
use crate::error::{Error, Result};

/// The IAM resource a binding sits on.
pub(super) fn target(resource: &str) -> Option<PolicyTarget> {
    SecretName::parse(resource)
        .map(PolicyTarget::Secret)
        .or_else(|| ServiceName::parse(resource).map(PolicyTarget::Service))
}

/// Adds every binding in `wanted`; returns the ones now in place.
pub(super) async fn grant(
    obj: &LiteLLMDeployment,
    wanted: &[AppliedBinding],
    ctx: &Context,
) -> Result<Vec<AppliedBinding>> {
    // Each binding sits on its own resource's policy: grant side by side (bounded), report in order.
    let mut work = Vec::with_capacity(wanted.len());
    for binding in wanted {
        work.push(async move {
            let Some(target) = target(&binding.resource) else {
                return (binding, None);
            };
            (
                binding,
                Some(ctx.gcp.add_member(&target, &binding.role, &binding.member).await),
            )
        });
    }
    let results: Vec<_> = futures::stream::iter(work).buffered(8).collect().await;
    let mut applied = Vec::new();
    for (binding, result) in results {
        match result {
            None => continue,
            Some(Ok(PolicyChange::Changed)) => {
                ctx.event(
                    obj,
                    EventType::Normal,
                    "IamBindingAdded",
                    format!(
                        "Granted {} to {} on {}",
                        binding.role, binding.member, binding.resource
                    ),
                )
                .await;
            }
            Some(Ok(PolicyChange::Unchanged)) => {}
            Some(Err(e)) => return Err(Error::google("iam")(e)),
        }
        applied.push(binding.clone());
    }
    Ok(applied)
}

/// Removes the bindings the operator recorded as its own that `keep` no longer contains.
pub(super) async fn revoke_unneeded(
    obj: &LiteLLMDeployment,
    recorded: &[AppliedBinding],
    keep: &[AppliedBinding],
    ctx: &Context,
) -> Result<()> {
    for binding in recorded.iter().filter(|b| !keep.contains(b)) {
        revoke(obj, binding, ctx).await?;
    }
    Ok(())
}

/// Removes one binding the operator added; a resource that is gone counts as done.
pub(super) async fn revoke(obj: &LiteLLMDeployment, binding: &AppliedBinding, ctx: &Context) -> Result<()> {
    let Some(target) = target(&binding.resource) else {
        return Ok(());
    };
    match ctx
        .gcp
        .remove_member(&target, &binding.role, &binding.member)
        .await
    {
        Ok(PolicyChange::Changed) => {
            ctx.event(
                obj,
                EventType::Normal,
                "IamBindingRemoved",
                format!(
                    "Removed {} from {} on {}",
                    binding.role, binding.member, binding.resource
                ),
            )
            .await;
            Ok(())
        }
        Ok(PolicyChange::Unchanged) | Err(GcpError::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::google("iam")(e)),
    }
}

/// `IamReady` from what is in place versus what is needed.
pub(super) fn outcome(wanted: &[AppliedBinding], applied: &[AppliedBinding]) -> Outcome {
    let missing: Vec<String> = wanted
        .iter()
        .filter(|b| !applied.contains(b))
        .map(|b| format!("{} on {}", b.role, b.resource))
        .collect();
    if missing.is_empty() {
        Outcome::ready(format!("{} bindings in place", applied.len()))
    } else {
        Outcome::not_ready(
            reason::RECONCILING,
            format!("waiting to grant {}", missing.join(", ")),
        )
    }
}

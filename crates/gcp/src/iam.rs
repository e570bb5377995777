//! IAM policies of secrets and Cloud Run services: add or remove one member on one role, never touching
//! anything else.
//!
//! Each edit is a read-modify-write cycle: read the policy with `requestedPolicyVersion: 3` (so conditional
//! bindings are returned, and thus written back intact), change one unconditional binding, write it with
//! the etag that was read. When a concurrent writer wins (`ABORTED`), the whole cycle starts again after a
//! backoff, a bounded number of times. Nothing is written when the member is already there (or already
//! absent); members are compared case-insensitively.

use std::future::Future;

use google_cloud_iam_v1::model::{Binding, GetPolicyOptions, Policy};

use crate::Gcp;
use crate::call::Call;
use crate::error::{Error, Result};
use crate::limits::QuotaClass;
use crate::names::PolicyTarget;

/// The policy version that can hold conditional bindings; always requested so none are lost on write.
const POLICY_VERSION: i32 = 3;

/// Whether an edit wrote anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyChange {
    /// The policy was written.
    Changed,
    /// The policy already had the desired state; nothing was written.
    Unchanged,
}

/// Member bindings on the IAM policy of a secret or a Cloud Run service.
pub trait IamPolicies {
    /// Reads the policy (version 3).
    fn get_policy(&self, target: &PolicyTarget) -> impl Future<Output = Result<Policy>> + Send;

    /// Grants `role` to `member` (e.g. `serviceAccount:sa@p.iam.gserviceaccount.com`) with an unconditional
    /// binding, unless it already has it.
    fn add_member(
        &self,
        target: &PolicyTarget,
        role: &str,
        member: &str,
    ) -> impl Future<Output = Result<PolicyChange>> + Send;

    /// Removes `member` from the unconditional binding of `role`, if present. Conditional bindings and
    /// other roles are left alone.
    fn remove_member(
        &self,
        target: &PolicyTarget,
        role: &str,
        member: &str,
    ) -> impl Future<Output = Result<PolicyChange>> + Send;
}

fn same_member(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn is_target(binding: &Binding, role: &str) -> bool {
    binding.role == role && binding.condition.is_none()
}

/// Version 3 is required as soon as any binding has a condition; otherwise keep what was read.
fn fix_version(mut policy: Policy) -> Policy {
    if policy.bindings.iter().any(|b| b.condition.is_some()) {
        policy.version = POLICY_VERSION;
    }
    policy
}

/// `policy` with `member` granted `role` unconditionally, or `None` when it already is.
///
/// Other bindings, conditional bindings of the same role, audit configs and the etag are kept as they are.
pub fn with_member(policy: &Policy, role: &str, member: &str) -> Option<Policy> {
    let already = policy
        .bindings
        .iter()
        .any(|b| is_target(b, role) && b.members.iter().any(|m| same_member(m, member)));
    if already {
        return None;
    }
    let mut policy = policy.clone();
    match policy.bindings.iter_mut().find(|b| is_target(b, role)) {
        Some(binding) => binding.members.push(member.to_owned()),
        None => policy
            .bindings
            .push(Binding::new().set_role(role).set_members([member])),
    }
    Some(fix_version(policy))
}

/// `policy` without `member` in the unconditional binding of `role`, or `None` when it is not there.
///
/// A binding left without members is dropped; conditional bindings are never touched.
pub fn without_member(policy: &Policy, role: &str, member: &str) -> Option<Policy> {
    let present = policy
        .bindings
        .iter()
        .any(|b| is_target(b, role) && b.members.iter().any(|m| same_member(m, member)));
    if !present {
        return None;
    }
    let mut policy = policy.clone();
    for binding in policy.bindings.iter_mut().filter(|b| is_target(b, role)) {
        binding.members.retain(|m| !same_member(m, member));
    }
    policy
        .bindings
        .retain(|b| !(is_target(b, role) && b.members.is_empty()));
    Some(fix_version(policy))
}

impl Gcp {
    async fn read_policy(&self, target: &PolicyTarget) -> Result<Policy> {
        let resource = target.to_string();
        let options = GetPolicyOptions::new().set_requested_policy_version(POLICY_VERSION);
        let caller = &self.inner.caller;
        match target {
            PolicyTarget::Secret(_) => {
                let client = &self.inner.secret_manager;
                caller
                    .call(
                        Call::secrets("GetIamPolicy", &resource, QuotaClass::SecretRead),
                        || {
                            client
                                .get_iam_policy()
                                .set_resource(&resource)
                                .set_options(options.clone())
                                .send()
                        },
                    )
                    .await
            }
            PolicyTarget::Service(_) => {
                let client = &self.inner.services;
                caller
                    .call(Call::run("GetIamPolicy", &resource, QuotaClass::RunRead), || {
                        client
                            .get_iam_policy()
                            .set_resource(&resource)
                            .set_options(options.clone())
                            .send()
                    })
                    .await
            }
        }
    }

    async fn write_policy(&self, target: &PolicyTarget, policy: Policy) -> Result<Policy> {
        let resource = target.to_string();
        // With an etag a repeated write cannot clobber a newer policy (it gets ABORTED instead).
        let guarded = !policy.etag.is_empty();
        let caller = &self.inner.caller;
        match target {
            PolicyTarget::Secret(_) => {
                let client = &self.inner.secret_manager;
                let call =
                    Call::secrets("SetIamPolicy", &resource, QuotaClass::SecretWrite).repeat_if(guarded);
                caller
                    .call(call, || {
                        client
                            .set_iam_policy()
                            .set_resource(&resource)
                            .set_policy(policy.clone())
                            .send()
                    })
                    .await
            }
            PolicyTarget::Service(_) => {
                let client = &self.inner.services;
                let call = Call::run("SetIamPolicy", &resource, QuotaClass::RunWrite).repeat_if(guarded);
                caller
                    .call(call, || {
                        client
                            .set_iam_policy()
                            .set_resource(&resource)
                            .set_policy(policy.clone())
                            .send()
                    })
                    .await
            }
        }
    }

    /// The read-modify-write cycle shared by add and remove.
    async fn edit_policy(
        &self,
        target: &PolicyTarget,
        edit: impl Fn(&Policy) -> Option<Policy> + Send + Sync,
    ) -> Result<PolicyChange> {
        let retry = &self.inner.caller.retry;
        let mut cycle = 0;
        loop {
            cycle += 1;
            let current = self.read_policy(target).await?;
            let Some(next) = edit(&current) else {
                return Ok(PolicyChange::Unchanged);
            };
            match self.write_policy(target, next).await {
                Ok(_) => return Ok(PolicyChange::Changed),
                Err(Error::Aborted { .. }) if cycle < retry.iam_conflict_attempts => {
                    let backoff = retry.backoff(cycle, None);
                    tracing::debug!(resource = %target, cycle, ?backoff, "IAM policy changed concurrently; re-reading");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl IamPolicies for Gcp {
    async fn get_policy(&self, target: &PolicyTarget) -> Result<Policy> {
        self.read_policy(target).await
    }

    async fn add_member(&self, target: &PolicyTarget, role: &str, member: &str) -> Result<PolicyChange> {
        let change = self.edit_policy(target, |p| with_member(p, role, member)).await?;
        if change == PolicyChange::Changed {
            tracing::info!(resource = %target, role, member, "Added IAM binding");
        }
        Ok(change)
    }

    async fn remove_member(&self, target: &PolicyTarget, role: &str, member: &str) -> Result<PolicyChange> {
        let change = self
            .edit_policy(target, |p| without_member(p, role, member))
            .await?;
        if change == PolicyChange::Changed {
            tracing::info!(resource = %target, role, member, "Removed IAM binding");
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use google_cloud_type::model::Expr;

    use super::*;

    const ACCESSOR: &str = "roles/secretmanager.secretAccessor";
    const SA: &str = "serviceAccount:run@p.iam.gserviceaccount.com";

    fn conditional(role: &str, member: &str) -> Binding {
        Binding::new().set_role(role).set_members([member]).set_condition(
            Expr::new()
                .set_title("expires")
                .set_expression("request.time < timestamp('2030-01-01T00:00:00Z')"),
        )
    }

    fn policy(bindings: Vec<Binding>) -> Policy {
        Policy::new()
            .set_version(1)
            .set_etag(bytes::Bytes::from_static(b"\x00\x01"))
            .set_bindings(bindings)
    }

    #[test]
    fn add_creates_a_binding_and_keeps_the_rest() {
        let other = Binding::new()
            .set_role("roles/viewer")
            .set_members(["user:a@example.com"]);
        let p = policy(vec![other.clone()]);
        let out = with_member(&p, ACCESSOR, SA).unwrap();
        assert_eq!(out.bindings.len(), 2);
        assert_eq!(out.bindings[0], other);
        assert_eq!(out.bindings[1].role, ACCESSOR);
        assert_eq!(out.bindings[1].members, vec![SA.to_owned()]);
        assert_eq!(out.etag, p.etag, "the etag read must be sent back");
        assert_eq!(out.version, 1);
    }

    #[test]
    fn add_appends_to_the_existing_unconditional_binding() {
        let p = policy(vec![
            Binding::new()
                .set_role(ACCESSOR)
                .set_members(["user:b@example.com"]),
        ]);
        let out = with_member(&p, ACCESSOR, SA).unwrap();
        assert_eq!(out.bindings.len(), 1);
        assert_eq!(
            out.bindings[0].members,
            vec!["user:b@example.com".to_owned(), SA.to_owned()]
        );
    }

    #[test]
    fn add_is_a_no_op_when_present_in_any_case() {
        let p = policy(vec![
            Binding::new().set_role(ACCESSOR).set_members([SA.to_uppercase()]),
        ]);
        assert_eq!(with_member(&p, ACCESSOR, SA), None);
    }

    #[test]
    fn a_conditional_grant_does_not_count_and_is_kept_verbatim() {
        let cond = conditional(ACCESSOR, SA);
        let p = policy(vec![cond.clone()]);
        let out = with_member(&p, ACCESSOR, SA).unwrap();
        assert_eq!(out.bindings.len(), 2);
        assert_eq!(out.bindings[0], cond);
        assert!(out.bindings[1].condition.is_none());
        assert_eq!(
            out.version, 3,
            "a policy with conditions must be written as version 3"
        );

        let removed = without_member(&out, ACCESSOR, SA).unwrap();
        assert_eq!(removed.bindings, vec![cond.clone()]);
        assert_eq!(removed.version, 3);
        // Only the conditional grant is left: nothing of ours to remove.
        assert_eq!(without_member(&removed, ACCESSOR, SA), None);
    }

    #[test]
    fn remove_takes_only_that_member_and_drops_an_empty_binding() {
        let p = policy(vec![
            Binding::new()
                .set_role(ACCESSOR)
                .set_members([SA, "user:keep@example.com"]),
            Binding::new().set_role("roles/run.invoker").set_members([SA]),
        ]);
        let out = without_member(&p, ACCESSOR, &SA.to_uppercase()).unwrap();
        assert_eq!(out.bindings[0].members, vec!["user:keep@example.com".to_owned()]);
        assert_eq!(out.bindings[1], p.bindings[1]);
        let out = without_member(&out, ACCESSOR, "user:KEEP@example.com").unwrap();
        assert_eq!(out.bindings, vec![p.bindings[1].clone()]);
    }

    #[test]
    fn remove_is_a_no_op_when_absent() {
        let p = policy(vec![Binding::new().set_role("roles/viewer").set_members([SA])]);
        assert_eq!(without_member(&p, ACCESSOR, SA), None);
        assert_eq!(without_member(&policy(vec![]), ACCESSOR, SA), None);
    }
}

//! IAM bookkeeping: additive grants, and revokes of only what is ours.
//!
//! - A binding is recorded as ours when our write added it (the grant changed the policy).
//! - A binding already in place that we need is recorded as ours only when another managed deployment's record
//!   holds it (shared: whoever goes last revokes it). One that nobody's write added (the runbook's, a person's) is
//!   never recorded, so never revoked.
//! - A recorded binding we no longer need is revoked only when no other managed deployment needs it. When one
//!   does and its record already holds it, ours just forgets it (handed over); when its record does not hold it
//!   yet, ours keeps it until it does, so the grant can neither leak nor be revoked under the other's feet.

use litellm_operator_api::AppliedBinding;

use super::action::Action;
use super::model::{Model, Peers};

/// How a needed binding stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Grant {
    /// In place (or taken as in place, by a light pass, from the record).
    InPlace,
    /// To be granted by this action (or recorded).
    Planned(Action),
}

/// Decides one binding this deployment needs on a resource that exists.
pub fn need(binding: &AppliedBinding, model: &Model, peers: &(dyn Peers + Sync)) -> Grant {
    let recorded = model.record.bindings.contains(binding);
    let present = match model.policies.get(&binding.resource) {
        Some(policy) => policy.has(&binding.role, &binding.member),
        // Not read: a light pass reads only what the record does not vouch for.
        None => recorded,
    };
    if !present {
        return Grant::Planned(Action::Grant(binding.clone()));
    }
    if !recorded && peers.records(binding) {
        return Grant::Planned(Action::RecordBinding(binding.clone()));
    }
    Grant::InPlace
}

/// What happens to a recorded binding this deployment no longer needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Release {
    /// Revoke it.
    Revoke(Action),
    /// Another deployment records and needs it: forget it.
    HandOver(Action),
    /// Another deployment needs it but does not record it yet: keep it in our record for now.
    Wait,
}

/// Decides one recorded binding that is not needed any more.
pub fn release(binding: &AppliedBinding, peers: &(dyn Peers + Sync)) -> Release {
    if !peers.needs(binding) {
        Release::Revoke(Action::Revoke(binding.clone()))
    } else if peers.records(binding) {
        Release::HandOver(Action::ForgetBinding(binding.clone()))
    } else {
        Release::Wait
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::plan::model::{PeerSet, PolicyView};

    fn b(member: &str) -> AppliedBinding {
        AppliedBinding {
            resource: "projects/p/secrets/s".into(),
            role: "roles/secretmanager.secretAccessor".into(),
            member: member.into(),
        }
    }

    fn model(present: &[&str], recorded: &[&str]) -> Model {
        let mut m = Model::default();
        m.policies.insert(
            "projects/p/secrets/s".into(),
            PolicyView(
                present
                    .iter()
                    .map(|x| ("roles/secretmanager.secretAccessor".to_owned(), (*x).to_owned()))
                    .collect(),
            ),
        );
        m.record.bindings = recorded.iter().map(|x| b(x)).collect();
        m
    }

    #[test]
    fn needed_bindings() {
        let none = PeerSet::default();
        let peer_records = PeerSet {
            needs: BTreeSet::new(),
            records: [b("serviceAccount:a")].into(),
        };
        let cases: [(&[&str], &[&str], &PeerSet, Grant); 5] = [
            (
                &[],
                &[],
                &none,
                Grant::Planned(Action::Grant(b("serviceAccount:a"))),
            ),
            // Someone removed our grant: put it back.
            (
                &[],
                &["serviceAccount:a"],
                &none,
                Grant::Planned(Action::Grant(b("serviceAccount:a"))),
            ),
            (
                &["serviceAccount:a"],
                &["serviceAccount:a"],
                &none,
                Grant::InPlace,
            ),
            // In place and nobody's write added it: not ours, not recorded.
            (&["serviceAccount:a"], &[], &none, Grant::InPlace),
            // In place, added by a peer: shared.
            (
                &["serviceAccount:a"],
                &[],
                &peer_records,
                Grant::Planned(Action::RecordBinding(b("serviceAccount:a"))),
            ),
        ];
        for (present, recorded, peers, want) in cases {
            assert_eq!(
                need(&b("serviceAccount:a"), &model(present, recorded), peers),
                want,
                "{present:?} {recorded:?}"
            );
        }
    }

    #[test]
    fn members_compare_case_insensitively() {
        let m = model(&["serviceAccount:A@p.iam.gserviceaccount.com"], &[]);
        assert_eq!(
            need(
                &b("serviceAccount:a@p.iam.gserviceaccount.com"),
                &m,
                &PeerSet::default()
            ),
            Grant::InPlace
        );
    }

    #[test]
    fn released_bindings() {
        let x = b("serviceAccount:a");
        assert_eq!(
            release(&x, &PeerSet::default()),
            Release::Revoke(Action::Revoke(x.clone()))
        );
        let needs = PeerSet {
            needs: [x.clone()].into(),
            records: BTreeSet::new(),
        };
        assert_eq!(release(&x, &needs), Release::Wait);
        let both = PeerSet {
            needs: [x.clone()].into(),
            records: [x.clone()].into(),
        };
        assert_eq!(release(&x, &both), Release::HandOver(Action::ForgetBinding(x)));
    }
}

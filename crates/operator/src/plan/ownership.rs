//! The one ownership rule. Every write and every delete the planner emits asks it first.
//!
//! A Google resource (secret or service) is, for one LiteLLMDeployment:
//! - **ours**: it carries `managed-by: litellm-operator` and our owner label;
//! - **unlabelled**: it carries no owner label; writable only when adoption is switched on (and, once adopted,
//!   labelled ours so the rest of its life follows the first rule);
//! - **another deployment's**: it carries another owner label; never written, never deleted, never adopted.
//!
//! Deletion takes only what is ours: an unlabelled resource is never deleted, adopted or not.

use std::collections::BTreeMap;

use litellm_operator_api::names::{ADOPT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL};

/// Whose a resource is, from its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Ours: our owner label and `managed-by`.
    Ours,
    /// No owner label at all.
    Unlabelled,
    /// Another LiteLLMDeployment's (its owner label value).
    Theirs(String),
}

impl Ownership {
    /// Classifies `labels` for the deployment whose owner label value is `owner`.
    pub fn of(labels: &BTreeMap<String, String>, owner: &str) -> Self {
        match labels.get(OWNER_LABEL) {
            Some(o) if o == owner => {
                if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE) {
                    Ownership::Ours
                } else {
                    // Our owner label without `managed-by`: someone edited the labels; adopt to repair them.
                    Ownership::Unlabelled
                }
            }
            Some(other) => Ownership::Theirs(other.clone()),
            None => Ownership::Unlabelled,
        }
    }

    /// What a writer may do with it.
    pub fn write(&self, adopt: bool) -> Write {
        match self {
            Ownership::Ours => Write::Allowed,
            Ownership::Unlabelled if adopt => Write::AdoptFirst,
            Ownership::Unlabelled => Write::Refused(Refusal::Unlabelled),
            Ownership::Theirs(owner) => Write::Refused(Refusal::Theirs(owner.clone())),
        }
    }

    /// Whether a deletion may remove it: only ours, never an unlabelled one, adopted or not.
    pub fn may_delete(&self) -> bool {
        *self == Ownership::Ours
    }
}

/// The answer to "may I write this resource?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Yes.
    Allowed,
    /// Yes, once our labels are on it (adoption).
    AdoptFirst,
    /// No.
    Refused(Refusal),
}

/// Why a write is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No owner label and adoption is off.
    Unlabelled,
    /// Another LiteLLMDeployment owns it.
    Theirs(String),
}

impl Refusal {
    /// What a person should read: the resource, whose it is, and what to do (`rename`: how to pick another name).
    pub fn message(&self, kind: &str, resource: &str, rename: &str) -> String {
        match self {
            Refusal::Unlabelled => format!(
                "{kind} {resource} exists but was not created for this LiteLLMDeployment; {rename}, or annotate the \
                 LiteLLMDeployment with {ADOPT_ANNOTATION}: \"true\" to adopt it"
            ),
            Refusal::Theirs(owner) => format!(
                "{kind} {resource} belongs to another LiteLLMDeployment ({OWNER_LABEL}={owner}); it is never adopted: \
                 {rename}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn classifies_by_owner_label() {
        let cases = [
            (
                labels(&[("managed-by", "litellm-operator"), ("litellm-deployment", "a_x")]),
                Ownership::Ours,
            ),
            (labels(&[("litellm-deployment", "a_x")]), Ownership::Unlabelled),
            (labels(&[("team", "platform")]), Ownership::Unlabelled),
            (
                labels(&[("managed-by", "litellm-operator")]),
                Ownership::Unlabelled,
            ),
            (
                labels(&[("managed-by", "litellm-operator"), ("litellm-deployment", "b_y")]),
                Ownership::Theirs("b_y".into()),
            ),
        ];
        for (l, want) in cases {
            assert_eq!(Ownership::of(&l, "a_x"), want, "{l:?}");
        }
    }

    #[test]
    fn adoption_takes_unlabelled_only_and_deletion_only_ours() {
        let theirs = Ownership::Theirs("b_y".into());
        assert_eq!(Ownership::Ours.write(false), Write::Allowed);
        assert_eq!(Ownership::Unlabelled.write(true), Write::AdoptFirst);
        assert_eq!(
            Ownership::Unlabelled.write(false),
            Write::Refused(Refusal::Unlabelled)
        );
        assert_eq!(theirs.write(true), Write::Refused(Refusal::Theirs("b_y".into())));
        assert!(Ownership::Ours.may_delete());
        assert!(!Ownership::Unlabelled.may_delete());
        assert!(!theirs.may_delete());
    }

    #[test]
    fn the_refusal_for_another_deployment_never_suggests_adoption() {
        let text = Refusal::Theirs("b_y".into()).message("secret", "projects/p/secrets/s", "set secretId");
        assert!(!text.contains("adopt it"), "{text}");
        assert!(text.contains("b_y"));
    }
}

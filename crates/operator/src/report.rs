//! How actions read to people: one line per action performed (Events, the CLI's stderr), and the plan as
//! `litellm-operator plan` prints it. Names resources, never values.

use std::fmt::Write as _;

use crate::plan::{Action, Effect, NewValue, ServiceChange};

/// One line for an action performed: capitalised, past tense, naming the resource.
pub fn done(action: &Action, effect: &Effect) -> String {
    match (action, effect) {
        (Action::CreateSecret { secret, .. }, _) => format!("Created secret {secret}"),
        (Action::AdoptSecret { secret, .. }, _) => {
            format!("Adopted secret {secret}: added the operator's labels")
        }
        (
            Action::AddVersion {
                secret,
                env,
                value,
                expected,
            },
            effect,
        ) => {
            // The number Google gave it (the one expected, for a predicted effect).
            let n = match effect {
                Effect::VersionAdded(n) => n,
                _ => expected,
            };
            match value {
                NewValue::Source(_) => format!("Added version {n} of {secret} ({env})"),
                NewValue::Generate(g) => {
                    format!(
                        "Generated version {n} of {secret} ({env}, {})",
                        crate::plan::action::generated(g)
                    )
                }
            }
        }
        (Action::Grant(b), _) => format!("Granted {} to {} on {}", b.role, b.member, b.resource),
        (Action::Revoke(b), _) => format!("Removed {} from {} on {}", b.role, b.member, b.resource),
        (Action::RecordBinding(b), _) => format!(
            "Recorded {} of {} on {} as shared: another LiteLLMDeployment granted it and this one needs it",
            b.role, b.member, b.resource
        ),
        (Action::ForgetBinding(b), _) => format!(
            "Handed over {} of {} on {} to another LiteLLMDeployment that still needs it",
            b.role, b.member, b.resource
        ),
        (Action::CreateService { service, .. }, _) => format!("Created Cloud Run service {service}"),
        (Action::UpdateService { service, change, .. }, _) => match change {
            ServiceChange::Spec(paths) => format!(
                "Updated {service}{}: {}",
                change.revision_note(),
                paths.join(", ")
            ),
            ServiceChange::Drift(paths) => format!(
                "Put back fields changed outside the operator on {service}{}: {}",
                change.revision_note(),
                paths.join(", ")
            ),
            ServiceChange::IamRetry(n) => format!(
                "Rolled a new revision of {service}: the last one could not read a secret while the new accessor \
                 grant propagates (attempt {n})"
            ),
        },
        (Action::DisableVersion { secret, number, keep }, _) => {
            format!("Disabled version {number} of {secret} (keeping {keep} enabled)")
        }
        (Action::DeleteService { service }, _) => format!("Deleted Cloud Run service {service}"),
        (Action::DeleteSecret { secret, .. }, _) => format!("Deleted secret {secret}"),
    }
}

/// The plan's actions as lines: `+` creates or adds, `~` changes, `-` removes or disables.
pub fn lines(actions: &[Action]) -> String {
    let mut out = String::new();
    for action in actions {
        let mark = match action {
            Action::CreateSecret { .. }
            | Action::AddVersion { .. }
            | Action::Grant(_)
            | Action::CreateService { .. }
            | Action::RecordBinding(_) => '+',
            Action::AdoptSecret { .. } | Action::UpdateService { .. } => '~',
            Action::Revoke(_)
            | Action::ForgetBinding(_)
            | Action::DisableVersion { .. }
            | Action::DeleteService { .. }
            | Action::DeleteSecret { .. } => '-',
        };
        let _ = writeln!(out, "  {mark} {action}");
    }
    out
}

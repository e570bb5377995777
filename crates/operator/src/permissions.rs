//! What a refused Google call needs, as a person should read it: the missing permission, a role that holds it, and
//! the `gcloud` command that grants that role to the operator's Google service account.
//!
//! Every `PermissionDenied` condition message, Warning Event (apply and cleanup) and CLI error goes through
//! [`explain`], so each names the command that fixes it. The role is chosen by the permission's service
//! (`secretmanager.*`, `run.*`, `iam.serviceAccounts.actAs`), never by the step that failed: deleting the service
//! during cleanup needs Cloud Run's role, deleting a secret Secret Manager's.

use litellm_operator_gcp::Error as GcpError;

use crate::error::{Error, ErrorClass};
use crate::plan::ActionKind;

/// Stands for the operator's Google service account in commands: with Workload Identity the operator does not
/// know its own email (docs/security.md names it `litellm-operator@PROJECT_ID.iam.gserviceaccount.com`).
pub const OPERATOR_SA: &str = "OPERATOR_SA";

/// Longest text a Kubernetes Event note may hold (events.k8s.io/v1 refuses longer ones). Condition messages are
/// cut at the same length, so the command at the end of a hint must fit in it.
pub const NOTE_LIMIT: usize = 1024;

/// The length [`explain`] keeps within: room left for the `Ready` condition's `ServiceReady: ` prefix.
const EXPLAIN_LIMIT: usize = NOTE_LIMIT - 24;

/// One role to grant, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The missing permission, e.g. `run.services.delete`.
    pub permission: String,
    /// A predefined role that holds it, e.g. `roles/run.admin`.
    pub role: &'static str,
    /// The `gcloud` command that grants `role` to [`OPERATOR_SA`].
    pub command: String,
}

/// The predefined role that holds `permission`, for the services the operator calls. The operator's custom role
/// (docs/security.md) holds every `secretmanager.*` and `run.*` permission it uses, and nothing more.
pub fn role_for(permission: &str) -> Option<&'static str> {
    match permission.split('.').next()? {
        "secretmanager" => Some("roles/secretmanager.admin"),
        "run" => Some("roles/run.admin"),
        "iam" if permission == "iam.serviceAccounts.actAs" => Some("roles/iam.serviceAccountUser"),
        _ => None,
    }
}

/// What grants `permission` on `project`. `iam.serviceAccounts.actAs` is granted on the runtime service account
/// itself, never on the project.
pub fn grant(permission: &str, project: &str, runtime_sa: &str) -> Option<Grant> {
    let role = role_for(permission)?;
    let command = if role == "roles/iam.serviceAccountUser" {
        format!(
            "gcloud iam service-accounts add-iam-policy-binding {runtime_sa} \
             --member=serviceAccount:{OPERATOR_SA} --role={role}"
        )
    } else {
        format!(
            "gcloud projects add-iam-policy-binding {project} --member=serviceAccount:{OPERATOR_SA} --role={role}"
        )
    };
    Some(Grant {
        permission: permission.to_owned(),
        role,
        command,
    })
}

/// The permission a failed call of this kind needed when Google does not name one (`None` for record-only kinds,
/// which make no call).
fn needed(kind: ActionKind) -> Option<&'static str> {
    kind.permission()
}

/// Whether a failure of this kind without a named permission may also be the missing `actAs` on the runtime
/// account (Cloud Run checks it on every create and update of a service that runs as another account).
fn may_lack_act_as(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::CreateService
            | ActionKind::UpdateService
            | ActionKind::CorrectDrift
            | ActionKind::RetryRevision
    )
}

/// The service a resource name belongs to, for a read that failed without Google naming the permission.
fn read_permission(resource: &str) -> &'static str {
    if resource.contains("/services/") {
        "run.services.get"
    } else {
        "secretmanager.secrets.get"
    }
}

/// The project of a full resource name (`projects/P/...`), or `PROJECT`.
fn project_of(resource: &str) -> &str {
    match resource.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", p, ..] if !p.is_empty() => p,
        _ => "PROJECT",
    }
}

/// The grants that fix a `PermissionDenied` error, most likely first. Empty for other errors, for a disabled API
/// (its message carries the enable command) and for refused credentials.
pub fn grants(error: &Error, runtime_sa: &str) -> Vec<Grant> {
    let Some(GcpError::PermissionDenied {
        resource, permission, ..
    }) = error.google()
    else {
        return Vec::new();
    };
    let project = project_of(resource);
    let named = permission.as_deref().filter(|p| role_for(p).is_some());
    let mut out: Vec<Grant> = Vec::new();
    match (error, named) {
        (_, Some(p)) => out.extend(grant(p, project, runtime_sa)),
        (Error::Act { kind, .. }, None) => {
            out.extend(needed(*kind).and_then(|p| grant(p, project, runtime_sa)));
            if may_lack_act_as(*kind) {
                out.extend(grant("iam.serviceAccounts.actAs", project, runtime_sa));
            }
        }
        (_, None) => out.extend(grant(read_permission(resource), project, runtime_sa)),
    }
    out
}

/// The text after the error: what to grant and the command that grants it.
pub fn hint(error: &Error, runtime_sa: &str) -> Option<String> {
    if error.class() != ErrorClass::PermissionDenied {
        return None;
    }
    match error.google() {
        Some(GcpError::ServiceDisabled { .. }) => return None,
        Some(GcpError::Unauthenticated { message, .. }) => {
            if let Some(account) = litellm_operator_gcp::refused_impersonation(message) {
                return Some(format!(
                    "the tenancy policy has the operator act as {account} for this namespace; grant the operator's \
                     Google service account (OPERATOR_SA) iam.serviceAccounts.getAccessToken on it: gcloud iam \
                     service-accounts add-iam-policy-binding {account} --member=serviceAccount:{OPERATOR_SA} \
                     --role=roles/iam.serviceAccountTokenCreator"
                ));
            }
            return Some(
                "Google refused the operator's credentials: check the Workload Identity setup in docs/security.md \
                 (or GOOGLE_APPLICATION_CREDENTIALS for the CLI)"
                    .to_owned(),
            );
        }
        _ => {}
    }
    let grants = grants(error, runtime_sa);
    if grants.is_empty() {
        // A permission of a service the operator does not call directly: name it, point at the role list.
        return Some(format!(
            "grant {OPERATOR_SA} the permission Google names above (docs/security.md lists every permission the \
             operator uses)"
        ));
    }
    let parts: Vec<String> = grants
        .iter()
        .map(|g| {
            if g.role == "roles/iam.serviceAccountUser" {
                format!(
                    "{} on {runtime_sa} (role {}): {}",
                    g.permission, g.role, g.command
                )
            } else {
                format!(
                    "{} (role {}, or the narrower custom role in docs/security.md): {}",
                    g.permission, g.role, g.command
                )
            }
        })
        .collect();
    let verb = if grants.len() > 1 {
        "grant the operator's Google service account (OPERATOR_SA) what is missing, most likely"
    } else {
        "grant the operator's Google service account (OPERATOR_SA)"
    };
    Some(format!("{verb} {}", parts.join("; or ")))
}

/// The error as a condition message, Event note or CLI line: for a missing permission, followed by what to grant
/// and the command that grants it. A little under [`NOTE_LIMIT`] bytes; when too long, Google's message is cut,
/// never the command.
pub fn explain(error: &Error, runtime_sa: &str) -> String {
    explain_then(error, runtime_sa, "")
}

/// [`explain`] followed by `after` (kept whole too).
pub fn explain_then(error: &Error, runtime_sa: &str, after: &str) -> String {
    let text = error.to_string();
    let tail = match hint(error, runtime_sa) {
        Some(hint) => format!("; {hint}{after}"),
        None => after.to_owned(),
    };
    if text.len() + tail.len() <= EXPLAIN_LIMIT {
        return format!("{text}{tail}");
    }
    let room = EXPLAIN_LIMIT.saturating_sub(tail.len() + 3);
    let mut cut = room.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...{tail}", &text[..cut])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    const RUNTIME: &str = "litellm-run@p.iam.gserviceaccount.com";

    fn denied(resource: &str, permission: Option<&str>, message: &str) -> GcpError {
        GcpError::PermissionDenied {
            resource: resource.to_owned(),
            permission: permission.map(str::to_owned),
            message: message.to_owned(),
        }
    }

    fn act(kind: ActionKind, source: GcpError) -> Error {
        Error::Act {
            kind,
            action: format!("{kind:?}"),
            source,
        }
    }

    /// The Google service an action kind calls, stated independently of the code under test. A new kind fails to
    /// compile here until it is classified (and added to `ActionKind::ALL`).
    fn service_of(kind: ActionKind) -> Option<&'static str> {
        match kind {
            ActionKind::CreateSecret
            | ActionKind::AdoptSecret
            | ActionKind::AddVersion
            | ActionKind::GenerateVersion
            | ActionKind::Grant
            | ActionKind::Revoke
            | ActionKind::DisableVersion
            | ActionKind::DeleteSecret => Some("secretmanager"),
            ActionKind::GrantInvoker
            | ActionKind::RevokeInvoker
            | ActionKind::CreateService
            | ActionKind::UpdateService
            | ActionKind::CorrectDrift
            | ActionKind::RetryRevision
            | ActionKind::DeleteService => Some("run"),
            ActionKind::RecordBinding | ActionKind::ForgetBinding => None,
        }
    }

    fn resource_of(service: &str) -> &'static str {
        if service == "run" {
            "projects/p/locations/us-central1/services/s"
        } else {
            "projects/p/secrets/x"
        }
    }

    #[test]
    fn every_action_kind_asks_for_a_permission_and_role_of_its_own_service() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in ActionKind::ALL {
            assert!(seen.insert(kind), "{kind:?} twice in ActionKind::ALL");
            let Some(service) = service_of(kind) else {
                assert_eq!(kind.permission(), None, "{kind:?} makes no Google call");
                continue;
            };
            let permission = kind.permission().unwrap();
            assert!(
                permission.starts_with(&format!("{service}.")),
                "{kind:?} needs {permission}, not a {service} permission"
            );
            // Google did not name the permission: the hint comes from the kind.
            let error = act(
                kind,
                denied(resource_of(service), None, "The caller does not have permission"),
            );
            let grants = grants(&error, RUNTIME);
            let first = grants.first().unwrap_or_else(|| panic!("{kind:?}: no grant"));
            assert_eq!(first.permission, permission, "{kind:?}");
            assert_eq!(
                first.role,
                format!("roles/{service}.admin"),
                "{kind:?}: {first:?}"
            );
            assert_eq!(
                first.command,
                format!(
                    "gcloud projects add-iam-policy-binding p --member=serviceAccount:OPERATOR_SA --role=roles/{service}.admin"
                ),
                "{kind:?}"
            );
            let text = explain(&error, RUNTIME);
            assert!(text.contains(&first.command), "{kind:?}: {text}");
            let other = if service == "run" {
                "secretmanager"
            } else {
                "roles/run."
            };
            assert!(
                !text.contains(other),
                "{kind:?}: the hint names another service's role: {text}"
            );
            assert_eq!(error.reason(), "PermissionDenied");
        }
        assert_eq!(seen.len(), 17, "every ActionKind is in ActionKind::ALL");
    }

    #[test]
    fn a_refused_impersonation_says_which_account_and_how_to_grant_it() {
        let error = Error::Observe {
            resource: "projects/p/secrets/s".into(),
            source: GcpError::Unauthenticated {
                resource: "projects/p/secrets/s".into(),
                message: "cannot act as tenant@p.iam.gserviceaccount.com: Permission \
                          'iam.serviceAccounts.getAccessToken' denied"
                    .into(),
            },
        };
        let text = explain(&error, RUNTIME);
        assert!(
            text.ends_with(
                "gcloud iam service-accounts add-iam-policy-binding tenant@p.iam.gserviceaccount.com \
                 --member=serviceAccount:OPERATOR_SA --role=roles/iam.serviceAccountTokenCreator"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_permission_each_write_needs() {
        for (kind, permission) in [
            (ActionKind::DeleteService, "run.services.delete"),
            (ActionKind::DeleteSecret, "secretmanager.secrets.delete"),
            (ActionKind::Grant, "secretmanager.secrets.setIamPolicy"),
            (ActionKind::Revoke, "secretmanager.secrets.setIamPolicy"),
            (ActionKind::GrantInvoker, "run.services.setIamPolicy"),
            (ActionKind::RevokeInvoker, "run.services.setIamPolicy"),
            (ActionKind::AddVersion, "secretmanager.versions.add"),
            (ActionKind::DisableVersion, "secretmanager.versions.disable"),
            (ActionKind::CreateService, "run.services.create"),
        ] {
            assert_eq!(kind.permission(), Some(permission), "{kind:?}");
        }
    }

    /// The teardown's actions (service, bindings, secrets) each point at their own service's role.
    #[test]
    fn cleanup_failures_name_the_role_of_what_was_deleted() {
        let error = act(
            ActionKind::DeleteService,
            denied(
                "projects/p/locations/r/services/s",
                Some("run.services.delete"),
                "Permission 'run.services.delete' denied on resource 'projects/p/locations/r/services/s'.",
            ),
        );
        let text = explain(&error, RUNTIME);
        assert!(
            text.contains(
                "gcloud projects add-iam-policy-binding p --member=serviceAccount:OPERATOR_SA --role=roles/run.admin"
            ),
            "{text}"
        );
        assert!(!text.contains("secretmanager"), "{text}");
        assert!(!text.contains("serviceAccountUser"), "{text}");

        let error = act(
            ActionKind::DeleteSecret,
            denied("projects/p/secrets/x", None, "Permission denied on resource"),
        );
        let text = explain(&error, RUNTIME);
        assert!(
            text.contains("secretmanager.secrets.delete (role roles/secretmanager.admin")
                && text.contains("--role=roles/secretmanager.admin"),
            "{text}"
        );
        assert!(!text.contains("roles/run."), "{text}");

        let error = act(
            ActionKind::RevokeInvoker,
            denied("projects/p/locations/r/services/s", None, "denied"),
        );
        assert!(
            explain(&error, RUNTIME).contains("run.services.setIamPolicy (role roles/run.admin"),
            "{}",
            explain(&error, RUNTIME)
        );
    }

    /// Google's named permission wins over the kind's guess: `actAs` on a service update is granted on the
    /// runtime account, not on the project.
    #[test]
    fn a_permission_google_names_decides_the_role() {
        let error = act(
            ActionKind::UpdateService,
            denied(
                "projects/p/locations/r/services/s",
                Some("iam.serviceAccounts.actAs"),
                "Permission 'iam.serviceAccounts.actAs' denied on service account",
            ),
        );
        let grants = grants(&error, RUNTIME);
        assert_eq!(grants.len(), 1, "{grants:?}");
        assert_eq!(
            grants[0].command,
            format!(
                "gcloud iam service-accounts add-iam-policy-binding {RUNTIME} \
                 --member=serviceAccount:OPERATOR_SA --role=roles/iam.serviceAccountUser"
            )
        );
        // Without a named permission, a service write may lack either: both commands, the Cloud Run one first.
        let error = act(
            ActionKind::CreateService,
            denied("projects/p/locations/r/services/s", None, "denied"),
        );
        let roles: Vec<&str> = grants_roles(&error);
        assert_eq!(roles, ["roles/run.admin", "roles/iam.serviceAccountUser"]);
    }

    fn grants_roles(error: &Error) -> Vec<&'static str> {
        grants(error, RUNTIME).into_iter().map(|g| g.role).collect()
    }

    /// Reads (observe) fail before any action: the resource says which service, Google usually names the
    /// permission.
    #[test]
    fn failed_reads_name_a_grant_too() {
        let read = |resource: &str, permission: Option<&str>| Error::Observe {
            resource: resource.to_owned(),
            source: denied(resource, permission, "denied"),
        };
        let text = explain(
            &read("projects/p/secrets/x", Some("secretmanager.versions.access")),
            RUNTIME,
        );
        assert!(
            text.contains("secretmanager.versions.access (role roles/secretmanager.admin")
                && text.contains("--role=roles/secretmanager.admin"),
            "{text}"
        );
        let text = explain(&read("projects/p/locations/r/services/s", None), RUNTIME);
        assert!(
            text.contains("run.services.get (role roles/run.admin")
                && text.contains("--role=roles/run.admin"),
            "{text}"
        );
    }

    #[test]
    fn other_errors_are_left_as_they_are_and_long_messages_keep_the_command() {
        let disabled = Error::Observe {
            resource: "projects/p/secrets/x".into(),
            source: GcpError::ServiceDisabled {
                resource: "projects/p/secrets/x".into(),
                service: "secretmanager.googleapis.com".into(),
                project: "p".into(),
            },
        };
        assert_eq!(explain(&disabled, RUNTIME), disabled.to_string());
        let conflict = Error::NotOwned {
            resource: "projects/p/secrets/x".into(),
        };
        assert_eq!(explain(&conflict, RUNTIME), conflict.to_string());

        let long = act(
            ActionKind::AddVersion,
            denied("projects/p/secrets/x", None, &"x".repeat(2000)),
        );
        let text = explain(&long, RUNTIME);
        assert!(
            text.len() <= NOTE_LIMIT - "ServiceReady: ".len(),
            "{}",
            text.len()
        );
        assert!(
            text.ends_with(
                "gcloud projects add-iam-policy-binding p --member=serviceAccount:OPERATOR_SA \
                 --role=roles/secretmanager.admin"
            ),
            "{text}"
        );
    }
}

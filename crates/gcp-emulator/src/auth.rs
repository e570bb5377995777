//! Who calls, and what they may do: bearer tokens map to principals, and a call's permission is checked against
//! the project's IAM policy and the resource's own, with Google's predefined roles and the project's custom roles.
//!
//! Checks run only when [`crate::Config::enforce_auth`] is on. Tokens resolve either way, so the request log
//! names the caller of every call that carried a known token.
//!
//! A binding with an IAM condition grants only where its condition holds for the resource and the time of the call
//! ([`crate::condition`]: resource name, type and service, request time). Leniency, on purpose: there is no folder
//! or organization above a project.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::condition::Facts;
use crate::error::{ApiError, ApiResult, Code};
use crate::model::Policy;
use crate::resourcemanager;
use crate::roles::CustomRoles;
pub use crate::wire::Caller;
use crate::wire::{self, Request};

/// What a custom role grants (`projects/P/roles/ID`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomRole {
    pub title: String,
    pub description: String,
    pub included_permissions: Vec<String>,
    pub stage: String,
    pub deleted: bool,
    pub etag: String,
}

/// A minted access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// An IAM member: `serviceAccount:EMAIL` or `user:EMAIL`.
    pub principal: String,
    pub expire_time: Option<DateTime<Utc>>,
}

/// The access tokens the emulator minted (admin API, `generateAccessToken`), by token; kept in [`crate::iam::Store`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tokens(BTreeMap<String, Token>);

/// What a permission check reads: the project's IAM policy (by project number, Resource Manager) and the custom
/// roles bindings may name (IAM).
#[derive(Clone, Copy)]
pub struct Policies<'a> {
    pub resourcemanager: &'a resourcemanager::Store,
    pub custom_roles: &'a CustomRoles,
}

/// How a predefined role grants permissions.
enum Grants {
    All,
    Exactly(&'static [&'static str]),
    Prefix(&'static str),
    PrefixExcept(&'static str, &'static [&'static str]),
    /// Reads only: permissions of the service ending in `.get`, `.list` or `.getIamPolicy`.
    ReadsOf(&'static str),
}

/// The predefined roles the emulator knows, with the permissions Google documents for them (restricted to the
/// APIs emulated here). Unknown `roles/...` grant nothing.
fn predefined(role: &str) -> Option<Grants> {
    Some(match role {
        "roles/owner" => Grants::All,
        "roles/editor" => Grants::PrefixExcept(
            "",
            &[
                "secretmanager.secrets.setIamPolicy",
                "run.services.setIamPolicy",
                "iam.serviceAccounts.setIamPolicy",
                "iam.serviceAccounts.getAccessToken",
                "resourcemanager.projects.setIamPolicy",
                "secretmanager.versions.access",
            ],
        ),
        "roles/viewer" => Grants::ReadsOf(""),
        "roles/secretmanager.admin" => Grants::Prefix("secretmanager."),
        "roles/secretmanager.secretAccessor" => Grants::Exactly(&["secretmanager.versions.access"]),
        "roles/secretmanager.secretVersionAdder" => Grants::Exactly(&["secretmanager.versions.add"]),
        "roles/secretmanager.secretVersionManager" => Grants::Exactly(&[
            "secretmanager.secrets.get",
            "secretmanager.versions.add",
            "secretmanager.versions.enable",
            "secretmanager.versions.disable",
            "secretmanager.versions.destroy",
            "secretmanager.versions.get",
            "secretmanager.versions.list",
        ]),
        "roles/secretmanager.viewer" => Grants::Exactly(&[
            "secretmanager.secrets.get",
            "secretmanager.secrets.list",
            "secretmanager.versions.get",
            "secretmanager.versions.list",
        ]),
        "roles/run.admin" => Grants::Prefix("run."),
        "roles/run.developer" => Grants::PrefixExcept("run.", &["run.services.setIamPolicy"]),
        "roles/run.viewer" => Grants::ReadsOf("run."),
        "roles/run.invoker" => Grants::Exactly(&["run.routes.invoke"]),
        "roles/iam.serviceAccountUser" => Grants::Exactly(&[
            "iam.serviceAccounts.actAs",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
        ]),
        "roles/iam.serviceAccountTokenCreator" => Grants::Exactly(&[
            "iam.serviceAccounts.getAccessToken",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
        ]),
        "roles/iam.serviceAccountAdmin" => Grants::PrefixExcept(
            "iam.serviceAccounts.",
            &["iam.serviceAccounts.actAs", "iam.serviceAccounts.getAccessToken"],
        ),
        "roles/iam.roleAdmin" => Grants::Prefix("iam.roles."),
        "roles/resourcemanager.projectIamAdmin" => Grants::Exactly(&[
            "resourcemanager.projects.get",
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.setIamPolicy",
        ]),
        "roles/serviceusage.serviceUsageAdmin" => Grants::Prefix("serviceusage."),
        _ => return None,
    })
}

impl Grants {
    fn includes(&self, permission: &str) -> bool {
        match self {
            Grants::All => true,
            Grants::Exactly(list) => list.contains(&permission),
            Grants::Prefix(p) => permission.starts_with(p),
            Grants::PrefixExcept(p, except) => permission.starts_with(p) && !except.contains(&permission),
            Grants::ReadsOf(p) => {
                permission.starts_with(p)
                    && [".get", ".list", ".getIamPolicy"]
                        .iter()
                        .any(|s| permission.ends_with(s))
            }
        }
    }
}

/// Whether `role` (predefined or one of `custom`) includes `permission`.
pub fn role_includes(role: &str, permission: &str, custom: &BTreeMap<String, CustomRole>) -> bool {
    if let Some(grants) = predefined(role) {
        return grants.includes(permission);
    }
    custom
        .get(role)
        .is_some_and(|r| !r.deleted && r.included_permissions.iter().any(|p| p == permission))
}

/// Whether a binding applies to the resource `facts` describe: it has no condition, or its condition holds.
fn condition_holds(binding: &Value, facts: &Facts<'_>) -> bool {
    match binding.get("condition") {
        None | Some(Value::Null) => true,
        Some(c) => c
            .get("expression")
            .and_then(Value::as_str)
            .is_some_and(|e| crate::condition::holds(e, facts)),
    }
}

/// Whether a binding's member list names `principal` (or everyone).
fn names(binding: &Value, principal: &str) -> bool {
    binding
        .get("members")
        .and_then(Value::as_array)
        .is_some_and(|ms| {
            ms.iter()
                .filter_map(Value::as_str)
                .any(|m| m == principal || m == "allUsers" || m == "allAuthenticatedUsers")
        })
}

/// Whether any of `policies` grants `permission` to `principal` on the resource `facts` describe. A conditional
/// binding grants only where its condition holds.
pub fn allowed(
    policies: &[&Policy],
    principal: &str,
    permission: &str,
    custom: &BTreeMap<String, CustomRole>,
    facts: &Facts<'_>,
) -> bool {
    policies.iter().flat_map(|p| p.bindings.iter()).any(|b| {
        condition_holds(b, facts)
            && names(b, principal)
            && b.get("role")
                .and_then(Value::as_str)
                .is_some_and(|r| role_includes(r, permission, custom))
    })
}

/// The permission Google checks for each call (by the emulator's RPC name), `None` for calls anyone may make
/// (`testIamPermissions` answers what the caller holds; long-running Service Usage operations).
pub fn permission_of(rpc: &str) -> Option<&'static str> {
    Some(match rpc {
        "SecretManagerService.ListSecrets" => "secretmanager.secrets.list",
        "SecretManagerService.CreateSecret" => "secretmanager.secrets.create",
        "SecretManagerService.GetSecret" => "secretmanager.secrets.get",
        "SecretManagerService.UpdateSecret" => "secretmanager.secrets.update",
        "SecretManagerService.DeleteSecret" => "secretmanager.secrets.delete",
        "SecretManagerService.AddSecretVersion" => "secretmanager.versions.add",
        "SecretManagerService.GetIamPolicy" => "secretmanager.secrets.getIamPolicy",
        "SecretManagerService.SetIamPolicy" => "secretmanager.secrets.setIamPolicy",
        "SecretManagerService.ListSecretVersions" => "secretmanager.versions.list",
        "SecretManagerService.GetSecretVersion" => "secretmanager.versions.get",
        "SecretManagerService.AccessSecretVersion" => "secretmanager.versions.access",
        "SecretManagerService.EnableSecretVersion" => "secretmanager.versions.enable",
        "SecretManagerService.DisableSecretVersion" => "secretmanager.versions.disable",
        "SecretManagerService.DestroySecretVersion" => "secretmanager.versions.destroy",
        "IAM.ListServiceAccounts" => "iam.serviceAccounts.list",
        "IAM.CreateServiceAccount" => "iam.serviceAccounts.create",
        "IAM.GetServiceAccount" => "iam.serviceAccounts.get",
        "IAM.DeleteServiceAccount" => "iam.serviceAccounts.delete",
        "IAM.GetIamPolicy" => "iam.serviceAccounts.getIamPolicy",
        "IAM.SetIamPolicy" => "iam.serviceAccounts.setIamPolicy",
        "IAMCredentials.GenerateAccessToken" => "iam.serviceAccounts.getAccessToken",
        "IAM.ListRoles" => "iam.roles.list",
        "IAM.CreateRole" => "iam.roles.create",
        "IAM.GetRole" => "iam.roles.get",
        "IAM.UpdateRole" => "iam.roles.update",
        "IAM.DeleteRole" => "iam.roles.delete",
        "Projects.GetProject" => "resourcemanager.projects.get",
        "Projects.GetIamPolicy" => "resourcemanager.projects.getIamPolicy",
        "Projects.SetIamPolicy" => "resourcemanager.projects.setIamPolicy",
        "Services.ListServices" | "KnativeServices.ListServices" => "run.services.list",
        "Services.CreateService" | "KnativeServices.CreateService" => "run.services.create",
        "Services.GetService" | "KnativeServices.GetService" => "run.services.get",
        "Services.UpdateService" | "KnativeServices.ReplaceService" => "run.services.update",
        "Services.DeleteService" | "KnativeServices.DeleteService" => "run.services.delete",
        "Services.GetIamPolicy" => "run.services.getIamPolicy",
        "Services.SetIamPolicy" => "run.services.setIamPolicy",
        "Revisions.ListRevisions" | "KnativeRevisions.ListRevisions" => "run.revisions.list",
        "Revisions.GetRevision" | "KnativeRevisions.GetRevision" => "run.revisions.get",
        "Revisions.DeleteRevision" => "run.revisions.delete",
        "Operations.ListOperations" => "run.operations.list",
        "Operations.GetOperation" | "Operations.WaitOperation" => "run.operations.get",
        "Operations.DeleteOperation" => "run.operations.delete",
        "ServiceUsage.GetService" => "serviceusage.services.get",
        "ServiceUsage.ListServices" => "serviceusage.services.list",
        "ServiceUsage.EnableService" | "ServiceUsage.BatchEnableServices" => "serviceusage.services.enable",
        _ => return None,
    })
}

/// Every permission the emulator knows: those its calls check, and those its predefined roles list.
pub const PERMISSIONS: &[&str] = &[
    "iam.roles.create",
    "iam.roles.delete",
    "iam.roles.get",
    "iam.roles.list",
    "iam.roles.update",
    "iam.serviceAccounts.actAs",
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.getIamPolicy",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.setIamPolicy",
    "resourcemanager.projects.get",
    "resourcemanager.projects.getIamPolicy",
    "resourcemanager.projects.setIamPolicy",
    "run.operations.delete",
    "run.operations.get",
    "run.operations.list",
    "run.revisions.delete",
    "run.revisions.get",
    "run.revisions.list",
    "run.routes.invoke",
    "run.services.create",
    "run.services.delete",
    "run.services.get",
    "run.services.getIamPolicy",
    "run.services.list",
    "run.services.setIamPolicy",
    "run.services.update",
    "secretmanager.secrets.create",
    "secretmanager.secrets.delete",
    "secretmanager.secrets.get",
    "secretmanager.secrets.getIamPolicy",
    "secretmanager.secrets.list",
    "secretmanager.secrets.setIamPolicy",
    "secretmanager.secrets.update",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
    "secretmanager.versions.destroy",
    "secretmanager.versions.disable",
    "secretmanager.versions.enable",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
    "serviceusage.services.enable",
    "serviceusage.services.get",
    "serviceusage.services.list",
];

/// IAM `permissions.queryTestablePermissions`: the catalogue gcloud checks a custom role's permissions against
/// (every known permission is `SUPPORTED` in custom roles), in one page.
pub fn testable_permissions(req: &Request) -> ApiResult<Value> {
    let body = req.json()?;
    if wire::str_field(&body, "fullResourceName").is_none_or(str::is_empty) {
        return Err(ApiError::field(
            "full_resource_name",
            "full_resource_name must be set.",
        ));
    }
    let permissions: Vec<Value> = PERMISSIONS
        .iter()
        .map(|p| json!({"name": p, "title": p, "stage": "GA", "customRolesSupportLevel": "SUPPORTED"}))
        .collect();
    Ok(json!({ "permissions": permissions }))
}

/// Google's answer to a call without the permission.
pub fn denied(permission: &str, resource: &str) -> ApiError {
    ApiError::new(
        Code::PermissionDenied,
        format!("Permission '{permission}' denied on resource '{resource}' (or it may not exist)."),
    )
    .with_detail(error_info(permission, resource))
}

/// Cloud Run's answer when the deployer may not act as the revision's service account.
pub fn act_as_denied(account: &str) -> ApiError {
    ApiError::new(
        Code::PermissionDenied,
        format!("Permission 'iam.serviceaccounts.actAs' denied on service account {account} (or it may not exist)."),
    )
    .with_detail(error_info(
        "iam.serviceAccounts.actAs",
        &format!("projects/-/serviceAccounts/{account}"),
    ))
}

fn error_info(permission: &str, resource: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "IAM_PERMISSION_DENIED",
        "domain": "iam.googleapis.com",
        "metadata": {"permission": permission, "resource": resource},
    })
}

/// The 401 for a call without a token.
pub fn missing_credentials() -> ApiError {
    ApiError::new(
        Code::Unauthenticated,
        "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    )
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "CREDENTIALS_MISSING",
        "domain": "googleapis.com",
    }))
}

/// The 401 for a token the emulator did not mint, or one that expired.
pub fn invalid_credentials() -> ApiError {
    ApiError::new(
        Code::Unauthenticated,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    )
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "ACCESS_TOKEN_EXPIRED",
        "domain": "googleapis.com",
    }))
}

/// A well-formed principal a token can be minted for.
pub fn valid_principal(principal: &str) -> bool {
    let email = principal
        .strip_prefix("serviceAccount:")
        .or_else(|| principal.strip_prefix("user:"));
    email.is_some_and(|e| e.contains('@') && !e.starts_with('@') && !e.ends_with('@'))
}

impl Tokens {
    /// Mints a token for `principal`, valid until `expire_time` (forever when `None`).
    pub fn mint_token(
        &mut self,
        principal: &str,
        expire_time: Option<DateTime<Utc>>,
        counter: &mut u64,
    ) -> ApiResult<String> {
        if !valid_principal(principal) {
            return Err(ApiError::invalid(format!(
                "Invalid principal: {principal}. Expected serviceAccount:EMAIL or user:EMAIL."
            )));
        }
        *counter += 1;
        let token = format!("ya29.emu-{:016x}{:08x}", rand::random::<u64>(), *counter);
        self.0.insert(
            token.clone(),
            Token {
                principal: principal.to_string(),
                expire_time,
            },
        );
        Ok(token)
    }

    /// Who sent a request with `authorization` (the header's value, if any).
    pub fn caller(&self, authorization: Option<&str>, now: DateTime<Utc>) -> Caller {
        let Some(header) = authorization else {
            return Caller::Anonymous;
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header)
            .trim();
        match self.principal_of(token, now) {
            Some(p) => Caller::Principal(p.to_string()),
            None => Caller::Unknown,
        }
    }

    /// The principal a bearer token stands for, if it is known and not expired.
    pub fn principal_of(&self, token: &str, now: DateTime<Utc>) -> Option<&str> {
        self.0
            .get(token)
            .filter(|t| t.expire_time.is_none_or(|at| at > now))
            .map(|t| t.principal.as_str())
    }

    /// Forgets every token minted for `principal` (a deleted service account's).
    pub fn revoke(&mut self, principal: &str) {
        self.0.retain(|_, t| t.principal != principal);
    }
}

impl Policies<'_> {
    /// Whether `principal` holds `permission` on the resource `facts` describe, through the project's policy or
    /// `resource_policy`.
    pub fn grant(
        &self,
        principal: &str,
        permission: &str,
        project: &str,
        resource_policy: Option<&Policy>,
        facts: &Facts<'_>,
    ) -> bool {
        let project_policy = self.resourcemanager.project_policy(project);
        let mut policies = vec![&project_policy];
        policies.extend(resource_policy);
        allowed(
            &policies,
            principal,
            permission,
            self.custom_roles.by_name(),
            facts,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn policy(bindings: Value) -> Policy {
        Policy {
            bindings: bindings.as_array().unwrap().clone(),
            ..Policy::default()
        }
    }

    #[test]
    fn predefined_roles_grant_their_documented_permissions_only() {
        let none = BTreeMap::new();
        let cases = [
            (
                "roles/secretmanager.secretAccessor",
                "secretmanager.versions.access",
                true,
            ),
            (
                "roles/secretmanager.secretAccessor",
                "secretmanager.versions.list",
                false,
            ),
            (
                "roles/secretmanager.admin",
                "secretmanager.secrets.setIamPolicy",
                true,
            ),
            ("roles/secretmanager.admin", "run.services.get", false),
            ("roles/run.developer", "run.services.update", true),
            ("roles/run.developer", "run.services.setIamPolicy", false),
            ("roles/run.viewer", "run.services.get", true),
            ("roles/run.viewer", "run.services.update", false),
            ("roles/iam.serviceAccountUser", "iam.serviceAccounts.actAs", true),
            (
                "roles/iam.serviceAccountUser",
                "iam.serviceAccounts.getAccessToken",
                false,
            ),
            (
                "roles/iam.serviceAccountTokenCreator",
                "iam.serviceAccounts.getAccessToken",
                true,
            ),
            ("roles/editor", "secretmanager.versions.access", false),
            ("roles/editor", "secretmanager.secrets.create", true),
            ("roles/owner", "anything.at.all", true),
            ("roles/unknown", "run.services.get", false),
        ];
        for (role, permission, expected) in cases {
            assert_eq!(
                role_includes(role, permission, &none),
                expected,
                "{role} {permission}"
            );
        }
    }

    #[test]
    fn every_permission_a_call_checks_or_a_role_lists_is_in_the_catalogue() {
        let rpcs = [
            "SecretManagerService.ListSecrets",
            "SecretManagerService.CreateSecret",
            "SecretManagerService.GetSecret",
            "SecretManagerService.UpdateSecret",
            "SecretManagerService.DeleteSecret",
            "SecretManagerService.AddSecretVersion",
            "SecretManagerService.GetIamPolicy",
            "SecretManagerService.SetIamPolicy",
            "SecretManagerService.ListSecretVersions",
            "SecretManagerService.GetSecretVersion",
            "SecretManagerService.AccessSecretVersion",
            "SecretManagerService.EnableSecretVersion",
            "SecretManagerService.DisableSecretVersion",
            "SecretManagerService.DestroySecretVersion",
            "IAM.ListServiceAccounts",
            "IAM.CreateServiceAccount",
            "IAM.GetServiceAccount",
            "IAM.DeleteServiceAccount",
            "IAM.GetIamPolicy",
            "IAM.SetIamPolicy",
            "IAMCredentials.GenerateAccessToken",
            "IAM.ListRoles",
            "IAM.CreateRole",
            "IAM.GetRole",
            "IAM.UpdateRole",
            "IAM.DeleteRole",
            "Projects.GetProject",
            "Projects.GetIamPolicy",
            "Projects.SetIamPolicy",
            "Services.ListServices",
            "Services.CreateService",
            "Services.GetService",
            "Services.UpdateService",
            "Services.DeleteService",
            "Services.GetIamPolicy",
            "Services.SetIamPolicy",
            "Revisions.ListRevisions",
            "Revisions.GetRevision",
            "Revisions.DeleteRevision",
            "Operations.ListOperations",
            "Operations.GetOperation",
            "Operations.DeleteOperation",
            "ServiceUsage.GetService",
            "ServiceUsage.ListServices",
            "ServiceUsage.EnableService",
        ];
        for rpc in rpcs {
            let permission = permission_of(rpc).unwrap_or_else(|| panic!("{rpc} checks no permission"));
            assert!(PERMISSIONS.contains(&permission), "{rpc}: {permission}");
        }
        let none = BTreeMap::new();
        for role in [
            "roles/secretmanager.secretVersionManager",
            "roles/secretmanager.viewer",
            "roles/iam.serviceAccountUser",
            "roles/iam.serviceAccountTokenCreator",
            "roles/resourcemanager.projectIamAdmin",
        ] {
            assert!(
                PERMISSIONS.iter().any(|p| role_includes(role, p, &none)),
                "{role} grants nothing of the catalogue"
            );
        }
    }

    #[test]
    fn custom_roles_grant_exactly_their_listed_permissions_until_deleted() {
        let mut custom = BTreeMap::new();
        custom.insert(
            "projects/p/roles/op".to_string(),
            CustomRole {
                included_permissions: vec!["run.services.get".into()],
                ..CustomRole::default()
            },
        );
        assert!(role_includes("projects/p/roles/op", "run.services.get", &custom));
        assert!(!role_includes(
            "projects/p/roles/op",
            "run.services.update",
            &custom
        ));
        assert!(!role_includes("projects/q/roles/op", "run.services.get", &custom));
        custom.get_mut("projects/p/roles/op").unwrap().deleted = true;
        assert!(!role_includes("projects/p/roles/op", "run.services.get", &custom));
    }

    fn run_service() -> Facts<'static> {
        Facts::of("projects/p/locations/r/services/s", Utc::now())
    }

    #[test]
    fn a_permission_is_allowed_by_any_policy_that_names_the_member_or_everyone() {
        let none = BTreeMap::new();
        let f = run_service();
        let project = policy(json!([{"role": "roles/run.viewer", "members": ["user:a@x.com"]}]));
        let resource = policy(json!([{"role": "roles/run.invoker", "members": ["allUsers"]}]));
        let both = [&project, &resource];
        assert!(allowed(&both, "user:a@x.com", "run.services.get", &none, &f));
        assert!(!allowed(&both, "user:b@x.com", "run.services.get", &none, &f));
        assert!(allowed(&both, "user:b@x.com", "run.routes.invoke", &none, &f));
        assert!(!allowed(
            &[&project],
            "user:a@x.com",
            "run.services.update",
            &none,
            &f
        ));
    }

    #[test]
    fn a_conditional_binding_grants_only_where_its_condition_holds() {
        let none = BTreeMap::new();
        let p = policy(json!([{
            "role": "roles/secretmanager.admin",
            "members": ["user:a@x.com"],
            "condition": {"title": "t", "expression": "resource.name.startsWith('projects/1/secrets/litellm-')"},
        }]));
        let ours = Facts::of("projects/1/secrets/litellm-key", Utc::now());
        let theirs = Facts::of("projects/1/secrets/team-b-key", Utc::now());
        assert!(allowed(
            &[&p],
            "user:a@x.com",
            "secretmanager.secrets.get",
            &none,
            &ours
        ));
        assert!(!allowed(
            &[&p],
            "user:a@x.com",
            "secretmanager.secrets.get",
            &none,
            &theirs
        ));
        let broken = policy(json!([{
            "role": "roles/owner",
            "members": ["user:a@x.com"],
            "condition": {"title": "t", "expression": "resource.labels.x == 'y'"},
        }]));
        assert!(!allowed(
            &[&broken],
            "user:a@x.com",
            "secretmanager.secrets.get",
            &none,
            &ours
        ));
    }

    #[test]
    fn denial_has_googles_message_and_error_info() {
        let e = denied("secretmanager.secrets.get", "projects/p/secrets/x");
        assert_eq!(e.code.http(), 403);
        assert_eq!(
            e.message,
            "Permission 'secretmanager.secrets.get' denied on resource 'projects/p/secrets/x' (or it may not exist)."
        );
        assert_eq!(e.details[0]["reason"], "IAM_PERMISSION_DENIED");
        assert_eq!(
            e.details[0]["metadata"]["permission"],
            "secretmanager.secrets.get"
        );
        let act = act_as_denied("run@p.iam.gserviceaccount.com");
        assert!(
            act.message.contains("iam.serviceaccounts.actAs"),
            "{}",
            act.message
        );
        assert_eq!(
            act.details[0]["metadata"]["permission"],
            "iam.serviceAccounts.actAs"
        );
    }

    #[test]
    fn tokens_resolve_until_they_expire() {
        let mut st = crate::model::State::default();
        let now = Utc::now();
        let forever = st
            .iam
            .tokens
            .mint_token("user:a@x.com", None, &mut st.counter)
            .unwrap();
        let short = st
            .iam
            .tokens
            .mint_token(
                "serviceAccount:s@p.iam.gserviceaccount.com",
                Some(now + chrono::Duration::seconds(5)),
                &mut st.counter,
            )
            .unwrap();
        assert_ne!(forever, short);
        assert_eq!(st.iam.tokens.principal_of(&forever, now), Some("user:a@x.com"));
        assert_eq!(
            st.iam.tokens.principal_of(&short, now),
            Some("serviceAccount:s@p.iam.gserviceaccount.com")
        );
        assert_eq!(
            st.iam
                .tokens
                .principal_of(&short, now + chrono::Duration::seconds(6)),
            None
        );
        assert_eq!(st.iam.tokens.principal_of("ya29.made-up", now), None);
        assert!(st.iam.tokens.mint_token("alice", None, &mut st.counter).is_err());
    }
}

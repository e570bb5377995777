//! Tenancy: which Google projects, regions, runtime service accounts and `external` secrets a namespace may use,
//! and whether it may be public or adopt. Written by cluster admins (chart values, rendered into the operator's
//! `--tenancy-policy` file and into ValidatingAdmissionPolicies), checked here before any Google call.
//!
//! A namespace named by a tenant follows that tenant's rules; every other namespace follows `default`. Without a
//! policy file the safe default applies everywhere: any project, only service accounts of the deployment's own
//! project, no `external` secrets, no adoption, public services allowed.

use serde::{Deserialize, Serialize};

use super::desired::{DesiredSource, DesiredState};

/// Reads a policy file (YAML), refusing one that is not coherent.
pub fn load(path: &std::path::Path) -> Result<TenancyPolicy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let policy: TenancyPolicy =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: not a tenancy policy: {e}", path.display()))?;
    let problems = policy.problems();
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(format!("{}: {}", path.display(), problems.join("; ")))
    }
}

/// The whole policy (the `--tenancy-policy` file; the chart's `tenancy` values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenancyPolicy {
    /// Tenants, each owning some namespaces (a namespace belongs to at most one tenant).
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// The rules of every namespace no tenant names.
    #[serde(default)]
    pub default: Rules,
}

/// One tenant: its namespaces and their rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    /// Its name (in messages and the admission policy's name).
    pub name: String,
    /// Namespace names, exact.
    pub namespaces: Vec<String>,
    /// Its rules.
    #[serde(flatten)]
    pub rules: Rules,
}

/// What deployments in a namespace may use. Patterns are globs: `*` matches any run of characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    /// Google project ids.
    #[serde(default = "any")]
    pub projects: Vec<String>,
    /// Cloud Run regions.
    #[serde(default = "any")]
    pub regions: Vec<String>,
    /// Runtime service account emails; `{project}` stands for the deployment's `spec.project`.
    #[serde(default = "own_project_accounts")]
    pub service_accounts: Vec<String>,
    /// Secrets that may be used as `external`: `projects/P/secrets/ID`, or `ID` in any project allowed above.
    #[serde(default)]
    pub external_secrets: Vec<String>,
    /// Whether `allowUnauthenticated: true` is allowed.
    #[serde(default = "yes")]
    pub allow_unauthenticated: bool,
    /// Whether the `litellm.dev/adopt` annotation is honoured.
    #[serde(default)]
    pub allow_adoption: bool,
    /// A Google service account the operator acts as for these namespaces (per-namespace impersonation, like
    /// Config Connector's namespaced mode): every Google call of their deployments carries a token minted for it
    /// with `generateAccessToken`, so Google's IAM limits each tenant even if a rule above were wrong. The
    /// operator's own account needs `roles/iam.serviceAccountTokenCreator` on it. Unset: the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonate: Option<String>,
}

fn any() -> Vec<String> {
    vec!["*".to_owned()]
}

fn own_project_accounts() -> Vec<String> {
    vec![OWN_PROJECT_ACCOUNTS.to_owned()]
}

fn yes() -> bool {
    true
}

/// Service accounts of the deployment's own project.
pub const OWN_PROJECT_ACCOUNTS: &str = "*@{project}.iam.gserviceaccount.com";

impl Default for Rules {
    fn default() -> Self {
        Self {
            projects: any(),
            regions: any(),
            service_accounts: own_project_accounts(),
            external_secrets: Vec::new(),
            allow_unauthenticated: true,
            allow_adoption: false,
            impersonate: None,
        }
    }
}

impl Rules {
    /// Everything allowed: the rules an upgrade keeps until the admin narrows them.
    pub fn permissive() -> Self {
        Self {
            projects: any(),
            regions: any(),
            service_accounts: any(),
            external_secrets: any(),
            allow_unauthenticated: true,
            allow_adoption: true,
            impersonate: None,
        }
    }
}

/// Why a deployment is refused: the rule and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forbidden {
    /// The tenant (or `default`) whose rule refused it.
    pub tenant: String,
    /// Each refusal, naming the field, the value and the rule.
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused by the tenancy policy ({}): {}",
            self.tenant,
            self.reasons.join("; ")
        )
    }
}

impl TenancyPolicy {
    /// A policy that is not coherent: a namespace named by two tenants, an empty name, an account to impersonate
    /// that is not a service account's email.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeMap::new();
        let rules = self
            .tenants
            .iter()
            .map(|t| (t.name.as_str(), &t.rules))
            .chain([("default", &self.default)]);
        for (name, rules) in rules {
            if let Some(account) = &rules.impersonate
                && !service_account_email(account)
            {
                out.push(format!(
                    "{name}: impersonate {account:?} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)"
                ));
            }
        }
        for tenant in &self.tenants {
            if tenant.name.is_empty() || tenant.name == "default" {
                out.push(format!("tenant name {:?} is empty or reserved", tenant.name));
            }
            for ns in &tenant.namespaces {
                if let Some(other) = seen.insert(ns.clone(), tenant.name.clone()) {
                    out.push(format!(
                        "namespace {ns} is named by tenants {other} and {}",
                        tenant.name
                    ));
                }
            }
        }
        out
    }

    /// The tenant name and rules that govern `namespace`.
    pub fn rules_for(&self, namespace: &str) -> (&str, &Rules) {
        self.tenants
            .iter()
            .find(|t| t.namespaces.iter().any(|n| n == namespace))
            .map_or(("default", &self.default), |t| (t.name.as_str(), &t.rules))
    }

    /// Checks a deployment in `namespace`; `adopt` is whether it asks for adoption.
    pub fn check(&self, namespace: &str, desired: &DesiredState, adopt: bool) -> Result<(), Forbidden> {
        let (tenant, rules) = self.rules_for(namespace);
        let mut reasons = Vec::new();
        if !matches_any(&rules.projects, &desired.project, &desired.project) {
            reasons.push(format!(
                "spec.project {} is not one of the projects it may use ({})",
                desired.project,
                rules.projects.join(", ")
            ));
        }
        if !matches_any(&rules.regions, &desired.region, &desired.project) {
            reasons.push(format!(
                "spec.region {} is not one of the regions it may use ({})",
                desired.region,
                rules.regions.join(", ")
            ));
        }
        let account = &desired.service_spec.service_account;
        if !matches_any(&rules.service_accounts, account, &desired.project) {
            reasons.push(format!(
                "spec.service.serviceAccount {account} is not one of the runtime accounts it may use ({})",
                rules.service_accounts.join(", ")
            ));
        }
        for secret in &desired.secrets {
            if !matches!(secret.source, DesiredSource::External { .. }) {
                continue;
            }
            let allowed = rules.external_secrets.iter().any(|p| {
                let pattern = if p.starts_with("projects/") {
                    p.clone()
                } else {
                    format!("projects/*/secrets/{p}")
                };
                glob(&pattern, &secret.resource)
            });
            if !allowed {
                reasons.push(format!(
                    "spec.secrets {} uses {} as external, which it may not ({})",
                    secret.key(),
                    secret.resource,
                    if rules.external_secrets.is_empty() {
                        "no external secrets allowed".to_owned()
                    } else {
                        rules.external_secrets.join(", ")
                    }
                ));
            }
        }
        if desired.service_spec.allow_unauthenticated && !rules.allow_unauthenticated {
            reasons.push("spec.service.allowUnauthenticated: true is not allowed".to_owned());
        }
        if adopt && !rules.allow_adoption {
            reasons.push(format!(
                "the annotation {}: \"true\" is not allowed",
                litellm_operator_api::names::ADOPT_ANNOTATION
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Forbidden {
                tenant: tenant.to_owned(),
                reasons,
            })
        }
    }
}

/// `NAME@DOMAIN.gserviceaccount.com`, lower case.
fn service_account_email(text: &str) -> bool {
    let Some((name, domain)) = text.split_once('@') else {
        return false;
    };
    !name.is_empty()
        && domain.ends_with(".gserviceaccount.com")
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '@'))
}

fn matches_any(patterns: &[String], value: &str, project: &str) -> bool {
    patterns
        .iter()
        .any(|p| glob(&p.replace("{project}", project), value))
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == value;
    };
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use serde_json::json;

    use super::*;
    use crate::plan::desired_state;

    #[test]
    fn globs() {
        for (p, v, want) in [
            ("*", "anything", true),
            ("my-*", "my-project", true),
            ("my-*", "other", false),
            (
                "*@p.iam.gserviceaccount.com",
                "run@p.iam.gserviceaccount.com",
                true,
            ),
            (
                "*@p.iam.gserviceaccount.com",
                "run@q.iam.gserviceaccount.com",
                false,
            ),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ab*ab", "ab", false),
        ] {
            assert_eq!(glob(p, v), want, "{p} ~ {v}");
        }
    }

    fn deployment(patch: serde_json::Value) -> DesiredState {
        let mut v = json!({
            "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
            "metadata": {"name": "proxy", "namespace": "team-a"},
            "spec": {
                "project": "team-a-proj", "region": "us-central1",
                "service": {"image": "litellm:1", "serviceAccount": "run@team-a-proj.iam.gserviceaccount.com"},
                "secrets": [{"env": "LITELLM_MASTER_KEY", "generate": {"length": 32}}]
            }
        });
        json_patch(&mut v["spec"], &patch);
        desired_state(&serde_json::from_value(v).unwrap()).unwrap()
    }

    fn json_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
        if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                if v.is_object() && t.get(k).is_some_and(serde_json::Value::is_object) {
                    json_patch(t.get_mut(k).unwrap(), v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
    }

    #[test]
    fn the_default_refuses_each_attack_and_names_the_rule() {
        let policy = TenancyPolicy::default();
        assert!(policy.check("team-a", &deployment(json!({})), false).is_ok());
        let attacks = [
            (
                json!({"service": {"serviceAccount": "attacker@other-project.iam.gserviceaccount.com"}}),
                false,
                "spec.service.serviceAccount attacker@other-project",
            ),
            (
                json!({"secrets": [{"env": "LITELLM_MASTER_KEY", "secretId": "litellm-master-key", "external": {"version": "latest"}}]}),
                false,
                "no external secrets allowed",
            ),
            (json!({}), true, "litellm.dev/adopt"),
        ];
        for (patch, adopt, fragment) in attacks {
            let refused = policy.check("team-a", &deployment(patch), adopt).unwrap_err();
            assert_eq!(refused.tenant, "default");
            assert!(refused.to_string().contains(fragment), "{refused}");
        }
    }

    #[test]
    fn a_tenant_gets_its_own_rules_and_others_keep_the_default() {
        let policy: TenancyPolicy = serde_yaml::from_str(
            r#"
tenants:
  - name: team-a
    namespaces: [team-a]
    projects: [team-a-proj]
    regions: [europe-*]
    externalSecrets: [shared-*, projects/shared-proj/secrets/tavily-api-key]
    allowUnauthenticated: false
    allowAdoption: true
"#,
        )
        .unwrap();
        assert!(policy.problems().is_empty());
        let region = deployment(json!({}));
        let refused = policy.check("team-a", &region, false).unwrap_err();
        assert_eq!(refused.tenant, "team-a");
        assert!(
            refused.to_string().contains("spec.region us-central1"),
            "{refused}"
        );
        let ok = deployment(json!({"region": "europe-west1", "secrets": [
            {"env": "SHARED_KEY", "external": {"version": "latest"}, "secretId": "shared-key"}
        ]}));
        assert!(policy.check("team-a", &ok, true).is_ok());
        let public = deployment(json!({"region": "europe-west1", "service": {"allowUnauthenticated": true}}));
        assert!(policy.check("team-a", &public, false).is_err());
        // Another project for team-a is refused; the same deployment elsewhere follows the default.
        let other = deployment(json!({"project": "other-proj", "region": "europe-west1",
            "service": {"serviceAccount": "run@other-proj.iam.gserviceaccount.com"}}));
        assert!(policy.check("team-a", &other, false).is_err());
        assert!(policy.check("team-b", &other, false).is_ok());
    }

    #[test]
    fn a_namespace_named_by_two_tenants_is_a_problem() {
        let policy = TenancyPolicy {
            tenants: vec![
                Tenant {
                    name: "a".into(),
                    namespaces: vec!["shared".into()],
                    rules: Rules::default(),
                },
                Tenant {
                    name: "b".into(),
                    namespaces: vec!["shared".into()],
                    rules: Rules::default(),
                },
            ],
            default: Rules::default(),
        };
        assert_eq!(policy.problems().len(), 1);
    }

    #[test]
    fn an_account_to_impersonate_must_be_a_service_account_email() {
        let yaml = "tenants:\n- name: a\n  namespaces: [team-a]\n  impersonate: tenant-a@p.iam.gserviceaccount.com\n";
        let policy: TenancyPolicy = serde_yaml::from_str(yaml).unwrap();
        assert!(policy.problems().is_empty(), "{:?}", policy.problems());
        assert_eq!(
            policy.rules_for("team-a").1.impersonate.as_deref(),
            Some("tenant-a@p.iam.gserviceaccount.com")
        );
        assert_eq!(policy.rules_for("elsewhere").1.impersonate, None);
        for bad in [
            "alice@example.com",
            "Tenant@p.iam.gserviceaccount.com",
            "tenant-a",
        ] {
            let policy = TenancyPolicy {
                default: Rules {
                    impersonate: Some(bad.to_owned()),
                    ..Rules::default()
                },
                ..TenancyPolicy::default()
            };
            let problems = policy.problems();
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].starts_with("default: impersonate"), "{problems:?}");
        }
    }
}

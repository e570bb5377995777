//! The snippets of the docs checked against what they describe: the Argo CD health check of docs/gitops-argocd.md,
//! run by gopher-lua (the interpreter Argo CD embeds) on every state of a LiteLLMDeployment, and the custom Google
//! role of docs/security.md against the calls the operator makes.
//!
//! glua comes from `tests/helm/build.sh` (pinned in `tests/helm/go.mod`, cached outside the repository), or from
//! `LITELLM_GLUA_BIN`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use litellm_operator_tests::chart::text;
use litellm_operator_tests::fixtures::example_document;
use litellm_operator_tests::{repo_path, tools};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The Argo CD health check of docs/gitops-argocd.md, run by gopher-lua (the interpreter Argo CD embeds)

/// The Lua health check exactly as the doc's `argocd-cm` snippet carries it.
fn argocd_health_script() -> String {
    let doc = std::fs::read_to_string(repo_path("docs/gitops-argocd.md")).unwrap();
    let key = "resource.customizations.health.litellm.dev_LiteLLMDeployment";
    doc.split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("\n```").next())
        .filter(|block| block.contains("name: argocd-cm"))
        .find_map(|block| {
            let config: Value = serde_yaml::from_str(block).unwrap();
            config["data"][key].as_str().map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("docs/gitops-argocd.md has no argocd-cm block with {key}"))
}

/// A Lua expression for a JSON value, as Argo CD hands a resource to Lua (objects and arrays become tables).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&format!("\\{}", u32::from(c))),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!(
                    "[{}] = {}",
                    lua_literal(&Value::String(k.clone())),
                    lua_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the health check on `obj` the way Argo CD does (a global `obj`, the chunk returns a table) and
/// returns `(status, message)`.
fn argocd_health(script: &str, obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal function health()\n{script}\nend\nlocal hs = health()\nprint(hs.status)\nprint(hs.message)\n",
        lua_literal(obj)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("health.lua");
    std::fs::write(&file, program).unwrap();
    let out = Command::new(tools::glua().unwrap()).arg(&file).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the health check failed in Lua: {stdout}{}",
        text(&out.stderr)
    );
    let mut lines = stdout.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}

/// Every condition reason the operator can report, read from `crates/api/src/names.rs` (`pub mod reason`).
fn condition_reasons() -> Vec<String> {
    let names = std::fs::read_to_string(repo_path("crates/api/src/names.rs")).unwrap();
    let module = names
        .split("pub mod reason {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("names.rs has `pub mod reason`");
    module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

/// `examples/minimal.yaml`'s LiteLLMDeployment at generation 3 with `status`.
fn llmd_with_status(status: Option<Value>) -> Value {
    let mut obj = example_document("minimal.yaml", "LiteLLMDeployment");
    obj["metadata"]["generation"] = 3.into();
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

fn status_with_ready(ready: &str, reason: &str, message: &str, observed: i64) -> Value {
    serde_json::json!({
        "observedGeneration": observed,
        "url": "https://litellm-minimal-xyz-uc.a.run.app",
        "conditions": [
            {"type": "SecretsReady", "status": "True", "reason": "Ready", "message": "2 secrets",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": ready, "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": observed},
        ],
    })
}

#[test]
fn argocd_health_check_maps_every_state_of_a_litellmdeployment() {
    let script = argocd_health_script();
    let reasons = condition_reasons();
    assert!(
        reasons.len() >= 8 && reasons.iter().any(|r| r == "PermissionDenied"),
        "{reasons:?}"
    );

    // (fixture, expected status, text the message must contain)
    let mut cases: Vec<(String, Value, &str, String)> = vec![
        (
            "no status yet".into(),
            llmd_with_status(None),
            "Progressing",
            "Waiting for litellm-operator".into(),
        ),
        (
            "Ready".into(),
            llmd_with_status(Some(status_with_ready("True", "Ready", "serving", 3))),
            "Healthy",
            "https://litellm-minimal-xyz-uc.a.run.app".into(),
        ),
        (
            "Ready but for an older generation".into(),
            llmd_with_status(Some(status_with_ready("True", "Ready", "serving", 2))),
            "Progressing",
            "generation 3".into(),
        ),
        (
            "Ready Unknown".into(),
            llmd_with_status(Some(status_with_ready("Unknown", "Reconciling", "starting", 3))),
            "Progressing",
            "starting".into(),
        ),
        (
            "no Ready condition".into(),
            llmd_with_status(Some(
                serde_json::json!({"observedGeneration": 3, "conditions": []}),
            )),
            "Progressing",
            "Ready condition".into(),
        ),
    ];
    for reason in reasons.iter().filter(|r| *r != "Ready") {
        let expected = match reason.as_str() {
            "Reconciling" | "IamPropagating" | "Deleting" => "Progressing",
            "Paused" => "Suspended",
            _ => "Degraded",
        };
        let message = format!("ServiceReady: explanation for {reason}");
        cases.push((
            format!("Ready=False reason {reason}"),
            llmd_with_status(Some(status_with_ready("False", reason, &message, 3))),
            expected,
            message,
        ));
    }

    let mut wrong = Vec::new();
    for (name, obj, expected, needle) in &cases {
        let (status, message) = argocd_health(&script, obj);
        if status != *expected || !message.contains(needle.as_str()) {
            wrong.push(format!(
                "{name}: got {status} {message:?}, expected {expected} with {needle:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The custom Google role of docs/security.md against the calls the operator makes

/// The Google permissions each method of the `litellm-operator-gcp` traits needs. IAM policy methods work on
/// a secret or a Cloud Run service, so they need both services' IAM permissions.
const GOOGLE_PERMISSIONS: &[(&str, &[&str])] = &[
    ("find_secret", &["secretmanager.secrets.get"]),
    ("create_secret", &["secretmanager.secrets.create"]),
    ("list_secrets", &["secretmanager.secrets.list"]),
    ("update_labels", &["secretmanager.secrets.update"]),
    ("delete_secret", &["secretmanager.secrets.delete"]),
    ("add_version", &["secretmanager.versions.add"]),
    ("get_version", &["secretmanager.versions.get"]),
    ("resolve_version", &["secretmanager.versions.get"]),
    ("access_version", &["secretmanager.versions.access"]),
    ("list_versions", &["secretmanager.versions.list"]),
    ("enable_version", &["secretmanager.versions.enable"]),
    ("disable_version", &["secretmanager.versions.disable"]),
    ("destroy_version", &["secretmanager.versions.destroy"]),
    ("get_service", &["run.services.get"]),
    ("create_service", &["run.services.create"]),
    ("update_service", &["run.services.update"]),
    ("delete_service", &["run.services.delete"]),
    ("get_revision", &["run.revisions.get"]),
    ("list_revisions", &["run.revisions.list"]),
    ("get_operation", &["run.operations.get"]),
    (
        "get_policy",
        &["secretmanager.secrets.getIamPolicy", "run.services.getIamPolicy"],
    ),
    (
        "add_member",
        &[
            "secretmanager.secrets.getIamPolicy",
            "secretmanager.secrets.setIamPolicy",
            "run.services.getIamPolicy",
            "run.services.setIamPolicy",
        ],
    ),
    (
        "remove_member",
        &[
            "secretmanager.secrets.getIamPolicy",
            "secretmanager.secrets.setIamPolicy",
            "run.services.getIamPolicy",
            "run.services.setIamPolicy",
        ],
    ),
];

fn rust_sources(dir: &std::path::Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

/// The methods declared in the `pub trait` blocks of the gcp crate: everything the operator can ask Google.
fn gcp_trait_methods() -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    for (_, text) in rust_sources(&repo_path("crates/gcp/src")) {
        let mut in_trait = false;
        for line in text.lines() {
            if line.starts_with("pub trait ") {
                in_trait = true;
            } else if line == "}" {
                in_trait = false;
            } else if in_trait
                && let Some(rest) = line.trim_start().strip_prefix("fn ")
                && let Some(name) = rest.split(['(', '<']).next()
            {
                methods.insert(name.to_owned());
            }
        }
    }
    methods
}

#[test]
fn security_doc_custom_role_grants_exactly_what_the_operator_calls() {
    let methods = gcp_trait_methods();
    let mapped: BTreeSet<String> = GOOGLE_PERMISSIONS.iter().map(|(m, _)| (*m).to_owned()).collect();
    assert!(
        methods.contains("find_secret") && methods.contains("update_service"),
        "{methods:?}"
    );
    assert_eq!(
        methods, mapped,
        "the gcp crate's trait methods changed: map each to its Google permission in GOOGLE_PERMISSIONS"
    );

    // Methods called in the operator's sources (a text scan: `.name(`), and the permissions they need.
    let sources = rust_sources(&repo_path("crates/operator/src"));
    let mut required = BTreeSet::new();
    let mut called = BTreeSet::new();
    for (method, permissions) in GOOGLE_PERMISSIONS {
        let call = format!(".{method}(");
        if sources.iter().any(|(_, text)| text.contains(&call)) {
            called.insert(*method);
            required.extend(permissions.iter().map(|p| (*p).to_owned()));
        }
    }
    assert!(called.contains("create_secret"), "{called:?}");

    let granted: BTreeSet<String> = litellm_operator_tests::fixtures::documented_operator_permissions()
        .into_iter()
        .collect();
    let missing: Vec<_> = required.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&required).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "docs/security.md's custom role is out of date (operator calls {called:?}):\n  missing: {missing:?}\n  \
         granted but unused: {unused:?}"
    );
}

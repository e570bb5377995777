//! LiteLLMDeployment manifests for tests: the shipped examples, and a small one of the tests' own.
#![allow(
    clippy::panic,
    reason = "test fixtures: a missing or broken example fails the test"
)]

use serde_json::{Value, json};

use crate::manifests::{read_repo_file, yaml_documents};

/// The Google project every fixture deploys into.
pub const PROJECT: &str = "my-project";

/// The Cloud Run region every fixture deploys into.
pub const REGION: &str = "us-central1";

/// The runtime service account every fixture's service runs as (and every secret is granted to).
pub const RUNTIME_SA: &str = "litellm-run@my-project.iam.gserviceaccount.com";

/// The operator's own Google service account, as docs/security.md names it, in [`PROJECT`].
pub const OPERATOR_ACCOUNT: &str = "litellm-operator@my-project.iam.gserviceaccount.com";

/// The permissions of the custom role docs/security.md creates for the operator (its `--permissions=` line), so
/// the tests run the operator with exactly what the guide grants.
pub fn documented_operator_permissions() -> Vec<String> {
    let doc = read_repo_file("docs/security.md").unwrap_or_else(|e| panic!("{e}"));
    doc.lines()
        .find_map(|l| l.trim().strip_prefix("--permissions="))
        .unwrap_or_else(|| panic!("docs/security.md has no `--permissions=` line"))
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The LiteLLM image of the fixtures.
pub const IMAGE: &str = "ghcr.io/berriai/litellm:main-stable";

/// The keys of the runbook's Kubernetes Secret `litellm-credentials` (its other three secrets are two
/// generated keys and the external `tavily-api-key`).
pub const RUNBOOK_CREDENTIAL_KEYS: [&str; 8] = [
    "database-url",
    "ui-username",
    "ui-password",
    "redis-host",
    "redis-password",
    "langfuse-secret-key",
    "langfuse-public-key",
    "context7-api-key",
];

/// The first document of `kind` in `examples/<file>`, exactly as written there (namespace included).
pub fn example_document(file: &str, kind: &str) -> Value {
    let path = format!("examples/{file}");
    let text = read_repo_file(&path).unwrap_or_else(|e| panic!("{e}"));
    yaml_documents(&text, &path)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("{path} has no {kind}"))
}

/// The LiteLLMDeployment of `examples/minimal.yaml`, without its namespace.
pub fn minimal_example() -> Value {
    let mut manifest = example_document("minimal.yaml", "LiteLLMDeployment");
    if let Some(metadata) = manifest["metadata"].as_object_mut() {
        metadata.remove("namespace");
    }
    manifest
}

/// The runbook example (`examples/litellm-deployment.yaml`: eleven secrets, `allowUnauthenticated`), named `name`
/// with its Cloud Run service named `name` too, without a namespace. Its inputs are the Kubernetes Secret
/// `litellm-credentials` with [`RUNBOOK_CREDENTIAL_KEYS`] and the external Google secret `tavily-api-key`
/// (`World::runbook` provides both).
pub fn runbook(name: &str) -> Value {
    let mut manifest = example_document("litellm-deployment.yaml", "LiteLLMDeployment");
    manifest["metadata"] = json!({"name": name});
    manifest["spec"]["service"]["name"] = json!(name);
    manifest
}

/// A small LiteLLMDeployment named `name`: a generated master key (`sk-`, 32 characters) and `DATABASE_URL` from
/// the Kubernetes Secret `creds`, key `database-url`; defaults for everything else.
pub fn minimal(name: &str) -> Value {
    json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": name},
        "spec": {
            "project": PROJECT, "region": REGION,
            "service": {"image": IMAGE, "serviceAccount": RUNTIME_SA},
            "secrets": [
                {"env": "LITELLM_MASTER_KEY", "generate": {"length": 32, "prefix": "sk-"}},
                {"env": "DATABASE_URL", "fromSecret": {"name": "creds", "key": "database-url"}}
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_runbook_reads_the_credentials_this_module_names() {
        let manifest = runbook("proxy");
        assert_eq!(manifest["metadata"], json!({"name": "proxy"}));
        assert_eq!(manifest["spec"]["service"]["name"], "proxy");
        assert_eq!(manifest["spec"]["project"], PROJECT);
        assert_eq!(manifest["spec"]["region"], REGION);
        assert_eq!(manifest["spec"]["service"]["serviceAccount"], RUNTIME_SA);
        let from_secret: Vec<&str> = manifest["spec"]["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["fromSecret"]["name"] == "litellm-credentials")
            .map(|s| s["fromSecret"]["key"].as_str().unwrap())
            .collect();
        assert_eq!(from_secret, RUNBOOK_CREDENTIAL_KEYS);
    }

    #[test]
    fn the_minimal_example_has_no_namespace() {
        let manifest = minimal_example();
        assert_eq!(manifest["kind"], "LiteLLMDeployment");
        assert!(manifest["metadata"].get("namespace").is_none());
        assert!(example_document("minimal.yaml", "LiteLLMDeployment")["metadata"]["namespace"].is_string());
    }
}

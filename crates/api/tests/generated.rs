//! The committed CRD and reference docs must match what the Rust types generate.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

fn repo_file(rel: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    (path, text)
}

#[test]
fn committed_crd_matches_the_rust_types() {
    let (path, committed) = repo_file("crds/litellmdeployments.yaml");
    let generated = litellm_operator_api::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "{} differs from the CRD generated from crates/api; regenerate it with `make generate` \
         (cargo run -p litellm-operator -- crd > crds/litellmdeployments.yaml) and commit it",
        path.display()
    );
}

#[test]
fn committed_reference_matches_the_rust_types() {
    let (path, committed) = repo_file("docs/crd-reference.md");
    let generated = litellm_operator_api::reference::markdown().unwrap();
    assert!(
        committed == generated,
        "{} differs from the reference generated from crates/api; regenerate it with `make generate` \
         (cargo run -p litellm-operator -- crd --reference > docs/crd-reference.md) and commit it",
        path.display()
    );
}

#[test]
fn reference_documents_every_spec_field_and_cel_rule() {
    let md = litellm_operator_api::reference::markdown().unwrap();
    for needle in [
        "`spec.project`",
        "`spec.service.serviceAccount`",
        "`spec.secrets[].fromSecret.key`",
        "`spec.secretPolicy.keepEnabledVersions`",
        "`status.secrets[].version`",
        "*CEL*: project is immutable",
        "*CEL*: each secret needs exactly one source",
    ] {
        assert!(md.contains(needle), "reference lacks {needle}");
    }
}

#[test]
fn crd_has_printer_columns_short_name_and_status_subresource() {
    let crd = serde_json::to_value(litellm_operator_api::crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Reason", "URL", "Revision", "Age"]);
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "llmd");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert!(version["subresources"]["status"].is_object());
}

#[test]
fn every_spec_field_is_documented() {
    let crd = serde_json::to_value(litellm_operator_api::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut undocumented = Vec::new();
    fn walk(path: &str, schema: &serde_json::Value, out: &mut Vec<String>) {
        if schema
            .get("description")
            .and_then(|d| d.as_str())
            .is_none_or(str::is_empty)
        {
            out.push(path.to_owned());
        }
        for (name, child) in schema
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            walk(&format!("{path}.{name}"), child, out);
        }
        if let Some(items) = schema.get("items").filter(|i| i.get("properties").is_some()) {
            for (name, child) in items["properties"].as_object().unwrap() {
                walk(&format!("{path}[].{name}"), child, out);
            }
        }
    }
    walk("spec", spec, &mut undocumented);
    assert!(
        undocumented.is_empty(),
        "fields without a doc comment: {undocumented:?}"
    );
}

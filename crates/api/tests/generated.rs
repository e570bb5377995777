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
        "`spec.config.inline`",
        "`spec.config.configMapKeyRef.name`",
        "*CEL*: config needs exactly one of inline or configMapKeyRef",
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
    assert_eq!(
        columns,
        [
            "Ready", "Reason", "URL", "Revision", "Age", "Project", "Region", "Message"
        ]
    );
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

/// Every schema node with a description, as (path, node), for properties and array items alike.
fn described_nodes() -> Vec<(String, serde_json::Value)> {
    fn walk(path: &str, schema: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        if schema.get("description").is_some() {
            out.push((path.to_owned(), schema.clone()));
        }
        for (name, child) in schema
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            walk(&format!("{path}.{name}"), child, out);
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, out);
        }
    }
    let crd = serde_json::to_value(litellm_operator_api::crd()).unwrap();
    let mut out = Vec::new();
    walk(
        "",
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        &mut out,
    );
    out
}

/// `kubectl explain` prints only the description: a field with a default says it there, as `Default: `4000`.`
/// for a scalar (the exact value the API server fills in) and `Default: ...` in words for an object.
#[test]
fn every_default_is_in_the_description() {
    let mut undocumented = Vec::new();
    for (path, node) in described_nodes() {
        let Some(default) = node.get("default") else {
            continue;
        };
        let description = node["description"].as_str().unwrap();
        let expected = match default {
            serde_json::Value::String(s) => format!("Default: `{s}`"),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => format!("Default: `{default}`"),
            _ => "Default: ".to_owned(),
        };
        if !description.contains(&expected) {
            undocumented.push(format!("{path}: {expected:?} not in {description:?}"));
        }
    }
    assert!(undocumented.is_empty(), "{undocumented:#?}");
}

/// Descriptions are whole sentences that `kubectl explain` can wrap at its own width: each paragraph is one line
/// (no line break left from the Rust source's wrapping, no two paragraphs merged by a single line break), ends
/// with a period, and no sentence is glued to the next without a space (`word.Word`).
#[test]
fn descriptions_are_whole_sentences() {
    let glued = regex::Regex::new(r"[a-z)`][.!?][A-Z`]").unwrap();
    let mut broken = Vec::new();
    for (path, node) in described_nodes() {
        let description = node["description"].as_str().unwrap();
        for paragraph in description.split("\n\n") {
            if paragraph.is_empty() || paragraph.contains('\n') {
                broken.push(format!(
                    "{path}: a line break inside a paragraph: {description:?}"
                ));
            }
            if !paragraph.ends_with('.') {
                broken.push(format!(
                    "{path}: a paragraph does not end a sentence: {paragraph:?}"
                ));
            }
            if let Some(m) = glued.find(paragraph) {
                broken.push(format!(
                    "{path}: sentences glued at {:?}: {paragraph:?}",
                    m.as_str()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn reference_marks_spec_required_and_status_not() {
    let md = litellm_operator_api::reference::markdown().unwrap();
    let row = |field: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| `{field}` |")))
            .unwrap_or_else(|| panic!("no row for {field}"))
            .to_owned()
    };
    assert!(row("spec").contains("required"), "{}", row("spec"));
    assert!(!row("status").contains("required"), "{}", row("status"));
}

/// The rule keeping `spec.service.name` sits on the whole object (only there is `metadata.name` visible) and is
/// listed in the reference on the field it reports on.
#[test]
fn service_name_rule_is_on_the_root_and_in_the_reference() {
    let crd = serde_json::to_value(litellm_operator_api::crd()).unwrap();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let rules = root["x-kubernetes-validations"].as_array().unwrap();
    let rule = rules
        .iter()
        .find(|r| r["fieldPath"] == ".spec.service.name")
        .unwrap();
    assert_eq!(rule["rule"], litellm_operator_api::SERVICE_NAME_IMMUTABLE_RULE);
    assert!(rule["rule"].as_str().unwrap().contains("self.metadata.name"));
    assert!(
        root["properties"]["spec"]["properties"]["service"]
            .get("x-kubernetes-validations")
            .is_none(),
        "the old rule on service compared has(name) and refused adding metadata.name"
    );
    let md = litellm_operator_api::reference::markdown().unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| `spec.service.name` |"))
        .unwrap();
    assert!(
        row.contains(&format!(
            "*CEL*: {}",
            litellm_operator_api::SERVICE_NAME_IMMUTABLE_MESSAGE
        )),
        "{row}"
    );
}

/// `cpu: 2` and `memory` as people write Kubernetes quantities: int-or-string, with the explicit
/// `anyOf: [integer, string]` (so other types are refused) and not nullable (so `null` is defaulted, never stored).
#[test]
fn cpu_and_memory_are_int_or_string() {
    let crd = serde_json::to_value(litellm_operator_api::crd()).unwrap();
    let resources = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["service"]["properties"]["resources"]["properties"];
    for field in ["cpu", "memory"] {
        let node = &resources[field];
        assert_eq!(node["x-kubernetes-int-or-string"], true, "{field}: {node}");
        assert_eq!(
            node["anyOf"],
            serde_json::json!([{"type": "integer"}, {"type": "string"}]),
            "{field}: {node}"
        );
        assert!(node.get("type").is_none(), "{field}: {node}");
        assert!(node.get("nullable").is_none(), "{field}: {node}");
        // Bounds for both forms: pattern for strings, minimum and maximum for numbers.
        for bound in ["pattern", "minimum", "maximum"] {
            assert!(node.get(bound).is_some(), "{field} lacks {bound}: {node}");
        }
    }
    assert_eq!(resources["cpu"]["maximum"], 8.0);
}

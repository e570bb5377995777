//! The committed LiteLLMDeployment CRD against the real API server: it installs and is structural,
//! `kubectl explain` shows its docs, `kubectl get llmd` shows its printer columns, and every schema
//! bound and CEL rule refuses a bad manifest at admission with its message.
//!
//! Each bad manifest is `examples/minimal.yaml` with one field changed. The expected message is
//! derived from the CRD YAML (the rule's `message`, the bound's value), never restated here, and
//! `every_bound_and_rule_has_a_test` fails when the CRD gains a bound or rule without a test here.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use litellm_operator_api::{LiteLLMDeployment, LiteLLMDeploymentSpec, validate};
use litellm_operator_tests::fixtures::minimal_example;
use litellm_operator_tests::{
    ControlPlane, LITELLM_CRD, eventually, install_litellm_crd, read_repo_file, yaml_documents,
};
use serde_json::{Value, json};

fn crd_yaml() -> String {
    read_repo_file(LITELLM_CRD).unwrap()
}

fn crd() -> Value {
    yaml_documents(&crd_yaml(), "CRD").unwrap().remove(0)
}

/// The schema of the whole object, of the served version.
fn root_schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The `spec` schema of the served version.
fn spec_schema() -> Value {
    root_schema()["properties"]["spec"].clone()
}

fn resource() -> ApiResource {
    let crd = crd();
    let names = &crd["spec"]["names"];
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            crd["spec"]["group"].as_str().unwrap(),
            crd["spec"]["versions"][0]["name"].as_str().unwrap(),
            names["kind"].as_str().unwrap(),
        ),
        names["plural"].as_str().unwrap(),
    )
}

/// The shared control plane with the CRD installed, a client and a fresh namespace.
async fn setup(test: &str) -> (&'static ControlPlane, Client, String) {
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();
    install_litellm_crd(&client).await.unwrap();
    let ns = cp.namespace(test).await.unwrap();
    (cp, client, ns)
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Installation, docs and printer columns

#[tokio::test]
async fn crd_installs_established_and_structural() {
    let (_, client, _) = setup("crd-install").await;
    let name = crd()["metadata"]["name"].as_str().unwrap().to_owned();
    let installed = Api::<CustomResourceDefinition>::all(client)
        .get(&name)
        .await
        .unwrap();
    let conditions = installed.status.unwrap().conditions.unwrap();
    let status = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.clone())
    };
    assert_eq!(status("Established").as_deref(), Some("True"), "{conditions:?}");
    assert_eq!(status("NamesAccepted").as_deref(), Some("True"), "{conditions:?}");
    // The API server flags a non-structural schema with this condition (and refuses CEL on it).
    assert_eq!(status("NonStructuralSchema"), None, "{conditions:?}");
}

#[tokio::test]
async fn minimal_example_is_accepted() {
    let (_, client, ns) = setup("crd-minimal").await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    let created = api
        .create(&PostParams::default(), &object(minimal_example()))
        .await
        .unwrap();
    // Defaults from the schema are applied by the server.
    assert_eq!(created.data["spec"]["service"]["port"], 4000);
}

#[tokio::test]
async fn a_salt_key_may_carry_an_empty_rotation_as_validate_allows() {
    let (_, client, ns) = setup("crd-salt").await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    let mut manifest = minimal_example();
    manifest["spec"]["secrets"]
        .as_array_mut()
        .unwrap()
        .push(json!({"env": "LITELLM_SALT_KEY", "generate": {"rotation": ""}}));
    let obj: LiteLLMDeployment = serde_json::from_value(manifest.clone()).unwrap();
    assert!(litellm_operator_api::validate(&obj).is_ok());
    api.create(&PostParams::default(), &object(manifest))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Manifests as people write them by hand

/// How the operator reads what the API server stored.
fn operator_reads(stored: &DynamicObject) -> LiteLLMDeployment {
    serde_json::from_value(serde_json::to_value(stored).unwrap()).unwrap()
}

#[tokio::test]
async fn unquoted_quantities_are_accepted_and_read_as_cloud_run_takes_them() {
    let (_, client, ns) = setup("crd-quantities").await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    let mut manifest = minimal_example();
    // `cpu: 2` and `memory: 4294967296` as YAML without quotes sends them.
    set(
        &mut manifest,
        "/spec/service/resources",
        json!({"cpu": 2, "memory": 4_u64 << 30}),
    );
    let created = api
        .create(&PostParams::default(), &object(manifest))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["service"]["resources"]["cpu"], 2);
    let read = operator_reads(&created);
    assert_eq!(read.spec.service.resources.cpu, "2");
    assert_eq!(read.spec.service.resources.memory, "4096Mi");
    validate(&read).unwrap();

    // An explicit null is dropped and defaulted, never stored for the operator to choke on.
    let mut manifest = minimal_example();
    manifest["metadata"]["name"] = json!("null-quantities");
    set(
        &mut manifest,
        "/spec/service/resources",
        json!({"cpu": null, "memory": null}),
    );
    let created = api
        .create(&PostParams::default(), &object(manifest))
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["service"]["resources"],
        json!({"cpu": "1", "memory": "2Gi"})
    );
}

#[tokio::test]
async fn a_quantity_of_another_type_is_refused() {
    let (_, client, ns) = setup("crd-quantity-types").await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    for (field, value) in [
        ("cpu", json!(true)),
        ("cpu", json!(1.5)),
        ("memory", json!({"Gi": 2})),
    ] {
        let mut manifest = minimal_example();
        set(
            &mut manifest,
            &format!("/spec/service/resources/{field}"),
            value.clone(),
        );
        let result = api.create(&PostParams::default(), &object(manifest)).await;
        let expected = Expectation {
            field: format!("spec.service.resources.{field}"),
            message: "must be of type".to_owned(),
        };
        assert_invalid(&format!("{field}: {value}"), result, &expected);
    }
}

/// `spec.service.name` may be added or removed while it equals `metadata.name` (the same Cloud
/// Run service, as GitOps tools write it), never changed to another service.
#[tokio::test]
async fn service_name_may_be_added_and_removed_while_it_equals_metadata_name() {
    let (_, client, ns) = setup("crd-service-name").await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    let manifest = minimal_example();
    let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
    api.create(&PostParams::default(), &object(manifest))
        .await
        .unwrap();
    let set_name = |value: Value| {
        let api = api.clone();
        let name = name.clone();
        async move {
            let patch = json!({"spec": {"service": {"name": value}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    };

    let added = set_name(json!(name)).await.unwrap();
    assert_eq!(added.data["spec"]["service"]["name"], json!(name));
    let removed = set_name(Value::Null).await.unwrap();
    assert!(removed.data["spec"]["service"].get("name").is_none());
    set_name(json!(name)).await.unwrap();
    assert_invalid(
        "service.name to another name",
        set_name(json!("litellm-renamed")).await,
        &expectation("root rule 0"),
    );
}

/// Manifests that leave out fields with defaults at every level: the minimal example with one
/// object set partly.
fn partial_manifests() -> Vec<Value> {
    let changes: Vec<(&str, Value)> = vec![
        ("/spec/service/probes", json!({"startup": {"path": "/ready"}})),
        (
            "/spec/service/probes",
            json!({"liveness": {"path": "/live", "periodSeconds": 30}}),
        ),
        (
            "/spec/service/probes",
            json!({"liveness": {"enabled": false}, "startup": {"type": "TCP"}}),
        ),
        ("/spec/service/resources", json!({"cpu": "2"})),
        ("/spec/service/scaling", json!({"maxInstances": 3})),
        ("/spec/service/vpcAccess", json!({"connector": "c"})),
        (
            "/spec/secretPolicy",
            json!({"replication": "UserManaged", "replicaLocations": ["us-east1"]}),
        ),
        ("/spec/deletionPolicy", json!({"secrets": "Delete"})),
        (
            "/spec/secrets/1",
            json!({"env": "TAVILY_API_KEY", "external": {}}),
        ),
    ];
    let mut manifests = vec![minimal_example()];
    for (i, (path, value)) in changes.into_iter().enumerate() {
        let mut manifest = minimal_example();
        manifest["metadata"]["name"] = json!(format!("partial-{i}"));
        set(&mut manifest, path, value);
        manifests.push(manifest);
    }
    manifests
}

/// The defaults the API server fills in from the schema are the ones the operator's serde
/// defaults give: one default per field. Setting only `probes.startup.path` keeps the 240 s
/// startup window (`failureThreshold: 24`), not the liveness probe's 3.
#[tokio::test]
async fn server_defaults_equal_serde_defaults() {
    let (_, client, ns) = setup("crd-defaults").await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    for manifest in partial_manifests() {
        let created = api
            .create(&PostParams::default(), &object(manifest.clone()))
            .await
            .unwrap();
        let by_serde = serde_json::to_value(
            serde_json::from_value::<LiteLLMDeploymentSpec>(manifest["spec"].clone()).unwrap(),
        )
        .unwrap();
        assert_eq!(created.data["spec"], by_serde, "for {}", manifest["spec"]);
        if manifest["spec"]["service"]["probes"]["startup"]["path"] == "/ready" {
            assert_eq!(
                created.data["spec"]["service"]["probes"]["startup"]["failureThreshold"],
                24
            );
        }
    }
}

/// Whitespace-collapsed, so kubectl's line wrapping does not matter.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn kubectl_explain_shows_the_spec_docs() {
    let (cp, _, _) = setup("crd-explain").await;
    let schema = spec_schema();
    let properties = schema["properties"].as_object().unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();

    // The OpenAPI document is published shortly after the CRD is Established.
    let explained = eventually(
        "kubectl explain to show the spec",
        Duration::from_secs(30),
        || async {
            let output = cp
                .kubectl()
                .args(["explain", "litellmdeployment.spec"])
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() && stdout.contains("FIELDS:") {
                Ok(stdout)
            } else {
                Err(format!(
                    "kubectl explain failed: {}{}",
                    stdout,
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        },
    )
    .await;

    assert!(explained.contains("KIND:       LiteLLMDeployment"), "{explained}");
    let flat = collapse(&explained);
    assert!(
        flat.contains(&collapse(schema["description"].as_str().unwrap())),
        "spec's description missing from:\n{explained}"
    );
    for (name, property) in properties {
        let line = explained
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}\t<")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{explained}"));
        assert_eq!(
            line.contains("-required-"),
            required.contains(&name.as_str()),
            "{line}"
        );
        let description = property["description"].as_str().unwrap();
        assert!(
            flat.contains(&collapse(description)),
            "description of {name} missing from:\n{explained}"
        );
    }
}

const READY_MESSAGE: &str = "Revision litellm-minimal-00002-xyz serves 100% of traffic";

/// The minimal example, created in a fresh namespace with a Ready status; its name and namespace.
async fn ready_example(test: &str) -> (&'static ControlPlane, String, String) {
    let (cp, client, ns) = setup(test).await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    let manifest = minimal_example();
    let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
    api.create(&PostParams::default(), &object(manifest))
        .await
        .unwrap();
    let status = json!({
        "status": {
            "url": "https://litellm-minimal-abc123-uc.a.run.app",
            "latestReadyRevision": "litellm-minimal-00002-xyz",
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "RevisionReady",
                "message": READY_MESSAGE,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }],
        }
    });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    (cp, name, ns)
}

/// `kubectl get llmd -n NS EXTRA...`'s stdout.
async fn kubectl_get(cp: &ControlPlane, ns: &str, extra: &[&str]) -> String {
    let output = cp
        .kubectl()
        .args(["get", "llmd", "-n", ns])
        .args(extra)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The CRD's printer columns: (upper-case name, priority).
fn printer_columns() -> Vec<(String, u64)> {
    crd()["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_uppercase(),
                c["priority"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn kubectl_get_llmd_shows_the_printer_columns() {
    let (cp, name, ns) = ready_example("crd-columns").await;
    let stdout = kubectl_get(cp, &ns, &[]).await;
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "REASON", "URL", "REVISION", "AGE"],
        "{stdout}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        [
            name.as_str(),
            "True",
            "RevisionReady",
            "https://litellm-minimal-abc123-uc.a.run.app",
            "litellm-minimal-00002-xyz",
        ],
        "{stdout}"
    );
    assert!(row[5].ends_with('s') || row[5].ends_with('m'), "age {}", row[5]);

    // The columns come from the CRD, not from kubectl defaults; the wide ones stay out.
    let columns: Vec<String> = printer_columns()
        .into_iter()
        .filter(|(_, priority)| *priority == 0)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(columns, header[1..]);
}

#[tokio::test]
async fn kubectl_get_llmd_wide_shows_project_region_and_the_ready_message() {
    let (cp, name, ns) = ready_example("crd-columns-wide").await;
    let spec = &minimal_example()["spec"];
    let stdout = kubectl_get(cp, &ns, &["-o", "wide"]).await;
    let mut lines = stdout.lines();
    let header = lines.next().unwrap();
    let row = lines.next().unwrap();
    let words: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "NAME", "READY", "REASON", "URL", "REVISION", "AGE", "PROJECT", "REGION", "MESSAGE"
        ],
        "{stdout}"
    );
    // kubectl aligns each value under its heading; the message, last, has spaces of its own.
    let cell = |column: &str| {
        let at = header.find(column).unwrap();
        row[at..].split_whitespace().next().unwrap()
    };
    assert_eq!(cell("NAME"), name, "{stdout}");
    assert_eq!(cell("PROJECT"), spec["project"].as_str().unwrap(), "{stdout}");
    assert_eq!(cell("REGION"), spec["region"].as_str().unwrap(), "{stdout}");
    assert_eq!(
        row[header.find("MESSAGE").unwrap()..].trim_end(),
        READY_MESSAGE,
        "{stdout}"
    );

    // Exactly the CRD's columns, the wide ones only here.
    let wide: Vec<String> = printer_columns()
        .into_iter()
        .filter(|(_, priority)| *priority > 0)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(wide, ["PROJECT", "REGION", "MESSAGE"]);
    assert_eq!(printer_columns().len() + 1, words.len());
}

// ---------------------------------------------------------------------------------------------
// Admission: one test per schema bound and CEL rule

/// A bound or rule of the CRD, named `<schema path> <keyword> [<argument>]`, where the schema
/// path uses `[]` for array items: `spec.service.port maximum`, `spec.secrets[] rule 0` (the
/// first entry of `x-kubernetes-validations`), `spec.service required image`. `root` is the
/// whole object, whose rules can see `metadata.name`: `root rule 0`.
type BoundId = &'static str;

/// What the API server must answer for a bound: a cause on `field` (indices written `[]`) whose
/// message contains `message`.
#[derive(Debug)]
struct Expectation {
    field: String,
    message: String,
}

/// The schema node at a dotted path such as `spec.secrets[].env`, or `root`.
fn schema_at(path: &str) -> Value {
    if path == "root" {
        return root_schema();
    }
    let mut node = spec_schema();
    for part in path.split('.').skip(1) {
        let (name, items) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (part, false),
        };
        node = node["properties"][name].clone();
        if items {
            node = node["items"].clone();
        }
        assert!(!node.is_null(), "{path}: no schema at {part}");
    }
    node
}

fn number(value: &Value) -> String {
    // The CRD writes bounds as floats (`maximum: 100.0`); the server prints integers.
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
        _ => value.to_string(),
    }
}

/// The API server's too-many message (it counts map entries as items too).
fn at_most(limit: &Value) -> String {
    let n = number(limit);
    let noun = if n == "1" { "item" } else { "items" };
    format!("must have at most {n} {noun}")
}

/// The expectation for `id`, read from the CRD. Panics if the CRD has no such bound.
fn expectation(id: BoundId) -> Expectation {
    let mut words = id.split(' ');
    let path = words.next().unwrap();
    let keyword = words.next().unwrap();
    let argument = words.next();
    let node = schema_at(path);
    let bound = |key: &str| -> Value {
        let value = node[key].clone();
        assert!(!value.is_null(), "the CRD has no {key} at {path}");
        value
    };
    let at = |message: String| Expectation {
        field: path.to_owned(),
        message,
    };
    match (keyword, argument) {
        ("minLength", None) => at(format!(
            "should be at least {} chars long",
            number(&bound("minLength"))
        )),
        ("maxLength", None) => at(format!(
            "may not be more than {} bytes",
            number(&bound("maxLength"))
        )),
        ("pattern", None) => at(format!("should match '{}'", bound("pattern").as_str().unwrap())),
        ("minimum", None) => at(format!(
            "should be greater than or equal to {}",
            number(&bound("minimum"))
        )),
        ("maximum", None) => at(format!(
            "should be less than or equal to {}",
            number(&bound("maximum"))
        )),
        ("multipleOf", None) => at(format!(
            "should be a multiple of {}",
            number(&bound("multipleOf"))
        )),
        ("minItems", None) => at(format!(
            "should have at least {} items",
            number(&bound("minItems"))
        )),
        ("maxItems", None) => at(at_most(&bound("maxItems"))),
        ("maxProperties", None) => at(at_most(&bound("maxProperties"))),
        ("enum", None) => {
            let values: Vec<String> = bound("enum")
                .as_array()
                .unwrap()
                .iter()
                .map(|v| format!("\"{}\"", v.as_str().unwrap()))
                .collect();
            at(format!("supported values: {}", values.join(", ")))
        }
        ("required", Some(field)) => {
            assert!(
                bound("required").as_array().unwrap().contains(&json!(field)),
                "{field} is not required at {path}"
            );
            Expectation {
                field: format!("{path}.{field}"),
                message: "Required value".to_owned(),
            }
        }
        ("rule", Some(index)) => {
            let rules = bound("x-kubernetes-validations");
            let rule = &rules[index.parse::<usize>().unwrap()];
            assert!(!rule.is_null(), "no rule {index} at {path}");
            // A rule with a `fieldPath` reports on that field, relative to where it sits.
            let base = if path == "root" { "" } else { path };
            let field = match rule["fieldPath"].as_str() {
                Some(relative) => format!("{base}{relative}").trim_start_matches('.').to_owned(),
                None => base.to_owned(),
            };
            Expectation {
                field,
                message: rule["message"].as_str().unwrap().to_owned(),
            }
        }
        ("listMapKeys", None) => {
            bound("x-kubernetes-list-map-keys");
            Expectation {
                field: format!("{path}[]"),
                message: "Duplicate value".to_owned(),
            }
        }
        _ => panic!("unknown bound {id}"),
    }
}

/// Every bound and rule of the `spec` schema, as [`BoundId`]s.
fn crd_bounds() -> BTreeSet<String> {
    fn walk(node: &Value, path: &str, out: &mut BTreeSet<String>) {
        for keyword in [
            "minLength",
            "maxLength",
            "pattern",
            "minimum",
            "maximum",
            "multipleOf",
            "minItems",
            "maxItems",
            "maxProperties",
            "enum",
        ] {
            if node.get(keyword).is_some() {
                out.insert(format!("{path} {keyword}"));
            }
        }
        if node.get("x-kubernetes-list-map-keys").is_some() {
            out.insert(format!("{path} listMapKeys"));
        }
        for field in node["required"].as_array().into_iter().flatten() {
            out.insert(format!("{path} required {}", field.as_str().unwrap()));
        }
        let rules = node["x-kubernetes-validations"].as_array();
        for index in 0..rules.map_or(0, Vec::len) {
            out.insert(format!("{path} rule {index}"));
        }
        for (name, child) in node["properties"].as_object().into_iter().flatten() {
            walk(child, &format!("{path}.{name}"), out);
        }
        if node["items"].is_object() {
            walk(&node["items"], &format!("{path}[]"), out);
        }
        if node["additionalProperties"].is_object() {
            assert!(
                node["additionalProperties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .all(|k| k == "type"),
                "{path}: bounds on map values are not covered by this test file yet"
            );
        }
    }
    let mut out = BTreeSet::new();
    walk(&spec_schema(), "spec", &mut out);
    let root_rules = root_schema()["x-kubernetes-validations"]
        .as_array()
        .map_or(0, Vec::len);
    for index in 0..root_rules {
        out.insert(format!("root rule {index}"));
    }
    out
}

/// Whether the manifest is created as mutated, or created valid and then updated to it (for
/// transition rules such as immutability).
#[derive(Clone, Copy)]
enum Op {
    Create,
    Update,
}

/// Sets `value` at a `/`-separated path (numbers index arrays), creating missing objects.
fn set(manifest: &mut Value, path: &str, value: Value) {
    let mut node = manifest;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len() - 1] {
        node = match part.parse::<usize>() {
            Ok(index) => &mut node[index],
            Err(_) => {
                if node.get(*part).is_none() {
                    node[*part] = json!({});
                }
                &mut node[*part]
            }
        };
    }
    let last = parts[parts.len() - 1];
    match last.parse::<usize>() {
        Ok(index) => node[index] = value,
        Err(_) => node[last] = value,
    }
}

fn remove(manifest: &mut Value, path: &str) {
    let (parent, last) = path.rsplit_once('/').unwrap();
    let removed = manifest
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(last));
    assert!(removed.is_some(), "{path} not in the manifest");
}

fn push(manifest: &mut Value, path: &str, value: Value) {
    manifest
        .pointer_mut(path)
        .and_then(Value::as_array_mut)
        .unwrap_or_else(|| panic!("{path} is no array"))
        .push(value);
}

fn long(n: usize) -> String {
    "a".repeat(n)
}

/// Applies `op` with the mutated minimal manifest and checks the API server refuses it with the
/// bound's message on the bound's field.
async fn assert_refused(id: BoundId, op: Op, mutate: impl FnOnce(&mut Value)) {
    let expected = expectation(id);
    let (_, client, ns) = setup("crd-bound").await;
    let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource());
    let original = minimal_example();
    let mut bad = original.clone();
    mutate(&mut bad);
    assert_ne!(bad, original, "{id}: the mutation changed nothing");

    let result = match op {
        Op::Create => api.create(&PostParams::default(), &object(bad)).await,
        Op::Update => {
            let created = api
                .create(&PostParams::default(), &object(original))
                .await
                .unwrap();
            let mut bad = object(bad);
            bad.metadata.resource_version = created.metadata.resource_version;
            api.replace(
                created.metadata.name.as_deref().unwrap(),
                &PostParams::default(),
                &bad,
            )
            .await
        }
    };
    assert_invalid(id, result, &expected);
}

/// Checks the API server answered 422 Invalid with a cause on `expected.field` containing
/// `expected.message`.
fn assert_invalid(id: &str, result: kube::Result<DynamicObject>, expected: &Expectation) {
    let status = match result {
        Err(kube::Error::Api(status)) => status,
        Err(other) => panic!("{id}: expected 422 Invalid, got {other}"),
        Ok(_) => panic!("{id}: the API server accepted the bad manifest"),
    };
    assert_eq!(status.code, 422, "{id}: {status:?}");
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    let matching = causes.iter().any(|cause| {
        normalize_field(&cause.field) == expected.field && cause.message.contains(&expected.message)
    });
    assert!(
        matching,
        "{id}: expected a cause on {} containing {:?}; got: {}",
        expected.field, expected.message, status.message
    );
}

/// `spec.secrets[3].env` -> `spec.secrets[].env`.
fn normalize_field(field: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Declares one `#[tokio::test]` per bound and the list of tested bounds.
macro_rules! refused {
    ($($test:ident: $op:ident $id:literal => $mutate:expr;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                assert_refused($id, Op::$op, $mutate).await;
            }
        )*
        const TESTED: &[BoundId] = &[$($id),*];
    };
}

#[test]
fn every_bound_and_rule_has_a_test() {
    let in_crd = crd_bounds();
    let tested: BTreeSet<String> = TESTED.iter().map(|id| (*id).to_owned()).collect();
    let untested: Vec<_> = in_crd.difference(&tested).collect();
    let unknown: Vec<_> = tested.difference(&in_crd).collect();
    assert!(
        untested.is_empty(),
        "bounds in the CRD without a test: {untested:#?}"
    );
    assert!(
        unknown.is_empty(),
        "tests of bounds the CRD does not have: {unknown:#?}"
    );
    // Each expectation resolves against the CRD.
    for id in TESTED {
        expectation(id);
    }
}

#[test]
fn normalizes_indices_in_field_paths() {
    assert_eq!(normalize_field("spec.secrets[12].env"), "spec.secrets[].env");
    assert_eq!(normalize_field("spec.a[0].b[1]"), "spec.a[].b[]");
    assert_eq!(normalize_field("spec.project"), "spec.project");
}

const LIVENESS: &str = "/spec/service/probes/liveness";
const STARTUP: &str = "/spec/service/probes/startup";

fn probe(path: &str, field: &str, value: Value) -> impl FnOnce(&mut Value) {
    let path = path.to_owned();
    let field = field.to_owned();
    move |m| set(m, &path, json!({"path": "/health", field: value}))
}

fn user_managed(locations: Value) -> impl FnOnce(&mut Value) {
    move |m| {
        set(
            m,
            "/spec/secretPolicy",
            json!({"replication": "UserManaged", "replicaLocations": locations}),
        )
    }
}

fn add_secret(secret: Value) -> impl FnOnce(&mut Value) {
    move |m| push(m, "/spec/secrets", secret)
}

fn config(config: Value) -> impl FnOnce(&mut Value) {
    move |m| set(m, "/spec/config", config)
}

fn interfaces(list: Value) -> impl FnOnce(&mut Value) {
    move |m| set(m, "/spec/service/vpcAccess", json!({"networkInterfaces": list}))
}

fn entries(prefix: &str, n: usize, value: &str) -> Value {
    (0..n)
        .map(|i| (format!("{prefix}{i}"), json!(value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

refused! {
    // spec
    spec_requires_project: Create "spec required project" => |m| remove(m, "/spec/project");
    spec_requires_region: Create "spec required region" => |m| remove(m, "/spec/region");
    spec_requires_service: Create "spec required service" => |m| remove(m, "/spec/service");
    secret_env_not_in_plain_env: Create "spec rule 0" =>
        |m| set(m, "/spec/service/env", json!({"OPENAI_API_KEY": "sk-plain"}));
    deletion_policy_secrets_enum: Create "spec.deletionPolicy.secrets enum" =>
        |m| set(m, "/spec/deletionPolicy/secrets", json!("Orphan"));
    deletion_policy_service_enum: Create "spec.deletionPolicy.service enum" =>
        |m| set(m, "/spec/deletionPolicy/service", json!("Orphan"));

    // project and region
    project_min_length: Create "spec.project minLength" => |m| set(m, "/spec/project", json!("abcde"));
    project_max_length: Create "spec.project maxLength" =>
        |m| set(m, "/spec/project", json!(format!("{}.com:my-project", long(60))));
    project_pattern: Create "spec.project pattern" => |m| set(m, "/spec/project", json!("My-Project"));
    project_immutable: Update "spec.project rule 0" => |m| set(m, "/spec/project", json!("other-project"));
    region_min_length: Create "spec.region minLength" => |m| set(m, "/spec/region", json!(""));
    region_max_length: Create "spec.region maxLength" => |m| set(m, "/spec/region", json!(long(64)));
    region_pattern: Create "spec.region pattern" => |m| set(m, "/spec/region", json!("US-CENTRAL1"));
    region_immutable: Update "spec.region rule 0" => |m| set(m, "/spec/region", json!("europe-west1"));

    // secretPolicy
    replica_locations_match_replication: Create "spec.secretPolicy rule 0" =>
        |m| set(m, "/spec/secretPolicy", json!({"replication": "UserManaged"}));
    keep_enabled_versions_minimum: Create "spec.secretPolicy.keepEnabledVersions minimum" =>
        |m| set(m, "/spec/secretPolicy/keepEnabledVersions", json!(0));
    keep_enabled_versions_maximum: Create "spec.secretPolicy.keepEnabledVersions maximum" =>
        |m| set(m, "/spec/secretPolicy/keepEnabledVersions", json!(101));
    secret_labels_max_properties: Create "spec.secretPolicy.labels maxProperties" =>
        |m| set(m, "/spec/secretPolicy/labels", entries("label", 33, "x"));
    replica_locations_min_items: Create "spec.secretPolicy.replicaLocations minItems" =>
        user_managed(json!([]));
    replica_locations_max_items: Create "spec.secretPolicy.replicaLocations maxItems" =>
        user_managed(json!(vec!["us-east1"; 17]));
    replica_location_pattern: Create "spec.secretPolicy.replicaLocations[] pattern" =>
        user_managed(json!(["US"]));
    replication_enum: Create "spec.secretPolicy.replication enum" =>
        |m| set(m, "/spec/secretPolicy/replication", json!("Manual"));

    // secrets
    secrets_max_items: Create "spec.secrets maxItems" => |m| set(
        m,
        "/spec/secrets",
        (0..65).map(|i| json!({"env": format!("KEY_{i}"), "generate": {}})).collect(),
    );
    secret_ids_unique: Create "spec.secrets rule 0" =>
        // Same default id as OPENAI_API_KEY (the service name and `openai-api-key`), though the env names differ.
        add_secret(json!({"env": "openai_api_key", "generate": {}}));
    secret_envs_unique: Create "spec.secrets listMapKeys" =>
        add_secret(json!({"env": "OPENAI_API_KEY", "secretId": "another-id", "generate": {}}));
    secret_requires_env: Create "spec.secrets[] required env" =>
        |m| remove(m, "/spec/secrets/1/env");
    secret_has_one_source: Create "spec.secrets[] rule 0" =>
        |m| set(m, "/spec/secrets/1/generate", json!({}));
    secret_env_min_length: Create "spec.secrets[].env minLength" =>
        |m| set(m, "/spec/secrets/0/env", json!(""));
    secret_env_max_length: Create "spec.secrets[].env maxLength" =>
        |m| set(m, "/spec/secrets/0/env", json!(long(254)));
    secret_env_pattern: Create "spec.secrets[].env pattern" =>
        |m| set(m, "/spec/secrets/0/env", json!("1MASTER_KEY"));
    secret_env_not_reserved: Create "spec.secrets[].env rule 0" =>
        |m| set(m, "/spec/secrets/0/env", json!("PORT"));
    external_version_min_length: Create "spec.secrets[].external.version minLength" =>
        add_secret(json!({"env": "EXTERNAL_KEY", "external": {"version": ""}}));
    external_version_max_length: Create "spec.secrets[].external.version maxLength" =>
        add_secret(json!({"env": "EXTERNAL_KEY", "external": {"version": "1".repeat(21)}}));
    external_version_pattern: Create "spec.secrets[].external.version pattern" =>
        add_secret(json!({"env": "EXTERNAL_KEY", "external": {"version": "v1"}}));
    from_secret_requires_key: Create "spec.secrets[].fromSecret required key" =>
        |m| remove(m, "/spec/secrets/1/fromSecret/key");
    from_secret_requires_name: Create "spec.secrets[].fromSecret required name" =>
        |m| remove(m, "/spec/secrets/1/fromSecret/name");
    from_secret_key_min_length: Create "spec.secrets[].fromSecret.key minLength" =>
        |m| set(m, "/spec/secrets/1/fromSecret/key", json!(""));
    from_secret_key_max_length: Create "spec.secrets[].fromSecret.key maxLength" =>
        |m| set(m, "/spec/secrets/1/fromSecret/key", json!(long(254)));
    from_secret_key_pattern: Create "spec.secrets[].fromSecret.key pattern" =>
        |m| set(m, "/spec/secrets/1/fromSecret/key", json!("openai api key"));
    from_secret_name_min_length: Create "spec.secrets[].fromSecret.name minLength" =>
        |m| set(m, "/spec/secrets/1/fromSecret/name", json!(""));
    from_secret_name_max_length: Create "spec.secrets[].fromSecret.name maxLength" =>
        |m| set(m, "/spec/secrets/1/fromSecret/name", json!(long(254)));
    from_secret_name_pattern: Create "spec.secrets[].fromSecret.name pattern" =>
        |m| set(m, "/spec/secrets/1/fromSecret/name", json!("LiteLLM_Minimal"));
    generate_length_minimum: Create "spec.secrets[].generate.length minimum" =>
        |m| set(m, "/spec/secrets/0/generate/length", json!(15));
    generate_length_maximum: Create "spec.secrets[].generate.length maximum" =>
        |m| set(m, "/spec/secrets/0/generate/length", json!(4097));
    generate_prefix_max_length: Create "spec.secrets[].generate.prefix maxLength" =>
        |m| set(m, "/spec/secrets/0/generate/prefix", json!(long(33)));
    generate_prefix_pattern: Create "spec.secrets[].generate.prefix pattern" =>
        |m| set(m, "/spec/secrets/0/generate/prefix", json!("sk/"));
    generate_rotation_max_length: Create "spec.secrets[].generate.rotation maxLength" =>
        |m| set(m, "/spec/secrets/0/generate/rotation", json!(long(64)));
    generate_rotation_pattern: Create "spec.secrets[].generate.rotation pattern" =>
        |m| set(m, "/spec/secrets/0/generate/rotation", json!("next week"));
    salt_key_never_rotates: Create "spec.secrets[] rule 1" =>
        add_secret(json!({"env": "LITELLM_SALT_KEY", "generate": {"rotation": "2026-12-01"}}));
    secret_id_min_length: Create "spec.secrets[].secretId minLength" =>
        |m| set(m, "/spec/secrets/0/secretId", json!(""));
    secret_id_max_length: Create "spec.secrets[].secretId maxLength" =>
        |m| set(m, "/spec/secrets/0/secretId", json!(long(256)));
    secret_id_pattern: Create "spec.secrets[].secretId pattern" =>
        |m| set(m, "/spec/secrets/0/secretId", json!("master.key"));

    // config
    config_has_one_source: Create "spec.config rule 0" => config(json!({}));
    config_map_requires_key: Create "spec.config.configMapKeyRef required key" =>
        config(json!({"configMapKeyRef": {"name": "litellm-config"}}));
    config_map_requires_name: Create "spec.config.configMapKeyRef required name" =>
        config(json!({"configMapKeyRef": {"key": "config.yaml"}}));
    config_map_key_min_length: Create "spec.config.configMapKeyRef.key minLength" =>
        config(json!({"configMapKeyRef": {"name": "litellm-config", "key": ""}}));
    config_map_key_max_length: Create "spec.config.configMapKeyRef.key maxLength" =>
        config(json!({"configMapKeyRef": {"name": "litellm-config", "key": long(254)}}));
    config_map_key_pattern: Create "spec.config.configMapKeyRef.key pattern" =>
        config(json!({"configMapKeyRef": {"name": "litellm-config", "key": "config yaml"}}));
    config_map_name_min_length: Create "spec.config.configMapKeyRef.name minLength" =>
        config(json!({"configMapKeyRef": {"name": "", "key": "config.yaml"}}));
    config_map_name_max_length: Create "spec.config.configMapKeyRef.name maxLength" =>
        config(json!({"configMapKeyRef": {"name": long(254), "key": "config.yaml"}}));
    config_map_name_pattern: Create "spec.config.configMapKeyRef.name pattern" =>
        config(json!({"configMapKeyRef": {"name": "LiteLLM_Config", "key": "config.yaml"}}));
    config_inline_min_length: Create "spec.config.inline minLength" => config(json!({"inline": ""}));
    config_inline_max_length: Create "spec.config.inline maxLength" =>
        config(json!({"inline": format!("general_settings: {{note: {}}}", long(65536))}));
    config_secret_id_min_length: Create "spec.config.secretId minLength" =>
        config(json!({"inline": "model_list: []", "secretId": ""}));
    config_secret_id_max_length: Create "spec.config.secretId maxLength" =>
        config(json!({"inline": "model_list: []", "secretId": long(256)}));
    config_secret_id_pattern: Create "spec.config.secretId pattern" =>
        config(json!({"inline": "model_list: []", "secretId": "config.yaml"}));

    // service
    service_requires_image: Create "spec.service required image" =>
        |m| remove(m, "/spec/service/image");
    service_requires_service_account: Create "spec.service required serviceAccount" =>
        |m| remove(m, "/spec/service/serviceAccount");
    service_name_immutable: Update "root rule 0" =>
        // Unset (the service is metadata.name) to another name: another Cloud Run service.
        |m| set(m, "/spec/service/name", json!("litellm-renamed"));
    cloud_sql_instances_max_items: Create "spec.service.cloudSqlInstances maxItems" =>
        |m| set(m, "/spec/service/cloudSqlInstances", json!(vec!["my-project:us-central1:db"; 11]));
    cloud_sql_instance_pattern: Create "spec.service.cloudSqlInstances[] pattern" =>
        |m| set(m, "/spec/service/cloudSqlInstances", json!(["db"]));
    env_max_properties: Create "spec.service.env maxProperties" =>
        |m| set(m, "/spec/service/env", entries("VAR_", 201, "x"));
    env_names_valid: Create "spec.service.env rule 0" =>
        |m| set(m, "/spec/service/env", json!({"1VAR": "x"}));
    env_names_not_reserved: Create "spec.service.env rule 1" =>
        |m| set(m, "/spec/service/env", json!({"K_SERVICE": "x"}));
    image_min_length: Create "spec.service.image minLength" =>
        |m| set(m, "/spec/service/image", json!(""));
    image_max_length: Create "spec.service.image maxLength" =>
        |m| set(m, "/spec/service/image", json!(long(1025)));
    ingress_enum: Create "spec.service.ingress enum" =>
        |m| set(m, "/spec/service/ingress", json!("Everywhere"));
    service_labels_max_properties: Create "spec.service.labels maxProperties" =>
        |m| set(m, "/spec/service/labels", entries("label", 33, "x"));
    service_name_min_length: Create "spec.service.name minLength" =>
        |m| set(m, "/spec/service/name", json!(""));
    service_name_max_length: Create "spec.service.name maxLength" =>
        |m| set(m, "/spec/service/name", json!(long(50)));
    service_name_pattern: Create "spec.service.name pattern" =>
        |m| set(m, "/spec/service/name", json!("LiteLLM"));
    port_minimum: Create "spec.service.port minimum" => |m| set(m, "/spec/service/port", json!(0));
    port_maximum: Create "spec.service.port maximum" => |m| set(m, "/spec/service/port", json!(65536));

    // probes
    liveness_failure_threshold_minimum: Create "spec.service.probes.liveness.failureThreshold minimum" =>
        probe(LIVENESS, "failureThreshold", json!(0));
    liveness_failure_threshold_maximum: Create "spec.service.probes.liveness.failureThreshold maximum" =>
        probe(LIVENESS, "failureThreshold", json!(101));
    liveness_initial_delay_minimum: Create "spec.service.probes.liveness.initialDelaySeconds minimum" =>
        probe(LIVENESS, "initialDelaySeconds", json!(-1));
    liveness_initial_delay_maximum: Create "spec.service.probes.liveness.initialDelaySeconds maximum" =>
        probe(LIVENESS, "initialDelaySeconds", json!(241));
    liveness_path_min_length: Create "spec.service.probes.liveness.path minLength" =>
        |m| set(m, LIVENESS, json!({"path": ""}));
    liveness_path_max_length: Create "spec.service.probes.liveness.path maxLength" =>
        |m| set(m, LIVENESS, json!({"path": format!("/{}", long(1024))}));
    liveness_path_pattern: Create "spec.service.probes.liveness.path pattern" =>
        |m| set(m, LIVENESS, json!({"path": "health"}));
    liveness_period_minimum: Create "spec.service.probes.liveness.periodSeconds minimum" =>
        probe(LIVENESS, "periodSeconds", json!(0));
    liveness_period_maximum: Create "spec.service.probes.liveness.periodSeconds maximum" =>
        probe(LIVENESS, "periodSeconds", json!(241));
    liveness_timeout_minimum: Create "spec.service.probes.liveness.timeoutSeconds minimum" =>
        probe(LIVENESS, "timeoutSeconds", json!(0));
    liveness_timeout_maximum: Create "spec.service.probes.liveness.timeoutSeconds maximum" =>
        probe(LIVENESS, "timeoutSeconds", json!(241));
    startup_type_enum: Create "spec.service.probes.startup.type enum" =>
        |m| set(m, STARTUP, json!({"type": "GRPC"}));
    startup_failure_threshold_minimum: Create "spec.service.probes.startup.failureThreshold minimum" =>
        probe(STARTUP, "failureThreshold", json!(0));
    startup_failure_threshold_maximum: Create "spec.service.probes.startup.failureThreshold maximum" =>
        probe(STARTUP, "failureThreshold", json!(101));
    startup_initial_delay_minimum: Create "spec.service.probes.startup.initialDelaySeconds minimum" =>
        probe(STARTUP, "initialDelaySeconds", json!(-1));
    startup_initial_delay_maximum: Create "spec.service.probes.startup.initialDelaySeconds maximum" =>
        probe(STARTUP, "initialDelaySeconds", json!(241));
    startup_path_min_length: Create "spec.service.probes.startup.path minLength" =>
        |m| set(m, STARTUP, json!({"path": ""}));
    startup_path_max_length: Create "spec.service.probes.startup.path maxLength" =>
        |m| set(m, STARTUP, json!({"path": format!("/{}", long(1024))}));
    startup_path_pattern: Create "spec.service.probes.startup.path pattern" =>
        |m| set(m, STARTUP, json!({"path": "/health check"}));
    startup_period_minimum: Create "spec.service.probes.startup.periodSeconds minimum" =>
        probe(STARTUP, "periodSeconds", json!(0));
    startup_period_maximum: Create "spec.service.probes.startup.periodSeconds maximum" =>
        probe(STARTUP, "periodSeconds", json!(241));
    startup_timeout_minimum: Create "spec.service.probes.startup.timeoutSeconds minimum" =>
        probe(STARTUP, "timeoutSeconds", json!(0));
    startup_timeout_maximum: Create "spec.service.probes.startup.timeoutSeconds maximum" =>
        probe(STARTUP, "timeoutSeconds", json!(241));

    // request timeout, resources, scaling
    request_timeout_minimum: Create "spec.service.requestTimeoutSeconds minimum" =>
        |m| set(m, "/spec/service/requestTimeoutSeconds", json!(0));
    request_timeout_maximum: Create "spec.service.requestTimeoutSeconds maximum" =>
        |m| set(m, "/spec/service/requestTimeoutSeconds", json!(3601));
    cpu_min_length: Create "spec.service.resources.cpu minLength" =>
        |m| set(m, "/spec/service/resources/cpu", json!(""));
    cpu_max_length: Create "spec.service.resources.cpu maxLength" =>
        |m| set(m, "/spec/service/resources/cpu", json!("1.0000000"));
    cpu_pattern: Create "spec.service.resources.cpu pattern" =>
        |m| set(m, "/spec/service/resources/cpu", json!("9"));
    cpu_minimum: Create "spec.service.resources.cpu minimum" =>
        |m| set(m, "/spec/service/resources/cpu", json!(0));
    cpu_maximum: Create "spec.service.resources.cpu maximum" =>
        // `cpu: 9` unquoted: the number form keeps the bound the pattern sets for strings.
        |m| set(m, "/spec/service/resources/cpu", json!(9));
    memory_minimum: Create "spec.service.resources.memory minimum" =>
        |m| set(m, "/spec/service/resources/memory", json!(64 << 20));
    memory_maximum: Create "spec.service.resources.memory maximum" =>
        |m| set(m, "/spec/service/resources/memory", json!(64_u64 << 30));
    memory_multiple_of: Create "spec.service.resources.memory multipleOf" =>
        |m| set(m, "/spec/service/resources/memory", json!((512 << 20) + 1));
    memory_min_length: Create "spec.service.resources.memory minLength" =>
        |m| set(m, "/spec/service/resources/memory", json!("1"));
    memory_max_length: Create "spec.service.resources.memory maxLength" =>
        |m| set(m, "/spec/service/resources/memory", json!("10000000000Mi"));
    memory_pattern: Create "spec.service.resources.memory pattern" =>
        |m| set(m, "/spec/service/resources/memory", json!("2GB"));
    scaling_min_not_above_max: Create "spec.service.scaling rule 0" =>
        |m| set(m, "/spec/service/scaling", json!({"minInstances": 5, "maxInstances": 2}));
    concurrency_minimum: Create "spec.service.scaling.concurrency minimum" =>
        |m| set(m, "/spec/service/scaling/concurrency", json!(0));
    concurrency_maximum: Create "spec.service.scaling.concurrency maximum" =>
        |m| set(m, "/spec/service/scaling/concurrency", json!(1001));
    max_instances_minimum: Create "spec.service.scaling.maxInstances minimum" =>
        |m| set(m, "/spec/service/scaling/maxInstances", json!(0));
    max_instances_maximum: Create "spec.service.scaling.maxInstances maximum" =>
        |m| set(m, "/spec/service/scaling/maxInstances", json!(1001));
    min_instances_minimum: Create "spec.service.scaling.minInstances minimum" =>
        |m| set(m, "/spec/service/scaling/minInstances", json!(-1));
    min_instances_maximum: Create "spec.service.scaling.minInstances maximum" =>
        |m| set(m, "/spec/service/scaling", json!({"minInstances": 1001, "maxInstances": 1000}));
    service_account_min_length: Create "spec.service.serviceAccount minLength" =>
        |m| set(m, "/spec/service/serviceAccount", json!("ab"));
    service_account_max_length: Create "spec.service.serviceAccount maxLength" =>
        |m| set(m, "/spec/service/serviceAccount", json!(format!("{}@p.iam.gserviceaccount.com", long(230))));
    service_account_pattern: Create "spec.service.serviceAccount pattern" =>
        |m| set(m, "/spec/service/serviceAccount", json!("litellm@example.com"));

    // vpcAccess
    vpc_access_one_kind: Create "spec.service.vpcAccess rule 0" =>
        |m| set(m, "/spec/service/vpcAccess", json!({"egress": "AllTraffic"}));
    vpc_connector_min_length: Create "spec.service.vpcAccess.connector minLength" =>
        |m| set(m, "/spec/service/vpcAccess", json!({"connector": ""}));
    vpc_connector_max_length: Create "spec.service.vpcAccess.connector maxLength" =>
        |m| set(m, "/spec/service/vpcAccess", json!({"connector": long(513)}));
    vpc_egress_enum: Create "spec.service.vpcAccess.egress enum" =>
        |m| set(m, "/spec/service/vpcAccess", json!({"connector": "c", "egress": "Everything"}));
    network_interfaces_min_items: Create "spec.service.vpcAccess.networkInterfaces minItems" =>
        interfaces(json!([]));
    network_interfaces_max_items: Create "spec.service.vpcAccess.networkInterfaces maxItems" =>
        interfaces(json!([{"network": "a"}, {"network": "b"}]));
    network_min_length: Create "spec.service.vpcAccess.networkInterfaces[].network minLength" =>
        interfaces(json!([{"network": ""}]));
    network_max_length: Create "spec.service.vpcAccess.networkInterfaces[].network maxLength" =>
        interfaces(json!([{"network": long(513)}]));
    subnetwork_min_length: Create "spec.service.vpcAccess.networkInterfaces[].subnetwork minLength" =>
        interfaces(json!([{"subnetwork": ""}]));
    subnetwork_max_length: Create "spec.service.vpcAccess.networkInterfaces[].subnetwork maxLength" =>
        interfaces(json!([{"subnetwork": long(513)}]));
    network_tags_max_items: Create "spec.service.vpcAccess.networkInterfaces[].tags maxItems" =>
        interfaces(json!([{"network": "a", "tags": vec!["t"; 65]}]));
}

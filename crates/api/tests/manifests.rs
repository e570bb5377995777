//! Manifests as people write them by hand are read the way the API server stores them: unquoted quantities
//! (`cpu: 2`), and the defaults of fields left out, which serde and the CRD schema must agree on.
#![allow(clippy::unwrap_used, clippy::panic)]

use litellm_operator_api::{LiteLLMDeployment, LiteLLMDeploymentSpec, ProbeType, validate};
use serde_json::{Value, json};

fn deployment(spec_changes: impl FnOnce(&mut Value)) -> Value {
    let mut manifest = json!({
        "apiVersion": "litellm.dev/v1alpha1",
        "kind": "LiteLLMDeployment",
        "metadata": {"name": "litellm-proxy", "namespace": "llm"},
        "spec": {
            "project": "my-project",
            "region": "us-central1",
            "service": {
                "image": "ghcr.io/berriai/litellm:main-stable",
                "serviceAccount": "litellm-run@my-project.iam.gserviceaccount.com"
            },
            "secrets": [{"env": "LITELLM_MASTER_KEY", "generate": {"prefix": "sk-"}}]
        }
    });
    spec_changes(&mut manifest["spec"]);
    manifest
}

fn read(manifest: Value) -> LiteLLMDeployment {
    serde_json::from_value(manifest).unwrap()
}

fn from_yaml(yaml: &str) -> LiteLLMDeployment {
    let mut manifest = deployment(|_| {});
    let resources: Value = serde_yaml::from_str(yaml).unwrap();
    manifest["spec"]["service"]["resources"] = resources;
    read(manifest)
}

// ---------------------------------------------------------------------------------------------
// Quantities

#[test]
fn cpu_is_read_from_a_number_or_a_string() {
    let unquoted = from_yaml("cpu: 2\nmemory: 4Gi");
    assert_eq!(unquoted.spec.service.resources.cpu, "2");
    validate(&unquoted).unwrap();
    let quoted = from_yaml("cpu: \"2\"\nmemory: 4Gi");
    assert_eq!(quoted.spec, unquoted.spec);
    assert_eq!(from_yaml("cpu: 500m").spec.service.resources.cpu, "500m");
    // Serialized back as the string Cloud Run takes.
    assert_eq!(
        serde_json::to_value(&unquoted.spec.service.resources).unwrap()["cpu"],
        json!("2")
    );
}

#[test]
fn a_number_of_cpus_out_of_range_is_refused_by_validation() {
    for yaml in ["cpu: 9", "cpu: 3", "cpu: 0", "cpu: -1"] {
        let err = validate(&from_yaml(yaml)).unwrap_err();
        assert!(
            err.0.iter().any(|e| e.field == "spec.service.resources.cpu"),
            "{yaml}: {err}"
        );
    }
}

#[test]
fn memory_is_read_from_a_string_or_a_number_of_bytes() {
    assert_eq!(from_yaml("memory: 4Gi").spec.service.resources.memory, "4Gi");
    // Bytes become whole Mi, the form Cloud Run takes.
    let bytes = from_yaml("cpu: 2\nmemory: 4294967296");
    assert_eq!(bytes.spec.service.resources.memory, "4096Mi");
    validate(&bytes).unwrap();
    // Not a whole number of Mi: kept as written, and refused.
    let odd = from_yaml("memory: 1000000000");
    assert_eq!(odd.spec.service.resources.memory, "1000000000");
    let err = validate(&odd).unwrap_err();
    assert!(
        err.0.iter().any(|e| e.field == "spec.service.resources.memory"),
        "{err}"
    );
}

#[test]
fn other_types_are_not_quantities() {
    for resources in [json!({"cpu": 1.5}), json!({"cpu": true}), json!({"memory": [2]})] {
        let manifest = deployment(|spec| spec["service"]["resources"] = resources.clone());
        let err = serde_json::from_value::<LiteLLMDeployment>(manifest).unwrap_err();
        assert!(
            err.to_string().contains("Kubernetes quantity"),
            "{resources}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults

#[test]
fn a_startup_probe_without_failure_threshold_gets_240_seconds() {
    let d = read(deployment(|spec| {
        spec["service"]["probes"] = json!({"startup": {"path": "/ready"}});
    }));
    let startup = &d.spec.service.probes.startup;
    assert_eq!(startup.path, "/ready");
    assert_eq!(startup.failure_threshold, 24);
    assert_eq!(startup.period_seconds * startup.failure_threshold, 240);
    // The liveness probe keeps its own default, and both defaults hold when `probes` is left out.
    assert_eq!(d.spec.service.probes.liveness.failure_threshold, 3);
    let defaults = read(deployment(|_| {})).spec.service.probes;
    assert_eq!(defaults.startup.failure_threshold, 24);
    assert_eq!(defaults.liveness.failure_threshold, 3);
    // An explicit value wins.
    let explicit = read(deployment(|spec| {
        spec["service"]["probes"] = json!({"startup": {"path": "/ready", "failureThreshold": 5}});
    }));
    assert_eq!(explicit.spec.service.probes.startup.failure_threshold, 5);
}

#[test]
fn probes_can_be_what_cloud_run_does_without_any_no_liveness_and_a_tcp_startup() {
    let d = read(deployment(|spec| {
        spec["service"]["probes"] = json!({
            "liveness": {"enabled": false},
            "startup": {"type": "TCP", "periodSeconds": 240, "timeoutSeconds": 240, "failureThreshold": 1},
        });
    }));
    assert!(!d.spec.service.probes.liveness.enabled);
    let startup = &d.spec.service.probes.startup;
    assert_eq!(startup.kind, ProbeType::Tcp);
    assert_eq!(
        (
            startup.period_seconds,
            startup.timeout_seconds,
            startup.failure_threshold
        ),
        (240, 240, 1)
    );
    assert!(validate(&d).is_ok());
    // `enabled: true` with nothing else is LiteLLM's liveness probe.
    let on = read(deployment(|spec| {
        spec["service"]["probes"] = json!({"liveness": {"enabled": true}});
    }));
    assert_eq!(
        on.spec.service.probes.liveness,
        read(deployment(|_| {})).spec.service.probes.liveness
    );
    assert_eq!(on.spec.service.probes.liveness.path, "/health/liveliness");
}

/// Fills in schema defaults the way the API server does (structural defaulting): a missing property with a
/// `default` gets it, then every present property, defaulted or not, is defaulted in turn.
fn apply_schema_defaults(value: &mut Value, schema: &Value) {
    if let (Some(object), Some(properties)) = (
        value.as_object_mut(),
        schema.get("properties").and_then(Value::as_object),
    ) {
        for (name, property) in properties {
            if let Some(default) = property.get("default")
                && !object.contains_key(name)
            {
                object.insert(name.clone(), default.clone());
            }
        }
        for (name, child) in object.iter_mut() {
            if let Some(property) = properties.get(name) {
                apply_schema_defaults(child, property);
            }
        }
    }
    if let (Some(array), Some(items)) = (value.as_array_mut(), schema.get("items")) {
        for item in array {
            apply_schema_defaults(item, items);
        }
    }
}

/// Manifests that leave out fields with defaults at every level: the base with one object (a JSON pointer into
/// `spec`) set partly.
fn partial_specs() -> Vec<Value> {
    let changes = [
        ("/service/probes", json!({"startup": {"path": "/ready"}})),
        (
            "/service/probes",
            json!({"liveness": {"path": "/live", "periodSeconds": 30}}),
        ),
        ("/service/resources", json!({"cpu": "2"})),
        ("/service/scaling", json!({"maxInstances": 3})),
        ("/service/vpcAccess", json!({"connector": "c"})),
        (
            "/secretPolicy",
            json!({"replication": "UserManaged", "replicaLocations": ["us-east1"]}),
        ),
        ("/deletionPolicy", json!({"secrets": "Delete"})),
        ("/secrets", json!([{"env": "TAVILY_API_KEY", "external": {}}])),
    ];
    let mut specs = vec![deployment(|_| {})["spec"].clone()];
    for (pointer, value) in changes {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let mut spec = deployment(|_| {})["spec"].clone();
        spec.pointer_mut(parent).unwrap()[key] = value;
        specs.push(spec);
    }
    specs
}

/// What the API server stores for a manifest (its schema defaults) is what the operator reads (serde's defaults):
/// one default per field, not one in the schema and another in Rust.
#[test]
fn schema_defaults_equal_serde_defaults() {
    let crd = serde_json::to_value(litellm_operator_api::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    for spec in partial_specs() {
        let mut by_schema = spec.clone();
        apply_schema_defaults(&mut by_schema, schema);
        let by_serde =
            serde_json::to_value(serde_json::from_value::<LiteLLMDeploymentSpec>(spec.clone()).unwrap())
                .unwrap();
        assert_eq!(by_schema, by_serde, "for {spec}");
    }
}

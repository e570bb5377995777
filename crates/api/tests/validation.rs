//! Each class of invalid spec is refused by `validate()` with a message that names the field.
#![allow(clippy::unwrap_used, clippy::panic)]

use litellm_operator_api::{LiteLLMDeployment, validate};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "apiVersion": "litellm.dev/v1alpha1",
        "kind": "LiteLLMDeployment",
        "metadata": {"name": "litellm-proxy", "namespace": "llm"},
        "spec": {
            "project": "my-project",
            "region": "us-central1",
            "service": {
                "image": "ghcr.io/berriai/litellm:main-stable",
                "serviceAccount": "litellm-run@my-project.iam.gserviceaccount.com",
                "env": {"LITELLM_LOG": "INFO"}
            },
            "secrets": [
                {"env": "DATABASE_URL", "fromSecret": {"name": "creds", "key": "database-url"}},
                {"env": "LITELLM_MASTER_KEY", "generate": {"length": 48, "prefix": "sk-"}},
                {"env": "TAVILY_API_KEY", "external": {"version": "latest"}}
            ]
        }
    })
}

/// Applies `mutate` to the base manifest and returns the problems `validate` reports.
fn problems(mutate: impl FnOnce(&mut Value)) -> Vec<(String, String)> {
    let mut v = base();
    mutate(&mut v);
    let obj: LiteLLMDeployment = serde_json::from_value(v).unwrap();
    match validate(&obj) {
        Ok(()) => Vec::new(),
        Err(e) => e.0.into_iter().map(|f| (f.field, f.message)).collect(),
    }
}

#[track_caller]
fn refused(mutate: impl FnOnce(&mut Value), field: &str, message_part: &str) {
    let found = problems(mutate);
    assert!(
        found.iter().any(|(f, m)| f == field && m.contains(message_part)),
        "expected a problem at {field} mentioning {message_part:?}, got {found:?}"
    );
}

#[test]
fn base_is_valid() {
    assert_eq!(problems(|_| {}), Vec::<(String, String)>::new());
}

#[test]
fn project_must_be_a_project_id() {
    refused(
        |v| v["spec"]["project"] = json!("My_Project"),
        "spec.project",
        "project id",
    );
}

#[test]
fn region_must_be_a_region() {
    refused(
        |v| v["spec"]["region"] = json!("central"),
        "spec.region",
        "region",
    );
}

#[test]
fn service_name_follows_cloud_run_rules() {
    refused(
        |v| v["spec"]["service"]["name"] = json!("Litellm"),
        "spec.service.name",
        "Cloud Run service name",
    );
    refused(
        |v| v["spec"]["service"]["name"] = json!("litellm-"),
        "spec.service.name",
        "not ending with a hyphen",
    );
    refused(
        |v| v["spec"]["service"]["name"] = json!("a".repeat(50)),
        "spec.service.name",
        "at most 49",
    );
}

#[test]
fn defaulted_service_name_is_checked_against_metadata_name() {
    refused(
        |v| v["metadata"]["name"] = json!("litellm.proxy"),
        "metadata.name",
        "set spec.service.name",
    );
}

#[test]
fn image_is_required() {
    refused(
        |v| v["spec"]["service"]["image"] = json!(" "),
        "spec.service.image",
        "container image",
    );
}

#[test]
fn port_is_bounded() {
    refused(
        |v| v["spec"]["service"]["port"] = json!(70000),
        "spec.service.port",
        "1-65535",
    );
}

#[test]
fn service_account_must_be_an_email() {
    refused(
        |v| v["spec"]["service"]["serviceAccount"] = json!("litellm-run"),
        "spec.service.serviceAccount",
        "email",
    );
}

#[test]
fn cpu_and_memory_follow_cloud_run_limits() {
    refused(
        |v| v["spec"]["service"]["resources"] = json!({"cpu": "3", "memory": "4Gi"}),
        "spec.service.resources.cpu",
        "2, 4, 6 or 8",
    );
    refused(
        |v| v["spec"]["service"]["resources"] = json!({"cpu": "lots", "memory": "4Gi"}),
        "spec.service.resources.cpu",
        "CPU quantity",
    );
    refused(
        |v| v["spec"]["service"]["resources"] = json!({"cpu": "2", "memory": "64Gi"}),
        "spec.service.resources.memory",
        "32Gi",
    );
    refused(
        |v| v["spec"]["service"]["resources"] = json!({"cpu": "1", "memory": "8Gi"}),
        "spec.service.resources",
        "needs at least 2 CPU",
    );
    refused(
        |v| v["spec"]["service"]["resources"] = json!({"cpu": "8", "memory": "1Gi"}),
        "spec.service.resources",
        "needs at least 4Gi",
    );
    refused(
        |v| v["spec"]["service"]["resources"] = json!({"cpu": "500m", "memory": "512Mi"}),
        "spec.service.scaling.concurrency",
        "at least 1 CPU",
    );
}

#[test]
fn scaling_bounds_and_order() {
    refused(
        |v| v["spec"]["service"]["scaling"] = json!({"minInstances": 5, "maxInstances": 2}),
        "spec.service.scaling.minInstances",
        "exceeds maxInstances",
    );
    refused(
        |v| v["spec"]["service"]["scaling"] = json!({"concurrency": 0}),
        "spec.service.scaling.concurrency",
        "between 1 and 1000",
    );
}

#[test]
fn env_names_and_reserved_names() {
    refused(
        |v| v["spec"]["service"]["env"]["1BAD"] = json!("x"),
        "spec.service.env.1BAD",
        "[A-Za-z_]",
    );
    refused(
        |v| v["spec"]["service"]["env"]["PORT"] = json!("4000"),
        "spec.service.env.PORT",
        "reserved",
    );
    refused(
        |v| v["spec"]["secrets"][0]["env"] = json!("K_SERVICE"),
        "spec.secrets[0].env",
        "reserved",
    );
}

#[test]
fn a_secret_must_not_also_be_a_plain_env_var() {
    refused(
        |v| v["spec"]["service"]["env"]["DATABASE_URL"] = json!("postgres://..."),
        "spec.service.env.DATABASE_URL",
        "also a secret",
    );
}

#[test]
fn exactly_one_secret_source() {
    refused(
        |v| v["spec"]["secrets"][0]["generate"] = json!({"length": 32}),
        "spec.secrets[0]",
        "exactly one",
    );
    refused(
        |v| v["spec"]["secrets"][0] = json!({"env": "DATABASE_URL"}),
        "spec.secrets[0]",
        "exactly one",
    );
}

#[test]
fn env_names_and_secret_ids_are_unique() {
    refused(
        |v| v["spec"]["secrets"][1]["env"] = json!("DATABASE_URL"),
        "spec.secrets[1].env",
        "already used by spec.secrets[0]",
    );
    // secrets[0] is DATABASE_URL from a Kubernetes Secret: its default id is the service name and the env name.
    refused(
        |v| v["spec"]["secrets"][2]["secretId"] = json!("litellm-proxy-database-url"),
        "spec.secrets[2].secretId",
        "already used",
    );
}

#[test]
fn default_ids_of_owned_secrets_are_unique_per_deployment() {
    let mut v = base();
    v["spec"]["secrets"][2]["secretId"] = json!("database-url");
    let obj: LiteLLMDeployment = serde_json::from_value(v).unwrap();
    assert!(
        validate(&obj).is_ok(),
        "the runbook name no longer collides with a default"
    );
    assert_eq!(
        obj.spec.secrets[0].effective_secret_id(&obj.service_name()),
        "litellm-proxy-database-url"
    );
}

#[test]
fn secret_id_charset() {
    refused(
        |v| v["spec"]["secrets"][0]["secretId"] = json!("database.url"),
        "spec.secrets[0].secretId",
        "[A-Za-z0-9_-]",
    );
    refused(
        |v| v["spec"]["secrets"][0]["secretId"] = json!("x".repeat(256)),
        "spec.secrets[0].secretId",
        "{1,255}",
    );
}

#[test]
fn secret_sources_are_checked() {
    refused(
        |v| v["spec"]["secrets"][0]["fromSecret"]["name"] = json!("Creds"),
        "spec.secrets[0].fromSecret.name",
        "Secret name",
    );
    refused(
        |v| v["spec"]["secrets"][0]["fromSecret"]["key"] = json!("a/b"),
        "spec.secrets[0].fromSecret.key",
        "data key",
    );
    refused(
        |v| v["spec"]["secrets"][1]["generate"]["length"] = json!(8),
        "spec.secrets[1].generate.length",
        "between 16",
    );
    refused(
        |v| v["spec"]["secrets"][2]["external"]["version"] = json!("0"),
        "spec.secrets[2].external.version",
        "latest or a version",
    );
}

#[test]
fn a_config_map_reference_is_checked_like_a_secret_reference() {
    refused(
        |v| v["spec"]["config"] = json!({"configMapKeyRef": {"name": "LiteLLM", "key": "config.yaml"}}),
        "spec.config.configMapKeyRef.name",
        "\"LiteLLM\" is not a ConfigMap name",
    );
    refused(
        |v| v["spec"]["config"] = json!({"configMapKeyRef": {"name": "litellm", "key": "a/b"}}),
        "spec.config.configMapKeyRef.key",
        "\"a/b\" is not a ConfigMap data key",
    );
}

#[test]
fn a_generated_value_rotates_by_a_short_text_and_the_salt_key_never() {
    assert!(problems(|v| v["spec"]["secrets"][1]["generate"]["rotation"] = json!("2026-12-01")).is_empty());
    refused(
        |v| v["spec"]["secrets"][1]["generate"]["rotation"] = json!("next week"),
        "spec.secrets[1].generate.rotation",
        "at most 63",
    );
    refused(
        |v| v["spec"]["secrets"][1]["generate"]["rotation"] = json!("x".repeat(64)),
        "spec.secrets[1].generate.rotation",
        "at most 63",
    );
    refused(
        |v| {
            v["spec"]["secrets"][1]["env"] = json!("LITELLM_SALT_KEY");
            v["spec"]["secrets"][1]["generate"]["rotation"] = json!("1");
        },
        "spec.secrets[1].generate.rotation",
        "LITELLM_SALT_KEY is never rotated",
    );
    assert!(problems(|v| v["spec"]["secrets"][1]["env"] = json!("LITELLM_SALT_KEY")).is_empty());
}

#[test]
fn replication_locations_follow_the_mode() {
    refused(
        |v| v["spec"]["secretPolicy"] = json!({"replication": "UserManaged"}),
        "spec.secretPolicy.replicaLocations",
        "required",
    );
    refused(
        |v| v["spec"]["secretPolicy"] = json!({"replication": "Automatic", "replicaLocations": ["us-east1"]}),
        "spec.secretPolicy.replicaLocations",
        "only allowed",
    );
    assert!(
        problems(|v| v["spec"]["secretPolicy"] =
            json!({"replication": "UserManaged", "replicaLocations": ["us-east1"]}))
        .is_empty()
    );
}

#[test]
fn keep_enabled_versions_is_bounded() {
    refused(
        |v| v["spec"]["secretPolicy"] = json!({"keepEnabledVersions": 0}),
        "spec.secretPolicy.keepEnabledVersions",
        "between 1",
    );
}

#[test]
fn labels_follow_google_rules_and_reserved_keys() {
    refused(
        |v| v["spec"]["secretPolicy"] = json!({"labels": {"Team": "x"}}),
        "spec.secretPolicy.labels.Team",
        "label keys",
    );
    refused(
        |v| v["spec"]["service"]["labels"] = json!({"team": "A B"}),
        "spec.service.labels.team",
        "label values",
    );
    refused(
        |v| v["spec"]["service"]["labels"] = json!({"managed-by": "me"}),
        "spec.service.labels.managed-by",
        "set by the operator",
    );
}

#[test]
fn vpc_access_needs_one_mode() {
    refused(
        |v| v["spec"]["service"]["vpcAccess"] = json!({}),
        "spec.service.vpcAccess",
        "exactly one",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let found = problems(|v| {
        v["spec"]["project"] = json!("X");
        v["spec"]["service"]["port"] = json!(0);
        v["spec"]["secrets"][0]["secretId"] = json!("bad id");
    });
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.project", "spec.service.port", "spec.secrets[0].secretId"]
    );
}

#[test]
fn messages_never_echo_secret_values() {
    // A value accidentally put in plain env is reported by name only.
    let found =
        problems(|v| v["spec"]["service"]["env"]["DATABASE_URL"] = json!("postgres://user:hunter2@db"));
    assert!(!found.is_empty());
    assert!(
        found
            .iter()
            .all(|(f, m)| !f.contains("hunter2") && !m.contains("hunter2"))
    );
}

#[test]
fn config_needs_exactly_one_source() {
    assert_eq!(
        problems(|v| v["spec"]["config"] = json!({"inline": "model_list: []\n"})),
        Vec::<(String, String)>::new()
    );
    assert_eq!(
        problems(
            |v| v["spec"]["config"] = json!({"configMapKeyRef": {"name": "litellm", "key": "config.yaml"}})
        ),
        Vec::<(String, String)>::new()
    );
    refused(|v| v["spec"]["config"] = json!({}), "spec.config", "exactly one");
    refused(
        |v| {
            v["spec"]["config"] =
                json!({"inline": "a: 1\n", "configMapKeyRef": {"name": "litellm", "key": "config.yaml"}})
        },
        "spec.config",
        "exactly one",
    );
    refused(
        |v| v["spec"]["config"] = json!({"configMapKeyRef": {"name": "Not_A_Name", "key": "config.yaml"}}),
        "spec.config.configMapKeyRef.name",
        "not a ConfigMap name",
    );
}

#[test]
fn inline_config_must_be_litellm_yaml_and_is_never_echoed() {
    refused(
        |v| v["spec"]["config"] = json!({"inline": "general_settings:\n  master_key: sk-hunter2\n bad: [\n"}),
        "spec.config.inline",
        "not valid YAML at line 3 column 2",
    );
    refused(
        |v| v["spec"]["config"] = json!({"inline": "- sk-hunter2\n"}),
        "spec.config.inline",
        "is a list, not a mapping",
    );
    refused(
        |v| v["spec"]["config"] = json!({"inline": "model_list:\n  - model_name: demo\n"}),
        "spec.config.inline",
        "model_list[0] has no litellm_params",
    );
    let found = problems(|v| v["spec"]["config"] = json!({"inline": "a: !!int sk-hunter2\n"}));
    assert!(!found.is_empty());
    assert!(found.iter().all(|(_, m)| !m.contains("hunter2")), "{found:?}");
}

#[test]
fn the_config_secret_id_must_not_collide_with_a_secret() {
    // `CONFIG` defaults to `litellm-proxy-config`, the configuration's default id too.
    refused(
        |v| {
            v["spec"]["secrets"][1]["env"] = json!("CONFIG");
            v["spec"]["config"] = json!({"inline": "model_list: []\n"});
        },
        "spec.config",
        "already used by spec.secrets[1]",
    );
    refused(
        |v| {
            v["spec"]["config"] =
                json!({"inline": "model_list: []\n", "secretId": "litellm-proxy-database-url"})
        },
        "spec.config.secretId",
        "already used by spec.secrets[0]",
    );
    refused(
        |v| v["spec"]["config"] = json!({"inline": "model_list: []\n", "secretId": "bad id"}),
        "spec.config.secretId",
        "must match",
    );
}

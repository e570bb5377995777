//! The shipped examples parse and validate.
#![allow(clippy::unwrap_used, clippy::panic)]

use litellm_operator_api::{LiteLLMDeployment, SecretSource, validate};
use serde::Deserialize;

fn deployments(rel: &str) -> Vec<LiteLLMDeployment> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::Value::deserialize(doc).unwrap())
        .filter(|v| v["kind"] == "LiteLLMDeployment")
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
}

#[test]
fn minimal_example_validates() {
    let all = deployments("examples/minimal.yaml");
    assert_eq!(all.len(), 1);
    validate(&all[0]).unwrap();
    assert_eq!(all[0].service_name(), "litellm-minimal");
    assert_eq!(all[0].spec.service.port, 4000, "the default port is LiteLLM's");
    assert_eq!(all[0].spec.service.probes.liveness.path, "/health/liveliness");
    assert_eq!(all[0].spec.service.probes.startup.path, "/health/readiness");
}

#[test]
fn runbook_example_has_the_whole_stack_and_validates() {
    let all = deployments("examples/litellm-deployment.yaml");
    assert_eq!(all.len(), 1);
    let d = &all[0];
    validate(d).unwrap();
    let envs: Vec<&str> = d.spec.secrets.iter().map(|s| s.env.as_str()).collect();
    assert_eq!(
        envs,
        [
            "DATABASE_URL",
            "LITELLM_MASTER_KEY",
            "LITELLM_SALT_KEY",
            "UI_USERNAME",
            "UI_PASSWORD",
            "REDIS_HOST",
            "REDIS_PASSWORD",
            "LANGFUSE_SECRET_KEY",
            "LANGFUSE_PUBLIC_KEY",
            "CONTEXT7_API_KEY",
            "TAVILY_API_KEY"
        ]
    );
    let generated: Vec<&str> = d
        .spec
        .secrets
        .iter()
        .filter(|s| matches!(s.source(), Some(SecretSource::Generate(_))))
        .map(|s| s.env.as_str())
        .collect();
    assert_eq!(generated, ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"]);
    assert!(matches!(d.spec.secrets[10].source(), Some(SecretSource::External(e)) if e.version == "latest"));
    assert_eq!(
        d.spec.secrets[0].effective_secret_id(&d.service_name()),
        "database-url"
    );
    assert_eq!(d.spec.service.resources.cpu, "2");
    assert_eq!(d.spec.service.resources.memory, "4Gi");
    assert_eq!(d.spec.service.env["STORE_MODEL_IN_DB"], "True");
    assert_eq!(
        d.spec.service.env["LANGFUSE_BASE_URL"],
        "https://cloud.langfuse.com"
    );
}

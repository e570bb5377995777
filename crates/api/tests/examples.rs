//! The shipped examples parse and validate.
#![allow(clippy::unwrap_used, clippy::panic)]

use litellm_operator_api::{ConfigSource, LiteLLMDeployment, SecretSource, validate};
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
    assert_eq!(generated(d), ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"]);
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

#[test]
fn live_demo_example_has_an_inline_mock_config_and_generated_keys() {
    let all = deployments("examples/live-demo.yaml");
    assert_eq!(all.len(), 1);
    let d = &all[0];
    validate(d).unwrap();
    assert!(d.spec.service.allow_unauthenticated);
    assert_eq!(generated(d), ["LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"]);
    let config = d.spec.config.as_ref().unwrap();
    assert_eq!(
        config.effective_secret_id(&d.service_name()),
        "litellm-demo-config"
    );
    let Some(ConfigSource::Inline(text)) = config.source() else {
        panic!("the live demo's configuration is inline")
    };
    let yaml: serde_json::Value = serde_yaml::from_str(text).unwrap();
    let model = &yaml["model_list"][0];
    assert_eq!(model["model_name"], "demo");
    assert_eq!(model["litellm_params"]["model"], "openai/gpt-4o-mini");
    assert_eq!(model["litellm_params"]["api_key"], "fake-key");
    assert_eq!(model["litellm_params"]["mock_response"], "hello from the mock");
    assert_eq!(
        yaml["general_settings"]["master_key"],
        "os.environ/LITELLM_MASTER_KEY"
    );
}

/// The env names of `d`'s generated secrets, in order.
fn generated(d: &LiteLLMDeployment) -> Vec<&str> {
    d.spec
        .secrets
        .iter()
        .filter(|s| matches!(s.source(), Some(SecretSource::Generate(_))))
        .map(|s| s.env.as_str())
        .collect()
}

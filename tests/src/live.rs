//! The real LiteLLM proxy behind the emulator's Cloud Run: revisions of [`LIVE_IMAGE`] run as local LiteLLM
//! processes from the virtualenv `make litellm` installs, and the service URL answers through the emulator.
//!
//! LiteLLM cannot use a database on these machines (its Prisma engines are downloaded from a host they cannot
//! reach), so live deployments leave `DATABASE_URL` out.
#![allow(
    clippy::panic,
    reason = "a test fixture: a failed request or a missing virtualenv fails the test with its cause"
)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures::{PROJECT, REGION, RUNTIME_SA};
use crate::repo_path;

/// The image the emulator runs as a real LiteLLM process: the LiteLLM release `make litellm` installs. Other
/// images (the runbook's) keep the emulator's timer runtime.
pub const LIVE_IMAGE: &str = "ghcr.io/berriai/litellm:main-v1.80.5";

/// What a live deployment's model answers: LiteLLM's own `mock_response`, no provider needed.
pub const MOCK_ANSWER: &str = "hello from the mock";

/// The proxy configuration of a live deployment: that of `examples/live-demo.yaml` (one model, `demo`, answered by
/// the mock; the master key from the environment), so the example and the tests run the same configuration.
pub fn mock_config() -> String {
    let example = crate::fixtures::example_document("live-demo.yaml", "LiteLLMDeployment");
    example["spec"]["config"]["inline"]
        .as_str()
        .unwrap_or_else(|| panic!("examples/live-demo.yaml has no spec.config.inline"))
        .to_owned()
}

/// The `litellm` entry point of the cached virtualenv (`make litellm`); `LITELLM_BIN` overrides it.
pub fn litellm_bin() -> PathBuf {
    std::env::var_os("LITELLM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path(".venv-litellm/bin/litellm"))
}

/// The command the emulator runs for [`LIVE_IMAGE`]: LiteLLM on loopback, with its bundled price map (it would
/// fetch one at start-up otherwise). Fails the test with the fix when the virtualenv is missing.
pub fn run_command() -> String {
    let bin = litellm_bin();
    assert!(
        bin.exists(),
        "no LiteLLM at {}: run `make litellm` (a cached virtualenv with the pinned litellm[proxy])",
        bin.display()
    );
    format!(
        "env LITELLM_LOCAL_MODEL_COST_MAP=True HOST=127.0.0.1 {}",
        bin.display()
    )
}

/// [`crate::world::fast_emulator`], running [`LIVE_IMAGE`] for real.
pub fn live_emulator() -> gcp_emulator::Config {
    let mut config = crate::world::fast_emulator();
    config.run_images.insert(LIVE_IMAGE.to_owned(), run_command());
    config
}

/// A live LiteLLMDeployment named `name`: a master key from the Kubernetes Secret `keys` (key `master-key`), a
/// generated salt key, [`mock_config`] inline, reachable without a Google identity, and no database.
pub fn live_deployment(name: &str) -> Value {
    json!({
        "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
        "metadata": {"name": name},
        "spec": {
            "project": PROJECT, "region": REGION,
            "service": {
                "image": LIVE_IMAGE,
                "serviceAccount": RUNTIME_SA,
                "allowUnauthenticated": true,
            },
            "config": {"inline": mock_config()},
            "secrets": [
                {"env": "LITELLM_MASTER_KEY", "fromSecret": {"name": "keys", "key": "master-key"}},
                {"env": "LITELLM_SALT_KEY", "generate": {"length": 32, "prefix": "sk-"}}
            ]
        }
    })
}

/// One chat completion of model `demo` through `url` (the service URL) with `key`: the HTTP status and the body.
pub async fn chat(url: &str, key: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"));
    let response = client
        .post(format!("{}/v1/chat/completions", url.trim_end_matches('/')))
        .bearer_auth(key)
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}/v1/chat/completions: {e}"));
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The answer's message, when `body` is a chat completion.
pub fn answer(body: &Value) -> Option<&str> {
    body.pointer("/choices/0/message/content").and_then(Value::as_str)
}

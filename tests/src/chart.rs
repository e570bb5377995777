//! The Helm chart (`charts/litellm-operator`) for tests: helm in an isolated home, rendering, reading the rendered
//! documents, and applying them to the shared control plane with kubectl.
#![allow(
    clippy::panic,
    reason = "a test fixture: a failing helm or kubectl command fails the test with its output"
)]

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::control_plane::ControlPlane;
use crate::manifests::{install_crd, read_repo_file, repo_path, yaml_documents};
use crate::tools;

/// The chart, relative to the repository root.
pub const CHART: &str = "charts/litellm-operator";

/// The values file that turns every option on, relative to the repository root.
pub const ALL_OPTIONS: &str = "charts/litellm-operator/ci/all-options-values.yaml";

/// The chart's copy of the LiteLLMDeployment CRD, relative to the repository root.
pub const CHART_CRD: &str = "charts/litellm-operator/crds/litellmdeployments.yaml";

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs helm ([`tools::helm`]) with `args` in an isolated helm home (no user repositories or plugins).
pub fn helm(args: &[&str]) -> Output {
    let helm = tools::helm().unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("helm home: {e}"));
    Command::new(&helm)
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", helm.display()))
}

/// The chart's absolute path, as helm takes it.
pub fn chart_path() -> String {
    repo_path(CHART).to_string_lossy().into_owned()
}

/// The all-options values file's absolute path, as `--values` takes it.
pub fn all_options() -> String {
    repo_path(ALL_OPTIONS).to_string_lossy().into_owned()
}

/// `helm template RELEASE chart -n NAMESPACE ARGS...`; panics with helm's error when it fails.
pub fn template(release: &str, namespace: &str, args: &[&str]) -> String {
    let chart = chart_path();
    let mut all = vec!["template", release, &chart, "--namespace", namespace];
    all.extend_from_slice(args);
    let out = helm(&all);
    assert!(
        out.status.success(),
        "helm {all:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The rendered documents, in order.
pub fn documents(rendered: &str) -> Vec<Value> {
    yaml_documents(rendered, "rendered chart").unwrap_or_else(|e| panic!("{e}"))
}

/// The kinds of the rendered documents.
pub fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| {
            d["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("a rendered document without kind: {d}"))
                .to_owned()
        })
        .collect()
}

/// The first rendered document of `kind`.
pub fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// Every rendered document of `kind`.
pub fn all_of<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The operator container of the rendered Deployment.
pub fn container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

/// The operator container's args.
pub fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .unwrap_or_else(|| panic!("the operator container has no args"))
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap_or_else(|| panic!("an arg that is no string: {a}"))
                .to_owned()
        })
        .collect()
}

/// The operator container's env entry `name`.
pub fn env_value<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    container(docs)["env"]
        .as_array()
        .unwrap_or_else(|| panic!("the operator container has no env"))
        .iter()
        .find(|e| e["name"] == name)
}

/// The shared control plane with the chart's LiteLLMDeployment CRD installed.
pub async fn control_plane() -> &'static ControlPlane {
    let cp = ControlPlane::shared()
        .await
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    let crd = read_repo_file(CHART_CRD).unwrap_or_else(|e| panic!("{e}"));
    let client = cp.client().unwrap_or_else(|e| panic!("{e}"));
    install_crd(&client, &crd).await.unwrap_or_else(|e| panic!("{e}"));
    cp
}

/// A release name that is unique on the shared control plane (cluster-scoped RBAC objects carry it).
pub fn release_for(namespace: &str) -> String {
    format!("r{}", namespace.rsplit('-').next().unwrap_or(namespace))
}

/// `kubectl ARGS... -f -` with `input` on stdin; panics with kubectl's error (and kube-apiserver's log) when it
/// fails.
pub async fn kubectl_stdin(cp: &ControlPlane, args: &[&str], input: &str) -> String {
    let mut child = cp
        .kubectl()
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run kubectl: {e}"));
    let mut stdin = child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("kubectl has no stdin"));
    stdin
        .write_all(input.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write to kubectl: {e}"));
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("wait for kubectl: {e}"));
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}\n{}",
        text(&out.stderr),
        cp.apiserver_log_tail()
    );
    text(&out.stdout)
}

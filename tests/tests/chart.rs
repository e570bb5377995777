//! The Helm chart (`charts/litellm-operator`) with the real helm CLI and the real API server: it lints, renders
//! with the default values and with every option on, its values schema refuses bad values with a clear message,
//! its CRD is the generated one, its appVersion is the crate version, the rendered manifests pass a server-side
//! dry-run, and the ServiceAccount it creates can do exactly the operator's job, checked with `kubectl auth
//! can-i` as that account.
//!
//! helm comes from `tests/helm/build.sh` (pinned in `tests/helm/go.mod`, cached outside the repository), or
//! from `LITELLM_HELM_BIN`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use litellm_operator_tests::{ControlPlane, install_crd, repo_path, yaml_documents};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

/// The go.mod that pins helm; the single source of its version.
const HELM_GO_MOD: &str = include_str!("../helm/go.mod");

const CHART: &str = "charts/litellm-operator";
const ALL_OPTIONS: &str = "charts/litellm-operator/ci/all-options-values.yaml";

// ---------------------------------------------------------------------------------------------
// helm

/// `${LITELLM_CACHE_DIR:-$HOME/.cache/litellm-operator}`, where `tests/helm/build.sh` builds into.
fn cache_dir() -> PathBuf {
    std::env::var_os("LITELLM_CACHE_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME or LITELLM_CACHE_DIR is set"))
                .join(".cache")
                .join("litellm-operator")
        },
        PathBuf::from,
    )
}

/// The helm binary: `LITELLM_HELM_BIN`, else where `tests/helm/build.sh` puts it.
fn helm_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LITELLM_HELM_BIN") {
        return PathBuf::from(path);
    }
    let version = HELM_GO_MOD
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? == "helm.sh/helm/v3" {
                words.next()?.strip_prefix('v')
            } else {
                None
            }
        })
        .expect("tests/helm/go.mod pins helm.sh/helm/v3");
    let path = cache_dir()
        .join(format!("helm-{version}"))
        .join("bin")
        .join("helm");
    assert!(
        path.is_file(),
        "helm {version} is not built at {}: run `bash tests/helm/build.sh` first (or set LITELLM_HELM_BIN)",
        path.display()
    );
    path
}

/// Runs helm with `args` in an isolated helm home (no user repositories or plugins).
fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(helm_bin())
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template RELEASE chart -n NAMESPACE ARGS...`; panics with helm's error when it fails.
fn template(release: &str, namespace: &str, args: &[&str]) -> String {
    let chart = repo_path(CHART);
    let mut all = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
    ];
    all.extend_from_slice(args);
    let out = helm(&all);
    assert!(
        out.status.success(),
        "helm {all:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn all_options() -> String {
    repo_path(ALL_OPTIONS).to_str().unwrap().to_owned()
}

/// The rendered documents, in order.
fn documents(rendered: &str) -> Vec<Value> {
    yaml_documents(rendered, "rendered chart").unwrap()
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn all_of<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn env_value<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    container(docs)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

/// `(apiGroup, resource, verbs)` of every rule, with `resource/name` when a rule names its objects.
fn rules(role: &Value) -> BTreeSet<(String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        let names = list("resourceNames");
        for group in list("apiGroups") {
            for resource in list("resources") {
                let resource = match names.as_slice() {
                    [] => resource.clone(),
                    names => format!("{resource}/{}", names.join(",")),
                };
                out.insert((group.clone(), resource, list("verbs")));
            }
        }
    }
    out
}

fn rule(group: &str, resource: &str, verbs: &[&str]) -> (String, String, Vec<String>) {
    (
        group.to_owned(),
        resource.to_owned(),
        verbs.iter().map(|v| (*v).to_owned()).collect(),
    )
}

/// What the operator needs wherever it watches LiteLLMDeployments, and nothing else.
fn watch_rules() -> BTreeSet<(String, String, Vec<String>)> {
    [
        rule(
            "litellm.dev",
            "litellmdeployments",
            &["get", "list", "watch", "patch", "update"],
        ),
        rule("litellm.dev", "litellmdeployments/status", &["patch", "update"]),
        rule("litellm.dev", "litellmdeployments/finalizers", &["update"]),
        rule("", "secrets", &["get", "list", "watch"]),
        rule("events.k8s.io", "events", &["create", "patch"]),
        rule("", "events", &["create", "patch"]),
    ]
    .into()
}

fn lease_rules(lease: &str) -> BTreeSet<(String, String, Vec<String>)> {
    [
        rule("coordination.k8s.io", "leases", &["create"]),
        rule(
            "coordination.k8s.io",
            &format!("leases/{lease}"),
            &["get", "update"],
        ),
    ]
    .into()
}

/// Every RBAC rule in the rendered text carries a comment: in each Role/ClusterRole document, the line before
/// each `- apiGroups:` is a comment line.
fn assert_every_rule_commented(rendered: &str) {
    let mut checked = 0;
    for document in rendered.split("\n---\n") {
        let is_role = document
            .lines()
            .any(|l| l == "kind: Role" || l == "kind: ClusterRole");
        if !is_role {
            continue;
        }
        let lines: Vec<&str> = document.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                let previous = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).unwrap();
                assert!(
                    previous.trim_start().starts_with('#'),
                    "RBAC rule without a comment saying why:\n{}\n{line}",
                    previous
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no RBAC rules found in:\n{rendered}");
}

// ---------------------------------------------------------------------------------------------
// Static checks

#[test]
fn chart_lints_strictly_with_default_values_and_every_option_on() {
    let chart = repo_path(CHART);
    let chart = chart.to_str().unwrap();
    let all_options = all_options();
    for extra in [vec![], vec!["--values", all_options.as_str()]] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend(extra);
        let out = helm(&args);
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("1 chart(s) linted, 0 chart(s) failed"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn default_values_render_a_hardened_leader_elected_operator_with_cluster_wide_rbac() {
    let rendered = template("ops", "litellm-system", &[]);
    let docs = documents(&rendered);
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
        .map(str::to_owned)
        .into()
    );

    // The Deployment: two replicas, leader election, args from values, downward API for the Lease.
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["metadata"]["namespace"], "litellm-system");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ops-litellm-operator");
    assert_eq!(
        args(&docs),
        [
            "run",
            "--concurrency=8",
            "--resync-interval=10m",
            "--log-format=json",
            "--metrics-addr=0.0.0.0:8080",
            "--leader-elect",
            "--lease-name=litellm-operator",
        ]
    );
    for (name, path) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        assert_eq!(
            env_value(&docs, name).unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            path
        );
    }
    assert!(env_value(&docs, "GOOGLE_APPLICATION_CREDENTIALS").is_none());
    let container = container(&docs);
    assert_eq!(
        container["image"],
        format!(
            "ghcr.io/litellm-operator/litellm-operator:{}",
            workspace_version()
        )
    );

    // Hardening.
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // Probes on the metrics server's health endpoints.
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");

    // No Google identity configured: no Workload Identity annotation.
    let account = find(&docs, "ServiceAccount");
    assert!(account["metadata"]["annotations"].is_null(), "{account}");

    // RBAC: exactly the operator's rules, cluster-wide; the Lease only in its own namespace.
    assert_eq!(rules(find(&docs, "ClusterRole")), watch_rules());
    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "ops-litellm-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "litellm-system");
    let lease_role = find(&docs, "Role");
    assert_eq!(lease_role["metadata"]["namespace"], "litellm-system");
    assert_eq!(rules(lease_role), lease_rules("litellm-operator"));
    assert_every_rule_commented(&rendered);

    // Metrics Service and PDB select the operator's pods.
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(&find(&docs, "Service")["spec"]["selector"], selector);
    assert_eq!(
        &find(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        selector
    );
}

#[test]
fn every_option_on_renders_namespaced_rbac_workload_identity_key_file_and_optional_objects() {
    let rendered = template("ops", "litellm-system", &["--values", &all_options()]);
    let docs = documents(&rendered);
    let kinds = kinds(&docs);
    for kind in [
        "ServiceMonitor",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    assert!(!kinds.contains("ClusterRole") && !kinds.contains("ClusterRoleBinding"));

    // Args and env from values.
    assert_eq!(
        args(&docs),
        [
            "run",
            "--namespace=llm",
            "--selector=shard=a",
            "--concurrency=16",
            "--resync-interval=5m",
            "--log-format=text",
            "--metrics-addr=0.0.0.0:9090",
            "--leader-elect",
            "--lease-name=litellm-operator-shard-a",
        ]
    );
    assert_eq!(
        env_value(&docs, "RUST_LOG").unwrap()["value"],
        "info,litellm_operator=debug"
    );
    assert_eq!(env_value(&docs, "EXAMPLE").unwrap()["value"], "1");
    assert_eq!(
        container(&docs)["image"],
        "registry.example/litellm-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );

    // Google: the Workload Identity annotation next to the extra one, and the key file mounted read-only.
    let account = find(&docs, "ServiceAccount");
    assert_eq!(account["metadata"]["name"], "litellm-operator-shard-a");
    assert_eq!(
        account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "litellm-operator@my-project.iam.gserviceaccount.com"
    );
    assert_eq!(
        account["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
    let key_path = env_value(&docs, "GOOGLE_APPLICATION_CREDENTIALS").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let mount = &container(&docs)["volumeMounts"][0];
    assert_eq!(mount["readOnly"], true);
    assert_eq!(
        key_path,
        format!("{}/key.json", mount["mountPath"].as_str().unwrap())
    );
    let volume = &find(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["name"], mount["name"]);
    assert_eq!(volume["secret"]["secretName"], "litellm-operator-google-key");

    // RBAC: the operator's rules as a Role in the watched namespace only, the Lease in its own.
    let roles = all_of(&docs, "Role");
    let watched: Vec<_> = roles
        .iter()
        .filter(|r| r["metadata"]["namespace"] == "llm")
        .collect();
    assert_eq!(watched.len(), 1, "{roles:?}");
    assert_eq!(rules(watched[0]), watch_rules());
    let own: Vec<_> = roles
        .iter()
        .filter(|r| r["metadata"]["namespace"] == "litellm-system")
        .collect();
    assert_eq!(own.len(), 1, "{roles:?}");
    assert_eq!(rules(own[0]), lease_rules("litellm-operator-shard-a"));
    for binding in all_of(&docs, "RoleBinding") {
        assert_eq!(binding["subjects"][0]["name"], "litellm-operator-shard-a");
        assert_eq!(binding["subjects"][0]["namespace"], "litellm-system");
    }
    assert_every_rule_commented(&rendered);

    // ServiceMonitor scrapes the metrics Service's port; NetworkPolicy admits scrapes and the egress asked for.
    let monitor = find(&docs, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(find(&docs, "Service")["spec"]["ports"][0]["name"], "metrics");
    let policy = &find(&docs, "NetworkPolicy")["spec"];
    assert_eq!(
        policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let egress_ports: BTreeSet<i64> = policy["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().clone())
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(egress_ports, [53, 80, 443, 988, 6443].into());
}

#[test]
fn leader_election_off_renders_one_replica_without_lease_rbac() {
    let docs = documents(&template(
        "ops",
        "litellm-system",
        &["--set", "replicaCount=1", "--set", "leaderElection.enabled=false"],
    ));
    assert_eq!(find(&docs, "Deployment")["spec"]["replicas"], 1);
    assert!(
        !args(&docs)
            .iter()
            .any(|a| a.starts_with("--leader-elect") || a.starts_with("--lease-name"))
    );
    assert!(all_of(&docs, "Role").is_empty());
}

#[test]
fn values_schema_and_chart_refuse_bad_values_with_a_clear_message() {
    let chart = repo_path(CHART);
    let chart = chart.to_str().unwrap();
    // (values, what the message must contain)
    let cases: &[(&str, &[&str])] = &[
        ("replicaCount: two", &["/replicaCount", "want integer"]),
        ("replicaCount: 0", &["/replicaCount", "minimum"]),
        (
            "operator: {logFormat: xml}",
            &["/operator/logFormat", "'text', 'json'"],
        ),
        (
            "operator: {resyncInterval: 10 minutes}",
            &["/operator/resyncInterval", "does not match pattern"],
        ),
        (
            "operator: {concurrency: 0}",
            &["/operator/concurrency", "minimum"],
        ),
        (
            "operator: {watchNamespaces: [a, b]}",
            &["/operator/watchNamespaces", "maxItems"],
        ),
        (
            "operator: {watchNamespaces: [Not_A_Namespace]}",
            &["/operator/watchNamespaces/0", "does not match pattern"],
        ),
        ("replicas: 2", &["additional properties 'replicas' not allowed"]),
        (
            "google: {serviceAccount: not-an-email}",
            &["/google/serviceAccount", "does not match pattern"],
        ),
        (
            "image: {digest: latest}",
            &["/image/digest", "does not match pattern"],
        ),
        (
            "leaderElection: {enabled: false}",
            &["replicaCount > 1 needs leaderElection.enabled"],
        ),
        (
            "serviceAccount: {create: false}",
            &["serviceAccount.name is required when serviceAccount.create is false"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (values, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&file, values).unwrap();
        let out = helm(&["template", "ops", chart, "--values", file.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        if out.status.success() {
            failures.push(format!("{values:?} was accepted"));
        } else if let Some(missing) = expected.iter().find(|e| !stderr.contains(*e)) {
            failures.push(format!("{values:?}: message lacks {missing:?}:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn chart_crd_is_identical_to_the_generated_crd() {
    let generated = std::fs::read_to_string(repo_path("crds/litellmdeployments.yaml")).unwrap();
    let in_chart =
        std::fs::read_to_string(repo_path("charts/litellm-operator/crds/litellmdeployments.yaml")).unwrap();
    assert!(
        generated == in_chart,
        "charts/litellm-operator/crds/litellmdeployments.yaml differs from crds/litellmdeployments.yaml: \
         run `make generate` (or copy the file)"
    );
    // And the chart ships nothing else as a CRD.
    let entries: Vec<_> = std::fs::read_dir(repo_path("charts/litellm-operator/crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, ["litellmdeployments.yaml"]);
}

/// `[workspace.package] version` of the root Cargo.toml, after checking the operator crate inherits it.
fn workspace_version() -> String {
    let operator = std::fs::read_to_string(repo_path("crates/operator/Cargo.toml")).unwrap();
    assert!(
        operator.lines().any(|l| l.trim() == "version.workspace = true"),
        "crates/operator/Cargo.toml no longer inherits the workspace version: update this test"
    );
    let root = std::fs::read_to_string(repo_path("Cargo.toml")).unwrap();
    let mut section = "";
    for line in root.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[workspace.package]"
            && let Some(value) = line.strip_prefix("version")
        {
            let value = value.trim_start().strip_prefix('=').unwrap().trim();
            return value.trim_matches('"').to_owned();
        }
    }
    panic!("no version in [workspace.package] of Cargo.toml");
}

#[test]
fn chart_app_version_is_the_operator_crate_version() {
    let chart: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path("charts/litellm-operator/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(workspace_version().as_str()),
        "Chart.yaml appVersion must equal the workspace version in Cargo.toml"
    );
}

// ---------------------------------------------------------------------------------------------
// Against the real API server

/// A stand-in for the Prometheus Operator's ServiceMonitor CRD with the fields the chart sets, typed as that
/// API documents them, and nothing else: with strict field validation a misspelt field fails the dry-run.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [selector, endpoints]
              properties:
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                namespaceSelector:
                  type: object
                  properties:
                    matchNames: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
"#;

/// `kubectl ARGS... -f -` with `input` on stdin; panics with kubectl's error when it fails.
async fn kubectl_stdin(cp: &ControlPlane, args: &[&str], input: &str) -> String {
    let mut child = cp
        .kubectl()
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}\n{}",
        text(&out.stderr),
        cp.apiserver_log_tail()
    );
    text(&out.stdout)
}

/// The shared control plane with the LiteLLMDeployment CRD installed.
async fn control_plane() -> &'static ControlPlane {
    let cp = ControlPlane::shared().await.unwrap();
    let crd =
        std::fs::read_to_string(repo_path("charts/litellm-operator/crds/litellmdeployments.yaml")).unwrap();
    install_crd(&cp.client().unwrap(), &crd).await.unwrap();
    cp
}

/// A release name that is unique on the shared control plane (cluster-scoped RBAC objects carry it).
fn release_for(namespace: &str) -> String {
    format!("r{}", namespace.rsplit('-').next().unwrap())
}

#[tokio::test]
async fn rendered_manifests_pass_a_server_side_dry_run() {
    let cp = control_plane().await;
    install_crd(&cp.client().unwrap(), SERVICE_MONITOR_CRD)
        .await
        .unwrap();
    let own = cp.namespace("chart-dry-run").await.unwrap();
    let watched = cp.namespace("chart-dry-run-watched").await.unwrap();
    let release = release_for(&own);
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    for args in [vec![], vec!["--values", &all_options(), "--set", &watch]] {
        let rendered = template(&release, &own, &args);
        let expected = documents(&rendered).len();
        let out = kubectl_stdin(
            cp,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--validate=strict",
                "--field-manager=helm",
            ],
            &rendered,
        )
        .await;
        let accepted = out.lines().filter(|l| l.ends_with("(server dry run)")).count();
        assert_eq!(accepted, expected, "values {args:?}; kubectl said:\n{out}");
    }
}

#[tokio::test]
async fn helm_install_dry_run_against_the_api_server_prints_the_next_steps() {
    let cp = control_plane().await;
    install_crd(&cp.client().unwrap(), SERVICE_MONITOR_CRD)
        .await
        .unwrap();
    let own = cp.namespace("chart-notes").await.unwrap();
    let watched = cp.namespace("chart-notes-watched").await.unwrap();
    let release = release_for(&own);
    let chart = repo_path(CHART);
    let kubeconfig = cp.kubeconfig().to_str().unwrap().to_owned();
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    let all_options = all_options();
    let cases: [(Vec<&str>, &[&str]); 3] = [
        (
            vec![],
            &[
                "watching every namespace",
                "google.serviceAccount",
                "kubectl get llmd",
            ],
        ),
        (
            vec![
                "--set",
                "google.serviceAccount=op@my-project.iam.gserviceaccount.com",
                "--set",
                &watch,
            ],
            &[
                &format!("watching namespace {watched}"),
                "roles/iam.workloadIdentityUser",
                &format!("PROJECT_ID.svc.id.goog[{own}/{release}-litellm-operator]"),
                &format!("kubectl -n {watched} get llmd"),
            ],
        ),
        (
            vec!["--values", &all_options, "--set", &watch],
            &["key file from Secret litellm-operator-google-key"],
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "install",
            &release,
            chart.to_str().unwrap(),
            "--namespace",
            &own,
            "--dry-run=server",
            "--kubeconfig",
            &kubeconfig,
        ];
        args.extend(extra.iter().copied());
        let out = helm(&args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}",
            text(&out.stderr)
        );
        let notes = stdout
            .split("NOTES:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("no NOTES in:\n{stdout}"));
        assert!(
            notes.contains(&format!("rollout status deployment/{release}-litellm-operator")),
            "{notes}"
        );
        for e in expected {
            assert!(notes.contains(e), "NOTES lack {e:?}:\n{notes}");
        }
    }
}

/// `kubectl auth can-i VERB RESOURCE [-n NS | -A] [--subresource S]` as the chart's service account (with the
/// groups a service-account token carries).
async fn can_i(cp: &ControlPlane, account: (&str, &str), check: &Check) -> bool {
    let (namespace, name) = account;
    let user = format!("--as=system:serviceaccount:{namespace}:{name}");
    let group = format!("--as-group=system:serviceaccounts:{namespace}");
    let mut command = cp.kubectl();
    command.args([
        "auth",
        "can-i",
        check.verb,
        &check.resource,
        &user,
        "--as-group=system:serviceaccounts",
        &group,
        "--as-group=system:authenticated",
    ]);
    match &check.namespace {
        Some(ns) => command.args(["--namespace", ns]),
        None => command.arg("--all-namespaces"),
    };
    if let Some(sub) = check.subresource {
        command.arg(format!("--subresource={sub}"));
    }
    let out = command.output().await.unwrap();
    match (out.status.code(), text(&out.stdout).trim()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        _ => panic!(
            "kubectl auth can-i {check:?} failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        ),
    }
}

#[derive(Debug)]
struct Check {
    verb: &'static str,
    resource: String,
    subresource: Option<&'static str>,
    /// None: across all namespaces.
    namespace: Option<String>,
    allowed: bool,
}

fn check(allowed: bool, verb: &'static str, resource: &str, namespace: Option<&str>) -> Check {
    Check {
        verb,
        resource: resource.to_owned(),
        subresource: None,
        namespace: namespace.map(str::to_owned),
        allowed,
    }
}

fn sub(mut c: Check, subresource: &'static str) -> Check {
    c.subresource = Some(subresource);
    c
}

/// Installs the rendered chart for real (RBAC must exist for can-i), then runs every check and reports all
/// that disagree at once.
async fn install_and_check(cp: &ControlPlane, release: &str, own: &str, args: &[&str], checks: Vec<Check>) {
    let rendered = template(release, own, args);
    kubectl_stdin(cp, &["apply", "--server-side", "--field-manager=helm"], &rendered).await;
    let account = documents(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut wrong = Vec::new();
    for c in &checks {
        let got = can_i(cp, (own, &account), c).await;
        if got != c.allowed {
            wrong.push(format!(
                "{} {}{} in {}: expected {}, got {}",
                c.verb,
                c.resource,
                c.subresource.map(|s| format!("/{s}")).unwrap_or_default(),
                c.namespace.as_deref().unwrap_or("all namespaces"),
                if c.allowed { "allowed" } else { "denied" },
                if got { "allowed" } else { "denied" },
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the chart's service account {own}/{account}:\n{}",
        wrong.join("\n")
    );
}

const LLMD: &str = "litellmdeployments.litellm.dev";

/// What the operator must be able to do in a namespace it watches, and what it must not.
fn job_in(ns: &str) -> Vec<Check> {
    let n = Some(ns);
    let mut checks = Vec::new();
    for verb in ["get", "list", "watch", "patch", "update"] {
        checks.push(check(true, verb, LLMD, n));
    }
    for verb in ["patch", "update"] {
        checks.push(sub(check(true, verb, LLMD, n), "status"));
    }
    checks.push(sub(check(true, "update", LLMD, n), "finalizers"));
    for verb in ["get", "list", "watch"] {
        checks.push(check(true, verb, "secrets", n));
    }
    for events in ["events.events.k8s.io", "events"] {
        checks.push(check(true, "create", events, n));
        checks.push(check(true, "patch", events, n));
    }
    // Users create and delete LiteLLMDeployments, not the operator; Secrets are read-only to it; nothing
    // else in the namespace is its business.
    for verb in ["create", "delete", "deletecollection"] {
        checks.push(check(false, verb, LLMD, n));
    }
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        checks.push(check(false, verb, "secrets", n));
    }
    checks.push(check(false, "delete", "events", n));
    for resource in [
        "configmaps",
        "pods",
        "serviceaccounts",
        "deployments.apps",
        "roles.rbac.authorization.k8s.io",
    ] {
        checks.push(check(false, "create", resource, n));
    }
    checks.push(check(false, "get", "configmaps", n));
    checks.push(check(false, "create", "serviceaccounts/token", n));
    checks.push(check(false, "impersonate", "serviceaccounts", n));
    checks
}

/// Leader election in the operator's own namespace: only its Lease, never delete.
fn lease_checks(own: &str, elsewhere: &str, lease: &str) -> Vec<Check> {
    let named = format!("leases.coordination.k8s.io/{lease}");
    vec![
        check(true, "create", "leases.coordination.k8s.io", Some(own)),
        check(true, "get", &named, Some(own)),
        check(true, "update", &named, Some(own)),
        check(false, "delete", &named, Some(own)),
        check(
            false,
            "get",
            "leases.coordination.k8s.io/someone-elses-lease",
            Some(own),
        ),
        check(
            false,
            "update",
            "leases.coordination.k8s.io/someone-elses-lease",
            Some(own),
        ),
        check(false, "list", "leases.coordination.k8s.io", Some(own)),
        check(false, "create", "leases.coordination.k8s.io", Some(elsewhere)),
        check(false, "update", &named, Some(elsewhere)),
    ]
}

#[tokio::test]
async fn cluster_wide_service_account_can_do_its_job_everywhere_and_nothing_more() {
    let cp = control_plane().await;
    let own = cp.namespace("chart-rbac").await.unwrap();
    let other = cp.namespace("chart-rbac-other").await.unwrap();
    let release = release_for(&own);
    let mut checks = job_in(&other);
    checks.extend(job_in(&own));
    checks.extend(lease_checks(&own, &other, "litellm-operator"));
    // Cluster-wide watches need list/watch across namespaces.
    for (verb, resource) in [
        ("list", LLMD),
        ("watch", LLMD),
        ("list", "secrets"),
        ("watch", "secrets"),
    ] {
        checks.push(check(true, verb, resource, None));
    }
    checks.push(check(false, "delete", "secrets", None));
    checks.push(check(
        false,
        "create",
        "clusterrolebindings.rbac.authorization.k8s.io",
        None,
    ));
    checks.push(check(
        false,
        "create",
        "customresourcedefinitions.apiextensions.k8s.io",
        None,
    ));
    checks.push(check(false, "list", "nodes", None));
    install_and_check(cp, &release, &own, &[], checks).await;
}

#[tokio::test]
async fn namespaced_service_account_reads_secrets_only_in_the_watched_namespace() {
    let cp = control_plane().await;
    let own = cp.namespace("chart-rbac-ns").await.unwrap();
    let watched = cp.namespace("chart-rbac-ns-watched").await.unwrap();
    let other = cp.namespace("chart-rbac-ns-other").await.unwrap();
    let release = release_for(&own);
    let mut checks = job_in(&watched);
    checks.extend(lease_checks(&own, &watched, "litellm-operator"));
    // Nothing outside the watched namespace: not another namespace, not its own, not cluster-wide.
    for ns in [&other, &own] {
        for (verb, resource) in [
            ("get", "secrets"),
            ("list", "secrets"),
            ("watch", "secrets"),
            ("list", LLMD),
            ("patch", LLMD),
        ] {
            checks.push(check(false, verb, resource, Some(ns)));
        }
        checks.push(check(false, "create", "events.events.k8s.io", Some(ns)));
    }
    for (verb, resource) in [("list", "secrets"), ("watch", "secrets"), ("list", LLMD)] {
        checks.push(check(false, verb, resource, None));
    }
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    install_and_check(cp, &release, &own, &["--set", &watch], checks).await;
}

// ---------------------------------------------------------------------------------------------
// The Argo CD health check of docs/gitops-argocd.md, run by gopher-lua (the interpreter Argo CD embeds)

/// glua: `LITELLM_GLUA_BIN`, else where `tests/helm/build.sh` puts it.
fn glua_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LITELLM_GLUA_BIN") {
        return PathBuf::from(path);
    }
    let version = HELM_GO_MOD
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? == "github.com/yuin/gopher-lua" {
                words.next()?.strip_prefix('v')
            } else {
                None
            }
        })
        .expect("tests/helm/go.mod pins github.com/yuin/gopher-lua");
    let path = cache_dir()
        .join(format!("gopher-lua-{version}"))
        .join("bin")
        .join("glua");
    assert!(
        path.is_file(),
        "glua {version} is not built at {}: run `bash tests/helm/build.sh` first (or set LITELLM_GLUA_BIN)",
        path.display()
    );
    path
}

/// The Lua health check exactly as the doc's `argocd-cm` snippet carries it.
fn argocd_health_script() -> String {
    let doc = std::fs::read_to_string(repo_path("docs/gitops-argocd.md")).unwrap();
    let key = "resource.customizations.health.litellm.dev_LiteLLMDeployment";
    doc.split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("\n```").next())
        .filter(|block| block.contains("name: argocd-cm"))
        .find_map(|block| {
            let config: Value = serde_yaml::from_str(block).unwrap();
            config["data"][key].as_str().map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("docs/gitops-argocd.md has no argocd-cm block with {key}"))
}

/// A Lua expression for a JSON value, as Argo CD hands a resource to Lua (objects and arrays become tables).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&format!("\\{}", u32::from(c))),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!(
                    "[{}] = {}",
                    lua_literal(&Value::String(k.clone())),
                    lua_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the health check on `obj` the way Argo CD does (a global `obj`, the chunk returns a table) and
/// returns `(status, message)`.
fn argocd_health(script: &str, obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal function health()\n{script}\nend\nlocal hs = health()\nprint(hs.status)\nprint(hs.message)\n",
        lua_literal(obj)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("health.lua");
    std::fs::write(&file, program).unwrap();
    let out = Command::new(glua_bin()).arg(&file).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the health check failed in Lua: {stdout}{}",
        text(&out.stderr)
    );
    let mut lines = stdout.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}

/// Every condition reason the operator can report, read from `crates/api/src/names.rs` (`pub mod reason`).
fn condition_reasons() -> Vec<String> {
    let names = std::fs::read_to_string(repo_path("crates/api/src/names.rs")).unwrap();
    let module = names
        .split("pub mod reason {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("names.rs has `pub mod reason`");
    module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_owned)
        .collect()
}

/// `examples/minimal.yaml`'s LiteLLMDeployment at generation 3 with `status`.
fn llmd_with_status(status: Option<Value>) -> Value {
    let text = std::fs::read_to_string(repo_path("examples/minimal.yaml")).unwrap();
    let mut obj = yaml_documents(&text, "examples/minimal.yaml")
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "LiteLLMDeployment")
        .unwrap();
    obj["metadata"]["generation"] = 3.into();
    if let Some(status) = status {
        obj["status"] = status;
    }
    obj
}

fn status_with_ready(ready: &str, reason: &str, message: &str, observed: i64) -> Value {
    serde_json::json!({
        "observedGeneration": observed,
        "url": "https://litellm-minimal-xyz-uc.a.run.app",
        "conditions": [
            {"type": "SecretsReady", "status": "True", "reason": "Ready", "message": "2 secrets",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": ready, "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": observed},
        ],
    })
}

#[test]
fn argocd_health_check_maps_every_state_of_a_litellmdeployment() {
    let script = argocd_health_script();
    let reasons = condition_reasons();
    assert!(
        reasons.len() >= 8 && reasons.iter().any(|r| r == "PermissionDenied"),
        "{reasons:?}"
    );

    // (fixture, expected status, text the message must contain)
    let mut cases: Vec<(String, Value, &str, String)> = vec![
        (
            "no status yet".into(),
            llmd_with_status(None),
            "Progressing",
            "Waiting for litellm-operator".into(),
        ),
        (
            "Ready".into(),
            llmd_with_status(Some(status_with_ready("True", "Ready", "serving", 3))),
            "Healthy",
            "https://litellm-minimal-xyz-uc.a.run.app".into(),
        ),
        (
            "Ready but for an older generation".into(),
            llmd_with_status(Some(status_with_ready("True", "Ready", "serving", 2))),
            "Progressing",
            "generation 3".into(),
        ),
        (
            "Ready Unknown".into(),
            llmd_with_status(Some(status_with_ready("Unknown", "Reconciling", "starting", 3))),
            "Progressing",
            "starting".into(),
        ),
        (
            "no Ready condition".into(),
            llmd_with_status(Some(
                serde_json::json!({"observedGeneration": 3, "conditions": []}),
            )),
            "Progressing",
            "Ready condition".into(),
        ),
    ];
    for reason in reasons.iter().filter(|r| *r != "Ready") {
        let expected = match reason.as_str() {
            "Reconciling" | "IamPropagating" => "Progressing",
            "Paused" => "Suspended",
            _ => "Degraded",
        };
        let message = format!("ServiceReady: explanation for {reason}");
        cases.push((
            format!("Ready=False reason {reason}"),
            llmd_with_status(Some(status_with_ready("False", reason, &message, 3))),
            expected,
            message,
        ));
    }

    let mut wrong = Vec::new();
    for (name, obj, expected, needle) in &cases {
        let (status, message) = argocd_health(&script, obj);
        if status != *expected || !message.contains(needle.as_str()) {
            wrong.push(format!(
                "{name}: got {status} {message:?}, expected {expected} with {needle:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The real operator binary, as the chart's ServiceAccount with the chart's RBAC and arguments

/// The `litellm-operator` binary: `LITELLM_OPERATOR_BIN`, else next to this test's directory in the cargo target
/// dir (`cargo build -p litellm-operator --bin litellm-operator` puts it there).
fn operator_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LITELLM_OPERATOR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/chart-<hash> -> target/<profile>/litellm-operator
    let path = exe.parent().unwrap().parent().unwrap().join("litellm-operator");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p litellm-operator --bin litellm-operator` first (or set \
         LITELLM_OPERATOR_BIN)",
        path.display()
    );
    path
}

/// A kubeconfig that authenticates with `token` only (no admin client certificate).
fn token_kubeconfig(cp: &ControlPlane, token: &str) -> String {
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(cp.kubeconfig()).unwrap()).unwrap();
    let ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": cp.server(), "certificate-authority-data": ca}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "test",
    }))
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, if anything answers.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::AsyncReadExt as _;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// What the operator printed: stdout (its log) then stderr, from files in `dir`.
fn operator_output(dir: &std::path::Path) -> String {
    ["operator.log", "operator.err"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("")
}

/// Polls `probe` every 200 ms until it returns `Some`, for at most `seconds`; fails at once when the operator
/// exits.
async fn eventually<T, F, Fut>(
    seconds: u64,
    what: &str,
    operator: &mut tokio::process::Child,
    logs: &std::path::Path,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if let Some(status) = operator.try_wait().unwrap() {
            panic!(
                "the operator exited ({status}) while waiting for {what}; its output:\n{}",
                operator_output(logs)
            );
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "timed out after {seconds}s waiting for {what}; operator output:\n{}",
                operator_output(logs)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn operator_does_its_kubernetes_job_as_the_charts_service_account() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use kube::Api;
    use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
    use kube::core::{ApiResource, GroupVersionKind};

    let cp = control_plane().await;
    let admin = cp.client().unwrap();
    let own = cp.namespace("chart-operator").await.unwrap();
    let watched = cp.namespace("chart-operator-watched").await.unwrap();
    let release = release_for(&own);

    // Install the chart's objects (the Deployment is stored but nothing runs it: there is no kubelet).
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    let rendered = template(&release, &own, &["--set", &watch]);
    kubectl_stdin(cp, &["apply", "--server-side", "--field-manager=helm"], &rendered).await;
    let docs = documents(&rendered);
    let account = find(&docs, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // Run the binary the way the Deployment does: its args and downward-API env, a token of its account.
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), &own)
        .create_token_request(
            &account,
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 3600}})).unwrap(),
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, token_kubeconfig(cp, &token)).unwrap();
    let log = dir.path().join("operator.log");
    let metrics_port = free_port();
    let pod_name = format!("{release}-7d4b9c-x2x9k");
    let mut args: Vec<String> = args(&docs)
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr=127.0.0.1:{metrics_port}")
            } else {
                a
            }
        })
        .collect();
    // No Google call happens below (one resource is paused, the other invalid); a closed port makes sure.
    args.push(format!("--gcp-endpoint=http://127.0.0.1:{}", free_port()));
    let mut command = tokio::process::Command::new(operator_bin());
    command
        .args(&args)
        .env_clear()
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("operator.err")).unwrap())
        .kill_on_drop(true);
    for env in container(&docs)["env"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        let value = match env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.namespace") => own.clone(),
            Some("metadata.name") => pod_name.clone(),
            Some(other) => panic!("unexpected fieldRef {other}"),
            None => env["value"].as_str().unwrap().to_owned(),
        };
        command.env(name, value);
    }
    let mut operator = command.spawn().unwrap();

    // Leader election with the chart's Lease rules, then ready.
    let lease_name = args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .unwrap()
        .to_owned();
    let leases = Api::<Lease>::namespaced(admin.clone(), &own);
    let holder = eventually(30, "the leader Lease", &mut operator, dir.path(), || async {
        leases
            .get_opt(&lease_name)
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    })
    .await;
    assert_eq!(holder, pod_name);
    eventually(30, "/readyz", &mut operator, dir.path(), || async {
        (http_status(metrics_port, "/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(http_status(metrics_port, "/healthz").await, Some(200));
    assert_eq!(http_status(metrics_port, "/metrics").await, Some(200));

    // A paused resource: finalizer added, status written, nothing sent to Google.
    let text = std::fs::read_to_string(repo_path("examples/minimal.yaml")).unwrap();
    let example = yaml_documents(&text, "examples/minimal.yaml").unwrap();
    let mut secret: Secret =
        serde_json::from_value(example.iter().find(|d| d["kind"] == "Secret").unwrap().clone()).unwrap();
    secret.metadata.namespace = Some(watched.clone());
    Api::<Secret>::namespaced(admin.clone(), &watched)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut paused = example
        .iter()
        .find(|d| d["kind"] == "LiteLLMDeployment")
        .unwrap()
        .clone();
    paused["metadata"]["namespace"] = watched.clone().into();
    paused["metadata"]["annotations"] = serde_json::json!({"litellm.dev/paused": "true"});
    paused["spec"]["deletionPolicy"] = serde_json::json!({"service": "Abandon", "secrets": "Abandon"});
    // An invalid one the API server accepts (the name is too long for Cloud Run): InvalidSpec and a Warning
    // Event, again without any Google call.
    let mut invalid = paused.clone();
    invalid["metadata"]["name"] = "x".repeat(60).into();
    invalid["metadata"].as_object_mut().unwrap().remove("annotations");

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("litellm.dev", "v1alpha1", "LiteLLMDeployment"),
        "litellmdeployments",
    );
    let llmds = Api::<DynamicObject>::namespaced_with(admin.clone(), &watched, &resource);
    // Created under our own field manager, so the operator's writes show as separate managedFields entries.
    let create = PostParams {
        field_manager: Some("chart-test".to_owned()),
        ..PostParams::default()
    };
    for obj in [&paused, &invalid] {
        llmds
            .create(&create, &serde_json::from_value(obj.clone()).unwrap())
            .await
            .unwrap();
    }
    for (obj, reason) in [(&paused, "Paused"), (&invalid, "InvalidSpec")] {
        let name = obj["metadata"]["name"].as_str().unwrap();
        let live = eventually(
            30,
            &format!("{name} Ready=False {reason}"),
            &mut operator,
            dir.path(),
            || async {
                let live = llmds.get(name).await.unwrap();
                let ready = live.data["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?
                    .clone();
                (ready["status"] == "False" && ready["reason"] == reason).then_some(live)
            },
        )
        .await;
        assert!(
            live.metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .contains(&"litellm.dev/cleanup".to_owned()),
            "{name} has no finalizer"
        );
        // The operator's writes (every field manager but ours) touch the finalizer and status, never spec, so
        // Git (Argo CD) and the operator never fight over a field.
        let writes: Vec<_> = live
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.manager.as_deref() != Some("chart-test"))
            .collect();
        assert!(!writes.is_empty(), "{name}: no writes by the operator recorded");
        for entry in writes {
            let fields = entry.fields_v1.map(|f| f.0).unwrap_or_default();
            assert!(
                fields.get("f:spec").is_none(),
                "{name}: {:?} wrote spec: {fields}",
                entry.manager
            );
        }
    }
    let invalid_name = invalid["metadata"]["name"].as_str().unwrap().to_owned();
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), &watched);
    eventually(30, "the InvalidSpec Event", &mut operator, dir.path(), || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("InvalidSpec")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&invalid_name)
            })
    })
    .await;

    // Deleting runs cleanup (Abandon: nothing to do at Google) and removes the finalizer.
    for obj in [&paused, &invalid] {
        let name = obj["metadata"]["name"].as_str().unwrap();
        llmds.delete(name, &DeleteParams::default()).await.unwrap();
        eventually(
            30,
            &format!("{name} to be gone"),
            &mut operator,
            dir.path(),
            || async { llmds.get_opt(name).await.unwrap().is_none().then_some(()) },
        )
        .await;
    }

    // Nothing was refused along the way, and the operator is still running.
    let output = operator_output(dir.path());
    for refused in ["forbidden", "Forbidden", " 403"] {
        assert!(
            !output.contains(refused),
            "the operator was refused something:\n{output}"
        );
    }
    assert!(
        operator.try_wait().unwrap().is_none(),
        "the operator exited:\n{output}"
    );
    if let Some(pid) = operator.id()
        && let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        && let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS:"))
    {
        eprintln!("operator ({}) {rss}", operator_bin().display());
    }
    operator.kill().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The custom Google role of docs/security.md against the calls the operator makes

/// The Google permissions each method of the `litellm-operator-gcp` traits needs. IAM policy methods work on
/// a secret or a Cloud Run service, so they need both services' IAM permissions.
const GOOGLE_PERMISSIONS: &[(&str, &[&str])] = &[
    ("find_secret", &["secretmanager.secrets.get"]),
    ("create_secret", &["secretmanager.secrets.create"]),
    ("list_secrets", &["secretmanager.secrets.list"]),
    ("update_labels", &["secretmanager.secrets.update"]),
    ("delete_secret", &["secretmanager.secrets.delete"]),
    ("add_version", &["secretmanager.versions.add"]),
    ("get_version", &["secretmanager.versions.get"]),
    ("resolve_version", &["secretmanager.versions.get"]),
    ("access_version", &["secretmanager.versions.access"]),
    ("list_versions", &["secretmanager.versions.list"]),
    ("enable_version", &["secretmanager.versions.enable"]),
    ("disable_version", &["secretmanager.versions.disable"]),
    ("destroy_version", &["secretmanager.versions.destroy"]),
    ("get_service", &["run.services.get"]),
    ("create_service", &["run.services.create"]),
    ("update_service", &["run.services.update"]),
    ("delete_service", &["run.services.delete"]),
    ("get_revision", &["run.revisions.get"]),
    ("list_revisions", &["run.revisions.list"]),
    ("get_operation", &["run.operations.get"]),
    (
        "get_policy",
        &["secretmanager.secrets.getIamPolicy", "run.services.getIamPolicy"],
    ),
    (
        "add_member",
        &[
            "secretmanager.secrets.getIamPolicy",
            "secretmanager.secrets.setIamPolicy",
            "run.services.getIamPolicy",
            "run.services.setIamPolicy",
        ],
    ),
    (
        "remove_member",
        &[
            "secretmanager.secrets.getIamPolicy",
            "secretmanager.secrets.setIamPolicy",
            "run.services.getIamPolicy",
            "run.services.setIamPolicy",
        ],
    ),
];

fn rust_sources(dir: &std::path::Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

/// The methods declared in the `pub trait` blocks of the gcp crate: everything the operator can ask Google.
fn gcp_trait_methods() -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    for (_, text) in rust_sources(&repo_path("crates/gcp/src")) {
        let mut in_trait = false;
        for line in text.lines() {
            if line.starts_with("pub trait ") {
                in_trait = true;
            } else if line == "}" {
                in_trait = false;
            } else if in_trait
                && let Some(rest) = line.trim_start().strip_prefix("fn ")
                && let Some(name) = rest.split(['(', '<']).next()
            {
                methods.insert(name.to_owned());
            }
        }
    }
    methods
}

#[test]
fn security_doc_custom_role_grants_exactly_what_the_operator_calls() {
    let methods = gcp_trait_methods();
    let mapped: BTreeSet<String> = GOOGLE_PERMISSIONS.iter().map(|(m, _)| (*m).to_owned()).collect();
    assert!(
        methods.contains("find_secret") && methods.contains("update_service"),
        "{methods:?}"
    );
    assert_eq!(
        methods, mapped,
        "the gcp crate's trait methods changed: map each to its Google permission in GOOGLE_PERMISSIONS"
    );

    // Methods called in the operator's sources (a text scan: `.name(`), and the permissions they need.
    let sources = rust_sources(&repo_path("crates/operator/src"));
    let mut required = BTreeSet::new();
    let mut called = BTreeSet::new();
    for (method, permissions) in GOOGLE_PERMISSIONS {
        let call = format!(".{method}(");
        if sources.iter().any(|(_, text)| text.contains(&call)) {
            called.insert(*method);
            required.extend(permissions.iter().map(|p| (*p).to_owned()));
        }
    }
    assert!(called.contains("create_secret"), "{called:?}");

    let doc = std::fs::read_to_string(repo_path("docs/security.md")).unwrap();
    let granted: BTreeSet<String> = doc
        .lines()
        .find_map(|l| l.trim().strip_prefix("--permissions="))
        .expect("docs/security.md has the gcloud iam roles create --permissions= line")
        .split(',')
        .map(|p| p.trim().to_owned())
        .collect();
    let missing: Vec<_> = required.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&required).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "docs/security.md's custom role is out of date (operator calls {called:?}):\n  missing: {missing:?}\n  \
         granted but unused: {unused:?}"
    );
}

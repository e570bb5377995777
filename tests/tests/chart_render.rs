//! The Helm chart (`charts/litellm-operator`) rendered with the real helm CLI, no API server needed: it lints, renders
//! with the default values and with every option on (hardened, leader-elected, RBAC exactly the operator's job, each
//! rule commented), its values schema refuses bad values with a clear message, its CRD is the generated one (a
//! template Helm upgrades, kept on uninstall), its alerts and dashboard query only metrics the operator exposes, and
//! its appVersion is the crate version.
//!
//! helm comes from `tests/helm/build.sh` (pinned in `tests/helm/go.mod`, cached outside the repository), or
//! from `LITELLM_HELM_BIN`; promtool, which checks and unit-tests the alerts, from `tests/promtool/build.sh` (run on
//! first use: minutes the first time on a machine, then cached), or from `LITELLM_PROMTOOL_BIN`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use litellm_operator_tests::chart::{
    CHART_CRD, all_of, all_options, args, chart_path, container, documents, env_value, find, helm, kinds,
    promql_metric_names, run_promtool, template, text,
};
use litellm_operator_tests::doctest::anchors;
use litellm_operator_tests::{LITELLM_CRD, repo_path};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Reading the rendered RBAC

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
            &["get", "list", "watch", "patch"],
        ),
        rule("litellm.dev", "litellmdeployments/status", &["patch"]),
        rule("", "secrets", &["get", "list", "watch"]),
        rule("", "configmaps", &["get", "list", "watch"]),
        rule("events.k8s.io", "events", &["create", "patch"]),
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
    let chart = chart_path();
    let chart = chart.as_str();
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
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
        .map(str::to_owned)
        .into()
    );
    // Tenancy: the safe default, for the operator (a mounted file) and at admission (one policy for every
    // namespace, since no tenant names any).
    let tenancy: litellm_operator::plan::tenancy::TenancyPolicy =
        serde_yaml::from_str(find(&docs, "ConfigMap")["data"]["tenancy.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(tenancy, litellm_operator::plan::tenancy::TenancyPolicy::default());
    let binding = find(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["validationActions"], serde_json::json!(["Deny"]));
    assert!(binding["spec"]["matchResources"].is_null(), "{binding}");

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
            "--tenancy-policy=/etc/litellm-operator/tenancy.yaml",
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
        "PrometheusRule",
        "CustomResourceDefinition",
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
            "--tenancy-policy=/etc/litellm-operator/tenancy.yaml",
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
    let mount = &container(&docs)["volumeMounts"][1];
    assert_eq!(mount["readOnly"], true);
    assert_eq!(
        key_path,
        format!("{}/key.json", mount["mountPath"].as_str().unwrap())
    );
    let volume = &find(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"][1];
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
    // The readiness series' `namespace` is the LiteLLMDeployment's, not the scraped pod's.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    let rule = find(&docs, "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let dashboard = all_of(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .unwrap();
    assert_eq!(dashboard["metadata"]["annotations"]["grafana_folder"], "LiteLLM");
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
fn a_tenants_account_to_impersonate_reaches_the_operators_policy_file() {
    let docs = documents(&template(
        "ops",
        "litellm-system",
        &[
            "--set",
            "tenancy.tenants[0].name=a",
            "--set",
            "tenancy.tenants[0].namespaces={team-a}",
            "--set",
            "tenancy.tenants[0].impersonate=tenant-a@p.iam.gserviceaccount.com",
            "--set",
            "tenancy.tenants[1].name=b",
            "--set",
            "tenancy.tenants[1].namespaces={team-b}",
        ],
    ));
    let tenancy: litellm_operator::plan::tenancy::TenancyPolicy =
        serde_yaml::from_str(find(&docs, "ConfigMap")["data"]["tenancy.yaml"].as_str().unwrap()).unwrap();
    assert!(tenancy.problems().is_empty(), "{:?}", tenancy.problems());
    assert_eq!(
        tenancy.rules_for("team-a").1.impersonate.as_deref(),
        Some("tenant-a@p.iam.gserviceaccount.com")
    );
    assert_eq!(tenancy.rules_for("team-b").1.impersonate, None);
    assert_eq!(tenancy.rules_for("elsewhere").1.impersonate, None);
}

#[test]
fn watched_namespaces_are_created_only_when_asked_and_kept_on_uninstall() {
    let plain = documents(&template(
        "ops",
        "litellm-system",
        &["--set", "operator.watchNamespaces={llm}"],
    ));
    assert!(all_of(&plain, "Namespace").is_empty());
    let docs = documents(&template(
        "ops",
        "litellm-system",
        &[
            "--set",
            "operator.watchNamespaces={llm}",
            "--set",
            "operator.createWatchNamespaces=true",
        ],
    ));
    let namespaces = all_of(&docs, "Namespace");
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    assert_eq!(namespaces[0]["metadata"]["name"], "llm");
    assert_eq!(
        namespaces[0]["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    // The Role the operator needs there is rendered in the same release.
    assert!(
        all_of(&docs, "Role")
            .iter()
            .any(|r| r["metadata"]["namespace"] == "llm")
    );
}

#[test]
fn values_schema_and_chart_refuse_bad_values_with_a_clear_message() {
    let chart = chart_path();
    let chart = chart.as_str();
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
        (
            "tenancy: {tenants: [{name: a, namespaces: [llm]}, {name: b, namespaces: [llm]}]}",
            &["tenancy: namespace llm is named by tenants a and b"],
        ),
        (
            "tenancy: {tenants: [{name: a, namespaces: [llm], allowPublic: true}]}",
            &["additional properties 'allowPublic' not allowed"],
        ),
        (
            "tenancy: {tenants: [{name: a, namespaces: [llm], impersonate: alice@example.com}]}",
            &["/tenancy/tenants/0/impersonate", "does not match pattern"],
        ),
        (
            "tenancy: {default: {externalSecrets: tavily-api-key}}",
            &["/tenancy/default/externalSecrets", "want array"],
        ),
        ("crds: {install: \"true\"}", &["/crds/install", "want boolean"]),
        (
            "metrics: {prometheusRule: {disabled: [LiteLLMDeploymentDown]}}",
            &["/metrics/prometheusRule/disabled/0", "LiteLLMDeploymentNotReady"],
        ),
        (
            "metrics: {prometheusRule: {notReadyFor: 15 minutes}}",
            &["/metrics/prometheusRule/notReadyFor", "does not match pattern"],
        ),
        (
            "metrics: {prometheusRule: {pinnedVersionMaxAgeDays: 0}}",
            &["/metrics/prometheusRule/pinnedVersionMaxAgeDays", "minimum"],
        ),
        (
            "metrics: {prometheusRule: {selector: '{job=\"x\"}'}}",
            &["/metrics/prometheusRule/selector", "does not match pattern"],
        ),
        (
            "metrics: {prometheusRule: {enabled: true, disabled: [LiteLLMDeploymentNotReady, \
             LiteLLMDeploymentRolloutFailed, LiteLLMOperatorGooglePermissionDenied, \
             LiteLLMOperatorGoogleQuotaExceeded, LiteLLMPinnedSecretVersionOld, LiteLLMOperatorNoLeader]}}",
            &["metrics.prometheusRule.disabled names every alert"],
        ),
        (
            "grafana: {dashboard: {labels: {grafana_dashboard: 1}}}",
            &["/grafana/dashboard/labels/grafana_dashboard", "want string"],
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

/// Numbers as `f64`: Helm reads the CRD with `fromYaml` and writes it back with `toYaml`, so `maximum: 8.0` comes
/// out as `8`; the API server stores both as the same float.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn chart_crd_is_the_generated_crd_as_a_template_helm_upgrades_and_keeps() {
    let generated = std::fs::read_to_string(repo_path(LITELLM_CRD)).unwrap();
    let in_chart = std::fs::read_to_string(repo_path(CHART_CRD)).unwrap();
    assert!(
        generated == in_chart,
        "{CHART_CRD} differs from {LITELLM_CRD}: run `make generate` (or copy the file)"
    );
    // Helm installs a chart's crds/ directory once, never upgrades it, and would install it before the template
    // (which then could not take it over): the chart must have none.
    assert!(
        !repo_path("charts/litellm-operator/crds").exists(),
        "charts/litellm-operator/crds/ is back: the CRD is templates/crds/litellmdeployments.yaml"
    );

    // Rendered: exactly the generated CRD, plus the chart's labels and the keep policy.
    let docs = documents(&template("ops", "litellm-system", &[]));
    let crds = all_of(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), 1, "{crds:?}");
    let mut rendered = crds[0].clone();
    let metadata = rendered["metadata"].as_object_mut().unwrap();
    let annotations = metadata.remove("annotations").unwrap();
    assert_eq!(
        annotations,
        json!({"helm.sh/resource-policy": "keep", "argocd.argoproj.io/sync-options": "Delete=false"})
    );
    let labels = metadata.remove("labels").unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(labels["app.kubernetes.io/instance"], "ops");
    assert_eq!(labels["app.kubernetes.io/component"], "crd");
    let generated: Value = serde_yaml::from_str(&generated).unwrap();
    assert!(
        numbers_as_floats(&rendered) == numbers_as_floats(&generated),
        "the rendered CRD is not the generated one plus labels and annotations"
    );

    // crds.install=false: a second release, or a CRD applied by hand.
    let without = documents(&template(
        "ops",
        "litellm-system",
        &["--set", "crds.install=false"],
    ));
    assert!(all_of(&without, "CustomResourceDefinition").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Alerts and dashboard

/// Every sample name the operator exposes: its registry as the `run` command builds it (the controller's metrics
/// and the Google client's), read from the exposition's `# TYPE` lines, so a counter `x` is queried as `x_total`
/// and a histogram as `x_bucket`, `x_sum` and `x_count`. A family is described only once it has a series, so one of
/// each is made: a reconcile, a readiness, and a Google call that fails at once (a port nothing listens on).
async fn exposed_sample_names() -> BTreeSet<String> {
    use litellm_operator::metrics::{Metrics, ResultLabels};
    use litellm_operator_gcp::{Gcp, GcpConfig, RetrySettings, SecretName, SecretStore as _};

    let mut metrics = Metrics::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = GcpConfig {
        retry: RetrySettings {
            max_attempts: 1,
            ..RetrySettings::default()
        },
        ..GcpConfig::emulator(format!("http://127.0.0.1:{port}").parse().unwrap())
    };
    let gcp = Gcp::connect(&config, metrics.gcp_registry()).await.unwrap();
    assert!(
        gcp.find_secret(&SecretName::new("my-project", "x"))
            .await
            .is_err()
    );
    metrics
        .reconciles
        .get_or_create(&ResultLabels { result: "ok".into() })
        .inc();
    metrics.set_ready("llm", "proxy", "Ready", true);
    metrics.set_pinned("llm", "proxy", &[("DATABASE_URL".into(), 1_767_225_600)]);
    let exposition = metrics.encode();
    let families: BTreeMap<String, String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect();
    assert!(
        families.contains_key("litellm_operator_gcp_api_calls")
            && families.contains_key("litellm_operator_reconciles"),
        "{exposition}"
    );
    families
        .into_iter()
        .flat_map(|(name, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            suffixes
                .iter()
                .map(move |s| format!("{name}{s}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The names in `exprs` (label, expression) that the operator does not expose.
fn unknown_metrics<'a>(
    exprs: impl IntoIterator<Item = (String, &'a str)>,
    exposed: &BTreeSet<String>,
) -> Vec<String> {
    let mut unknown = Vec::new();
    for (what, expr) in exprs {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{what}: no metric in {expr}");
        for name in names.difference(exposed) {
            unknown.push(format!("{what}: {name} in {expr}"));
        }
    }
    unknown
}

#[test]
fn promql_metric_names_skips_functions_keywords_labels_strings_and_variables() {
    let names = |e: &str| promql_metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"max by (namespace, name) ((a_ready{job=~"$job",reason!="Paused"} == 0) and on (instance) (b_leader{job="x"} == 1))"#
        ),
        ["a_ready", "b_leader"]
    );
    assert_eq!(
        names(
            "histogram_quantile(0.95, sum by (le, method) (rate(c_seconds_bucket{job=~\"$job\"}[$__rate_interval])))"
        ),
        ["c_seconds_bucket"]
    );
    assert_eq!(
        names("absent((d{job=\"a b\"} == 1)) or vector(0) > 1e3 unless e offset 5m"),
        ["d", "e"]
    );
    assert_eq!(
        names("sum(f) without (code) / ignoring (x) group_left (y) g"),
        ["f", "g"]
    );
}

/// The alert names the chart documents, in the order it renders them.
const ALERTS: [&str; 6] = [
    "LiteLLMDeploymentNotReady",
    "LiteLLMDeploymentRolloutFailed",
    "LiteLLMOperatorGooglePermissionDenied",
    "LiteLLMOperatorGoogleQuotaExceeded",
    "LiteLLMPinnedSecretVersionOld",
    "LiteLLMOperatorNoLeader",
];

/// The rules of the rendered PrometheusRule, by alert name.
fn alert_rules(docs: &[Value]) -> BTreeMap<String, Value> {
    let rule = find(docs, "PrometheusRule");
    let groups = rule["spec"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{rule}");
    groups[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["alert"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[tokio::test]
async fn alerts_query_only_the_operators_metrics_of_this_release_and_leader() {
    let docs = documents(&template(
        "ops",
        "litellm-system",
        &[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    ));
    let rules = alert_rules(&docs);
    assert_eq!(
        rules.keys().cloned().collect::<BTreeSet<_>>(),
        ALERTS.map(str::to_owned).into()
    );
    let expr = |alert: &str| rules[alert]["expr"].as_str().unwrap().to_owned();

    // Every selector names this release's scrape job (the ServiceMonitor's Service), so two releases never alert on
    // each other's series.
    let service = find(&docs, "Service")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let selector = regex::Regex::new(r"[a-z_]+\{([^}]*)\}").unwrap();
    for (alert, rule) in &rules {
        let expr = rule["expr"].as_str().unwrap();
        for m in selector.captures_iter(expr) {
            assert!(m[1].contains(&format!("job=\"{service}\"")), "{alert}: {}", &m[0]);
        }
        assert!(rule["labels"]["severity"].is_string(), "{alert}");
        assert!(
            rule["annotations"]["summary"]
                .as_str()
                .is_some_and(|s| s.ends_with('.')),
            "{alert}"
        );
    }
    // Per-deployment alerts read only the leader's series, and the NoLeader alert covers the time there is none.
    for alert in [
        "LiteLLMDeploymentNotReady",
        "LiteLLMDeploymentRolloutFailed",
        "LiteLLMOperatorGooglePermissionDenied",
        "LiteLLMPinnedSecretVersionOld",
    ] {
        assert!(
            expr(alert).contains("and on (instance) (litellm_operator_leader{"),
            "{alert}"
        );
    }
    assert!(expr("LiteLLMOperatorNoLeader").starts_with("absent((litellm_operator_leader{"));
    assert!(expr("LiteLLMDeploymentNotReady").contains(r#"reason!="Paused""#));
    assert!(expr("LiteLLMDeploymentRolloutFailed").contains(r#"reason="RevisionFailed""#));
    assert!(expr("LiteLLMOperatorGooglePermissionDenied").contains(r#"reason="PermissionDenied""#));
    assert!(expr("LiteLLMOperatorGoogleQuotaExceeded").contains(r#"code="RESOURCE_EXHAUSTED""#));
    assert!(expr("LiteLLMPinnedSecretVersionOld").ends_with(&format!("> {}", 90 * 86400)));
    assert_eq!(rules["LiteLLMDeploymentNotReady"]["for"], "15m");
    // Prometheus' own template syntax reaches Prometheus instead of being taken by Helm.
    assert!(
        rules["LiteLLMDeploymentNotReady"]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("{{ $labels.namespace }}/{{ $labels.name }}")
    );

    // Only metrics the operator exposes.
    let exposed = exposed_sample_names().await;
    let unknown = unknown_metrics(
        rules
            .iter()
            .map(|(a, r)| (a.clone(), r["expr"].as_str().unwrap())),
        &exposed,
    );
    assert!(
        unknown.is_empty(),
        "alerts query metrics the operator does not expose:\n{}",
        unknown.join("\n")
    );

    // Runbook links lead to headings of the troubleshooting guide.
    let guide = anchors(&std::fs::read_to_string(repo_path("docs/troubleshooting.md")).unwrap());
    for (alert, rule) in &rules {
        if let Some(url) = rule["annotations"]["runbook_url"].as_str() {
            let (_, anchor) = url.split_once("/docs/troubleshooting.md#").unwrap();
            assert!(guide.contains(anchor), "{alert}: {url}: no such heading");
        }
    }

    // Values: thresholds, labels, a selector of one's own, and alerts left out.
    let docs = documents(&template("ops", "litellm-system", &["--values", &all_options()]));
    let rules = alert_rules(&docs);
    assert!(!rules.contains_key("LiteLLMOperatorNoLeader"));
    assert_eq!(rules["LiteLLMDeploymentNotReady"]["for"], "30m");
    assert_eq!(rules["LiteLLMOperatorGoogleQuotaExceeded"]["for"], "1h");
    assert_eq!(rules["LiteLLMDeploymentNotReady"]["labels"]["team"], "platform");
    assert!(
        rules["LiteLLMPinnedSecretVersionOld"]["expr"]
            .as_str()
            .unwrap()
            .ends_with(&format!("> {}", 30 * 86400))
    );
    assert!(
        rules["LiteLLMDeploymentNotReady"]["expr"]
            .as_str()
            .unwrap()
            .contains(
                r#"litellm_operator_deployment_ready{job="litellm-operator-shard-a",reason!="Paused"}"#
            )
    );
}

/// `promtool check rules` on `groups` (a rules file's content) written into `dir`; panics with promtool's output.
fn promtool_check(dir: &std::path::Path, file: &str, groups: &Value) -> String {
    std::fs::write(dir.join(file), serde_yaml::to_string(groups).unwrap()).unwrap();
    let (ok, output) = run_promtool(dir, &["check", "rules", "--lint=all", file]);
    assert!(ok, "promtool check rules {file}:\n{output}");
    output
}

/// The rules as Prometheus loads them: they parse, their templates expand, and promtool's unit tests
/// (`tests/promtool/alerts-test.yaml`: series of a leader and a stale replica, paused, failed and old deployments,
/// quota errors, no leader) fire exactly the alerts they should, with the labels and texts they should.
#[test]
fn alerts_pass_promtool_check_and_fire_on_the_series_they_describe() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |args: &[&str]| {
        find(
            &documents(&template("ops", "litellm-system", args)),
            "PrometheusRule",
        )["spec"]
            .clone()
    };
    let output = promtool_check(
        dir.path(),
        "rules.yaml",
        &rule(&["--set", "metrics.prometheusRule.enabled=true"]),
    );
    assert!(output.contains("SUCCESS: 6 rules found"), "{output}");
    let output = promtool_check(
        dir.path(),
        "all-options.yaml",
        &rule(&["--values", &all_options()]),
    );
    assert!(output.contains("SUCCESS: 5 rules found"), "{output}");

    std::fs::copy(
        repo_path("tests/promtool/alerts-test.yaml"),
        dir.path().join("alerts-test.yaml"),
    )
    .unwrap();
    let (ok, output) = run_promtool(dir.path(), &["test", "rules", "alerts-test.yaml"]);
    assert!(
        ok,
        "promtool test rules tests/promtool/alerts-test.yaml:\n{output}"
    );
}

#[tokio::test]
async fn grafana_dashboard_is_json_for_the_sidecar_on_the_operators_metrics() {
    let docs = documents(&template(
        "ops",
        "litellm-system",
        &["--set", "grafana.dashboard.enabled=true"],
    ));
    let config_map = all_of(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "ops-litellm-operator-dashboard")
        .unwrap();
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(config_map["metadata"]["namespace"], "litellm-system");
    let data = config_map["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["litellm-operator.json"]);
    let dashboard: Value = serde_json::from_str(data["litellm-operator.json"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}"));
    // The file is served as it is: Helm did not touch Grafana's `{{label}}` legends.
    let file = std::fs::read_to_string(repo_path(
        "charts/litellm-operator/files/grafana/litellm-operator.json",
    ))
    .unwrap();
    assert_eq!(dashboard, serde_json::from_str::<Value>(&file).unwrap());
    assert_eq!(dashboard["uid"], "litellm-operator");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job"]);

    // Every panel's queries: the operator's metrics only, each scoped to the chosen job.
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id: {panel}"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains(r#"job=~"$job""#), "{}: {expr}", panel["title"]);
            exprs.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    let exposed = exposed_sample_names().await;
    let unknown = unknown_metrics(exprs.iter().map(|(t, e)| (t.clone(), *e)), &exposed);
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the operator does not expose:\n{}",
        unknown.join("\n")
    );
    // Valid PromQL, as Prometheus parses it: each query as a recording rule, Grafana's variables filled in.
    let records: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| {
            let expr = e.replace("$__rate_interval", "5m").replace("$job", ".*");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let output = promtool_check(
        dir.path(),
        "dashboard.yaml",
        &json!({"groups": [{"name": "dashboard", "rules": records}]}),
    );
    assert!(
        output.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{output}"
    );
    // The panels the chart's README promises.
    let queried: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| promql_metric_names(e)).collect();
    for metric in [
        "litellm_operator_deployment_ready",
        "litellm_operator_reconciles_total",
        "litellm_operator_gcp_api_calls_total",
        "litellm_operator_pinned_version_created_timestamp_seconds",
        "litellm_operator_leader",
        "litellm_operator_build_info",
    ] {
        assert!(queried.contains(metric), "no panel shows {metric}");
    }
    assert!(exprs.iter().any(|(_, e)| {
        e.contains("sum by (service, method, code) (rate(litellm_operator_gcp_api_calls_total")
    }));
    assert!(
        exprs
            .iter()
            .any(|(_, e)| e.contains(r#"litellm_operator_reconciles_total{job=~"$job",result!="ok"}"#))
    );

    // Off by default; a namespace of its own for a sidecar that watches one.
    assert!(
        !documents(&template("ops", "litellm-system", &[]))
            .iter()
            .any(|d| d["metadata"]["name"] == "ops-litellm-operator-dashboard")
    );
    let docs = documents(&template(
        "ops",
        "litellm-system",
        &[
            "--set",
            "grafana.dashboard.enabled=true",
            "--set",
            "grafana.dashboard.namespace=monitoring",
        ],
    ));
    let config_map = all_of(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "ops-litellm-operator-dashboard")
        .unwrap();
    assert_eq!(config_map["metadata"]["namespace"], "monitoring");
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

//! The Helm chart (`charts/litellm-operator`) rendered with the real helm CLI, no API server needed: it lints, renders
//! with the default values and with every option on (hardened, leader-elected, RBAC exactly the operator's job, each
//! rule commented), its values schema refuses bad values with a clear message, its CRD is the generated one, and its
//! appVersion is the crate version.
//!
//! helm comes from `tests/helm/build.sh` (pinned in `tests/helm/go.mod`, cached outside the repository), or
//! from `LITELLM_HELM_BIN`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;

use litellm_operator_tests::chart::{
    all_of, all_options, args, chart_path, container, documents, env_value, find, helm, kinds, template, text,
};
use litellm_operator_tests::repo_path;
use serde_json::Value;

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
            "tenancy: {default: {externalSecrets: tavily-api-key}}",
            &["/tenancy/default/externalSecrets", "want array"],
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

//! The ServiceAccount the Helm chart creates can do exactly the operator's job, cluster-wide or in the watched
//! namespace only, and nothing more: the rendered chart is applied to the real API server and every permission is
//! checked with `kubectl auth can-i` impersonating that account.

#![allow(clippy::unwrap_used, clippy::panic)]

use litellm_operator_tests::ControlPlane;
use litellm_operator_tests::chart::{control_plane, documents, kubectl_stdin, release_for, template, text};

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
/// that disagree at once. The CRD stays the harness's: the shared control plane has it already.
async fn install_and_check(cp: &ControlPlane, release: &str, own: &str, args: &[&str], checks: Vec<Check>) {
    let args = [args, &["--set", "crds.install=false"]].concat();
    let rendered = template(release, own, &args);
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
    for verb in ["get", "list", "watch", "patch"] {
        checks.push(check(true, verb, LLMD, n));
    }
    checks.push(sub(check(true, "patch", LLMD, n), "status"));
    // Verbs it does not use: finalizers are a JSON patch, status a server-side apply, Events events.k8s.io/v1.
    checks.push(check(false, "update", LLMD, n));
    checks.push(sub(check(false, "update", LLMD, n), "status"));
    checks.push(sub(check(false, "update", LLMD, n), "finalizers"));
    for verb in ["get", "list", "watch"] {
        checks.push(check(true, verb, "secrets", n));
        // spec.config.configMapKeyRef: read and watched like a Secret.
        checks.push(check(true, verb, "configmaps", n));
    }
    checks.push(check(true, "create", "events.events.k8s.io", n));
    checks.push(check(true, "patch", "events.events.k8s.io", n));
    checks.push(check(false, "create", "events", n));
    // Users create and delete LiteLLMDeployments, not the operator; Secrets and ConfigMaps are read-only to it;
    // nothing else in the namespace is its business.
    for verb in ["create", "delete", "deletecollection"] {
        checks.push(check(false, verb, LLMD, n));
    }
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        checks.push(check(false, verb, "secrets", n));
        checks.push(check(false, verb, "configmaps", n));
    }
    checks.push(check(false, "delete", "events", n));
    for resource in [
        "pods",
        "serviceaccounts",
        "deployments.apps",
        "roles.rbac.authorization.k8s.io",
    ] {
        checks.push(check(false, "create", resource, n));
    }
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
        ("list", "configmaps"),
        ("watch", "configmaps"),
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
            ("get", "configmaps"),
            ("list", "configmaps"),
            ("list", LLMD),
            ("patch", LLMD),
        ] {
            checks.push(check(false, verb, resource, Some(ns)));
        }
        checks.push(check(false, "create", "events.events.k8s.io", Some(ns)));
    }
    for (verb, resource) in [
        ("list", "secrets"),
        ("watch", "secrets"),
        ("list", "configmaps"),
        ("list", LLMD),
    ] {
        checks.push(check(false, verb, resource, None));
    }
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    install_and_check(cp, &release, &own, &["--set", &watch], checks).await;
}

//! The Helm chart against the real API server: the rendered manifests pass a server-side dry-run, `helm install
//! --dry-run=server` prints the next steps, and the real operator binary does its Kubernetes job as the chart's
//! ServiceAccount with the chart's RBAC and arguments.
//!
//! helm comes from `tests/helm/build.sh` (pinned in `tests/helm/go.mod`, cached outside the repository), or
//! from `LITELLM_HELM_BIN`; the operator binary from `cargo build -p litellm-operator`, or `LITELLM_OPERATOR_BIN`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use litellm_operator_tests::chart::{
    all_options, args, chart_path, container, control_plane, documents, find, helm, kubectl_stdin,
    release_for, template, text,
};
use litellm_operator_tests::fixtures::example_document;
use litellm_operator_tests::node::kubeconfig_with_token;
use litellm_operator_tests::{eventually, install_crd, tools};

use tokio::io::AsyncWriteExt as _;

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
                      honorLabels: {type: boolean}
"#;

/// A stand-in for the Prometheus Operator's PrometheusRule CRD, the same way: the fields the chart sets, typed as
/// that API documents them (`expr` is int-or-string, `for` a duration), nothing else.
const PROMETHEUS_RULE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
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
              properties:
                groups:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [name]
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {anyOf: [{type: integer}, {type: string}], x-kubernetes-int-or-string: true}
                            for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
"#;

/// The Prometheus Operator's CRDs the optional objects need, as their stand-ins.
async fn install_monitoring_crds(cp: &litellm_operator_tests::ControlPlane) {
    let client = cp.client().unwrap();
    for crd in [SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD] {
        install_crd(&client, crd).await.unwrap();
    }
}

#[tokio::test]
async fn rendered_manifests_pass_a_server_side_dry_run() {
    let cp = control_plane().await;
    install_monitoring_crds(cp).await;
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
    install_monitoring_crds(cp).await;
    let own = cp.namespace("chart-notes").await.unwrap();
    let watched = cp.namespace("chart-notes-watched").await.unwrap();
    let release = release_for(&own);
    let chart = chart_path();
    let kubeconfig = cp.kubeconfig().to_str().unwrap().to_owned();
    // The shared control plane has the CRD already, installed by the harness and owned by no release: the chart then
    // leaves it out, as a second release in a cluster does (helm refuses to take over an object it did not create).
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
            &chart,
            "--namespace",
            &own,
            "--dry-run=server",
            "--kubeconfig",
            &kubeconfig,
            "--set",
            "crds.install=false",
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

// ---------------------------------------------------------------------------------------------
// The real operator binary, as the chart's ServiceAccount with the chart's RBAC and arguments

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
fn operator_output(dir: &Path) -> String {
    ["operator.log", "operator.err"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("")
}

/// [`eventually`] for `probe` to return `Some` within `seconds`, failing at once when the operator exits; a
/// failure shows what the operator printed.
async fn while_running<T, F, Fut>(
    seconds: u64,
    what: &str,
    operator: &mut tokio::process::Child,
    logs: &Path,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually(what, Duration::from_secs(seconds), || {
        if let Some(status) = operator.try_wait().unwrap() {
            panic!(
                "the operator exited ({status}) while waiting for {what}; its output:\n{}",
                operator_output(logs)
            );
        }
        let look = probe();
        async move {
            look.await
                .ok_or_else(|| format!("operator output:\n{}", operator_output(logs)))
        }
    })
    .await
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

    // Install the chart's objects (the Deployment is stored but nothing runs it: there is no kubelet). The CRD is
    // the harness's on this shared control plane; chart_upgrade.rs installs the chart's own.
    let watch = format!("operator.watchNamespaces={{{watched}}}");
    let rendered = template(&release, &own, &["--set", &watch, "--set", "crds.install=false"]);
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
    std::fs::write(&kubeconfig, kubeconfig_with_token(cp, &token).unwrap()).unwrap();
    let log = dir.path().join("operator.log");
    let metrics_port = free_port();
    let pod_name = format!("{release}-7d4b9c-x2x9k");
    // The tenancy ConfigMap, as its volume mount would show it.
    let tenancy = dir.path().join("tenancy.yaml");
    let config_map = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-tenancy"))
        })
        .unwrap();
    std::fs::write(&tenancy, config_map["data"]["tenancy.yaml"].as_str().unwrap()).unwrap();
    let mut args: Vec<String> = args(&docs)
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr=127.0.0.1:{metrics_port}")
            } else if a.starts_with("--tenancy-policy=") {
                format!("--tenancy-policy={}", tenancy.display())
            } else {
                a
            }
        })
        .collect();
    // No Google call happens below (one resource is paused, the other invalid); a closed port makes sure.
    args.push(format!("--gcp-endpoint=http://127.0.0.1:{}", free_port()));
    let mut command = tokio::process::Command::new(tools::operator_binary().unwrap());
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
    let holder = while_running(30, "the leader Lease", &mut operator, dir.path(), || async {
        leases
            .get_opt(&lease_name)
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    })
    .await;
    assert_eq!(holder, pod_name);
    while_running(30, "/readyz", &mut operator, dir.path(), || async {
        (http_status(metrics_port, "/readyz").await == Some(200)).then_some(())
    })
    .await;
    assert_eq!(http_status(metrics_port, "/healthz").await, Some(200));
    assert_eq!(http_status(metrics_port, "/metrics").await, Some(200));

    // A paused resource: finalizer added, status written, nothing sent to Google.
    let mut secret: Secret = serde_json::from_value(example_document("minimal.yaml", "Secret")).unwrap();
    secret.metadata.namespace = Some(watched.clone());
    Api::<Secret>::namespaced(admin.clone(), &watched)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut paused = example_document("minimal.yaml", "LiteLLMDeployment");
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
        let live = while_running(
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
    while_running(30, "the InvalidSpec Event", &mut operator, dir.path(), || async {
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
        while_running(
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
        eprintln!("operator ({}) {rss}", tools::operator_binary().unwrap().display());
    }
    operator.kill().await.unwrap();
}

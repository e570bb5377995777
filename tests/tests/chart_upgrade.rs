//! Upgrading a release of the last chart that installed the CRD from `crds/` to this chart, exactly as the chart's
//! README tells people to, against a control plane of the test's own (the CRD is cluster-wide): the upgrade refuses
//! to start without the README's one-time step, the step makes it adopt the CRD and deliver the new schema and
//! validation rules in place, the LiteLLMDeployment and its Secret are never rewritten, and `helm uninstall` leaves
//! the CRD (`helm.sh/resource-policy: keep`) and both of them.
//!
//! The previous chart comes from the repository's history (`git archive`), so the test needs a clone with its
//! history; helm from `tests/helm/build.sh`, kubectl from `tests/control-plane/build.sh`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use litellm_operator_tests::chart::{CHART, CRDS_DIR_CRD, last_crds_dir_chart, text};
use litellm_operator_tests::{
    ControlPlane, LITELLM_CRD, doctest, eventually, read_repo_file, repo_path, tools,
};
use serde_json::{Value, json};

/// The release, its namespace and the watched namespace, as the chart's README and getting-started name them (the
/// control plane is the test's own, so nothing else uses these names).
const RELEASE: &str = "litellm-operator";
const NAMESPACE: &str = "litellm-system";
const WATCHED: &str = "llm";
const CRD_NAME: &str = "litellmdeployments.litellm.dev";

/// The chart README's page: its upgrade block is run as it stands.
const CHART_README: &str = "charts/litellm-operator/README.md";

/// A reader's terminal: bash with kubectl and helm on PATH, pointed at the test's control plane, helm with a home
/// of its own, and the repository's `charts/` in the working directory.
struct Terminal {
    work: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Terminal {
    fn new(cp: &ControlPlane) -> Terminal {
        let work = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(repo_path("charts"), work.path().join("charts")).unwrap();
        let bin = work.path().join(".bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(tools::bin_dir().unwrap().join("kubectl"), bin.join("kubectl")).unwrap();
        std::os::unix::fs::symlink(tools::helm().unwrap(), bin.join("helm")).unwrap();
        let home = work.path().join(".home");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let env = [
            ("PATH", path),
            ("KUBECONFIG", cp.kubeconfig().display().to_string()),
            ("HELM_CACHE_HOME", home.join("cache").display().to_string()),
            ("HELM_CONFIG_HOME", home.join("config").display().to_string()),
            ("HELM_DATA_HOME", home.join("data").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Terminal { work, env }
    }

    /// Runs `script` as a careful reader pastes it (`set -eo pipefail`); whether it succeeded, and what it printed.
    fn run(&self, script: &str) -> (bool, String) {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("exec 2>&1\nset -eo pipefail\n{script}\n"))
            .current_dir(self.work.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.success(), text(&out.stdout))
    }

    /// [`Terminal::run`], which must succeed.
    fn ok(&self, script: &str, cp: &ControlPlane) -> String {
        let (ok, output) = self.run(script);
        assert!(
            ok,
            "failed:\n{script}\n--- output ---\n{output}\n--- kube-apiserver ---\n{}",
            cp.apiserver_log_tail()
        );
        output
    }
}

/// Numbers as `f64` (Helm's `toYaml` writes `8.0` as `8`; the API server stores the same float).
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

/// The first version's schema of a CRD (as YAML text or a live object), numbers as floats.
fn schema(crd: &Value) -> Value {
    numbers_as_floats(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
}

/// Everything a CRD's versions say (schemas, printer columns, subresources), numbers as floats.
fn versions(crd: &Value) -> Value {
    numbers_as_floats(&crd["spec"]["versions"])
}

/// Every field path of a schema (`spec.service.probes.liveness.enabled`) and every CEL rule in it.
fn fields_and_rules(schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(path: &str, node: &Value, fields: &mut BTreeSet<String>, rules: &mut BTreeSet<String>) {
        for rule in node["x-kubernetes-validations"].as_array().into_iter().flatten() {
            rules.insert(rule["rule"].as_str().unwrap().to_owned());
        }
        for (name, child) in node["properties"].as_object().into_iter().flatten() {
            let path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            fields.insert(path.clone());
            walk(&path, child, fields, rules);
        }
        for key in ["items", "additionalProperties"] {
            if node[key].is_object() {
                walk(path, &node[key], fields, rules);
            }
        }
    }
    let (mut fields, mut rules) = (BTreeSet::new(), BTreeSet::new());
    walk("", schema, &mut fields, &mut rules);
    (fields, rules)
}

/// Whether `big` holds everything `small` does (objects may have more keys, e.g. defaults a new schema adds).
fn holds(big: &Value, small: &Value) -> bool {
    match (big, small) {
        (Value::Object(b), Value::Object(s)) => {
            s.iter().all(|(k, v)| b.get(k).is_some_and(|bv| holds(bv, v)))
        }
        (Value::Array(b), Value::Array(s)) => {
            b.len() == s.len() && b.iter().zip(s).all(|(bv, sv)| holds(bv, sv))
        }
        (b, s) => numbers_as_floats(b) == numbers_as_floats(s),
    }
}

fn uid(meta: &kube::core::ObjectMeta) -> String {
    meta.uid.clone().unwrap()
}

#[tokio::test]
async fn upgrade_from_the_crds_dir_chart_delivers_the_new_schema_and_keeps_every_resource() {
    let started = Instant::now();
    let previous = last_crds_dir_chart();
    eprintln!("previous chart: {CHART} at {}", previous.commit);
    let cp = ControlPlane::start().await.unwrap();
    let client = cp.client().unwrap();
    let term = Terminal::new(&cp);
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("litellm.dev", "v1alpha1", "LiteLLMDeployment"),
        "litellmdeployments",
    );
    let llmds = Api::<DynamicObject>::namespaced_with(client.clone(), WATCHED, &resource);
    let secrets = Api::<Secret>::namespaced(client.clone(), WATCHED);

    // A release of the previous chart with a LiteLLMDeployment and its Secret, written against its schema.
    term.ok(
        &format!(
            "kubectl create namespace {WATCHED}\n\
             helm install {RELEASE} {chart} --namespace {NAMESPACE} --create-namespace \
               --set 'operator.watchNamespaces={{{WATCHED}}}'\n\
             kubectl apply -f {example}",
            chart = previous.chart().display(),
            example = previous.root.path().join("examples/minimal.yaml").display(),
        ),
        &cp,
    );
    let crd_before = crds.get(CRD_NAME).await.unwrap();
    let old_crd: Value = serde_yaml::from_str(&previous.read(CRDS_DIR_CRD)).unwrap();
    let live_before = serde_json::to_value(&crd_before).unwrap();
    assert_eq!(
        versions(&live_before),
        versions(&old_crd),
        "the previous chart installed its own CRD"
    );
    assert!(
        crd_before.metadata.annotations.is_none(),
        "{:?}",
        crd_before.metadata
    );
    let llmd_before = llmds.get("litellm-minimal").await.unwrap();
    let secret_before = secrets.get("litellm-minimal").await.unwrap();

    // What the upgrade must change: fields and CEL rules only the new schema has.
    let new_crd: Value = serde_yaml::from_str(&read_repo_file(LITELLM_CRD).unwrap()).unwrap();
    assert_ne!(
        schema(&new_crd),
        schema(&old_crd),
        "the previous chart was chosen for a schema other than today's"
    );
    let (old_fields, old_rules) = fields_and_rules(&schema(&old_crd));
    let (new_fields, new_rules) = fields_and_rules(&schema(&new_crd));
    let added_fields: Vec<&String> = new_fields.difference(&old_fields).collect();
    let added_rules: Vec<&String> = new_rules.difference(&old_rules).collect();
    eprintln!("fields only the new schema has: {added_fields:?}\nCEL rules only it has: {added_rules:?}");

    // Without the README's step Helm refuses to take over the CRD it did not create, and changes nothing.
    let (ok, output) = term.run(&format!(
        "helm upgrade {RELEASE} charts/litellm-operator --namespace {NAMESPACE} --reset-then-reuse-values"
    ));
    assert!(
        !ok,
        "the upgrade took over a CRD without ownership metadata:\n{output}"
    );
    let readme = std::fs::read_to_string(repo_path(CHART_README)).unwrap();
    for quoted in [
        "exists and cannot be imported into the current release: invalid ownership metadata",
        CRD_NAME,
    ] {
        assert!(
            output.contains(quoted),
            "helm's refusal lacks {quoted:?}:\n{output}"
        );
        assert!(readme.contains(quoted), "the README does not quote {quoted:?}");
    }
    let unchanged = serde_json::to_value(crds.get(CRD_NAME).await.unwrap()).unwrap();
    assert_eq!(schema(&unchanged), schema(&old_crd));

    // The README's block, as it stands.
    let blocks =
        doctest::blocks(&readme).unwrap_or_else(|bad| panic!("{CHART_README}:{}: {}", bad.line, bad.problem));
    let steps: Vec<_> = blocks
        .iter()
        .filter(|b| b.code.contains("meta.helm.sh/release-name"))
        .collect();
    assert_eq!(
        steps.len(),
        1,
        "{CHART_README} should have one block with the adoption step"
    );
    let step = &steps[0].code;
    for line in [format!("RELEASE={RELEASE}"), format!("NAMESPACE={NAMESPACE}")] {
        assert!(
            step.lines().any(|l| l == line),
            "{CHART_README}'s block no longer sets {line}:\n{step}"
        );
    }
    let upgraded = Instant::now();
    eprintln!("{}", term.ok(step, &cp));
    eprintln!(
        "the README's upgrade took {:.1}s",
        upgraded.elapsed().as_secs_f64()
    );

    // The CRD: the same object (never deleted, so neither were its resources), now the release's, with the new schema.
    let crd_after = crds.get(CRD_NAME).await.unwrap();
    assert_eq!(uid(&crd_after.metadata), uid(&crd_before.metadata));
    let annotations = crd_after.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("helm.sh/resource-policy").map(String::as_str),
        Some("keep")
    );
    assert_eq!(
        annotations.get("meta.helm.sh/release-name").map(String::as_str),
        Some(RELEASE)
    );
    let labels = crd_after.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("Helm")
    );
    assert!(labels.contains_key("helm.sh/chart"), "{labels:?}");
    let live_after = serde_json::to_value(&crd_after).unwrap();
    assert_eq!(
        versions(&live_after),
        versions(&new_crd),
        "the live CRD is not the chart's (schemas, printer columns, subresources)"
    );
    let (live_fields, live_rules) = fields_and_rules(&schema(&live_after));
    for field in &added_fields {
        assert!(live_fields.contains(*field), "{field} is not in the live schema");
    }
    for rule in &added_rules {
        assert!(
            live_rules.contains(*rule),
            "the CEL rule {rule} is not in the live schema"
        );
    }
    // And the API server serves it: `kubectl explain` reads the published OpenAPI, which follows the CRD.
    let leaves: Vec<&&String> = added_fields
        .iter()
        .filter(|f| !added_fields.iter().any(|g| g.starts_with(&format!("{f}."))))
        .take(5)
        .collect();
    for field in leaves {
        let script = format!("kubectl explain litellmdeployments.{field}");
        eventually(&format!("`{script}`"), Duration::from_secs(30), || {
            let (ok, output) = term.run(&script);
            async move { if ok { Ok(()) } else { Err(output) } }
        })
        .await;
    }

    // The LiteLLMDeployment and its Secret: the same objects, never rewritten; the old spec reads the same (the new
    // schema may add defaults for its new fields).
    let llmd_after = llmds.get("litellm-minimal").await.unwrap();
    assert_eq!(uid(&llmd_after.metadata), uid(&llmd_before.metadata));
    assert_eq!(
        llmd_after.metadata.resource_version,
        llmd_before.metadata.resource_version
    );
    assert!(
        holds(&llmd_after.data["spec"], &llmd_before.data["spec"]),
        "the spec changed:\nbefore {}\nafter {}",
        llmd_before.data["spec"],
        llmd_after.data["spec"]
    );
    let secret_after = secrets.get("litellm-minimal").await.unwrap();
    assert_eq!(uid(&secret_after.metadata), uid(&secret_before.metadata));
    assert_eq!(secret_after.data, secret_before.data);

    // The release: upgraded with the values it was installed with.
    let status = term.ok(&format!("helm status {RELEASE} --namespace {NAMESPACE}"), &cp);
    assert!(
        status.contains("STATUS: deployed") && status.contains("REVISION: "),
        "{status}"
    );
    let values: Value = serde_json::from_str(&term.ok(
        &format!("helm get values {RELEASE} --namespace {NAMESPACE} --output json"),
        &cp,
    ))
    .unwrap();
    assert_eq!(values["operator"]["watchNamespaces"], json!([WATCHED]));

    // Uninstalled: the operator goes; the CRD stays by its policy, and with it every LiteLLMDeployment.
    let output = term.ok(&format!("helm uninstall {RELEASE} --namespace {NAMESPACE}"), &cp);
    assert!(
        output.contains("kept due to the resource policy") && output.contains(CRD_NAME),
        "{output}"
    );
    let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    assert!(
        deployments
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let crd_kept = crds.get(CRD_NAME).await.unwrap();
    assert_eq!(uid(&crd_kept.metadata), uid(&crd_before.metadata));
    assert!(crd_kept.metadata.deletion_timestamp.is_none());
    assert_eq!(
        uid(&llmds.get("litellm-minimal").await.unwrap().metadata),
        uid(&llmd_before.metadata)
    );
    assert_eq!(
        uid(&secrets.get("litellm-minimal").await.unwrap().metadata),
        uid(&secret_before.metadata)
    );
    eprintln!(
        "install, upgrade and uninstall took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

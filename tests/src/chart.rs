//! The Helm chart (`charts/litellm-operator`) for tests: helm in an isolated home, rendering, reading the rendered
//! documents, and applying them to the shared control plane with kubectl.
#![allow(
    clippy::panic,
    reason = "a test fixture: a failing helm or kubectl command fails the test with its output"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::control_plane::ControlPlane;
use crate::manifests::{LITELLM_CRD, install_crd, read_repo_file, repo_path, yaml_documents};
use crate::tools;

/// The chart, relative to the repository root.
pub const CHART: &str = "charts/litellm-operator";

/// The values file that turns every option on, relative to the repository root.
pub const ALL_OPTIONS: &str = "charts/litellm-operator/ci/all-options-values.yaml";

/// The chart's copy of the generated LiteLLMDeployment CRD, which `templates/crds/litellmdeployments.yaml` renders
/// with the chart's labels and the keep policy; relative to the repository root.
pub const CHART_CRD: &str = "charts/litellm-operator/files/crds/litellmdeployments.yaml";

/// Where earlier charts kept the CRD: Helm's `crds/` directory, installed once and never upgraded.
pub const CRDS_DIR_CRD: &str = "charts/litellm-operator/crds/litellmdeployments.yaml";

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

/// Prometheus' promtool: `LITELLM_PROMTOOL_BIN`, else what `tests/promtool/build.sh` built (at most once per test
/// binary; the first build on a machine takes minutes, then it is cached outside the repository).
pub fn promtool() -> PathBuf {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("LITELLM_PROMTOOL_BIN") {
                return PathBuf::from(path);
            }
            let script = repo_path("tests/promtool/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed (its output is above)",
                script.display()
            );
            let stdout = text(&out.stdout);
            let dir = stdout
                .lines()
                .last()
                .unwrap_or_else(|| panic!("{} printed no directory", script.display()));
            Path::new(dir).join("promtool")
        })
        .clone()
}

/// `promtool ARGS...` in `dir`; its stdout and stderr, and whether it succeeded.
pub fn run_promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let promtool = promtool();
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", promtool.display()));
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
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

// ---------------------------------------------------------------------------------------------
// An earlier chart, from the repository's history

/// A chart of an earlier commit, extracted from git into a temporary directory laid out like the repository.
pub struct PreviousChart {
    /// The commit it comes from.
    pub commit: String,
    /// Holds `charts/litellm-operator` and `examples/` as of [`PreviousChart::commit`].
    pub root: tempfile::TempDir,
}

impl PreviousChart {
    /// The chart's directory, as helm takes it.
    pub fn chart(&self) -> PathBuf {
        self.root.path().join(CHART)
    }

    /// A file of the extracted tree (`relative` to the repository root).
    pub fn read(&self, relative: &str) -> String {
        let path = self.root.path().join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

/// `git ARGS...` in the repository; stdout, or `None` when git fails.
fn git(args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_path(""))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run git: {e}"));
    out.status.success().then_some(out.stdout)
}

/// The schemas (fields, defaults, CEL rules) of a CRD's versions.
fn schemas(crd: &str) -> Value {
    let crd: Value = serde_yaml::from_str(crd).unwrap_or_else(|e| panic!("a CRD that is not YAML: {e}"));
    crd["spec"]["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("a CRD without versions"))
        .iter()
        .map(|v| v["schema"].clone())
        .collect()
}

/// The newest chart that installed the CRD from `crds/` with a schema other than today's: what a release made
/// before the CRD became a template runs, and an upgrade from it must both adopt the CRD and change its schema.
/// Found in the history by what it contains rather than by a commit id, so a rebase or squash keeps it working;
/// it needs the repository's history (a clone, not an export or a shallow clone).
pub fn last_crds_dir_chart() -> PreviousChart {
    let generated = schemas(&read_repo_file(LITELLM_CRD).unwrap_or_else(|e| panic!("{e}")));
    let log = git(&["log", "--format=%H", "--", CRDS_DIR_CRD]).unwrap_or_else(|| {
        panic!(
            "git log failed: this test reads the chart's history, so it needs a git clone of the repository"
        )
    });
    let commit = text(&log)
        .lines()
        .find(|commit| {
            // Absent at a commit that removed it; the same schema at one that changed only other parts.
            git(&["show", &format!("{commit}:{CRDS_DIR_CRD}")])
                .is_some_and(|crd| schemas(&text(&crd)) != generated)
        })
        .unwrap_or_else(|| {
            panic!(
                "no commit has {CRDS_DIR_CRD} with a schema other than crds/litellmdeployments.yaml: a shallow \
                 clone? (`git fetch --unshallow`)"
            )
        })
        .to_owned();
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    extract(&commit, &[CHART, "examples"], root.path());
    PreviousChart { commit, root }
}

/// `git archive COMMIT PATHS... | tar -x -C DIR`.
fn extract(commit: &str, paths: &[&str], dir: &Path) {
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repo_path(""))
        .args(["archive", "--format=tar", commit])
        .args(paths)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run git archive: {e}"));
    let tar = archive
        .stdout
        .take()
        .unwrap_or_else(|| panic!("git archive has no stdout"));
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(tar)
        .status()
        .unwrap_or_else(|e| panic!("run tar: {e}"));
    let archived = archive
        .wait()
        .unwrap_or_else(|e| panic!("wait for git archive: {e}"));
    assert!(
        archived.success() && untar.success(),
        "git archive {commit} {paths:?} | tar -x failed"
    );
}

// ---------------------------------------------------------------------------------------------
// PromQL, as far as the chart's alerts and dashboard need it

/// The metric names a PromQL expression selects: every identifier that is not a function or aggregation, a
/// keyword, a label name (in `{...}` or the label list of `by`, `without`, `on`, `ignoring`, `group_left`,
/// `group_right`), part of a number or duration, or a Grafana variable (`$job`).
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 14] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    ];
    // String literals, then label matchers and ranges, then grouping label lists.
    let mut code = String::with_capacity(expr.len());
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                code.push(' ');
            }
            None if matches!(c, '"' | '\'' | '`') => {
                quote = Some(c);
                code.push(' ');
            }
            None => code.push(c),
        }
    }
    let blocks = regex::Regex::new(r"\{[^}]*\}|\[[^\]]*\]").unwrap_or_else(|e| panic!("{e}"));
    let code = blocks.replace_all(&code, " ");
    let lists = regex::Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
        .unwrap_or_else(|e| panic!("{e}"));
    let code = lists.replace_all(&code, " ");
    let ident = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap_or_else(|e| panic!("{e}"));
    let mut names = BTreeSet::new();
    for m in ident.find_iter(&code) {
        let before = code[..m.start()].chars().next_back();
        if before.is_some_and(|c| c == '$' || c == '.' || c.is_ascii_digit()) {
            continue;
        }
        let after = code[m.end()..].trim_start();
        if after.starts_with('(') || KEYWORDS.contains(&m.as_str().to_ascii_lowercase().as_str()) {
            continue;
        }
        names.insert(m.as_str().to_owned());
    }
    names
}

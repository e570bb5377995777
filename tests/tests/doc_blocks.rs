//! The docs, run: every shell block of `README.md` and `docs/*.md`, in page order, against a fresh local world per
//! page — a real kube-apiserver, etcd and kube-controller-manager, the Google emulator, and a stand-in node that
//! runs the chart's operator Deployment as the real binary (`litellm_operator_tests::node`). The commands find
//! `kubectl`, `helm` and `litellm-operator` on PATH, gcloud pointed at the emulator, and the repository's
//! `examples/`, `charts/` and `crds/` in the working directory. A block that exits non-zero, or whose documented
//! output does not show, fails its page.
//!
//! Directives in the pages say what cannot run here and why (real Google, a node, an editor), which placeholder
//! stands for what, and which block is a watch: see `tests/src/doctest.rs`. The runner prints every block it
//! skips, with the page's reason, on stderr past the test harness's capture, so `make test` shows them. `DOC_TEST_SHOW=1` prints every block's output as well.

#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use litellm_operator_tests::doctest::{self, Block, Mode};
use litellm_operator_tests::node::Node;
use litellm_operator_tests::{ControlPlane, fixtures, repo_path, tools};
use tokio::io::AsyncReadExt as _;

/// The pages, in the order a reader meets them. `every_page_is_listed` keeps it complete.
const PAGES: [&str; 8] = [
    "README.md",
    "docs/getting-started.md",
    "docs/migrating-from-gcloud.md",
    "docs/troubleshooting.md",
    "docs/security.md",
    "docs/gitops-argocd.md",
    "docs/architecture.md",
    "docs/crd-reference.md",
];

/// How long one block may run; a watch (`until`) gets as long to show its text.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(180);

/// One page at a time: the pages name the same namespaces, projects and files, and each starts a control plane.
static ONE_PAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[test]
fn every_page_is_listed_and_its_directives_parse() {
    let mut pages: Vec<String> = std::fs::read_dir(repo_path("docs"))
        .unwrap()
        .map(|e| format!("docs/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".md"))
        .collect();
    pages.push("README.md".into());
    pages.sort();
    let mut listed: Vec<String> = PAGES.iter().map(|p| (*p).to_owned()).collect();
    listed.sort();
    assert_eq!(pages, listed, "PAGES must list every Markdown page");
    for page in PAGES {
        let text = std::fs::read_to_string(repo_path(page)).unwrap();
        if let Err(bad) = doctest::blocks(&text) {
            panic!("{page}:{}: {}", bad.line, bad.problem);
        }
    }
}

/// Every relative link of every page leads to a file that exists and, with an anchor, to a heading of it; every
/// test a page names as proof after a link to a `.rs` file is a function of that file.
#[test]
fn every_link_and_every_named_test_exists() {
    let mut broken = Vec::new();
    for page in PAGES {
        let text = std::fs::read_to_string(repo_path(page)).unwrap();
        let dir = Path::new(page).parent().unwrap_or(Path::new(""));
        for link in doctest::links(&text) {
            let target = if link.path.is_empty() {
                PathBuf::from(page)
            } else {
                dir.join(&link.path)
            };
            let Ok(content) = std::fs::read_to_string(repo_path(&target)) else {
                if !repo_path(&target).is_dir() {
                    broken.push(format!("{page}:{}: {} does not exist", link.line, link.path));
                }
                continue;
            };
            if let Some(anchor) = &link.anchor
                && !doctest::anchors(&content).contains(anchor)
            {
                broken.push(format!(
                    "{page}:{}: {} has no heading #{anchor}",
                    link.line,
                    target.display()
                ));
            }
        }
        for (line, file, name) in doctest::named_tests(&text) {
            let source = std::fs::read_to_string(repo_path(dir.join(&file))).unwrap_or_default();
            if !source.contains(&format!("fn {name}(")) {
                broken.push(format!("{page}:{line}: {file} has no test {name}"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[tokio::test]
async fn readme() {
    run_page("README.md").await;
}

#[tokio::test]
async fn getting_started() {
    run_page("docs/getting-started.md").await;
}

#[tokio::test]
async fn migrating_from_gcloud() {
    run_page("docs/migrating-from-gcloud.md").await;
}

#[tokio::test]
async fn troubleshooting() {
    run_page("docs/troubleshooting.md").await;
}

#[tokio::test]
async fn security() {
    run_page("docs/security.md").await;
}

#[tokio::test]
async fn gitops_argocd() {
    run_page("docs/gitops-argocd.md").await;
}

/// Runs `page`'s blocks in order; panics at the first that fails, with its output and the operators' logs.
async fn run_page(page: &str) {
    let text = std::fs::read_to_string(repo_path(page)).unwrap();
    let blocks = doctest::blocks(&text).unwrap_or_else(|bad| panic!("{page}:{}: {}", bad.line, bad.problem));
    // Straight to stderr, not through the test harness's capture: `make test` shows what the docs leave out.
    let mut report = String::new();
    for block in &blocks {
        if let Mode::Skip(reason) = &block.mode {
            report.push_str(&format!("doc block {page}:{} skipped: {reason}\n", block.line));
        }
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
    if blocks.iter().all(|b| matches!(b.mode, Mode::Skip(_))) {
        return;
    }
    let _turn = ONE_PAGE_AT_A_TIME.lock().await;
    // The reader's project has the operator's and the runtime account (security.md creates them); a page that
    // creates one itself starts without it, as its reader would.
    let accounts: Vec<String> = [fixtures::OPERATOR_ACCOUNT, fixtures::RUNTIME_SA]
        .into_iter()
        .filter(|email| {
            let id = email.split('@').next().unwrap_or_default();
            !text.contains(&format!("gcloud iam service-accounts create {id} "))
        })
        .map(str::to_owned)
        .collect();
    let world = LocalWorld::start(accounts).await;
    for block in blocks.iter().filter(|b| !matches!(b.mode, Mode::Skip(_))) {
        let started = Instant::now();
        let result = world.run(block).await;
        let output = match result {
            Ok(output) => output,
            Err(output) => panic!(
                "{page}:{}: the block failed:\n{}\n--- its output ---\n{output}\n{}",
                block.line,
                block.code,
                world.node.logs()
            ),
        };
        if let Some(documented) = &block.output
            && let Err(line) = doctest::matches(documented, &output)
        {
            panic!(
                "{page}:{}: the output the page shows is not what the block printed: no line like\n  {line}\n\
                 --- its output ---\n{output}",
                block.line
            );
        }
        if std::env::var_os("DOC_TEST_SHOW").is_some() {
            println!("{output}");
        }
        println!(
            "{page}:{}: ok in {:.1}s",
            block.line,
            started.elapsed().as_secs_f64()
        );
    }
}

/// A reader's machine: a cluster, Google (the emulator), the tools on PATH, a working directory.
struct LocalWorld {
    /// Kept for the world's lifetime: dropping it stops kube-apiserver and etcd.
    _cp: ControlPlane,
    _emulator: gcp_emulator::Emulator,
    node: Node,
    /// The working directory: `examples/`, `charts/`, `crds/` linked from the repository.
    work: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl LocalWorld {
    /// A fresh world where the service accounts `accounts` exist.
    async fn start(accounts: Vec<String>) -> LocalWorld {
        let cp = ControlPlane::start().await.unwrap();
        let emulator = gcp_emulator::spawn(gcp_emulator::Config {
            revision_startup: Duration::from_millis(500),
            service_accounts: accounts,
            // Step 1 of security.md's Workload Identity guide (a GKE cluster) is not run here; its pool is.
            workload_identity_pools: vec![fixtures::PROJECT.to_owned()],
            ..gcp_emulator::Config::default()
        })
        .await
        .unwrap();
        let endpoint = emulator.url();
        let node = Node::start(&cp, &endpoint).unwrap();
        let work = tempfile::tempdir().unwrap();
        for dir in ["examples", "charts", "crds"] {
            std::os::unix::fs::symlink(repo_path(dir), work.path().join(dir)).unwrap();
        }
        let bin = node.dir().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let tools: [(&str, PathBuf); 3] = [
            ("kubectl", tools::bin_dir().unwrap().join("kubectl")),
            ("helm", tools::helm().unwrap()),
            ("litellm-operator", tools::operator_binary().unwrap()),
        ];
        for (name, path) in tools {
            std::os::unix::fs::symlink(path, bin.join(name)).unwrap();
        }
        let home = node.dir().join("home");
        let gcloud = home.join("gcloud");
        std::fs::create_dir_all(&gcloud).unwrap();
        std::fs::write(gcloud.join("token"), "doc-test-token\n").unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let at = |p: &Path| p.display().to_string();
        let env: Vec<(String, String)> = [
            ("PATH", path),
            ("KUBECONFIG", at(cp.kubeconfig())),
            ("HELM_CACHE_HOME", at(&home.join("helm-cache"))),
            ("HELM_CONFIG_HOME", at(&home.join("helm-config"))),
            ("HELM_DATA_HOME", at(&home.join("helm-data"))),
            ("LITELLM_GCP_ENDPOINT", endpoint.clone()),
            ("NO_COLOR", "1".into()),
        ]
        .into_iter()
        // gcloud, as the demo prints it.
        .chain(emulator.gcloud_env(&gcloud))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        LocalWorld {
            _cp: cp,
            _emulator: emulator,
            node,
            work,
            env,
        }
    }

    /// Runs one block with bash (`-e -o pipefail`, as a careful reader pastes it); its output (stdout and stderr
    /// interleaved), `Err` when it failed or timed out.
    async fn run(&self, block: &Block) -> Result<String, String> {
        let script = format!("exec 2>&1\nset -eo pipefail\n{}\n", block.code);
        let mut command = tokio::process::Command::new("bash");
        command
            .arg("-c")
            .arg(script)
            .current_dir(self.work.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(&block.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let pid = child.id().unwrap_or_default();
        let mut stdout = child.stdout.take().unwrap();
        let mut output = Vec::new();
        let until = match &block.mode {
            Mode::Until(pattern) => Some(regex::Regex::new(pattern).map_err(|e| format!("until: {e}"))?),
            _ => None,
        };
        let deadline = tokio::time::Instant::now() + BLOCK_TIMEOUT;
        let mut chunk = [0u8; 8192];
        loop {
            let read = tokio::time::timeout_at(deadline, stdout.read(&mut chunk)).await;
            match read {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    output.extend_from_slice(&chunk[..n]);
                    if let Some(pattern) = &until
                        && String::from_utf8_lossy(&output)
                            .lines()
                            .any(|l| pattern.is_match(l))
                    {
                        kill_group(pid).await;
                        return Ok(String::from_utf8_lossy(&output).into_owned());
                    }
                }
                Ok(Err(e)) => return Err(format!("reading its output: {e}")),
                Err(_) => {
                    kill_group(pid).await;
                    let shown = String::from_utf8_lossy(&output).into_owned();
                    return Err(match until {
                        Some(pattern) => {
                            format!("{shown}\n(no line like /{pattern}/ within {BLOCK_TIMEOUT:?})")
                        }
                        None => format!("{shown}\n(still running after {BLOCK_TIMEOUT:?})"),
                    });
                }
            }
        }
        let status = child.wait().await.unwrap();
        let output = String::from_utf8_lossy(&output).into_owned();
        let expected = match block.mode {
            Mode::Run { exit } => exit,
            _ => 0,
        };
        match (status.code() == Some(expected), until) {
            (true, None) => Ok(output),
            (true, Some(pattern)) => Err(format!("{output}\n(ended without a line like /{pattern}/)")),
            (false, _) => Err(format!(
                "{output}\n({status}; the page expects exit status {expected})"
            )),
        }
    }
}

/// Stops a block's whole process group (a watch and whatever it piped into).
async fn kill_group(pid: u32) {
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .await;
}

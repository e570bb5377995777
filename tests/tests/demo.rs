//! `make demo` end to end: the real `litellm-operator run` binary against a real kube-apiserver and the
//! emulator, driven by `kubectl apply` of the shipped example and inspected with kubectl and gcloud.
#![allow(clippy::unwrap_used, clippy::panic)]

use litellm_operator_tests::{doctest, repo_path};

#[test]
fn demo_reaches_ready_and_shows_the_pinned_stack() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg("--once")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed (is the litellm-operator binary built? `cargo build -p litellm-operator`)\n{stdout}\n{stderr}"
    );
    // kubectl get llmd shows Ready with a revision.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("litellm-proxy "))
        .unwrap_or_default();
    assert!(
        row.contains(" True ") && row.contains("litellm-proxy-00001-"),
        "{stdout}"
    );
    // gcloud, pointed at the emulator, lists the eleven secrets and the accessor binding.
    for id in [
        "database-url",
        "litellm-master-key",
        "litellm-salt-key",
        "tavily-api-key",
        "context7-api-key",
    ] {
        assert!(stdout.contains(id), "gcloud secrets list lacks {id}\n{stdout}");
    }
    assert!(
        stdout.contains("serviceAccount:litellm-run@my-project.iam.gserviceaccount.com"),
        "{stdout}"
    );
    // The service pins concrete versions, and no secret value is printed.
    assert!(
        stdout.contains("DATABASE_URL           -> projects/my-project/secrets/database-url:1"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("change-me") && !stderr.contains("change-me"),
        "a secret value was printed"
    );
    // What docs/getting-started.md shows of it is what it prints.
    let page = std::fs::read_to_string(repo_path("docs/getting-started.md")).unwrap();
    let blocks = doctest::blocks(&page).unwrap();
    let documented = blocks
        .iter()
        .find(|b| b.code.trim() == "make demo")
        .and_then(|b| b.output.as_deref())
        .expect("getting-started.md shows the output of `make demo`");
    if let Err(line) = doctest::matches(documented, &stdout) {
        panic!(
            "getting-started.md shows a line the demo does not print:\n  {line}\n--- the demo printed ---\n{stdout}"
        );
    }
}

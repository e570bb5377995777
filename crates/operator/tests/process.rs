//! The `litellm-operator` process as a kubelet and a log pipeline see it: a metrics port it cannot serve stops it
//! at once with a message naming the address; `--log-level` is checked; `--log-format json` writes one Cloud
//! Logging object per line on stderr, for `run` and for the CLI commands alike.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn operator(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_litellm-operator"));
    command.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// The JSON log lines of `stderr`; panics on any line that is not one.
fn json_lines(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

#[test]
fn a_metrics_port_in_use_stops_run_at_once_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let started = Instant::now();
    // No kubeconfig either: the port is checked first, so that is not what stops it.
    let out = operator(
        &["run", "--metrics-addr", &addr, "--log-format", "json"],
        &[("KUBECONFIG", "/nonexistent/kubeconfig")],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = json_lines(&out.stderr);
    let last = lines.last().unwrap();
    assert_eq!(last["severity"], "ERROR");
    assert_eq!(last["message"], "Operator stopped");
    let error = last["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("cannot serve metrics and health on {addr}")),
        "{error}"
    );
}

#[test]
fn a_bad_log_level_is_a_usage_error() {
    let out = operator(&["crd", "--log-level", "info,litellm_operator=loud"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_commands_log_as_json_on_stderr_and_keep_stdout_for_their_output() {
    // An unreachable Google endpoint: `plan` fails, and says so in the log as well as in its error line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.yaml");
    std::fs::write(
        &file,
        "apiVersion: litellm.dev/v1alpha1\nkind: LiteLLMDeployment\nmetadata: {name: x, namespace: llm}\n\
         spec:\n  project: my-project\n  region: us-central1\n  service:\n    image: i\n    \
         serviceAccount: a@my-project.iam.gserviceaccount.com\n  secrets:\n    - env: K\n      generate: {}\n",
    )
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = operator(
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--gcp-endpoint",
            &format!("http://127.0.0.1:{closed}"),
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!json.is_empty(), "no JSON log line at debug level:\n{stderr}");
    assert!(
        json.iter()
            .all(|l| l["severity"].is_string() && l["timestamp"].is_string())
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"severity\""));
}

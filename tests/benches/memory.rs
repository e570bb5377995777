//! Operator memory (DESIGN section 8: idle under 25 MiB RSS, 1,000 LiteLLMDeployments under 64 MiB): runs the
//! real `litellm-operator run` binary against a real kube-apiserver and the emulator, and reads its VmRSS from
//! /proc while idle and once it has reconciled N resources.
//!
//! `cargo build --release -p litellm-operator && cargo bench -p litellm-operator-tests --bench memory`
//! (`-- --resources N`, default 1000). The resources are paused (`litellm.dev/paused: "true"`): each is watched,
//! cached, reconciled through the finalizer and given a status, without Google calls, so the figure is the
//! operator's own footprint. As part of `cargo test` it runs with 50 resources. Prints numbers; asserts only that
//! every resource was reconciled.
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use litellm_operator_api::LiteLLMDeployment;
use litellm_operator_tests::{ControlPlane, Patience, eventually, install_litellm_crd, tools};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let resources: usize = args
        .iter()
        .position(|a| a == "--resources")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().unwrap())
        .unwrap_or(if benchmarking { 1000 } else { 50 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(resources));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn run(resources: usize) {
    // `cargo bench` runs the release build (what ships), `cargo test` the debug one.
    let binary = tools::operator_binary().unwrap();
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();
    install_litellm_crd(&client).await.unwrap();
    let ns = cp.namespace("memory").await.unwrap();
    let emulator = gcp_emulator::spawn(gcp_emulator::Config::default())
        .await
        .unwrap();

    // The bench's resources use other projects' accounts and an external secret: a tenancy policy that allows them
    // (the operator would refuse them, as Forbidden, under the safe default before it sees they are paused).
    let dir = tempfile::tempdir().unwrap();
    let tenancy = dir.path().join("tenancy.yaml");
    std::fs::write(
        &tenancy,
        "default: {serviceAccounts: [\"*\"], externalSecrets: [\"*\"]}\n",
    )
    .unwrap();
    let tenancy = tenancy.display().to_string();
    let mut operator = tokio::process::Command::new(&binary)
        .args([
            "run",
            "--namespace",
            &ns,
            "--metrics-addr",
            "127.0.0.1:0",
            "--gcp-endpoint",
            &emulator.url(),
            "--tenancy-policy",
            &tenancy,
        ])
        .env("KUBECONFIG", cp.kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = operator.id().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(operator.try_wait().unwrap().is_none(), "the operator exited");
    let idle = rss_kib(pid);

    let api: Api<LiteLLMDeployment> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    for i in 0..resources {
        let obj: LiteLLMDeployment = serde_json::from_value(json!({
            "apiVersion": "litellm.dev/v1alpha1", "kind": "LiteLLMDeployment",
            "metadata": {"name": format!("llm-{i:04}"), "annotations": {"litellm.dev/paused": "true"}},
            "spec": {
                "project": format!("bench-project-{i:04}"), "region": "us-central1",
                "service": {"image": "ghcr.io/berriai/litellm:main-stable",
                            "serviceAccount": "litellm-run@bench.iam.gserviceaccount.com",
                            "env": {"STORE_MODEL_IN_DB": "True", "LITELLM_LOG": "INFO"}},
                "secrets": [
                    {"env": "LITELLM_MASTER_KEY", "generate": {"length": 48, "prefix": "sk-"}},
                    {"env": "DATABASE_URL", "fromSecret": {"name": "creds", "key": "database-url"}},
                    {"env": "TAVILY_API_KEY", "external": {"version": "latest"}}
                ]
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }
    let created = started.elapsed();
    let mut peak = idle;
    eventually(
        "every resource to be reconciled",
        Patience::new(Duration::from_secs(600)).every(Duration::from_millis(500)),
        || {
            peak = peak.max(rss_kib(pid));
            let api = &api;
            async move {
                let list = api.list(&Default::default()).await.unwrap();
                let done = list
                    .items
                    .iter()
                    .filter(|d| {
                        d.status
                            .as_ref()
                            .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "Paused"))
                    })
                    .count();
                if done == resources {
                    Ok(())
                } else {
                    Err(format!("only {done} of {resources} reconciled"))
                }
            }
        },
    )
    .await;
    let reconciled = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = rss_kib(pid);
    peak = peak.max(settled);
    println!(
        "operator memory ({}):",
        binary
            .display()
            .to_string()
            .rsplit("target/")
            .next()
            .unwrap_or_default()
    );
    println!("  idle: {:.1} MiB RSS", idle as f64 / 1024.0);
    println!(
        "  {resources} LiteLLMDeployments (created in {:.1}s, all reconciled after {:.1}s): {:.1} MiB RSS settled, {:.1} MiB peak",
        created.as_secs_f64(),
        reconciled.as_secs_f64(),
        settled as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    operator.kill().await.unwrap();
}

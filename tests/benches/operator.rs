//! The budgets of DESIGN section 8, measured: convergence of the full runbook stack against the emulator with
//! realistic latency (compared with the runbook's gcloud calls made one by one, and with the critical path),
//! rotation latency, and the Google and status traffic of a converged resource's resyncs.
//!
//! `cargo bench -p litellm-operator-tests --bench operator` (`-- --latency-ms N`, default 50). As part of
//! `cargo test` it runs once with 5 ms latency as a smoke test. Prints numbers; asserts only that things converged.
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use litellm_operator::controller::{self, Context, Settings};
use litellm_operator::metrics::{Health, Metrics};
use litellm_operator_api::{LiteLLMDeployment, LiteLLMDeploymentStatus};
use litellm_operator_gcp::{Gcp, GcpConfig, SecretName, SecretPayload, SecretStore, SecretVersionStore};
use litellm_operator_tests::{ControlPlane, install_crd, repo_path, yaml_documents};

const KEYS: [&str; 8] = [
    "database-url",
    "ui-username",
    "ui-password",
    "redis-host",
    "redis-password",
    "langfuse-secret-key",
    "langfuse-public-key",
    "context7-api-key",
];
const REVISION_STARTUP: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let latency_ms: u64 = args
        .iter()
        .position(|a| a == "--latency-ms")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().unwrap())
        .unwrap_or(if benchmarking { 50 } else { 5 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Resync: long enough not to overlap the convergence and rotation measurements, short enough to watch a few.
    let resync = Duration::from_secs(if benchmarking { 20 } else { 6 });
    runtime.block_on(run(Duration::from_millis(latency_ms), resync, benchmarking));
}

fn calls(metrics: &Metrics) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("gcp_api_calls_total{"))
    {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *calls.entry(method.to_owned()).or_insert(0) += count as u64;
    }
    calls
}

fn status_writes(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("litellm_operator_status_writes_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

const WRITES: [&str; 7] = [
    "CreateSecret",
    "AddSecretVersion",
    "SetIamPolicy",
    "CreateService",
    "UpdateService",
    "DisableSecretVersion",
    "DeleteSecret",
];

async fn run(latency: Duration, resync: Duration, benchmarking: bool) {
    let cp = ControlPlane::shared().await.unwrap();
    let client = cp.client().unwrap();
    install_crd(
        &client,
        &std::fs::read_to_string(repo_path("crds/litellmdeployments.yaml")).unwrap(),
    )
    .await
    .unwrap();
    let ns = cp.namespace("bench").await.unwrap();
    let emulator = gcp_emulator::spawn(gcp_emulator::Config {
        latency,
        revision_startup: REVISION_STARTUP,
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let mut metrics = Metrics::new();
    // The same client-side quota buckets as `litellm-operator run`.
    let config = GcpConfig {
        rate_limits: litellm_operator::gcp_config::rate_limits(0.8),
        ..GcpConfig::emulator(emulator.url().parse().unwrap())
    };
    let gcp = Gcp::connect(&config, &mut metrics.registry).await.unwrap();
    let metrics = Arc::new(metrics);
    let ctx = Arc::new(Context::new(
        client.clone(),
        gcp.clone(),
        kube::runtime::events::Reporter {
            controller: "litellm-operator".into(),
            instance: None,
        },
        metrics.clone(),
        Settings {
            namespace: Some(ns.clone()),
            resync,
            progress_poll: Duration::from_millis(250),
            ..Settings::default()
        },
    ));
    let operator = tokio::spawn(controller::run(ctx, Health::default()));

    // The external secret another team owns.
    let tavily = SecretName::new("my-project", "tavily-api-key");
    gcp.create_secret(&tavily, &Default::default()).await.unwrap();
    gcp.add_version(&tavily, &SecretPayload::new(b"tvly".to_vec()))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let put = |value: &'static str| {
        let secrets = secrets.clone();
        async move {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some("litellm-credentials".into()),
                    ..ObjectMeta::default()
                },
                data: Some(
                    KEYS.iter()
                        .map(|k| ((*k).to_owned(), ByteString(format!("{k}-{value}").into_bytes())))
                        .collect(),
                ),
                ..Secret::default()
            };
            secrets
                .patch(
                    "litellm-credentials",
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(&secret),
                )
                .await
                .unwrap();
        }
    };
    put("1").await;

    let text = std::fs::read_to_string(repo_path("examples/litellm-deployment.yaml")).unwrap();
    let mut manifest = yaml_documents(&text, "example")
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "LiteLLMDeployment")
        .unwrap();
    manifest["metadata"] = serde_json::json!({"name": "litellm-proxy", "namespace": ns});
    let obj: LiteLLMDeployment = serde_json::from_value(manifest).unwrap();
    let api: Api<LiteLLMDeployment> = Api::namespaced(client.clone(), &ns);
    let before = calls(&metrics);
    // The clock starts once the API server has stored the resource: the first create of a freshly installed
    // CRD's kind can take the API server seconds, which is not the operator's time.
    api.create(&PostParams::default(), &obj).await.unwrap();
    let started = Instant::now();
    wait(&api, ready).await;
    let converge = started.elapsed();
    let converge_calls = delta(&before, &calls(&metrics));
    let total: u64 = converge_calls.values().sum();

    // The runbook by hand, for real where gcloud can reach the emulator: `gcloud secrets create --data-file` for
    // ten secrets and `gcloud secrets add-iam-policy-binding` for eleven, one after the other, against a second
    // emulator with the same latency. `gcloud run deploy` speaks Cloud Run v1, which the emulator does not serve:
    // it is counted as its API calls plus the revision start-up it waits for, and so is the invoker binding.
    let (runbook, runbook_calls) = if benchmarking {
        let measured = gcloud_runbook(latency).await;
        (
            measured + latency * 4 + REVISION_STARTUP,
            "21 gcloud commands measured + run deploy estimated",
        )
    } else {
        (
            latency * 46 + REVISION_STARTUP,
            "46 API calls + revision start-up, gcloud start-up not counted",
        )
    };
    // Critical path: find, create, list versions, add version (one secret; the others run alongside), get + set
    // policy, get service, create service, revision start-up, then one poll to observe Ready.
    let critical = latency * 8 + REVISION_STARTUP;
    println!(
        "convergence of the runbook stack (11 secrets), emulator latency {} ms per call:",
        latency.as_millis()
    );
    println!(
        "  operator: {:.2}s, {total} Google calls {converge_calls:?}",
        converge.as_secs_f64()
    );
    println!(
        "  runbook's gcloud commands one by one: {:.2}s ({runbook_calls}) -> operator is {:.1}x faster",
        runbook.as_secs_f64(),
        runbook.as_secs_f64() / converge.as_secs_f64()
    );
    println!(
        "  critical path estimate: {:.2}s -> operator is {:.2}s above it",
        critical.as_secs_f64(),
        converge.as_secs_f64() - critical.as_secs_f64()
    );

    // Steady state: a few resyncs of a converged resource.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (before, writes_before) = (calls(&metrics), status_writes(&metrics));
    let window = resync * 2 + Duration::from_secs(1);
    tokio::time::sleep(window).await;
    let steady = delta(&before, &calls(&metrics));
    let steady_writes: u64 = WRITES.iter().map(|m| steady.get(*m).copied().unwrap_or(0)).sum();
    let payload_reads = steady.get("AccessSecretVersion").copied().unwrap_or(0);
    let resyncs = steady.get("GetService").copied().unwrap_or(0).max(1);
    let reads: u64 = steady.values().sum::<u64>() - steady_writes;
    println!(
        "steady state over {:.0}s ({resyncs} resyncs):",
        window.as_secs_f64()
    );
    println!(
        "  Google writes {steady_writes}, payload reads {payload_reads}, status writes {}, reads per resync {:.1} ({:.1} per secret) {steady:?}",
        status_writes(&metrics) - writes_before,
        reads as f64 / resyncs as f64,
        reads as f64 / resyncs as f64 / 11.0
    );

    // Rotation: edit the Kubernetes Secret; time until a Ready revision is pinned to the new version.
    let revision_before = api
        .get("litellm-proxy")
        .await
        .unwrap()
        .status
        .unwrap()
        .latest_ready_revision;
    let started = Instant::now();
    put("2").await;
    wait(&api, |s| {
        ready(s)
            && s.latest_ready_revision != revision_before
            && s.secrets
                .iter()
                .filter(|p| p.version.as_deref() == Some("2"))
                .count()
                == KEYS.len()
    })
    .await;
    let rotation = started.elapsed();
    let rotation_critical = latency * 6 + REVISION_STARTUP;
    println!(
        "rotation of 8 values: Kubernetes Secret edit -> Ready revision pinned to version 2 in {:.2}s (critical path {:.2}s + {:.2}s)",
        rotation.as_secs_f64(),
        rotation_critical.as_secs_f64(),
        rotation.as_secs_f64() - rotation_critical.as_secs_f64()
    );
    operator.abort();
}

fn ready(status: &LiteLLMDeploymentStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn wait(api: &Api<LiteLLMDeployment>, check: impl Fn(&LiteLLMDeploymentStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = api.get("litellm-proxy").await.unwrap().status.unwrap_or_default();
        if check(&status) {
            return;
        }
        assert!(Instant::now() < deadline, "did not converge: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the secret half of the gcloud runbook against a fresh emulator and returns how long it took.
async fn gcloud_runbook(latency: Duration) -> Duration {
    let emulator = gcp_emulator::spawn(gcp_emulator::Config {
        latency,
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("token"), "bench\n").unwrap();
    let gcloud = |args: Vec<String>, stdin: Option<&'static str>| {
        let mut command = tokio::process::Command::new("gcloud");
        command
            .args(&args)
            .env("CLOUDSDK_CONFIG", config.path())
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", config.path().join("token"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
            .env("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")
            .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
            .env(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER",
                format!("{}/", emulator.url()),
            )
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        async move {
            let mut child = command.spawn().unwrap();
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                tokio::io::AsyncWriteExt::write_all(&mut pipe, text.as_bytes())
                    .await
                    .unwrap();
            }
            let out = child.wait_with_output().await.unwrap();
            assert!(
                out.status.success(),
                "gcloud {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let ids = [
        "database-url",
        "litellm-master-key",
        "litellm-salt-key",
        "ui-username",
        "ui-password",
        "redis-host",
        "redis-password",
        "langfuse-secret-key",
        "langfuse-public-key",
        "context7-api-key",
    ];
    // The external secret already exists, as in the operator's run: created before the clock starts.
    let args = [
        "secrets",
        "create",
        "tavily-api-key",
        "--project",
        "my-project",
        "--data-file=-",
    ];
    gcloud(args.iter().map(|a| (*a).to_owned()).collect(), Some("value")).await;
    let started = Instant::now();
    for id in ids {
        let args = [
            "secrets",
            "create",
            id,
            "--project",
            "my-project",
            "--data-file=-",
        ];
        gcloud(args.iter().map(|a| (*a).to_owned()).collect(), Some("value")).await;
    }
    for id in ids.iter().chain(["tavily-api-key"].iter()) {
        let args = [
            "secrets",
            "add-iam-policy-binding",
            id,
            "--project",
            "my-project",
            "--member=serviceAccount:litellm-run@my-project.iam.gserviceaccount.com",
            "--role=roles/secretmanager.secretAccessor",
        ];
        gcloud(args.iter().map(|a| (*a).to_owned()).collect(), None).await;
    }
    started.elapsed()
}

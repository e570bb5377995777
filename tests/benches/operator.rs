//! The budgets of DESIGN section 8, measured: convergence of the full runbook stack against the emulator with
//! realistic latency (compared with the runbook's gcloud calls made one by one, and with the critical path),
//! rotation latency, and the Google and status traffic of a converged resource's resyncs.
//!
//! `cargo bench -p litellm-operator-tests --bench operator` (`-- --latency-ms N`, default 50). As part of
//! `cargo test` it runs once with 5 ms latency as a smoke test. Prints numbers; asserts only that things converged.
#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use litellm_operator::controller::Settings;
use litellm_operator::plan::tenancy::{Rules, TenancyPolicy};
use litellm_operator_api::LiteLLMDeploymentStatus;
use litellm_operator_tests::fixtures::{RUNBOOK_CREDENTIAL_KEYS, runbook};
use litellm_operator_tests::{GOOGLE_WRITES, Patience, World, eventually, is_ready};

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

/// The operator's status writes so far, from its metrics (Google calls are counted by the emulator).
fn status_writes(w: &World) -> u64 {
    w.metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("litellm_operator_status_writes_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

async fn run(latency: Duration, resync: Duration, benchmarking: bool) {
    let w = World::builder("bench")
        .emulator(gcp_emulator::Config {
            latency,
            revision_startup: REVISION_STARTUP,
            service_accounts: vec![litellm_operator_tests::fixtures::RUNTIME_SA.to_owned()],
            ..gcp_emulator::Config::default()
        })
        .settings(Settings {
            resync,
            progress_poll: Duration::from_millis(250),
            // The runbook stack reads another team's tavily-api-key: a policy that allows it.
            tenancy: TenancyPolicy {
                tenants: Vec::new(),
                default: Rules {
                    external_secrets: vec!["tavily-api-key".to_owned()],
                    ..Rules::default()
                },
            },
            ..Settings::default()
        })
        .start()
        .await;

    // The external secret another team owns.
    w.add_external_secret("tavily-api-key", b"tvly").await;
    let put = |value: &'static str| {
        let w = &w;
        async move {
            let data: Vec<(String, String)> = RUNBOOK_CREDENTIAL_KEYS
                .iter()
                .map(|k| ((*k).to_owned(), format!("{k}-{value}")))
                .collect();
            let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            w.put_secret("litellm-credentials", &data).await;
        }
    };
    put("1").await;

    let before = w.calls();
    // The clock starts once the API server has stored the resource: the first create of a freshly installed
    // CRD's kind can take the API server seconds, which is not the operator's time.
    let name = w.create(runbook("litellm-proxy")).await;
    let started = Instant::now();
    wait(&w, &name, is_ready).await;
    let converge = started.elapsed();
    let converge_calls = w.calls().since(&before);
    let total = converge_calls.total();
    let converge_calls = converge_calls.per_method();

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
    let (before, writes_before) = (w.calls(), status_writes(&w));
    let window = resync * 2 + Duration::from_secs(1);
    tokio::time::sleep(window).await;
    let steady = w.calls().since(&before);
    let steady_writes: u64 = GOOGLE_WRITES.iter().map(|m| steady.count(m)).sum();
    let payload_reads = steady.count("*.AccessSecretVersion");
    let resyncs = steady.count("Services.GetService").max(1);
    let reads = steady.total() - steady_writes;
    println!(
        "steady state over {:.0}s ({resyncs} resyncs):",
        window.as_secs_f64()
    );
    println!(
        "  Google writes {steady_writes}, payload reads {payload_reads}, status writes {}, reads per resync {:.1} ({:.1} per secret) {:?}",
        status_writes(&w) - writes_before,
        reads as f64 / resyncs as f64,
        reads as f64 / resyncs as f64 / 11.0,
        steady.per_method()
    );

    // Rotation: edit the Kubernetes Secret; time until a Ready revision is pinned to the new version.
    let revision_before = w.status(&name).await.latest_ready_revision;
    let started = Instant::now();
    put("2").await;
    wait(&w, &name, |s| {
        is_ready(s)
            && s.latest_ready_revision != revision_before
            && s.secrets
                .iter()
                .filter(|p| p.version.as_deref() == Some("2"))
                .count()
                == RUNBOOK_CREDENTIAL_KEYS.len()
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
    drop(w);
}

/// Waits (up to 180 s, looking every 50 ms so the measurement stays sharp) until `check` accepts the status.
async fn wait(w: &World, name: &str, check: impl Fn(&LiteLLMDeploymentStatus) -> bool) {
    eventually(
        "the measured state",
        Patience::new(Duration::from_secs(180)).every(Duration::from_millis(50)),
        || async {
            let status = w.status(name).await;
            if check(&status) {
                Ok(())
            } else {
                Err(format!("did not converge: {status:?}"))
            }
        },
    )
    .await;
}

/// Runs the secret half of the gcloud runbook against a fresh emulator and returns how long it took.
async fn gcloud_runbook(latency: Duration) -> Duration {
    let emulator = gcp_emulator::spawn(gcp_emulator::Config {
        latency,
        service_accounts: vec![litellm_operator_tests::fixtures::RUNTIME_SA.to_owned()],
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

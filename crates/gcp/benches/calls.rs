//! Per-call cost of this crate's layer (rate limiter, metrics, span, classification) over the official
//! client, against the in-process emulator, and the default rate limit holding a burst of secret accesses.
//!
//! Run: `cargo bench -p litellm-operator-gcp --bench calls`. Prints numbers; asserts nothing.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use google_cloud_secretmanager_v1::client::SecretManagerService;
use litellm_operator_gcp::{
    Gcp, GcpConfig, NewSecret, RateLimits, SecretName, SecretPayload, SecretStore, SecretVersionStore,
    VersionRef,
};
use prometheus_client::registry::Registry;

const SEQUENTIAL: usize = 2_000;
const TASKS: usize = 16;
const PER_TASK: usize = 250;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut latencies: Vec<Duration>, total: Duration) {
    latencies.sort();
    println!(
        "{label:<44} {:>6} calls  {:>8.0} calls/s  p50 {:>7.1} us  p99 {:>7.1} us",
        latencies.len(),
        latencies.len() as f64 / total.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
    );
}

#[tokio::main]
async fn main() {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        quota_scale: 0.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let config = GcpConfig {
        rate_limits: RateLimits::unlimited(),
        ..GcpConfig::emulator(emu.url().parse().unwrap())
    };
    let gcp = Gcp::connect(&config, &mut Registry::default()).await.unwrap();
    let name = SecretName::new("p", "bench");
    gcp.create_secret(&name, &NewSecret::default()).await.unwrap();
    gcp.add_version(&name, &SecretPayload::from("sk-0123456789abcdef0123456789abcdef"))
        .await
        .unwrap();
    let raw = SecretManagerService::builder()
        .with_endpoint(emu.url())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let resource = name.version(VersionRef::Latest);
    for _ in 0..200 {
        gcp.access_version(&name, VersionRef::Latest).await.unwrap();
        raw.access_secret_version()
            .set_name(&resource)
            .send()
            .await
            .unwrap();
    }

    for round in 0..2 {
        let start = Instant::now();
        let mut lat = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            let t = Instant::now();
            raw.access_secret_version()
                .set_name(&resource)
                .send()
                .await
                .unwrap();
            lat.push(t.elapsed());
        }
        report(
            &format!("official client, sequential (round {round})"),
            lat,
            start.elapsed(),
        );

        let start = Instant::now();
        let mut lat = Vec::with_capacity(SEQUENTIAL);
        for _ in 0..SEQUENTIAL {
            let t = Instant::now();
            gcp.access_version(&name, VersionRef::Latest).await.unwrap();
            lat.push(t.elapsed());
        }
        report(
            &format!("Gcp::access_version, sequential (round {round})"),
            lat,
            start.elapsed(),
        );
    }

    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (gcp, name) = (gcp.clone(), name.clone());
        set.spawn(async move {
            let mut lat = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                let t = Instant::now();
                gcp.access_version(&name, VersionRef::Latest).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let lat: Vec<Duration> = set.join_all().await.into_iter().flatten().collect();
    report(
        &format!("Gcp::access_version, {TASKS} concurrent tasks"),
        lat,
        start.elapsed(),
    );

    // Default limits: accessSecretVersion at 80 % of 90,000/min = 1,200/s, one second of burst.
    let limited = Gcp::connect(
        &GcpConfig::emulator(emu.url().parse().unwrap()),
        &mut Registry::default(),
    )
    .await
    .unwrap();
    let calls = 3_600;
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (gcp, name) = (limited.clone(), name.clone());
        set.spawn(async move {
            for _ in 0..calls / TASKS {
                gcp.access_version(&name, VersionRef::Latest).await.unwrap();
            }
        });
    }
    set.join_all().await;
    let took = start.elapsed();
    println!(
        "default limits, {calls} accesses by {TASKS} tasks: {:.2} s = {:.0} calls/s (limit 1200/s + 1200 burst: expect >= {:.2} s)",
        took.as_secs_f64(),
        calls as f64 / took.as_secs_f64(),
        (calls - 1_200) as f64 / 1_200.0
    );
}

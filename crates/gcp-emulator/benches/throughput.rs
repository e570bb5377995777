//! Throughput and latency of the emulator: the server runs on one thread (one core), 100 concurrent clients
//! (by default) hammer simple gets, and the benchmark prints requests/s and latency percentiles.
//!
//! `cargo bench -p gcp-emulator --bench throughput` (env: `BENCH_SECONDS`, default 5; `BENCH_CONCURRENCY`,
//! default 100).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn load(client: reqwest::Client, url: String, concurrency: u64, duration: Duration) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16_384);
            let mut errors = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match client.get(&url).send().await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.bytes().await;
                        if !ok {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
                latencies.push(t.elapsed().as_micros() as u64);
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies_us.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Figures {
        requests: latencies_us.len(),
        errors,
        elapsed,
        latencies_us,
    }
}

fn main() {
    let seconds = env_number("BENCH_SECONDS", 5);
    let concurrency = env_number("BENCH_CONCURRENCY", 100);
    let (tx, rx) = std::sync::mpsc::channel();
    // The emulator gets a single-threaded runtime of its own: the figures are for one core.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let emu = gcp_emulator::spawn(gcp_emulator::Config {
                quota_scale: 0.0,
                ..Default::default()
            })
            .await
            .unwrap();
            let client = reqwest::Client::new();
            let base = emu.url();
            let create = client
                .post(format!("{base}/v1/projects/bench/secrets?secretId=key"))
                .body(r#"{"replication": {"automatic": {}}}"#)
                .send()
                .await
                .unwrap();
            assert!(create.status().is_success());
            let add = client
                .post(format!("{base}/v1/projects/bench/secrets/key:addVersion"))
                .body(r#"{"payload": {"data": "c2stYmVuY2htYXJr"}}"#)
                .send()
                .await
                .unwrap();
            assert!(add.status().is_success());
            // Without `template.serviceAccount` the service runs as the project's default compute account,
            // which exists without seeding (other accounts must be seeded or created first).
            let svc = client
                .post(format!(
                    "{base}/v2/projects/bench/locations/r/services?serviceId=svc"
                ))
                .body(r#"{"template": {"containers": [{"image": "img"}]}}"#)
                .send()
                .await
                .unwrap();
            assert!(svc.status().is_success());
            tx.send(base).unwrap();
            std::future::pending::<()>().await;
            drop(emu);
        });
    });
    let base = rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .unwrap();
    let scenarios = [
        ("GetSecret", format!("{base}/v1/projects/bench/secrets/key")),
        (
            "AccessSecretVersion latest",
            format!("{base}/v1/projects/bench/secrets/key/versions/latest:access"),
        ),
        (
            "Run GetService",
            format!("{base}/v2/projects/bench/locations/r/services/svc"),
        ),
    ];
    println!(
        "gcp-emulator throughput: server on 1 thread, {concurrency} concurrent clients, {seconds} s per scenario"
    );
    println!(
        "{:<28} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, url) in scenarios {
        rt.block_on(load(
            client.clone(),
            url.clone(),
            concurrency,
            Duration::from_millis(500),
        ));
        let f = rt.block_on(load(
            client.clone(),
            url,
            concurrency,
            Duration::from_secs(seconds),
        ));
        let rps = f.requests as f64 / f.elapsed.as_secs_f64();
        println!(
            "{:<28} {:>9} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            name,
            f.requests,
            f.errors,
            rps,
            percentile(&f.latencies_us, 50.0),
            percentile(&f.latencies_us, 90.0),
            percentile(&f.latencies_us, 99.0),
            f.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0
        );
    }
}

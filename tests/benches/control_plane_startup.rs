//! How long a fresh control plane takes from spawning etcd to kube-apiserver's `/readyz` ok, and
//! how long stopping it takes. `cargo bench -p litellm-operator-tests --bench control_plane_startup`
//! starts it 5 times (`-- --runs N` for more); as part of `cargo test` it starts it once.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use litellm_operator_tests::ControlPlane;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().unwrap())
        .unwrap_or(if benchmarking { 5 } else { 1 });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut ready = Vec::new();
    let mut stop = Vec::new();
    for _ in 0..runs {
        let cp = runtime.block_on(ControlPlane::start()).unwrap();
        ready.push(cp.startup());
        let started = Instant::now();
        drop(cp);
        stop.push(started.elapsed());
    }
    report("start to /readyz ok", &mut ready);
    report("stop (drop)", &mut stop);
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "control plane {what}: min {:.2}s median {:.2}s max {:.2}s over {} runs",
        samples[0].as_secs_f64(),
        samples[samples.len() / 2].as_secs_f64(),
        samples[samples.len() - 1].as_secs_f64(),
        samples.len()
    );
}

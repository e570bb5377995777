//! Prometheus metrics of the controller, and the HTTP server for `/metrics`, `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the reconcile counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or the error class (`invalid_spec`, `permission_denied`, ...).
    pub result: String,
}

/// Labels of the readiness gauge: one series per LiteLLMDeployment, with its Ready reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub namespace: String,
    pub name: String,
    /// The Ready condition's reason (`Ready`, `Reconciling`, `PermissionDenied`, ...).
    pub reason: String,
}

/// Labels of the pinned-version gauge: one series per pinned secret.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PinLabels {
    pub namespace: String,
    pub name: String,
    /// The environment variable the secret is injected as.
    pub env: String,
}

/// Labels of the build-info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

/// The controller's own metrics. Google call metrics are registered by the gcp crate into the same registry.
pub struct Metrics {
    /// 1 when a LiteLLMDeployment is Ready, else 0; labelled with its Ready reason, one series per deployment.
    pub deployment_ready: Family<DeploymentLabels, Gauge>,
    /// 1 while this replica holds the leader Lease (or runs without leader election), else 0.
    pub leader: Gauge,
    /// When each pinned secret version was created (Unix seconds); `time() - ...` is its age.
    pub pinned_version_created: Family<PinLabels, Gauge>,
    /// The pinned-version series each deployment has now, so a secret dropped from the spec loses its series.
    pin_series: Mutex<HashMap<(String, String), Vec<PinLabels>>>,
    /// The labels each deployment's readiness series carries now, so a reason that changes replaces its series.
    ready_series: Mutex<HashMap<(String, String), DeploymentLabels>>,
    /// Reconciles running now: their key and start.
    in_flight: Mutex<HashMap<u64, (String, Instant)>>,
    next_reconcile: AtomicU64,
    /// Reconciles by result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Reconcile duration in seconds.
    pub reconcile_duration: Histogram,
    /// Status patches actually sent (skipped ones are not counted).
    pub status_writes: Counter,
    /// The registry everything is encoded from.
    pub registry: Registry,
}

impl Metrics {
    /// Creates the metrics and registers them in a fresh registry; every name starts with `litellm_operator_`.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let status_writes = Counter::default();
        let deployment_ready = Family::<DeploymentLabels, Gauge>::default();
        let leader = Gauge::default();
        let pinned_version_created = Family::<PinLabels, Gauge>::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                revision: crate::REVISION.into(),
            })
            .set(1);
        registry.register(
            "litellm_operator_deployment_ready",
            "1 when the LiteLLMDeployment is Ready, else 0, labelled with the Ready condition's reason",
            deployment_ready.clone(),
        );
        registry.register(
            "litellm_operator_leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );
        registry.register(
            "litellm_operator_pinned_version_created_timestamp_seconds",
            "When the secret version each LiteLLMDeployment pins was created, in Unix seconds (its age: time() minus this)",
            pinned_version_created.clone(),
        );
        registry.register(
            "litellm_operator_build_info",
            "The running operator's version and source revision (always 1)",
            build_info,
        );
        registry.register(
            "litellm_operator_reconciles",
            "Reconciles by result",
            reconciles.clone(),
        );
        registry.register(
            "litellm_operator_reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "litellm_operator_status_writes",
            "Status patches sent to the API server",
            status_writes.clone(),
        );
        Self {
            deployment_ready,
            leader,
            pinned_version_created,
            pin_series: Mutex::default(),
            ready_series: Mutex::default(),
            in_flight: Mutex::default(),
            next_reconcile: AtomicU64::new(0),
            reconciles,
            reconcile_duration,
            status_writes,
            registry,
        }
    }

    /// The registry the Google client registers its call metrics in: ours, under the operator's prefix
    /// (`litellm_operator_gcp_api_calls_total`, ...), so every metric of the operator is found by one prefix.
    pub fn gcp_registry(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("litellm_operator")
    }

    /// Starts timing the reconcile of `key` (`namespace/name`); it counts as running until the guard is dropped,
    /// when its duration is recorded.
    pub fn reconcile_timer(&self, key: &str) -> ReconcileTimer<'_> {
        let id = self.next_reconcile.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (key.to_owned(), start));
        ReconcileTimer {
            metrics: self,
            id,
            start,
        }
    }

    /// The reconcile running longest, if one has run for more than `limit`: its key and how long.
    pub fn stuck(&self, limit: Duration) -> Option<(String, Duration)> {
        let running = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .values()
            .map(|(key, start)| (key.clone(), start.elapsed()))
            .filter(|(_, age)| *age > limit)
            .max_by_key(|(_, age)| *age)
    }

    /// Records whether `namespace/name` is Ready and why, replacing its series when the reason changed.
    pub fn set_ready(&self, namespace: &str, name: &str, reason: &str, ready: bool) {
        let labels = DeploymentLabels {
            namespace: namespace.into(),
            name: name.into(),
            reason: reason.into(),
        };
        let mut series = self.ready_series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = series.insert((namespace.into(), name.into()), labels.clone())
            && old != labels
        {
            self.deployment_ready.remove(&old);
        }
        self.deployment_ready.get_or_create(&labels).set(i64::from(ready));
    }

    /// Records when each version `namespace/name` pins was created (`(env, Unix seconds)`), replacing its
    /// series: a secret no longer pinned, or whose time is unknown, has none.
    pub fn set_pinned(&self, namespace: &str, name: &str, pins: &[(String, i64)]) {
        let labels: Vec<PinLabels> = pins
            .iter()
            .map(|(env, _)| PinLabels {
                namespace: namespace.into(),
                name: name.into(),
                env: env.clone(),
            })
            .collect();
        let mut series = self.pin_series.lock().unwrap_or_else(PoisonError::into_inner);
        for old in series
            .insert((namespace.into(), name.into()), labels.clone())
            .unwrap_or_default()
        {
            if !labels.contains(&old) {
                self.pinned_version_created.remove(&old);
            }
        }
        for (label, (_, created)) in labels.iter().zip(pins) {
            self.pinned_version_created.get_or_create(label).set(*created);
        }
    }

    /// Drops the series of a deployment that is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut series = self.ready_series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = series.remove(&key) {
            self.deployment_ready.remove(&old);
        }
        let mut pins = self.pin_series.lock().unwrap_or_else(PoisonError::into_inner);
        for old in pins.remove(&key).unwrap_or_default() {
            self.pinned_version_created.remove(&old);
        }
    }

    /// Text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn exposition_names_the_controller_metrics() {
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&ResultLabels { result: "ok".into() })
            .inc();
        m.status_writes.inc();
        drop(m.reconcile_timer("llm/x"));
        let text = m.encode();
        assert!(
            text.contains("litellm_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("litellm_operator_status_writes_total 1"), "{text}");
        assert!(
            text.contains("litellm_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        let build = format!(
            "litellm_operator_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            crate::REVISION
        );
        assert!(text.contains(&build), "{text}");
        assert!(text.contains("litellm_operator_leader 0"), "{text}");
    }

    #[test]
    fn readiness_is_one_series_per_deployment_that_follows_its_reason() {
        let m = Metrics::new();
        m.set_ready("llm", "proxy", "Reconciling", false);
        m.set_ready("llm", "proxy", "Ready", true);
        m.set_ready("llm", "other", "PermissionDenied", false);
        let text = m.encode();
        assert!(
            text.contains(
                "litellm_operator_deployment_ready{namespace=\"llm\",name=\"proxy\",reason=\"Ready\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("Reconciling"), "a stale series stayed:\n{text}");
        assert!(
            text.contains(
                "litellm_operator_deployment_ready{namespace=\"llm\",name=\"other\",reason=\"PermissionDenied\"} 0"
            ),
            "{text}"
        );
        m.forget("llm", "proxy");
        assert!(!m.encode().contains("name=\"proxy\""));
    }

    #[test]
    fn pinned_version_times_follow_the_pins() {
        let m = Metrics::new();
        m.set_pinned(
            "llm",
            "proxy",
            &[
                ("DATABASE_URL".into(), 1_767_225_600),
                ("KEY".into(), 1_767_312_000),
            ],
        );
        m.set_pinned("llm", "proxy", &[("DATABASE_URL".into(), 1_767_398_400)]);
        let text = m.encode();
        assert!(
            text.contains(
                "litellm_operator_pinned_version_created_timestamp_seconds{namespace=\"llm\",name=\"proxy\",env=\"DATABASE_URL\"} 1767398400"
            ),
            "{text}"
        );
        assert!(
            !text.contains("env=\"KEY\""),
            "a dropped secret kept its series:\n{text}"
        );
        m.forget("llm", "proxy");
        assert!(!m.encode().contains("env=\"DATABASE_URL\""));
    }

    #[test]
    fn a_reconcile_running_too_long_is_stuck_until_it_ends() {
        let m = Metrics::new();
        let timer = m.reconcile_timer("llm/slow");
        assert_eq!(m.stuck(Duration::from_secs(60)), None);
        let (key, age) = m.stuck(Duration::ZERO).unwrap();
        assert_eq!(key, "llm/slow");
        assert!(age < Duration::from_secs(60));
        drop(timer);
        assert_eq!(m.stuck(Duration::ZERO), None);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Observes a reconcile's duration, and ends it, when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    id: u64,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        self.metrics
            .reconcile_duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// How long one reconcile may run before `/healthz` fails (so the kubelet restarts a stuck operator). Every Google
/// call has its own deadline well below this; a reconcile this old is hung.
pub const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);

/// Readiness, flipped once the controller's caches have synced.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the operator ready to serve.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds the metrics and health address; an error (address in use, no permission) names it, so the process stops
/// at start instead of running with probes that can never pass.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot serve metrics and health on {addr}: {e}"))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ServerState { metrics, health });
    axum::serve(listener, app).await
}

/// Live unless a reconcile has run longer than [`STUCK_AFTER`].
async fn healthz(State(state): State<ServerState>) -> impl IntoResponse {
    match state.metrics.stuck(STUCK_AFTER) {
        None => (StatusCode::OK, "ok".to_owned()),
        Some((key, age)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stuck: the reconcile of {key} has run for {}s", age.as_secs()),
        ),
    }
}

async fn metrics_handler(State(state): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<ServerState>) -> impl IntoResponse {
    if state.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

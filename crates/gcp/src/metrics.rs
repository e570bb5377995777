//! Per-call Prometheus metrics, registered into the operator's registry.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::limits::QuotaClass;

/// Labels of one API call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    /// `secretmanager` or `run`.
    pub service: &'static str,
    /// Google's RPC name, e.g. `AddSecretVersion`.
    pub method: &'static str,
    /// `OK` or the error class, e.g. `NOT_FOUND`.
    pub code: &'static str,
}

/// Labels of a call's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    pub service: &'static str,
    pub method: &'static str,
}

/// Labels of a rate-limit wait.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QuotaLabels {
    pub quota_class: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Counters and histograms of every Google call this crate makes.
#[derive(Clone, Debug)]
pub(crate) struct CallMetrics {
    calls: Family<CallLabels, Counter>,
    duration: HistogramFamily<MethodLabels>,
    rate_limit_wait: HistogramFamily<QuotaLabels>,
}

fn call_buckets() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn wait_buckets() -> Histogram {
    // 10 ms .. ~80 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl CallMetrics {
    /// Creates the metrics and registers them: `gcp_api_calls_total{service,method,code}`,
    /// `gcp_api_call_duration_seconds{service,method}` and `gcp_rate_limit_wait_seconds{quota_class}`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        registry.register(
            "gcp_api_calls",
            "Google API calls by service, method and result code",
            metrics.calls.clone(),
        );
        registry.register(
            "gcp_api_call_duration_seconds",
            "Duration of Google API calls (each attempt), in seconds",
            metrics.duration.clone(),
        );
        registry.register(
            "gcp_rate_limit_wait_seconds",
            "Time calls waited for the client-side rate limiter, in seconds",
            metrics.rate_limit_wait.clone(),
        );
        metrics
    }

    pub(crate) fn unregistered() -> Self {
        Self {
            calls: Family::default(),
            duration: Family::new_with_constructor(call_buckets),
            rate_limit_wait: Family::new_with_constructor(wait_buckets),
        }
    }

    pub(crate) fn observe_call(
        &self,
        service: &'static str,
        method: &'static str,
        code: &'static str,
        took: Duration,
    ) {
        self.calls
            .get_or_create(&CallLabels {
                service,
                method,
                code,
            })
            .inc();
        self.duration
            .get_or_create(&MethodLabels { service, method })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn observe_wait(&self, class: QuotaClass, waited: Duration) {
        self.rate_limit_wait
            .get_or_create(&QuotaLabels {
                quota_class: class.as_str(),
            })
            .observe(waited.as_secs_f64());
    }
}

//! Command-line settings for reaching Google Cloud (shared by `run`, `plan`, `apply` and `import`).

use litellm_operator_gcp::{CredentialsSource, Gcp, GcpConfig, RateLimits};
use prometheus_client::registry::Registry;
use url::Url;

/// How to reach Google.
#[derive(clap::Args, Clone, Debug)]
pub struct GcpArgs {
    /// Send every Google call to this base URL instead of Google (the bundled emulator, e.g.
    /// http://127.0.0.1:8085). Uses no credentials.
    #[arg(long, env = "LITELLM_GCP_ENDPOINT")]
    pub gcp_endpoint: Option<Url>,
    /// Override the Secret Manager endpoint only.
    #[arg(long)]
    pub secret_manager_endpoint: Option<Url>,
    /// Override the Cloud Run Admin endpoint only.
    #[arg(long)]
    pub run_endpoint: Option<Url>,
    /// Fraction of Google's default quotas the operator may use (client-side token buckets).
    #[arg(long, default_value_t = 0.8)]
    pub quota_fraction: f64,
}

/// `fraction` of Google's per-minute quotas as token buckets. Google counts per minute, so a burst is safe as long
/// as burst plus a minute of refill stays under the quota: `fraction * (1 + burst / 60) <= 1`. Using 80 % of that
/// headroom lets a new resource's first pass (dozens of reads) go out at once instead of at the sustained rate.
pub fn rate_limits(fraction: f64) -> RateLimits {
    let fraction = fraction.clamp(0.01, 1.0);
    let burst_seconds = (60.0 * (1.0 / fraction - 1.0) * 0.8).clamp(1.0, 30.0);
    RateLimits {
        burst_seconds,
        ..RateLimits::fraction_of_google_defaults(fraction)
    }
}

impl GcpArgs {
    /// The client configuration these flags describe: Application Default Credentials for Google, anonymous
    /// credentials for an emulator endpoint.
    pub fn config(&self) -> GcpConfig {
        let emulator = self.gcp_endpoint.is_some();
        GcpConfig {
            endpoint: self.gcp_endpoint.clone(),
            secret_manager_endpoint: self.secret_manager_endpoint.clone(),
            run_endpoint: self.run_endpoint.clone(),
            credentials: if emulator {
                CredentialsSource::Anonymous
            } else {
                CredentialsSource::ApplicationDefault
            },
            rate_limits: rate_limits(self.quota_fraction),
            ..GcpConfig::default()
        }
    }

    /// Builds the Google clients, registering call metrics into `registry`.
    pub async fn connect(&self, registry: &mut Registry) -> litellm_operator_gcp::Result<Gcp> {
        Gcp::connect(&self.config(), registry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_plus_a_minute_of_refill_stays_under_google_quota() {
        for fraction in [0.5, 0.8, 0.95, 1.0] {
            let limits = rate_limits(fraction);
            let per_minute = f64::from(limits.secret_reads_per_minute.unwrap_or(0));
            let worst_minute = per_minute + per_minute / 60.0 * limits.burst_seconds;
            assert!(
                worst_minute <= 600.0 || fraction == 1.0,
                "{fraction}: {worst_minute}"
            );
        }
        assert!(rate_limits(0.8).burst_seconds >= 10.0);
    }
}

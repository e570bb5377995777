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
            rate_limits: RateLimits::fraction_of_google_defaults(self.quota_fraction),
            ..GcpConfig::default()
        }
    }

    /// Builds the Google clients, registering call metrics into `registry`.
    pub async fn connect(&self, registry: &mut Registry) -> litellm_operator_gcp::Result<Gcp> {
        Gcp::connect(&self.config(), registry).await
    }
}

//! Command-line settings for reaching Google Cloud (shared by `run`, `plan`, `apply` and `import`).

use std::path::PathBuf;

use litellm_operator_gcp::{AccessToken, CredentialsSource, Gcp, GcpConfig, RateLimits};
use prometheus_client::registry::Registry;
use url::Url;

/// How to reach Google.
#[derive(clap::Args, Clone, Debug)]
pub struct GcpArgs {
    /// Send every Google call to this base URL instead of Google (the bundled emulator, e.g.
    /// http://127.0.0.1:8085). Uses no credentials unless --gcp-access-token-file is given.
    #[arg(long, env = "LITELLM_GCP_ENDPOINT")]
    pub gcp_endpoint: Option<Url>,
    /// Send the access token in this file on every Google call instead of Application Default Credentials (for an
    /// emulator that checks callers, or a short manual run with `gcloud auth print-access-token`). Read once at
    /// start; the token is never logged.
    #[arg(long, env = "LITELLM_GCP_ACCESS_TOKEN_FILE")]
    pub gcp_access_token_file: Option<PathBuf>,
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
    /// The client configuration these flags describe: the token file's token when one is given, else Application
    /// Default Credentials for Google and anonymous credentials for an emulator endpoint.
    pub fn config(&self) -> Result<GcpConfig, litellm_operator_gcp::Error> {
        let credentials = match (&self.gcp_access_token_file, &self.gcp_endpoint) {
            (Some(path), _) => CredentialsSource::StaticToken(read_token(path)?),
            (None, Some(_)) => CredentialsSource::Anonymous,
            (None, None) => CredentialsSource::ApplicationDefault,
        };
        Ok(GcpConfig {
            endpoint: self.gcp_endpoint.clone(),
            secret_manager_endpoint: self.secret_manager_endpoint.clone(),
            run_endpoint: self.run_endpoint.clone(),
            credentials,
            rate_limits: rate_limits(self.quota_fraction),
            ..GcpConfig::default()
        })
    }

    /// Builds the Google clients, registering call metrics into `registry`.
    pub async fn connect(&self, registry: &mut Registry) -> litellm_operator_gcp::Result<Gcp> {
        Gcp::connect(&self.config()?, registry).await
    }
}

/// The token in `path`, without surrounding whitespace. The error names the file, never its content.
fn read_token(path: &std::path::Path) -> Result<AccessToken, litellm_operator_gcp::Error> {
    let config_error = |message: String| litellm_operator_gcp::Error::Config { message };
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("reading the access token file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(config_error(format!(
            "the access token file {} is empty",
            path.display()
        )));
    }
    Ok(AccessToken::new(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn args(endpoint: Option<&str>, token_file: Option<PathBuf>) -> GcpArgs {
        GcpArgs {
            gcp_endpoint: endpoint.map(|e| e.parse().unwrap()),
            gcp_access_token_file: token_file,
            secret_manager_endpoint: None,
            run_endpoint: None,
            quota_fraction: 0.8,
        }
    }

    #[test]
    fn credentials_follow_the_flags_and_a_token_file_error_never_shows_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "ya29.the-token\n").unwrap();
        let emulator = Some("http://127.0.0.1:8085");
        assert!(matches!(
            args(emulator, None).config().unwrap().credentials,
            CredentialsSource::Anonymous
        ));
        assert!(matches!(
            args(None, None).config().unwrap().credentials,
            CredentialsSource::ApplicationDefault
        ));
        match args(emulator, Some(file.clone())).config().unwrap().credentials {
            CredentialsSource::StaticToken(t) => assert_eq!(t, AccessToken::new("ya29.the-token")),
            other => panic!("{other:?}"),
        }
        std::fs::write(&file, "  \n").unwrap();
        let empty = args(emulator, Some(file.clone()))
            .config()
            .unwrap_err()
            .to_string();
        assert!(empty.contains("is empty"), "{empty}");
        let missing = args(emulator, Some(dir.path().join("absent")))
            .config()
            .unwrap_err()
            .to_string();
        assert!(missing.contains("absent"), "{missing}");
    }

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

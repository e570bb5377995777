//! How to reach Google: endpoints, credentials, retry and rate-limit settings.

use std::time::Duration;

use google_cloud_auth::credentials::{CacheableResource, Credentials, CredentialsProvider, EntityTag};
use google_cloud_auth::errors::CredentialsError;
use http::{Extensions, HeaderMap, HeaderValue};
use url::Url;

use crate::error::{Error, Result};
use crate::limits::RateLimits;

/// Everything needed to build a [`crate::Gcp`].
#[derive(Clone, Debug, Default)]
pub struct GcpConfig {
    /// Points every service at one base URL (e.g. the emulator: `http://127.0.0.1:8085`). `None`: Google.
    pub endpoint: Option<Url>,
    /// Overrides [`GcpConfig::endpoint`] for Secret Manager (and secret IAM policies).
    pub secret_manager_endpoint: Option<Url>,
    /// Overrides [`GcpConfig::endpoint`] for Cloud Run Admin v2 (and service IAM policies).
    pub run_endpoint: Option<Url>,
    /// Where tokens come from.
    pub credentials: CredentialsSource,
    /// Retry and backoff.
    pub retry: RetrySettings,
    /// Client-side rate limits.
    pub rate_limits: RateLimits,
}

impl GcpConfig {
    /// A configuration for a local emulator at `endpoint` with anonymous credentials.
    pub fn emulator(endpoint: Url) -> Self {
        Self {
            endpoint: Some(endpoint),
            credentials: CredentialsSource::Anonymous,
            ..Self::default()
        }
    }

    pub(crate) fn secret_manager_endpoint(&self) -> Option<String> {
        self.secret_manager_endpoint
            .as_ref()
            .or(self.endpoint.as_ref())
            .map(endpoint_string)
    }

    pub(crate) fn run_endpoint(&self) -> Option<String> {
        self.run_endpoint
            .as_ref()
            .or(self.endpoint.as_ref())
            .map(endpoint_string)
    }
}

/// The clients append `/v1/...` themselves; a trailing slash would double it.
pub(crate) fn endpoint_string(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Where access tokens come from.
#[derive(Clone, Debug, Default)]
pub enum CredentialsSource {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS` (service-account key, external
    /// account / workload identity federation, impersonation, user credentials), the gcloud ADC file, else
    /// the metadata server (GKE Workload Identity; `GCE_METADATA_HOST` overrides its address).
    #[default]
    ApplicationDefault,
    /// No `Authorization` header at all (the emulator).
    Anonymous,
    /// A fixed bearer token (the emulator with auth checks, or short-lived manual runs).
    StaticToken(AccessToken),
}

impl CredentialsSource {
    /// Builds the credentials once; they cache and refresh tokens for every client that shares them.
    pub(crate) fn build(&self) -> Result<Credentials> {
        Ok(match self {
            CredentialsSource::ApplicationDefault => google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|source| Error::Credentials { source })?,
            CredentialsSource::Anonymous => google_cloud_auth::credentials::anonymous::Builder::new().build(),
            CredentialsSource::StaticToken(token) => {
                let mut value =
                    HeaderValue::try_from(format!("Bearer {}", token.0)).map_err(|_| Error::Config {
                        message: "the static access token contains characters not allowed in a header"
                            .to_owned(),
                    })?;
                value.set_sensitive(true);
                Credentials::from(StaticToken {
                    value,
                    tag: EntityTag::new(),
                })
            }
        })
    }
}

/// An OAuth2 access token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Sends the same bearer token on every call.
#[derive(Debug)]
struct StaticToken {
    value: HeaderValue,
    tag: EntityTag,
}

impl CredentialsProvider for StaticToken {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, self.value.clone());
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Retry and backoff for calls that are safe to repeat (reads, etag-guarded writes).
#[derive(Clone, Debug)]
pub struct RetrySettings {
    /// Attempts per call, including the first (1 disables retries).
    pub max_attempts: u32,
    /// First backoff; doubles on every retry, with full jitter.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// Whole read-modify-write cycles of an IAM policy edit before giving up on concurrent writers.
    pub iam_conflict_attempts: u32,
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            iam_conflict_attempts: 8,
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl RetrySettings {
    /// Backoff before retry number `retry` (1-based): uniform in `[0, min(max, initial * 2^(retry-1))]`,
    /// but never shorter than what Google asked for.
    pub(crate) fn backoff(&self, retry: u32, requested: Option<Duration>) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let cap = exp.min(self.max_backoff);
        let jittered = cap.mul_f64(rand::random::<f64>());
        requested.map_or(jittered, |r| jittered.max(r.min(self.max_backoff)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn per_service_endpoints_override_the_common_one() {
        let mut config = GcpConfig::emulator(Url::parse("http://127.0.0.1:9000/").unwrap());
        config.run_endpoint = Some(Url::parse("http://127.0.0.1:9001").unwrap());
        assert_eq!(
            config.secret_manager_endpoint().as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(config.run_endpoint().as_deref(), Some("http://127.0.0.1:9001"));
        assert_eq!(GcpConfig::default().secret_manager_endpoint(), None);
    }

    #[test]
    fn backoff_is_bounded_and_honours_retry_info() {
        let r = RetrySettings {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetrySettings::default()
        };
        for retry in 1..40 {
            let d = r.backoff(retry, None);
            let cap = Duration::from_millis(100 * (1u64 << (retry - 1).min(20))).min(Duration::from_secs(1));
            assert!(d <= cap, "retry {retry}: {d:?} > {cap:?}");
        }
        assert!(r.backoff(1, Some(Duration::from_millis(700))) >= Duration::from_millis(700));
        assert!(r.backoff(1, Some(Duration::from_secs(60))) <= Duration::from_secs(1));
    }

    #[test]
    fn token_is_redacted() {
        let t = AccessToken::new("ya29.secret-token");
        assert!(!format!("{t:?}").contains("ya29"));
        let source = CredentialsSource::StaticToken(t);
        assert!(!format!("{source:?}").contains("ya29"));
    }

    #[tokio::test]
    async fn static_token_sends_a_bearer_header_and_caches() {
        let creds = CredentialsSource::StaticToken(AccessToken::new("tok"))
            .build()
            .unwrap();
        let CacheableResource::New { entity_tag, data } = creds.headers(Extensions::new()).await.unwrap()
        else {
            panic!("expected headers");
        };
        assert_eq!(data.get(http::header::AUTHORIZATION).unwrap(), "Bearer tok");
        let mut ext = Extensions::new();
        ext.insert(entity_tag);
        assert!(matches!(
            creds.headers(ext).await.unwrap(),
            CacheableResource::NotModified
        ));
    }
}

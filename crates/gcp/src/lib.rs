//! Google Cloud access for litellm-operator: Secret Manager, IAM policies and Cloud Run Admin v2.
//!
//! Build one [`Gcp`] per process with [`Gcp::connect`]; it holds the official google-cloud-rust clients
//! (each with its connection pool) and one set of credentials whose token cache they share. Every call it
//! makes is
//! - rate-limited per project and [`QuotaClass`] below Google's default quotas ([`RateLimits`]),
//! - counted and timed (`gcp_api_calls_total{service,method,code}`, `gcp_api_call_duration_seconds`),
//! - traced (a `gcp_call` span with service, method and resource name),
//! - retried only when that is safe: reads and etag-guarded writes, with bounded exponential backoff and
//!   jitter. Creates and `addVersion` are never retried: the caller reconciles by name or content.
//!
//! The capabilities are narrow traits, implemented by [`Gcp`]: [`SecretStore`], [`SecretVersionStore`],
//! [`IamPolicies`] and [`CloudRun`]. Failures are one [`Error`] enum classified the way the operator's
//! error policy needs it; errors name the resource and never carry a secret value ([`SecretPayload`] is
//! redacted in `Debug` and `Display`).
//!
//! ```no_run
//! # async fn demo() -> litellm_operator_gcp::Result<()> {
//! use litellm_operator_gcp::{Gcp, GcpConfig, SecretName, SecretVersionStore, VersionRef};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let gcp = Gcp::connect(&GcpConfig::default(), &mut registry).await?;
//! let number = gcp.resolve_version(&SecretName::new("my-project", "database-url"), VersionRef::Latest).await?;
//! # let _ = number; Ok(()) }
//! ```

mod call;
mod config;
mod error;
mod iam;
mod impersonate;
mod limits;
mod metrics;
mod names;
mod payload;
mod run;
mod secrets;

use std::sync::Arc;

use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_run_v2::client::{Revisions, Services};
use google_cloud_secretmanager_v1::client::SecretManagerService;
use prometheus_client::registry::Registry;

pub use config::{AccessToken, CredentialsSource, GcpConfig, RetrySettings};
pub use error::{Error, Result};
pub use iam::{IamPolicies, PolicyChange, with_member, without_member};
pub use impersonate::refused_impersonation;
pub use limits::{QuotaClass, RateLimits};
pub use names::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PolicyTarget, SecretName, ServiceName, VersionRef};
pub use payload::{MAX_PAYLOAD_BYTES, SecretPayload};
pub use run::{CloudRun, Operation, OperationError};
pub use secrets::{
    AccessedVersion, NewSecret, Replication, Secret, SecretStore, SecretVersion, SecretVersionStore,
    VersionState,
};

/// Google's IAM policy types, as read and written by [`IamPolicies`] and the pure [`with_member`] /
/// [`without_member`] edits.
pub use google_cloud_iam_v1::model::{Binding, Policy};
/// Cloud Run Admin v2 resource types, as read and written by [`CloudRun`].
pub use google_cloud_run_v2::model::{Revision, Service};

/// The handle to Google Cloud: build once per process, clone freely (clones share everything).
#[derive(Clone, Debug)]
pub struct Gcp {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    secret_manager: SecretManagerService,
    services: Services,
    revisions: Revisions,
    caller: Arc<call::Caller>,
    /// What [`Gcp::impersonating`] needs to build clients acting as another account.
    origin: Origin,
}

/// The process's own credentials and where the clients point.
#[derive(Clone, Debug)]
struct Origin {
    credentials: google_cloud_auth::credentials::Credentials,
    config: GcpConfig,
}

impl Gcp {
    /// Builds the clients and registers this crate's metrics into `registry`.
    ///
    /// With [`CredentialsSource::ApplicationDefault`] this reads `GOOGLE_APPLICATION_CREDENTIALS` or the
    /// gcloud ADC file, else settles on the metadata server; no token is fetched yet, so a missing metadata
    /// server shows up on the first call (as [`Error::Unavailable`]).
    pub async fn connect(config: &GcpConfig, registry: &mut Registry) -> Result<Self> {
        let metrics = metrics::CallMetrics::register(registry);
        // The clients' own request/response logging prints secret payloads at DEBUG level.
        if std::env::var("GOOGLE_CLOUD_RUST_LOGGING").is_ok_and(|v| v == "true") {
            return Err(Error::Config {
                message: "GOOGLE_CLOUD_RUST_LOGGING=true would log secret values; unset it".to_owned(),
            });
        }
        let credentials = config.credentials.build()?;
        let caller = Arc::new(call::Caller::new(
            config.retry.clone(),
            limits::RateLimiter::new(config.rate_limits.clone()),
            metrics,
        ));
        let origin = Origin {
            credentials: credentials.clone(),
            config: config.clone(),
        };
        Self::build(credentials, caller, origin).await
    }

    /// The same Google access, acting as service account `account`: every call carries a token minted for it
    /// through IAM Credentials `generateAccessToken` with this handle's credentials (which need
    /// `iam.serviceAccounts.getAccessToken` on it, `roles/iam.serviceAccountTokenCreator`). Retries, rate
    /// limits and metrics are shared with this handle. No token is minted until the first call.
    pub async fn impersonating(&self, account: &str) -> Result<Self> {
        let origin = self.inner.origin.clone();
        let endpoint = origin.config.endpoint.as_ref().map(config::endpoint_string);
        let credentials =
            impersonate::Impersonated::credentials(origin.credentials.clone(), account, endpoint).await?;
        Self::build(credentials, self.inner.caller.clone(), origin).await
    }

    async fn build(
        credentials: google_cloud_auth::credentials::Credentials,
        caller: Arc<call::Caller>,
        origin: Origin,
    ) -> Result<Self> {
        let config = &origin.config;
        let timeout = config.retry.attempt_timeout;

        let mut builder = SecretManagerService::builder()
            .with_credentials(credentials.clone())
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(timeout);
        if let Some(endpoint) = config.secret_manager_endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        let secret_manager = builder.build().await.map_err(|source| Error::Client {
            service: "secretmanager",
            source,
        })?;

        let mut builder = Services::builder()
            .with_credentials(credentials.clone())
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(timeout);
        if let Some(endpoint) = config.run_endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        let services = builder.build().await.map_err(|source| Error::Client {
            service: "run",
            source,
        })?;

        let mut builder = Revisions::builder()
            .with_credentials(credentials)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(timeout);
        if let Some(endpoint) = config.run_endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        let revisions = builder.build().await.map_err(|source| Error::Client {
            service: "run",
            source,
        })?;

        Ok(Self {
            inner: Arc::new(Inner {
                secret_manager,
                services,
                revisions,
                caller,
                origin,
            }),
        })
    }
}

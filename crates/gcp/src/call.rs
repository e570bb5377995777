//! The one place every Google call goes through: rate limit, span, metrics, classification, safe retries.

use std::future::Future;

use google_cloud_gax::error::Error as GaxError;
use tokio::time::Instant;
use tracing::{Instrument, field};

use crate::config::RetrySettings;
use crate::error::{Error, Result};
use crate::limits::{QuotaClass, RateLimiter};
use crate::metrics::CallMetrics;
use crate::names::project_of;
use crate::payload::SecretPayload;

/// Whether a call may be repeated after a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Reads, idempotent state changes and etag-guarded writes.
    Safe,
    /// Creates and `addVersion`: a lost response may hide a success, so the caller reconciles instead.
    Never,
}

/// What is being called.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    pub service: &'static str,
    pub method: &'static str,
    pub resource: &'a str,
    pub class: QuotaClass,
    pub repeat: Repeat,
    /// The secret value the request carries, to scrub from error messages.
    pub payload: Option<&'a SecretPayload>,
}

impl<'a> Call<'a> {
    pub(crate) fn secrets(method: &'static str, resource: &'a str, class: QuotaClass) -> Self {
        Self {
            service: "secretmanager",
            method,
            resource,
            class,
            repeat: Repeat::Safe,
            payload: None,
        }
    }

    pub(crate) fn run(method: &'static str, resource: &'a str, class: QuotaClass) -> Self {
        Self {
            service: "run",
            method,
            resource,
            class,
            repeat: Repeat::Safe,
            payload: None,
        }
    }

    pub(crate) fn never_repeat(mut self) -> Self {
        self.repeat = Repeat::Never;
        self
    }

    pub(crate) fn repeat_if(mut self, safe: bool) -> Self {
        self.repeat = if safe { Repeat::Safe } else { Repeat::Never };
        self
    }

    pub(crate) fn carrying(mut self, payload: &'a SecretPayload) -> Self {
        self.payload = Some(payload);
        self
    }
}

#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) retry: RetrySettings,
    limiter: RateLimiter,
    metrics: CallMetrics,
}

impl Caller {
    pub(crate) fn new(retry: RetrySettings, limiter: RateLimiter, metrics: CallMetrics) -> Self {
        Self {
            retry,
            limiter,
            metrics,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry budget is spent.
    pub(crate) async fn call<T, F, Fut>(&self, call: Call<'_>, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, GaxError>>,
    {
        let span = tracing::info_span!(
            "gcp_call",
            service = call.service,
            method = call.method,
            resource = call.resource,
            code = field::Empty,
            attempts = field::Empty,
        );
        async move {
            let project = project_of(call.resource).unwrap_or("-");
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let waited = self.limiter.acquire(project, call.class).await;
                self.metrics.observe_wait(call.class, waited);
                let start = Instant::now();
                let result = attempt().await;
                let took = start.elapsed();
                let outcome = result.map_err(|e| Error::from_gax(&e, call.resource, call.payload));
                let code = outcome.as_ref().map_or_else(Error::code, |_| "OK");
                self.metrics.observe_call(call.service, call.method, code, took);
                let span = tracing::Span::current();
                span.record("code", code);
                span.record("attempts", attempts);
                match outcome {
                    Ok(value) => return Ok(value),
                    Err(err)
                        if call.repeat == Repeat::Safe
                            && err.is_transient()
                            && attempts < self.retry.max_attempts =>
                    {
                        let backoff = self.retry.backoff(attempts, err.retry_after());
                        tracing::debug!(error = %err, ?backoff, "Retrying Google call");
                        tokio::time::sleep(backoff).await;
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "Google call failed");
                        return Err(err);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

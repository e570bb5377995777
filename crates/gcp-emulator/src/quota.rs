//! Per-project quotas as token buckets, at Google's default Secret Manager rates times `quota_scale`.

use std::collections::HashMap;
use std::time::Instant;

use crate::error::{ApiError, Code};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Read,
    Write,
    Access,
}

impl QuotaKind {
    /// Google's default limit per minute per project.
    fn per_minute(self) -> f64 {
        match self {
            QuotaKind::Read | QuotaKind::Write => 600.0,
            QuotaKind::Access => 90_000.0,
        }
    }

    fn metric(self) -> &'static str {
        match self {
            QuotaKind::Read => "Read requests",
            QuotaKind::Write => "Write requests",
            QuotaKind::Access => "Access requests",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The token buckets, one per project and kind of quota.
#[derive(Clone, Debug, Default)]
pub struct Quotas {
    buckets: HashMap<(String, QuotaKind), Bucket>,
}

impl Quotas {
    /// Takes one token from the project's bucket, or answers 429 RESOURCE_EXHAUSTED. A scale of 0 disables quotas.
    pub fn take(&mut self, project: &str, kind: QuotaKind, scale: f64, now: Instant) -> Result<(), ApiError> {
        if scale <= 0.0 || !scale.is_finite() {
            return Ok(());
        }
        let capacity = kind.per_minute() * scale;
        let rate = capacity / 60.0;
        let bucket = self.buckets.entry((project.to_string(), kind)).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let metric = kind.metric();
        Err(ApiError::new(
            Code::ResourceExhausted,
            format!(
                "Quota exceeded for quota metric '{metric}' and limit '{metric} per minute' of service 'secretmanager.googleapis.com' for consumer 'project:{project}'."
            ),
        )
        .with_detail(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "consumer": format!("projects/{project}"),
                "quota_metric": format!("secretmanager.googleapis.com/{}", metric.to_ascii_lowercase().replace(' ', "_")),
                "service": "secretmanager.googleapis.com",
            }
        })))
    }
}

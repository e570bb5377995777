//! Client-side rate limits: a token bucket per project and quota class, set below Google's default quotas
//! so that the operator never causes a 429 itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Which Google quota a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaClass {
    /// Secret Manager read requests (get/list secrets and versions, getIamPolicy). Google: 600/min/project.
    SecretRead,
    /// Secret Manager write requests (create, addVersion, enable/disable/destroy, delete, setIamPolicy).
    /// Google: 600/min/project.
    SecretWrite,
    /// Secret Manager `accessSecretVersion`. Google: 90,000/min/project.
    SecretAccess,
    /// Cloud Run Admin API reads (services, revisions, operations, getIamPolicy).
    RunRead,
    /// Cloud Run Admin API writes (create, update, delete, setIamPolicy).
    RunWrite,
}

impl QuotaClass {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaClass::SecretRead => "secret_read",
            QuotaClass::SecretWrite => "secret_write",
            QuotaClass::SecretAccess => "secret_access",
            QuotaClass::RunRead => "run_read",
            QuotaClass::RunWrite => "run_write",
        }
    }
}

/// Requests per minute allowed per project for each [`QuotaClass`]. `None` disables a limit.
///
/// Defaults are 80 % of Google's default quotas: Secret Manager 600 reads, 600 writes and 90,000 accesses
/// per minute per project; Cloud Run Admin API 1,000 reads and 180 writes per minute (Google sets those per
/// project and region; limiting per project is stricter).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// See [`QuotaClass::SecretRead`].
    pub secret_reads_per_minute: Option<u32>,
    /// See [`QuotaClass::SecretWrite`].
    pub secret_writes_per_minute: Option<u32>,
    /// See [`QuotaClass::SecretAccess`].
    pub secret_accesses_per_minute: Option<u32>,
    /// See [`QuotaClass::RunRead`].
    pub run_reads_per_minute: Option<u32>,
    /// See [`QuotaClass::RunWrite`].
    pub run_writes_per_minute: Option<u32>,
    /// Calls that may go out at once after an idle period, as seconds of the rate (1.0: one second's worth,
    /// at least one call).
    pub burst_seconds: f64,
}

/// Google's default quotas, per minute per project.
const GOOGLE_DEFAULTS: [(QuotaClass, u32); 5] = [
    (QuotaClass::SecretRead, 600),
    (QuotaClass::SecretWrite, 600),
    (QuotaClass::SecretAccess, 90_000),
    (QuotaClass::RunRead, 1_000),
    (QuotaClass::RunWrite, 180),
];

impl Default for RateLimits {
    fn default() -> Self {
        Self::fraction_of_google_defaults(0.8)
    }
}

impl RateLimits {
    /// `fraction` (0..=1) of Google's default quotas.
    pub fn fraction_of_google_defaults(fraction: f64) -> Self {
        let scaled = |class: QuotaClass| {
            GOOGLE_DEFAULTS
                .iter()
                .find(|(c, _)| *c == class)
                .map(|(_, per_minute)| ((f64::from(*per_minute) * fraction).floor() as u32).max(1))
        };
        Self {
            secret_reads_per_minute: scaled(QuotaClass::SecretRead),
            secret_writes_per_minute: scaled(QuotaClass::SecretWrite),
            secret_accesses_per_minute: scaled(QuotaClass::SecretAccess),
            run_reads_per_minute: scaled(QuotaClass::RunRead),
            run_writes_per_minute: scaled(QuotaClass::RunWrite),
            burst_seconds: 1.0,
        }
    }

    /// No client-side limits at all.
    pub fn unlimited() -> Self {
        Self {
            secret_reads_per_minute: None,
            secret_writes_per_minute: None,
            secret_accesses_per_minute: None,
            run_reads_per_minute: None,
            run_writes_per_minute: None,
            burst_seconds: 1.0,
        }
    }

    /// The limit for one class, per minute.
    pub fn per_minute(&self, class: QuotaClass) -> Option<u32> {
        match class {
            QuotaClass::SecretRead => self.secret_reads_per_minute,
            QuotaClass::SecretWrite => self.secret_writes_per_minute,
            QuotaClass::SecretAccess => self.secret_accesses_per_minute,
            QuotaClass::RunRead => self.run_reads_per_minute,
            QuotaClass::RunWrite => self.run_writes_per_minute,
        }
    }
}

/// One bucket: `tokens` may go negative, which is a queue of reservations each waiting its turn.
#[derive(Debug)]
struct Bucket {
    rate_per_sec: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: u32, burst_seconds: f64) -> Self {
        let rate_per_sec = f64::from(per_minute.max(1)) / 60.0;
        let capacity = (rate_per_sec * burst_seconds).max(1.0);
        Self {
            rate_per_sec,
            capacity,
            tokens: capacity,
            updated: Instant::now(),
        }
    }

    /// Takes one token and says how long the caller must wait before using it.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.capacity);
        self.updated = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate_per_sec)
        }
    }
}

/// Token buckets keyed by project and quota class.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    limits: RateLimits,
    buckets: Arc<Mutex<HashMap<(String, QuotaClass), Bucket>>>,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Arc::default(),
        }
    }

    /// Waits until one call of `class` in `project` may go out; returns how long it waited.
    pub(crate) async fn acquire(&self, project: &str, class: QuotaClass) -> Duration {
        let Some(per_minute) = self.limits.per_minute(class) else {
            return Duration::ZERO;
        };
        let wait = {
            let mut buckets = self
                .buckets
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            buckets
                .entry((project.to_owned(), class))
                .or_insert_with(|| Bucket::new(per_minute, self.limits.burst_seconds))
                .reserve(Instant::now())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn defaults_are_eighty_percent_of_google() {
        let l = RateLimits::default();
        assert_eq!(l.secret_reads_per_minute, Some(480));
        assert_eq!(l.secret_writes_per_minute, Some(480));
        assert_eq!(l.secret_accesses_per_minute, Some(72_000));
        assert_eq!(l.run_reads_per_minute, Some(800));
        assert_eq!(l.run_writes_per_minute, Some(144));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_held_to_the_configured_rate() {
        // 600/min = 10/s, burst of one second = 10 calls.
        let limits = RateLimits {
            secret_writes_per_minute: Some(600),
            ..RateLimits::unlimited()
        };
        let limiter = RateLimiter::new(limits);
        let start = Instant::now();
        let mut waited = Duration::ZERO;
        for _ in 0..100 {
            waited += limiter.acquire("p", QuotaClass::SecretWrite).await;
        }
        let elapsed = start.elapsed();
        // The first 10 go at once, the other 90 at 10/s.
        assert!(elapsed >= Duration::from_millis(8_990), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(9_100), "{elapsed:?}");
        assert!(waited > Duration::ZERO);
        // In any one-minute window no more than 600 + burst calls: here, 100 calls took about 9 s.
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_bucket() {
        let limits = RateLimits {
            secret_reads_per_minute: Some(60),
            ..RateLimits::unlimited()
        };
        let limiter = RateLimiter::new(limits);
        let start = Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move { l.acquire("p", QuotaClass::SecretRead).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 1/s with a burst of 1: the 20th call goes out after 19 s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(19) && elapsed < Duration::from_millis(19_100),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn projects_and_classes_have_separate_buckets_and_unlimited_never_waits() {
        let limits = RateLimits {
            secret_reads_per_minute: Some(60),
            ..RateLimits::unlimited()
        };
        let limiter = RateLimiter::new(limits);
        assert_eq!(limiter.acquire("a", QuotaClass::SecretRead).await, Duration::ZERO);
        assert_eq!(limiter.acquire("b", QuotaClass::SecretRead).await, Duration::ZERO);
        for _ in 0..1000 {
            assert_eq!(
                limiter.acquire("a", QuotaClass::SecretAccess).await,
                Duration::ZERO
            );
        }
        assert!(limiter.acquire("a", QuotaClass::SecretRead).await > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_only_up_to_its_burst() {
        let limits = RateLimits {
            run_writes_per_minute: Some(120),
            ..RateLimits::unlimited()
        };
        let limiter = RateLimiter::new(limits);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let start = Instant::now();
        for _ in 0..12 {
            limiter.acquire("p", QuotaClass::RunWrite).await;
        }
        // Burst 2 (one second at 2/s), then 10 more at 2/s = 5 s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(4_990) && elapsed < Duration::from_millis(5_100),
            "{elapsed:?}"
        );
    }
}

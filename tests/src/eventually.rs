//! Waiting for something the system does on its own time: one polling loop for every test.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] looks when the caller does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

/// How long [`eventually`] keeps looking, and how often. A bare [`Duration`] converts into one that looks every
/// [`DEFAULT_INTERVAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// Give up (fail the test) once this has passed without success.
    pub timeout: Duration,
    /// Pause between two looks.
    pub interval: Duration,
}

impl Patience {
    /// Keep looking for `timeout`, every [`DEFAULT_INTERVAL`].
    pub const fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            interval: DEFAULT_INTERVAL,
        }
    }

    /// The same patience, looking every `interval`.
    #[must_use]
    pub const fn every(self, interval: Duration) -> Self {
        Self { interval, ..self }
    }
}

impl From<Duration> for Patience {
    fn from(timeout: Duration) -> Self {
        Self::new(timeout)
    }
}

/// What one look found: done (with a value), or not yet (with what was seen instead, for the failure message).
///
/// `bool` (`true` is done), `Option<T>` (`Some` is done) and `Result<T, E: Display>` (`Ok` is done, `Err` says
/// what was seen) are outcomes.
pub trait Outcome {
    /// What a successful look yields.
    type Value;

    /// `Ok(value)` when done; else `Err` with what was seen (empty when there is nothing to say).
    fn settle(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();

    fn settle(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;

    fn settle(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;

    fn settle(self) -> Result<T, String> {
        self.map_err(|seen| seen.to_string())
    }
}

/// Runs `look` until its outcome is done and returns the value; fails the test (panics) with `what` and the last
/// thing seen once `patience` (a [`Duration`] or a [`Patience`]) runs out. Looks at least once, and once more after
/// the deadline passed if the deadline passed during a pause.
///
/// ```ignore
/// let status = eventually("Ready=True", Duration::from_secs(60), || async {
///     let status = world.status(&name).await;
///     if ready(&status) { Ok(status) } else { Err(format!("{status:?}")) }
/// })
/// .await;
/// ```
#[allow(
    clippy::panic,
    reason = "a test helper: running out of patience fails the test"
)]
pub async fn eventually<F, Fut>(
    what: &str,
    patience: impl Into<Patience>,
    mut look: F,
) -> <Fut::Output as Outcome>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    let patience = patience.into();
    let deadline = tokio::time::Instant::now() + patience.timeout;
    loop {
        let seen = match look().await.settle() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            if seen.is_empty() {
                panic!("timed out after {:?} waiting for {what}", patience.timeout);
            }
            panic!(
                "timed out after {:?} waiting for {what}; last seen: {seen}",
                patience.timeout
            );
        }
        tokio::time::sleep(patience.interval).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn returns_the_value_of_the_first_successful_look() {
        let mut looks = 0;
        let value = eventually(
            "the third look",
            Patience::new(Duration::from_secs(5)).every(Duration::from_millis(1)),
            || {
                looks += 1;
                let n = looks;
                async move { (n == 3).then_some(n * 10) }
            },
        )
        .await;
        assert_eq!(value, 30);
    }

    #[tokio::test]
    async fn fails_with_what_it_waited_for_and_the_last_thing_seen() {
        let failure = tokio::spawn(eventually(
            "the impossible",
            Patience::new(Duration::from_millis(50)).every(Duration::from_millis(10)),
            || async { Err::<(), _>("still nothing") },
        ))
        .await
        .unwrap_err();
        let message = failure.into_panic();
        let message = message.downcast_ref::<String>().unwrap();
        assert!(message.contains("waiting for the impossible"), "{message}");
        assert!(message.contains("last seen: still nothing"), "{message}");
    }

    #[tokio::test]
    async fn accepts_booleans() {
        eventually("true", Duration::from_secs(1), || async { true }).await;
    }
}

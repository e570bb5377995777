//! When to look at a converged resource again: the periodic resync that finds drift made on Google's side.

use std::time::Duration;

use litellm_operator_api::names::RESYNC_INTERVAL_ANNOTATION;
use rand::Rng;

/// Shortest resync an annotation may ask for: keeps a typo like `1s` from hammering Google's quotas.
pub const MIN_RESYNC: Duration = Duration::from_secs(30);

/// Parses a duration such as `90s`, `10m`, `1h` or `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// The resync interval for one resource: its annotation when valid (and at least [`MIN_RESYNC`]), else `default`.
pub fn interval(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    default: Duration,
) -> Duration {
    annotations
        .and_then(|a| a.get(RESYNC_INTERVAL_ANNOTATION))
        .and_then(|v| parse_duration(v))
        .map(|d| d.max(MIN_RESYNC))
        .unwrap_or(default)
}

/// `interval` ±10 %, so a thousand resources created together do not resync together.
pub fn jittered(interval: Duration) -> Duration {
    let spread = interval.as_secs_f64() * 0.1;
    let offset = rand::rng().random_range(-spread..=spread);
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(1.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("ten minutes"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn annotation_overrides_the_default_within_bounds() {
        let default = Duration::from_secs(600);
        let with = |v: &str| BTreeMap::from([(RESYNC_INTERVAL_ANNOTATION.to_owned(), v.to_owned())]);
        assert_eq!(interval(None, default), default);
        assert_eq!(interval(Some(&with("5m")), default), Duration::from_secs(300));
        assert_eq!(interval(Some(&with("1s")), default), MIN_RESYNC);
        assert_eq!(interval(Some(&with("soon")), default), default);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(600);
        let samples: Vec<Duration> = (0..200).map(|_| jittered(base)).collect();
        assert!(samples.iter().all(|d| (540..=660).contains(&d.as_secs())));
        assert!(samples.iter().any(|d| *d != samples[0]), "jitter should vary");
    }
}

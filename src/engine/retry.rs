//! Retry backoff: exponential, capped, with jitter that only ever shortens the wait.

use std::time::Duration;

use crate::flow::RetryPolicy;
use crate::vocab::MAX_DURATION;

/// The wait before retry number `retry` (1 = the first retry). `unit` is a uniform sample in
/// [0, 1): the delay is shortened by up to `jitter` of itself, so it never exceeds `max_delay`.
pub fn backoff(policy: &RetryPolicy, retry: u32, unit: f64) -> Duration {
    let exp = policy.backoff.powi(retry.saturating_sub(1).min(64) as i32);
    let base = (policy.delay.as_secs_f64() * exp).min(policy.max_delay.as_secs_f64());
    let jittered = base * (1.0 - policy.jitter * unit.clamp(0.0, 1.0));
    // Validated policies keep this within a year; a stored one from an older release might not.
    Duration::try_from_secs_f64(jittered.max(0.0))
        .unwrap_or(MAX_DURATION)
        .min(MAX_DURATION)
}

/// Whether an attempt that just failed (the `tries`-th started this round) may be retried.
pub fn may_retry(policy: &RetryPolicy, tries: u32) -> bool {
    tries <= policy.count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            count: 5,
            delay: Duration::from_secs(1),
            backoff: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
        }
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let p = policy();
        let d: Vec<u64> = (1..=6)
            .map(|n| backoff(&p, n, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(d, vec![1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[test]
    fn jitter_only_shortens() {
        let p = policy();
        assert_eq!(backoff(&p, 2, 0.999_999).as_millis(), 1000);
        for i in 0..100 {
            let d = backoff(&p, 3, f64::from(i) / 100.0);
            assert!(
                d <= Duration::from_secs(4) && d >= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn no_policy_overflows_a_clock() {
        let p = RetryPolicy {
            count: 3,
            delay: Duration::MAX,
            backoff: 100.0,
            max_delay: Duration::MAX,
            jitter: 0.0,
        };
        let d = backoff(&p, 64, 0.0);
        assert_eq!(d, MAX_DURATION);
        assert!(std::time::Instant::now().checked_add(d).is_some());
    }

    #[test]
    fn retry_budget() {
        let p = policy();
        assert!(may_retry(&p, 1));
        assert!(may_retry(&p, 5));
        assert!(!may_retry(&p, 6));
    }
}

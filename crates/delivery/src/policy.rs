//! When to try again: exponential backoff with jitter, capped, until a notification expires;
//! and the circuit breaker that stops hammering an endpoint that keeps failing.

use std::time::Duration;

/// How the engine retries and protects endpoints.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The delay after the first failure; each further failure doubles it.
    pub base: Duration,
    /// The longest delay between two attempts (Salesforce: 2 hours).
    pub cap: Duration,
    /// How long a notification may stay undelivered before it goes to the dead-letter queue
    /// (24 hours by default, at most 7 days).
    pub expiry: Duration,
    /// How long one attempt may take (Salesforce: 60 s for an Outbound Message).
    pub timeout: Duration,
    /// Messages in flight to one endpoint at a time.
    pub concurrency: usize,
    /// Consecutive failed messages after which an endpoint's circuit opens.
    pub breaker_after: u32,
    /// Largest response body read from a receiver.
    pub max_response: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(2 * 3600),
            expiry: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(60),
            concurrency: 8,
            breaker_after: 5,
            max_response: 1 << 20,
        }
    }
}

/// The longest expiry an operator may configure.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

impl Policy {
    /// The delay before attempt `attempts + 1`, after `attempts` failures (≥ 1): the capped
    /// exponential delay, with "equal jitter" (a uniform draw from its upper half) so that
    /// notifications failing together do not come back together.
    pub fn backoff(&self, attempts: u32, unit: f64) -> Duration {
        let full = self.exponential(attempts);
        let half = full / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The capped exponential delay after `attempts` failures, without jitter.
    pub fn exponential(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << shift)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// How long an endpoint's circuit stays open after it opened for the `opens`-th time in a
    /// row: the backoff schedule again, so a dead endpoint is probed less and less often.
    pub fn cooldown(&self, opens: u32) -> Duration {
        self.exponential(opens.max(1))
    }
}

/// One endpoint's health as the engine sees it.
#[derive(Debug, Default, Clone)]
pub struct Breaker {
    /// Messages failed in a row.
    pub failures: u32,
    /// Times the circuit opened without a success in between.
    pub opens: u32,
    /// While set and in the future, nothing is sent (ms).
    pub open_until: Option<i64>,
}

impl Breaker {
    /// Whether a message may be sent at `now`, and how many at once: none while open, one
    /// probe once the open period has passed (half-open), otherwise `concurrency`.
    pub fn allowance(&self, now: i64, concurrency: usize) -> usize {
        match self.open_until {
            Some(t) if t > now => 0,
            Some(_) => 1,
            None => concurrency,
        }
    }

    /// A message was acknowledged: the circuit closes.
    pub fn succeeded(&mut self) {
        *self = Breaker::default();
    }

    /// A message failed at `now`: counts towards opening; a failed probe reopens at once.
    pub fn failed(&mut self, now: i64, policy: &Policy) {
        self.failures += 1;
        let probing = self.open_until.is_some();
        if probing || self.failures >= policy.breaker_after {
            self.opens += 1;
            self.open_until = Some(now + policy.cooldown(self.opens).as_millis() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(7200),
            ..Policy::default()
        }
    }

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=12).map(|n| p.exponential(n).as_secs()).collect();
        assert_eq!(
            secs,
            vec![30, 60, 120, 240, 480, 960, 1920, 3840, 7200, 7200, 7200, 7200]
        );
        assert_eq!(p.exponential(u32::MAX).as_secs(), 7200);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_delay() {
        let p = policy();
        assert_eq!(p.backoff(3, 0.0).as_secs(), 60);
        assert_eq!(p.backoff(3, 1.0).as_secs(), 120);
        let mid = p.backoff(3, 0.5).as_secs();
        assert!((60..=120).contains(&mid));
        assert_eq!(
            p.backoff(40, 1.0).as_secs(),
            7200,
            "the cap holds with jitter"
        );
    }

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_probes_once_half_open() {
        let p = Policy {
            breaker_after: 3,
            ..policy()
        };
        let mut b = Breaker::default();
        assert_eq!(b.allowance(0, 8), 8);
        b.failed(0, &p);
        b.failed(0, &p);
        assert_eq!(b.allowance(0, 8), 8, "two failures leave it closed");
        b.failed(1_000, &p);
        assert_eq!(b.open_until, Some(31_000));
        assert_eq!(b.allowance(30_999, 8), 0, "open: nothing is sent");
        assert_eq!(b.allowance(31_000, 8), 1, "half-open: one probe");
        b.failed(31_000, &p);
        assert_eq!(
            b.open_until,
            Some(91_000),
            "a failed probe reopens for longer"
        );
        b.succeeded();
        assert_eq!(b.allowance(91_000, 8), 8);
        assert_eq!(b.failures, 0);
    }
}

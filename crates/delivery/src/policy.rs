//! When to try again: exponential backoff with jitter, capped, until a notification expires;
//! the circuit breaker that stops hammering an endpoint that keeps failing; and what an
//! endpoint has shown about HTTP/1.1 pipelining, which decides how many webhooks go in a write.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
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

/// Whether an endpoint answers pipelined requests (several written before the first reply is
/// read), as its replies showed. Webhooks go one per write until a probe (two requests in one
/// write, on a connection the receiver already kept open once) is answered in full; then up to
/// the webhook's `pipeline` at a time. A receiver that leaves a probe unanswered is sent one
/// request at a time, and probed again after [`PIPELINING_RECHECK`]. Shared by an endpoint's
/// workers; one probe runs at a time.
#[derive(Debug, Default)]
pub struct Pipelining {
    state: AtomicU8,
    /// When the endpoint last left requests unanswered (ms).
    refused_at: AtomicI64,
}

const UNKNOWN: u8 = 0;
const PROBING: u8 = 1;
const ANSWERS: u8 = 2;
const REFUSES: u8 = 3;

/// How long an endpoint that left pipelined requests unanswered gets one request per write
/// before it is probed again.
pub const PIPELINING_RECHECK: Duration = Duration::from_secs(10 * 60);

impl Pipelining {
    /// How many requests the next write to the endpoint may carry, when a webhook allows
    /// `most` and `kept` says whether a connection the receiver kept open is at hand; and
    /// whether that write is the probe (its outcome then goes to [`Pipelining::learnt`]).
    pub fn plan(&self, most: usize, kept: bool, now: i64) -> (usize, bool) {
        if most < 2 {
            return (1, false);
        }
        let state = self.state.load(Ordering::Acquire);
        let due = match state {
            ANSWERS => return (most, false),
            UNKNOWN => true,
            REFUSES => {
                now - self.refused_at.load(Ordering::Acquire)
                    >= PIPELINING_RECHECK.as_millis() as i64
            }
            _ => false,
        };
        let mine = due
            && kept
            && self
                .state
                .compare_exchange(state, PROBING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if mine {
            (2, true)
        } else {
            (1, false)
        }
    }

    /// What a write showed at `now`: `Some(true)` the receiver answered requests written
    /// together, `Some(false)` it left some unanswered, `None` nothing either way (after a
    /// probe: a later write probes again).
    pub fn learnt(&self, probed: bool, answers: Option<bool>, now: i64) {
        match answers {
            Some(true) => self.state.store(ANSWERS, Ordering::Release),
            Some(false) => {
                self.refused_at.store(now, Ordering::Release);
                self.state.store(REFUSES, Ordering::Release);
            }
            None if probed => self.state.store(UNKNOWN, Ordering::Release),
            None => {}
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

    #[test]
    fn pipelining_starts_after_a_probe_is_answered_and_stops_for_a_while_when_one_is_not() {
        let p = Pipelining::default();
        // A webhook that turned it off, or no kept connection to probe on: one at a time.
        assert_eq!(p.plan(1, true, 0), (1, false));
        assert_eq!(p.plan(8, false, 0), (1, false));
        // One probe at a time; the others send one request per write meanwhile.
        assert_eq!(p.plan(8, true, 0), (2, true));
        assert_eq!(p.plan(8, true, 0), (1, false));
        // A probe that showed nothing (say, no second webhook was waiting) is tried again.
        p.learnt(true, None, 0);
        assert_eq!(p.plan(8, true, 0), (2, true));
        p.learnt(true, Some(true), 0);
        assert_eq!(p.plan(8, true, 0), (8, false));
        assert_eq!(p.plan(16, false, 0), (16, false), "the webhook's own limit");
        assert_eq!(p.plan(1, true, 0), (1, false));
        // A trusted batch left unanswered: one at a time until the recheck is due.
        let later = PIPELINING_RECHECK.as_millis() as i64;
        p.learnt(false, Some(false), 1_000);
        p.learnt(false, None, 1_000);
        assert_eq!(p.plan(8, true, 1_000), (1, false));
        assert_eq!(p.plan(8, true, later), (1, false));
        assert_eq!(p.plan(8, false, later + 1_000), (1, false));
        assert_eq!(p.plan(8, true, later + 1_000), (2, true));
        p.learnt(true, Some(false), later + 1_000);
        assert_eq!(p.plan(8, true, later + 2_000), (1, false));
    }
}

//! Login rate limiting: lockout after repeated failures, a per-user hourly cap, and a cap on
//! failures per client address.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Tracks recent login attempts in memory.
#[derive(Debug)]
pub struct LoginLimiter {
    lockout_attempts: usize,
    window: Duration,
    per_hour: usize,
    ip_failures_per_hour: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    logins: Mutex<HashMap<String, VecDeque<Instant>>>,
    ip_failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The limiter's verdict before checking credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// The user is locked out after repeated failures.
    LockedOut,
    /// Too many logins for the user or failures from the address.
    RateExceeded,
}

const HOUR: Duration = Duration::from_secs(3600);

fn trim(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) > window) {
        q.pop_front();
    }
}

impl LoginLimiter {
    /// A limiter with the given thresholds.
    pub fn new(
        lockout_attempts: u32,
        window_secs: u64,
        per_hour: u32,
        ip_failures_per_hour: u32,
    ) -> LoginLimiter {
        LoginLimiter {
            lockout_attempts: lockout_attempts.max(1) as usize,
            window: Duration::from_secs(window_secs.max(1)),
            per_hour: per_hour.max(1) as usize,
            ip_failures_per_hour: ip_failures_per_hour.max(1) as usize,
            failures: Mutex::new(HashMap::new()),
            logins: Mutex::new(HashMap::new()),
            ip_failures: Mutex::new(HashMap::new()),
        }
    }

    /// Decides whether an attempt for `username` from `ip` may proceed, and counts it.
    pub fn check(&self, username: &str, ip: &str) -> Verdict {
        let now = Instant::now();
        let user = username.to_ascii_lowercase();
        {
            let mut ips = self.ip_failures.lock();
            if let Some(q) = ips.get_mut(ip) {
                trim(q, now, HOUR);
                if q.len() >= self.ip_failures_per_hour {
                    return Verdict::RateExceeded;
                }
            }
        }
        {
            let mut fails = self.failures.lock();
            if let Some(q) = fails.get_mut(&user) {
                trim(q, now, self.window);
                if q.len() >= self.lockout_attempts {
                    return Verdict::LockedOut;
                }
            }
        }
        let mut logins = self.logins.lock();
        let q = logins.entry(user).or_default();
        trim(q, now, HOUR);
        if q.len() >= self.per_hour {
            return Verdict::RateExceeded;
        }
        q.push_back(now);
        Verdict::Allow
    }

    /// Records a failed attempt.
    pub fn failed(&self, username: &str, ip: &str) {
        let now = Instant::now();
        self.failures
            .lock()
            .entry(username.to_ascii_lowercase())
            .or_default()
            .push_back(now);
        let mut ips = self.ip_failures.lock();
        if ips.len() > 100_000 {
            ips.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < HOUR));
        }
        ips.entry(ip.to_string()).or_default().push_back(now);
    }

    /// Clears the failure count after a successful login.
    pub fn succeeded(&self, username: &str) {
        self.failures.lock().remove(&username.to_ascii_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_failures_and_caps_addresses() {
        let l = LoginLimiter::new(3, 900, 100, 5);
        for _ in 0..3 {
            assert_eq!(l.check("Bob", "1.1.1.1"), Verdict::Allow);
            l.failed("bob", "1.1.1.1");
        }
        assert_eq!(l.check("bob", "2.2.2.2"), Verdict::LockedOut);
        assert_eq!(l.check("alice", "1.1.1.1"), Verdict::Allow);
        l.failed("alice", "1.1.1.1");
        l.failed("carol", "1.1.1.1");
        assert_eq!(
            l.check("dave", "1.1.1.1"),
            Verdict::RateExceeded,
            "5 failures from one address"
        );
        assert_eq!(l.check("dave", "3.3.3.3"), Verdict::Allow);
    }

    #[test]
    fn hourly_cap() {
        let l = LoginLimiter::new(10, 900, 2, 100);
        assert_eq!(l.check("u", "a"), Verdict::Allow);
        assert_eq!(l.check("u", "a"), Verdict::Allow);
        assert_eq!(l.check("u", "a"), Verdict::RateExceeded);
    }
}

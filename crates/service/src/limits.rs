//! API limits: the rolling daily request allocation and the cap on concurrent long-running
//! requests, both answered with `REQUEST_LIMIT_EXCEEDED`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use model::{ApiError, ErrorCode};
use parking_lot::Mutex;

/// Counts API requests over a rolling 24 hours (in hourly buckets) and tracks requests in flight.
#[derive(Debug)]
pub struct Usage {
    max_daily: u64,
    max_long: usize,
    buckets: Mutex<VecDeque<(i64, u64)>>,
    total: AtomicU64,
    /// Requests counted since the server started (for charts).
    started: AtomicU64,
    in_flight: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    started: Vec<Option<Instant>>,
    free: Vec<usize>,
}

/// Marks a request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight<'a> {
    usage: &'a Usage,
    slot: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.usage.in_flight.lock();
        s.started[self.slot] = None;
        s.free.push(self.slot);
    }
}

fn hour_now() -> i64 {
    model::value::now_millis() / 3_600_000
}

impl Usage {
    /// A counter with the given allocations.
    pub fn new(max_daily: u64, max_long: usize) -> Usage {
        Usage {
            max_daily,
            max_long,
            buckets: Mutex::new(VecDeque::new()),
            total: AtomicU64::new(0),
            started: AtomicU64::new(0),
            in_flight: Mutex::new(Slots::default()),
        }
    }

    fn roll(&self, buckets: &mut VecDeque<(i64, u64)>, hour: i64) {
        while buckets.front().is_some_and(|(h, _)| *h <= hour - 24) {
            let (_, n) = buckets.pop_front().expect("checked");
            self.total.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Counts one API request, refusing it when the daily allocation is used up.
    pub fn count(&self) -> Result<(), ApiError> {
        let hour = hour_now();
        let mut b = self.buckets.lock();
        self.roll(&mut b, hour);
        if self.total.load(Ordering::Relaxed) >= self.max_daily {
            return Err(ApiError::new(
                ErrorCode::RequestLimitExceeded,
                "TotalRequests Limit exceeded.",
            ));
        }
        match b.back_mut() {
            Some((h, n)) if *h == hour => *n += 1,
            _ => b.push_back((hour, 1)),
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Requests counted since the server started.
    pub fn since_start(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Requests used in the last 24 hours and the allocation.
    pub fn daily(&self) -> (u64, u64) {
        let mut b = self.buckets.lock();
        self.roll(&mut b, hour_now());
        (self.total.load(Ordering::Relaxed), self.max_daily)
    }

    /// Registers a request in flight, refusing it when too many requests have been running longer
    /// than `long_after`.
    pub fn begin(&self, long_after: Duration) -> Result<InFlight<'_>, ApiError> {
        let now = Instant::now();
        let mut s = self.in_flight.lock();
        let long = s
            .started
            .iter()
            .flatten()
            .filter(|t| now.duration_since(**t) >= long_after)
            .count();
        if long >= self.max_long {
            return Err(ApiError::new(
                ErrorCode::RequestLimitExceeded,
                "ConcurrentPerOrgLongTxn Limit exceeded.",
            ));
        }
        let slot = match s.free.pop() {
            Some(i) => {
                s.started[i] = Some(now);
                i
            }
            None => {
                s.started.push(Some(now));
                s.started.len() - 1
            }
        };
        Ok(InFlight { usage: self, slot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_allocation_is_enforced() {
        let u = Usage::new(3, 10);
        for _ in 0..3 {
            u.count().unwrap();
        }
        let e = u.count().unwrap_err();
        assert_eq!(e.code, ErrorCode::RequestLimitExceeded);
        assert_eq!(u.daily(), (3, 3));
    }

    #[test]
    fn long_requests_are_capped() {
        let u = Usage::new(100, 2);
        let a = u.begin(Duration::ZERO).unwrap();
        let _b = u.begin(Duration::ZERO).unwrap();
        assert_eq!(
            u.begin(Duration::ZERO).unwrap_err().message,
            "ConcurrentPerOrgLongTxn Limit exceeded."
        );
        drop(a);
        assert!(u.begin(Duration::ZERO).is_ok());
        assert!(
            u.begin(Duration::from_secs(3600)).is_ok(),
            "short requests are never refused"
        );
    }
}

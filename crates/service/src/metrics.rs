//! What the console charts: a sample every few seconds of events committed per second, API
//! calls, deliveries made and their latency (queued to delivered), kept in memory for the last
//! hour. The server's sampler task calls [`Metrics::sample`]; the delivery engine reports each
//! delivery with [`Metrics::delivered`].

use std::collections::VecDeque;

use model::value::format_datetime_z;
use parking_lot::Mutex;
use serde_json::{json, Value as Json};

/// Samples kept: an hour at the sampler's default interval of 5 s.
const KEEP: usize = 720;
/// Latencies kept per interval (a uniform enough picture for percentiles).
const LATENCIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: i64,
    events_per_sec: f64,
    api_calls: u64,
    delivered: u64,
    p50_ms: Option<u64>,
    p95_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Window {
    latencies: Vec<u64>,
    delivered: u64,
}

/// The org's recent activity.
#[derive(Debug, Default)]
pub struct Metrics {
    window: Mutex<Window>,
    /// The last raw readings: (ms, event tip, API calls since start).
    last: Mutex<Option<(i64, u64, u64)>>,
    samples: Mutex<VecDeque<Sample>>,
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

impl Metrics {
    /// Notifications were delivered (one message's): each one's time since it was queued (ms).
    pub fn delivered(&self, latencies_ms: impl IntoIterator<Item = i64>) {
        let mut w = self.window.lock();
        for l in latencies_ms {
            w.delivered += 1;
            if w.latencies.len() < LATENCIES {
                w.latencies.push(l.max(0) as u64);
            }
        }
    }

    /// Closes an interval at `now_ms` with the event tip and the API calls counted so far.
    pub fn sample(&self, now_ms: i64, event_tip: u64, api_calls: u64) {
        let window = std::mem::take(&mut *self.window.lock());
        let mut last = self.last.lock();
        if let Some((at, tip, calls)) = *last {
            let secs = ((now_ms - at) as f64 / 1000.0).max(0.001);
            let mut lat = window.latencies;
            lat.sort_unstable();
            let mut samples = self.samples.lock();
            samples.push_back(Sample {
                at_ms: now_ms,
                events_per_sec: event_tip.saturating_sub(tip) as f64 / secs,
                api_calls: api_calls.saturating_sub(calls),
                delivered: window.delivered,
                p50_ms: percentile(&lat, 0.5),
                p95_ms: percentile(&lat, 0.95),
            });
            while samples.len() > KEEP {
                samples.pop_front();
            }
        }
        *last = Some((now_ms, event_tip, api_calls));
    }

    /// The samples, oldest first, as the API shows them.
    pub fn json(&self, interval_secs: u64) -> Json {
        let samples: Vec<Json> = self
            .samples
            .lock()
            .iter()
            .map(|s| {
                json!({
                    "date": format_datetime_z(s.at_ms),
                    "eventsPerSecond": (s.events_per_sec * 10.0).round() / 10.0,
                    "apiCalls": s.api_calls,
                    "delivered": s.delivered,
                    "deliveryLatencyP50Ms": s.p50_ms,
                    "deliveryLatencyP95Ms": s.p95_ms,
                })
            })
            .collect();
        json!({"intervalSeconds": interval_secs, "samples": samples})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_rates_and_percentiles_of_their_interval() {
        let m = Metrics::default();
        m.sample(0, 100, 10);
        m.delivered([10, 20]);
        m.delivered([30, 40, 1000]);
        m.sample(2_000, 140, 25);
        m.sample(4_000, 140, 25);
        let j = m.json(2);
        let s = j["samples"].as_array().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["eventsPerSecond"], 20.0);
        assert_eq!(s[0]["apiCalls"], 15);
        assert_eq!(s[0]["delivered"], 5);
        assert_eq!(s[0]["deliveryLatencyP50Ms"], 30);
        assert_eq!(s[0]["deliveryLatencyP95Ms"], 1000);
        assert_eq!(s[1]["delivered"], 0);
        assert!(s[1]["deliveryLatencyP50Ms"].is_null());
    }
}

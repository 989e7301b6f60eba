//! Delivery queue benchmark driver (run by `cargo xtask bench delivery`).
//!
//! `delivery_load queue BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET SERVER_PID KIND URL N
//! [PIPELINE]` installs a flow that sends a webhook (`KIND` = `webhook`, with `pipeline:
//! PIPELINE` when given, else the default) or an Outbound Message (`outbound`) to `URL` for every new
//! Account, then creates `N` Accounts through `POST /composite/sobjects`
//! (200 per call, 4 threads) while the receiver is down, so `N` notifications wait in the queue.
//! It samples the server's resident memory (VmRSS) throughout and prints
//! `queue <seconds> <rss start MB> <rss at 10 %> <rss at 50 %> <rss at the end> <rss max>`.
//!
//! `delivery_load drain BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET SERVER_PID` waits (the
//! receiver now up) until the queue is empty, failing if anything went to the dead-letter queue,
//! and prints `drain <seconds> <rss max MB> <rss at the end MB>`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bench::{rss_mb, Api};
use serde_json::{json, Value};

/// Samples `pid`'s memory every 200 ms until dropped; keeps the maximum.
struct Sampler {
    stop: Arc<AtomicBool>,
    max_kb: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_kb = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max_kb.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let kb = (rss_mb(pid) * 1024.0) as u64;
                m.fetch_max(kb, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Sampler {
            stop,
            max_kb,
            thread: Some(thread),
        }
    }

    fn max_mb(&self) -> f64 {
        self.max_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn queue(api: &Api, pid: u32, kind: &str, url: &str, n: u64, pipeline: Option<u32>) -> Result<()> {
    let action = match kind {
        "webhook" => {
            let mut hook = json!({"type": "webhook", "name": "Bench_Hook", "url": url,
                                  "body": "{id: .Id, name: .Name}"});
            if let Some(p) = pipeline {
                hook["pipeline"] = json!(p);
            }
            hook
        }
        "outbound" => json!({"type": "outbound_message", "name": "Bench_Om", "endpoint": url,
                             "fields": ["Id", "Name"]}),
        other => bail!("KIND is webhook or outbound, not {other}"),
    };
    api.call(
        reqwest::Method::PUT,
        "/conflux/flows/Bench_Delivery",
        Some(json!({"object": "Account", "on": ["create"], "actions": [action]})),
    )?;
    let sampler = Sampler::start(pid);
    let start_rss = rss_mb(pid);
    let calls = n.div_ceil(200);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let marks = Arc::new(marks::Marks::default());
    let t0 = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (next, done, marks) = (next.clone(), done.clone(), marks.clone());
            workers.push(s.spawn(move || -> Result<()> {
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= calls {
                        return Ok(());
                    }
                    let size = (n - c * 200).min(200);
                    let records: Vec<Value> = (0..size)
                        .map(|i| {
                            json!({"attributes": {"type": "Account"},
                                        "Name": format!("Delivery {}", c * 200 + i)})
                        })
                        .collect();
                    let r = api.call(
                        reqwest::Method::POST,
                        "/composite/sobjects",
                        Some(json!({"allOrNone": true, "records": records})),
                    )?;
                    if r.as_array()
                        .is_none_or(|a| a.iter().any(|x| x["success"] != true))
                    {
                        bail!("a create failed: {r}");
                    }
                    let total = done.fetch_add(size, Ordering::Relaxed) + size;
                    marks.note(total, n, pid);
                }
            }));
        }
        for w in workers {
            w.join().map_err(|_| anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let end_rss = rss_mb(pid);
    println!(
        "queue {secs:.2} {start_rss:.1} {:.1} {:.1} {end_rss:.1} {:.1}",
        marks.at(10),
        marks.at(50),
        sampler.max_mb()
    );
    Ok(())
}

/// Memory when the queue passed 10 %, 20 %, … of its size (and progress on stderr).
mod marks {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Marks(Mutex<Vec<(u64, f64)>>);

    impl Marks {
        pub fn note(&self, total: u64, n: u64, pid: u32) {
            let pct = total * 100 / n.max(1);
            let mut m = self.0.lock().expect("marks");
            let last = m.last().map_or(0, |x| x.0);
            if pct >= last + 10 {
                let rss = super::rss_mb(pid);
                eprintln!("    queued {total} of {n} ({pct} %), server RSS {rss:.0} MB");
                m.push((pct / 10 * 10, rss));
            }
        }

        pub fn at(&self, pct: u64) -> f64 {
            self.0
                .lock()
                .expect("marks")
                .iter()
                .find(|x| x.0 >= pct)
                .map_or(f64::NAN, |x| x.1)
        }
    }
}

fn drain(api: &Api, pid: u32) -> Result<()> {
    let sampler = Sampler::start(pid);
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let s = api.call(reqwest::Method::GET, "/conflux/deliveries/summary", None)?;
        let eps = s["endpoints"].as_array().cloned().unwrap_or_default();
        let queued: u64 = eps
            .iter()
            .map(|e| e["queued"].as_u64().unwrap_or(0) + e["failed"].as_u64().unwrap_or(0))
            .sum();
        let dead: u64 = eps.iter().map(|e| e["dead"].as_u64().unwrap_or(0)).sum();
        if dead > 0 {
            let d = api.call(
                reqwest::Method::GET,
                "/conflux/deliveries?state=dead&limit=3",
                None,
            )?;
            bail!("{dead} notifications went to the dead-letter queue: {d}");
        }
        if queued == 0 {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "    {queued} still queued, server RSS {:.0} MB",
                rss_mb(pid)
            );
            last_print = Instant::now();
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            bail!("the queue did not drain within an hour ({queued} left)");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "drain {:.2} {:.1} {:.1}",
        t0.elapsed().as_secs_f64(),
        sampler.max_mb(),
        rss_mb(pid)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: delivery_load queue|drain BASE USER PASS CLIENT_ID CLIENT_SECRET PID [KIND URL N [PIPELINE]]";
    if args.len() < 7 {
        bail!("{usage}");
    }
    let api = Api::login(&args[1], &args[2], &args[3], &args[4], &args[5])?;
    let pid: u32 = args[6].parse()?;
    match (args[0].as_str(), &args[7..]) {
        ("queue", [kind, url, n]) => queue(&api, pid, kind, url, n.parse()?, None),
        ("queue", [kind, url, n, p]) => queue(&api, pid, kind, url, n.parse()?, Some(p.parse()?)),
        ("drain", []) => drain(&api, pid),
        _ => bail!("{usage}"),
    }
}

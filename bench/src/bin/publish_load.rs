//! Durable publish throughput: Conflux's event bus against nats-server JetStream, in one run.
//!
//! ```text
//! publish_load URL TOKEN SCRATCH_DIR [EVENTS]
//! ```
//!
//! Conflux (at `URL`, logged in as `TOKEN`): a platform event type `Bench_Pub__e` is created,
//! then four publishers post `POST /composite/sobjects` calls of 200 events each (the largest
//! collection) until EVENTS (default 200,000) are acknowledged. Each 201 means the events are
//! committed to SQLite and the WAL synced.
//!
//! JetStream: a nats-server started here on a free loopback port, file storage under
//! SCRATCH_DIR (the same filesystem as Conflux's data), one stream; the publisher keeps 256
//! publishes in flight and counts acknowledged messages (the performance anchors' shape). The
//! payload is the same size as a Conflux event's. Debian's nats-server (2.9) cannot sync per
//! message, so its acknowledgement means "in the page cache": weaker than Conflux's. When
//! `NATS_SYNCED_SERVER` names a nats-server 2.10 or later, the same publisher also runs against
//! it with `sync_interval: always` (every write synced before its acknowledgement: Conflux's
//! durability), for at most [`SYNCED_EVENTS`] messages.
//!
//! Prints one JSON object on stdout.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};

const BATCH: usize = 200;
/// Most messages published to the synced JetStream (it acknowledges at the disk's pace).
const SYNCED_EVENTS: u64 = 50_000;
const PUBLISHERS: usize = 4;
const JS_WINDOW: usize = 256;

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> Result<String> {
    let resp = http
        .post(format!("{base}/services/data/v59.0{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("POST {path}: {status} {text}");
    }
    Ok(text)
}

/// Publishes `events` platform events through sObject collections; returns events per second.
async fn conflux(base: &str, token: &str, events: u64) -> Result<f64> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    post(&http, base, token, "/tooling/sobjects/CustomObject", &json!({
        "FullName": "Bench_Pub__e",
        "Metadata": {"label": "Bench Pub", "pluralLabel": "Bench Pubs", "publishBehavior": "PublishAfterCommit"}
    })).await?;
    post(
        &http,
        base,
        token,
        "/tooling/sobjects/CustomField",
        &json!({
            "FullName": "Bench_Pub__e.Message__c",
            "Metadata": {"type": "Text", "label": "Message", "length": 255}
        }),
    )
    .await?;
    let body = Arc::new(json!({
        "allOrNone": true,
        "records": (0..BATCH).map(|k| json!({
            "attributes": {"type": "Bench_Pub__e"},
            "Message__c": format!("bench event {k:06} lorem ipsum dolor sit amet")
        })).collect::<Vec<_>>()
    }));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PUBLISHERS {
        let (http, base, token, body, next) = (
            http.clone(),
            base.to_string(),
            token.to_string(),
            body.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            while next.fetch_add(BATCH as u64, Ordering::Relaxed) < events {
                let reply = post(&http, &base, &token, "/composite/sobjects", &body).await?;
                if reply.contains("\"success\":false") {
                    bail!("a publish failed: {reply}");
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let published = events.div_ceil(BATCH as u64) * BATCH as u64;
    Ok(published as f64 / start.elapsed().as_secs_f64())
}

/// Publishes `events` messages to a file-backed stream with JS_WINDOW in flight; returns
/// acknowledged messages per second.
async fn jetstream(port: u16, events: u64, size: usize) -> Result<f64> {
    let client = async_nats::connect(format!("127.0.0.1:{port}")).await?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = bytes_of(size);
    let start = Instant::now();
    let mut inflight = VecDeque::with_capacity(JS_WINDOW);
    for _ in 0..events {
        if inflight.len() == JS_WINDOW {
            let ack: async_nats::jetstream::context::PublishAckFuture =
                inflight.pop_front().expect("window is full");
            ack.await?;
        }
        inflight.push_back(js.publish("bench.pub", payload.clone()).await?);
    }
    for ack in inflight {
        ack.await?;
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

fn bytes_of(size: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; size])
}

#[tokio::main]
async fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, dir, rest @ ..] = a.as_slice() else {
        bail!("usage: publish_load URL TOKEN SCRATCH_DIR [EVENTS]");
    };
    let events: u64 = rest.first().map_or(Ok(200_000), |s| s.parse())?;
    // A Conflux platform event as stored: payload JSON with CreatedDate, CreatedById and the
    // message field, plus its UUID and schema id.
    let size = 230;
    eprintln!("    Conflux: {events} events, {PUBLISHERS} publishers x {BATCH}-event collections");
    let conflux = conflux(base, token, events).await?;
    eprintln!("    JetStream: {events} messages of {size} bytes, {JS_WINDOW} in flight");
    let nats = bench::Nats::start(Path::new(dir))?;
    let port = nats.port;
    let js = jetstream(port, events, size).await?;
    drop(nats);
    let mut out = json!({"events": events, "confluxPerSec": conflux, "jetstreamPerSec": js, "ratio": conflux / js});
    if let Some(bin) = std::env::var_os("NATS_SYNCED_SERVER") {
        let n = events.min(SYNCED_EVENTS);
        eprintln!("    JetStream with sync_interval always: {n} messages, {JS_WINDOW} in flight");
        let nats = bench::Nats::start_with(Path::new(&bin), Path::new(dir), true)?;
        let synced = jetstream(nats.port, n, size).await?;
        out["syncedEvents"] = json!(n);
        out["jetstreamSyncedPerSec"] = json!(synced);
        out["syncedRatio"] = json!(conflux / synced);
    }
    println!("{out}");
    Ok(())
}

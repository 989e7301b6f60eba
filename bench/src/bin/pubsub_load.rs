//! The Pub/Sub API against nats-server JetStream, in one run: one publisher streaming
//! 200-event batches, then one subscriber draining every retained event.
//!
//! ```text
//! pubsub_load URL TOKEN GRPC_ADDR CA_FILE SCRATCH_DIR [EVENTS]
//! ```
//!
//! Conflux: a platform event type `Bench_Stream__e` (one text field) is created through REST;
//! a `PublishStream` call sends EVENTS events (default 1,000,000) in `PublishRequest`s of 200,
//! keeping up to 8 requests unanswered; each answer means the events are committed (SQLite, the
//! WAL synced). Then a `Subscribe` from EARLIEST drains all of them, keeping the
//! flow-control maximum of 100 events requested (it asks again for as many as each response
//! brought).
//!
//! JetStream: a nats-server on a free loopback port with file storage under SCRATCH_DIR; the
//! same count of messages of the same size as Conflux's Avro payloads, published in batches of
//! 200 with up to 8 batches unacknowledged (each message acknowledged, as JetStream does), then
//! drained by an ordered consumer. nats-server 2.9 does not fsync per message.
//!
//! Prints one JSON object on stdout.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use grpc_api::proto::pub_sub_client::PubSubClient;
use grpc_api::proto::{
    FetchRequest, ProducerEvent, PublishRequest, ReplayPreset, SchemaRequest, TopicRequest,
};
use serde_json::json;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Request;

const BATCH: usize = 200;
const IN_FLIGHT: usize = 8;
const TOPIC: &str = "/event/Bench_Stream__e";

struct Meta {
    token: String,
    tenant: String,
}

impl Meta {
    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        md.insert("accesstoken", self.token.parse().expect("ascii token"));
        md.insert("instanceurl", "https://localhost".parse().expect("ascii"));
        md.insert("tenantid", self.tenant.parse().expect("ascii"));
        r
    }
}

/// The payloads of one request: `Bench_Stream__e` events (CreatedDate, CreatedById,
/// Message__c) encoded with the topic's schema, reused for every request.
fn payloads(schema_json: &str) -> Result<Vec<Vec<u8>>> {
    use apache_avro::types::Value as A;
    let schema = apache_avro::Schema::parse_str(schema_json)?;
    (0..BATCH)
        .map(|k| {
            let record = A::Record(vec![
                ("CreatedDate".into(), A::Long(1_796_205_600_000)),
                ("CreatedById".into(), A::String("005000000000001AAA".into())),
                (
                    "Message__c".into(),
                    A::Union(
                        1,
                        Box::new(A::String(format!(
                            "bench event {k:08} lorem ipsum dolor sit amet"
                        ))),
                    ),
                ),
            ]);
            Ok(apache_avro::to_avro_datum(&schema, record)?)
        })
        .collect()
}

/// Publishes `events` events; returns events per second and the payload size.
async fn conflux_publish(
    client: &mut PubSubClient<Channel>,
    meta: &Meta,
    events: u64,
) -> Result<(f64, usize)> {
    let info = client
        .get_topic(meta.req(TopicRequest {
            topic_name: TOPIC.into(),
        }))
        .await?
        .into_inner();
    let schema = client
        .get_schema(meta.req(SchemaRequest {
            schema_id: info.schema_id.clone(),
        }))
        .await?
        .into_inner();
    let payloads = payloads(&schema.schema_json)?;
    let size = payloads[0].len();
    let (tx, rx) = mpsc::channel::<PublishRequest>(IN_FLIGHT);
    let mut responses = client
        .publish_stream(meta.req(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await?
        .into_inner();
    let requests = events.div_ceil(BATCH as u64);
    let schema_id = info.schema_id.clone();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..requests {
            let events = payloads
                .iter()
                .map(|payload| ProducerEvent {
                    id: String::new(),
                    schema_id: schema_id.clone(),
                    payload: payload.clone(),
                    headers: Vec::new(),
                })
                .collect();
            let req = PublishRequest {
                topic_name: TOPIC.into(),
                events,
                auth_refresh: String::new(),
            };
            if tx.send(req).await.is_err() {
                break;
            }
        }
    });
    // The channel's capacity bounds the requests written ahead; answers come back in order.
    let mut published = 0u64;
    for _ in 0..requests {
        let resp = responses
            .message()
            .await?
            .context("the publish stream ended early")?;
        if let Some(bad) = resp.results.iter().find(|r| r.error.is_some()) {
            bail!("a publish failed: {bad:?}");
        }
        published += resp.results.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    sender.await?;
    Ok((published as f64 / secs, size))
}

async fn conflux_drain(
    client: &mut PubSubClient<Channel>,
    meta: &Meta,
    events: u64,
) -> Result<f64> {
    let (tx, rx) = mpsc::channel::<FetchRequest>(64);
    tx.send(FetchRequest {
        topic_name: TOPIC.into(),
        replay_preset: ReplayPreset::Earliest as i32,
        num_requested: 100,
        ..Default::default()
    })
    .await?;
    let start = Instant::now();
    let mut stream = client
        .subscribe(meta.req(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .await?
        .into_inner();
    let mut got = 0u64;
    let mut bytes = 0usize;
    let deadline = start + Duration::from_secs(600);
    while got < events {
        let resp = tokio::time::timeout_at(deadline.into(), stream.message())
            .await
            .context("the drain took more than 10 minutes")??
            .context("the subscription ended early")?;
        let n = resp.events.len();
        if n > 0 {
            bytes += resp
                .events
                .iter()
                .map(|e| e.event.as_ref().map_or(0, |p| p.payload.len()))
                .sum::<usize>();
            got += n as u64;
            // Ask for as many as arrived: 100 stay requested.
            tx.send(FetchRequest {
                topic_name: TOPIC.into(),
                num_requested: n as i32,
                ..Default::default()
            })
            .await?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("    drained {got} events ({bytes} payload bytes) in {secs:.2} s");
    Ok(got as f64 / secs)
}

/// JetStream: publish `events` messages of `size` bytes in batches of BATCH with up to
/// IN_FLIGHT batches unacknowledged, then drain them with an ordered consumer. Returns both
/// rates.
async fn jetstream(port: u16, events: u64, size: usize) -> Result<(f64, f64)> {
    use async_nats::jetstream::{self, consumer, stream};
    use futures::StreamExt;
    let client = async_nats::connect(format!("127.0.0.1:{port}")).await?;
    let js = jetstream::new(client);
    let s = js
        .create_stream(stream::Config {
            name: "PUBSUB".into(),
            subjects: vec!["pubsub.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let body = bytes::Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let mut window: VecDeque<jetstream::context::PublishAckFuture> =
        VecDeque::with_capacity(BATCH * IN_FLIGHT);
    for _ in 0..events {
        if window.len() == BATCH * IN_FLIGHT {
            for _ in 0..BATCH {
                window.pop_front().expect("a full window").await?;
            }
        }
        window.push_back(js.publish("pubsub.bench", body.clone()).await?);
    }
    for ack in window {
        ack.await?;
    }
    let publish = events as f64 / start.elapsed().as_secs_f64();
    let consumer = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "pubsub.bench".into(),
            ..Default::default()
        })
        .await?;
    let start = Instant::now();
    let mut messages = consumer.messages().await?;
    let mut got = 0u64;
    while got < events {
        let m = tokio::time::timeout(Duration::from_secs(60), messages.next())
            .await
            .context("the JetStream drain stalled")?
            .context("the consumer ended")??;
        let _ = m.payload.len();
        got += 1;
    }
    let drain = got as f64 / start.elapsed().as_secs_f64();
    Ok((publish, drain))
}

#[tokio::main]
async fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, grpc, ca, dir, rest @ ..] = a.as_slice() else {
        bail!("usage: pubsub_load URL TOKEN GRPC_ADDR CA_FILE SCRATCH_DIR [EVENTS]");
    };
    let events: u64 = rest.first().map_or(Ok(1_000_000), |s| s.parse())?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    for (path, body) in [
        (
            "/tooling/sobjects/CustomObject",
            json!({"FullName": "Bench_Stream__e", "Metadata": {"label": "Bench Stream", "pluralLabel": "Bench Streams"}}),
        ),
        (
            "/tooling/sobjects/CustomField",
            json!({"FullName": "Bench_Stream__e.Message__c", "Metadata": {"type": "Text", "label": "Message", "length": 255}}),
        ),
    ] {
        let r = http
            .post(format!("{base}/services/data/v59.0{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("POST {path}: {}", r.text().await?);
        }
    }
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{grpc}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    let mut client = PubSubClient::new(channel).max_decoding_message_size(8 * 1024 * 1024);
    let meta = Meta {
        token: token.clone(),
        tenant: token.split('!').next().unwrap_or_default().to_string(),
    };
    eprintln!("    Conflux: PublishStream of {events} events in {BATCH}-event requests");
    let (publish, size) = conflux_publish(&mut client, &meta, events).await?;
    eprintln!("    Conflux: Subscribe EARLIEST, draining {events} events");
    let drain = conflux_drain(&mut client, &meta, events).await?;
    eprintln!(
        "    JetStream: {events} messages of {size} bytes: publish, then an ordered consumer"
    );
    let nats = bench::Nats::start(std::path::Path::new(dir))?;
    let port = nats.port;
    let (js_publish, js_drain) = jetstream(port, events, size).await?;
    println!(
        "{}",
        json!({
            "events": events, "payloadBytes": size,
            "confluxPublishPerSec": publish, "jetstreamPublishPerSec": js_publish,
            "publishRatio": publish / js_publish,
            "confluxDrainPerSec": drain, "jetstreamDrainPerSec": js_drain,
            "drainRatio": drain / js_drain,
        })
    );
    Ok(())
}

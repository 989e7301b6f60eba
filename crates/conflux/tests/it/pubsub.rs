//! The Pub/Sub API over the wire (gRPC over TLS, a tonic client trusting the server's generated
//! CA): authentication metadata and its failures, topics and Avro schemas, publishing with one
//! result per event, subscribing with each replay preset and client flow control, keep-alives,
//! change events with their bitmaps, and `kill -9` after an acknowledged publish.

use std::time::Duration;

use apache_avro::types::Value as A;
use grpc_api::proto::pub_sub_client::PubSubClient;
use grpc_api::proto::{
    FetchRequest, FetchResponse, ProducerEvent, PublishRequest, ReplayPreset, SchemaRequest,
    TopicRequest,
};
use reqwest::Method;
use serde_json::json;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Request, Status, Streaming};

use crate::harness::{data_dir, Org};

const EVENT: &str = "Order_Shipped__e";
const TOPIC: &str = "/event/Order_Shipped__e";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A client of `org`'s Pub/Sub endpoint, sending `token` and `tenant` as metadata.
struct Pubsub {
    client: PubSubClient<Channel>,
    token: String,
    tenant: String,
}

impl Pubsub {
    async fn connect(org: &Org) -> Pubsub {
        let ca = std::fs::read(&org.srv.ca).expect("CA file");
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", org.srv.grpc))
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect to the gRPC listener");
        let tenant = org.token.split('!').next().unwrap().to_string();
        Pubsub {
            client: PubSubClient::new(channel),
            token: org.token.clone(),
            tenant,
        }
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        let md = r.metadata_mut();
        md.insert("accesstoken", self.token.parse().unwrap());
        md.insert("instanceurl", "https://localhost".parse().unwrap());
        md.insert("tenantid", self.tenant.parse().unwrap());
        r
    }

    async fn schema_of(&mut self, topic: &str) -> (String, apache_avro::Schema) {
        let info = self
            .client
            .get_topic(self.req(TopicRequest {
                topic_name: topic.into(),
            }))
            .await
            .expect("GetTopic")
            .into_inner();
        let schema = self
            .client
            .get_schema(self.req(SchemaRequest {
                schema_id: info.schema_id.clone(),
            }))
            .await
            .expect("GetSchema")
            .into_inner();
        assert_eq!(schema.schema_id, info.schema_id);
        let parsed = apache_avro::Schema::parse_str(&schema.schema_json).expect("valid Avro");
        (info.schema_id, parsed)
    }

    /// Opens a subscription with its first request; returns the sender for more requests and
    /// the response stream.
    async fn subscribe(
        &mut self,
        first: FetchRequest,
    ) -> Result<(mpsc::Sender<FetchRequest>, Streaming<FetchResponse>), Status> {
        let (tx, rx) = mpsc::channel(8);
        tx.send(first).await.unwrap();
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let resp = self.client.subscribe(self.req(stream)).await?;
        Ok((tx, resp.into_inner()))
    }
}

fn fetch(topic: &str, preset: ReplayPreset, replay: Option<u64>, n: i32) -> FetchRequest {
    FetchRequest {
        topic_name: topic.into(),
        replay_preset: preset as i32,
        replay_id: replay.map(|r| r.to_be_bytes().to_vec()).unwrap_or_default(),
        num_requested: n,
        auth_refresh: String::new(),
    }
}

fn replay(bytes: &[u8]) -> u64 {
    assert_eq!(bytes.len(), 8, "replay ids are 8 bytes");
    u64::from_be_bytes(bytes.try_into().unwrap())
}

/// Encodes a platform event payload for `schema`.
fn encode(schema: &apache_avro::Schema, model: &str, ink: Option<f64>) -> Vec<u8> {
    let rec = A::Record(vec![
        ("CreatedDate".into(), A::Long(0)),
        ("CreatedById".into(), A::String("005000000000000AAA".into())),
        (
            "Printer_Model__c".into(),
            A::Union(1, Box::new(A::String(model.into()))),
        ),
        (
            "Ink_Percentage__c".into(),
            match ink {
                Some(d) => A::Union(1, Box::new(A::Double(d))),
                None => A::Union(0, Box::new(A::Null)),
            },
        ),
    ]);
    apache_avro::to_avro_datum(schema, rec).expect("encode")
}

fn field(rec: &A, name: &str) -> A {
    let A::Record(fields) = rec else {
        panic!("not a record: {rec:?}")
    };
    let v = fields
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
        .clone();
    match v {
        A::Union(_, inner) => *inner,
        v => v,
    }
}

fn decode(schema: &apache_avro::Schema, payload: &[u8]) -> A {
    let mut r = payload;
    apache_avro::from_avro_datum(schema, &mut r, None).expect("decode")
}

/// Receives responses until `n` events arrived (keep-alives skipped); returns the events as
/// (replay id, event id, payload) and the last response.
async fn events(
    stream: &mut Streaming<FetchResponse>,
    n: usize,
) -> (Vec<(u64, String, Vec<u8>)>, FetchResponse) {
    let mut out = Vec::new();
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("events arrive in time")
            .expect("stream ok")
            .expect("stream open");
        replay(&resp.latest_replay_id);
        for e in &resp.events {
            let ev = e.event.as_ref().unwrap();
            out.push((replay(&e.replay_id), ev.id.clone(), ev.payload.clone()));
        }
        if out.len() >= n {
            return (out, resp);
        }
    }
}

fn define_event(org: &Org) {
    let (s, b) = org.tooling(
        "CustomObject",
        EVENT,
        json!({"label": "Order Shipped", "pluralLabel": "Orders Shipped", "publishBehavior": "PublishAfterCommit"}),
    );
    assert_eq!(s, 201, "{b}");
    for (f, meta) in [
        (
            "Printer_Model__c",
            json!({"type": "Text", "length": 40, "label": "Model"}),
        ),
        (
            "Ink_Percentage__c",
            json!({"type": "Number", "precision": 16, "scale": 2, "label": "Ink"}),
        ),
    ] {
        let (s, b) = org.tooling("CustomField", &format!("{EVENT}.{f}"), meta);
        assert_eq!(s, 201, "{b}");
    }
}

/// A blocking REST call from inside the async tests.
fn call(
    org: &Org,
    method: Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    tokio::task::block_in_place(|| org.call(method, url, body))
}

fn rest_publish(org: &Org, model: &str) -> String {
    let (s, b) = call(
        org,
        Method::POST,
        &org.data(&format!("/sobjects/{EVENT}")),
        Some(json!({"Printer_Model__c": model, "Ink_Percentage__c": 0.5})),
    );
    assert_eq!(s, 201, "{b}");
    b["errors"][0]["message"].as_str().unwrap().to_string()
}

fn error_code(s: &Status) -> String {
    s.metadata()
        .get("error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn authentication_topics_and_schemas() {
    let org = Org::start("pubsub-auth");
    define_event(&org);
    runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let info = ps
            .client
            .get_topic(ps.req(TopicRequest {
                topic_name: TOPIC.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(info.can_publish && info.can_subscribe);
        assert_eq!(info.tenant_guid.len(), 18);
        assert!(info.tenant_guid.starts_with(&ps.tenant));
        assert_eq!(info.schema_id.len(), 22);
        assert!(!info.rpc_id.is_empty());
        let (_, schema) = ps.schema_of(TOPIC).await;
        assert_eq!(schema.name().unwrap().name, EVENT);

        // The REST eventSchema resource serves the same schema.
        let (s, b) = call(
            &org,
            Method::GET,
            &org.data(&format!("/event/eventSchema/{}", info.schema_id)),
            None,
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["name"], EVENT);

        // The 18-character org id works as the tenant too.
        ps.tenant = info.tenant_guid.clone();
        ps.client
            .get_topic(ps.req(TopicRequest {
                topic_name: TOPIC.into(),
            }))
            .await
            .expect("18-character tenant id");

        // Unknown topics, PushTopic-style names and unknown schema ids.
        for name in ["/event/Nope__e", "/topic/Whatever", "/data/NopeChangeEvent"] {
            let e = ps
                .client
                .get_topic(ps.req(TopicRequest {
                    topic_name: name.into(),
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound, "{name}: {e:?}");
            assert_eq!(
                error_code(&e),
                "sfdc.platform.eventbus.grpc.topic.not.found"
            );
            assert!(e.message().contains("rpcId: "), "{}", e.message());
        }
        let e = ps
            .client
            .get_schema(ps.req(SchemaRequest {
                schema_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);

        // Bad credentials: a wrong token, a wrong tenant, missing metadata.
        let good = ps.token.clone();
        ps.token = format!("{}!nope", ps.tenant);
        let e = ps
            .client
            .get_topic(ps.req(TopicRequest {
                topic_name: TOPIC.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert_eq!(
            error_code(&e),
            "sfdc.platform.eventbus.grpc.service.auth.error"
        );
        ps.token = good;
        ps.tenant = "00D000000000000AAA".into();
        let e = ps
            .client
            .get_topic(ps.req(TopicRequest {
                topic_name: TOPIC.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = ps
            .client
            .get_topic(Request::new(TopicRequest {
                topic_name: TOPIC.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert_eq!(
            error_code(&e),
            "sfdc.platform.eventbus.grpc.service.auth.headers.invalid"
        );
    });
}

#[test]
fn publish_and_subscribe_with_replay_presets_and_flow_control() {
    let org = Org::start_in(&data_dir("pubsub-flow"), &[], &["--pubsub-keepalive", "1"]);
    define_event(&org);
    runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let (schema_id, schema) = ps.schema_of(TOPIC).await;

        // Publish: a result per event, in order; bad events fail alone.
        let good = |model: &str, id: &str| ProducerEvent {
            id: id.into(),
            schema_id: schema_id.clone(),
            payload: encode(&schema, model, Some(0.25)),
            headers: vec![],
        };
        let resp = ps
            .client
            .publish(ps.req(PublishRequest {
                topic_name: TOPIC.into(),
                events: vec![
                    good("P-1", "11111111-1111-4111-8111-111111111111"),
                    ProducerEvent {
                        id: "bad-schema".into(),
                        schema_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
                        payload: encode(&schema, "x", None),
                        headers: vec![],
                    },
                    ProducerEvent {
                        id: "garbage".into(),
                        schema_id: schema_id.clone(),
                        payload: vec![0xff, 0xff, 0xff, 0xff],
                        headers: vec![],
                    },
                    good("P-2", ""),
                ],
                auth_refresh: String::new(),
            }))
            .await
            .expect("Publish")
            .into_inner();
        assert_eq!(resp.results.len(), 4);
        assert_eq!(resp.schema_id, schema_id);
        let r = &resp.results;
        assert!(r[0].error.is_none() && r[3].error.is_none(), "{r:?}");
        assert_eq!(r[0].correlation_key, "11111111-1111-4111-8111-111111111111");
        assert_eq!(
            r[3].correlation_key.len(),
            36,
            "a UUID is made for an empty id"
        );
        assert!(replay(&r[3].replay_id) > replay(&r[0].replay_id));
        for bad in [&r[1], &r[2]] {
            assert!(bad.error.is_some(), "{bad:?}");
            assert_eq!(replay(&bad.replay_id), 0);
        }
        let first_replay = replay(&r[0].replay_id);

        // REST publishes reach Pub/Sub subscribers too.
        let rest_uuid = rest_publish(&org, "R-1");

        // EARLIEST: every retained event, decoded with the topic's schema.
        let (_tx, mut stream) = ps
            .subscribe(fetch(TOPIC, ReplayPreset::Earliest, None, 10))
            .await
            .unwrap();
        let (got, last) = events(&mut stream, 3).await;
        let models: Vec<String> = got
            .iter()
            .map(
                |(_, _, p)| match field(&decode(&schema, p), "Printer_Model__c") {
                    A::String(s) => s,
                    v => panic!("{v:?}"),
                },
            )
            .collect();
        assert_eq!(models, ["P-1", "P-2", "R-1"]);
        assert_eq!(got[0].1, "11111111-1111-4111-8111-111111111111");
        assert_eq!(got[2].1, rest_uuid, "the event id is the EventUuid");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        let ev = decode(&schema, &got[2].2);
        assert_eq!(field(&ev, "Ink_Percentage__c"), A::Double(0.5));
        assert!(matches!(field(&ev, "CreatedById"), A::String(s) if s.starts_with("005")));
        assert_eq!(last.pending_num_requested, 7);

        // CUSTOM: exactly the events after the given replay id.
        let (_tx, mut stream) = ps
            .subscribe(fetch(TOPIC, ReplayPreset::Custom, Some(first_replay), 10))
            .await
            .unwrap();
        let (got, _) = events(&mut stream, 2).await;
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(r, _, _)| *r > first_replay));

        // Flow control: 2 requested, 5 available: 2 arrive, then a keep-alive, nothing more
        // until the client asks again.
        for k in 0..3 {
            rest_publish(&org, &format!("F-{k}"));
        }
        let (tx, mut stream) = ps
            .subscribe(fetch(TOPIC, ReplayPreset::Earliest, None, 2))
            .await
            .unwrap();
        let (got, last) = events(&mut stream, 2).await;
        assert_eq!(got.len(), 2);
        assert_eq!(last.pending_num_requested, 0);
        let keepalive = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a keep-alive within the keep-alive interval")
            .unwrap()
            .unwrap();
        assert!(keepalive.events.is_empty(), "nothing beyond the request");
        assert_eq!(replay(&keepalive.latest_replay_id), got[1].0);
        // Later requests add to the count; their preset and replay id are ignored (pysfpubsub
        // resends its whole first request).
        tx.send(fetch(TOPIC, ReplayPreset::Earliest, None, 3))
            .await
            .unwrap();
        let (more, _) = events(&mut stream, 3).await;
        assert_eq!(more.len(), 3);
        assert!(more[0].0 > got[1].0);
        // A request naming another topic ends the subscription.
        tx.send(fetch("/event/Other__e", ReplayPreset::Latest, None, 1))
            .await
            .unwrap();
        let e = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without an error"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(
            error_code(&e),
            "sfdc.platform.eventbus.grpc.subscription.fetch.topic.mismatch"
        );

        // LATEST: only what is published after subscribing.
        let (_tx, mut stream) = ps
            .subscribe(fetch(TOPIC, ReplayPreset::Latest, None, 5))
            .await
            .unwrap();
        let uuid = rest_publish(&org, "L-1");
        let (got, _) = events(&mut stream, 1).await;
        assert_eq!(got[0].1, uuid);

        // Bad first requests.
        let bounds_past = u64::MAX / 2;
        for (req, code) in [
            (
                fetch(TOPIC, ReplayPreset::Custom, Some(bounds_past), 1),
                "subscription.fetch.replayid.corrupted",
            ),
            (
                fetch(TOPIC, ReplayPreset::Custom, None, 1),
                "subscription.fetch.replayid.validation.failed",
            ),
            (
                fetch(TOPIC, ReplayPreset::Latest, None, 0),
                "subscription.fetch.requested.events.invalid",
            ),
            (
                fetch("/event/Nope__e", ReplayPreset::Latest, None, 1),
                "topic.not.found",
            ),
        ] {
            let e = match ps.subscribe(req).await {
                Err(e) => e,
                Ok((_tx, mut s)) => s.message().await.unwrap_err(),
            };
            assert_eq!(
                error_code(&e),
                format!("sfdc.platform.eventbus.grpc.{code}"),
                "{e:?}"
            );
        }
        // A replay id that is not 8 bytes is corrupted too.
        let mut req = fetch(TOPIC, ReplayPreset::Custom, None, 1);
        req.replay_id = vec![1, 2, 3];
        let e = match ps.subscribe(req).await {
            Err(e) => e,
            Ok((_tx, mut s)) => s.message().await.unwrap_err(),
        };
        assert_eq!(e.code(), Code::InvalidArgument);
    });
}

#[test]
fn publish_stream_answers_every_request_in_order() {
    let org = Org::start("pubsub-stream");
    define_event(&org);
    runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let (schema_id, schema) = ps.schema_of(TOPIC).await;
        let requests: Vec<PublishRequest> = (0..20)
            .map(|k| PublishRequest {
                topic_name: TOPIC.into(),
                events: (0..10)
                    .map(|j| ProducerEvent {
                        id: format!("00000000-0000-4000-8000-{:012}", k * 100 + j),
                        schema_id: schema_id.clone(),
                        payload: encode(&schema, &format!("S-{k}-{j}"), Some(1.0)),
                        headers: vec![],
                    })
                    .collect(),
                auth_refresh: String::new(),
            })
            .collect();
        let mut stream = ps
            .client
            .publish_stream(ps.req(tokio_stream::iter(requests)))
            .await
            .expect("PublishStream")
            .into_inner();
        let mut last = 0;
        for k in 0..20 {
            let resp = stream
                .message()
                .await
                .unwrap()
                .expect("a response per request");
            assert_eq!(resp.results.len(), 10);
            for (j, r) in resp.results.iter().enumerate() {
                assert!(r.error.is_none(), "{r:?}");
                assert_eq!(
                    r.correlation_key,
                    format!("00000000-0000-4000-8000-{:012}", k * 100 + j)
                );
                let id = replay(&r.replay_id);
                assert!(id > last, "replay ids grow in request order");
                last = id;
            }
        }
        // Publishing to a change event topic is refused.
        let e = ps
            .client
            .publish(ps.req(PublishRequest {
                topic_name: "/data/ChangeEvents".into(),
                events: vec![ProducerEvent::default()],
                auth_refresh: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    });
}

#[test]
fn change_events_carry_header_and_field_bitmaps() {
    let org = Org::start("pubsub-cdc");
    let (s, b) = org.tooling(
        "CustomObject",
        "Invoice__c",
        json!({"label": "Invoice", "pluralLabel": "Invoices", "nameField": {"type": "Text", "label": "Invoice Name"}}),
    );
    assert_eq!(s, 201, "{b}");
    for (f, meta) in [
        (
            "Amount__c",
            json!({"type": "Number", "precision": 16, "scale": 2, "label": "Amount"}),
        ),
        (
            "Note__c",
            json!({"type": "Text", "length": 80, "label": "Note"}),
        ),
    ] {
        let (s, b) = org.tooling("CustomField", &format!("Invoice__c.{f}"), meta);
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = org.tooling(
        "PlatformEventChannelMember",
        "ChangeEvents_Invoice__ChangeEvent",
        json!({"eventChannel": "ChangeEvents", "selectedEntity": "Invoice__ChangeEvent"}),
    );
    assert_eq!(s, 201, "{b}");
    let id = org.create(
        "Invoice__c",
        json!({"Name": "INV-1", "Amount__c": 10, "Note__c": "first"}),
    );
    let (s, b) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Invoice__c/{id}")),
        Some(json!({"Amount__c": 12.5, "Note__c": null})),
    );
    assert_eq!(s, 204, "{b}");
    runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let topic = "/data/Invoice__ChangeEvent";
        let info = ps
            .client
            .get_topic(ps.req(TopicRequest {
                topic_name: topic.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(!info.can_publish && info.can_subscribe);
        let (_, schema) = ps.schema_of(topic).await;
        let apache_avro::Schema::Record(rec) = &schema else {
            panic!("a record schema")
        };
        let index = |name: &str| rec.fields.iter().position(|f| f.name == name).unwrap();
        assert_eq!(index("ChangeEventHeader"), 0);

        for topic in [topic, "/data/ChangeEvents"] {
            let (_tx, mut stream) = ps
                .subscribe(fetch(topic, ReplayPreset::Earliest, None, 10))
                .await
                .unwrap();
            let (got, _) = events(&mut stream, 2).await;
            let create = decode(&schema, &got[0].2);
            let update = decode(&schema, &got[1].2);
            let header = field(&create, "ChangeEventHeader");
            assert_eq!(field(&header, "changeType"), A::Enum(0, "CREATE".into()));
            assert_eq!(field(&header, "entityName"), A::String("Invoice__c".into()));
            assert_eq!(
                field(&header, "recordIds"),
                A::Array(vec![A::String(id.clone())])
            );
            assert_eq!(field(&header, "changedFields"), A::Array(vec![]));
            assert_eq!(field(&create, "Note__c"), A::String("first".into()));
            let header = field(&update, "ChangeEventHeader");
            assert_eq!(field(&header, "changeType"), A::Enum(1, "UPDATE".into()));
            let bits = |names: &[&str]| {
                let mut n: u128 = 0;
                for f in names {
                    n |= 1 << index(f);
                }
                let width = (128 - n.leading_zeros()).div_ceil(8) as usize * 2;
                format!("0x{n:0width$X}")
            };
            assert_eq!(
                field(&header, "changedFields"),
                A::Array(vec![A::String(bits(&[
                    "Amount__c",
                    "Note__c",
                    "LastModifiedDate"
                ]))])
            );
            assert_eq!(
                field(&header, "nulledFields"),
                A::Array(vec![A::String(bits(&["Note__c"]))])
            );
            assert_eq!(field(&update, "Amount__c"), A::Double(12.5));
            assert_eq!(field(&update, "Note__c"), A::Null);
            assert_eq!(field(&update, "Name"), A::Null, "unchanged fields are null");
        }
    });
}

#[test]
fn acknowledged_pubsub_publishes_survive_kill_9() {
    let data = data_dir("pubsub-kill9");
    let org = Org::start_in(&data, &[], &[]);
    define_event(&org);
    let acked = runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let (schema_id, schema) = ps.schema_of(TOPIC).await;
        let mut acked = Vec::new();
        for k in 0..20 {
            let resp = ps
                .client
                .publish(ps.req(PublishRequest {
                    topic_name: TOPIC.into(),
                    events: vec![ProducerEvent {
                        id: format!("00000000-0000-4000-8000-{k:012}"),
                        schema_id: schema_id.clone(),
                        payload: encode(&schema, &format!("K-{k}"), None),
                        headers: vec![],
                    }],
                    auth_refresh: String::new(),
                }))
                .await
                .unwrap()
                .into_inner();
            acked.push((
                replay(&resp.results[0].replay_id),
                resp.results[0].correlation_key.clone(),
            ));
        }
        acked
    });
    org.srv.kill9();
    let org = Org::start_in(&data, &[], &[]);
    runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let (_tx, mut stream) = ps
            .subscribe(fetch(TOPIC, ReplayPreset::Earliest, None, 100))
            .await
            .unwrap();
        let (got, _) = events(&mut stream, acked.len()).await;
        let got: Vec<(u64, String)> = got.into_iter().map(|(r, id, _)| (r, id)).collect();
        assert_eq!(
            got, acked,
            "every acknowledged event, with its replay id and id"
        );
    });
}

/// Opens a managed subscription stream with its first request.
async fn managed(
    ps: &mut Pubsub,
    first: grpc_api::proto::ManagedFetchRequest,
) -> Result<
    (
        mpsc::Sender<grpc_api::proto::ManagedFetchRequest>,
        Streaming<grpc_api::proto::ManagedFetchResponse>,
    ),
    Status,
> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(first).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let resp = ps.client.managed_subscribe(ps.req(stream)).await?;
    Ok((tx, resp.into_inner()))
}

fn managed_req(name: &str, n: i32) -> grpc_api::proto::ManagedFetchRequest {
    grpc_api::proto::ManagedFetchRequest {
        developer_name: name.into(),
        num_requested: n,
        ..Default::default()
    }
}

/// Receives managed responses until `n` events arrived; returns their replay ids.
async fn managed_events(
    stream: &mut Streaming<grpc_api::proto::ManagedFetchResponse>,
    n: usize,
) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("events in time")
            .expect("stream ok")
            .expect("stream open");
        replay(&resp.latest_replay_id);
        out.extend(resp.events.iter().map(|e| replay(&e.replay_id)));
    }
    out
}

#[test]
fn managed_subscriptions_keep_their_position_across_restarts() {
    let data = data_dir("pubsub-managed");
    let org = Org::start_in(&data, &[], &[]);
    define_event(&org);
    let uuids: Vec<String> = (0..5)
        .map(|k| rest_publish(&org, &format!("M-{k}")))
        .collect();
    assert_eq!(uuids.len(), 5);
    // Tooling: create, read back, query as the Pub/Sub clients do; bad definitions refused.
    let (s, b) = org.tooling(
        "ManagedEventSubscription",
        "Shipping_Feed",
        json!({"label": "Shipping feed", "topicName": TOPIC, "defaultReplay": "EARLIEST", "errorRecoveryReplay": "LATEST", "state": "RUN"}),
    );
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("18x"), "{id}");
    for (name, meta) in [
        ("Shipping_Feed", json!({"topicName": TOPIC})),
        ("Bad__Name", json!({"topicName": TOPIC})),
        ("No_Topic", json!({"topicName": "/event/Nope__e"})),
        (
            "Bad_Replay",
            json!({"topicName": TOPIC, "defaultReplay": "CUSTOM"}),
        ),
    ] {
        let (s, b) = org.tooling("ManagedEventSubscription", name, meta);
        assert_eq!(s, 400, "{name}: {b}");
    }
    let (s, b) = org.call(
        Method::GET,
        &org.data(&format!("/tooling/sobjects/ManagedEventSubscription/{id}")),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Metadata"]["topicName"], TOPIC);
    assert_eq!(b["Metadata"]["state"], "RUN");
    let q = format!(
        "SELECT Id, DeveloperName, Metadata FROM ManagedEventSubscription WHERE Id='{id}' LIMIT 1"
    );
    let url = reqwest::Url::parse_with_params(&org.data("/tooling/query/"), &[("q", q.as_str())])
        .unwrap();
    let (s, b) = org.call(Method::GET, url.as_str(), None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["size"], 1);
    assert_eq!(b["records"][0]["DeveloperName"], "Shipping_Feed");
    assert_eq!(b["records"][0]["Metadata"]["defaultReplay"], "EARLIEST");
    assert!(
        b["records"][0].get("MasterLabel").is_none(),
        "only the selected fields"
    );
    let url = reqwest::Url::parse_with_params(
        &org.data("/tooling/query"),
        &[(
            "q",
            "SELECT Id FROM ManagedEventSubscription WHERE DeveloperName = 'Nope'",
        )],
    )
    .unwrap();
    let (s, b) = org.call(Method::GET, url.as_str(), None);
    assert_eq!((s, b["size"].as_u64()), (200, Some(0)), "{b}");

    let committed = runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        // defaultReplay EARLIEST: the retained events from the start.
        let (tx, mut stream) = managed(&mut ps, managed_req("Shipping_Feed", 3))
            .await
            .unwrap();
        let got = managed_events(&mut stream, 3).await;
        assert_eq!(got.len(), 3);
        // One stream at a time per managed subscription.
        let e = match managed(&mut ps, managed_req("Shipping_Feed", 1)).await {
            Err(e) => e,
            Ok((_t, mut s)) => s.message().await.unwrap_err(),
        };
        assert_eq!(
            error_code(&e),
            "sfdc.platform.eventbus.grpc.managed.subscription.already.active"
        );
        // Commit the second event: the answer comes back in a response of its own.
        tx.send(grpc_api::proto::ManagedFetchRequest {
            commit_replay_id_request: Some(grpc_api::proto::CommitReplayRequest {
                commit_request_id: "commit-1".into(),
                replay_id: got[1].to_be_bytes().to_vec(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        let answer = loop {
            let r = stream.message().await.unwrap().unwrap();
            if let Some(c) = r.commit_response {
                break c;
            }
        };
        assert_eq!(answer.commit_request_id, "commit-1");
        assert!(answer.error.is_none(), "{answer:?}");
        assert_eq!(replay(&answer.replay_id), got[1]);
        // A replay id never given out is refused, the stream goes on.
        tx.send(grpc_api::proto::ManagedFetchRequest {
            commit_replay_id_request: Some(grpc_api::proto::CommitReplayRequest {
                commit_request_id: "commit-2".into(),
                replay_id: (u64::MAX / 2).to_be_bytes().to_vec(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        let answer = loop {
            let r = stream.message().await.unwrap().unwrap();
            if let Some(c) = r.commit_response {
                break c;
            }
        };
        assert!(answer.error.is_some(), "{answer:?}");
        // A commit in the first request, an unknown name: refused.
        let mut bad = managed_req("Shipping_Feed", 1);
        bad.commit_replay_id_request = Some(Default::default());
        let e = managed(&mut ps, bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = managed(&mut ps, managed_req("Nope", 1)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(
            error_code(&e),
            "sfdc.platform.eventbus.grpc.managed.subscription.developer.name.not.found"
        );
        got[1]
    });

    // The committed position is durable: after kill -9 the subscription resumes right after it,
    // by id this time.
    org.srv.kill9();
    let org = Org::start_in(&data, &[], &[]);
    runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let first = grpc_api::proto::ManagedFetchRequest {
            subscription_id: id.clone(),
            num_requested: 10,
            ..Default::default()
        };
        let (_tx, mut stream) = managed(&mut ps, first).await.unwrap();
        let got = managed_events(&mut stream, 3).await;
        assert_eq!(got.len(), 3, "the three events after the commit");
        assert!(got.iter().all(|r| *r > committed));
    });
    // state STOP refuses new streams.
    let (s, b) = org.call(
        Method::PATCH,
        &org.data(&format!("/tooling/sobjects/ManagedEventSubscription/{id}")),
        Some(json!({"Metadata": {"state": "STOP"}})),
    );
    assert_eq!(s, 204, "{b}");
    runtime().block_on(async {
        let mut ps = Pubsub::connect(&org).await;
        let e = match managed(&mut ps, managed_req("Shipping_Feed", 1)).await {
            Err(e) => e,
            Ok((_t, mut s)) => s.message().await.unwrap_err(),
        };
        assert_eq!(
            error_code(&e),
            "sfdc.platform.eventbus.grpc.managed.subscription.config.stopped"
        );
    });
}

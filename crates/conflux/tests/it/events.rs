//! The event bus over the wire: platform events defined through the Tooling API, published
//! through REST and Composite, delivered by the Streaming API (Bayeux long polling) with replay;
//! Bayeux errors; the client cap; `kill -9` between publishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{client, data_dir, Org};

const POST: Method = Method::POST;

/// Defines `name` (a platform event) with a text and a number field.
fn define_event(org: &Org, name: &str, behavior: &str) {
    let (s, b) = org.tooling(
        "CustomObject",
        name,
        json!({"label": name, "pluralLabel": name, "publishBehavior": behavior}),
    );
    assert_eq!(s, 201, "{b}");
    for (field, meta) in [
        (
            "Printer_Model__c",
            json!({"type": "Text", "length": 40, "label": "Printer Model"}),
        ),
        (
            "Ink_Percentage__c",
            json!({"type": "Number", "precision": 16, "scale": 2, "label": "Ink"}),
        ),
    ] {
        let (s, b) = org.tooling("CustomField", &format!("{name}.{field}"), meta);
        assert_eq!(s, 201, "{b}");
    }
}

/// Publishes one event through REST; returns its EventUuid.
fn publish(org: &Org, name: &str, model: &str) -> String {
    let (s, b) = org.call(
        POST,
        &org.data(&format!("/sobjects/{name}")),
        Some(json!({"Printer_Model__c": model, "Ink_Percentage__c": 0.2})),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["success"], true);
    assert_eq!(b["errors"][0]["statusCode"], "OPERATION_ENQUEUED", "{b}");
    assert!(b["id"].as_str().unwrap().starts_with("e00"), "{b}");
    b["errors"][0]["message"].as_str().unwrap().to_string()
}

/// A Bayeux client speaking long polling to `/cometd/59.0`.
pub(crate) struct Bayeux {
    http: reqwest::blocking::Client,
    url: String,
    token: String,
    client_id: String,
    n: u64,
}

impl Bayeux {
    pub(crate) fn new(org: &Org) -> Bayeux {
        Bayeux {
            http: client(),
            url: org.url("/cometd/59.0"),
            token: org.token.clone(),
            client_id: String::new(),
            n: 0,
        }
    }

    fn post(&self, body: Value) -> (u16, Vec<Value>) {
        let resp = self
            .http
            .post(&self.url)
            .header("Authorization", format!("OAuth {}", self.token))
            .json(&body)
            .send()
            .expect("cometd request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("application/json"), "content type {ct}");
        let v: Value = resp.json().expect("JSON reply");
        (status, v.as_array().expect("a JSON array").clone())
    }

    fn next_id(&mut self) -> String {
        self.n += 1;
        self.n.to_string()
    }

    pub(crate) fn handshake(&mut self) -> Value {
        let id = self.next_id();
        let (s, replies) = self.post(json!([{"channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["websocket", "long-polling"], "id": id}]));
        assert_eq!(s, 200);
        let r = replies[0].clone();
        assert_eq!(r["successful"], true, "{r}");
        assert_eq!(
            r["id"],
            json!(id),
            "the id is echoed as the same JSON string"
        );
        self.client_id = r["clientId"].as_str().unwrap().to_string();
        r
    }

    pub(crate) fn subscribe(&mut self, channel: &str, replay: Option<i64>) -> Value {
        let id = self.next_id();
        let mut m = json!({"channel": "/meta/subscribe", "clientId": self.client_id,
            "subscription": channel, "id": id});
        if let Some(r) = replay {
            m["ext"] = json!({"replay": {channel: r}});
        }
        let (s, replies) = self.post(json!([m]));
        assert_eq!(s, 200);
        replies[0].clone()
    }

    /// One connect; returns the data messages and the connect reply.
    pub(crate) fn connect(&mut self, immediate: bool) -> (Vec<Value>, Value) {
        let id = self.next_id();
        let mut m = json!({"channel": "/meta/connect", "clientId": self.client_id,
            "connectionType": "long-polling", "id": id});
        if immediate {
            m["advice"] = json!({"timeout": 0});
        }
        let (s, mut replies) = self.post(json!([m]));
        assert_eq!(s, 200);
        let reply = replies.pop().expect("a connect reply");
        assert_eq!(reply["channel"], "/meta/connect", "{reply}");
        (replies, reply)
    }

    /// Connects until `n` data messages arrived.
    pub(crate) fn receive(&mut self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        while got.len() < n {
            let (data, reply) = self.connect(false);
            assert_eq!(reply["successful"], true, "{reply}");
            got.extend(data);
        }
        assert_eq!(got.len(), n, "more messages than expected: {got:?}");
        got
    }
}

/// A Bayeux error with a code faye can read: `NNN::message`, the message in faye's grammar.
pub(crate) fn assert_bayeux_error(reply: &Value, code: &str) {
    assert_eq!(reply["successful"], false, "{reply}");
    let e = reply["error"].as_str().expect("an error string");
    let (c, msg) = e.split_once("::").expect("NNN::message");
    assert_eq!(c, code, "{reply}");
    assert!(
        msg.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || " -_!~()$@/*.".contains(ch)),
        "faye cannot parse {e:?}"
    );
}

pub(crate) fn replay_id(m: &Value) -> u64 {
    m["data"]["event"]["replayId"].as_u64().expect("replayId")
}

#[test]
fn platform_events_are_published_and_streamed_with_replay() {
    let org = Org::start("events-pe");
    define_event(&org, "Low_Ink__e", "PublishImmediately");
    // Describe knows the event and its standard fields; it is not queryable.
    let (s, d) = org.call(
        Method::GET,
        &org.data("/sobjects/Low_Ink__e/describe"),
        None,
    );
    assert_eq!(s, 200, "{d}");
    let names: Vec<&str> = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for f in [
        "ReplayId",
        "CreatedDate",
        "CreatedById",
        "EventUuid",
        "Printer_Model__c",
    ] {
        assert!(names.contains(&f), "{f} in {names:?}");
    }
    assert_eq!(d["queryable"], false);
    // Events are not records: no record resource of an event type exists (even for an id with
    // the event type's own key prefix), and SOQL does not know the type.
    let prefix = d["keyPrefix"].as_str().unwrap().to_string();
    let fake = format!("{prefix}000000000001AAA");
    for (m, path) in [
        (Method::GET, format!("/sobjects/Low_Ink__e/{fake}")),
        (Method::PATCH, format!("/sobjects/Low_Ink__e/{fake}")),
        (Method::DELETE, format!("/sobjects/Low_Ink__e/{fake}")),
        (
            Method::GET,
            "/sobjects/Low_Ink__e/Printer_Model__c/x".to_string(),
        ),
        (
            Method::GET,
            "/sobjects/Low_Ink__e/updated?start=2026-01-01T00:00:00Z&end=2026-12-01T00:00:00Z"
                .to_string(),
        ),
    ] {
        let body = (m == Method::PATCH).then(|| json!({}));
        let (s, b) = org.call(m.clone(), &org.data(&path), body);
        assert_eq!(s, 404, "{m} {path}: {b}");
        assert_eq!(b[0]["errorCode"], "NOT_FOUND", "{b}");
    }
    let (s, _) = org.call(
        Method::GET,
        &org.query_url("query", "SELECT Id FROM Low_Ink__e"),
        None,
    );
    assert_eq!(s, 400);
    let (s, b) = org.call(
        Method::GET,
        &org.data(&format!(
            "/composite/sobjects/Low_Ink__e?ids={fake}&fields=ReplayId"
        )),
        None,
    );
    assert!(s == 200 || s == 404, "{s} {b}");
    if s == 200 {
        assert_eq!(b[0], Value::Null, "{b}");
    }

    let uuids: Vec<String> = (0..3)
        .map(|k| publish(&org, "Low_Ink__e", &format!("XZO-{k}")))
        .collect();

    // -2 replays the retained log, in order, with the payload as published.
    let mut all = Bayeux::new(&org);
    let hs = all.handshake();
    assert_eq!(hs["supportedConnectionTypes"], json!(["long-polling"]));
    assert_eq!(hs["ext"]["replay"], true);
    let r = all.subscribe("/event/Low_Ink__e", Some(-2));
    assert_eq!(r["successful"], true, "{r}");
    assert_eq!(r["subscription"], "/event/Low_Ink__e");
    let got = all.receive(3);
    let mut last = 0;
    for (k, m) in got.iter().enumerate() {
        assert_eq!(m["channel"], "/event/Low_Ink__e");
        let p = &m["data"]["payload"];
        assert_eq!(p["Printer_Model__c"], format!("XZO-{k}"), "{m}");
        assert_eq!(p["Ink_Percentage__c"], 0.2);
        assert!(p["CreatedDate"].as_str().unwrap().ends_with('Z'), "{m}");
        assert!(p["CreatedById"].as_str().unwrap().starts_with("005"), "{m}");
        assert_eq!(m["data"]["event"]["EventUuid"], uuids[k], "{m}");
        assert!(m["data"]["schema"].as_str().unwrap().len() >= 20, "{m}");
        let id = replay_id(m);
        assert!(id > last, "replay ids increase: {got:?}");
        last = id;
    }
    let first_id = replay_id(&got[0]);

    // The schema named by delivered events is served over REST, by type and by id.
    let schema_id = got[0]["data"]["schema"].as_str().unwrap().to_string();
    let (s, by_type) = org.call(
        Method::GET,
        &org.data("/sobjects/Low_Ink__e/eventSchema"),
        None,
    );
    assert_eq!(s, 200, "{by_type}");
    assert_eq!(by_type["uuid"], schema_id);
    assert_eq!(by_type["name"], "Low_Ink__e");
    assert_eq!(by_type["namespace"], "com.sforce.eventbus");
    let fields: Vec<&str> = by_type["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "CreatedDate",
            "CreatedById",
            "Printer_Model__c",
            "Ink_Percentage__c"
        ]
    );
    assert_eq!(by_type["fields"][3]["type"], json!(["null", "double"]));
    let (s, by_id) = org.call(
        Method::GET,
        &org.data(&format!("/event/eventSchema/{schema_id}")),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(by_id, by_type);
    let (s, _) = org.call(Method::GET, &org.data("/event/eventSchema/nope"), None);
    assert_eq!(s, 404);

    // -1: only what comes after the subscription; a held connect returns when it arrives.
    let mut fresh = Bayeux::new(&org);
    fresh.handshake();
    assert_eq!(
        fresh.subscribe("/event/Low_Ink__e", Some(-1))["successful"],
        true
    );
    let (data, reply) = fresh.connect(true);
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(reply["advice"]["timeout"], 110000, "{reply}");
    assert_eq!(reply["advice"]["reconnect"], "retry");
    let waiter = std::thread::spawn(move || {
        let got = fresh.receive(1);
        (fresh, got)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let live = publish(&org, "Low_Ink__e", "LIVE");
    let (_, got) = waiter.join().unwrap();
    assert_eq!(got[0]["data"]["event"]["EventUuid"], live);
    assert!(replay_id(&got[0]) > last);

    // A subscription made while the client's connect is held is served by that connect.
    let mut late = Bayeux::new(&org);
    late.handshake();
    let (data, _) = late.connect(true);
    assert!(data.is_empty());
    let mut held = Bayeux {
        http: client(),
        url: late.url.clone(),
        token: late.token.clone(),
        client_id: late.client_id.clone(),
        n: 100,
    };
    // One connect: it must return the event, not the hold's end.
    let waiter = std::thread::spawn(move || held.connect(false).0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        late.subscribe("/event/Low_Ink__e", Some(-1))["successful"],
        true
    );
    let late_uuid = publish(&org, "Low_Ink__e", "LATE");
    let got_late = waiter.join().unwrap();
    assert_eq!(got_late.len(), 1, "{got_late:?}");
    assert_eq!(got_late[0]["data"]["event"]["EventUuid"], late_uuid);

    // A client that resubscribes with its last replay id gets exactly what it missed.
    let mut again = Bayeux::new(&org);
    again.handshake();
    assert_eq!(
        again.subscribe("/event/Low_Ink__e", Some(first_id as i64))["successful"],
        true
    );
    let missed = again.receive(4);
    let models: Vec<&str> = missed
        .iter()
        .map(|m| m["data"]["payload"]["Printer_Model__c"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["XZO-1", "XZO-2", "LIVE", "LATE"]);
    let (extra, _) = again.connect(true);
    assert!(extra.is_empty(), "nothing twice: {extra:?}");

    // A replay id the log cannot serve fails the subscribe with a 400.
    let mut bad = Bayeux::new(&org);
    bad.handshake();
    let r = bad.subscribe("/event/Low_Ink__e", Some(999_999_999));
    assert_bayeux_error(&r, "400");
}

#[test]
fn bayeux_errors_are_shaped_as_salesforce_shapes_them() {
    let org = Org::start_in(
        &data_dir("events-errors"),
        &[],
        &["--streaming-max-clients", "3"],
    );
    define_event(&org, "Alert__e", "PublishImmediately");
    let mut c = Bayeux::new(&org);
    // Numeric ids are echoed as numbers.
    let (_, r) = c.post(json!({"channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["long-polling"], "id": 7}));
    assert_eq!(r[0]["id"], json!(7));
    c.client_id = r[0]["clientId"].as_str().unwrap().to_string();
    // Only websocket offered: refused.
    let (_, r) = c.post(json!([{"channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["websocket"], "id": "w"}]));
    assert_bayeux_error(&r[0], "400");

    for channel in [
        "/event/Nope__e",
        "/event/alert__e",
        "event/Alert__e",
        "",
        "/topic/x",
    ] {
        let r = c.subscribe(channel, None);
        assert_bayeux_error(&r, "400");
    }
    // Unknown client: re-handshake advice.
    let (_, r) = c.post(json!([{"channel": "/meta/connect", "clientId": "nobody",
        "connectionType": "long-polling", "id": "x"}]));
    assert_bayeux_error(&r[0], "403");
    assert_eq!(r[0]["error"], "403::Unknown client");
    assert_eq!(r[0]["advice"]["reconnect"], "handshake");
    // Publishing over CometD is refused.
    let (_, r) = c.post(
        json!([{"channel": "/event/Alert__e", "clientId": c.client_id,
        "data": {"x": 1}, "id": "p"}]),
    );
    assert_bayeux_error(&r[0], "403");
    // No or a bad token: refused with reconnect none.
    let http = client();
    let v: Value = http
        .post(org.url("/cometd/59.0"))
        .json(&json!([{"channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["long-polling"], "id": "1"}]))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v[0]["error"], "403::Handshake denied", "{v}");
    assert_eq!(
        v[0]["ext"]["sfdc"]["failureReason"],
        "401::Request requires authentication"
    );
    assert_eq!(v[0]["advice"]["reconnect"], "none");
    let v: Value = http
        .post(org.url("/cometd/59.0"))
        .bearer_auth("00Dxx0000000001!nonsense")
        .json(
            &json!([{"channel": "/meta/connect", "clientId": c.client_id,
            "connectionType": "long-polling", "id": "2"}]),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v[0]["error"], "401::Authentication invalid", "{v}");
    assert_eq!(v[0]["advice"]["reconnect"], "none");
    // After logout the session's client gets 401 too.
    // Transport-level refusals: WebSocket probes, old versions, oversized bodies, bad JSON.
    let s = http
        .get(org.url("/cometd/59.0"))
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_ne!(s, 101);
    assert_eq!(s, 400);
    let s = http
        .post(org.url("/cometd/36.0"))
        .bearer_auth(&org.token)
        .body("[]")
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 400);
    let s = http
        .post(org.url("/cometd/59.0"))
        .bearer_auth(&org.token)
        .body(vec![b' '; 40_000])
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 413);
    let s = http
        .post(org.url("/cometd/59.0"))
        .bearer_auth(&org.token)
        .body("{not json")
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 400);
    // The client cap: three clients fit, the fourth is denied; a disconnect frees a place.
    let mut others: Vec<Bayeux> = (0..2)
        .map(|_| {
            let mut b = Bayeux::new(&org);
            b.handshake();
            b
        })
        .collect();
    let mut extra = Bayeux::new(&org);
    let (_, r) = extra.post(json!([{"channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["long-polling"], "id": "1"}]));
    assert_eq!(r[0]["error"], "403::Handshake denied", "{}", r[0]);
    assert!(r[0]["ext"]["sfdc"]["failureReason"]
        .as_str()
        .unwrap()
        .starts_with("403::"));
    let gone = others.pop().unwrap();
    let (_, r) =
        gone.post(json!([{"channel": "/meta/disconnect", "clientId": gone.client_id, "id": "d"}]));
    assert_eq!(r[0]["successful"], true, "{}", r[0]);
    extra.handshake();
}

#[test]
fn publish_after_commit_events_roll_back_with_their_transaction() {
    let org = Org::start("events-tx");
    define_event(&org, "After__e", "PublishAfterCommit");
    define_event(&org, "Now__e", "PublishImmediately");
    let mut sub = Bayeux::new(&org);
    sub.handshake();
    assert_eq!(
        sub.subscribe("/event/After__e", Some(-1))["successful"],
        true
    );
    assert_eq!(sub.subscribe("/event/Now__e", Some(-1))["successful"], true);
    let base = format!("/services/data/{}", crate::harness::V);
    let body = |model: &str, fail: bool| {
        json!({"allOrNone": true, "compositeRequest": [
            {"method": "POST", "url": format!("{base}/sobjects/After__e"), "referenceId": "a",
             "body": {"Printer_Model__c": model}},
            {"method": "POST", "url": format!("{base}/sobjects/Now__e"), "referenceId": "n",
             "body": {"Printer_Model__c": model}},
            {"method": "POST", "url": format!("{base}/sobjects/Account"), "referenceId": "x",
             "body": if fail { json!({"Nope__c": 1}) } else { json!({"Name": "ok"}) }}
        ]})
    };
    let (s, b) = org.call(
        POST,
        &org.data("/composite"),
        Some(body("rolled-back", true)),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["compositeResponse"][2]["httpStatusCode"], 400, "{b}");
    let (s, b) = org.call(
        POST,
        &org.data("/composite"),
        Some(body("committed", false)),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["compositeResponse"][0]["httpStatusCode"], 201, "{b}");
    assert_eq!(
        b["compositeResponse"][0]["body"]["errors"][0]["statusCode"],
        "OPERATION_ENQUEUED"
    );
    let got = sub.receive(3);
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap().to_string(),
                m["data"]["payload"]["Printer_Model__c"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    // The publish-immediately event of the rolled-back request is delivered; the
    // publish-after-commit one is not.
    assert!(
        seen.contains(&("/event/Now__e".into(), "rolled-back".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("/event/Now__e".into(), "committed".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("/event/After__e".into(), "committed".into())),
        "{seen:?}"
    );
    assert!(
        !seen.contains(&("/event/After__e".into(), "rolled-back".into())),
        "{seen:?}"
    );
    // sObject collections publish too.
    let (s, b) = org.call(
        POST,
        &org.data("/composite/sobjects"),
        Some(json!({"allOrNone": false, "records": [
            {"attributes": {"type": "After__e"}, "Printer_Model__c": "c1"},
            {"attributes": {"type": "After__e"}, "Printer_Model__c": "c2"}
        ]})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[1]["errors"][0]["statusCode"], "OPERATION_ENQUEUED", "{b}");
    let got = sub.receive(2);
    assert_eq!(got[0]["data"]["payload"]["Printer_Model__c"], "c1");
    assert_eq!(got[1]["data"]["payload"]["Printer_Model__c"], "c2");
}

#[test]
fn acknowledged_events_survive_kill_9_with_their_replay_ids() {
    let data = data_dir("events-kill9");
    // Defined in the metadata folder this time (applied at every start, idempotently).
    let objects = data.join("metadata/objects");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(
        objects.join("Tick__e.yaml"),
        "label: Tick\npluralLabel: Ticks\npublishBehavior: PublishAfterCommit\nfields:\n  - fullName: Printer_Model__c\n    type: Text\n    length: 40\n  - fullName: Ink_Percentage__c\n    type: Number\n    precision: 16\n    scale: 2\n",
    )
    .unwrap();
    let org = Org::start_in(&data, &[], &[]);
    // A subscriber records the replay id each event was delivered with before the crash.
    let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut sub = Bayeux::new(&org);
    sub.handshake();
    assert_eq!(
        sub.subscribe("/event/Tick__e", Some(-1))["successful"],
        true
    );
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let id = sub.next_id();
                let Ok(resp) = sub
                    .http
                    .post(&sub.url)
                    .bearer_auth(&sub.token)
                    .json(
                        &json!([{"channel": "/meta/connect", "clientId": sub.client_id,
                        "connectionType": "long-polling", "id": id}]),
                    )
                    .send()
                else {
                    break;
                };
                let Ok(Value::Array(msgs)) = resp.json::<Value>() else {
                    break;
                };
                for m in msgs.iter().filter(|m| m["data"].is_object()) {
                    let uuid = m["data"]["event"]["EventUuid"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    seen.lock().unwrap().insert(uuid, replay_id(m));
                }
            }
        })
    };
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut publishers = Vec::new();
    for w in 0..4 {
        let (acked, stop, url, token) = (
            acked.clone(),
            stop.clone(),
            org.data("/sobjects/Tick__e"),
            org.token.clone(),
        );
        publishers.push(std::thread::spawn(move || {
            let http = client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let Ok(resp) = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"Printer_Model__c": format!("w{w}-{n}")}))
                    .send()
                else {
                    break;
                };
                if resp.status().as_u16() == 201 {
                    if let Ok(b) = resp.json::<Value>() {
                        let uuid = b["errors"][0]["message"].as_str().unwrap().to_string();
                        acked.lock().unwrap().push(uuid);
                    }
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 200 || seen.lock().unwrap().len() < 50 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let Org { srv, .. } = org;
    srv.kill9();
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        let _ = p.join();
    }
    let _ = watcher.join();
    let acked = acked.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();

    let org = Org::start_in(&data, &[], &[]);
    let mut all = Bayeux::new(&org);
    all.handshake();
    assert_eq!(
        all.subscribe("/event/Tick__e", Some(-2))["successful"],
        true
    );
    let mut after: HashMap<String, u64> = HashMap::new();
    let mut last = 0;
    loop {
        let (data, _) = all.connect(true);
        if data.is_empty() {
            break;
        }
        for m in &data {
            let id = replay_id(m);
            assert!(id > last, "replay ids strictly increase");
            last = id;
            let uuid = m["data"]["event"]["EventUuid"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(after.insert(uuid, id).is_none(), "each event once");
        }
    }
    for uuid in &acked {
        assert!(after.contains_key(uuid), "acknowledged event {uuid} lost");
    }
    for (uuid, id) in &seen {
        assert_eq!(after.get(uuid), Some(id), "{uuid} kept its replay id");
    }
    // New events continue the sequence.
    publish(&org, "Tick__e", "after-restart");
    let (data, _) = all.connect(false);
    assert_eq!(data.len(), 1);
    assert!(replay_id(&data[0]) > last);
}

#[test]
fn bulk_api_insert_jobs_publish_platform_events() {
    let org = Org::start("events-bulk");
    define_event(&org, "Bulk_Ink__e", "PublishAfterCommit");
    let mut csv = String::from("Printer_Model__c,Ink_Percentage__c\n");
    for k in 0..250 {
        csv.push_str(&format!("BULK-{k},0.{}\n", k % 10));
    }
    csv.push_str("BAD,not-a-number\n");
    let info = org.ingest(
        json!({"object": "Bulk_Ink__e", "operation": "insert"}),
        &csv,
    );
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 251, "{info}");
    assert_eq!(info["numberRecordsFailed"], 1, "{info}");
    let ok = org.results(info["id"].as_str().unwrap(), "successfulResults");
    assert_eq!(ok.text.lines().count(), 251, "{}", ok.text);
    let first = ok.text.lines().nth(1).unwrap();
    assert!(first.contains("BULK-0"), "{}", ok.text);
    // Every published row arrives, in row order.
    let mut sub = Bayeux::new(&org);
    sub.handshake();
    assert_eq!(
        sub.subscribe("/event/Bulk_Ink__e", Some(-2))["successful"],
        true
    );
    let got = sub.receive(250);
    for (k, m) in got.iter().enumerate() {
        assert_eq!(
            m["data"]["payload"]["Printer_Model__c"],
            format!("BULK-{k}")
        );
    }
    // Only inserts apply to events.
    let r = org.send(
        Method::POST,
        &org.data("/jobs/ingest"),
        &[("Content-Type", "application/json")],
        Some(
            json!({"object": "Bulk_Ink__e", "operation": "upsert", "externalIdFieldName": "Printer_Model__c"})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(r.status, 404, "{}", r.text);
}

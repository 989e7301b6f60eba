//! Flows and the delivery queue end to end: flow files in the metadata folder, before-save field
//! updates, Outbound Messages and signed webhooks to a real HTTP receiver that fails, hangs and
//! recovers, the dead-letter queue and its operator API, and `kill -9` with queued notifications.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::harness::{data_dir, Org};

/// How the receiver answers a path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// 200 with a SOAP `Ack` (webhooks ignore the body).
    Ok,
    /// 500 with a short body.
    Fail,
    /// Never answers (until the mode changes).
    Hang,
    /// Answers like `Ok` after 100 ms (requests sent together are answered together).
    Slow,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
    answered: Mode,
    /// More of the client's bytes had arrived behind this request when it was read (it was
    /// pipelined).
    behind: bool,
}

/// A real HTTP/1.1 receiver on loopback: one thread per connection, `Connection: close`
/// (or, started with `start_keep_alive`, answering a connection's requests in turn, pipelined
/// ones included; or, started with `start_dropping_pipelined`, keeping connections alive but
/// dropping whatever arrived behind the request it answers, as servers that do not handle
/// pipelining do).
#[derive(Clone)]
struct Receiver {
    addr: String,
    keep_alive: bool,
    drops_behind: bool,
    /// Connections accepted.
    connections: Arc<std::sync::atomic::AtomicUsize>,
    modes: Arc<Mutex<HashMap<String, Mode>>>,
    bodies: Arc<Mutex<HashMap<String, String>>>,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    /// Requests being answered now, and the most there ever were at once.
    answering: Arc<Mutex<(usize, usize)>>,
}

impl Receiver {
    fn start_on(listener: TcpListener) -> Receiver {
        Receiver::serving(listener, false, false)
    }

    fn start_keep_alive() -> Receiver {
        Receiver::serving(TcpListener::bind("127.0.0.1:0").unwrap(), true, false)
    }

    fn start_dropping_pipelined() -> Receiver {
        Receiver::serving(TcpListener::bind("127.0.0.1:0").unwrap(), true, true)
    }

    fn serving(listener: TcpListener, keep_alive: bool, drops_behind: bool) -> Receiver {
        let r = Receiver {
            addr: format!("http://{}", listener.local_addr().unwrap()),
            keep_alive,
            drops_behind,
            connections: Arc::default(),
            modes: Arc::default(),
            bodies: Arc::default(),
            got: Arc::default(),
            stop: Arc::default(),
            answering: Arc::default(),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if me.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                me.connections.fetch_add(1, Ordering::Relaxed);
                let me = me.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    while me.serve(&mut reader, &conn) && me.keep_alive {
                        if me.drops_behind {
                            let behind = reader.buffer().len();
                            reader.consume(behind);
                        }
                    }
                });
            }
        });
        r
    }

    fn start() -> Receiver {
        Receiver::start_on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn set(&self, path: &str, mode: Mode) {
        self.modes.lock().unwrap().insert(path.to_string(), mode);
    }

    /// Answers `path` with `body` (when its mode is Ok) instead of a SOAP Ack.
    fn reply(&self, path: &str, body: &str) {
        self.bodies
            .lock()
            .unwrap()
            .insert(path.to_string(), body.to_string());
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.addr)
    }

    fn received(&self, path: &str, answered: Mode) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path && r.answered == answered)
            .cloned()
            .collect()
    }

    /// Reads one request from `reader` and answers it on `conn`: whether it did.
    fn serve(&self, reader: &mut BufReader<TcpStream>, mut conn: &TcpStream) -> bool {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let method = line.split_whitespace().next().unwrap_or("").to_string();
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return false;
        }
        let behind = !reader.buffer().is_empty();
        let mode = self
            .modes
            .lock()
            .unwrap()
            .get(&path)
            .copied()
            .unwrap_or(Mode::Ok);
        let custom = self.bodies.lock().unwrap().get(&path).cloned();
        self.got.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            answered: mode,
            behind,
        });
        if mode == Mode::Slow {
            {
                let mut a = self.answering.lock().unwrap();
                a.0 += 1;
                a.1 = a.1.max(a.0);
            }
            std::thread::sleep(Duration::from_millis(100));
            self.answering.lock().unwrap().0 -= 1;
        }
        let reply = match mode {
            Mode::Ok | Mode::Slow if custom.is_some() => custom.unwrap(),
            Mode::Ok | Mode::Slow => "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><notificationsResponse xmlns=\"http://soap.sforce.com/2005/09/outbound\"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>".to_string(),
            Mode::Fail => "database unavailable".to_string(),
            Mode::Hang => {
                std::thread::sleep(Duration::from_secs(30));
                return false;
            }
        };
        let status = if matches!(mode, Mode::Ok | Mode::Slow) {
            "200 OK"
        } else {
            "500 Internal Server Error"
        };
        let close = if self.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n{close}\r\n{reply}",
            reply.len()
        )
        .is_ok()
    }
}

/// Waits up to 60 s for `f` to hold.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every `<Notification>`'s (notification id, record id) in an Outbound Message.
fn notifications(xml: &str) -> Vec<(String, String)> {
    xml.split("<Notification>")
        .skip(1)
        .map(|n| {
            let id = n
                .split("<Id>")
                .nth(1)
                .unwrap()
                .split("</Id>")
                .next()
                .unwrap();
            let rec = n
                .split("<sf:Id>")
                .nth(1)
                .unwrap()
                .split("</sf:Id>")
                .next()
                .unwrap();
            (id.to_string(), rec.to_string())
        })
        .collect()
}

fn write_flow(data: &std::path::Path, name: &str, yaml: &str) {
    let dir = data.join("metadata/flows");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
}

/// Creates `batches` × `per` Accounts through collections (names starting with `prefix`):
/// their ids.
fn create_accounts(org: &Org, batches: usize, per: usize, prefix: &str) -> HashSet<String> {
    let mut created = HashSet::new();
    for batch in 0..batches {
        let records: Vec<Value> = (0..per)
            .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("{prefix}{batch}-{i}")}))
            .collect();
        for r in org.collection(Method::POST, records).as_array().unwrap() {
            assert_eq!(r["success"], true, "{r}");
            created.insert(r["id"].as_str().unwrap().to_string());
        }
    }
    created
}

/// The record ids in webhook bodies of the form `{id: …}`.
fn webhook_record_ids(got: &[Received]) -> HashSet<String> {
    got.iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn deliveries(org: &Org, query: &str) -> Vec<Value> {
    let (s, b) = org.call(
        Method::GET,
        &org.data(&format!("/conflux/deliveries?{query}")),
        None,
    );
    assert_eq!(s, 200, "{b}");
    b["deliveries"].as_array().unwrap().clone()
}

#[test]
fn outbound_messages_and_webhooks_reach_a_receiver_that_recovers_with_stable_ids() {
    let rx = Receiver::start();
    rx.set("/om", Mode::Fail);
    let data = data_dir("flows-om");
    write_flow(
        &data,
        "account_hot",
        &format!(
            r#"name: Account_Hot
object: Account
on: [create, update]
condition: '$new.Rating == "Hot" and $old.Rating != "Hot"'
actions:
  - type: outbound_message
    name: Hot_Account_To_ERP
    endpoint: {om}
    fields: [Id, Name, Rating, Phone]
  - type: webhook
    name: Hot_Account_Hook
    url: {hook}
    secret: s3cret
    body: '{{id: $new.Id, name: $new.Name, was: $old.Rating}}'
"#,
            om = rx.url("/om"),
            hook = rx.url("/hook")
        ),
    );
    write_flow(
        &data,
        "account_describe",
        r#"name: Account_Describe
object: Account
timing: before_save
condition: '.Description == null'
actions:
  - type: update_fields
    fields:
      Description: '"flow saw " + .Name'
"#,
    );
    let org = Org::start_in(
        &data,
        &[],
        &[
            "--delivery-retry-base-ms",
            "200",
            "--delivery-retry-cap-ms",
            "400",
        ],
    );

    // Before-save: the record is written with the flow's value, in the same request.
    let cold = org.create("Account", json!({"Name": "Cold One", "Rating": "Cold"}));
    let (_, rec) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Account/{cold}")),
        None,
    );
    assert_eq!(rec["Description"], "flow saw Cold One");
    let mine = org.create("Account", json!({"Name": "Kept", "Description": "mine"}));
    let (_, rec) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Account/{mine}")),
        None,
    );
    assert_eq!(rec["Description"], "mine", "the condition keeps it");

    // After-save: a change into "Hot" queues both actions; other changes queue nothing.
    let (s, b) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{cold}")),
        Some(json!({"Rating": "Hot"})),
    );
    assert_eq!(s, 204, "{b}");
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{cold}")),
        Some(json!({"Phone": "555"})),
    );
    assert_eq!(s, 204, "already Hot: the condition does not hold again");
    let mut hot = vec![cold.clone()];
    for i in 0..3 {
        hot.push(org.create(
            "Account",
            json!({"Name": format!("Hot {i}"), "Rating": "Hot"}),
        ));
    }
    // A rolled-back transaction queues nothing.
    let (s, b) = org.call(
        Method::POST,
        &org.data("/composite"),
        Some(json!({"allOrNone": true, "compositeRequest": [
            {"method": "POST", "url": format!("/services/data/{}/sobjects/Account", crate::harness::V),
             "referenceId": "a", "body": {"Name": "Rolled Back", "Rating": "Hot"}},
            {"method": "POST", "url": format!("/services/data/{}/sobjects/Account", crate::harness::V),
             "referenceId": "b", "body": {"Rating": "Hot"}}
        ]})),
    );
    assert_eq!(s, 200, "{b}");

    // Webhooks arrive signed, with the notification id as idempotency key.
    eventually("4 webhooks", || rx.received("/hook", Mode::Ok).len() >= 4);
    let hooks = rx.received("/hook", Mode::Ok);
    let mut hook_records = HashSet::new();
    for h in &hooks {
        let body: Value = serde_json::from_str(&h.body).unwrap();
        hook_records.insert(body["id"].as_str().unwrap().to_string());
        assert_ne!(body["name"], "Rolled Back");
        let key = &h.headers["idempotency-key"];
        assert!(key.starts_with("04l") && key.len() == 18, "{key}");
        let sig = &h.headers["x-conflux-signature"];
        let (t, v1) = sig
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .expect("signature shape");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("{t}.{}", h.body).as_bytes());
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, want, "the signature covers timestamp and body");
        assert_eq!(h.headers["content-type"], "application/json");
    }
    assert_eq!(hook_records, hot.iter().cloned().collect::<HashSet<_>>());
    let first: Value =
        serde_json::from_str(&hooks.iter().find(|h| h.body.contains(&cold)).unwrap().body).unwrap();
    assert_eq!(first["was"], "Cold", "$old is the state before the update");

    // The Outbound Messages fail: they wait in the queue with the reason, and are retried.
    eventually("failed outbound messages", || {
        rx.received("/om", Mode::Fail).len() >= 2
    });
    let failed = deliveries(&org, "state=failed");
    assert!(!failed.is_empty());
    for d in &failed {
        assert_eq!(d["kind"], "outbound");
        assert!(d["attempts"].as_u64().unwrap() >= 1);
        assert!(
            d["lastError"]
                .as_str()
                .unwrap()
                .contains("HTTP 500: database unavailable"),
            "{d}"
        );
    }
    let queued_ids: HashSet<String> = deliveries(&org, "state=all")
        .iter()
        .filter(|d| d["kind"] == "outbound")
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(queued_ids.len(), 4, "one notification per record change");
    // The record changes while its message waits: the latest state is sent.
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{}", hot[1])),
        Some(json!({"Name": "Renamed While Queued"})),
    );
    assert_eq!(s, 204);

    rx.set("/om", Mode::Ok);
    eventually("every notification acknowledged", || {
        let got: HashSet<String> = rx
            .received("/om", Mode::Ok)
            .iter()
            .flat_map(|r| notifications(&r.body))
            .map(|(id, _)| id)
            .collect();
        got == queued_ids
    });
    // Ids were the same on every attempt.
    for failed in rx.received("/om", Mode::Fail) {
        for (id, _) in notifications(&failed.body) {
            assert!(
                queued_ids.contains(&id),
                "{id} was retried under another id"
            );
        }
    }
    let acked = rx.received("/om", Mode::Ok);
    let all: String = acked.iter().map(|r| r.body.clone()).collect();
    assert!(all.contains("<sf:Name>Renamed While Queued</sf:Name>"));
    assert!(
        all.contains(r#"<sf:Phone xsi:nil="true"/>"#) || all.contains("<sf:Phone>555</sf:Phone>")
    );
    // Session tokens start with the 15-character org id.
    assert!(all.contains(&format!("<OrganizationId>{}", &org.token[..15])));
    assert!(all.contains("<ActionId>04k"));
    assert!(!all.contains("Rolled Back"));
    eventually("an empty queue", || {
        deliveries(&org, "state=all").is_empty()
    });
    // The console's charts count the 8 deliveries (4 webhooks, 4 notifications) with their
    // latency from queueing to acknowledgement; no sample without deliveries has a latency.
    eventually("8 deliveries in the activity samples", || {
        let (s, b) = org.call(Method::GET, &org.data("/conflux/metrics"), None);
        assert_eq!(s, 200, "{b}");
        let samples = b["samples"].as_array().unwrap().clone();
        for m in &samples {
            let n = m["delivered"].as_u64().unwrap();
            let (p50, p95) = (&m["deliveryLatencyP50Ms"], &m["deliveryLatencyP95Ms"]);
            if n == 0 {
                assert!(p50.is_null() && p95.is_null(), "{m}");
            } else {
                assert!(p50.as_u64().unwrap() <= p95.as_u64().unwrap(), "{m}");
            }
        }
        samples
            .iter()
            .map(|m| m["delivered"].as_u64().unwrap())
            .sum::<u64>()
            >= 8
    });
}

#[test]
fn an_endpoint_never_has_more_messages_in_flight_than_its_concurrency() {
    let rx = Receiver::start();
    rx.set("/slow", Mode::Slow);
    let data = data_dir("flows-concurrency");
    write_flow(
        &data,
        "slow",
        &format!(
            "name: Slow_Hook\nobject: Account\non: [create]\nactions:\n  - type: webhook\n    name: Slow\n    url: {}\n",
            rx.url("/slow")
        ),
    );
    let org = Org::start_in(&data, &[], &["--delivery-concurrency", "3"]);
    let records: Vec<Value> = (0..12)
        .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("Slow {i}")}))
        .collect();
    org.collection(Method::POST, records);
    eventually("12 webhooks", || {
        rx.received("/slow", Mode::Slow).len() >= 12
    });
    let most = rx.answering.lock().unwrap().1;
    assert!(
        (2..=3).contains(&most),
        "{most} webhooks in flight at once with --delivery-concurrency 3"
    );
    eventually("an empty queue", || {
        deliveries(&org, "state=all").is_empty()
    });
}

#[test]
fn pipelined_webhooks_each_arrive_once_whether_the_receiver_handles_pipelining_or_not() {
    // One receiver answers every request of a connection in turn (pipelined ones included);
    // one closes each connection after one reply; one keeps connections but drops whatever
    // was written behind the request it answers. The webhooks say nothing about pipelining:
    // Conflux finds out per endpoint.
    let keeps = Receiver::start_keep_alive();
    let closes = Receiver::start();
    let drops = Receiver::start_dropping_pipelined();
    let data = data_dir("flows-pipeline");
    let hook = |name: &str, url: String| {
        format!("  - type: webhook\n    name: {name}\n    url: {url}\n    body: '{{id: .Id}}'\n")
    };
    write_flow(
        &data,
        "piped",
        &format!(
            "name: Piped\nobject: Account\non: [create]\nactions:\n{}{}{}",
            hook("Piped_Keep", keeps.url("/keep")),
            hook("Piped_Close", closes.url("/close")),
            hook("Piped_Drop", drops.url("/drop")),
        ),
    );
    let args = [
        "--delivery-concurrency",
        "2",
        "--delivery-retry-base-ms",
        "100",
        "--delivery-retry-cap-ms",
        "300",
    ];
    let org = Org::start_in(&data, &[], &args);
    let created = create_accounts(&org, 3, 100, "P");
    eventually("300 webhooks to each receiver and an empty queue", || {
        keeps.received("/keep", Mode::Ok).len() >= 300
            && closes.received("/close", Mode::Ok).len() >= 300
            && drops.received("/drop", Mode::Ok).len() >= 300
            && deliveries(&org, "state=all").is_empty()
    });
    let kept = keeps.received("/keep", Mode::Ok);
    assert_eq!(kept.len(), 300, "each webhook answered once");
    assert!(
        kept.iter().any(|r| r.behind),
        "requests were written together (pipelined) once the receiver answered a probe"
    );
    // The receiver that drops pipelined requests got one probe (two requests in one write,
    // the second dropped and sent again alone after a short grace), then one per write.
    let dropped = drops.received("/drop", Mode::Ok);
    assert_eq!(dropped.len(), 300, "each webhook answered once");
    assert_eq!(dropped.iter().filter(|r| r.behind).count(), 1, "one probe");
    for (rx, path) in [(&keeps, "/keep"), (&closes, "/close"), (&drops, "/drop")] {
        // (A receiver that closes with requests unread resets the connection, which can cost
        // a reply: the webhook goes again, with the same idempotency key.)
        let got = rx.received(path, Mode::Ok);
        assert_eq!(
            webhook_record_ids(&got),
            created,
            "{path}: every record's webhook arrived"
        );
        let keys: HashSet<&String> = got.iter().map(|r| &r.headers["idempotency-key"]).collect();
        assert_eq!(keys.len(), 300, "{path}: one notification id each");
    }
    // Two connections at most (the endpoint's concurrency) carried the 300 to the receiver that
    // keeps them; one more replaced the probed one at the receiver that drops pipelined
    // requests; the receiver that closes needed one per reply.
    let kept = keeps.connections.load(Ordering::Relaxed);
    assert!((1..=2).contains(&kept), "{kept} connections");
    let kept = drops.connections.load(Ordering::Relaxed);
    assert!((2..=3).contains(&kept), "{kept} connections");
    assert!(closes.connections.load(Ordering::Relaxed) >= 300);
}

#[test]
fn failing_and_hanging_receivers_go_to_the_dead_letter_queue_and_requeue_delivers() {
    let rx = Receiver::start();
    rx.set("/e500", Mode::Fail);
    rx.set("/hang", Mode::Hang);
    let data = data_dir("flows-dlq");
    write_flow(
        &data,
        "three",
        &format!(
            r#"name: Three_Ways
object: Contact
on: [create]
actions:
  - type: outbound_message
    name: Contact_OM
    endpoint: {e500}
    fields: [Id, LastName]
  - type: webhook
    name: Contact_Hang
    url: {hang}
  - type: webhook
    name: Contact_Ok
    url: {ok}
"#,
            e500 = rx.url("/e500"),
            hang = rx.url("/hang"),
            ok = rx.url("/ok")
        ),
    );
    let org = Org::start_in(
        &data,
        &[],
        &[
            "--delivery-retry-base-ms",
            "100",
            "--delivery-retry-cap-ms",
            "200",
            "--delivery-expiry-secs",
            "3",
            "--delivery-timeout-ms",
            "500",
        ],
    );
    let mut contacts = Vec::new();
    for i in 0..5 {
        contacts.push(org.create("Contact", json!({"LastName": format!("C{i}")})));
    }
    // The healthy endpoint is served while the others fail.
    eventually("the healthy webhooks", || {
        rx.received("/ok", Mode::Ok).len() >= 5
    });
    eventually("10 dead letters", || {
        deliveries(&org, "state=dead").len() == 10
    });
    let dead = deliveries(&org, "state=dead");
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| d["lastError"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().all(|r| r.starts_with("expired after")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("HTTP 500: database unavailable")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no reply from") && r.contains("within 0.5 s")),
        "{reasons:?}"
    );
    let (s, summary) = org.call(Method::GET, &org.data("/conflux/deliveries/summary"), None);
    assert_eq!(s, 200);
    let dead_total: u64 = summary["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["dead"].as_u64().unwrap())
        .sum();
    assert_eq!(dead_total, 10);

    // Bad operator input is refused and changes nothing.
    for (body, status, code) in [
        (json!({"ids": "x"}), 400, "INVALID_INPUT"),
        (json!({"ids": ["001000000000001AAA"]}), 400, "MALFORMED_ID"),
        (json!({"colour": "red"}), 400, "INVALID_INPUT"),
        (json!([1]), 400, "JSON_PARSER_ERROR"),
    ] {
        let (s, b) = org.call(
            Method::POST,
            &org.data("/conflux/deliveries/requeue"),
            Some(body.clone()),
        );
        assert_eq!(
            (s, b[0]["errorCode"].as_str()),
            (status, Some(code)),
            "{body}: {b}"
        );
    }
    let (s, b) = org.call(
        Method::POST,
        &org.data("/conflux/deliveries/purge"),
        Some(json!({})),
    );
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_INPUT"))
    );
    let (s, _) = org.call(
        Method::GET,
        &org.data("/conflux/deliveries?state=lost"),
        None,
    );
    assert_eq!(s, 400);
    assert_eq!(deliveries(&org, "state=dead").len(), 10);

    // One is looked at and purged; the receivers are fixed; requeue delivers the rest once.
    let one = dead[0]["id"].as_str().unwrap().to_string();
    let (s, b) = org.call(
        Method::GET,
        &org.data(&format!("/conflux/deliveries/{one}")),
        None,
    );
    assert_eq!((s, &b["state"]), (200, &json!("dead")));
    let (s, b) = org.call(
        Method::POST,
        &org.data("/conflux/deliveries/purge"),
        Some(json!({"ids": [one]})),
    );
    assert_eq!((s, &b["purged"]), (200, &json!(1)));
    rx.set("/e500", Mode::Ok);
    rx.set("/hang", Mode::Ok);
    let (s, b) = org.call(
        Method::POST,
        &org.data("/conflux/deliveries/requeue"),
        Some(json!({"state": "dead"})),
    );
    assert_eq!((s, &b["requeued"]), (200, &json!(9)), "{b}");
    eventually("an empty queue", || {
        deliveries(&org, "state=all").is_empty()
    });
    let om: HashSet<String> = rx
        .received("/e500", Mode::Ok)
        .iter()
        .flat_map(|r| notifications(&r.body))
        .map(|(_, rec)| rec)
        .collect();
    let hung: HashSet<String> = rx
        .received("/hang", Mode::Ok)
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(
        om.len() + hung.len(),
        9,
        "each requeued notification arrived once"
    );
}

#[test]
fn queued_notifications_survive_kill_9_and_are_all_delivered() {
    // The receiver's port is reserved but nothing answers until after the crash.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sink", listener.local_addr().unwrap());
    drop(listener);
    let data = data_dir("flows-kill9");
    write_flow(
        &data,
        "sink",
        &format!(
            "name: Sink\nobject: Account\non: [create]\nactions:\n  - type: webhook\n    name: Sink_Hook\n    url: {url}\n    body: '{{id: .Id}}'\n"
        ),
    );
    let args = [
        "--delivery-retry-base-ms",
        "100",
        "--delivery-retry-cap-ms",
        "300",
    ];
    let org = Org::start_in(&data, &[], &args);
    let created = create_accounts(&org, 50, 200, "K");
    assert_eq!(created.len(), 10_000);
    let Org { srv, .. } = org;
    srv.kill9();

    let rx = Receiver::start_on(
        TcpListener::bind(url.trim_start_matches("http://").trim_end_matches("/sink")).unwrap(),
    );
    let org = Org::start_in(&data, &[], &args);
    eventually("10,000 deliveries", || {
        rx.received("/sink", Mode::Ok).len() >= 10_000 && deliveries(&org, "state=all").is_empty()
    });
    let got = rx.received("/sink", Mode::Ok);
    assert_eq!(
        webhook_record_ids(&got),
        created,
        "every acknowledged record change was delivered"
    );
    let keys: HashSet<&String> = got.iter().map(|r| &r.headers["idempotency-key"]).collect();
    assert_eq!(keys.len(), 10_000, "one notification id per change");
}

#[test]
fn flows_are_managed_through_the_api_and_their_faults_are_logged() {
    let data = data_dir("flows-admin");
    write_flow(
        &data,
        "from_file",
        "name: From_File\nobject: Contact\non: [create]\nactions:\n  - type: outbound_message\n    name: Contact_Out\n    endpoint: http://127.0.0.1:9/om\n    fields: [Id, LastName, Email, Birthdate]\n",
    );
    let org = Org::start_in(&data, &[], &[]);
    let (s, b) = org.call(Method::GET, &org.data("/conflux/flows"), None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["flows"][0]["name"], "From_File");
    assert_eq!(b["flows"][0]["source"], "file");

    // The WSDL receivers build from.
    let r = org.send(
        Method::GET,
        &org.data("/conflux/outbound-messages/Contact_Out/wsdl"),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/xml"));
    for part in [
        r#"<element name="LastName" nillable="true" minOccurs="0" type="xsd:string"/>"#,
        r#"<element name="Birthdate" nillable="true" minOccurs="0" type="xsd:date"/>"#,
        r#"<complexType name="ContactNotification">"#,
        r#"<soap:address location="http://127.0.0.1:9/om"/>"#,
        r#"<element name="Ack" type="xsd:boolean"/>"#,
    ] {
        assert!(r.text.contains(part), "{part} missing from {}", r.text);
    }
    let r = org.send(
        Method::GET,
        &org.data("/conflux/outbound-messages/Nope/wsdl"),
        &[],
        None,
    );
    assert_eq!(r.status, 404);

    // Create (YAML), use, replace (JSON).
    let yaml = "object: Contact\ntiming: before_save\nactions:\n  - type: update_fields\n    fields:\n      Description: '.LastName | ascii_upcase'\n";
    let r = org.send(
        Method::PUT,
        &org.data("/conflux/flows/Shout"),
        &[("Content-Type", "application/yaml")],
        Some(yaml.as_bytes().to_vec()),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["source"], "api");
    let id = org.create("Contact", json!({"LastName": "quiet"}));
    let (_, c) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Contact/{id}")),
        None,
    );
    assert_eq!(c["Description"], "QUIET");
    let replaced = json!({"object": "Contact", "timing": "before_save", "actions": [
        {"type": "update_fields", "fields": {"Description": "\"len \" + (.LastName | length | tostring)"}}]});
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/flows/Shout"),
        Some(replaced),
    );
    assert_eq!(s, 200, "{b}");
    let id = org.create("Contact", json!({"LastName": "four"}));
    let (_, c) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Contact/{id}")),
        None,
    );
    assert_eq!(c["Description"], "len 4");
    // Runs are counted per flow (since start), for the console.
    let (_, f) = org.call(Method::GET, &org.data("/conflux/flows/Shout"), None);
    assert_eq!(
        (f["runs"].as_u64(), f["faults"].as_u64()),
        (Some(2), Some(0)),
        "{f}"
    );
    assert!(f["lastRunDate"].is_string(), "{f}");

    // Bad definitions are refused and change nothing.
    for (name, body, says) in [
        (
            "Bad",
            json!({"object": "Contact", "expire_seconds": 0, "actions": []}),
            "expire_seconds",
        ),
        (
            "Bad",
            json!({"object": "Nope", "actions": []}),
            "no object Nope",
        ),
        (
            "Bad",
            json!({"object": "Contact", "condition": ".x ==", "actions": []}),
            "cannot parse",
        ),
        (
            "Bad",
            json!({"object": "Contact", "actions": [{"type": "update_fields", "fields": {"LastName": "1"}}]}),
            "before_save",
        ),
        (
            "Bad",
            json!({"object": "Contact", "actions": [{"type": "webhook", "name": "W", "url": "ftp://x"}]}),
            "not an http",
        ),
        (
            "Bad",
            json!({"object": "Contact", "actions": [{"type": "webhook", "name": "W", "url": "http://x/", "pipeline": 0}]}),
            "pipeline is outside 1..=16",
        ),
        (
            "Bad",
            json!({"object": "Contact", "actions": [{"type": "webhook", "name": "W", "url": "http://x/", "pipeline": 17}]}),
            "pipeline is outside 1..=16",
        ),
        (
            "Bad",
            json!({"object": "Contact", "colour": "red", "actions": []}),
            "unknown field",
        ),
        (
            "Bad",
            json!({"name": "Other", "object": "Contact", "actions": []}),
            "names the flow",
        ),
        (
            "From_File",
            json!({"object": "Contact", "actions": []}),
            "metadata folder",
        ),
        (
            "Bad",
            json!({"object": "Contact", "actions": [{"type": "outbound_message", "name": "Contact_Out", "endpoint": "http://x", "fields": ["Id"]}]}),
            "already named",
        ),
    ] {
        let (s, b) = org.call(
            Method::PUT,
            &org.data(&format!("/conflux/flows/{name}")),
            Some(body),
        );
        assert_eq!(s, 400, "{b}");
        assert_eq!(b[0]["errorCode"], "INVALID_INPUT");
        assert!(
            b[0]["message"].as_str().unwrap().contains(says),
            "{says}: {b}"
        );
    }
    let (_, b) = org.call(Method::GET, &org.data("/conflux/flows"), None);
    assert_eq!(b["flows"].as_array().unwrap().len(), 2);

    // A flow that fails refuses the change and leaves a fault.
    let failing = json!({"object": "Account", "on": ["create"], "timing": "before_save",
        "condition": ".Name | tonumber > 0",
        "actions": [{"type": "update_fields", "fields": {"Description": "\"numeric\""}}]});
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/flows/Numeric_Names"),
        Some(failing),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.call(
        Method::POST,
        &org.data("/sobjects/Account"),
        Some(json!({"Name": "not a number"})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b[0]["errorCode"], "CANNOT_EXECUTE_FLOW_TRIGGER");
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name = 'not a number'"),
        0
    );
    eventually("the fault", || {
        let (_, f) = org.call(Method::GET, &org.data("/conflux/flow-faults"), None);
        f["faults"].as_array().is_some_and(|a| !a.is_empty())
    });
    let (_, f) = org.call(Method::GET, &org.data("/conflux/flow-faults"), None);
    let fault = &f["faults"][0];
    assert_eq!(fault["flow"], "Numeric_Names");
    assert_eq!(fault["object"], "Account");
    assert_eq!(fault["event"], "create");
    assert!(fault["id"].as_str().unwrap().starts_with("0Fl"));
    assert!(
        fault["message"].as_str().unwrap().contains("tonumber")
            || fault["message"].as_str().unwrap().contains("number"),
        "{fault}"
    );
    let id = org.create("Account", json!({"Name": "42"}));
    let (_, a) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Account/{id}")),
        None,
    );
    assert_eq!(a["Description"], "numeric");

    // API flows survive a restart; deleting one removes it; file flows cannot be deleted.
    let Org { srv, .. } = org;
    srv.stop().unwrap();
    let org = Org::start_in(&data, &[], &[]);
    let (_, b) = org.call(Method::GET, &org.data("/conflux/flows/Shout"), None);
    assert_eq!(b["source"], "api", "{b}");
    let id = org.create("Contact", json!({"LastName": "again"}));
    let (_, c) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Contact/{id}")),
        None,
    );
    assert_eq!(c["Description"], "len 5");
    let (s, _) = org.call(Method::DELETE, &org.data("/conflux/flows/Shout"), None);
    assert_eq!(s, 204);
    let (s, _) = org.call(Method::GET, &org.data("/conflux/flows/Shout"), None);
    assert_eq!(s, 404);
    let (s, b) = org.call(Method::DELETE, &org.data("/conflux/flows/From_File"), None);
    assert_eq!(s, 400, "{b}");
    let id = org.create("Contact", json!({"LastName": "plain"}));
    let (_, c) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Contact/{id}")),
        None,
    );
    assert!(c["Description"].is_null());
}

#[test]
fn an_activated_order_gets_its_billing_account_from_a_callout_in_the_same_request() {
    let rx = Receiver::start();
    rx.reply(
        "/oauth/token",
        r#"{"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}"#,
    );
    rx.reply("/billing/accounts", r#"{"accountNumber": "BA-1"}"#);
    rx.reply("/billing/accounts/BA-1", r#"{"status": "active"}"#);
    let data = data_dir("flows-callout");
    let objects = data.join("metadata/objects");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(
        objects.join("Order.yaml"),
        "fields:\n  - fullName: Billing_Account__c\n    type: Text\n    length: 40\n",
    )
    .unwrap();
    write_flow(
        &data,
        "order_billing",
        r#"name: Order_Billing
object: Order
on: [update]
timing: before_save
condition: '$new.Status == "Activated" and $old.Status != "Activated"'
actions:
  - type: callout
    name: Create_Billing_Account
    credential: Billing
    path: /accounts
    timeout_ms: 1000
    body: '{orderId: $new.Id, account: $new.AccountId}'
    reply_fields:
      Billing_Account__c: '$reply.accountNumber'
"#,
    );
    write_flow(
        &data,
        "refresh_billing",
        r#"name: Refresh_Billing
label: Refresh billing status
object: Order
on: [invoke]
actions:
  - type: callout
    name: Billing_Status
    credential: Billing
    method: GET
    path: '("/accounts/" + $new.Billing_Account__c)'
    reply_fields:
      Description: '"billing " + $reply.status'
outputs:
  status: '$reply.status'
  asked: '$input.note'
"#,
    );
    let org = Org::start_in(&data, &[], &[]);

    // The named credential: OAuth 2.0 client credentials; its secret is never shown or stored
    // in clear.
    let secret = "sup3r-s3cret-value";
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Billing"),
        Some(
            json!({"url": rx.url("/billing"), "auth": {"type": "oauth_client_credentials",
            "tokenUrl": rx.url("/oauth/token"), "clientId": "conflux", "clientSecret": secret}}),
        ),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["auth"]["clientSecret"], "********");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Broken"),
        Some(json!({"url": "ftp://nowhere"})),
    );
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_INPUT")),
        "{b}"
    );

    let account = org.create("Account", json!({"Name": "Billing Customer"}));
    let new_order = |n: &str| {
        org.create(
            "Order",
            json!({"AccountId": account, "Status": "Draft", "EffectiveDate": "2026-12-01", "Name": n}),
        )
    };
    let order = new_order("first");
    let (s, b) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Order/{order}")),
        Some(json!({"Status": "Activated"})),
    );
    assert_eq!(s, 204, "{b}");
    let (_, o) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Order/{order}")),
        None,
    );
    assert_eq!(
        o["Billing_Account__c"], "BA-1",
        "the reply is on the record when the call returns"
    );
    assert_eq!(o["Status"], "Activated");
    let calls = rx.received("/billing/accounts", Mode::Ok);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.headers["authorization"], "Bearer tok-1");
    assert_eq!(call.headers["x-conflux-record-id"], order);
    assert!(!call.headers["idempotency-key"].is_empty());
    assert_eq!(
        call.headers["x-conflux-message-id"],
        call.headers["idempotency-key"]
    );
    let sent: Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(sent["orderId"], order);
    let token = rx.received("/oauth/token", Mode::Ok);
    assert_eq!(token.len(), 1);
    assert!(
        token[0].body.contains("grant_type=client_credentials"),
        "{}",
        token[0].body
    );

    // A failing or silent billing service: the save fails with the reason, nothing is written.
    for (mode, says) in [
        (Mode::Fail, "answered HTTP 500: database unavailable"),
        (Mode::Hang, "timed out after 1 s"),
    ] {
        rx.set("/billing/accounts", mode);
        let order = new_order("failing");
        let (s, b) = org.call(
            Method::PATCH,
            &org.data(&format!("/sobjects/Order/{order}")),
            Some(json!({"Status": "Activated"})),
        );
        assert_eq!(s, 400, "{b}");
        assert_eq!(b[0]["errorCode"], "CANNOT_EXECUTE_FLOW_TRIGGER");
        assert!(b[0]["message"].as_str().unwrap().contains(says), "{b}");
        let (_, o) = org.call(
            Method::GET,
            &org.data(&format!("/sobjects/Order/{order}")),
            None,
        );
        assert_eq!(
            (&o["Status"], &o["Billing_Account__c"]),
            (&json!("Draft"), &Value::Null)
        );
    }
    rx.set("/billing/accounts", Mode::Ok);
    eventually("the callout faults", || {
        let (_, f) = org.call(Method::GET, &org.data("/conflux/flow-faults"), None);
        f["faults"].as_array().is_some_and(|a| a.len() >= 2)
    });

    // Another way in than a single-record save: refused rather than saved without the reply.
    let order2 = new_order("composite");
    let (s, b) = org.call(
        Method::PATCH,
        &org.data("/composite/sobjects"),
        Some(json!({"allOrNone": false, "records": [
            {"attributes": {"type": "Order"}, "id": order2, "Status": "Activated"}]})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[0]["success"], false, "{b}");
    assert_eq!(
        b[0]["errors"][0]["statusCode"],
        "CANNOT_EXECUTE_FLOW_TRIGGER"
    );

    // The invocable action.
    let (s, b) = org.call(Method::GET, &org.data("/actions/custom/flow"), None);
    assert_eq!(s, 200);
    assert_eq!(b["actions"][0]["name"], "Refresh_Billing");
    assert_eq!(b["actions"][0]["type"], "FLOW");
    let (s, b) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Refresh_Billing"),
        Some(json!({"inputs": [{"recordId": order, "note": "nightly"}]})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[0]["actionName"], "Refresh_Billing");
    assert_eq!(b[0]["isSuccess"], true);
    assert_eq!(b[0]["outputValues"]["status"], "active");
    assert_eq!(b[0]["outputValues"]["asked"], "nightly");
    assert_eq!(b[0]["outputValues"]["Flow__InterviewStatus"], "Finished");
    let (_, o) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Order/{order}")),
        None,
    );
    assert_eq!(o["Description"], "billing active");
    let get = rx.received("/billing/accounts/BA-1", Mode::Ok);
    assert_eq!((get.len(), get[0].method.as_str()), (1, "GET"));
    assert_eq!(
        rx.received("/oauth/token", Mode::Ok).len(),
        1,
        "the token is cached"
    );
    let (s, b) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Refresh_Billing"),
        Some(json!({"inputs": [{"recordId": account}]})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b[0]["isSuccess"], false);
    assert_eq!(
        b[0]["errors"][0]["statusCode"],
        "INVALID_CROSS_REFERENCE_KEY"
    );
    let (s, _) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Nope"),
        Some(json!({"inputs": []})),
    );
    assert_eq!(s, 404);
    let (s, b) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Refresh_Billing"),
        Some(json!({"x": 1})),
    );
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("JSON_PARSER_ERROR"))
    );

    // The secret is sealed at rest and survives a restart (the key is in the data directory).
    let Org { srv, .. } = org;
    srv.stop().unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret in clear",
                path.display()
            );
        }
    }
    let org = Org::start_in(&data, &[], &[]);
    let order3 = new_order_on(&org, &account);
    let (s, b) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Order/{order3}")),
        Some(json!({"Status": "Activated"})),
    );
    assert_eq!(s, 204, "{b}");
    let (_, o) = org.call(
        Method::GET,
        &org.data(&format!("/sobjects/Order/{order3}")),
        None,
    );
    assert_eq!(o["Billing_Account__c"], "BA-1");
}

fn new_order_on(org: &Org, account: &str) -> String {
    org.create(
        "Order",
        json!({"AccountId": account, "Status": "Draft", "EffectiveDate": "2026-12-01"}),
    )
}

/// Defines a platform event type through the Tooling API.
fn define_deal_won(org: &Org) {
    let (s, b) = org.tooling(
        "CustomObject",
        "Deal_Won__e",
        json!({"label": "Deal Won", "pluralLabel": "Deals Won", "publishBehavior": "PublishAfterCommit"}),
    );
    assert_eq!(s, 201, "{b}");
    for (field, meta) in [
        (
            "Amount__c",
            json!({"type": "Number", "precision": 16, "scale": 2, "label": "Amount"}),
        ),
        (
            "Account_Id__c",
            json!({"type": "Text", "length": 18, "label": "Account"}),
        ),
    ] {
        let (s, b) = org.tooling("CustomField", &format!("Deal_Won__e.{field}"), meta);
        assert_eq!(s, 201, "{b}");
    }
}

fn put_flow(org: &Org, name: &str, flow: Value) {
    let (s, b) = org.call(
        Method::PUT,
        &org.data(&format!("/conflux/flows/{name}")),
        Some(flow),
    );
    assert!(s == 201 || s == 200, "{name}: {s} {b}");
}

#[test]
fn after_save_flows_create_and_update_records_and_publish_events_that_trigger_flows() {
    let rx = Receiver::start();
    let data = data_dir("flows-local");
    let args = [
        "--delivery-retry-base-ms",
        "100",
        "--delivery-retry-cap-ms",
        "300",
    ];
    let org = Org::start_in(&data, &[], &args);
    define_deal_won(&org);
    put_flow(
        &org,
        "Opportunity_Won",
        json!({
            "object": "Opportunity",
            "on": ["update"],
            "condition": "$new.StageName == \"Closed Won\" and $old.StageName != \"Closed Won\"",
            "actions": [
                {"type": "create_record", "object": "Case",
                 "fields": {"Subject": "\"Onboard \" + $new.Name", "AccountId": "$new.AccountId", "Origin": "\"Web\""}},
                {"type": "update_record", "object": "Account", "id": "$new.AccountId",
                 "fields": {"Rating": "\"Hot\"", "Description": "\"won \" + $new.Name"}},
                {"type": "publish_event", "event": "Deal_Won__e",
                 "fields": {"Amount__c": "$new.Amount", "Account_Id__c": "$new.AccountId"}}
            ]
        }),
    );
    put_flow(
        &org,
        "Big_Deal_Won",
        json!({
            "object": "Deal_Won__e",
            "condition": ".Amount__c > 1000",
            "actions": [
                {"type": "webhook", "name": "Big_Deal_Hook", "url": rx.url("/won"),
                 "body": "{account: .Account_Id__c, amount: .Amount__c, uuid: .EventUuid, replay: .ReplayId}"},
                {"type": "create_record", "object": "Contact",
                 "fields": {"LastName": "\"Sponsor \" + (.Amount__c | tostring)", "AccountId": ".Account_Id__c"}}
            ]
        }),
    );
    // Bad definitions are refused with the reason.
    for (name, flow, says) in [
        (
            "Bad_Before",
            json!({"object": "Account", "timing": "before_save",
                   "actions": [{"type": "create_record", "object": "Case", "fields": {}}]}),
            "after_save",
        ),
        (
            "Bad_Event",
            json!({"object": "Account",
                   "actions": [{"type": "publish_event", "event": "Account", "fields": {}}]}),
            "not a platform event",
        ),
        (
            "Bad_Field",
            json!({"object": "Account",
                   "actions": [{"type": "create_record", "object": "Case", "fields": {"Nope__c": "1"}}]}),
            "no field Nope__c",
        ),
        (
            "Bad_Timing",
            json!({"object": "Deal_Won__e", "on": ["update"], "actions": []}),
            "platform event",
        ),
    ] {
        let (s, b) = org.call(
            Method::PUT,
            &org.data(&format!("/conflux/flows/{name}")),
            Some(flow),
        );
        assert_eq!(s, 400, "{name}: {b}");
        assert!(
            b[0]["message"].as_str().unwrap().contains(says),
            "{name}: {b}"
        );
    }

    let mut accounts = Vec::new();
    let mut opps = Vec::new();
    for (i, amount) in [500.0, 2500.0, 9000.0].into_iter().enumerate() {
        let acct = org.create("Account", json!({"Name": format!("Buyer {i}")}));
        let opp = org.create(
            "Opportunity",
            json!({"Name": format!("Deal {i}"), "StageName": "Prospecting",
                   "CloseDate": "2026-12-31", "Amount": amount, "AccountId": acct}),
        );
        accounts.push(acct);
        opps.push(opp);
    }
    // A change that does not enter the flow queues nothing; a rolled-back one neither.
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Opportunity/{}", opps[0])),
        Some(json!({"StageName": "Qualification"})),
    );
    assert_eq!(s, 204);
    let (s, b) = org.call(
        Method::POST,
        &org.data("/composite"),
        Some(json!({"allOrNone": true, "compositeRequest": [
            {"method": "PATCH", "url": format!("/services/data/{}/sobjects/Opportunity/{}", crate::harness::V, opps[1]),
             "referenceId": "won", "body": {"StageName": "Closed Won"}},
            {"method": "PATCH", "url": format!("/services/data/{}/sobjects/Opportunity/{}", crate::harness::V, opps[1]),
             "referenceId": "bad", "body": {"Amount": "not a number"}}
        ]})),
    );
    assert_eq!(s, 200, "{b}");
    for opp in &opps {
        let (s, b) = org.call(
            Method::PATCH,
            &org.data(&format!("/sobjects/Opportunity/{opp}")),
            Some(json!({"StageName": "Closed Won"})),
        );
        assert_eq!(s, 204, "{b}");
    }

    // Every won deal: a Case, the Account marked, an event; big ones a webhook and a Contact.
    eventually("the queued flow actions ran", || {
        deliveries(&org, "state=all").is_empty()
            && org.count("SELECT COUNT() FROM Contact WHERE LastName LIKE 'Sponsor%'") == 2
    });
    for (i, acct) in accounts.iter().enumerate() {
        let a = org.get("Account", acct);
        assert_eq!(a["Rating"], "Hot");
        assert_eq!(a["Description"], format!("won Deal {i}"));
        let cases = org.query(&format!(
            "SELECT Subject, Origin, CreatedById FROM Case WHERE AccountId = '{acct}'"
        ));
        assert_eq!(
            cases["totalSize"], 1,
            "exactly one Case per won deal: {cases}"
        );
        assert_eq!(cases["records"][0]["Subject"], format!("Onboard Deal {i}"));
        assert_eq!(cases["records"][0]["Origin"], "Web");
        let sponsors = org.count(&format!(
            "SELECT COUNT() FROM Contact WHERE AccountId = '{acct}'"
        ));
        assert_eq!(sponsors, if i == 0 { 0 } else { 1 }, "Buyer {i}");
    }
    let hooks = rx.received("/won", Mode::Ok);
    assert_eq!(hooks.len(), 2, "only events over 1000 enter the flow");
    let mut amounts: Vec<f64> = hooks
        .iter()
        .map(|h| {
            let b: Value = serde_json::from_str(&h.body).unwrap();
            assert_eq!(b["uuid"].as_str().unwrap().len(), 36, "{b}");
            assert!(b["replay"].as_str().unwrap().parse::<u64>().is_ok(), "{b}");
            assert_eq!(h.headers["idempotency-key"].len(), 18);
            b["amount"].as_f64().unwrap()
        })
        .collect();
    amounts.sort_by(f64::total_cmp);
    assert_eq!(amounts, vec![2500.0, 9000.0]);

    // A chain of flows that would never end stops at the depth limit, with the reason.
    put_flow(
        &org,
        "Echo",
        json!({
            "object": "Lead", "on": ["create"], "condition": ".Company == \"Echo\"",
            "actions": [{"type": "create_record", "object": "Lead",
                         "fields": {"LastName": ".LastName + \"+\"", "Company": "\"Echo\""}}]
        }),
    );
    org.create("Lead", json!({"LastName": "E", "Company": "Echo"}));
    eventually("the chain ends in the dead-letter queue", || {
        deliveries(&org, "state=dead").len() == 1
    });
    let dead = &deliveries(&org, "state=dead")[0];
    assert!(
        dead["lastError"]
            .as_str()
            .unwrap()
            .contains("more than 5 levels"),
        "{dead}"
    );
    assert_eq!(
        org.count("SELECT COUNT() FROM Lead WHERE Company = 'Echo'"),
        5,
        "the first Lead and four made by the chain"
    );

    // An action the org refuses is retried with the reason and logged as a fault; it is never
    // lost: once the data is fixed, it runs.
    put_flow(
        &org,
        "Touch_Parent",
        json!({
            "object": "Contact", "on": ["create"], "condition": ".Department != null",
            "actions": [{"type": "update_record", "object": "Account", "id": ".Department",
                         "fields": {"NumberOfEmployees": "42"}}]
        }),
    );
    let victim = org.create("Account", json!({"Name": "Later"}));
    let (s, _) = org.call(
        Method::DELETE,
        &org.data(&format!("/sobjects/Account/{victim}")),
        None,
    );
    assert_eq!(s, 204);
    org.create(
        "Contact",
        json!({"LastName": "Pointer", "Department": victim}),
    );
    eventually("a failed attempt with its reason", || {
        deliveries(&org, "state=queued")
            .iter()
            .any(|d| d["attempts"].as_u64().unwrap_or(0) >= 2)
    });
    let (s, faults) = org.call(Method::GET, &org.data("/conflux/flow-faults"), None);
    assert_eq!(s, 200);
    assert!(
        faults.to_string().contains("Touch_Parent"),
        "the failure is in the fault log: {faults}"
    );
    let xml = crate::records::soap_undelete(&org, &[&victim]);
    assert!(xml.contains("<success>true</success>"), "{xml}");
    eventually("the fixed action runs", || {
        deliveries(&org, "state=queued").is_empty()
    });
    assert_eq!(org.get("Account", &victim)["NumberOfEmployees"], 42);

    // Platform-event flows resume where they were after kill -9: every event runs its flow once.
    let mut published = Vec::new();
    for k in 0..20 {
        let (s, b) = org.call(
            Method::POST,
            &org.data("/sobjects/Deal_Won__e"),
            Some(json!({"Amount__c": 5000 + k, "Account_Id__c": accounts[1]})),
        );
        assert_eq!(s, 201, "{b}");
        published.push(b["errors"][0]["message"].as_str().unwrap().to_string());
    }
    let Org { srv, .. } = org;
    srv.kill9();
    let org = Org::start_in(&data, &[], &args);
    eventually("22 webhooks", || {
        let uuids: HashSet<String> = rx
            .received("/won", Mode::Ok)
            .iter()
            .map(|h| {
                serde_json::from_str::<Value>(&h.body).unwrap()["uuid"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        uuids.len() == 22 && deliveries(&org, "state=queued").is_empty()
    });
    let hooks = rx.received("/won", Mode::Ok);
    // A webhook sent just before the kill may arrive again, with the same idempotency key; no
    // event queued its flow's work twice.
    let mut key_of: HashMap<String, String> = HashMap::new();
    for h in &hooks {
        let uuid = serde_json::from_str::<Value>(&h.body).unwrap()["uuid"]
            .as_str()
            .unwrap()
            .to_string();
        let key = h.headers["idempotency-key"].clone();
        assert_eq!(
            key_of.entry(uuid.clone()).or_insert(key.clone()),
            &key,
            "event {uuid}"
        );
    }
    let keys: HashSet<&String> = key_of.values().collect();
    assert_eq!(keys.len(), 22, "one notification per event");
    let uuids: HashSet<String> = hooks
        .iter()
        .map(|h| {
            serde_json::from_str::<Value>(&h.body).unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for u in &published {
        assert!(uuids.contains(u), "event {u} ran its flow");
    }
    assert_eq!(
        org.count(&format!(
            "SELECT COUNT() FROM Contact WHERE AccountId = '{}'",
            accounts[1]
        )),
        21
    );
}

const ERP_OPENAPI: &str = r#"openapi: 3.0.3
info: {title: ERP, version: "2.1"}
servers:
  - url: https://erp.example.com/v2
components:
  parameters:
    Region:
      name: region
      in: path
      required: true
      schema: {type: string}
paths:
  /regions/{region}/customers:
    post:
      operationId: createCustomer
      summary: Create a customer
      parameters:
        - $ref: '#/components/parameters/Region'
        - {name: dryRun, in: query, schema: {type: boolean}}
        - {name: X-Tenant, in: header, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: {type: object}}}
      responses: {"201": {description: created}}
  /customers/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses: {"200": {description: ok}}
"#;

fn put_service(org: &Org, name: &str, credential: &str, yaml: &str) -> (u16, Value) {
    let resp = org
        .http
        .put(org.data(&format!(
            "/conflux/external-services/{name}?credential={credential}"
        )))
        .bearer_auth(&org.token)
        .header("Content-Type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn external_services_are_registered_from_openapi_and_called_by_operation() {
    let rx = Receiver::start();
    rx.reply(
        "/erp/v2/regions/emea%20west/customers?dryRun=false",
        r#"{"number": "C-77"}"#,
    );
    let data = data_dir("flows-external");
    let org = Org::start_in(&data, &[], &[]);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Erp"),
        Some(json!({"url": rx.url("/erp"), "auth": {"type": "bearer", "token": "erp-token"}})),
    );
    assert_eq!(s, 201, "{b}");

    // Documents that are not usable OpenAPI 3 are refused with the reason.
    for (doc, credential, says) in [
        ("swagger: '2.0'\npaths: {}\n", "Erp", "OpenAPI 3"),
        ("openapi: 3.0.0\npaths: {}\n", "Erp", "no operations"),
        (
            "openapi: 3.0.0\npaths:\n  /a/{x}:\n    get: {operationId: a}\n",
            "Erp",
            "no path parameter declares it",
        ),
        (ERP_OPENAPI, "Nope", "no named credential"),
        ("openapi: [", "Erp", "invalid YAML"),
    ] {
        let (s, b) = put_service(&org, "Erp", credential, doc);
        assert_eq!(s, 400, "{b}");
        assert!(
            b[0]["message"].as_str().unwrap().contains(says),
            "{says}: {b}"
        );
    }
    let (s, b) = put_service(&org, "Erp", "Erp", ERP_OPENAPI);
    assert_eq!(s, 201, "{b}");
    let ops: Vec<&str> = b["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["createCustomer", "getCustomersId"], "{b}");
    assert_eq!(b["operations"][0]["path"], "/v2/regions/{region}/customers");
    assert_eq!(b["operations"][0]["method"], "POST");

    // Flows must call operations as the document declares them.
    let flow = |params: Value, body: Option<&str>, op: &str| {
        let mut callout = json!({"type": "callout", "name": "New_Customer", "service": "Erp",
            "operation": op, "params": params,
            "reply_fields": {"AccountNumber": "$reply.number"}});
        if let Some(b) = body {
            callout["body"] = json!(b);
        }
        json!({"object": "Account", "on": ["invoke"], "actions": [callout],
               "outputs": {"number": "$reply.number"}})
    };
    let good_params = json!({"region": "$input.region", "dryRun": "false", "X-Tenant": "\"acme\""});
    for (f, says) in [
        (
            flow(
                good_params.clone(),
                Some("{name: $new.Name}"),
                "deleteEverything",
            ),
            "has no operation deleteEverything",
        ),
        (
            flow(json!({"region": "\"x\""}), Some("{}"), "createCustomer"),
            "requires the parameter X-Tenant",
        ),
        (
            flow(good_params.clone(), None, "createCustomer"),
            "requires a request body",
        ),
        (
            flow(
                json!({"id": "1", "colour": "\"red\""}),
                None,
                "getCustomersId",
            ),
            "no parameter colour",
        ),
    ] {
        let (s, b) = org.call(
            Method::PUT,
            &org.data("/conflux/flows/Erp_Customer"),
            Some(f),
        );
        assert_eq!(s, 400, "{b}");
        assert!(
            b[0]["message"].as_str().unwrap().contains(says),
            "{says}: {b}"
        );
    }
    put_flow(
        &org,
        "Erp_Customer",
        flow(good_params, Some("{name: $new.Name}"), "createCustomer"),
    );

    // Invoked: the operation's method, path, query and headers, the reply on the record.
    let account = org.create("Account", json!({"Name": "Acme EMEA"}));
    let (s, b) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Erp_Customer"),
        Some(json!({"inputs": [{"recordId": account, "region": "emea west"}]})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[0]["outputValues"]["number"], "C-77", "{b}");
    assert_eq!(org.get("Account", &account)["AccountNumber"], "C-77");
    let got = rx.received(
        "/erp/v2/regions/emea%20west/customers?dryRun=false",
        Mode::Ok,
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].headers["x-tenant"], "acme");
    assert_eq!(got[0].headers["authorization"], "Bearer erp-token");
    assert_eq!(got[0].headers["x-conflux-record-id"], account);
    let sent: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(sent, json!({"name": "Acme EMEA"}));

    // A required parameter without a value fails the call with the reason; nothing is written.
    let other = org.create("Account", json!({"Name": "No Region"}));
    let (s, b) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Erp_Customer"),
        Some(json!({"inputs": [{"recordId": other}]})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b[0]["isSuccess"], false);
    assert!(
        b[0]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("needs its parameter region"),
        "{b}"
    );
    assert_eq!(org.get("Account", &other)["AccountNumber"], Value::Null);

    // A service a flow calls cannot be removed; the registration survives a restart.
    let (s, b) = org.call(
        Method::DELETE,
        &org.data("/conflux/external-services/Erp"),
        None,
    );
    assert_eq!(s, 400, "{b}");
    let Org { srv, .. } = org;
    srv.stop().unwrap();
    let org = Org::start_in(&data, &[], &[]);
    let (s, b) = org.call(
        Method::GET,
        &org.data("/conflux/external-services/Erp"),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["credential"], "Erp");
    let (s, b) = org.call(
        Method::GET,
        &org.data("/conflux/external-services/Erp/openapi"),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["info"]["title"], "ERP");
    let (s, _) = org.call(
        Method::DELETE,
        &org.data("/conflux/flows/Erp_Customer"),
        None,
    );
    assert_eq!(s, 204);
    let (s, _) = org.call(
        Method::DELETE,
        &org.data("/conflux/external-services/Erp"),
        None,
    );
    assert_eq!(s, 204);
    let (s, b) = org.call(Method::GET, &org.data("/conflux/external-services"), None);
    assert_eq!(
        (s, b["externalServices"].as_array().unwrap().len()),
        (200, 0)
    );
}

/// A certificate authority made for one test.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn test_ca(name: &str) -> TestCa {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    TestCa {
        pem: cert.pem(),
        der: cert.der().clone(),
        issuer: rcgen::Issuer::new(p, key),
    }
}

/// A certificate (and its PKCS#8 key, in PEM) issued by `ca`.
fn issue(ca: &TestCa, cn: &str, names: &[&str], client: bool) -> (String, String) {
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An HTTPS receiver that only accepts clients with a certificate issued by `client_ca`;
/// answers every request with `{"mtls": true}`. Returns its base URL.
fn mtls_receiver(server_ca: &TestCa, client_ca: &TestCa) -> String {
    use rustls::pki_types::pem::PemObject;
    let (cert, key) = issue(server_ca, "localhost", &["127.0.0.1", "localhost"], false);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(tls) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(tls, conn);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let client = s.conn.peer_certificates().map(|c| c.len()).unwrap_or(0);
                let body = format!("{{\"mtls\": true, \"chain\": {client}}}");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.flush();
                s.conn.send_close_notify();
                let _ = s.flush();
            });
        }
    });
    url
}

#[test]
fn callouts_present_a_client_certificate_for_mutual_tls() {
    let server_ca = test_ca("Receiver CA");
    let client_ca = test_ca("Client CA");
    let stranger_ca = test_ca("Stranger CA");
    let url = mtls_receiver(&server_ca, &client_ca);
    let org = Org::start("flows-mtls");
    let (cert, key) = issue(&client_ca, "conflux", &[], true);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Vault"),
        Some(json!({"url": url, "clientCertificate":
            {"certificate": cert, "key": key, "trust": server_ca.pem}})),
    );
    assert_eq!(s, 201, "{b}");
    assert!(
        !b.to_string().contains("PRIVATE KEY"),
        "the key is never shown: {b}"
    );
    let (cert, key) = issue(&stranger_ca, "stranger", &[], true);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Stranger"),
        Some(json!({"url": url, "clientCertificate":
            {"certificate": cert, "key": key, "trust": server_ca.pem}})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Garbage"),
        Some(json!({"url": url, "clientCertificate": {"certificate": "nope", "key": "nope"}})),
    );
    assert_eq!(s, 400, "{b}");
    for cred in ["Vault", "Stranger"] {
        put_flow(
            &org,
            &format!("Ping_{cred}"),
            json!({"object": "Account", "on": ["invoke"],
                   "actions": [{"type": "callout", "name": "Ping", "credential": cred,
                                "method": "GET", "path": "/ping"}],
                   "outputs": {"mtls": "$reply.mtls", "chain": "$reply.chain"}}),
        );
    }
    let (s, b) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Ping_Vault"),
        Some(json!({"inputs": [{}]})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[0]["outputValues"]["mtls"], true, "{b}");
    assert!(b[0]["outputValues"]["chain"].as_u64().unwrap() >= 1, "{b}");
    // A certificate the receiver does not trust: the handshake fails, the call reports it.
    let (s, b) = org.call(
        Method::POST,
        &org.data("/actions/custom/flow/Ping_Stranger"),
        Some(json!({"inputs": [{}]})),
    );
    assert_eq!(s, 400, "{b}");
    let msg = b[0]["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("The callout Ping"), "{msg}");
}

#[test]
fn bulk_api_loads_run_record_triggered_flows() {
    let rx = Receiver::start();
    let data = data_dir("flows-bulk");
    write_flow(
        &data,
        "stamp",
        r#"name: Stamp
object: Contact
timing: before_save
on: [create, update]
actions:
  - type: update_fields
    fields:
      Department: '"seen " + .LastName'
"#,
    );
    write_flow(
        &data,
        "vip",
        &format!(
            r#"name: Vip
object: Contact
on: [create, update]
condition: '.Title == "VIP" and $old.Title != "VIP"'
actions:
  - type: webhook
    name: Vip_Hook
    url: {}
    body: '{{id: .Id, name: .LastName}}'
"#,
            rx.url("/vip")
        ),
    );
    let org = Org::start_in(&data, &[], &[]);
    let mut csv = String::from("LastName,Title,Email\n");
    for i in 0..300 {
        let title = if i % 3 == 0 { "VIP" } else { "Member" };
        csv.push_str(&format!("C{i},{title},c{i}@example.com\n"));
    }
    csv.push_str(",VIP,missing-name@example.com\n");
    let job = org.ingest(json!({"object": "Contact", "operation": "insert"}), &csv);
    assert_eq!(job["state"], "JobComplete", "{job}");
    assert_eq!(job["numberRecordsProcessed"], 301, "{job}");
    assert_eq!(job["numberRecordsFailed"], 1, "{job}");
    assert_eq!(
        org.count("SELECT COUNT() FROM Contact WHERE Department LIKE 'seen C%'"),
        300,
        "before-save flows ran for every loaded row"
    );
    eventually("100 VIP webhooks", || {
        rx.received("/vip", Mode::Ok).len() >= 100 && deliveries(&org, "state=all").is_empty()
    });
    assert_eq!(rx.received("/vip", Mode::Ok).len(), 100);

    // An update job: rows that become VIP are notified; the others are not.
    let members =
        org.query("SELECT Id FROM Contact WHERE Title = 'Member' ORDER BY LastName LIMIT 10");
    let mut csv = String::from("Id,Title\n");
    for r in members["records"].as_array().unwrap() {
        csv.push_str(&format!("{},VIP\n", r["Id"].as_str().unwrap()));
    }
    let job = org.ingest(json!({"object": "Contact", "operation": "update"}), &csv);
    assert_eq!(job["numberRecordsFailed"], 0, "{job}");
    eventually("110 VIP webhooks", || {
        rx.received("/vip", Mode::Ok).len() >= 110 && deliveries(&org, "state=all").is_empty()
    });
    assert_eq!(rx.received("/vip", Mode::Ok).len(), 110);
}

#[test]
fn outbound_messages_send_a_session_id_the_receiver_can_call_back_with() {
    let rx = Receiver::start();
    let org = Org::start("flows-om-session");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/flows/No_User"),
        Some(json!({"object": "Account", "actions": [{"type": "outbound_message",
            "name": "Om_No_User", "endpoint": rx.url("/x"), "fields": ["Id"], "include_session_id": true}]})),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b[0]["message"].as_str().unwrap().contains("`user`"), "{b}");
    put_flow(
        &org,
        "With_Session",
        json!({"object": "Account", "on": ["create"], "actions": [{"type": "outbound_message",
            "name": "Om_Session", "endpoint": rx.url("/om"), "fields": ["Id", "Name"],
            "include_session_id": true, "user": crate::harness::USERNAME}]}),
    );
    let id = org.create("Account", json!({"Name": "Call Me Back"}));
    eventually("the Outbound Message", || {
        !rx.received("/om", Mode::Ok).is_empty()
    });
    let xml = &rx.received("/om", Mode::Ok)[0].body;
    let session = xml
        .split("<SessionId>")
        .nth(1)
        .and_then(|s| s.split("</SessionId>").next())
        .unwrap_or_else(|| panic!("no session id in {xml}"));
    let partner = xml
        .split("<PartnerUrl>")
        .nth(1)
        .and_then(|s| s.split("</PartnerUrl>").next())
        .unwrap();
    assert!(partner.contains("/services/Soap/u/"), "{partner}");
    // The receiver calls back with it.
    let r = org
        .http
        .get(org.data(&format!("/sobjects/Account/{id}")))
        .bearer_auth(session)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let rec: Value = r.json().unwrap();
    assert_eq!(rec["Name"], "Call Me Back");
}

//! A lean Bayeux long-polling load generator for the streaming benchmark: N subscribers and a
//! publisher in one multi-threaded process, driving Conflux or a peer Bayeux server the same
//! way, so the server (not the client) is what gets measured.
//!
//! ```text
//! bayeux_load conflux URL TOKEN PID [SUBSCRIBERS STEADY_SECS BURST WINDOW HELD]
//! bayeux_load bayeux  URL -     PID [SUBSCRIBERS STEADY_SECS BURST WINDOW]
//! ```
//!
//! `conflux`: subscribers on `/event/Bench_Tick__e` of `URL/cometd/59.0` (created here), publishes
//! through REST (one `POST /sobjects/Bench_Tick__e` per message at the steady rate,
//! `POST /composite/sobjects` of WINDOW events in the burst; both durable when answered).
//! `bayeux`: a peer server at `URL` (faye, cometd-nodejs-server); the publisher is a Bayeux
//! client publishing to `/bench/ticks`, a burst window as one batch (one POST). Peers get the
//! same message shape Conflux delivers (schema, payload with CreatedDate, CreatedById and the
//! stamp, event with EventUuid and replayId), so every server moves the same bytes.
//!
//! Phases: a steady 174 messages/s for STEADY_SECS (latency from the publish call to each
//! delivery: p50/p99), a burst of BURST messages with at most WINDOW unacknowledged (deliveries
//! per second until the last delivery), then (Conflux) HELD more subscribers held at once with
//! the server's resident memory. CPU seconds of the server (from /proc/PID/stat) and of this
//! process are reported per phase. Prints one JSON object on stdout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

/// Messages per second in the steady phase (the performance anchors' rate).
const RATE: u64 = 174;
const CHANNEL_CONFLUX: &str = "/event/Bench_Tick__e";
const CHANNEL_PEER: &str = "/bench/ticks";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conflux,
    Peer,
}

/// Process-wide clock: milliseconds since start, as stamped into messages.
fn now_ms(epoch: Instant) -> f64 {
    epoch.elapsed().as_secs_f64() * 1000.0
}

/// CPU seconds (user + system) of process `pid` (`self` for this one).
fn cpu_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What the subscribers share: counters, and the latencies of the steady phase.
struct Sink {
    epoch: Instant,
    delivered: AtomicU64,
    last_ms: Mutex<f64>,
    record_latency: AtomicBool,
    latencies: Mutex<Vec<f64>>,
    stop: AtomicBool,
}

impl Sink {
    fn got(&self, stamps: &[f64]) {
        if stamps.is_empty() {
            return;
        }
        let t = now_ms(self.epoch);
        self.delivered
            .fetch_add(stamps.len() as u64, Ordering::Relaxed);
        *self.last_ms.lock().unwrap() = t;
        if self.record_latency.load(Ordering::Relaxed) {
            self.latencies
                .lock()
                .unwrap()
                .extend(stamps.iter().map(|s| t - s));
        }
    }
}

/// A delivered or meta message; only what the generator reads.
#[derive(Deserialize)]
struct Msg {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    successful: Option<bool>,
    #[serde(default, rename = "clientId")]
    client_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

type Http = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// One Bayeux client on its own connection (a bare hyper client: the load generator should cost
/// as little as it can per request).
struct Bayeux {
    http: Http,
    url: http::Uri,
    auth: Option<String>,
    cookie: Mutex<Option<String>>,
    client_id: String,
    next_id: AtomicU64,
    /// The connection the handshake and subscribe go over, which the connect loop then keeps
    /// (one connection per subscriber, opened while subscribers are set up a few at a time);
    /// later requests (publishes, the disconnect) go through `http`.
    conn: tokio::sync::Mutex<Option<tokio::net::TcpStream>>,
}

impl Bayeux {
    async fn handshake(url: &str, auth: Option<&str>) -> Result<Bayeux> {
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(4)
                .build_http();
        let mut b = Bayeux {
            http,
            url: url.parse().context("Bayeux URL")?,
            auth: auth.map(str::to_string),
            cookie: Mutex::new(None),
            client_id: String::new(),
            next_id: AtomicU64::new(1),
            conn: tokio::sync::Mutex::new(None),
        };
        *b.conn.get_mut() = Some(b.open().await?);
        let reply = b
            .post(&json!([{
                "channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
                "supportedConnectionTypes": ["long-polling"], "id": "0"
            }]))
            .await?;
        let hs = reply
            .into_iter()
            .find(|m| m.channel == "/meta/handshake")
            .ok_or_else(|| anyhow!("no handshake reply"))?;
        if hs.successful != Some(true) {
            bail!("handshake refused: {:?}", hs.error);
        }
        b.client_id = hs.client_id.ok_or_else(|| anyhow!("no clientId"))?;
        Ok(b)
    }

    fn id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    async fn post(&self, body: &Value) -> Result<Vec<Msg>> {
        let bytes = self.post_raw(serde_json::to_vec(body)?).await?;
        serde_json::from_slice(&bytes).context("Bayeux reply")
    }

    async fn post_raw(&self, body: Vec<u8>) -> Result<bytes::Bytes> {
        use http_body_util::BodyExt;
        if let Some(stream) = self.conn.lock().await.as_mut() {
            let mut req = Vec::with_capacity(512 + body.len());
            self.request_head(&mut req, body.len());
            req.extend_from_slice(&body);
            let reply = exchange(stream, &req, &mut Vec::new())
                .await
                .map_err(|e| anyhow!("Bayeux POST: {e}"))?;
            return self.accept(reply).map(Into::into);
        }
        let mut req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(a) = &self.auth {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        if let Some(c) = self.cookie.lock().unwrap().clone() {
            req = req.header(http::header::COOKIE, c);
        }
        let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let resp = tokio::time::timeout(Duration::from_secs(150), self.http.request(req))
            .await
            .context("Bayeux POST timed out")?
            .context("Bayeux POST")?;
        if let Some(c) = resp
            .headers()
            .get(http::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
        {
            let pair = c.split(';').next().unwrap_or_default().to_string();
            *self.cookie.lock().unwrap() = Some(pair);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(bytes)
    }

    async fn subscribe(&self, channel: &str) -> Result<()> {
        let reply = self
            .post(&json!([{
                "channel": "/meta/subscribe", "clientId": self.client_id,
                "subscription": channel, "id": self.id()
            }]))
            .await?;
        match reply.iter().find(|m| m.channel == "/meta/subscribe") {
            Some(m) if m.successful == Some(true) => Ok(()),
            Some(m) => bail!("subscribe refused: {:?}", m.error),
            None => bail!("no subscribe reply"),
        }
    }

    /// Connects until `sink.stop`, handing every delivery's stamp to the sink. The connects go
    /// over one keep-alive connection spoken to directly (one write per request, the reply read
    /// into one buffer: no connection pool, no task per connection), and replies are not parsed:
    /// the stamps are found by scanning for the stamp field (only data messages carry it). This
    /// keeps the client's cost per delivery far below any server's, so that on a shared machine
    /// the server, not the client, is what the latency measures.
    async fn connect_loop(&self, sink: &Sink) -> Result<()> {
        let finder = memchr::memmem::Finder::new(b"\"T__c\":");
        let mut stamps = Vec::new();
        let mut conn = self.conn.lock().await.take();
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut req = Vec::with_capacity(1024);
        while !sink.stop.load(Ordering::Relaxed) {
            let body = format!(
                r#"[{{"channel":"/meta/connect","clientId":"{}","connectionType":"long-polling","id":"{}"}}]"#,
                self.client_id,
                self.id()
            );
            self.request_head(&mut req, body.len());
            req.extend_from_slice(body.as_bytes());
            let stream = match conn.as_mut() {
                Some(s) => s,
                None => conn.insert(self.open().await?),
            };
            let reply = match tokio::time::timeout(
                Duration::from_secs(150),
                exchange(stream, &req, &mut buf),
            )
            .await
            .context("Bayeux connect timed out")?
            {
                Ok(r) => r,
                // The server closed an idle keep-alive connection: once more on a new one.
                Err(Exchange::Closed) => {
                    let stream = conn.insert(self.open().await?);
                    exchange(stream, &req, &mut buf)
                        .await
                        .map_err(|e| anyhow!("Bayeux connect: {e}"))?
                }
                Err(e) => bail!("Bayeux connect: {e}"),
            };
            if reply.close {
                conn = None;
            }
            let body = self.accept(reply)?;
            if memchr::memmem::find(&body, b"\"successful\":false").is_some() {
                bail!("connect failed: {}", String::from_utf8_lossy(&body));
            }
            stamps.clear();
            for at in finder.find_iter(&body) {
                let rest = &body[at + 7..];
                let end = rest
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'.' | b'-' | b'e' | b'E' | b'+'))
                    .unwrap_or(rest.len());
                if let Some(t) = std::str::from_utf8(&rest[..end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    stamps.push(t);
                }
            }
            sink.got(&stamps);
        }
        Ok(())
    }

    /// Keeps a reply's cookie; its body, when the status is 200.
    fn accept(&self, reply: Reply) -> Result<Vec<u8>> {
        if let Some(c) = reply.cookie {
            *self.cookie.lock().unwrap() = Some(c);
        }
        if reply.status != 200 {
            bail!(
                "HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        Ok(reply.body)
    }

    /// A new connection to the server, without Nagle's delay.
    async fn open(&self) -> Result<tokio::net::TcpStream> {
        let host = self
            .url
            .authority()
            .context("Bayeux URL has no host")?
            .as_str();
        let s = tokio::net::TcpStream::connect(host)
            .await
            .with_context(|| format!("cannot connect to {host}"))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// The head of a POST of `len` JSON bytes to the Bayeux URL, into `out`.
    fn request_head(&self, out: &mut Vec<u8>, len: usize) {
        use std::io::Write as _;
        out.clear();
        let path = self.url.path_and_query().map_or("/", |p| p.as_str());
        let host = self.url.authority().map_or("", |a| a.as_str());
        let _ = write!(
            out,
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n"
        );
        if let Some(a) = &self.auth {
            let _ = write!(out, "Authorization: {a}\r\n");
        }
        if let Some(c) = self.cookie.lock().unwrap().as_deref() {
            let _ = write!(out, "Cookie: {c}\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    async fn disconnect(&self) {
        let _ = self
            .post(&json!([{"channel": "/meta/disconnect", "clientId": self.client_id, "id": self.id()}]))
            .await;
    }
}

/// One HTTP/1.1 reply, as the connect loop needs it.
struct Reply {
    status: u16,
    body: Vec<u8>,
    /// The `name=value` of a `Set-Cookie` header.
    cookie: Option<String>,
    /// Whether the server will close the connection after this reply.
    close: bool,
}

/// Why an exchange failed.
enum Exchange {
    /// The connection was closed before any of the reply arrived.
    Closed,
    Io(std::io::Error),
    Malformed(String),
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exchange::Closed => f.write_str("the server closed the connection"),
            Exchange::Io(e) => write!(f, "{e}"),
            Exchange::Malformed(m) => write!(f, "malformed reply: {m}"),
        }
    }
}

/// Writes `req` and reads one reply (`Content-Length` or chunked) on `stream`.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::result::Result<Reply, Exchange> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(req).await.map_err(Exchange::Io)?;
    buf.clear();
    let (head, mut reply, length, chunked) = loop {
        if stream.read_buf(buf).await.map_err(Exchange::Io)? == 0 {
            return Err(if buf.is_empty() {
                Exchange::Closed
            } else {
                Exchange::Malformed("connection closed inside a reply".into())
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        let head = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(Exchange::Malformed(e.to_string())),
        };
        let mut reply = Reply {
            status: r.code.unwrap_or(0),
            body: Vec::new(),
            cookie: None,
            close: false,
        };
        let (mut length, mut chunked) = (None, false);
        for h in r.headers.iter() {
            let v = std::str::from_utf8(h.value).unwrap_or_default();
            if h.name.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if h.name.eq_ignore_ascii_case("set-cookie") {
                reply.cookie = v.split(';').next().map(str::to_string);
            } else if h.name.eq_ignore_ascii_case("connection") {
                reply.close = v.eq_ignore_ascii_case("close");
            }
        }
        break (head, reply, length, chunked);
    };
    loop {
        let rest = &buf[head..];
        if chunked {
            if let Some(body) = dechunk(rest).map_err(Exchange::Malformed)? {
                reply.body = body;
                return Ok(reply);
            }
        } else {
            let want = length.ok_or_else(|| Exchange::Malformed("no Content-Length".into()))?;
            if rest.len() >= want {
                reply.body = rest[..want].to_vec();
                return Ok(reply);
            }
        }
        if stream.read_buf(buf).await.map_err(Exchange::Io)? == 0 {
            return Err(Exchange::Malformed(
                "connection closed inside a reply".into(),
            ));
        }
    }
}

/// A chunked body once all of it is in `data` (`None` until then).
fn dechunk(mut data: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = memchr::memmem::find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            // No trailers expected: the last chunk ends with an empty line.
            return Ok(data.starts_with(b"\r\n").then_some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Publishes messages stamped with the given times; resolves once the server acknowledged them.
#[derive(Clone)]
enum Publisher {
    Conflux {
        /// The same bare hyper client the Bayeux side uses, so publishing costs every server
        /// alike.
        http: Http,
        base: String,
        token: String,
    },
    Peer(Arc<Bayeux>),
}

/// The `data` a peer publishes: Conflux's platform event message shape and size.
fn peer_data(t: f64, n: u64) -> Value {
    json!({
        "schema": "Hq1zAQwOAeVh4Zb8eXE2Cw",
        "payload": {"CreatedDate": "2026-12-02T14:43:55.123Z", "CreatedById": "005Ny4000000001AAA", "T__c": t},
        "event": {"EventUuid": format!("2ec0e371-9c1f-4f7e-9a43-{n:012}"), "replayId": n}
    })
}

impl Publisher {
    async fn publish(&self, ts: &[f64]) -> Result<()> {
        match self {
            Publisher::Conflux { http, base, token } => {
                let (path, body) = if ts.len() == 1 {
                    (
                        "/sobjects/Bench_Tick__e".to_string(),
                        json!({"T__c": ts[0]}),
                    )
                } else {
                    let records: Vec<Value> = ts
                        .iter()
                        .map(|t| json!({"attributes": {"type": "Bench_Tick__e"}, "T__c": t}))
                        .collect();
                    (
                        "/composite/sobjects".to_string(),
                        json!({"allOrNone": true, "records": records}),
                    )
                };
                use http_body_util::BodyExt;
                let req = http::Request::post(format!("{base}/services/data/v59.0{path}"))
                    .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(
                        serde_json::to_vec(&body)?,
                    )))?;
                let resp = http.request(req).await.context("publish")?;
                let status = resp.status();
                let bytes = resp.into_body().collect().await?.to_bytes();
                if !status.is_success() {
                    bail!(
                        "publish: HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                Ok(())
            }
            Publisher::Peer(b) => {
                let batch: Vec<Value> = ts
                    .iter()
                    .map(|t| {
                        let n = b.next_id.fetch_add(1, Ordering::Relaxed);
                        json!({"channel": CHANNEL_PEER, "clientId": b.client_id,
                               "data": peer_data(*t, n), "id": n.to_string()})
                    })
                    .collect();
                let reply = b.post(&Value::Array(batch)).await?;
                let acks = reply.iter().filter(|m| m.channel == CHANNEL_PEER).count();
                if acks < ts.len() || reply.iter().any(|m| m.successful == Some(false)) {
                    bail!("publish not acknowledged ({acks} of {})", ts.len());
                }
                Ok(())
            }
        }
    }
}

async fn rest(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Result<()> {
    let resp = http
        .post(format!("{base}/services/data/v59.0{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() && !text.contains("DUPLICATE") {
        bail!("POST {path}: {status} {text}");
    }
    Ok(())
}

struct Subscribers {
    clients: Vec<Arc<Bayeux>>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

async fn subscribe_all(
    url: &str,
    auth: Option<&str>,
    channel: &str,
    n: usize,
    sink: &Arc<Sink>,
) -> Result<Subscribers> {
    let mut clients = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let (url, auth, channel) = (
                url.to_string(),
                auth.map(str::to_string),
                channel.to_string(),
            );
            set.spawn(async move {
                let b = Bayeux::handshake(&url, auth.as_deref()).await?;
                b.subscribe(&channel).await?;
                anyhow::Ok(Arc::new(b))
            });
        }
        while let Some(r) = set.join_next().await {
            clients.push(r??);
        }
    }
    let tasks = clients
        .iter()
        .map(|b| {
            let (b, sink) = (b.clone(), sink.clone());
            tokio::spawn(async move { b.connect_loop(&sink).await })
        })
        .collect();
    Ok(Subscribers { clients, tasks })
}

impl Subscribers {
    /// Stops the connect loops (each ends after its held connect returns) and disconnects.
    async fn finish(self, sink: &Sink) -> Result<()> {
        sink.stop.store(true, Ordering::Relaxed);
        for c in &self.clients {
            c.disconnect().await;
        }
        for t in self.tasks {
            if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), t).await {
                eprintln!("    subscriber ended with: {e:#}");
            }
        }
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * sorted.len() as f64)
        .floor()
        .min(sorted.len() as f64 - 1.0) as usize]
}

async fn wait_for(sink: &Sink, want: u64, limit: Duration) {
    let end = Instant::now() + limit;
    while sink.delivered.load(Ordering::Relaxed) < want && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        bail!("usage: bayeux_load conflux|bayeux URL TOKEN|- PID [SUBSCRIBERS STEADY_SECS BURST WINDOW HELD]");
    }
    let kind = match a[0].as_str() {
        "conflux" => Kind::Conflux,
        "bayeux" => Kind::Peer,
        other => bail!("unknown server kind {other:?}"),
    };
    let (base, token, pid) = (a[1].clone(), a[2].clone(), a[3].clone());
    let num = |i: usize, d: u64| a.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(d);
    let (subs, steady_secs, burst, window, held) = (
        num(4, 100) as usize,
        num(5, 10),
        num(6, 2000),
        num(7, 50),
        num(8, 2000) as usize,
    );

    let http = reqwest::Client::builder().no_proxy().build()?;
    let (url, auth, channel) = match kind {
        Kind::Conflux => {
            rest(&http, &base, &token, "/tooling/sobjects/CustomObject", json!({
                "FullName": "Bench_Tick__e",
                "Metadata": {"label": "Bench Tick", "pluralLabel": "Bench Ticks", "publishBehavior": "PublishAfterCommit"}
            })).await?;
            rest(
                &http,
                &base,
                &token,
                "/tooling/sobjects/CustomField",
                json!({
                    "FullName": "Bench_Tick__e.T__c",
                    "Metadata": {"type": "Number", "label": "T", "precision": 18, "scale": 3}
                }),
            )
            .await?;
            (
                format!("{base}/cometd/59.0"),
                Some(format!("Bearer {token}")),
                CHANNEL_CONFLUX,
            )
        }
        Kind::Peer => (base.clone(), None, CHANNEL_PEER),
    };
    let publisher = match kind {
        Kind::Conflux => Publisher::Conflux {
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build_http(),
            base: base.clone(),
            token: token.clone(),
        },
        Kind::Peer => Publisher::Peer(Arc::new(Bayeux::handshake(&url, None).await?)),
    };
    // A peer's publisher keeps its session alive with connects of its own.
    let keepalive_sink = Arc::new(Sink {
        epoch: Instant::now(),
        delivered: AtomicU64::new(0),
        last_ms: Mutex::new(0.0),
        record_latency: AtomicBool::new(false),
        latencies: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let keepalive = if let Publisher::Peer(b) = &publisher {
        let (b, s) = (b.clone(), keepalive_sink.clone());
        Some(tokio::spawn(async move { b.connect_loop(&s).await }))
    } else {
        None
    };

    let sink = Arc::new(Sink {
        epoch: Instant::now(),
        delivered: AtomicU64::new(0),
        last_ms: Mutex::new(0.0),
        record_latency: AtomicBool::new(true),
        latencies: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    eprintln!("    subscribing {subs} clients");
    let group = subscribe_all(&url, auth.as_deref(), channel, subs, &sink).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Steady: RATE messages per second, each its own publish, not waiting for the previous.
    eprintln!("    steady {RATE} msgs/s for {steady_secs} s");
    let total = RATE * steady_secs;
    let cpu0 = (cpu_of(&pid), cpu_of("self"));
    let start = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for k in 0..total {
        let due = start + Duration::from_micros(k * 1_000_000 / RATE);
        tokio::time::sleep_until(due.into()).await;
        let (p, t) = (publisher.clone(), now_ms(sink.epoch));
        pending.spawn(async move { p.publish(&[t]).await });
    }
    while let Some(r) = pending.join_next().await {
        r??;
    }
    let sent_secs = start.elapsed().as_secs_f64();
    wait_for(&sink, total * subs as u64, Duration::from_secs(30)).await;
    let cpu1 = (cpu_of(&pid), cpu_of("self"));
    sink.record_latency.store(false, Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *sink.latencies.lock().unwrap());
    lat.sort_by(f64::total_cmp);
    let steady = json!({
        "sent": total, "delivered": sink.delivered.load(Ordering::Relaxed),
        "expected": total * subs as u64, "rate": total as f64 / sent_secs,
        "p50": percentile(&lat, 50.0), "p99": percentile(&lat, 99.0),
        "serverCpu": cpu1.0 - cpu0.0, "clientCpu": cpu1.1 - cpu0.1,
    });

    // Burst: BURST messages, at most WINDOW unacknowledged.
    eprintln!("    burst of {burst} (window {window})");
    let before = sink.delivered.load(Ordering::Relaxed);
    let cpu0 = (cpu_of(&pid), cpu_of("self"));
    let t0 = now_ms(sink.epoch);
    let mut k = 0;
    while k < burst {
        let n = window.min(burst - k);
        let ts: Vec<f64> = (0..n).map(|_| now_ms(sink.epoch)).collect();
        publisher.publish(&ts).await?;
        k += n;
    }
    let want = before + burst * subs as u64;
    wait_for(&sink, want, Duration::from_secs(60)).await;
    let cpu1 = (cpu_of(&pid), cpu_of("self"));
    let got = sink.delivered.load(Ordering::Relaxed) - before;
    let secs = (*sink.last_ms.lock().unwrap() - t0) / 1000.0;
    let burst_result = json!({
        "delivered": got, "expected": burst * subs as u64, "seconds": secs,
        "rate": got as f64 / secs,
        "serverCpu": cpu1.0 - cpu0.0, "clientCpu": cpu1.1 - cpu0.1,
    });
    group.finish(&sink).await?;

    let mut out = json!({"steady": steady, "burst": burst_result});
    if kind == Kind::Conflux && held > 0 {
        eprintln!("    {held} subscribers held at once");
        let rss_before = rss_mb(&pid);
        let hsink = Arc::new(Sink {
            epoch: sink.epoch,
            delivered: AtomicU64::new(0),
            last_ms: Mutex::new(0.0),
            record_latency: AtomicBool::new(false),
            latencies: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let group = subscribe_all(&url, auth.as_deref(), channel, held, &hsink).await?;
        tokio::time::sleep(Duration::from_secs(2)).await; // every client is in a held connect
        let rss_held = rss_mb(&pid);
        let t0 = Instant::now();
        publisher.publish(&[now_ms(sink.epoch)]).await?;
        wait_for(&hsink, held as u64, Duration::from_secs(60)).await;
        let fanout = t0.elapsed().as_secs_f64();
        let seen = hsink.delivered.load(Ordering::Relaxed);
        group.finish(&hsink).await?;
        out["held"] = json!({"clients": held, "delivered": seen, "rssBeforeMb": rss_before,
                             "rssHeldMb": rss_held, "fanoutSeconds": fanout});
    }
    keepalive_sink.stop.store(true, Ordering::Relaxed);
    if let (Publisher::Peer(b), Some(t)) = (&publisher, keepalive) {
        b.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    println!("{out}");
    Ok(())
}

//! The Streaming API: Bayeux (CometD) long polling at `/cometd/NN.N`, wire compatible with
//! Salesforce's — handshake, connect (held until events arrive), subscribe with the replay
//! extension, unsubscribe, disconnect. Events come from the org's event bus; each subscription
//! keeps its position in the replay id sequence. Bayeux-level errors travel as HTTP 200 with the
//! error in the message (`"400::…"`), as real clients expect; their texts use only the
//! characters faye's error grammar accepts (letters, digits, space and `-_!~()$@/*.`), or faye
//! cannot read the code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{json, Map, Value as Json};
use service::events::{ChannelRefusal, Selection};
use service::{Org, Principal};
use tokio::sync::Notify;

use crate::AppState;

/// Largest request body Salesforce accepts on the Streaming API.
const MAX_BODY: usize = 32 * 1024;
/// A client that has not connected for this long after its last reply is forgotten
/// (Salesforce: 40 s).
const CLIENT_EXPIRY: Duration = Duration::from_secs(40);
/// Events in one reply, at most.
const EVENTS_PER_REPLY: usize = 1_000;
/// Oldest API version the Streaming API serves.
const MIN_VERSION: f64 = 37.0;

/// The Streaming API clients of a server.
#[derive(Default)]
pub struct Streaming {
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("clients", &self.clients.lock().len())
            .finish()
    }
}

impl Streaming {
    fn sweep(&self) {
        let now = Instant::now();
        self.clients.lock().retain(|_, c| c.alive(now));
    }

    fn get(&self, id: &str, p: &Principal) -> Option<Arc<Client>> {
        let c = self.clients.lock().get(id).cloned()?;
        if c.user_seq != p.user_seq || !c.alive(Instant::now()) {
            return None;
        }
        Some(c)
    }
}

struct Client {
    id: String,
    user_seq: u64,
    subs: Mutex<Vec<Sub>>,
    /// Ends a held connect (a newer connect, a disconnect).
    kick: Notify,
    /// Tells a held connect that the subscriptions changed (it waits on new positions).
    changed: Notify,
    /// Connects being held now.
    holding: AtomicUsize,
    last_seen: Mutex<Instant>,
    /// Whether the first connect (which carries the full advice) was answered.
    advised: AtomicBool,
}

impl Client {
    fn alive(&self, now: Instant) -> bool {
        self.holding.load(Ordering::Acquire) > 0
            || now.duration_since(*self.last_seen.lock()) < CLIENT_EXPIRY
    }

    fn touch(&self) {
        *self.last_seen.lock() = Instant::now();
    }
}

struct Sub {
    channel: String,
    /// `{"channel":"<channel>","data":` — the start of every data message, escaped once.
    prefix: String,
    select: Selection,
    /// Every event of the channel up to this replay id was delivered (or skipped by the
    /// subscription's replay option).
    cursor: u64,
}

/// `/cometd/{version}` (and anything below it, which the cometd client may append). Takes the
/// request whole: every long-polling client sends a request per delivery, and the extractors
/// for path parameters and headers would copy them each time.
pub async fn endpoint(State(state): State<AppState>, req: Request) -> Response {
    let version = req
        .uri()
        .path()
        .strip_prefix("/cometd/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    match version.parse::<f64>() {
        Ok(v) if v >= MIN_VERSION && version.contains('.') => {}
        Ok(_) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "Unsupported API version. Only API versions '37.0' and later are supported.",
            )
        }
        Err(_) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "API version in the URI is mandatory. URI format: '/cometd/62.0'",
            )
        }
    }
    if req.method() != Method::POST {
        // WebSocket upgrade probes (faye, the cometd client) must fail so clients fall back to
        // long polling.
        return http_error(
            StatusCode::BAD_REQUEST,
            "The Streaming API serves long polling only: POST Bayeux messages.",
        );
    }
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Maximum Request Size Exceeded",
        );
    };
    let messages: Vec<Map<String, Json>> = match serde_json::from_slice::<Json>(&body) {
        Ok(Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for m in items {
                match m {
                    Json::Object(o) => out.push(o),
                    _ => {
                        return http_error(
                            StatusCode::BAD_REQUEST,
                            "Every Bayeux message must be a JSON object.",
                        )
                    }
                }
            }
            out
        }
        Ok(Json::Object(o)) => vec![o],
        _ => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "The request body must be a JSON array of Bayeux messages.",
            )
        }
    };
    let principal = crate::rest::token_from_headers(&headers)
        .ok_or("401::Request requires authentication")
        .and_then(|t| {
            state
                .org
                .authenticate(&t)
                .map_err(|_| "401::Authentication invalid")
        });
    let mut replies = Replies::default();
    let mut cookie = false;
    let mut connect: Option<Map<String, Json>> = None;
    for m in messages {
        let channel = m.get("channel").and_then(Json::as_str).unwrap_or("");
        let p = match &principal {
            Ok(p) => p,
            Err(reason) => {
                replies.push(&auth_failure(&m, channel, reason));
                continue;
            }
        };
        match channel {
            "/meta/handshake" => {
                let (reply, ok) = handshake(&state, p, &m);
                cookie |= ok;
                replies.push(&reply);
            }
            "/meta/connect" => {
                // Answered last: the connect may wait for events.
                if let Some(earlier) = connect.replace(m) {
                    replies.push(&meta_error(
                        &earlier,
                        "/meta/connect",
                        "400::Only one connect per request",
                    ));
                }
            }
            "/meta/subscribe" => replies.push(&subscribe(&state, p, &m)),
            "/meta/unsubscribe" => replies.push(&unsubscribe(&state, p, &m)),
            "/meta/disconnect" => replies.push(&disconnect(&state, p, &m)),
            c if c.starts_with("/meta/") => {
                replies.push(&meta_error(&m, c, "400::Unknown meta channel"))
            }
            "" => replies.push(&meta_error(&m, "", "400::Channel name not specified")),
            c => replies.push(&meta_error(
                &m,
                c,
                "403::Publishing to a channel is not supported - publish events through the REST API",
            )),
        }
    }
    if let (Some(m), Ok(p)) = (connect, &principal) {
        connect_reply(&state, p, &m, &mut replies).await;
    }
    let mut resp = (StatusCode::OK, Body::from(replies.finish())).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if cookie {
        let value = format!("BAYEUX_BROWSER={}; Path=/; HttpOnly", random_token(16));
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The reply body being built: a JSON array of messages, written straight into one buffer.
struct Replies {
    body: String,
}

impl Default for Replies {
    fn default() -> Replies {
        Replies {
            body: String::from("["),
        }
    }
}

impl Replies {
    /// Starts the next message: the separator, if one is needed.
    fn next(&mut self) -> &mut String {
        if self.body.len() > 1 {
            self.body.push(',');
        }
        &mut self.body
    }

    fn push(&mut self, m: &Json) {
        use std::fmt::Write as _;
        let _ = write!(self.next(), "{m}");
    }

    /// A successful connect reply (what [`reply_to`] and `"successful": true` would give, with
    /// the advice if any), written without building it first: there is one per delivery.
    fn push_connected(&mut self, m: &Map<String, Json>, advice: Option<&Json>) {
        use std::fmt::Write as _;
        let b = self.next();
        b.push('{');
        if let Some(c) = m.get("clientId") {
            let _ = write!(b, "\"clientId\":{c},");
        }
        b.push_str("\"channel\":\"/meta/connect\",");
        if let Some(id) = m.get("id") {
            let _ = write!(b, "\"id\":{id},");
        }
        if let Some(a) = advice {
            let _ = write!(b, "\"advice\":{a},");
        }
        b.push_str("\"successful\":true}");
    }

    fn finish(mut self) -> String {
        self.body.push(']');
        self.body
    }
}

fn http_error(status: StatusCode, message: &str) -> Response {
    let body = json!([{"successful": false, "error": format!("{}::{message}", status.as_u16())}]);
    let mut resp = (status, Body::from(body.to_string())).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

fn random_token(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A reply skeleton: the message's channel and id (echoed exactly, same JSON type), and the
/// client id when the message had one.
fn reply_to(m: &Map<String, Json>, channel: &str) -> Map<String, Json> {
    let mut r = Map::new();
    if let Some(c) = m.get("clientId") {
        r.insert("clientId".into(), c.clone());
    }
    r.insert("channel".into(), Json::String(channel.into()));
    if let Some(id) = m.get("id") {
        r.insert("id".into(), id.clone());
    }
    r
}

fn meta_error(m: &Map<String, Json>, channel: &str, error: &str) -> Json {
    let mut r = reply_to(m, channel);
    if let Some(s) = m.get("subscription") {
        r.insert("subscription".into(), s.clone());
    }
    r.insert("error".into(), Json::String(error.into()));
    r.insert("successful".into(), Json::Bool(false));
    Json::Object(r)
}

fn auth_failure(m: &Map<String, Json>, channel: &str, reason: &str) -> Json {
    let mut r = reply_to(m, channel);
    r.insert("advice".into(), json!({"reconnect": "none", "interval": 0}));
    if channel == "/meta/handshake" {
        r.insert(
            "ext".into(),
            json!({"sfdc": {"failureReason": reason}, "replay": true, "payload.format": true}),
        );
        r.insert("error".into(), Json::String("403::Handshake denied".into()));
    } else {
        r.insert("error".into(), Json::String(reason.into()));
    }
    r.insert("successful".into(), Json::Bool(false));
    Json::Object(r)
}

fn unknown_client(m: &Map<String, Json>, channel: &str) -> Json {
    let mut r = reply_to(m, channel);
    r.insert(
        "advice".into(),
        json!({"interval": 0, "reconnect": "handshake"}),
    );
    r.insert("error".into(), Json::String("403::Unknown client".into()));
    r.insert("successful".into(), Json::Bool(false));
    Json::Object(r)
}

fn handshake(state: &AppState, p: &Principal, m: &Map<String, Json>) -> (Json, bool) {
    let long_polling = m
        .get("supportedConnectionTypes")
        .and_then(Json::as_array)
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("long-polling")));
    if !long_polling {
        let offered: Vec<&str> = m
            .get("supportedConnectionTypes")
            .and_then(Json::as_array)
            .map(|t| t.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let offered = offered.join(" ");
        return (
            meta_error(
                m,
                "/meta/handshake",
                &format!("400::Invalid connection type {offered}"),
            ),
            false,
        );
    }
    let streaming = &state.streaming;
    streaming.sweep();
    let max = state.org.config().streaming_max_clients;
    let id = random_token(28);
    {
        let mut clients = streaming.clients.lock();
        if clients.len() >= max {
            drop(clients);
            let mut r = reply_to(m, "/meta/handshake");
            r.insert("advice".into(), json!({"reconnect": "none"}));
            r.insert(
                "ext".into(),
                json!({"sfdc": {"failureReason": "403::To protect all customers from excessive use and Denial of Service attacks, we limit the number of simultaneous connections per server. Your request was denied because this limit was reached. Please try again later."}, "replay": true, "payload.format": true}),
            );
            r.insert("error".into(), Json::String("403::Handshake denied".into()));
            r.insert("successful".into(), Json::Bool(false));
            return (Json::Object(r), false);
        }
        clients.insert(
            id.clone(),
            Arc::new(Client {
                id: id.clone(),
                user_seq: p.user_seq,
                subs: Mutex::new(Vec::new()),
                kick: Notify::new(),
                changed: Notify::new(),
                holding: AtomicUsize::new(0),
                last_seen: Mutex::new(Instant::now()),
                advised: AtomicBool::new(false),
            }),
        );
    }
    let mut r = Map::new();
    r.insert(
        "ext".into(),
        json!({"replay": true, "payload.format": true}),
    );
    r.insert("minimumVersion".into(), Json::String("1.0".into()));
    r.insert("clientId".into(), Json::String(id));
    r.insert("supportedConnectionTypes".into(), json!(["long-polling"]));
    r.insert("channel".into(), Json::String("/meta/handshake".into()));
    if let Some(mid) = m.get("id") {
        r.insert("id".into(), mid.clone());
    }
    r.insert("version".into(), Json::String("1.0".into()));
    r.insert("successful".into(), Json::Bool(true));
    (Json::Object(r), true)
}

fn client_of(state: &AppState, p: &Principal, m: &Map<String, Json>) -> Option<Arc<Client>> {
    let id = m.get("clientId").and_then(Json::as_str)?;
    state.streaming.get(id, p)
}

/// The replay option a subscribe asks for on `channel` (`-1` when none).
fn replay_option(m: &Map<String, Json>, channel: &str) -> Result<i64, ()> {
    let Some(ext) = m.get("ext").and_then(|e| e.get("replay")) else {
        return Ok(-1);
    };
    match ext.get(channel) {
        None | Some(Json::Null) => Ok(-1),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or(()),
    }
}

fn subscribe(state: &AppState, p: &Principal, m: &Map<String, Json>) -> Json {
    let Some(client) = client_of(state, p, m) else {
        return unknown_client(m, "/meta/subscribe");
    };
    client.touch();
    let channel = match m.get("subscription") {
        Some(Json::String(s)) => s.clone(),
        _ => return meta_error(m, "/meta/subscribe", "400::Channel name not specified"),
    };
    if channel.is_empty() {
        return meta_error(m, "/meta/subscribe", "400::Channel name not specified");
    }
    if !channel.starts_with('/') {
        return meta_error(
            m,
            "/meta/subscribe",
            "400::Channel subscriptions must start with a leading /",
        );
    }
    let org: &Org = &state.org;
    let select = match org.channel_selection(p, &channel) {
        Ok(s) => s,
        Err(ChannelRefusal::NotFound) => {
            return meta_error(
                m,
                "/meta/subscribe",
                &format!("400::The channel you requested to subscribe to does not exist {channel}"),
            )
        }
        Err(ChannelRefusal::Forbidden) => {
            return meta_error(
                m,
                "/meta/subscribe",
                &format!("403::You do not have permission to subscribe to {channel}"),
            )
        }
    };
    let bounds = match org.events().bounds() {
        Ok(b) => b,
        Err(_) => {
            return meta_error(
                m,
                "/meta/subscribe",
                "503::Server is too busy. Please try your request again later.",
            )
        }
    };
    let cursor = match replay_option(m, &channel) {
        Ok(-1) => org.events().tip().max(bounds.last),
        Ok(-2) => bounds.pruned_through,
        Ok(id) if id >= 0 && (id as u64) >= bounds.pruned_through && (id as u64) <= bounds.last => {
            id as u64
        }
        _ => {
            return meta_error(
                m,
                "/meta/subscribe",
                &format!(
                    "400::The replayId for {channel} is invalid or outside the retention window - use -1 for new events or -2 for all retained events"
                ),
            )
        }
    };
    {
        let mut subs = client.subs.lock();
        subs.retain(|s| s.channel != channel);
        subs.push(Sub {
            prefix: format!("{{\"channel\":{},\"data\":", Json::String(channel.clone())),
            channel: channel.clone(),
            select,
            cursor,
        });
    }
    client.changed.notify_waiters();
    let mut r = reply_to(m, "/meta/subscribe");
    r.insert("subscription".into(), Json::String(channel));
    r.insert("successful".into(), Json::Bool(true));
    Json::Object(r)
}

fn unsubscribe(state: &AppState, p: &Principal, m: &Map<String, Json>) -> Json {
    let Some(client) = client_of(state, p, m) else {
        return unknown_client(m, "/meta/unsubscribe");
    };
    client.touch();
    let Some(channel) = m.get("subscription").and_then(Json::as_str) else {
        return meta_error(m, "/meta/unsubscribe", "400::Channel name not specified");
    };
    let removed = {
        let mut subs = client.subs.lock();
        let before = subs.len();
        subs.retain(|s| s.channel != channel);
        subs.len() != before
    };
    if !removed {
        return meta_error(
            m,
            "/meta/unsubscribe",
            &format!("400::Not subscribed to {channel}"),
        );
    }
    let mut r = reply_to(m, "/meta/unsubscribe");
    r.insert("subscription".into(), Json::String(channel.into()));
    r.insert("successful".into(), Json::Bool(true));
    Json::Object(r)
}

fn disconnect(state: &AppState, p: &Principal, m: &Map<String, Json>) -> Json {
    let Some(client) = client_of(state, p, m) else {
        return unknown_client(m, "/meta/disconnect");
    };
    state.streaming.clients.lock().remove(&client.id);
    client.kick.notify_waiters();
    let mut r = reply_to(m, "/meta/disconnect");
    r.insert("successful".into(), Json::Bool(true));
    Json::Object(r)
}

/// Writes the events ready for `client` (at most [`EVENTS_PER_REPLY`]) as data messages;
/// moves the subscriptions' cursors past them. Returns how many were written.
fn collect(org: &Org, client: &Client, out: &mut Replies) -> Result<usize, ()> {
    let mut subs = client.subs.lock();
    let mut budget = EVENTS_PER_REPLY;
    for s in subs.iter_mut() {
        if budget == 0 {
            break;
        }
        let batch = org
            .events()
            .read(&s.select, s.cursor, budget)
            .map_err(|_| ())?;
        budget -= batch.events.len();
        let size: usize = batch
            .events
            .iter()
            .map(|e| s.prefix.len() + e.cometd_data().len() + 2)
            .sum();
        out.body.reserve(size);
        for e in &batch.events {
            let body = out.next();
            body.push_str(&s.prefix);
            body.push_str(e.cometd_data());
            body.push('}');
        }
        s.cursor = s.cursor.max(batch.through);
    }
    Ok(EVENTS_PER_REPLY - budget)
}

/// Answers a `/meta/connect`: data messages first, then the connect reply. Unless the client
/// asked for an immediate answer (`advice.timeout: 0`), waits until events arrive, the hold
/// time passes, a newer connect or a disconnect arrives, or the server stops.
async fn connect_reply(state: &AppState, p: &Principal, m: &Map<String, Json>, out: &mut Replies) {
    let Some(client) = client_of(state, p, m) else {
        out.push(&unknown_client(m, "/meta/connect"));
        return;
    };
    let org = state.org.clone();
    let hold_ms = org.config().streaming_timeout_ms;
    // The first connect after a handshake is answered at once (it carries the advice; clients
    // such as aiocometd wait for it before they subscribe), as is one that asks with
    // `advice.timeout: 0`.
    let immediate = !client.advised.load(Ordering::Acquire)
        || m.get("advice")
            .and_then(|a| a.get("timeout"))
            .and_then(Json::as_i64)
            == Some(0);
    // A newer connect ends the one being held.
    client.kick.notify_waiters();
    client.holding.fetch_add(1, Ordering::AcqRel);
    let deadline = Instant::now() + Duration::from_millis(hold_ms);
    let mut failed = false;
    loop {
        match collect(&org, &client, out) {
            Err(()) => {
                failed = true;
                break;
            }
            Ok(n) if n > 0 => break,
            Ok(_) => {}
        }
        if immediate || org.events().is_closed() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let after = client
            .subs
            .lock()
            .iter()
            .map(|s| s.cursor)
            .min()
            .unwrap_or(u64::MAX);
        let kicked = client.kick.notified();
        let changed = client.changed.notified();
        tokio::select! {
            open = org.events().wait(after, deadline - now) => {
                if !open {
                    break;
                }
            }
            _ = kicked => break,
            // A subscription made while this connect waits: collect and wait again.
            _ = changed => {}
        }
    }
    client.holding.fetch_sub(1, Ordering::AcqRel);
    client.touch();
    if !failed {
        let first = !client.advised.swap(true, Ordering::AcqRel);
        let advice = (first || org.events().is_closed() || immediate)
            .then(|| json!({"interval": 0, "timeout": hold_ms, "reconnect": "retry"}));
        out.push_connected(m, advice.as_ref());
        return;
    }
    let mut r = reply_to(m, "/meta/connect");
    r.insert(
        "error".into(),
        Json::String("503::Server is too busy. Please try your request again later.".into()),
    );
    r.insert(
        "advice".into(),
        json!({"reconnect": "retry", "interval": 1000}),
    );
    r.insert("successful".into(), Json::Bool(false));
    out.push(&Json::Object(r));
}

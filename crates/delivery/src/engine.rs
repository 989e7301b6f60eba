//! The delivery engine: one task that finds due notifications endpoint by endpoint, sends them
//! (at most `concurrency` messages in flight per endpoint, nothing while its circuit is open) and
//! records each outcome in the queue. Reading per endpoint keeps one slow or dead receiver from
//! starving the others; outcomes are written by group-committed write jobs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use model::value::now_millis;
use model::Id;
use parking_lot::Mutex;
use service::Org;
use store::{DeliveryRow, Settle};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::outbound::{self, Envelope, Notification};
use crate::policy::{Breaker, Policy};
use crate::{webhook, Catalog, KIND_FLOW, KIND_OUTBOUND, KIND_WEBHOOK};

/// Notifications of one action sent in one Outbound Message at most (Salesforce: 100).
const MAX_PER_MESSAGE: usize = 100;
/// Due notifications read ahead per endpoint (read again when half are gone).
const READ_AHEAD: usize = 1_024;
/// Expired notifications moved to the dead-letter queue per sweep.
const SWEEP_BATCH: usize = 1_000;

/// Drains the delivery queue of one org.
pub struct Engine {
    org: Arc<Org>,
    policy: Policy,
    catalog: Arc<dyn Catalog>,
    http: reqwest::Client,
    base_url: String,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Session ids sent with Outbound Messages, by user, and when they were opened.
    sessions: Mutex<HashMap<String, (String, std::time::Instant)>>,
}

/// How long one session id is sent with Outbound Messages before a new one is opened.
const SESSION_REUSE: Duration = Duration::from_secs(10 * 60);

/// Why an attempt failed.
struct Failure {
    reason: String,
    /// Retrying cannot help (the definition is gone): straight to the dead-letter queue.
    permanent: bool,
}

impl Failure {
    fn retry(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            permanent: false,
        }
    }
}

/// One message on its way: the notifications it carries and what became of it.
struct Attempted {
    endpoint: String,
    rows: Vec<DeliveryRow>,
    result: Result<(), Failure>,
}

enum Done {
    /// A message's attempt ended.
    Attempted(Attempted),
    /// The outcomes of these notifications are durable: they may be read as due again.
    Settled(Vec<u64>),
}

/// A message's obligation to report back: whatever happens to the task sending it (an early
/// return, a panic), dropping the ticket unresolved reports a failure, so no notification stays
/// "in flight" for ever.
#[must_use = "a ticket must be resolved with its outcome"]
struct Ticket {
    done: mpsc::UnboundedSender<Done>,
    endpoint: String,
    rows: Option<Vec<DeliveryRow>>,
}

impl Ticket {
    fn resolve(mut self, result: Result<(), Failure>) {
        if let Some(rows) = self.rows.take() {
            let _ = self.done.send(Done::Attempted(Attempted {
                endpoint: std::mem::take(&mut self.endpoint),
                rows,
                result,
            }));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(rows) = self.rows.take() {
            tracing::error!(endpoint = %self.endpoint, "a delivery attempt ended without an outcome");
            let _ = self.done.send(Done::Attempted(Attempted {
                endpoint: std::mem::take(&mut self.endpoint),
                rows,
                result: Err(Failure::retry("the attempt ended without an outcome")),
            }));
        }
    }
}

impl Engine {
    /// An engine for `org`; `base_url` is where receivers call back (`https://host:port`).
    pub fn new(
        org: Arc<Org>,
        policy: Policy,
        catalog: Arc<dyn Catalog>,
        base_url: String,
    ) -> Result<Arc<Engine>, String> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(policy.concurrency.max(1))
            .user_agent(concat!("Conflux/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the delivery HTTP client: {e}"))?;
        Ok(Arc::new(Engine {
            org,
            policy,
            catalog,
            http,
            base_url,
            breakers: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }))
    }

    /// The policy it runs with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Each endpoint's circuit breaker as it stands.
    pub fn breakers(&self) -> Vec<(String, Breaker)> {
        let mut v: Vec<_> = self
            .breakers
            .lock()
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Runs until `shutdown`. Messages in flight then are abandoned: their notifications stay
    /// queued and are sent again after a restart (delivery is at least once).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let store = self.org.store().clone();
        let mut wake = store.delivery_wake();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut busy: HashMap<String, usize> = HashMap::new();
        // Due notifications read ahead, by endpoint (their sequences are in `in_flight`).
        let mut ahead: HashMap<String, VecDeque<DeliveryRow>> = HashMap::new();
        let mut next_sweep = 0i64;
        loop {
            let now = now_millis();
            if now >= next_sweep {
                self.sweep(now, &in_flight, &done_tx).await;
                next_sweep = now + self.policy.base.as_millis().clamp(1_000, 60_000) as i64;
            }
            let mut next_due = next_sweep;
            let endpoints = match store.read(|tx| tx.delivery_endpoints()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the delivery queue");
                    Vec::new()
                }
            };
            for (endpoint, earliest) in endpoints {
                let allowance =
                    self.breakers
                        .lock()
                        .get(&endpoint)
                        .map_or(self.policy.concurrency, |b| {
                            if let Some(t) = b.open_until.filter(|t| *t > now) {
                                next_due = next_due.min(t);
                            }
                            b.allowance(now, self.policy.concurrency)
                        });
                if earliest > now {
                    next_due = next_due.min(earliest);
                    continue;
                }
                let used = busy.get(&endpoint).copied().unwrap_or(0);
                let free = allowance.saturating_sub(used);
                if allowance == 0 {
                    // Its circuit is open: give back what was read ahead.
                    if let Some(b) = ahead.remove(&endpoint) {
                        for r in b {
                            in_flight.remove(&r.seq);
                        }
                    }
                }
                if free == 0 {
                    continue;
                }
                let buf = ahead.entry(endpoint.clone()).or_default();
                if buf.len() < READ_AHEAD / 2 {
                    // Read ahead, so most messages need no query: the rows claimed already (read
                    // ahead, in flight, or settling) come first in due order and are skipped.
                    let want = READ_AHEAD + in_flight.len().min(50_000);
                    match store.read(|tx| tx.due_deliveries(&endpoint, now, want)) {
                        Ok(rows) => {
                            for r in rows {
                                if in_flight.insert(r.seq) {
                                    buf.push_back(r);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read due notifications");
                            continue;
                        }
                    }
                }
                for message in take_messages(buf, free) {
                    *busy.entry(endpoint.clone()).or_default() += 1;
                    let ticket = Ticket {
                        done: done_tx.clone(),
                        endpoint: endpoint.clone(),
                        rows: Some(message),
                    };
                    let engine = self.clone();
                    tokio::spawn(async move { engine.attempt(ticket).await });
                }
                if buf.is_empty() {
                    ahead.remove(&endpoint);
                }
            }
            let sleep = Duration::from_millis((next_due - now_millis()).clamp(0, 60_000) as u64);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = wake.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(d) = done_rx.recv() => {
                    let mut batch = vec![d];
                    while let Ok(d) = done_rx.try_recv() {
                        batch.push(d);
                    }
                    let mut outcomes = Vec::new();
                    for d in batch {
                        match d {
                            Done::Settled(seqs) => {
                                for s in seqs {
                                    in_flight.remove(&s);
                                }
                            }
                            Done::Attempted(a) => {
                                if let Some(n) = busy.get_mut(&a.endpoint) {
                                    *n = n.saturating_sub(1);
                                }
                                outcomes.extend(self.outcomes(a));
                            }
                        }
                    }
                    if !outcomes.is_empty() {
                        self.settle(outcomes, &done_tx);
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        tracing::debug!("delivery engine stopped");
    }

    /// What the queue records for each notification of an ended attempt.
    fn outcomes(&self, a: Attempted) -> Vec<(u64, Settle)> {
        let now = now_millis();
        {
            let mut breakers = self.breakers.lock();
            let b = breakers.entry(a.endpoint.clone()).or_default();
            match &a.result {
                Ok(()) => b.succeeded(),
                Err(f) if !f.permanent => b.failed(now, &self.policy),
                Err(_) => {}
            }
        }
        a.rows
            .iter()
            .map(|r| {
                let settle = match &a.result {
                    Ok(()) => {
                        self.org.metrics.delivered(now - r.new.created_ms);
                        Settle::Delivered
                    }
                    Err(f) if f.permanent => Settle::Dead {
                        error: f.reason.clone(),
                    },
                    Err(f) => {
                        let attempts = r.attempts + 1;
                        let delay = self.policy.backoff(attempts, rand::random::<f64>());
                        let next = now + delay.as_millis() as i64;
                        if next > r.new.expires_ms {
                            Settle::Dead {
                                error: format!(
                                    "expired after {attempts} attempts; last error: {}",
                                    f.reason
                                ),
                            }
                        } else {
                            Settle::Retry {
                                next_ms: next,
                                error: f.reason.clone(),
                            }
                        }
                    }
                };
                (r.seq, settle)
            })
            .collect()
    }

    /// Writes outcomes in the background; the engine hears when they are durable.
    fn settle(&self, outcomes: Vec<(u64, Settle)>, done: &mpsc::UnboundedSender<Done>) {
        let store = self.org.store().clone();
        let done = done.clone();
        tokio::spawn(async move {
            let seqs: Vec<u64> = outcomes.iter().map(|(s, _)| *s).collect();
            let now = now_millis();
            if let Err(e) = store
                .write(move |tx| Ok(tx.settle_deliveries(&outcomes, now)?))
                .await
            {
                tracing::error!(error = %e.message, "cannot record delivery outcomes; they will be sent again");
            }
            let _ = done.send(Done::Settled(seqs));
        });
    }

    /// Moves notifications whose expiry passed (however healthy their endpoint) to the
    /// dead-letter queue.
    async fn sweep(&self, now: i64, in_flight: &HashSet<u64>, done: &mpsc::UnboundedSender<Done>) {
        let rows = match self
            .org
            .store()
            .read(|tx| tx.expired_deliveries(now, SWEEP_BATCH))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read expired notifications");
                return;
            }
        };
        let outcomes: Vec<(u64, Settle)> = rows
            .into_iter()
            .filter(|r| !in_flight.contains(&r.seq))
            .map(|r| {
                let error = match &r.last_error {
                    Some(e) => format!("expired after {} attempts; last error: {e}", r.attempts),
                    None => format!("expired after {} attempts", r.attempts),
                };
                (r.seq, Settle::Expired { error })
            })
            .collect();
        if !outcomes.is_empty() {
            self.settle(outcomes, done);
        }
    }

    /// Sends one message and resolves its ticket.
    async fn attempt(self: Arc<Self>, mut ticket: Ticket) {
        let rows = ticket.rows.as_ref().expect("an unresolved ticket has rows");
        let result = match rows[0].new.kind.as_str() {
            KIND_OUTBOUND => self.send_outbound(rows).await,
            KIND_WEBHOOK => self.send_webhook(&rows[0]).await,
            KIND_FLOW => self
                .catalog
                .run_local(&self.org, &rows[0])
                .await
                .map_err(|f| Failure {
                    reason: f.reason,
                    permanent: f.permanent,
                }),
            other => Err(Failure {
                reason: format!("no sender handles notifications of kind {other}"),
                permanent: true,
            }),
        };
        let _ = &mut ticket;
        ticket.resolve(result);
    }

    async fn send_outbound(&self, rows: &[DeliveryRow]) -> Result<(), Failure> {
        let action = &rows[0].new.action;
        let def = self.catalog.outbound(action).ok_or_else(|| Failure {
            reason: format!("the Outbound Message {action} no longer exists"),
            permanent: true,
        })?;
        let schema = self.org.schema();
        let object = schema.object(&def.object).ok_or_else(|| Failure {
            reason: format!("the object {} no longer exists", def.object),
            permanent: true,
        })?;
        let fields: Vec<usize> = def
            .fields
            .iter()
            .filter_map(|f| object.field_index(f))
            .collect();
        let marker = self.org.store().marker();
        let mut notifications = Vec::with_capacity(rows.len());
        for r in rows {
            let seq = Id::parse(&r.new.record)
                .ok()
                .and_then(|id| id.seq_in(marker))
                .ok_or_else(|| Failure {
                    reason: format!("{} is not a record id of this org", r.new.record),
                    permanent: true,
                })?;
            // The record as it is now: a notification always carries the latest state.
            let stored = self
                .org
                .store()
                .read(|tx| tx.get(object, seq, &fields))
                .map_err(|e| Failure::retry(format!("cannot read the record: {e}")))?;
            let values = stored.filter(|s| !s.deleted).map(|s| {
                fields
                    .iter()
                    .zip(s.values)
                    .map(|(i, v)| (object.fields[*i].name.clone(), v))
                    .collect()
            });
            notifications.push(Notification {
                id: crate::notification_id(&self.org, r.seq),
                record_id: r.new.record.clone(),
                fields: values,
            });
        }
        let org_id = self.org.org_id();
        let org_18 = org_id.to_18();
        let session = match &def.session_user {
            Some(user) => Some(self.session(user).await?),
            None => None,
        };
        let env = Envelope {
            org_id: &org_18,
            org_id_15: &org_18[..15],
            action_id: &def.id,
            session_id: session.as_deref(),
            base_url: &self.base_url,
            api_version: &def.api_version,
            object: &object.name,
        };
        let body = outbound::message(&env, &notifications);
        let resp = self
            .http
            .post(&def.endpoint)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::retry(self.describe(&def.endpoint, &e)))?;
        let status = resp.status();
        let body = self.read_body(resp, &def.endpoint).await?;
        if !status.is_success() {
            return Err(Failure::retry(format!(
                "HTTP {}{}",
                status.as_u16(),
                snippet(&body)
            )));
        }
        outbound::read_ack(&body).map_err(Failure::retry)
    }

    /// A session id of `user` for Outbound Messages (one is reused for a while).
    async fn session(&self, user: &str) -> Result<String, Failure> {
        if let Some((token, opened)) = self.sessions.lock().get(user) {
            if opened.elapsed() < SESSION_REUSE {
                return Ok(token.clone());
            }
        }
        let login = self.org.session_for(user).await.map_err(|e| {
            Failure::retry(format!("cannot open a session for {user}: {}", e.message))
        })?;
        self.sessions.lock().insert(
            user.to_string(),
            (login.token.clone(), std::time::Instant::now()),
        );
        Ok(login.token)
    }

    async fn send_webhook(&self, row: &DeliveryRow) -> Result<(), Failure> {
        let def = self
            .catalog
            .webhook(&row.new.action)
            .ok_or_else(|| Failure {
                reason: format!("the webhook {} no longer exists", row.new.action),
                permanent: true,
            })?;
        let id = crate::notification_id(&self.org, row.seq);
        let body = row.new.payload.clone().into_bytes();
        let mut req = self
            .http
            .post(&def.url)
            .header("Content-Type", "application/json")
            .header(webhook::IDEMPOTENCY_HEADER, &id)
            .header("X-Conflux-Notification-Id", &id)
            .header("X-Conflux-Attempt", (row.attempts + 1).to_string());
        if let Some(secret) = &def.secret {
            let t = now_millis() / 1000;
            req = req.header(
                webhook::SIGNATURE_HEADER,
                webhook::signature(secret.as_bytes(), t, &body),
            );
        }
        for (k, v) in &def.headers {
            req = req.header(k, v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::retry(self.describe(&def.url, &e)))?;
        let status = resp.status();
        let body = self.read_body(resp, &def.url).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::retry(format!(
                "HTTP {}{}",
                status.as_u16(),
                snippet(&body)
            )))
        }
    }

    /// Reads a reply body up to the policy's limit.
    async fn read_body(&self, mut resp: reqwest::Response, url: &str) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > self.policy.max_response {
                        return Err(Failure::retry(format!(
                            "the reply from {url} is larger than {} bytes",
                            self.policy.max_response
                        )));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err(Failure::retry(self.describe(url, &e))),
            }
        }
    }

    fn describe(&self, url: &str, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!(
                "no reply from {url} within {} s",
                self.policy.timeout.as_secs_f64()
            )
        } else if e.is_connect() {
            format!("cannot connect to {url}")
        } else {
            let mut msg = format!("request to {url} failed: {e}");
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        }
    }
}

/// Cuts notifications into messages: consecutive Outbound Message notifications of one action
/// share a message (up to 100); everything else travels alone.
/// Up to `n` messages from the front of `buf`: an Outbound Message takes the consecutive
/// notifications of its action (at most 100), anything else one.
fn take_messages(buf: &mut VecDeque<DeliveryRow>, n: usize) -> Vec<Vec<DeliveryRow>> {
    let mut out = Vec::new();
    while out.len() < n {
        let Some(first) = buf.pop_front() else { break };
        let mut message = vec![first];
        if message[0].new.kind == KIND_OUTBOUND {
            while message.len() < MAX_PER_MESSAGE
                && buf.front().is_some_and(|r| {
                    r.new.kind == KIND_OUTBOUND && r.new.action == message[0].new.action
                })
            {
                message.push(buf.pop_front().expect("checked"));
            }
        }
        out.push(message);
    }
    out
}

/// The start of a reply body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

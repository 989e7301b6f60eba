//! The delivery engine: one task that finds due notifications endpoint by endpoint and reads
//! them ahead into each endpoint's lane, and per endpoint up to `concurrency` worker tasks that
//! take messages from the lane and send them (none while its circuit is open, one while it is
//! half-open), each on a connection it keeps. Workers record outcomes in memory; the engine
//! writes them to the queue in group-committed batches. Reading per endpoint keeps one slow or
//! dead receiver from starving the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use model::value::now_millis;
use model::Id;
use parking_lot::Mutex;
use service::Org;
use store::{DeliveryRow, Settle};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::outbound::{self, Envelope, Notification};
use crate::policy::{Breaker, Pipelining, Policy};
use crate::send::{self, Connection, Request, Sender};
use crate::{webhook, Catalog, WebhookDef, KIND_FLOW, KIND_OUTBOUND, KIND_WEBHOOK};

/// Notifications of one action sent in one Outbound Message at most (Salesforce: 100).
const MAX_PER_MESSAGE: usize = 100;
/// Due notifications read ahead per endpoint (read again when half are gone).
const READ_AHEAD: usize = 1_024;
/// Outcomes that are written at once, without waiting for more.
const SETTLE_BATCH: usize = 2_000;
/// How long (ms) an outcome waits to be written with others.
const SETTLE_WITHIN_MS: i64 = 10;
/// How long a lane with nothing to do keeps its workers and their connections.
const LANE_LINGER: Duration = Duration::from_secs(30);
/// Payload bytes up to which more pipelined webhooks join a write.
const MAX_PIPELINED_BYTES: usize = 64 * 1024;
/// Expired notifications moved to the dead-letter queue per sweep.
const SWEEP_BATCH: usize = 1_000;

/// Drains the delivery queue of one org.
pub struct Engine {
    org: Arc<Org>,
    policy: Policy,
    catalog: Arc<dyn Catalog>,
    http: Sender,
    base_url: String,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Session ids sent with Outbound Messages, by user, and when they were opened.
    sessions: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Outcomes of ended attempts not written yet.
    pending: Mutex<Vec<(u64, Settle)>>,
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

/// What workers and write jobs tell the engine.
enum Done {
    /// The outcomes of these notifications are durable: they may be read as due again.
    Settled(Vec<u64>),
    /// Outcomes wait to be written (sent by the worker that found none waiting).
    Pending,
    /// A lane's read-ahead runs low.
    Refill,
    /// A worker ended (its lane closed, or it panicked).
    Stopped,
}

/// One endpoint's messages, shared by the engine (which fills it) and the endpoint's workers
/// (which take from it).
struct Lane {
    endpoint: Arc<str>,
    /// Due notifications read ahead, in due order (their sequences are in the engine's
    /// `in_flight`).
    ahead: Mutex<VecDeque<DeliveryRow>>,
    /// Messages being sent; pipelined webhooks written with another count once (the
    /// endpoint's concurrency limits connections busy, and a receiver answers a connection's
    /// requests one after another).
    busy: AtomicUsize,
    /// Workers running.
    workers: AtomicUsize,
    /// Whether the endpoint answers pipelined requests.
    pipelining: Pipelining,
    /// Wakes a waiting worker.
    work: Notify,
    /// A refill was asked for and not done yet.
    refill: AtomicBool,
    /// The lane is gone: its workers end.
    closed: AtomicBool,
}

/// The engine's own view of a lane.
struct LaneState {
    lane: Arc<Lane>,
    /// Due-order position `(next_ms, seq)` of the last notification read, while reading on
    /// from it finds everything not yet read: the next read starts there instead of at the
    /// earliest notification, so rows being sent or settled are not read again.
    after: Option<(i64, u64)>,
    /// The last read reached the end of what was due: read again after the next look at the
    /// queue's endpoints.
    drained: bool,
    /// Since when it has had nothing to do (lanes idle for a while are closed, their workers
    /// and connections with them).
    idle_since: Option<std::time::Instant>,
}

impl LaneState {
    fn new(endpoint: Arc<str>) -> LaneState {
        LaneState {
            lane: Arc::new(Lane {
                endpoint,
                ahead: Mutex::new(VecDeque::new()),
                busy: AtomicUsize::new(0),
                workers: AtomicUsize::new(0),
                pipelining: Pipelining::default(),
                work: Notify::new(),
                refill: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
            after: None,
            drained: false,
            idle_since: None,
        }
    }

    /// Reads due notifications of the lane's endpoint ahead.
    fn read(&mut self, store: &dyn store::Store, now: i64, in_flight: &mut HashSet<u64>) {
        // From the earliest, the rows claimed already (read ahead, in flight, settling) come
        // first in due order and are skipped; from a position, none are there.
        let want = match self.after {
            Some(_) => READ_AHEAD,
            None => READ_AHEAD + in_flight.len().min(50_000),
        };
        let after = self.after;
        let endpoint = &*self.lane.endpoint;
        match store.read(|tx| tx.due_deliveries(endpoint, now, after, want)) {
            Ok(rows) => {
                let end = rows.len() < want;
                self.after = rows.last().map(|r| (r.new.next_ms, r.seq)).or(after);
                if end {
                    // Anything that became due behind the position (a notification queued by
                    // a long job, one whose outcome could not be written) is found by starting
                    // at the earliest again.
                    self.after = None;
                    self.drained = true;
                }
                let mut ahead = self.lane.ahead.lock();
                for r in rows {
                    if in_flight.insert(r.seq) {
                        ahead.push_back(r);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read due notifications"),
        }
    }
}

/// A worker's message: whatever happens to the worker (an early return, a panic), dropping it
/// unresolved records a failure, so no notification stays "in flight" for ever.
#[must_use = "a message must be resolved with its outcome"]
struct Message<'a> {
    engine: &'a Engine,
    lane: &'a Lane,
    done: &'a mpsc::UnboundedSender<Done>,
    rows: Option<Vec<DeliveryRow>>,
    /// It holds one of the lane's `busy` slots (a message riding along with another on the
    /// same connection does not).
    slot: bool,
}

impl Message<'_> {
    fn resolve(mut self, result: Result<(), Failure>) {
        self.record(result);
    }

    fn record(&mut self, result: Result<(), Failure>) {
        let Some(rows) = self.rows.take() else { return };
        let outcomes = self.engine.outcomes(&self.lane.endpoint, rows, result);
        let first = {
            let mut pending = self.engine.pending.lock();
            let first = pending.is_empty();
            pending.extend(outcomes);
            first
        };
        if self.slot {
            self.lane.busy.fetch_sub(1, Ordering::AcqRel);
        }
        if first {
            let _ = self.done.send(Done::Pending);
        }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        if self.rows.is_some() {
            tracing::error!(endpoint = %self.lane.endpoint, "a delivery attempt ended without an outcome");
            self.record(Err(Failure::retry("the attempt ended without an outcome")));
        }
    }
}

/// Counts a worker out when it ends, however it ends.
struct Running<'a> {
    lane: &'a Lane,
    done: &'a mpsc::UnboundedSender<Done>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.lane.workers.fetch_sub(1, Ordering::AcqRel);
        let _ = self.done.send(Done::Stopped);
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
        let http = Sender::new(policy.timeout, policy.max_response);
        Ok(Arc::new(Engine {
            org,
            policy,
            catalog,
            http,
            base_url,
            breakers: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
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

    /// How many messages `endpoint` may have in flight at `now`, and when its circuit
    /// half-opens if it is open.
    fn allowance(&self, endpoint: &str, now: i64) -> (usize, Option<i64>) {
        self.breakers
            .lock()
            .get(endpoint)
            .map_or((self.policy.concurrency, None), |b| {
                (
                    b.allowance(now, self.policy.concurrency),
                    b.open_until.filter(|t| *t > now),
                )
            })
    }

    /// Runs until `shutdown`. Messages in flight then are abandoned: their notifications stay
    /// queued and are sent again after a restart (delivery is at least once).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let store = self.org.store().clone();
        let mut wake = store.delivery_wake();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        // Every notification read ahead, being sent or having its outcome written.
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut lanes: HashMap<Arc<str>, LaneState> = HashMap::new();
        let mut next_sweep = 0i64;
        // When the earliest waiting notification that is not being sent falls due.
        let mut next_due = 0i64;
        // Look at the queue's endpoints again (after new notifications, when something fell
        // due, and when a lane that reached the end of its due notifications settles some).
        let mut rescan = true;
        // When the outcomes waiting must be written.
        let mut settle_by: Option<i64> = None;
        // One timer, moved only when what it waits for changes.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut timer_at = i64::MIN;
        loop {
            let now = now_millis();
            if now >= next_sweep {
                self.sweep(now, &in_flight, &done_tx).await;
                next_sweep = now + self.policy.base.as_millis().clamp(1_000, 60_000) as i64;
            }
            if rescan || now >= next_due {
                rescan = false;
                next_due = i64::MAX;
                match store.read(|tx| tx.delivery_endpoints()) {
                    Ok(endpoints) => {
                        for (endpoint, earliest) in endpoints {
                            if earliest > now {
                                next_due = next_due.min(earliest);
                            } else {
                                let endpoint: Arc<str> = endpoint.into();
                                lanes
                                    .entry(endpoint.clone())
                                    .or_insert_with(|| LaneState::new(endpoint))
                                    .drained = false;
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read the delivery queue"),
                }
            }
            let mut wake_at = next_due.min(next_sweep);
            let mut sending = 0;
            for state in lanes.values_mut() {
                let lane = state.lane.clone();
                lane.refill.store(false, Ordering::Release);
                let (allowance, opens) = self.allowance(&lane.endpoint, now);
                if let Some(t) = opens {
                    wake_at = wake_at.min(t);
                }
                let busy = lane.busy.load(Ordering::Acquire);
                sending += busy;
                if allowance == 0 {
                    // Its circuit is open: give back what was read ahead.
                    for r in lane.ahead.lock().drain(..) {
                        in_flight.remove(&r.seq);
                    }
                    state.after = None;
                    state.drained = false;
                    continue;
                }
                let queued = lane.ahead.lock().len();
                if queued < READ_AHEAD / 2 && !state.drained {
                    state.read(&*store, now, &mut in_flight);
                }
                let queued = lane.ahead.lock().len();
                if queued > 0 {
                    // Enough workers for the allowance, each woken for what it may take.
                    while lane.workers.load(Ordering::Acquire) < self.policy.concurrency {
                        self.clone().start_worker(lane.clone(), done_tx.clone());
                    }
                    for _ in 0..allowance.saturating_sub(busy).min(queued) {
                        lane.work.notify_one();
                    }
                }
                if busy == 0 && queued == 0 {
                    state.idle_since.get_or_insert_with(std::time::Instant::now);
                } else {
                    state.idle_since = None;
                }
            }
            lanes.retain(|_, state| {
                let linger =
                    state.drained && state.idle_since.is_some_and(|t| t.elapsed() > LANE_LINGER);
                if linger {
                    state.lane.closed.store(true, Ordering::Release);
                    state.lane.work.notify_waiters();
                }
                !linger
            });
            // Outcomes are written together: a few milliseconds' worth, or at once when nothing
            // is being sent (fewer, larger commits rewrite far fewer queue pages).
            let waiting = self.pending.lock().len();
            if waiting > 0 {
                let by = *settle_by.get_or_insert(now + SETTLE_WITHIN_MS);
                if waiting >= SETTLE_BATCH || sending == 0 || by <= now {
                    settle_by = None;
                    let outcomes = std::mem::take(&mut *self.pending.lock());
                    self.settle(outcomes, &done_tx);
                }
            } else {
                settle_by = None;
            }
            let target = wake_at.min(settle_by.unwrap_or(i64::MAX));
            if target != timer_at {
                timer_at = target;
                let wait = (target - now_millis()).clamp(0, 60_000) as u64;
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + Duration::from_millis(wait));
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = wake.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    rescan = true;
                }
                Some(d) = done_rx.recv() => {
                    let mut batch = vec![d];
                    while let Ok(d) = done_rx.try_recv() {
                        batch.push(d);
                    }
                    for d in batch {
                        if let Done::Settled(seqs) = d {
                            for s in seqs {
                                in_flight.remove(&s);
                            }
                            // Settled notifications may have new due times, or be due again
                            // after a failed write: a lane at the end of its due notifications
                            // needs a new look.
                            rescan |= lanes.is_empty() || lanes.values().any(|l| l.drained);
                        }
                    }
                }
                _ = &mut timer => {
                    rescan = true;
                    timer_at = i64::MIN;
                }
            }
        }
        for state in lanes.values() {
            state.lane.closed.store(true, Ordering::Release);
            state.lane.work.notify_waiters();
        }
        tracing::debug!("delivery engine stopped");
    }

    /// Starts a worker of `lane`: it takes messages while its endpoint's allowance leaves room,
    /// sends them on a connection it keeps, and records their outcomes.
    fn start_worker(self: Arc<Self>, lane: Arc<Lane>, done: mpsc::UnboundedSender<Done>) {
        lane.workers.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let _running = Running {
                lane: &lane,
                done: &done,
            };
            let mut conn: Option<Connection> = None;
            loop {
                let notified = lane.work.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if lane.closed.load(Ordering::Acquire) {
                    return;
                }
                let Some(rows) = self.take(&lane, &done) else {
                    notified.await;
                    continue;
                };
                if rows[0].new.kind == KIND_WEBHOOK {
                    self.send_webhooks(&lane, &done, rows, &mut conn).await;
                    continue;
                }
                let message = Message {
                    engine: &self,
                    lane: &lane,
                    done: &done,
                    rows: Some(rows),
                    slot: true,
                };
                let rows = message
                    .rows
                    .as_deref()
                    .expect("an unresolved message has rows");
                let result = self.attempt(rows, &mut conn).await;
                message.resolve(result);
            }
        });
    }

    /// The next message of `lane`, if the endpoint's allowance leaves room for one more in
    /// flight (the slot is taken: `busy` counts it).
    fn take(&self, lane: &Lane, done: &mpsc::UnboundedSender<Done>) -> Option<Vec<DeliveryRow>> {
        let (allowance, _) = self.allowance(&lane.endpoint, now_millis());
        let mut busy = lane.busy.load(Ordering::Acquire);
        loop {
            if busy >= allowance {
                return None;
            }
            match lane
                .busy
                .compare_exchange(busy, busy + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => busy = now,
            }
        }
        let message = self.pop(lane, done, |_| true);
        if message.is_none() {
            lane.busy.fetch_sub(1, Ordering::AcqRel);
        }
        message
    }

    /// The next message of `lane` to ride along with one sent on the same connection (a
    /// pipelined batch holds one slot), if its first notification passes `fits` and the
    /// endpoint's circuit is closed (a half-open circuit is probed with one message).
    fn take_rider(
        &self,
        lane: &Lane,
        done: &mpsc::UnboundedSender<Done>,
        fits: impl Fn(&DeliveryRow) -> bool,
    ) -> Option<Vec<DeliveryRow>> {
        let (allowance, _) = self.allowance(&lane.endpoint, now_millis());
        if allowance < self.policy.concurrency {
            return None;
        }
        self.pop(lane, done, fits)
    }

    /// Takes the message at the front of `lane` if its first notification passes `fits`;
    /// asks for a refill when the lane runs low.
    fn pop(
        &self,
        lane: &Lane,
        done: &mpsc::UnboundedSender<Done>,
        fits: impl Fn(&DeliveryRow) -> bool,
    ) -> Option<Vec<DeliveryRow>> {
        let (message, left) = {
            let mut ahead = lane.ahead.lock();
            let message = if ahead.front().is_some_and(fits) {
                take_message(&mut ahead)
            } else {
                None
            };
            (message, ahead.len())
        };
        if left < READ_AHEAD / 2 && !lane.refill.swap(true, Ordering::AcqRel) {
            let _ = done.send(Done::Refill);
        }
        message
    }

    /// What the queue records for each notification of an ended attempt to `endpoint`.
    fn outcomes(
        &self,
        endpoint: &str,
        rows: Vec<DeliveryRow>,
        result: Result<(), Failure>,
    ) -> Vec<(u64, Settle)> {
        let now = now_millis();
        {
            let mut breakers = self.breakers.lock();
            match &result {
                Ok(()) => {
                    if let Some(b) = breakers.get_mut(endpoint) {
                        b.succeeded();
                    }
                }
                Err(f) if !f.permanent => breakers
                    .entry(endpoint.to_string())
                    .or_default()
                    .failed(now, &self.policy),
                Err(_) => {}
            }
        }
        if result.is_ok() {
            self.org
                .metrics
                .delivered(rows.iter().map(|r| now - r.new.created_ms));
        }
        rows.iter()
            .map(|r| {
                let settle = match &result {
                    Ok(()) => Settle::Delivered,
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

    /// Sends one message that is not a webhook (those go through `send_webhooks`).
    async fn attempt(
        &self,
        rows: &[DeliveryRow],
        conn: &mut Option<Connection>,
    ) -> Result<(), Failure> {
        match rows[0].new.kind.as_str() {
            KIND_OUTBOUND => self.send_outbound(rows, conn).await,
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
        }
    }

    async fn send_outbound(
        &self,
        rows: &[DeliveryRow],
        conn: &mut Option<Connection>,
    ) -> Result<(), Failure> {
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
        let reply = self
            .http
            .post(
                conn,
                &def.endpoint,
                "text/xml; charset=utf-8",
                &[("SOAPAction", "\"\"")],
                body.as_bytes(),
            )
            .await
            .map_err(Failure::retry)?;
        if !(200..300).contains(&reply.status) {
            return Err(Failure::retry(format!(
                "HTTP {}{}",
                reply.status,
                snippet(&reply.body)
            )));
        }
        outbound::read_ack(&reply.body).map_err(Failure::retry)
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

    /// Sends the webhook `first`, and with it (written at once, when the endpoint answers
    /// pipelined requests and the definition allows it, or to find out whether it does) the
    /// next ones of the same webhook waiting in `lane`; resolves each.
    async fn send_webhooks(
        &self,
        lane: &Lane,
        done: &mpsc::UnboundedSender<Done>,
        first: Vec<DeliveryRow>,
        conn: &mut Option<Connection>,
    ) {
        let message = |rows, slot| Message {
            engine: self,
            lane,
            done,
            rows: Some(rows),
            slot,
        };
        let action = first[0].new.action.clone();
        let mut messages = vec![message(first, true)];
        let Some(def) = self.catalog.webhook(&action) else {
            let reason = format!("the webhook {action} no longer exists");
            for m in messages {
                m.resolve(Err(Failure {
                    reason: reason.clone(),
                    permanent: true,
                }));
            }
            return;
        };
        let (depth, probe) = lane
            .pipelining
            .plan(def.pipeline, conn.is_some(), now_millis());
        let mut bytes = messages[0].rows.as_deref().map_or(0, payload_len);
        while messages.len() < depth && bytes < MAX_PIPELINED_BYTES {
            let same = |r: &DeliveryRow| r.new.kind == KIND_WEBHOOK && r.new.action == action;
            let Some(rows) = self.take_rider(lane, done, same) else {
                break;
            };
            bytes += payload_len(&rows);
            messages.push(message(rows, false));
        }
        let how = if probe {
            send::Pipelining::Probe
        } else {
            send::Pipelining::Trusted
        };
        let (results, answers) = {
            let rows: Vec<&DeliveryRow> = messages
                .iter()
                .map(|m| &m.rows.as_deref().expect("an unresolved message has rows")[0])
                .collect();
            self.post_webhooks(&def, &rows, conn, how).await
        };
        lane.pipelining.learnt(probe, answers, now_millis());
        for (m, r) in messages.into_iter().zip(results) {
            m.resolve(r);
        }
    }

    /// POSTs one webhook per row (pipelined as `how` says when there are several): each
    /// one's outcome, and what the receiver showed about pipelining.
    async fn post_webhooks(
        &self,
        def: &WebhookDef,
        rows: &[&DeliveryRow],
        conn: &mut Option<Connection>,
        how: send::Pipelining,
    ) -> (Vec<Result<(), Failure>>, Option<bool>) {
        let now = now_millis();
        // What each request's headers borrow.
        let own: Vec<(String, String, Option<String>)> = rows
            .iter()
            .map(|row| {
                let body = row.new.payload.as_bytes();
                (
                    crate::notification_id(&self.org, row.seq),
                    (row.attempts + 1).to_string(),
                    def.secret
                        .as_ref()
                        .map(|secret| webhook::signature(secret.as_bytes(), now / 1000, body)),
                )
            })
            .collect();
        let requests: Vec<Request<'_>> = rows
            .iter()
            .zip(&own)
            .map(|(row, (id, attempt, signature))| {
                let mut headers: Vec<(&str, &str)> = vec![
                    (webhook::IDEMPOTENCY_HEADER, id),
                    ("X-Conflux-Notification-Id", id),
                    ("X-Conflux-Attempt", attempt),
                ];
                if let Some(sig) = signature {
                    headers.push((webhook::SIGNATURE_HEADER, sig));
                }
                headers.extend(def.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                Request {
                    headers,
                    body: row.new.payload.as_bytes(),
                }
            })
            .collect();
        let replies = self
            .http
            .post_all(conn, &def.url, "application/json", &requests, how)
            .await;
        let outcomes = replies
            .each
            .into_iter()
            .map(|reply| {
                let reply = reply.map_err(Failure::retry)?;
                if (200..300).contains(&reply.status) {
                    Ok(())
                } else {
                    Err(Failure::retry(format!(
                        "HTTP {}{}",
                        reply.status,
                        snippet(&reply.body)
                    )))
                }
            })
            .collect();
        (outcomes, replies.pipelines)
    }
}

/// The bytes of a message's payloads.
fn payload_len(rows: &[DeliveryRow]) -> usize {
    rows.iter().map(|r| r.new.payload.len()).sum()
}

/// The next message from the front of `buf`: an Outbound Message takes the consecutive
/// notifications of its action (at most 100), anything else travels alone.
fn take_message(buf: &mut VecDeque<DeliveryRow>) -> Option<Vec<DeliveryRow>> {
    let first = buf.pop_front()?;
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
    Some(message)
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use store::Store;

    use super::{LaneState, READ_AHEAD};

    const ENDPOINT: &str = "http://127.0.0.1:9/hook";

    fn row(next_ms: i64) -> store::NewDelivery {
        store::NewDelivery {
            kind: "webhook".into(),
            endpoint: ENDPOINT.into(),
            action: "hook".into(),
            record: String::new(),
            payload: "{}".into(),
            created_ms: 1,
            next_ms,
            expires_ms: i64::MAX,
        }
    }

    async fn enqueue(store: &dyn Store, next: Vec<i64>) -> Vec<u64> {
        store
            .write(move |tx| {
                let mut seqs = Vec::new();
                for n in next {
                    seqs.push(tx.enqueue_delivery(&row(n))?);
                }
                Ok(seqs)
            })
            .await
            .unwrap()
    }

    fn ahead(state: &LaneState) -> Vec<u64> {
        state.lane.ahead.lock().iter().map(|r| r.seq).collect()
    }

    /// A notification can fall due behind the lane's read position (its job stamped it before
    /// the rows read last, and committed after them); reading on from the position never finds
    /// it, so a read that reaches the end starts again from the earliest.
    #[tokio::test]
    async fn a_notification_due_behind_the_read_position_is_found_once_a_read_reaches_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = store_sqlite::SqliteStore::open(
            &dir.path().join("org.db"),
            store_sqlite::Options {
                durable: false,
                ..Default::default()
            },
        )
        .unwrap();
        let store: Arc<dyn Store> = sqlite.clone();
        let first = enqueue(
            &*store,
            (0..READ_AHEAD as i64 + 10).map(|i| 1_000 + i).collect(),
        )
        .await;
        let mut state = LaneState::new(ENDPOINT.into());
        let mut in_flight = HashSet::new();
        let now = 1_000_000;

        // A full read ahead: the lane holds a position and has not reached the end.
        state.read(&*store, now, &mut in_flight);
        assert_eq!(ahead(&state), first[..READ_AHEAD]);
        assert!(state.after.is_some() && !state.drained);

        // Due before everything read so far, queued after it.
        let behind = enqueue(&*store, vec![500]).await[0];
        state.lane.ahead.lock().clear();
        state.read(&*store, now, &mut in_flight);
        assert_eq!(ahead(&state), first[READ_AHEAD..], "on from the position");
        assert!(state.drained, "that read reached the end");

        // The next look starts from the earliest: only the one behind is new.
        state.lane.ahead.lock().clear();
        state.drained = false;
        state.read(&*store, now, &mut in_flight);
        assert_eq!(ahead(&state), [behind]);
        sqlite.close();
    }
}

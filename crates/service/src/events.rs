//! The event bus: publishing platform events into the event log, and reading the log for
//! subscribers. Events are rows of the store's event log, so they are durable when the publish
//! is acknowledged and commit (or not) with the transaction that published them. Subscribers
//! read through one shared in-memory tail of the newest events, so a thousand long-polling
//! clients woken by one commit cost one store read, not a thousand.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use model::value::{format_datetime_z, now_millis};
use model::{ApiError, ApiResult, ErrorCode, Id, KeyPrefix, ObjectDef, ObjectKind, Value};
use parking_lot::Mutex;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use store::{EventBounds, EventKind, EventRow, EventSelect, EventTip, NewEvent, Store, WriteTx};
use tokio::sync::watch;

use crate::auth::Principal;
use crate::coerce::{coerce_record, Mode};

/// Newest events kept in memory for subscribers, at most.
const TAIL_EVENTS: usize = 20_000;
/// Bytes of payload kept in memory for subscribers, at most.
const TAIL_BYTES: usize = 64 * 1024 * 1024;
/// Events read from the store per statement when the tail catches up.
const LOAD_BATCH: usize = 2_000;

/// An event as subscribers receive it: the stored event, and its Streaming API and Pub/Sub API
/// forms, each made once, when a subscriber of that API first needs it.
#[derive(Debug)]
pub struct Event {
    /// Its replay id.
    pub replay_id: u64,
    /// The event as appended (stream, kind, time, UUID, schema id, payload).
    pub event: NewEvent,
    cometd: std::sync::OnceLock<String>,
    /// The Pub/Sub API form: schema id and Avro binary ([`crate::Org::event_avro`]).
    pub avro: std::sync::OnceLock<(String, Arc<[u8]>)>,
}

impl Event {
    fn from_row(r: EventRow) -> Event {
        Event {
            replay_id: r.replay_id,
            event: r.event,
            cometd: std::sync::OnceLock::new(),
            avro: std::sync::OnceLock::new(),
        }
    }

    /// The Streaming API `data` object of the event, serialized once for every subscriber.
    pub fn cometd_data(&self) -> &str {
        self.cometd.get_or_init(|| {
            let e = &self.event;
            if e.kind == EventKind::Topic {
                // `{"event":{"createdDate","type"},"sobject":{…}}` gains its replay id.
                let mut data: Json = serde_json::from_str(&e.payload).unwrap_or_default();
                if let Some(Json::Object(ev)) = data.get_mut("event") {
                    ev.insert("replayId".into(), Json::from(self.replay_id));
                }
                return data.to_string();
            }
            format!(
                "{{\"schema\":{},\"payload\":{},\"event\":{{\"EventUuid\":{},\"replayId\":{}}}}}",
                Json::String(e.schema_id.clone()),
                e.payload,
                Json::String(e.uuid.clone()),
                self.replay_id
            )
        })
    }

    /// Bytes it holds in memory, about (what the tail's byte limit counts): the payload, and
    /// room for its two wire forms.
    fn size(&self) -> usize {
        3 * self.event.payload.len() + 128
    }
}

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One stream (`/event/Low_Ink__e` → `Low_Ink__e`).
    Stream(String),
    /// Every stream of a kind (`/data/ChangeEvents`).
    Kind(EventKind),
}

impl Selection {
    fn matches(&self, e: &Event) -> bool {
        match self {
            Selection::Stream(s) => e.event.stream == *s,
            Selection::Kind(k) => e.event.kind == *k,
        }
    }

    fn as_store(&self) -> EventSelect<'_> {
        match self {
            Selection::Stream(s) => EventSelect::Stream(s),
            Selection::Kind(k) => EventSelect::Kind(*k),
        }
    }
}

/// What [`Bus::read`] found.
#[derive(Debug, Default)]
pub struct Batch {
    /// The events, in replay id order.
    pub events: Vec<Arc<Event>>,
    /// Every event of the selection up to this replay id has been read: the reader's next
    /// position (it moves past other streams' events too, so readers do not wake for them again).
    pub through: u64,
}

/// The newest events, shared by subscribers: every event with a replay id in `(from, loaded]`
/// is in `events`.
#[derive(Debug, Default)]
struct Tail {
    events: VecDeque<Arc<Event>>,
    from: u64,
    loaded: u64,
    bytes: usize,
}

/// The event bus of an org.
pub struct Bus {
    store: Arc<dyn Store>,
    tip: watch::Receiver<EventTip>,
    tail: Mutex<Tail>,
    /// Most events and payload bytes the tail keeps.
    limits: (usize, usize),
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("tip", &self.tip()).finish()
    }
}

impl Bus {
    /// The bus over `store`'s event log.
    pub fn new(store: Arc<dyn Store>) -> Bus {
        Bus::with_limits(store, TAIL_EVENTS, TAIL_BYTES)
    }

    /// A bus whose in-memory tail keeps at most `events` events and `bytes` bytes of them.
    pub fn with_limits(store: Arc<dyn Store>, events: usize, bytes: usize) -> Bus {
        let tip = store.event_tip();
        let now = tip.borrow().last;
        Bus {
            store,
            tip,
            tail: Mutex::new(Tail {
                from: now,
                loaded: now,
                ..Tail::default()
            }),
            limits: (events.max(1), bytes),
            closed: watch::Sender::new(false),
        }
    }

    /// The replay id of the newest committed event.
    pub fn tip(&self) -> u64 {
        self.tip.borrow().last
    }

    /// The replay ids the log can serve.
    pub fn bounds(&self) -> ApiResult<EventBounds> {
        Ok(self.store.read(|tx| tx.event_bounds())?)
    }

    /// Up to `max` events of `select` after replay id `after`.
    pub fn read(&self, select: &Selection, after: u64, max: usize) -> ApiResult<Batch> {
        let tip = self.tip();
        if after >= tip || max == 0 {
            return Ok(Batch {
                events: Vec::new(),
                through: after,
            });
        }
        {
            let mut tail = self.tail.lock();
            if tail.loaded < tip {
                self.load(&mut tail, tip)?;
            }
            if after >= tail.from {
                let mut events = Vec::new();
                let start = tail.events.partition_point(|e| e.replay_id <= after);
                for e in tail.events.iter().skip(start) {
                    if e.replay_id > tip {
                        break;
                    }
                    if select.matches(e) {
                        events.push(e.clone());
                        if events.len() == max {
                            let through = e.replay_id;
                            return Ok(Batch { events, through });
                        }
                    }
                }
                return Ok(Batch {
                    events,
                    through: tip,
                });
            }
        }
        // Older than the tail: from the store.
        let rows = self
            .store
            .read(|tx| tx.events_after(select.as_store(), after, max))?;
        let full = rows.len() == max;
        let events: Vec<Arc<Event>> = rows
            .into_iter()
            .filter(|r| r.replay_id <= tip)
            .map(|r| Arc::new(Event::from_row(r)))
            .collect();
        let through = match (full, events.last()) {
            (true, Some(last)) => last.replay_id,
            _ => tip,
        };
        Ok(Batch { events, through })
    }

    /// Brings the tail up to `tip` and trims it to its bounds.
    fn load(&self, tail: &mut Tail, tip: u64) -> ApiResult<()> {
        // Far behind (nobody read for a while): what the tail could keep starts at most
        // `limits.0` replay ids before the tip (ids are one sequence for every stream), so
        // start there instead of reading, and dropping, everything in between.
        let window = self.limits.0 as u64;
        if tip.saturating_sub(tail.loaded) > window {
            tail.events.clear();
            tail.bytes = 0;
            tail.loaded = tip - window;
            tail.from = tail.loaded;
        }
        while tail.loaded < tip {
            let after = tail.loaded;
            // The commit that moved the tip brought its events along: nothing to read.
            let handed = {
                let t = self.tip.borrow();
                match &t.fresh {
                    Some(fresh) if t.after <= after && after < t.last => {
                        Some((fresh.clone(), t.last))
                    }
                    _ => None,
                }
            };
            if let Some((fresh, last)) = handed {
                for r in fresh.iter().filter(|r| r.replay_id > after) {
                    let e = Arc::new(Event::from_row(r.clone()));
                    tail.bytes += e.size();
                    tail.events.push_back(e);
                }
                tail.loaded = last;
                self.trim(tail);
                continue;
            }
            let rows = self
                .store
                .read(|tx| tx.all_events_after(after, LOAD_BATCH))?;
            let done = rows.len() < LOAD_BATCH;
            for r in rows {
                let e = Arc::new(Event::from_row(r));
                tail.loaded = tail.loaded.max(e.replay_id);
                tail.bytes += e.size();
                tail.events.push_back(e);
            }
            if done {
                tail.loaded = tail.loaded.max(tip);
            }
            self.trim(tail);
        }
        Ok(())
    }

    /// Drops the oldest events beyond the tail's bounds.
    fn trim(&self, tail: &mut Tail) {
        while tail.events.len() > self.limits.0 || tail.bytes > self.limits.1 {
            let Some(e) = tail.events.pop_front() else {
                break;
            };
            tail.bytes -= e.size();
            tail.from = e.replay_id;
        }
    }

    /// Waits until an event newer than `after` commits, the bus closes, or `timeout` passes.
    /// Returns whether the bus is still open.
    pub async fn wait(&self, after: u64, timeout: std::time::Duration) -> bool {
        let mut tip = self.tip.clone();
        let mut closed = self.closed.subscribe();
        if *closed.borrow() {
            return false;
        }
        tokio::select! {
            _ = tip.wait_for(|t| t.last > after) => {}
            _ = closed.wait_for(|c| *c) => {}
            _ = tokio::time::sleep(timeout) => {}
        }
        !*self.closed.borrow()
    }

    /// Ends every wait (the server is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Whether [`Bus::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Removes events older than `retention_ms`; returns how many.
    pub async fn prune(&self, retention_ms: i64) -> ApiResult<u64> {
        let before = now_millis() - retention_ms;
        self.store
            .write(move |tx| Ok(tx.prune_events(before)?))
            .await
    }
}

/// What publishing a platform event answers: the insert result's id and the `EventUuid`
/// (reported as the `OPERATION_ENQUEUED` message).
#[derive(Debug, Clone)]
pub struct Published {
    /// An `e00…` id (not unique across time, as Salesforce warns).
    pub id: Id,
    /// The event's UUID.
    pub uuid: String,
}

static EVENT_IDS: AtomicU64 = AtomicU64::new(0);

/// The schema id of an event type's payload: derived from its fields, so it changes whenever the
/// definition does (22 characters of URL-safe base64, like Salesforce's).
pub fn schema_id(o: &ObjectDef) -> String {
    schema_id_named(&o.name, o)
}

/// The schema id of events named `name` carrying `o`'s fields (change events: `name` is the
/// change event's).
pub fn schema_id_named(name: &str, o: &ObjectDef) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    for f in &o.fields {
        h.update([0]);
        h.update(f.name.as_bytes());
        h.update(format!("{:?}", f.ty).as_bytes());
    }
    let digest = h.finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Publishes a platform event of type `o` from a JSON body, inside `tx`: with the transaction
/// when the type publishes after commit, else whatever becomes of the transaction.
pub fn publish_tx(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    body: &Map<String, Json>,
) -> ApiResult<Published> {
    may_publish(p, o)?;
    let schema = tx.schema().clone();
    let input = coerce_record(p, &schema, o, body, Mode::Create)?;
    publish_input(tx, p, o, &input)
}

/// Refuses what is not an event type, or an event type `p` may not publish.
fn may_publish(p: &Principal, o: &ObjectDef) -> ApiResult<()> {
    if o.kind != ObjectKind::PlatformEvent {
        return Err(ApiError::new(
            ErrorCode::InvalidType,
            format!("{} is not a platform event", o.name),
        ));
    }
    if !p.perms.object(o).create {
        return Err(crate::records::access_error(o));
    }
    Ok(())
}

/// Publishes a platform event of type `o` from a validated body (see [`publish_tx`]).
pub(crate) fn publish_input(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    input: &crate::coerce::Input,
) -> ApiResult<Published> {
    may_publish(p, o)?;
    let uuid = uuid_v4();
    let event = new_event(p, o, input, uuid.clone())?;
    if o.publish_after_commit {
        tx.append_event(&event)?;
    } else {
        tx.append_event_detached(event);
    }
    let n = EVENT_IDS.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(Published {
        id: Id::new(KeyPrefix(*b"e00"), tx.marker(), n),
        uuid,
    })
}

/// Publishes a platform event of type `o` from a validated body with the given `EventUuid`,
/// inside `tx` whatever the type's publish behaviour (a Pub/Sub publish is its own transaction);
/// returns the replay id.
pub(crate) fn publish_now(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    input: &crate::coerce::Input,
    uuid: String,
) -> ApiResult<u64> {
    may_publish(p, o)?;
    let event = new_event(p, o, input, uuid)?;
    Ok(tx.append_event(&event)?)
}

/// The stored form of a platform event published by `p` with validated body `input`.
fn new_event(
    p: &Principal,
    o: &ObjectDef,
    input: &crate::coerce::Input,
    uuid: String,
) -> ApiResult<NewEvent> {
    if !input.ext_refs.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidFieldForInsertUpdate,
            "platform events have no relationship fields",
        ));
    }
    for (i, f) in o.fields.iter().enumerate() {
        if f.custom && f.required && input.get(i).is_none_or(Value::is_null) {
            return Err(ApiError::with_fields(
                ErrorCode::RequiredFieldMissing,
                format!("Required fields are missing: [{}]", f.name),
                vec![f.name.clone()],
            ));
        }
    }
    let now = now_millis();
    let mut payload = Map::new();
    payload.insert("CreatedDate".into(), Json::String(format_datetime_z(now)));
    payload.insert("CreatedById".into(), Json::String(p.user_id.to_18()));
    for (i, f) in o.fields.iter().enumerate() {
        if !f.custom {
            continue;
        }
        let v = match input.get(i) {
            Some(Value::DateTime(ms)) => Json::String(format_datetime_z(*ms)),
            Some(v) => v.to_json(),
            None => Json::Null,
        };
        payload.insert(f.name.clone(), v);
    }
    Ok(NewEvent {
        stream: o.name.clone(),
        kind: EventKind::Platform,
        created_ms: now,
        uuid,
        schema_id: schema_id(o),
        payload: Json::Object(payload).to_string(),
    })
}

/// A random (version 4) UUID in its canonical text form.
pub fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Why a channel cannot be subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRefusal {
    /// No such channel (or not one this server serves).
    NotFound,
    /// The caller may not read the channel's events.
    Forbidden,
}

impl crate::Org {
    /// The events a channel carries, for subscriber `p`:
    /// - `/event/Name__e`: a platform event type (the caller needs read access to it);
    /// - `/data/ChangeEvents`: every change event (View All Data);
    /// - `/data/AccountChangeEvent`, `/data/Invoice__ChangeEvent`: one object's change events
    ///   (read access to the object);
    /// - `/topic/Name`: an active PushTopic (read access to the object it queries).
    ///
    /// Names are spelled exactly.
    pub fn channel_selection(
        &self,
        p: &Principal,
        channel: &str,
    ) -> Result<Selection, ChannelRefusal> {
        let schema = self.schema();
        if let Some(name) = channel.strip_prefix("/event/") {
            let o = schema
                .object(name)
                .filter(|o| o.kind == ObjectKind::PlatformEvent && o.name == name)
                .ok_or(ChannelRefusal::NotFound)?;
            if !p.perms.object(o).read {
                return Err(ChannelRefusal::Forbidden);
            }
            return Ok(Selection::Stream(o.name.clone()));
        }
        if channel == "/data/ChangeEvents" {
            if !(p.perms.view_all_data || p.perms.modify_all_data) {
                return Err(ChannelRefusal::Forbidden);
            }
            return Ok(Selection::Kind(EventKind::Change));
        }
        if let Some(entity) = channel.strip_prefix("/data/") {
            let o = schema
                .object_of_change_event(entity)
                .ok_or(ChannelRefusal::NotFound)?;
            if !p.perms.object(o).read {
                return Err(ChannelRefusal::Forbidden);
            }
            return Ok(Selection::Stream(entity.to_string()));
        }
        if let Some(name) = channel.strip_prefix("/topic/") {
            let object = self
                .push_topic_object(name)
                .ok_or(ChannelRefusal::NotFound)?;
            if !p.perms.object(&object).read {
                return Err(ChannelRefusal::Forbidden);
            }
            // PushTopic notifications are stored under their channel name: topic names share
            // no namespace with event types.
            return Ok(Selection::Stream(channel.to_string()));
        }
        Err(ChannelRefusal::NotFound)
    }

    /// The object the active PushTopic `name` (spelled exactly) queries.
    fn push_topic_object(&self, name: &str) -> Option<Arc<ObjectDef>> {
        let schema = self.schema();
        let pt = schema.object("PushTopic")?.clone();
        let fields =
            ["Name", "Query", "IsActive"].map(|f| pt.field_index(f).expect("PushTopic field"));
        let query = self.store.read(|tx| {
            let seqs = tx
                .find_by_field(&pt, fields[0], &Value::Text(name.to_string()), false, 2)
                .ok()?;
            seqs.into_iter().find_map(|seq| {
                let r = tx.get(&pt, seq, &fields).ok()??;
                match (&r.values[0], &r.values[1], &r.values[2]) {
                    (Value::Text(n), Value::Text(q), Value::Bool(true)) if n == name => {
                        Some(q.clone())
                    }
                    _ => None,
                }
            })
        })?;
        let q = soql::parse(&query).ok()?;
        schema.object(&q.from.object.name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, kind: EventKind, n: usize) -> NewEvent {
        NewEvent {
            stream: stream.into(),
            kind,
            created_ms: 1_000 + n as i64,
            uuid: format!("u{n}"),
            schema_id: "s".into(),
            payload: format!("{{\"n\":{n}}}"),
        }
    }

    /// Appends `n` events alternating between two streams (even: `A__e`, odd: `B__e`).
    async fn append(store: &Arc<dyn Store>, from: usize, n: usize) {
        store
            .write(move |tx| {
                for k in from..from + n {
                    let s = if k % 2 == 0 { "A__e" } else { "B__e" };
                    tx.append_event(&event(s, EventKind::Platform, k))?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }

    fn numbers(b: &Batch) -> Vec<usize> {
        b.events
            .iter()
            .map(|e| {
                e.event.payload[5..e.event.payload.len() - 1]
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn event_uuids_are_random_version_4_uuids_in_canonical_form() {
        let (a, b) = (uuid_v4(), uuid_v4());
        assert_ne!(a, b);
        for u in [a, b] {
            let groups: Vec<usize> = u.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{u}");
            assert!(
                u.chars()
                    .all(|c| c == '-' || matches!(c, '0'..='9' | 'a'..='f')),
                "{u}"
            );
            assert_eq!(&u[14..15], "4", "version: {u}");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "variant: {u}");
        }
    }

    /// A store in `dir` for the bus tests (no syncs).
    fn open_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        store_sqlite::SqliteStore::open(
            &dir.path().join("bus.db"),
            store_sqlite::Options {
                readers: 2,
                durable: false,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn subscribers_get_a_commits_events_from_its_announcement() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let bus = Bus::new(store.clone());
        let all = Selection::Kind(EventKind::Platform);
        append(&store, 0, 3).await;
        // Gone from the log before anyone read them (a commit without events does not move
        // the tip): what subscribers get came with the announcement.
        store
            .write(|tx| Ok(tx.prune_events(i64::MAX)?))
            .await
            .unwrap();
        assert!(store
            .read(|tx| tx.all_events_after(0, 10))
            .unwrap()
            .is_empty());
        let b = bus.read(&all, 0, 100).unwrap();
        assert_eq!(numbers(&b), [0, 1, 2]);
        // A commit too large to hand over is read from the log.
        append(&store, 3, 600).await;
        let b = bus.read(&all, bus.tip() - 600, 1_000).unwrap();
        assert_eq!(numbers(&b), (3..603).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn readers_get_every_event_once_in_order_from_the_tail_or_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        // A tail of 10 events, so most of the 60 below live only in the store.
        let bus = Bus::with_limits(store.clone(), 10, usize::MAX);
        append(&store, 0, 60).await;
        let a = Selection::Stream("A__e".into());
        // From the start: the 30 events of A, in order, 7 at a time; positions move past B.
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let b = bus.read(&a, after, 7).unwrap();
            assert!(b.through >= after);
            if b.events.is_empty() {
                assert_eq!(b.through, bus.tip(), "an empty read moves to the tip");
                break;
            }
            seen.extend(numbers(&b));
            after = b.through;
        }
        assert_eq!(seen, (0..60).step_by(2).collect::<Vec<_>>());
        // The newest events come from the tail; the kind selection sees both streams.
        let tip = bus.tip();
        let all = Selection::Kind(EventKind::Platform);
        let b = bus.read(&all, tip - 4, 100).unwrap();
        assert_eq!(numbers(&b), vec![56, 57, 58, 59]);
        assert_eq!(b.through, tip);
        // More events push old ones out of the tail; reads across the boundary still see all.
        append(&store, 60, 25).await;
        let b = bus.read(&all, tip - 2, 100).unwrap();
        assert_eq!(numbers(&b), (58..85).collect::<Vec<_>>());
        let other = store
            .read(|tx| tx.events_after(EventSelect::Stream("B__e"), 0, 1000))
            .unwrap();
        assert_eq!(other.len(), 42, "B has every odd event of 0..85");
        // Nothing after the tip; a wait for an id below the tip returns at once.
        assert!(bus.read(&all, bus.tip(), 10).unwrap().events.is_empty());
        assert!(bus.wait(0, std::time::Duration::from_secs(30)).await);
        bus.close();
        assert!(
            !bus.wait(bus.tip(), std::time::Duration::from_secs(30))
                .await
        );
    }
}

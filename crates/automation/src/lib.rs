//! Flows: automation that reacts to record changes. A flow names an object, the changes that
//! trigger it, an entry condition (a jq expression over `$new` and `$old`) and actions.
//! Before-save flows set fields of the record in the same transaction; after-save flows queue
//! their work (Outbound Messages, webhooks) in the delivery queue in the same transaction, so it
//! is never lost and never sent for a change that rolled back.

pub mod callout;
pub mod credentials;
pub mod external;
pub mod flows;
pub mod jq;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use delivery::{
    Catalog, LocalFailure, OutboundDef, WebhookDef, KIND_FLOW, KIND_OUTBOUND, KIND_WEBHOOK,
};
use model::value::now_millis;
use model::{ApiError, ApiResult, ErrorCode, OrgMarker, Schema};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value as Json};
use service::automation::BoxFuture;
use service::triggers::{Change, Op, Triggers};
use service::Org;
use store::{DeliveryRow, DeliveryState, FaultRow, NewDelivery, Settle, WriteTx};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The setting holding the API-managed flows (name → document as written).
const API_FLOWS: &str = "flows.api";
/// Flow faults kept (the oldest go first).
const KEEP_FAULTS: u64 = 10_000;
/// Faults waiting to be written at most (beyond, they are only logged).
const FAULT_QUEUE: usize = 4_096;
/// The setting holding the replay id platform-event flows have handled events through.
const EVENT_CURSOR: &str = "flows.events.cursor";
/// Platform events read per batch by the platform-event flow runner.
const EVENT_BATCH: usize = 500;
/// How deep flows may trigger one another through queued actions (a flow's action changes a
/// record or publishes an event that triggers a flow whose action …).
pub const MAX_DEPTH: u32 = 5;
/// What the error of a flow chain that went deeper than [`MAX_DEPTH`] says.
const TOO_DEEP: &str = "Flows triggered one another more than";

thread_local! {
    /// The depth of the queued flow action the current write job runs (0 outside them).
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Sets [`DEPTH`] for the life of a queued action's write, whatever way it ends.
struct DepthGuard(u32);

impl DepthGuard {
    fn enter(depth: u32) -> DepthGuard {
        DepthGuard(DEPTH.with(|d| d.replace(depth)))
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(self.0));
    }
}

/// An in-org action as queued (payload of a [`KIND_FLOW`] delivery).
#[derive(serde::Serialize, serde::Deserialize)]
struct LocalJob {
    op: String,
    object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    fields: serde_json::Map<String, Json>,
    /// The user whose change queued it (the action runs as them, in system context).
    user: u64,
    depth: u32,
}

/// Where a flow comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file of the metadata folder (changed by editing the file).
    File,
    /// The admin API (stored in the database).
    Api,
}

pub use flows::{Flow, FlowDef};

/// Registered External Services by name.
pub type Services = HashMap<String, Arc<external::Service>>;

/// The flows of an org, compiled, and the action definitions they declare.
#[derive(Default)]
struct FlowSet {
    flows: Vec<(Arc<Flow>, Source)>,
    outbound: HashMap<String, Arc<OutboundDef>>,
    webhooks: HashMap<String, Arc<WebhookDef>>,
}

/// The org's automation: installed as the org's record triggers and as the delivery engine's
/// catalog of actions.
pub struct Automation {
    set: RwLock<Arc<FlowSet>>,
    expiry: Duration,
    marker: OrgMarker,
    /// The flows of the metadata folder, as read at start.
    files: Mutex<Vec<FlowDef>>,
    /// The API-managed flows, as written (secrets included).
    api: Mutex<BTreeMap<String, Json>>,
    /// Serializes flow changes through the API.
    admin: tokio::sync::Mutex<()>,
    faults: mpsc::Sender<FaultRow>,
    fault_rx: Mutex<Option<mpsc::Receiver<FaultRow>>>,
    /// Encrypts stored secrets.
    vault: credentials::Vault,
    /// Named credentials, usable.
    creds: RwLock<Arc<credentials::Credentials>>,
    /// Named credentials as stored (secrets sealed).
    cred_docs: Mutex<BTreeMap<String, Json>>,
    /// The flow depth of platform events queued actions published (by `EventUuid`), so a flow
    /// chain through events is bounded too.
    event_depth: Mutex<HashMap<String, u32>>,
    /// External Services, usable.
    services: RwLock<Arc<Services>>,
    /// External Services as stored (`{credential, openapi}` by name).
    service_docs: Mutex<BTreeMap<String, Json>>,
    /// Per flow since start: runs (entry conditions passed), faults, and the last run (ms).
    runs: Mutex<HashMap<String, (u64, u64, i64)>>,
}

/// Callout replies made before a save, by flow, in action order.
struct PreparedReplies {
    by_flow: HashMap<String, Vec<Json>>,
}

impl Automation {
    /// No flows yet; queued notifications expire after `expiry`.
    /// No flows yet; queued notifications expire after `expiry`; secrets are sealed with
    /// `secret_key`.
    pub fn new(marker: OrgMarker, expiry: Duration, secret_key: &[u8; 32]) -> Arc<Automation> {
        let (faults, fault_rx) = mpsc::channel(FAULT_QUEUE);
        Arc::new(Automation {
            vault: credentials::Vault::new(secret_key),
            creds: RwLock::default(),
            cred_docs: Mutex::default(),
            event_depth: Mutex::default(),
            services: RwLock::default(),
            service_docs: Mutex::default(),
            runs: Mutex::default(),
            set: RwLock::new(Arc::default()),
            expiry,
            marker,
            files: Mutex::default(),
            api: Mutex::default(),
            admin: tokio::sync::Mutex::new(()),
            faults,
            fault_rx: Mutex::new(Some(fault_rx)),
        })
    }

    /// Reads the flow files of `dir` (when given) and the API-managed flows stored in the org,
    /// and installs them all. Returns how many of each.
    pub fn load(&self, org: &Org, dir: Option<&Path>) -> Result<(usize, usize), String> {
        let files = match dir {
            Some(d) => flows::read_dir(d)?,
            None => Vec::new(),
        };
        let stored = org
            .store()
            .read(|tx| tx.setting(API_FLOWS))
            .map_err(|e| format!("cannot read the stored flows: {e}"))?;
        let api: BTreeMap<String, Json> = match stored {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("the stored flows are damaged: {e}"))?,
            None => BTreeMap::new(),
        };
        let n = (files.len(), api.len());
        let sealed: BTreeMap<String, Json> = match org
            .store()
            .read(|tx| tx.setting(credentials::SETTING))
            .map_err(|e| format!("cannot read the named credentials: {e}"))?
        {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("the stored named credentials are damaged: {e}"))?,
            None => BTreeMap::new(),
        };
        let mut creds = credentials::Credentials::new();
        for (name, doc) in &sealed {
            let plain = self
                .vault
                .open_doc(doc)
                .map_err(|e| format!("named credential {name}: {e}"))?;
            creds.insert(name.clone(), Arc::new(credentials::build(name, &plain)?));
        }
        *self.creds.write() = Arc::new(creds);
        *self.cred_docs.lock() = sealed;
        let stored: BTreeMap<String, Json> = match org
            .store()
            .read(|tx| tx.setting(external::SETTING))
            .map_err(|e| format!("cannot read the External Services: {e}"))?
        {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("the stored External Services are damaged: {e}"))?,
            None => BTreeMap::new(),
        };
        *self.services.write() = Arc::new(build_services(&stored)?);
        *self.service_docs.lock() = stored;
        *self.files.lock() = files;
        *self.api.lock() = api;
        self.reinstall(&org.schema())?;
        Ok(n)
    }

    fn reinstall(&self, schema: &Schema) -> Result<(), String> {
        let defs = self.all_defs(&self.api.lock())?;
        self.install(defs, schema)
    }

    fn current_services(&self) -> Arc<Services> {
        self.services.read().clone()
    }

    fn all_defs(&self, api: &BTreeMap<String, Json>) -> Result<Vec<(FlowDef, Source)>, String> {
        let mut defs: Vec<(FlowDef, Source)> = self
            .files
            .lock()
            .iter()
            .map(|d| (d.clone(), Source::File))
            .collect();
        for (name, doc) in api {
            let def: FlowDef = serde_json::from_value(doc.clone())
                .map_err(|e| format!("stored flow {name}: {e}"))?;
            defs.push((def, Source::Api));
        }
        Ok(defs)
    }

    /// Writes faults to the org's fault log until `shutdown` (run once, in the background).
    pub async fn run_faults(self: Arc<Self>, org: Arc<Org>, shutdown: CancellationToken) {
        let Some(mut rx) = self.fault_rx.lock().take() else {
            return;
        };
        loop {
            let f = tokio::select! {
                _ = shutdown.cancelled() => break,
                f = rx.recv() => match f { Some(f) => f, None => break },
            };
            let mut batch = vec![f];
            while let Ok(f) = rx.try_recv() {
                batch.push(f);
            }
            let r = org
                .store()
                .write(move |tx| {
                    for f in &batch {
                        tx.add_flow_fault(f, KEEP_FAULTS)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e.message, "cannot record flow faults");
            }
        }
    }

    /// Records a fault (in the background) and returns the error the write fails with.
    fn fault(&self, flow: &Flow, change: &Change<'_>, msg: String) -> ApiError {
        self.log_fault(
            flow,
            &change.object.name,
            &change.id.to_18(),
            change.op.as_str(),
            &change.principal.username,
            msg,
        )
    }

    fn log_fault(
        &self,
        flow: &Flow,
        object: &str,
        record: &str,
        event: &str,
        user: &str,
        msg: String,
    ) -> ApiError {
        tracing::warn!(flow = %flow.def.name, record = %record, "flow fault: {msg}");
        self.runs.lock().entry(flow.def.name.clone()).or_default().1 += 1;
        let row = FaultRow {
            seq: 0,
            created_ms: now_millis(),
            flow: flow.def.name.clone(),
            object: object.to_string(),
            record: record.to_string(),
            event: event.to_string(),
            user: user.to_string(),
            message: msg.clone(),
        };
        if self.faults.try_send(row).is_err() {
            tracing::error!("the flow fault log is behind; a fault was only logged");
        }
        fault(flow, msg)
    }

    /// Replaces every flow with `defs`, all checked first: on any error nothing changes.
    pub fn install(&self, defs: Vec<(FlowDef, Source)>, schema: &Schema) -> Result<(), String> {
        let set = self.compile_all(defs, schema, &self.current_services())?;
        *self.set.write() = Arc::new(set);
        Ok(())
    }

    fn compile_all(
        &self,
        defs: Vec<(FlowDef, Source)>,
        schema: &Schema,
        services: &Services,
    ) -> Result<FlowSet, String> {
        let mut set = FlowSet::default();
        let mut names: HashMap<String, ()> = HashMap::new();
        for (def, source) in defs {
            if names.insert(def.name.to_ascii_lowercase(), ()).is_some() {
                return Err(format!("two flows are named {}", def.name));
            }
            let flow = flows::compile(def, schema, self.marker, services)?;
            for a in &flow.actions {
                let (name, dup) = match a {
                    flows::Action::Outbound(d) => (
                        d.name.clone(),
                        set.outbound.insert(d.name.clone(), d.clone()).is_some(),
                    ),
                    flows::Action::Webhook(d, _) => (
                        d.name.clone(),
                        set.webhooks.insert(d.name.clone(), d.clone()).is_some(),
                    ),
                    flows::Action::UpdateFields(_)
                    | flows::Action::Callout(_)
                    | flows::Action::Local(_) => continue,
                };
                if dup {
                    return Err(format!(
                        "flow {}: another action is already named {name}",
                        flow.def.name
                    ));
                }
            }
            set.flows.push((Arc::new(flow), source));
        }
        Ok(set)
    }

    /// The installed flows, as written.
    pub fn defs(&self) -> Vec<(FlowDef, Source)> {
        self.set
            .read()
            .flows
            .iter()
            .map(|(f, s)| (f.def.clone(), *s))
            .collect()
    }

    fn matching(&self, object: &str, op: Op, before: bool) -> Vec<Arc<Flow>> {
        self.set
            .read()
            .flows
            .iter()
            .map(|(f, _)| f)
            .filter(|f| {
                f.def.active
                    && f.before == before
                    && f.on.contains(&op)
                    && f.def.object.eq_ignore_ascii_case(object)
            })
            .cloned()
            .collect()
    }
}

fn fault(flow: &Flow, msg: String) -> ApiError {
    ApiError::new(
        ErrorCode::CannotExecuteFlowTrigger,
        format!(
            "We can't save this record because the \"{}\" process failed. {msg}",
            flow.def.label.as_deref().unwrap_or(&flow.def.name)
        ),
    )
}

fn as_json(r: Option<&service::triggers::RecordJson>) -> Json {
    r.map_or(Json::Null, |m| Json::Object(m.clone()))
}

/// Whether the flow's entry condition holds for the change (the message when it fails).
fn enters(flow: &Flow, new: &Json, old: &Json) -> Result<bool, String> {
    match &flow.condition {
        None => Ok(true),
        Some(c) => c.holds(new, old),
    }
}

impl Triggers for Automation {
    fn watches(&self, object: &str, op: Op) -> bool {
        self.set.read().flows.iter().any(|(f, _)| {
            f.def.active && f.on.contains(&op) && f.def.object.eq_ignore_ascii_case(object)
        })
    }

    fn before_save(
        &self,
        _tx: &mut dyn WriteTx,
        change: &Change<'_>,
    ) -> ApiResult<Vec<(String, Json)>> {
        let mut sets = Vec::new();
        let (mut new, old) = (as_json(change.new), as_json(change.old));
        let prepared = change
            .principal
            .prepared
            .as_ref()
            .and_then(|p| p.0.downcast_ref::<PreparedReplies>());
        for flow in self.matching(&change.object.name, change.op, true) {
            if !enters(&flow, &new, &old).map_err(|m| self.fault(&flow, change, m))? {
                continue;
            }
            self.ran(&flow.def.name);
            let mut replies = prepared
                .and_then(|p| p.by_flow.get(&flow.def.name))
                .map(|r| r.iter());
            let mut reply = Json::Null;
            for a in &flow.actions {
                let mut flow_sets = Vec::new();
                match a {
                    flows::Action::UpdateFields(fields) => {
                        let scope = jq::Scope {
                            new: &new,
                            old: &old,
                            reply: &reply,
                            input: &Json::Null,
                        };
                        for (f, e) in fields {
                            let v = e.eval(&scope).map_err(|m| self.fault(&flow, change, m))?;
                            flow_sets.push((f.clone(), v));
                        }
                    }
                    flows::Action::Callout(c) => {
                        let Some(r) = replies.as_mut().and_then(|r| r.next()) else {
                            return Err(self.fault(
                                &flow,
                                change,
                                format!(
                                    "The flow calls out ({}), which happens only for single-record REST saves and invocable actions; this change came another way.",
                                    c.name
                                ),
                            ));
                        };
                        reply = r.clone();
                        let scope = jq::Scope {
                            new: &new,
                            old: &old,
                            reply: &reply,
                            input: &Json::Null,
                        };
                        for (f, e) in &c.reply_fields {
                            let v = e.eval(&scope).map_err(|m| self.fault(&flow, change, m))?;
                            flow_sets.push((f.clone(), v));
                        }
                    }
                    _ => {}
                }
                if let Json::Object(m) = &mut new {
                    for (f, v) in &flow_sets {
                        m.insert(f.clone(), v.clone());
                    }
                }
                sets.extend(flow_sets);
            }
        }
        Ok(sets)
    }

    fn after_save(&self, tx: &mut dyn WriteTx, change: &Change<'_>) -> ApiResult<()> {
        let (new, old) = (as_json(change.new), as_json(change.old));
        let record = change.id.to_18();
        let depth = DEPTH.with(std::cell::Cell::get);
        for flow in self.matching(&change.object.name, change.op, false) {
            if !enters(&flow, &new, &old).map_err(|m| self.fault(&flow, change, m))? {
                continue;
            }
            let work = Planned {
                flow: &flow,
                new: &new,
                old: &old,
                record: &record,
                event: change.op.as_str(),
                user: change.principal.user_seq,
                depth,
            };
            for d in self.plan(&work).map_err(|m| self.fault(&flow, change, m))? {
                tx.enqueue_delivery(&d)?;
            }
        }
        Ok(())
    }
}

/// One flow run to queue the work of: what triggered it.
struct Planned<'a> {
    flow: &'a Flow,
    new: &'a Json,
    old: &'a Json,
    /// The triggering record's id (the `EventUuid` of a platform event).
    record: &'a str,
    /// `create`, `update`, `delete` or `publish`.
    event: &'a str,
    user: u64,
    /// How deep in a chain of flows the trigger is.
    depth: u32,
}

impl Automation {
    /// The deliveries an after-save or platform-event flow queues, every expression evaluated
    /// first (an error queues nothing).
    fn plan(&self, w: &Planned<'_>) -> Result<Vec<NewDelivery>, String> {
        let now = now_millis();
        let flow = w.flow;
        self.ran(&flow.def.name);
        let expiry = flow
            .def
            .expire_seconds
            .map_or(self.expiry, Duration::from_secs);
        let expires = now + expiry.as_millis() as i64;
        let mut out = Vec::new();
        for a in &flow.actions {
            let (kind, endpoint, action, payload) = match a {
                flows::Action::Outbound(d) => (
                    KIND_OUTBOUND,
                    d.endpoint.clone(),
                    d.name.clone(),
                    "{}".into(),
                ),
                flows::Action::Webhook(d, body) => {
                    let body = match body {
                        Some(e) => e.first(w.new, w.old)?,
                        None => json!({
                            "flow": flow.def.name,
                            "object": flow.def.object,
                            "event": w.event,
                            "id": w.record,
                            "new": w.new,
                            "old": w.old,
                        }),
                    };
                    (
                        KIND_WEBHOOK,
                        d.url.clone(),
                        d.name.clone(),
                        body.to_string(),
                    )
                }
                flows::Action::Local(l) => {
                    if w.depth >= MAX_DEPTH {
                        return Err(format!(
                            "{TOO_DEEP} {MAX_DEPTH} levels deep; the chain stops here."
                        ));
                    }
                    let scope = jq::Scope {
                        new: w.new,
                        old: w.old,
                        reply: &Json::Null,
                        input: &Json::Null,
                    };
                    let mut fields = serde_json::Map::new();
                    for (f, e) in &l.fields {
                        fields.insert(f.clone(), e.eval(&scope)?);
                    }
                    let id = match &l.id {
                        None => None,
                        Some(e) => match e.eval(&scope)? {
                            Json::String(s) if !s.is_empty() => Some(s),
                            other => {
                                return Err(format!(
                                    "the id of the {} record to update is {other}, not a record id",
                                    l.object
                                ))
                            }
                        },
                    };
                    let job = LocalJob {
                        op: l.op.as_str().into(),
                        object: l.object.clone(),
                        id,
                        fields,
                        user: w.user,
                        depth: w.depth + 1,
                    };
                    (
                        KIND_FLOW,
                        format!("flow:{}", flow.def.name),
                        flow.def.name.clone(),
                        serde_json::to_string(&job).expect("JSON values serialize"),
                    )
                }
                flows::Action::UpdateFields(_) | flows::Action::Callout(_) => continue,
            };
            out.push(NewDelivery {
                kind: kind.into(),
                endpoint,
                action,
                record: w.record.to_string(),
                payload,
                created_ms: now,
                next_ms: now,
                expires_ms: expires,
            });
        }
        Ok(out)
    }

    /// Runs the flows triggered by platform events until `shutdown` (once, in the background):
    /// reads committed events from the bus after a durable cursor and queues each flow's actions
    /// in the same transaction that advances the cursor, so every event runs its flows once.
    pub async fn run_event_flows(self: Arc<Self>, org: Arc<Org>, shutdown: CancellationToken) {
        use service::events::Selection;
        let bus = org.events();
        // On a first start, begin at the tip: events published before are not replayed.
        let mut cursor = match org.store().read(|tx| tx.setting(EVENT_CURSOR)) {
            Ok(Some(t)) => t.parse().unwrap_or_else(|_| bus.tip()),
            Ok(None) => bus.tip(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the platform-event flow cursor");
                return;
            }
        };
        let mut saved = (cursor, std::time::Instant::now());
        while !shutdown.is_cancelled() {
            let batch = match bus.read(
                &Selection::Kind(store::EventKind::Platform),
                cursor,
                EVENT_BATCH,
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e.message, "platform-event flows cannot read the bus");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut queued = Vec::new();
            for e in &batch.events {
                let flows = self.matching(&e.event.stream, Op::Create, false);
                if flows.is_empty() {
                    continue;
                }
                let mut new: Json = serde_json::from_str(&e.event.payload).unwrap_or(Json::Null);
                if let Json::Object(m) = &mut new {
                    m.insert("ReplayId".into(), Json::from(e.replay_id.to_string()));
                    m.insert("EventUuid".into(), Json::from(e.event.uuid.clone()));
                }
                let user = new
                    .get("CreatedById")
                    .and_then(Json::as_str)
                    .and_then(|id| model::Id::parse(id).ok())
                    .and_then(|id| id.seq_in(self.marker))
                    .unwrap_or(0);
                let depth = self.event_depth.lock().remove(&e.event.uuid).unwrap_or(0);
                for flow in flows {
                    let fail = |m: String| {
                        self.log_fault(&flow, &flow.def.object, &e.event.uuid, "publish", "", m);
                    };
                    match enters(&flow, &new, &Json::Null) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(m) => {
                            fail(m);
                            continue;
                        }
                    }
                    let w = Planned {
                        flow: &flow,
                        new: &new,
                        old: &Json::Null,
                        record: &e.event.uuid,
                        event: "publish",
                        user,
                        depth,
                    };
                    match self.plan(&w) {
                        Ok(d) => queued.extend(d),
                        Err(m) => fail(m),
                    }
                }
            }
            let through = batch.through;
            let due = through > saved.0 && saved.1.elapsed() > Duration::from_secs(5);
            if !queued.is_empty() || due {
                let r = org
                    .store()
                    .write(move |tx| {
                        for d in &queued {
                            tx.enqueue_delivery(d)?;
                        }
                        tx.set_setting(EVENT_CURSOR, &through.to_string())?;
                        Ok(())
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e.message, "platform-event flows cannot queue their work");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                saved = (through, std::time::Instant::now());
            }
            cursor = through;
            if batch.events.len() < EVENT_BATCH {
                let wait = bus.wait(cursor, Duration::from_secs(5));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    open = wait => if !open { break },
                }
            }
        }
    }

    /// Runs one queued in-org action.
    async fn run_job(&self, org: &Arc<Org>, row: &DeliveryRow) -> Result<(), LocalFailure> {
        let permanent = |reason: String| LocalFailure {
            reason,
            permanent: true,
        };
        let job: LocalJob = serde_json::from_str(&row.new.payload)
            .map_err(|e| permanent(format!("the queued action is damaged: {e}")))?;
        let schema = org.schema();
        let o = schema
            .object(&job.object)
            .cloned()
            .ok_or_else(|| permanent(format!("the object {} no longer exists", job.object)))?;
        // Flows run in system context: as the user whose change queued the action (so they are
        // its creator), with every permission.
        let mut p = org.principal_for(job.user).map_err(|e| LocalFailure {
            reason: format!("cannot act as user {}: {}", job.user, e.message),
            permanent: false,
        })?;
        p.perms = Arc::new(service::Perms::all());
        let username = p.username.clone();
        let seq = row.seq;
        let depth = job.depth;
        let body = Json::Object(job.fields);
        let id = job.id.clone();
        let op = job.op.clone();
        let o2 = o.clone();
        let r = org
            .store()
            .write(move |tx| {
                // Done already (a requeue raced an attempt): nothing to do twice.
                match tx.delivery(seq)? {
                    Some(d) if d.state == DeliveryState::Queued => {}
                    _ => return Ok(None),
                }
                let _depth = DepthGuard::enter(depth);
                let uuid = match op.as_str() {
                    "create" | "publish" => service::ops::create(tx, &p, &o2, &body)?.enqueued,
                    "update" => {
                        let id = id.as_deref().unwrap_or_default();
                        let rseq = service::ops::row_of(&*tx, &o2, id)?;
                        service::ops::update(tx, &p, &o2, rseq, &body, None)?;
                        None
                    }
                    other => {
                        return Err(ApiError::new(
                            ErrorCode::InvalidInput,
                            format!("unknown queued action {other}"),
                        ))
                    }
                };
                tx.settle_deliveries(&[(seq, Settle::Delivered)], now_millis())?;
                Ok(Some(uuid))
            })
            .await;
        match r {
            Ok(uuid) => {
                if let Some(Some(uuid)) = uuid {
                    let mut m = self.event_depth.lock();
                    if m.len() > 100_000 {
                        m.clear();
                    }
                    m.insert(uuid, depth);
                }
                org.note_write(&o.name);
                Ok(())
            }
            Err(e) => {
                let what = format!(
                    "{} {}{}: {}",
                    job.op,
                    o.name,
                    job.id.map(|i| format!(" {i}")).unwrap_or_default(),
                    e.message
                );
                let flow = self
                    .set
                    .read()
                    .flows
                    .iter()
                    .find(|(f, _)| f.def.name == row.new.action)
                    .map(|(f, _)| f.clone());
                match flow {
                    Some(flow) => {
                        self.log_fault(
                            &flow,
                            &o.name,
                            &row.new.record,
                            "after_save",
                            &username,
                            what.clone(),
                        );
                    }
                    None => {
                        tracing::warn!(flow = %row.new.action, "queued flow action failed: {what}")
                    }
                }
                Err(LocalFailure {
                    permanent: e.message.contains(TOO_DEEP),
                    reason: format!("{}: {what}", e.code.as_str()),
                })
            }
        }
    }
}

impl Automation {
    /// The named credential `name`, for other parts of the server that call out through one
    /// (sync jobs reaching a remote org).
    pub fn named_credential(&self, name: &str) -> Option<Arc<credentials::Credential>> {
        self.creds.read().get(name).cloned()
    }

    fn credential(&self, name: &str) -> Result<Arc<credentials::Credential>, String> {
        self.creds
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| format!("the named credential {name} does not exist"))
    }

    /// The flows (before-save, watching `object`/`op`) that call out.
    fn callout_flows(&self, object: &str, op: Op) -> Vec<Arc<Flow>> {
        self.matching(object, op, true)
            .into_iter()
            .filter(|f| {
                f.actions
                    .iter()
                    .any(|a| matches!(a, flows::Action::Callout(_)))
            })
            .collect()
    }

    /// A record's fields as JSON (`None` when it does not exist or is deleted).
    fn read_record(
        org: &Org,
        object: &model::ObjectDef,
        id: &str,
    ) -> ApiResult<Option<(u64, Json)>> {
        let Some(seq) = model::Id::parse(id)
            .ok()
            .filter(|i| i.prefix() == object.key_prefix)
            .and_then(|i| i.seq_in(org.store().marker()))
        else {
            return Ok(None);
        };
        let all: Vec<usize> = (0..object.fields.len()).collect();
        let row = org.store().read(|tx| tx.get(object, seq, &all))?;
        Ok(row.filter(|r| !r.deleted).map(|r| {
            let m =
                service::triggers::record_json(object, all.iter().copied().zip(r.values.iter()));
            (seq, Json::Object(m))
        }))
    }

    async fn invoke_one(
        &self,
        org: &Org,
        p: &service::Principal,
        flow: &Flow,
        input: &Json,
    ) -> ApiResult<Json> {
        let schema = org.schema();
        let object = schema
            .object(&flow.def.object)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        let record_id = input
            .get("recordId")
            .and_then(Json::as_str)
            .map(str::to_string);
        let mut record = None;
        if let Some(id) = &record_id {
            if !p.perms.object(&object).read {
                return Err(ApiError::new(
                    ErrorCode::InsufficientAccess,
                    format!("You cannot read {} records.", object.name),
                ));
            }
            record = Some(Self::read_record(org, &object, id)?.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidCrossReferenceKey,
                    format!("recordId {id} is not a {} record", object.name),
                )
            })?);
        }
        let mut new = record.as_ref().map_or(Json::Null, |(_, j)| j.clone());
        let rid = record_id.clone().unwrap_or_default();
        let fail = |m: String| self.log_fault(flow, &object.name, &rid, "invoke", &p.username, m);
        let holds = match &flow.condition {
            None => true,
            Some(c) => c
                .eval(&jq::Scope {
                    new: &new,
                    old: &Json::Null,
                    reply: &Json::Null,
                    input,
                })
                .map(|v| !matches!(v, Json::Null | Json::Bool(false)))
                .map_err(fail)?,
        };
        let mut outputs = serde_json::Map::new();
        if !holds {
            outputs.insert("Flow__InterviewStatus".into(), Json::from("Finished"));
            return Ok(Json::Object(outputs));
        }
        let mut budget = callout::Budget::default();
        let mut reply = Json::Null;
        let mut sets: Vec<(String, Json)> = Vec::new();
        for a in &flow.actions {
            let scope_sets: Vec<(String, Json)> = match a {
                flows::Action::Callout(c) => {
                    let cred = self.credential(&c.credential).map_err(fail)?;
                    let scope = jq::Scope {
                        new: &new,
                        old: &Json::Null,
                        reply: &reply,
                        input,
                    };
                    reply = c
                        .call(&cred, &scope, record_id.as_deref(), &mut budget)
                        .await
                        .map_err(fail)?;
                    let scope = jq::Scope {
                        new: &new,
                        old: &Json::Null,
                        reply: &reply,
                        input,
                    };
                    c.reply_fields
                        .iter()
                        .map(|(f, e)| e.eval(&scope).map(|v| (f.clone(), v)))
                        .collect::<Result<_, _>>()
                        .map_err(fail)?
                }
                flows::Action::UpdateFields(fields) => {
                    let scope = jq::Scope {
                        new: &new,
                        old: &Json::Null,
                        reply: &reply,
                        input,
                    };
                    fields
                        .iter()
                        .map(|(f, e)| e.eval(&scope).map(|v| (f.clone(), v)))
                        .collect::<Result<_, _>>()
                        .map_err(fail)?
                }
                _ => Vec::new(),
            };
            if let Json::Object(m) = &mut new {
                for (f, v) in &scope_sets {
                    m.insert(f.clone(), v.clone());
                }
            }
            sets.extend(scope_sets);
        }
        if !sets.is_empty() {
            let Some((seq, _)) = record else {
                return Err(fail(
                    "the flow sets record fields but the input names no recordId".into(),
                ));
            };
            let body = Json::Object(sets.into_iter().collect());
            let (o, p2) = (object.clone(), p.clone());
            org.store()
                .write(move |tx| service::ops::update(tx, &p2, &o, seq, &body, None))
                .await?;
            org.note_write(&object.name);
        }
        for (k, e) in &flow.outputs {
            let v = e
                .eval(&jq::Scope {
                    new: &new,
                    old: &Json::Null,
                    reply: &reply,
                    input,
                })
                .map_err(fail)?;
            outputs.insert(k.clone(), v);
        }
        outputs.insert("Flow__InterviewStatus".into(), Json::from("Finished"));
        Ok(Json::Object(outputs))
    }
}

impl Catalog for Automation {
    fn outbound(&self, name: &str) -> Option<Arc<OutboundDef>> {
        self.set.read().outbound.get(name).cloned()
    }

    fn webhook(&self, name: &str) -> Option<Arc<WebhookDef>> {
        self.set.read().webhooks.get(name).cloned()
    }

    fn run_local<'a>(
        &'a self,
        org: &'a Arc<Org>,
        row: &'a DeliveryRow,
    ) -> BoxFuture<'a, Result<(), LocalFailure>> {
        Box::pin(self.run_job(org, row))
    }
}

/// Builds the usable services from their stored documents.
fn build_services(stored: &BTreeMap<String, Json>) -> Result<Services, String> {
    let mut out = Services::new();
    for (name, doc) in stored {
        let credential = doc["credential"].as_str().unwrap_or_default();
        let svc = external::parse(name, credential, doc["openapi"].clone())
            .map_err(|e| format!("External Service {name}: {e}"))?;
        out.insert(name.clone(), Arc::new(svc));
    }
    Ok(out)
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidInput, msg)
}

fn flow_json(def: &FlowDef, source: Source) -> Json {
    let mut v = serde_json::to_value(def).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut v {
        m.insert(
            "source".into(),
            Json::from(match source {
                Source::File => "file",
                Source::Api => "api",
            }),
        );
    }
    v
}

impl Automation {
    /// Counts a run of flow `name` (its entry conditions passed).
    fn ran(&self, name: &str) {
        let mut runs = self.runs.lock();
        let r = runs.entry(name.to_string()).or_default();
        r.0 += 1;
        r.2 = now_millis();
    }

    /// A flow's JSON with its counts since start.
    fn flow_with_runs(&self, def: &FlowDef, source: Source) -> Json {
        let mut v = flow_json(def, source);
        let (runs, faults, last) = self.runs.lock().get(&def.name).copied().unwrap_or_default();
        if let Json::Object(m) = &mut v {
            m.insert("runs".into(), Json::from(runs));
            m.insert("faults".into(), Json::from(faults));
            m.insert(
                "lastRunDate".into(),
                if last > 0 {
                    Json::from(model::value::format_datetime_z(last))
                } else {
                    Json::Null
                },
            );
        }
        v
    }
}

impl service::automation::Automation for Automation {
    fn flows(&self) -> Vec<Json> {
        self.defs()
            .iter()
            .map(|(d, s)| self.flow_with_runs(d, *s))
            .collect()
    }

    fn flow(&self, name: &str) -> Option<Json> {
        self.defs()
            .iter()
            .find(|(d, _)| d.name.eq_ignore_ascii_case(name))
            .map(|(d, s)| self.flow_with_runs(d, *s))
    }

    fn put_flow<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        mut doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>> {
        Box::pin(async move {
            let _one_at_a_time = self.admin.lock().await;
            service::metadata::name_definition(
                &mut doc,
                name,
                "flow",
                "{object, on, timing, condition, actions}",
            )?;
            let def: FlowDef = serde_json::from_value(doc.clone())
                .map_err(|e| invalid(format!("flow {name}: {e}")))?;
            if self
                .files
                .lock()
                .iter()
                .any(|f| f.name.eq_ignore_ascii_case(name))
            {
                return Err(invalid(format!(
                    "flow {name} is defined in the metadata folder; change its file instead"
                )));
            }
            let mut api = self.api.lock().clone();
            let created = api.insert(name.to_string(), doc).is_none();
            let defs = self.all_defs(&api).map_err(invalid)?;
            let set = self
                .compile_all(defs, &org.schema(), &self.current_services())
                .map_err(invalid)?;
            let text = serde_json::to_string(&api).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(API_FLOWS, &text)?))
                .await?;
            *self.api.lock() = api;
            *self.set.write() = Arc::new(set);
            Ok((flow_json(&def, Source::Api), created))
        })
    }

    fn delete_flow<'a>(&'a self, org: &'a Org, name: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let _one_at_a_time = self.admin.lock().await;
            let mut api = self.api.lock().clone();
            if api.remove(name).is_none() {
                if self
                    .files
                    .lock()
                    .iter()
                    .any(|f| f.name.eq_ignore_ascii_case(name))
                {
                    return Err(invalid(format!(
                        "flow {name} is defined in the metadata folder; remove its file instead"
                    )));
                }
                return Err(ApiError::not_found());
            }
            let defs = self.all_defs(&api).map_err(invalid)?;
            let set = self
                .compile_all(defs, &org.schema(), &self.current_services())
                .map_err(invalid)?;
            let text = serde_json::to_string(&api).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(API_FLOWS, &text)?))
                .await?;
            *self.api.lock() = api;
            *self.set.write() = Arc::new(set);
            Ok(())
        })
    }

    fn outbound_wsdl(&self, org: &Org, name: &str) -> Option<String> {
        let def = self.set.read().outbound.get(name).cloned()?;
        let schema = org.schema();
        let object = schema.object(&def.object)?;
        let fields: Vec<(String, &'static str)> = def
            .fields
            .iter()
            .filter_map(|f| object.field_index(f))
            .map(|i| {
                let f = &object.fields[i];
                (f.name.clone(), xsd_type(f.ty))
            })
            .collect();
        Some(delivery::outbound::wsdl(
            &object.name,
            &fields,
            &def.endpoint,
        ))
    }

    fn calls_out(&self, object: &str, op: Op) -> bool {
        !self.callout_flows(object, op).is_empty()
    }

    fn prepare<'a>(
        &'a self,
        org: &'a Org,
        p: &'a service::Principal,
        object: &'a str,
        op: Op,
        id: Option<&'a str>,
        body: &'a Json,
    ) -> BoxFuture<'a, ApiResult<Option<service::auth::Prepared>>> {
        Box::pin(async move {
            let schema = org.schema();
            let Some(o) = schema.object(object).cloned() else {
                return Ok(None);
            };
            let old = match id {
                Some(id) => match Self::read_record(org, &o, id)? {
                    Some((_, j)) => j,
                    // The save itself reports the missing record.
                    None => return Ok(None),
                },
                None => Json::Null,
            };
            // The record as the save would leave it, by the request's values.
            let mut new = match &old {
                Json::Object(m) => m.clone(),
                _ => o
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), Json::Null))
                    .collect(),
            };
            if let Json::Object(b) = body {
                for (k, v) in b {
                    if let Some(i) = o.field_index(k) {
                        new.insert(o.fields[i].name.clone(), v.clone());
                    }
                }
            }
            let new = Json::Object(new);
            let record_id = id.map(str::to_string);
            let rid = record_id.clone().unwrap_or_default();
            let mut budget = callout::Budget::default();
            let mut by_flow = HashMap::new();
            for flow in self.callout_flows(&o.name, op) {
                let fail =
                    |m: String| self.log_fault(&flow, &o.name, &rid, op.as_str(), &p.username, m);
                if !enters(&flow, &new, &old).map_err(fail)? {
                    continue;
                }
                let mut replies = Vec::new();
                let mut reply = Json::Null;
                for a in &flow.actions {
                    if let flows::Action::Callout(c) = a {
                        let cred = self.credential(&c.credential).map_err(fail)?;
                        let scope = jq::Scope {
                            new: &new,
                            old: &old,
                            reply: &reply,
                            input: &Json::Null,
                        };
                        reply = c
                            .call(&cred, &scope, record_id.as_deref(), &mut budget)
                            .await
                            .map_err(fail)?;
                        replies.push(reply.clone());
                    }
                }
                by_flow.insert(flow.def.name.clone(), replies);
            }
            if by_flow.is_empty() {
                return Ok(None);
            }
            Ok(Some(service::auth::Prepared(Arc::new(PreparedReplies {
                by_flow,
            }))))
        })
    }

    fn invocable(&self) -> Vec<(String, String)> {
        self.set
            .read()
            .flows
            .iter()
            .filter(|(f, _)| f.invocable && f.def.active)
            .map(|(f, _)| {
                (
                    f.def.name.clone(),
                    f.def.label.clone().unwrap_or_else(|| f.def.name.clone()),
                )
            })
            .collect()
    }

    fn invoke<'a>(
        &'a self,
        org: &'a Org,
        p: &'a service::Principal,
        name: &'a str,
        inputs: Vec<Json>,
    ) -> BoxFuture<'a, ApiResult<Vec<Json>>> {
        Box::pin(async move {
            let flow = self
                .set
                .read()
                .flows
                .iter()
                .map(|(f, _)| f)
                .find(|f| f.invocable && f.def.active && f.def.name.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(ApiError::not_found)?;
            if inputs.len() > 200 {
                return Err(ApiError::new(
                    ErrorCode::LimitExceeded,
                    "At most 200 inputs per invocation.",
                ));
            }
            self.ran(&flow.def.name);
            let mut out = Vec::with_capacity(inputs.len());
            for input in &inputs {
                let r = match input {
                    Json::Object(_) => self.invoke_one(org, p, &flow, input).await,
                    _ => Err(ApiError::new(
                        ErrorCode::InvalidInput,
                        "each input is a JSON object of the flow's input values",
                    )),
                };
                out.push(match r {
                    Ok(outputs) => json!({
                        "actionName": flow.def.name,
                        "errors": null,
                        "isSuccess": true,
                        "outputValues": outputs,
                    }),
                    Err(e) => json!({
                        "actionName": flow.def.name,
                        "errors": [{"statusCode": e.code.as_str(), "message": e.message, "fields": e.fields}],
                        "isSuccess": false,
                        "outputValues": null,
                    }),
                });
            }
            Ok(out)
        })
    }

    fn external_services(&self) -> Vec<Json> {
        let mut v: Vec<Json> = self
            .current_services()
            .values()
            .map(|s| s.to_json())
            .collect();
        v.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        v
    }

    fn external_service_doc(&self, name: &str) -> Option<Json> {
        self.service_docs
            .lock()
            .get(name)
            .map(|d| d["openapi"].clone())
    }

    fn put_external_service<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        credential: &'a str,
        doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>> {
        Box::pin(async move {
            let _one_at_a_time = self.admin.lock().await;
            if name.is_empty()
                || name.len() > 80
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(invalid(format!(
                    "External Service {name:?}: use letters, digits and underscores"
                )));
            }
            if !self.creds.read().contains_key(credential) {
                return Err(invalid(format!(
                    "there is no named credential {credential:?}: create it first (conflux/named-credentials/{credential})"
                )));
            }
            let svc = external::parse(name, credential, doc.clone())
                .map_err(|e| invalid(format!("External Service {name}: {e}")))?;
            let shown = svc.to_json();
            let mut docs = self.service_docs.lock().clone();
            let created = docs
                .insert(
                    name.to_string(),
                    json!({"credential": credential, "openapi": doc}),
                )
                .is_none();
            let mut services = (*self.current_services()).clone();
            services.insert(name.to_string(), Arc::new(svc));
            // Flows calling the service must still compile against the new document.
            let defs = self.all_defs(&self.api.lock()).map_err(invalid)?;
            let set = self
                .compile_all(defs, &org.schema(), &services)
                .map_err(|e| invalid(format!("the new document breaks a flow: {e}")))?;
            let text = serde_json::to_string(&docs).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(external::SETTING, &text)?))
                .await?;
            *self.service_docs.lock() = docs;
            *self.services.write() = Arc::new(services);
            *self.set.write() = Arc::new(set);
            Ok((shown, created))
        })
    }

    fn delete_external_service<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let _one_at_a_time = self.admin.lock().await;
            let mut docs = self.service_docs.lock().clone();
            if docs.remove(name).is_none() {
                return Err(ApiError::not_found());
            }
            let mut services = (*self.current_services()).clone();
            services.remove(name);
            let defs = self.all_defs(&self.api.lock()).map_err(invalid)?;
            let set = self
                .compile_all(defs, &org.schema(), &services)
                .map_err(|e| invalid(format!("a flow still calls it: {e}")))?;
            let text = serde_json::to_string(&docs).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(external::SETTING, &text)?))
                .await?;
            *self.service_docs.lock() = docs;
            *self.services.write() = Arc::new(services);
            *self.set.write() = Arc::new(set);
            Ok(())
        })
    }

    fn credentials(&self) -> Vec<Json> {
        let vault = &self.vault;
        self.cred_docs
            .lock()
            .iter()
            .map(|(name, sealed)| {
                let plain = vault.open_doc(sealed).unwrap_or(Json::Null);
                let mut doc = credentials::redact(&plain);
                if let Json::Object(m) = &mut doc {
                    m.insert("name".into(), Json::from(name.clone()));
                }
                doc
            })
            .collect()
    }

    fn put_credential<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>> {
        Box::pin(async move {
            let _one_at_a_time = self.admin.lock().await;
            if name.is_empty()
                || name.len() > 80
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(invalid(format!(
                    "named credential {name:?}: use letters, digits and underscores"
                )));
            }
            let cred = credentials::build(name, &doc).map_err(invalid)?;
            let mut docs = self.cred_docs.lock().clone();
            let created = docs
                .insert(name.to_string(), self.vault.seal_doc(&doc))
                .is_none();
            let text = serde_json::to_string(&docs).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(credentials::SETTING, &text)?))
                .await?;
            *self.cred_docs.lock() = docs;
            let mut creds = (**self.creds.read()).clone();
            creds.insert(name.to_string(), Arc::new(cred));
            *self.creds.write() = Arc::new(creds);
            let mut shown = credentials::redact(&doc);
            if let Json::Object(m) = &mut shown {
                m.insert("name".into(), Json::from(name));
            }
            Ok((shown, created))
        })
    }

    fn delete_credential<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let _one_at_a_time = self.admin.lock().await;
            let mut docs = self.cred_docs.lock().clone();
            if docs.remove(name).is_none() {
                return Err(ApiError::not_found());
            }
            let text = serde_json::to_string(&docs).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(credentials::SETTING, &text)?))
                .await?;
            *self.cred_docs.lock() = docs;
            let mut creds = (**self.creds.read()).clone();
            creds.remove(name);
            *self.creds.write() = Arc::new(creds);
            Ok(())
        })
    }
}

/// The XML Schema type of a field in an Outbound Message.
fn xsd_type(t: model::FieldType) -> &'static str {
    use model::FieldType as T;
    match t {
        T::Boolean => "xsd:boolean",
        T::Int => "xsd:int",
        T::Double | T::Currency | T::Percent => "xsd:double",
        T::Date => "xsd:date",
        T::DateTime => "xsd:dateTime",
        T::Time => "xsd:time",
        T::Id | T::Reference => "ent:ID",
        _ => "xsd:string",
    }
}

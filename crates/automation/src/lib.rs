//! Flows: automation that reacts to record changes. A flow names an object, the changes that
//! trigger it, an entry condition (a jq expression over `$new` and `$old`) and actions.
//! Before-save flows set fields of the record in the same transaction; after-save flows queue
//! their work (Outbound Messages, webhooks) in the delivery queue in the same transaction, so it
//! is never lost and never sent for a change that rolled back.

pub mod flows;
pub mod jq;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use delivery::{Catalog, OutboundDef, WebhookDef, KIND_OUTBOUND, KIND_WEBHOOK};
use model::value::now_millis;
use model::{ApiError, ApiResult, ErrorCode, OrgMarker, Schema};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value as Json};
use service::automation::BoxFuture;
use service::triggers::{Change, Op, Triggers};
use service::Org;
use store::{FaultRow, NewDelivery, WriteTx};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The setting holding the API-managed flows (name → document as written).
const API_FLOWS: &str = "flows.api";
/// Flow faults kept (the oldest go first).
const KEEP_FAULTS: u64 = 10_000;
/// Faults waiting to be written at most (beyond, they are only logged).
const FAULT_QUEUE: usize = 4_096;

/// Where a flow comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file of the metadata folder (changed by editing the file).
    File,
    /// The admin API (stored in the database).
    Api,
}

pub use flows::{Flow, FlowDef};

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
}

impl Automation {
    /// No flows yet; queued notifications expire after `expiry`.
    pub fn new(marker: OrgMarker, expiry: Duration) -> Arc<Automation> {
        let (faults, fault_rx) = mpsc::channel(FAULT_QUEUE);
        Arc::new(Automation {
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
        *self.files.lock() = files;
        *self.api.lock() = api;
        self.reinstall(&org.schema())?;
        Ok(n)
    }

    fn reinstall(&self, schema: &Schema) -> Result<(), String> {
        let defs = self.all_defs(&self.api.lock())?;
        self.install(defs, schema)
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
        tracing::warn!(flow = %flow.def.name, record = %change.id.to_18(), "flow fault: {msg}");
        let row = FaultRow {
            seq: 0,
            created_ms: now_millis(),
            flow: flow.def.name.clone(),
            object: change.object.name.clone(),
            record: change.id.to_18(),
            event: change.op.as_str().into(),
            user: change.principal.username.clone(),
            message: msg.clone(),
        };
        if self.faults.try_send(row).is_err() {
            tracing::error!("the flow fault log is behind; a fault was only logged");
        }
        fault(flow, msg)
    }

    /// Replaces every flow with `defs`, all checked first: on any error nothing changes.
    pub fn install(&self, defs: Vec<(FlowDef, Source)>, schema: &Schema) -> Result<(), String> {
        let set = self.compile_all(defs, schema)?;
        *self.set.write() = Arc::new(set);
        Ok(())
    }

    fn compile_all(
        &self,
        defs: Vec<(FlowDef, Source)>,
        schema: &Schema,
    ) -> Result<FlowSet, String> {
        let mut set = FlowSet::default();
        let mut names: HashMap<String, ()> = HashMap::new();
        for (def, source) in defs {
            if names.insert(def.name.to_ascii_lowercase(), ()).is_some() {
                return Err(format!("two flows are named {}", def.name));
            }
            let flow = flows::compile(def, schema, self.marker)?;
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
                    flows::Action::UpdateFields(_) => continue,
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
        let (new, old) = (as_json(change.new), as_json(change.old));
        for flow in self.matching(&change.object.name, change.op, true) {
            if !enters(&flow, &new, &old).map_err(|m| self.fault(&flow, change, m))? {
                continue;
            }
            for a in &flow.actions {
                if let flows::Action::UpdateFields(fields) = a {
                    for (f, e) in fields {
                        let v = e
                            .first(&new, &old)
                            .map_err(|m| self.fault(&flow, change, m))?;
                        sets.push((f.clone(), v));
                    }
                }
            }
        }
        Ok(sets)
    }

    fn after_save(&self, tx: &mut dyn WriteTx, change: &Change<'_>) -> ApiResult<()> {
        let (new, old) = (as_json(change.new), as_json(change.old));
        let now = now_millis();
        let expires = now + self.expiry.as_millis() as i64;
        let record = change.id.to_18();
        for flow in self.matching(&change.object.name, change.op, false) {
            if !enters(&flow, &new, &old).map_err(|m| self.fault(&flow, change, m))? {
                continue;
            }
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
                            Some(e) => e
                                .first(&new, &old)
                                .map_err(|m| self.fault(&flow, change, m))?,
                            None => json!({
                                "flow": flow.def.name,
                                "object": change.object.name,
                                "event": change.op.as_str(),
                                "id": record,
                                "new": new,
                                "old": old,
                            }),
                        };
                        (
                            KIND_WEBHOOK,
                            d.url.clone(),
                            d.name.clone(),
                            body.to_string(),
                        )
                    }
                    flows::Action::UpdateFields(_) => continue,
                };
                tx.enqueue_delivery(&NewDelivery {
                    kind: kind.into(),
                    endpoint,
                    action,
                    record: record.clone(),
                    payload,
                    created_ms: now,
                    next_ms: now,
                    expires_ms: expires,
                })?;
            }
        }
        Ok(())
    }
}

impl Catalog for Automation {
    fn outbound(&self, name: &str) -> Option<Arc<OutboundDef>> {
        self.set.read().outbound.get(name).cloned()
    }

    fn webhook(&self, name: &str) -> Option<Arc<WebhookDef>> {
        self.set.read().webhooks.get(name).cloned()
    }
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

impl service::automation::Automation for Automation {
    fn flows(&self) -> Vec<Json> {
        self.defs().iter().map(|(d, s)| flow_json(d, *s)).collect()
    }

    fn flow(&self, name: &str) -> Option<Json> {
        self.defs()
            .iter()
            .find(|(d, _)| d.name.eq_ignore_ascii_case(name))
            .map(|(d, s)| flow_json(d, *s))
    }

    fn put_flow<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        mut doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>> {
        Box::pin(async move {
            let _one_at_a_time = self.admin.lock().await;
            let Json::Object(m) = &mut doc else {
                return Err(ApiError::new(
                    ErrorCode::JsonParserError,
                    "a flow is a JSON object: {object, on, timing, condition, actions}",
                ));
            };
            match m.get("name") {
                None => {
                    m.insert("name".into(), Json::from(name));
                }
                Some(Json::String(n)) if n == name => {}
                Some(other) => {
                    return Err(invalid(format!(
                        "the body names the flow {other}, the URL {name}"
                    )))
                }
            }
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
            let set = self.compile_all(defs, &org.schema()).map_err(invalid)?;
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
            let set = self.compile_all(defs, &org.schema()).map_err(invalid)?;
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

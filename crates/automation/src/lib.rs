//! Flows: automation that reacts to record changes. A flow names an object, the changes that
//! trigger it, an entry condition (a jq expression over `$new` and `$old`) and actions.
//! Before-save flows set fields of the record in the same transaction; after-save flows queue
//! their work (Outbound Messages, webhooks) in the delivery queue in the same transaction, so it
//! is never lost and never sent for a change that rolled back.

pub mod flows;
pub mod jq;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use delivery::{Catalog, OutboundDef, WebhookDef, KIND_OUTBOUND, KIND_WEBHOOK};
use model::value::now_millis;
use model::{ApiError, ApiResult, ErrorCode, OrgMarker, Schema};
use parking_lot::RwLock;
use serde_json::{json, Value as Json};
use service::triggers::{Change, Op, Triggers};
use store::{NewDelivery, WriteTx};

pub use flows::{Flow, FlowDef};

/// The flows of an org, compiled, and the action definitions they declare.
#[derive(Default)]
struct FlowSet {
    flows: Vec<Arc<Flow>>,
    outbound: HashMap<String, Arc<OutboundDef>>,
    webhooks: HashMap<String, Arc<WebhookDef>>,
}

/// The org's automation: installed as the org's record triggers and as the delivery engine's
/// catalog of actions.
pub struct Automation {
    set: RwLock<Arc<FlowSet>>,
    expiry: Duration,
    marker: OrgMarker,
}

impl Automation {
    /// No flows yet; queued notifications expire after `expiry`.
    pub fn new(marker: OrgMarker, expiry: Duration) -> Arc<Automation> {
        Arc::new(Automation {
            set: RwLock::new(Arc::default()),
            expiry,
            marker,
        })
    }

    /// Replaces every flow with `defs`, all checked first: on any error nothing changes.
    pub fn install(&self, defs: Vec<FlowDef>, schema: &Schema) -> Result<(), String> {
        let mut set = FlowSet::default();
        let mut names: HashMap<String, ()> = HashMap::new();
        for def in defs {
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
            set.flows.push(Arc::new(flow));
        }
        *self.set.write() = Arc::new(set);
        Ok(())
    }

    /// Reads and installs the flow files of `dir`.
    pub fn load_dir(&self, dir: &Path, schema: &Schema) -> Result<usize, String> {
        let defs = flows::read_dir(dir)?;
        let n = defs.len();
        self.install(defs, schema)?;
        Ok(n)
    }

    /// The installed flows, as written.
    pub fn flows(&self) -> Vec<FlowDef> {
        self.set
            .read()
            .flows
            .iter()
            .map(|f| f.def.clone())
            .collect()
    }

    fn matching(&self, object: &str, op: Op, before: bool) -> Vec<Arc<Flow>> {
        self.set
            .read()
            .flows
            .iter()
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

/// Whether the flow's entry condition holds for the change.
fn enters(flow: &Flow, new: &Json, old: &Json) -> ApiResult<bool> {
    match &flow.condition {
        None => Ok(true),
        Some(c) => c.holds(new, old).map_err(|m| fault(flow, m)),
    }
}

impl Triggers for Automation {
    fn watches(&self, object: &str, op: Op) -> bool {
        self.set.read().flows.iter().any(|f| {
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
            if !enters(&flow, &new, &old)? {
                continue;
            }
            for a in &flow.actions {
                if let flows::Action::UpdateFields(fields) = a {
                    for (f, e) in fields {
                        let v = e.first(&new, &old).map_err(|m| fault(&flow, m))?;
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
            if !enters(&flow, &new, &old)? {
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
                            Some(e) => e.first(&new, &old).map_err(|m| fault(&flow, m))?,
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

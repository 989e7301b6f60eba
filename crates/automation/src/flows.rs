//! Flow definitions: what a flow file says (YAML or JSON, one flow per file in
//! `metadata/flows/`), checked against the org's metadata and compiled once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use delivery::{OutboundDef, WebhookDef};
use model::Schema;
use serde::{Deserialize, Serialize};

use crate::jq::Expr;

/// A flow as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlowDef {
    /// Its unique API name.
    pub name: String,
    /// A label for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The object whose records trigger it.
    pub object: String,
    /// The changes that trigger it (`create`, `update`, `delete`); default create and update.
    #[serde(default = "default_on")]
    pub on: Vec<String>,
    /// `before_save` (change the record in the same transaction) or `after_save` (queue work,
    /// durably, in the same transaction).
    #[serde(default = "default_timing")]
    pub timing: String,
    /// The entry condition: a jq expression over `$new` and `$old` (`.` is the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Whether it runs.
    #[serde(default = "yes")]
    pub active: bool,
    /// What it does, in order.
    pub actions: Vec<ActionDef>,
    /// Invocable flows: output name → jq expression (over `$input`, `$new`, `$reply`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// How long the flow's deliveries are retried before they go to the dead-letter queue, in
    /// seconds (default: the server's `--delivery-expiry-secs`, 24 h; at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_seconds: Option<u64>,
}

fn default_on() -> Vec<String> {
    vec!["create".into(), "update".into()]
}

fn default_timing() -> String {
    "after_save".into()
}

fn yes() -> bool {
    true
}

/// One action as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
// A definition as read from a file: a few per flow, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum ActionDef {
    /// Set fields of the triggering record (before-save flows): field name → jq expression.
    UpdateFields {
        /// Field → expression, in file order.
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Send an Outbound Message with the record's latest state.
    OutboundMessage {
        /// Unique name of the message definition.
        name: String,
        /// The receiver's URL.
        endpoint: String,
        /// The fields to send.
        fields: Vec<String>,
        /// The API version of the call-back URLs.
        #[serde(default = "default_version")]
        api_version: String,
        /// Send a session id so the receiver can call back (as `user`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        include_session_id: bool,
        /// The user the session id is for ("User to Send As").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// Call a remote service through a named credential and wait for its reply (before-save and
    /// invocable flows); `reply_fields` set record fields from the reply.
    Callout {
        /// The action's name (for errors).
        name: String,
        /// The named credential (default: the External Service's).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        credential: String,
        /// An External Service to call an operation of, instead of a method and path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// The service's `operationId`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
        /// The operation's parameters: name → jq expression.
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        params: serde_json::Map<String, serde_json::Value>,
        /// HTTP method (default POST).
        #[serde(default = "default_method")]
        method: String,
        /// Appended to the credential's URL; a jq expression when it starts with `(`.
        #[serde(default)]
        path: String,
        /// The JSON body (jq); default none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// Extra headers.
        #[serde(default, skip_serializing_if = "HashMap::is_empty")]
        headers: HashMap<String, String>,
        /// Milliseconds to wait for the reply (default 10,000; at most 120,000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        /// Record field → jq expression over `$reply`.
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        reply_fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Create a record (after-save and platform-event flows): field → jq expression.
    CreateRecord {
        /// The object of the new record.
        object: String,
        /// Field → expression, evaluated when the triggering change commits.
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Update a record (after-save and platform-event flows) named by a jq expression.
    UpdateRecord {
        /// The object of the record.
        object: String,
        /// Its id: a jq expression (`$new.AccountId`).
        id: String,
        /// Field → expression.
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Publish a platform event (after-save and platform-event flows).
    PublishEvent {
        /// The event type (`Order_Activated__e`).
        event: String,
        /// Field → expression.
        fields: serde_json::Map<String, serde_json::Value>,
    },
    /// Send a signed JSON webhook.
    Webhook {
        /// Unique name of the webhook definition.
        name: String,
        /// The receiver's URL.
        url: String,
        /// HMAC-SHA256 key for the signature header (never shown by the API).
        #[serde(default, skip_serializing)]
        secret: Option<String>,
        /// The body: a jq expression (default: `{flow, object, event, id, new: $new, old: $old}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// Extra headers.
        #[serde(default, skip_serializing_if = "HashMap::is_empty")]
        headers: HashMap<String, String>,
        /// The most requests written at once on a connection before their replies are read
        /// (HTTP/1.1 pipelining, 1..=16; default 8). Only receivers that answered a probe of
        /// two pipelined requests get more than one; 1 turns it off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pipeline: Option<usize>,
    },
}

fn default_method() -> String {
    "POST".into()
}

fn default_version() -> String {
    "60.0".into()
}

/// A compiled action.
#[derive(Debug)]
pub enum Action {
    /// Field index name → expression.
    UpdateFields(Vec<(String, Expr)>),
    /// Queue an Outbound Message.
    Outbound(Arc<OutboundDef>),
    /// Queue a webhook with the body the expression builds.
    Webhook(Arc<WebhookDef>, Option<Expr>),
    /// Call out and map the reply.
    Callout(Arc<crate::callout::Callout>),
    /// Create, update or publish inside the org, queued after save.
    Local(Local),
}

/// What a queued in-org action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalOp {
    /// Create a record.
    Create,
    /// Update a record.
    Update,
    /// Publish a platform event.
    Publish,
}

impl LocalOp {
    /// Its name in queued payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalOp::Create => "create",
            LocalOp::Update => "update",
            LocalOp::Publish => "publish",
        }
    }
}

/// A compiled in-org action.
#[derive(Debug)]
pub struct Local {
    /// What it does.
    pub op: LocalOp,
    /// The object (or event type).
    pub object: String,
    /// The record id (updates).
    pub id: Option<Expr>,
    /// Field → expression.
    pub fields: Vec<(String, Expr)>,
}

/// A compiled flow.
#[derive(Debug)]
pub struct Flow {
    /// As written.
    pub def: FlowDef,
    /// Before-save (else after-save).
    pub before: bool,
    /// Triggering changes.
    pub on: Vec<service::triggers::Op>,
    /// Run through `actions/custom/flow/{name}` (not by record changes).
    pub invocable: bool,
    /// Triggered by platform events of its object (an event type).
    pub event: bool,
    /// Invocable flows' outputs.
    pub outputs: Vec<(String, Expr)>,
    /// The entry condition.
    pub condition: Option<Expr>,
    /// The actions.
    pub actions: Vec<Action>,
}

/// Reads a flow file (YAML or JSON).
pub fn parse(text: &str, what: &str) -> Result<FlowDef, String> {
    serde_yaml::from_str(text).map_err(|e| format!("{what}: {e}"))
}

/// Reads every `*.yaml`, `*.yml` and `*.json` file of `dir` (sorted by name).
pub fn read_dir(dir: &Path) -> Result<Vec<FlowDef>, String> {
    read_documents(dir)
}

/// Reads every `*.yaml`, `*.yml` and `*.json` file of `dir` (sorted by name) as a `T`: the
/// metadata folders of flows and sync jobs, one definition per file.
pub fn read_documents<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<Vec<T>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// The `04k…` id of an Outbound Message: stable for its name.
fn outbound_id(schema_marker: model::OrgMarker, name: &str) -> String {
    // FNV-1a over the name, folded into the range of a 9-character base-62 sequence.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    model::Id::new(
        model::KeyPrefix(*b"04k"),
        schema_marker,
        h % 13_537_086_546_263_552,
    )
    .to_18()
}

/// Checks a flow against the schema and compiles it.
pub fn compile(
    mut def: FlowDef,
    schema: &Schema,
    marker: model::OrgMarker,
    services: &crate::Services,
) -> Result<Flow, String> {
    use service::triggers::Op;
    let name = &def.name.clone();
    let err = |m: String| format!("flow {name}: {m}");
    if name.is_empty()
        || name.len() > 80
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err(format!(
            "flow name {name:?}: use letters, digits and underscores, starting with a letter"
        ));
    }
    let object = schema
        .object(&def.object)
        .ok_or_else(|| err(format!("there is no object {}", def.object)))?;
    let before = match def.timing.as_str() {
        "before_save" => true,
        "after_save" => false,
        t => {
            return Err(err(format!(
                "timing {t:?} is not before_save or after_save"
            )))
        }
    };
    let event = object.kind == model::ObjectKind::PlatformEvent;
    if event && def.on == default_on() {
        def.on = vec!["publish".into()];
    }
    if event && (before || def.on.iter().any(|o| o != "create" && o != "publish")) {
        return Err(err(format!(
            "{} is a platform event: its flows run after it is published (timing: after_save, on: [publish])",
            object.name
        )));
    }
    let mut on = Vec::new();
    let invocable = def.on.iter().any(|o| o == "invoke");
    if invocable && def.on.len() > 1 {
        return Err(err(
            "an invocable flow (on: [invoke]) is not also triggered by record changes".into(),
        ));
    }
    for o in def.on.iter().filter(|o| *o != "invoke") {
        on.push(match o.as_str() {
            "create" | "publish" if event => Op::Create,
            "create" => Op::Create,
            "update" => Op::Update,
            "delete" if !before => Op::Delete,
            "delete" => return Err(err("before_save flows run on create and update only".into())),
            other => {
                return Err(err(format!(
                    "{other:?} is not create, update, delete, invoke or publish (platform events)"
                )))
            }
        });
    }
    if on.is_empty() && !invocable {
        return Err(err("`on` names no change".into()));
    }
    let condition = def
        .condition
        .as_deref()
        .map(Expr::compile)
        .transpose()
        .map_err(err)?;
    let check_field = |f: &str| -> Result<(), String> {
        object
            .field_index(f)
            .map(|_| ())
            .ok_or_else(|| err(format!("{} has no field {f}", object.name)))
    };
    // Create, update and publish actions: queued after save, run inside the org.
    let local = |op: LocalOp,
                 target: &str,
                 id: Option<&String>,
                 fields: &serde_json::Map<String, serde_json::Value>|
     -> Result<Action, String> {
        if before || invocable {
            return Err(err(format!(
                "{}_record and publish_event run in after_save flows",
                op.as_str()
            )));
        }
        let o = schema
            .object(target)
            .ok_or_else(|| err(format!("there is no object {target}")))?;
        let is_event = o.kind == model::ObjectKind::PlatformEvent;
        if is_event != (op == LocalOp::Publish) {
            return Err(err(if is_event {
                format!(
                    "{} is a platform event: publish it with publish_event",
                    o.name
                )
            } else {
                format!(
                    "publish_event names {}, which is not a platform event",
                    o.name
                )
            }));
        }
        let mut v = Vec::new();
        for (f, e) in fields {
            if o.field_index(f).is_none() {
                return Err(err(format!("{} has no field {f}", o.name)));
            }
            let src = e.as_str().ok_or_else(|| {
                err(format!(
                    "the value of {f} must be a jq expression (a string)"
                ))
            })?;
            v.push((f.clone(), Expr::compile(src).map_err(err)?));
        }
        Ok(Action::Local(Local {
            op,
            object: o.name.clone(),
            id: id.map(|e| Expr::compile(e)).transpose().map_err(err)?,
            fields: v,
        }))
    };
    let mut actions = Vec::new();
    for a in &def.actions {
        actions.push(match a {
            ActionDef::UpdateFields { fields } => {
                if !before && !invocable {
                    return Err(err(
                        "update_fields runs in before_save and invocable flows".into()
                    ));
                }
                let mut v = Vec::new();
                for (f, e) in fields {
                    check_field(f)?;
                    let src = e.as_str().ok_or_else(|| {
                        err(format!(
                            "the value of {f} must be a jq expression (a string)"
                        ))
                    })?;
                    v.push((f.clone(), Expr::compile(src).map_err(err)?));
                }
                Action::UpdateFields(v)
            }
            ActionDef::OutboundMessage {
                name: n,
                endpoint,
                fields,
                api_version,
                include_session_id,
                user,
            } => {
                if *include_session_id && user.is_none() {
                    return Err(err(format!(
                        "outbound_message {n}: include_session_id needs the `user` the session is for"
                    )));
                }
                if before || invocable || event {
                    return Err(err(
                        "outbound_message runs in after_save flows of records".into()
                    ));
                }
                check_url(endpoint).map_err(err)?;
                for f in fields {
                    check_field(f)?;
                }
                Action::Outbound(Arc::new(OutboundDef {
                    name: n.clone(),
                    id: outbound_id(marker, n),
                    object: object.name.clone(),
                    endpoint: endpoint.clone(),
                    fields: fields.clone(),
                    api_version: api_version.clone(),
                    session_user: include_session_id.then(|| user.clone()).flatten(),
                }))
            }
            ActionDef::Callout {
                name: n,
                credential,
                service,
                operation,
                params,
                method,
                path,
                body,
                headers,
                timeout_ms,
                reply_fields,
            } => {
                if !before && !invocable {
                    return Err(err(
                        "callout runs in before_save and invocable flows (use a webhook after save)"
                            .into(),
                    ));
                }
                let timeout = match timeout_ms {
                    None => crate::callout::DEFAULT_TIMEOUT,
                    Some(ms) if *ms >= 1 && *ms <= 120_000 => std::time::Duration::from_millis(*ms),
                    Some(ms) => {
                        return Err(err(format!(
                            "callout {n}: timeout_ms {ms} is outside 1..=120000"
                        )))
                    }
                };
                let (method, path, credential) = match (service, operation) {
                    (Some(svc), Some(op_id)) => {
                        let sv = services.get(svc).ok_or_else(|| {
                            err(format!("callout {n}: there is no External Service {svc}"))
                        })?;
                        let op = sv.operations.get(op_id).cloned().ok_or_else(|| {
                            err(format!(
                                "callout {n}: External Service {svc} has no operation {op_id} (it has {})",
                                sv.operations.keys().cloned().collect::<Vec<_>>().join(", ")
                            ))
                        })?;
                        if !path.is_empty() {
                            return Err(err(format!(
                                "callout {n}: an operation's path comes from the service; drop `path`"
                            )));
                        }
                        match (op.body, body.is_some()) {
                            (Some(true), false) => {
                                return Err(err(format!(
                                    "callout {n}: {svc}.{op_id} requires a request body"
                                )))
                            }
                            (None, true) => {
                                return Err(err(format!(
                                    "callout {n}: {svc}.{op_id} takes no request body"
                                )))
                            }
                            _ => {}
                        }
                        let mut compiled = Vec::new();
                        for (k, e) in params {
                            let p = op.params.iter().find(|p| p.name == *k).ok_or_else(|| {
                                err(format!("callout {n}: {svc}.{op_id} has no parameter {k}"))
                            })?;
                            let src = e.as_str().ok_or_else(|| {
                                err(format!("callout {n}: parameter {k} must be a jq expression (a string)"))
                            })?;
                            compiled.push((p.clone(), Expr::compile(src).map_err(err)?));
                        }
                        for p in op.params.iter().filter(|p| p.required) {
                            if !params.contains_key(&p.name) {
                                return Err(err(format!(
                                    "callout {n}: {svc}.{op_id} requires the parameter {}",
                                    p.name
                                )));
                            }
                        }
                        let credential = if credential.is_empty() {
                            sv.credential.clone()
                        } else {
                            credential.clone()
                        };
                        (
                            op.method.clone(),
                            crate::callout::PathSpec::Operation {
                                name: format!("{svc}.{op_id}"),
                                base_path: sv.base_path.clone(),
                                op,
                                params: compiled,
                            },
                            credential,
                        )
                    }
                    (None, None) => {
                        if !params.is_empty() {
                            return Err(err(format!(
                                "callout {n}: params belong to External Service operations"
                            )));
                        }
                        if credential.is_empty() {
                            return Err(err(format!(
                                "callout {n}: name a credential, or a service and operation"
                            )));
                        }
                        let method =
                            reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                                .ok()
                                .filter(|m| {
                                    ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str())
                                })
                                .ok_or_else(|| {
                                    err(format!(
                                        "callout {n}: method {method} is not GET, POST, PUT, PATCH or DELETE"
                                    ))
                                })?;
                        let path = if path.starts_with('(') {
                            crate::callout::PathSpec::Expr(Expr::compile(path).map_err(err)?)
                        } else {
                            crate::callout::PathSpec::Fixed(path.clone())
                        };
                        (method, path, credential.clone())
                    }
                    _ => {
                        return Err(err(format!(
                            "callout {n}: name both `service` and `operation`"
                        )))
                    }
                };
                let mut mapped = Vec::new();
                for (f, e) in reply_fields {
                    check_field(f)?;
                    let src = e.as_str().ok_or_else(|| {
                        err(format!(
                            "reply field {f} must be a jq expression (a string)"
                        ))
                    })?;
                    mapped.push((f.clone(), Expr::compile(src).map_err(err)?));
                }
                let mut headers: Vec<(String, String)> = headers.clone().into_iter().collect();
                headers.sort();
                Action::Callout(Arc::new(crate::callout::Callout {
                    name: n.clone(),
                    credential,
                    method,
                    path,
                    body: body
                        .as_deref()
                        .map(Expr::compile)
                        .transpose()
                        .map_err(err)?,
                    headers,
                    timeout,
                    reply_fields: mapped,
                }))
            }
            ActionDef::CreateRecord {
                object: target,
                fields,
            } => local(LocalOp::Create, target, None, fields)?,
            ActionDef::UpdateRecord {
                object: target,
                id,
                fields,
            } => local(LocalOp::Update, target, Some(id), fields)?,
            ActionDef::PublishEvent {
                event: target,
                fields,
            } => local(LocalOp::Publish, target, None, fields)?,
            ActionDef::Webhook {
                name: n,
                url,
                secret,
                body,
                headers,
                pipeline,
            } => {
                if before || invocable {
                    return Err(err("webhook runs in after_save flows".into()));
                }
                check_url(url).map_err(err)?;
                let pipeline = pipeline.unwrap_or(delivery::DEFAULT_PIPELINE);
                if !(1..=delivery::MAX_PIPELINE).contains(&pipeline) {
                    return Err(err(format!(
                        "pipeline is outside 1..={}",
                        delivery::MAX_PIPELINE
                    )));
                }
                let body = body
                    .as_deref()
                    .map(Expr::compile)
                    .transpose()
                    .map_err(err)?;
                let mut headers: Vec<(String, String)> = headers.clone().into_iter().collect();
                headers.sort();
                Action::Webhook(
                    Arc::new(WebhookDef {
                        name: n.clone(),
                        url: url.clone(),
                        secret: secret.clone(),
                        headers,
                        pipeline,
                    }),
                    body,
                )
            }
        });
    }
    if def
        .expire_seconds
        .is_some_and(|e| e == 0 || e > 7 * 24 * 3600)
    {
        return Err(err("expire_seconds is outside 1..=604800 (7 days)".into()));
    }
    let mut outputs = Vec::new();
    if !def.outputs.is_empty() && !invocable {
        return Err(err(
            "outputs belong to invocable flows (on: [invoke])".into()
        ));
    }
    for (k, e) in &def.outputs {
        let src = e
            .as_str()
            .ok_or_else(|| err(format!("output {k} must be a jq expression (a string)")))?;
        outputs.push((k.clone(), Expr::compile(src).map_err(err)?));
    }
    Ok(Flow {
        before,
        on,
        invocable,
        event,
        outputs,
        condition,
        actions,
        def: FlowDef {
            object: object.name.clone(),
            ..def
        },
    })
}

fn check_url(u: &str) -> Result<(), String> {
    if u.starts_with("http://") || u.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{u:?} is not an http:// or https:// URL"))
    }
}

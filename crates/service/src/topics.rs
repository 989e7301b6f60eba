//! PushTopics: Streaming API channels `/topic/Name` defined by a SOQL query over one object.
//! A PushTopic is a record of the `PushTopic` object; its query is checked when the record is
//! saved. When a record is created, updated, deleted or undeleted (not through the Bulk APIs, and
//! not by a cascading delete), every active topic on its object whose query matches the record,
//! and whose `NotifyForFields` setting covers the fields that changed, gets a notification in the
//! same transaction: `{"event":{"createdDate","type"},"sobject":{Id and the selected fields}}`.
//! Matching runs the topic's query, restricted to the record, on the write transaction.

use std::sync::Arc;

use model::value::{format_datetime_z, now_millis};
use model::{ApiError, ApiResult, ErrorCode, Id, ObjectDef, Value};
use parking_lot::Mutex;
use serde_json::{json, Map, Value as Json};
use soql::plan::{Column, CompareOp, Expr, FieldRef, Operand, Plan, PlanKind, Scalar};
use store::{Cell, EventKind, NewEvent, ReadTx, WriteTx};

use crate::auth::Principal;

/// What happened to a record, as notifications name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicChange {
    /// `created`.
    Created,
    /// `updated`.
    Updated,
    /// `deleted`.
    Deleted,
    /// `undeleted`.
    Undeleted,
}

impl TopicChange {
    fn word(self) -> &'static str {
        match self {
            TopicChange::Created => "created",
            TopicChange::Updated => "updated",
            TopicChange::Deleted => "deleted",
            TopicChange::Undeleted => "undeleted",
        }
    }
}

/// An active PushTopic, compiled.
#[derive(Debug)]
pub struct Topic {
    /// `Name` (the channel is `/topic/Name`).
    pub name: String,
    /// The object it watches.
    pub object: Arc<ObjectDef>,
    plan: Plan,
    /// Fields whose change makes an update notify (`None`: any).
    relevant: Option<Vec<usize>>,
    /// NotifyForOperationCreate, Update, Delete, Undelete.
    notify: [bool; 4],
}

/// The org's active PushTopics, recompiled in the writer after PushTopic records change.
#[derive(Debug)]
pub struct Registry {
    state: Mutex<(bool, Arc<Vec<Arc<Topic>>>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            state: Mutex::new((true, Arc::default())),
        }
    }
}

impl Registry {
    /// The active topics as `tx` sees them.
    fn current(&self, tx: &mut dyn WriteTx) -> Arc<Vec<Arc<Topic>>> {
        let mut st = self.state.lock();
        if st.0 {
            st.1 = Arc::new(load(tx));
            // Topics written by this very job may still roll back: compile again next time.
            st.0 = tx.tx_changes().topics_changed;
        }
        st.1.clone()
    }

    fn changed(&self) {
        self.state.lock().0 = true;
    }
}

/// The topics watching `o` (empty for changes through the Bulk APIs).
pub(crate) fn watching(tx: &mut dyn WriteTx, p: &Principal, o: &ObjectDef) -> Vec<Arc<Topic>> {
    if p.origin.is_bulk() {
        return Vec::new();
    }
    let Some(ctx) = crate::changes::context(tx) else {
        return Vec::new();
    };
    ctx.topics
        .current(tx)
        .iter()
        .filter(|t| t.object.name == o.name)
        .cloned()
        .collect()
}

/// Compiles every active PushTopic record (a topic whose query no longer compiles, after a
/// field was removed, is skipped and logged).
fn load(tx: &mut dyn WriteTx) -> Vec<Arc<Topic>> {
    let q = "SELECT Name, Query, IsActive, NotifyForOperationCreate, NotifyForOperationUpdate, \
             NotifyForOperationDelete, NotifyForOperationUndelete, NotifyForFields FROM PushTopic";
    let rows = (|| -> ApiResult<Vec<store::QueryRow>> {
        let plan = compile(tx.schema(), q)?;
        let ids = tx.query_ids(&plan)?;
        Ok(tx.query_rows(&plan, &ids)?)
    })();
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e.message, "cannot read the PushTopics");
            return Vec::new();
        }
    };
    let text = |c: &Cell| match c {
        Cell::Value(Value::Text(s)) => s.clone(),
        _ => String::new(),
    };
    let flag = |c: &Cell| matches!(c, Cell::Value(Value::Bool(true)));
    let mut out = Vec::new();
    for r in rows {
        let c = &r.cells;
        if !flag(&c[2]) {
            continue;
        }
        let name = text(&c[0]);
        match topic(
            tx,
            &name,
            &text(&c[1]),
            [flag(&c[3]), flag(&c[4]), flag(&c[5]), flag(&c[6])],
            &text(&c[7]),
        ) {
            Ok(t) => out.push(Arc::new(t)),
            Err(e) => tracing::warn!(topic = %name, error = %e.message, "PushTopic skipped"),
        }
    }
    out
}

fn compile(schema: &model::Schema, text: &str) -> ApiResult<Plan> {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let opts = soql::ResolveOptions {
        today: (today.year(), today.month(), today.day()),
        now_ms: now_millis(),
        include_deleted: false,
    };
    soql::compile(text, schema, &soql::FullAccess, &opts)
        .map_err(|e| ApiError::new(e.code, e.message))
}

fn topic_error(msg: impl Into<String>) -> ApiError {
    ApiError::with_fields(ErrorCode::InvalidField, msg, vec!["Query".into()])
}

/// Compiles a topic's query and checks it is one PushTopics support.
fn topic(
    tx: &dyn ReadTx,
    name: &str,
    query: &str,
    notify: [bool; 4],
    notify_for_fields: &str,
) -> ApiResult<Topic> {
    let mut plan = compile(tx.schema(), query)?;
    if plan.kind != PlanKind::Records {
        return Err(topic_error(
            "PushTopic queries cannot use aggregate functions or COUNT()",
        ));
    }
    if !plan.order_by.is_empty() || plan.limit.is_some() || plan.offset.is_some() {
        return Err(topic_error(
            "PushTopic queries cannot use ORDER BY, LIMIT or OFFSET",
        ));
    }
    let mut select = Vec::new();
    for c in &plan.columns {
        match c {
            Column::Field { field, .. } => select.push(*field),
            _ => {
                return Err(topic_error(
                    "PushTopic queries can select only fields of the queried object: no relationships or subqueries",
                ))
            }
        }
    }
    let o = plan.object.clone();
    let id = o.field_index("Id").expect("every object has an Id");
    if !select.contains(&id) {
        return Err(topic_error(
            "The SELECT list of a PushTopic query must include Id",
        ));
    }
    let mut filtered = Vec::new();
    if let Some(f) = &plan.filter {
        fields_of(f, &mut filtered);
    }
    let relevant = match notify_for_fields {
        "All" => None,
        "Select" => Some(select.clone()),
        "Where" => Some(filtered),
        _ => Some(select.iter().chain(&filtered).copied().collect()),
    };
    plan.include_deleted = true;
    Ok(Topic {
        name: name.to_string(),
        object: o,
        plan,
        relevant,
        notify,
    })
}

/// The fields of the queried object that a condition reads.
fn fields_of(e: &Expr, out: &mut Vec<usize>) {
    let mut scalar = |op: &Operand| {
        if let Operand::Scalar(s) = op {
            let f = s.field();
            if f.path.is_empty() {
                out.push(f.field);
            } else if let Some(h) = f.path.first() {
                out.push(h.field);
            }
        }
    };
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| fields_of(x, out)),
        Expr::Not(x) => fields_of(x, out),
        Expr::Const(_) => {}
        Expr::Compare { left, .. }
        | Expr::IsNull { left, .. }
        | Expr::In { left, .. }
        | Expr::Like { left, .. }
        | Expr::Includes { left, .. }
        | Expr::SemiJoin { left, .. } => scalar(left),
    }
}

/// Checks a PushTopic record about to be saved (`query`, `name` and `NotifyForFields` as they
/// will be stored). As Salesforce requires, `Select` needs a selected field other than `Id`,
/// `Where` a `WHERE` clause on a field other than `Id`, `Referenced` one or the other.
pub(crate) fn validate(
    tx: &mut dyn WriteTx,
    query: &str,
    name: &str,
    notify_for_fields: &str,
) -> ApiResult<()> {
    if name.contains('/') || name.trim() != name {
        return Err(ApiError::with_fields(
            ErrorCode::FieldIntegrityException,
            "Topic Name may not contain slashes or surrounding spaces",
            vec!["Name".into()],
        ));
    }
    let t = topic(tx, name, query, [true; 4], notify_for_fields)?;
    let id = t.object.field_index("Id").expect("every object has an Id");
    let beyond_id = |fields: &[usize]| fields.iter().any(|f| *f != id);
    let select: Vec<usize> = t
        .plan
        .columns
        .iter()
        .filter_map(|c| match c {
            Column::Field { field, .. } => Some(*field),
            _ => None,
        })
        .collect();
    let mut filtered = Vec::new();
    if let Some(f) = &t.plan.filter {
        fields_of(f, &mut filtered);
    }
    let missing = match notify_for_fields {
        "Select" if !beyond_id(&select) => {
            Some("With NotifyForFields Select, the query must select a field other than Id")
        }
        "Where" if !beyond_id(&filtered) => Some(
            "With NotifyForFields Where, the query needs a WHERE clause on a field other than Id",
        ),
        "Referenced" if !beyond_id(&select) && !beyond_id(&filtered) => Some(
            "With NotifyForFields Referenced, the query must select or filter on a field other than Id",
        ),
        _ => None,
    };
    if let Some(m) = missing {
        return Err(topic_error(m));
    }
    topics_changed(tx);
    Ok(())
}

/// A PushTopic record was saved, deleted or undeleted: recompile the topics.
pub(crate) fn topics_changed(tx: &mut dyn WriteTx) {
    tx.tx_changes().topics_changed = true;
    if let Some(ctx) = crate::changes::context(tx) {
        ctx.topics.changed();
    }
}

/// Notifies the topics in `topics` (from [`watching`]) whose query matches record `seq` after
/// `change`; `changed` are the fields an update changed.
pub(crate) fn notify(
    tx: &mut dyn WriteTx,
    topics: &[Arc<Topic>],
    o: &ObjectDef,
    seq: u64,
    change: TopicChange,
    changed: &[usize],
) -> ApiResult<()> {
    let slot = match change {
        TopicChange::Created => 0,
        TopicChange::Updated => 1,
        TopicChange::Deleted => 2,
        TopicChange::Undeleted => 3,
    };
    for t in topics {
        if !t.notify[slot] {
            continue;
        }
        if change == TopicChange::Updated {
            if let Some(rel) = &t.relevant {
                if !changed.iter().any(|f| rel.contains(f)) {
                    continue;
                }
            }
        }
        let id = t.object.field_index("Id").expect("Id");
        let this = Expr::Compare {
            left: Operand::Scalar(Scalar::Field(FieldRef {
                path: vec![],
                object: t.object.clone(),
                field: id,
            })),
            op: CompareOp::Eq,
            value: Value::Id(Id::new(o.key_prefix, tx.marker(), seq)),
        };
        let mut plan = t.plan.clone();
        plan.filter = Some(match plan.filter.take() {
            Some(f) => Expr::And(vec![f, this]),
            None => this,
        });
        let ids = tx.query_ids(&plan)?;
        if ids.is_empty() {
            continue;
        }
        let rows = tx.query_rows(&plan, &ids)?;
        let Some(row) = rows.first() else {
            continue;
        };
        let mut sobject = Map::new();
        for (c, cell) in plan.columns.iter().zip(&row.cells) {
            if let (Column::Field { key, .. }, Cell::Value(v)) = (c, cell) {
                sobject.insert(key.clone(), crate::changes::field_json(v));
            }
        }
        let now = now_millis();
        let payload = json!({
            "event": {"createdDate": format_datetime_z(now), "type": change.word()},
            "sobject": Json::Object(sobject),
        });
        tx.append_event(&NewEvent {
            stream: format!("/topic/{}", t.name),
            kind: EventKind::Topic,
            created_ms: now,
            uuid: crate::events::uuid_v4(),
            schema_id: String::new(),
            payload: payload.to_string(),
        })?;
    }
    Ok(())
}

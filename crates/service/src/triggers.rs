//! The hook record writes call so automation (flows) can react to them: before a create or
//! update is written (to change the record's own fields, in the same transaction) and after a
//! create, update or delete (to queue work, in the same transaction as an outbox). The service
//! knows no flow; the automation crate installs an implementation with [`Org::set_triggers`].

use std::sync::Arc;

use model::{ApiError, ApiResult, ErrorCode, Id, ObjectDef, Value};
use serde_json::{Map, Value as Json};
use store::WriteTx;

use crate::auth::Principal;
use crate::coerce::{coerce_value, Input};
use crate::Org;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// It was created.
    Create,
    /// It was updated.
    Update,
    /// It was deleted.
    Delete,
}

impl Op {
    /// The lowercase name (`create`, `update`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// A record as triggers see it: every field by API name, values in their REST JSON form
/// (date-times in ISO 8601 with `Z`).
pub type RecordJson = Map<String, Json>;

/// One record write, as the triggers see it.
pub struct Change<'a> {
    /// Who wrote it.
    pub principal: &'a Principal,
    /// The object.
    pub object: &'a ObjectDef,
    /// What happened.
    pub op: Op,
    /// The record's id.
    pub id: Id,
    /// The record before the write (updates and deletes).
    pub old: Option<&'a RecordJson>,
    /// The record after the write (creates and updates).
    pub new: Option<&'a RecordJson>,
}

/// Automation reacting to record writes.
pub trait Triggers: Send + Sync + 'static {
    /// Whether anything reacts to writes of `object` (when not, writes skip building the
    /// record's JSON forms).
    fn watches(&self, object: &str, op: Op) -> bool;
    /// Before a create or update is written: the field values to set on the record itself.
    fn before_save(
        &self,
        tx: &mut dyn WriteTx,
        change: &Change<'_>,
    ) -> ApiResult<Vec<(String, Json)>>;
    /// After the write, in the same transaction: queue work (an error rolls the write back).
    fn after_save(&self, tx: &mut dyn WriteTx, change: &Change<'_>) -> ApiResult<()>;
}

/// The installed triggers (kept in the store's job context).
#[derive(Default)]
pub struct Slot(parking_lot::RwLock<Option<Arc<dyn Triggers>>>);

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("triggers::Slot")
    }
}

impl Org {
    /// Installs the automation that reacts to record writes (replacing any before).
    pub fn set_triggers(&self, t: Arc<dyn Triggers>) {
        *self.job_context.triggers.0.write() = Some(t);
    }
}

/// The triggers watching `op` on `o`, if any.
pub(crate) fn watching(tx: &dyn WriteTx, o: &ObjectDef, op: Op) -> Option<Arc<dyn Triggers>> {
    let ctx = crate::changes::context(tx)?;
    let t = ctx.triggers.0.read().clone()?;
    t.watches(&o.name, op).then_some(t)
}

/// The JSON form of a record from its field values.
pub fn record_json<'v>(
    o: &ObjectDef,
    values: impl IntoIterator<Item = (usize, &'v Value)>,
) -> RecordJson {
    let mut m: RecordJson = o
        .fields
        .iter()
        .map(|f| (f.name.clone(), Json::Null))
        .collect();
    for (i, v) in values {
        m.insert(o.fields[i].name.clone(), crate::changes::field_json(v));
    }
    m
}

/// Reads every field of row `seq` as JSON.
pub(crate) fn stored_json(tx: &dyn WriteTx, o: &ObjectDef, seq: u64) -> ApiResult<RecordJson> {
    let all: Vec<usize> = (0..o.fields.len()).collect();
    let row = tx.get(o, seq, &all)?.ok_or_else(ApiError::not_found)?;
    Ok(record_json(o, all.iter().copied().zip(row.values.iter())))
}

/// Applies what before-save triggers set to `input` (and to `new`, so later triggers and the
/// after-save ones see it).
pub(crate) fn apply(
    o: &ObjectDef,
    sets: Vec<(String, Json)>,
    input: &mut Input,
    new: &mut RecordJson,
) -> ApiResult<()> {
    for (name, v) in sets {
        let Some(i) = o.field_index(&name) else {
            return Err(ApiError::new(
                ErrorCode::CannotExecuteFlowTrigger,
                format!(
                    "A flow tried to set {name}, which is not a field of {}.",
                    o.name
                ),
            ));
        };
        let f = &o.fields[i];
        if !(f.updateable() || f.createable()) {
            return Err(ApiError::new(
                ErrorCode::CannotExecuteFlowTrigger,
                format!(
                    "A flow tried to set {}.{name}, which cannot be written.",
                    o.name
                ),
            ));
        }
        let value = coerce_value(o, f, &v).map_err(|e| {
            ApiError::new(
                ErrorCode::CannotExecuteFlowTrigger,
                format!(
                    "A flow set {}.{name} to an invalid value: {}",
                    o.name, e.message
                ),
            )
        })?;
        new.insert(f.name.clone(), crate::changes::field_json(&value));
        input.set(i, value);
    }
    Ok(())
}

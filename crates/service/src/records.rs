//! Record use cases: create, read, update, delete, upsert by external id, undelete, and the
//! replication calls (getUpdated/getDeleted).
//!
//! Each write has a transaction-level function (`insert_tx`, `update_tx`, …) that does the checks
//! needing the database (references, uniqueness, cascades) and sets derived and audit fields; the
//! async methods on [`Org`] validate the body first, then run that function as one write job.
//! Composite requests call the transaction-level functions directly to run many writes in one
//! transaction.

use std::sync::Arc;

use model::value::now_millis;
use model::{
    ApiError, ApiResult, DefaultValue, DeleteRule, Derived, ErrorCode, FieldType, Id, ObjectDef,
    Value,
};
use store::WriteTx;

use crate::auth::Principal;
use crate::coerce::Input;
use crate::perms::AUTH_OBJECTS;
use crate::triggers::{self, Op};
use crate::Org;
use crate::{changes, topics};

/// A record read for output.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its object.
    pub object: Arc<ObjectDef>,
    /// Its id.
    pub id: Id,
    /// Field positions and values, in output order.
    pub fields: Vec<(usize, Value)>,
    /// LastModifiedDate (ms), for conditional requests.
    pub last_modified_ms: i64,
}

/// getDeleted's answer: deleted ids with their deletion time, the earliest date still available,
/// and the latest date covered.
pub type Deleted = (Vec<(Id, i64)>, i64, i64);

/// The outcome of an upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    /// The record.
    pub id: Id,
    /// True when a record was inserted.
    pub created: bool,
}

/// Most records deleted by one cascade.
const MAX_CASCADE: usize = 10_000;

pub(crate) fn access_error(o: &ObjectDef) -> ApiError {
    ApiError::new(
        ErrorCode::InsufficientAccessOrReadonly,
        format!("insufficient access rights on object id ({})", o.name),
    )
}

fn require(cond: bool, o: &ObjectDef, what: &str) -> ApiResult<()> {
    if cond {
        Ok(())
    } else if what.is_empty() {
        Err(access_error(o))
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidType,
            format!("entity type cannot be {what}: {}", o.name),
        ))
    }
}

fn idx(o: &ObjectDef, name: &str) -> Option<usize> {
    o.field_index(name)
}

/// The row sequence of `id` if it belongs to object `o` in this org.
pub fn seq_of(tx_marker: model::OrgMarker, o: &ObjectDef, id: &Id) -> Option<u64> {
    (id.prefix() == o.key_prefix)
        .then(|| id.seq_in(tx_marker))
        .flatten()
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Applies defaults, required checks, references, uniqueness, derived and audit fields, then
/// inserts. Returns the new row's sequence.
pub fn insert_tx(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    mut input: Input,
    now: i64,
) -> ApiResult<u64> {
    require(o.caps.createable, o, "inserted")?;
    require(p.perms.object(o).create, o, "")?;
    resolve_ext_refs(tx, o, &mut input)?;
    for (i, f) in o.fields.iter().enumerate() {
        if input.get(i).is_some() {
            continue;
        }
        match &f.default {
            Some(DefaultValue::Bool(b)) => input.set(i, Value::Bool(*b)),
            Some(DefaultValue::Text(t)) => input.set(i, Value::Text(t.clone())),
            Some(DefaultValue::Number(n)) => input.set(
                i,
                if f.ty == FieldType::Int {
                    Value::Int(*n as i64)
                } else {
                    Value::Double(*n)
                },
            ),
            Some(DefaultValue::CurrentUser) => input.set(i, Value::Id(p.user_id)),
            None => {}
        }
    }
    let missing: Vec<String> = o
        .fields
        .iter()
        .enumerate()
        .filter(|(i, f)| f.required && f.createable() && input.get(*i).is_none_or(Value::is_null))
        .map(|(_, f)| f.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::with_fields(
            ErrorCode::RequiredFieldMissing,
            format!("Required fields are missing: [{}]", missing.join(", ")),
            missing,
        ));
    }
    check_references(tx, o, &input)?;
    let seq = tx.next_seq(o)?;
    check_unique(tx, o, &input, None)?;
    derive(o, &mut input, seq, true, |_| None);
    let me = Value::Id(p.user_id);
    for (name, v) in [
        ("Id", Value::Id(Id::new(o.key_prefix, tx.marker(), seq))),
        ("CreatedDate", Value::DateTime(now)),
        ("LastModifiedDate", Value::DateTime(now)),
        ("SystemModstamp", Value::DateTime(now)),
        ("CreatedById", me.clone()),
        ("LastModifiedById", me),
        ("IsDeleted", Value::Bool(false)),
    ] {
        if let Some(i) = idx(o, name) {
            input.set(i, v);
        }
    }
    check_push_topic(tx, o, None, &input)?;
    let flows = triggers::watching(tx, o, Op::Create);
    let mut new = None;
    if let Some(t) = &flows {
        let mut json = triggers::record_json(o, input.values.iter().map(|(i, v)| (*i, v)));
        let id = Id::new(o.key_prefix, tx.marker(), seq);
        let sets = t.before_save(tx, &change(p, o, Op::Create, id, None, Some(&json)))?;
        if !sets.is_empty() {
            triggers::apply(o, sets, &mut input, &mut json)?;
            check_references(tx, o, &input)?;
            check_unique(tx, o, &input, None)?;
        }
        new = Some(json);
    }
    tx.insert(o, &input.values)?;
    changes::created(tx, p, o, seq, input.values.iter().map(|(i, v)| (*i, v)))?;
    if let (Some(t), Some(json)) = (&flows, &new) {
        let id = Id::new(o.key_prefix, tx.marker(), seq);
        t.after_save(tx, &change(p, o, Op::Create, id, None, Some(json)))?;
    }
    Ok(seq)
}

/// A PushTopic record must hold a query PushTopics support.
fn check_push_topic(
    tx: &mut dyn WriteTx,
    o: &ObjectDef,
    seq: Option<u64>,
    input: &Input,
) -> ApiResult<()> {
    if o.name != "PushTopic" {
        return Ok(());
    }
    let (qi, ni, fi) = (
        idx(o, "Query").expect("Query"),
        idx(o, "Name").expect("Name"),
        idx(o, "NotifyForFields").expect("NotifyForFields"),
    );
    let stored = match seq {
        Some(s) => tx.get(o, s, &[qi, ni, fi])?.map(|r| r.values),
        None => None,
    };
    let pick = |i: usize, k: usize| {
        input
            .get(i)
            .cloned()
            .or_else(|| stored.as_ref().map(|v| v[k].clone()))
    };
    let query = text_of(pick(qi, 0).as_ref()).unwrap_or_default();
    let name = text_of(pick(ni, 1).as_ref()).unwrap_or_default();
    let notify_for_fields =
        text_of(pick(fi, 2).as_ref()).unwrap_or_else(|| "Referenced".to_string());
    topics::validate(tx, &query, &name, &notify_for_fields)
}

/// Updates row `seq` with `input`.
pub fn update_tx(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    mut input: Input,
    now: i64,
    unmodified_since: Option<i64>,
) -> ApiResult<()> {
    require(o.caps.updateable, o, "updated")?;
    require(p.perms.object(o).edit, o, "")?;
    check_live_and_unmodified(tx, o, seq, unmodified_since)?;
    resolve_ext_refs(tx, o, &mut input)?;
    let nulled: Vec<String> = input
        .values
        .iter()
        .filter(|(i, v)| v.is_null() && o.fields[*i].required)
        .map(|(i, _)| o.fields[*i].name.clone())
        .collect();
    if !nulled.is_empty() {
        return Err(ApiError::with_fields(
            ErrorCode::RequiredFieldMissing,
            format!("Required fields are missing: [{}]", nulled.join(", ")),
            nulled,
        ));
    }
    check_references(tx, o, &input)?;
    check_unique(tx, o, &input, Some(seq))?;
    // Derived fields may depend on fields not in this update: read their current values.
    let sources: Vec<usize> = derived_sources(o)
        .into_iter()
        .filter(|i| input.get(*i).is_none())
        .collect();
    let stored = if sources.is_empty() {
        None
    } else {
        tx.get(o, seq, &sources)?
    };
    derive(o, &mut input, seq, false, |i| {
        let k = sources.iter().position(|s| *s == i)?;
        stored.as_ref().map(|r| r.values[k].clone())
    });
    for (name, v) in [
        ("LastModifiedDate", Value::DateTime(now)),
        ("SystemModstamp", Value::DateTime(now)),
        ("LastModifiedById", Value::Id(p.user_id)),
    ] {
        if let Some(i) = idx(o, name) {
            input.set(i, v);
        }
    }
    if o.name == "User" {
        let active = idx(o, "IsActive").and_then(|i| input.get(i));
        if active == Some(&Value::Bool(false)) {
            // A deactivated user's sessions and refresh tokens end with the deactivation.
            tx.delete_user_sessions(seq)?;
            tx.delete_user_refresh_tokens(seq)?;
        }
    }
    check_push_topic(tx, o, Some(seq), &input)?;
    let flows = triggers::watching(tx, o, Op::Update);
    let mut jsons = None;
    if let Some(t) = &flows {
        let old = triggers::stored_json(tx, o, seq)?;
        let mut new = old.clone();
        for (i, v) in &input.values {
            new.insert(o.fields[*i].name.clone(), changes::field_json(v));
        }
        let id = Id::new(o.key_prefix, tx.marker(), seq);
        let sets = t.before_save(tx, &change(p, o, Op::Update, id, Some(&old), Some(&new)))?;
        if !sets.is_empty() {
            triggers::apply(o, sets, &mut input, &mut new)?;
            check_references(tx, o, &input)?;
            check_unique(tx, o, &input, Some(seq))?;
        }
        jsons = Some((old, new));
    }
    let before = changes::before_update(tx, p, o, seq, &input.values)?;
    tx.update(o, seq, &input.values)?;
    changes::updated(tx, p, o, seq, before, &input.values)?;
    if let (Some(t), Some((old, new))) = (&flows, &jsons) {
        let id = Id::new(o.key_prefix, tx.marker(), seq);
        t.after_save(tx, &change(p, o, Op::Update, id, Some(old), Some(new)))?;
    }
    Ok(())
}

fn change<'a>(
    p: &'a Principal,
    o: &'a ObjectDef,
    op: Op,
    id: Id,
    old: Option<&'a triggers::RecordJson>,
    new: Option<&'a triggers::RecordJson>,
) -> triggers::Change<'a> {
    triggers::Change {
        principal: p,
        object: o,
        op,
        id,
        old,
        new,
    }
}

/// Fails unless row `seq` exists, is not in the recycle bin, and (when the caller sent
/// `If-Unmodified-Since`) has not changed since then.
fn check_live_and_unmodified(
    tx: &dyn store::ReadTx,
    o: &ObjectDef,
    seq: u64,
    unmodified_since: Option<i64>,
) -> ApiResult<()> {
    let lm = idx(o, "LastModifiedDate").expect("system field");
    let current = tx.get(o, seq, &[lm])?.ok_or_else(ApiError::not_found)?;
    if current.deleted {
        return Err(ApiError::new(
            ErrorCode::EntityIsDeleted,
            "entity is deleted",
        ));
    }
    if let (Some(since), Value::DateTime(modified)) = (unmodified_since, &current.values[0]) {
        if modified / 1000 * 1000 > since {
            return Err(ApiError::new(
                ErrorCode::PreconditionFailed,
                "The requested resource has been modified since the If-Unmodified-Since time.",
            ));
        }
    }
    Ok(())
}

/// Soft-deletes row `seq`, applying delete rules to its children.
pub fn delete_tx(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    now: i64,
    unmodified_since: Option<i64>,
) -> ApiResult<()> {
    require(o.caps.deletable, o, "deleted")?;
    require(p.perms.object(o).delete, o, "")?;
    check_live_and_unmodified(tx, o, seq, unmodified_since)?;
    let flows = triggers::watching(tx, o, Op::Delete);
    let old = match &flows {
        Some(_) => Some(triggers::stored_json(tx, o, seq)?),
        None => None,
    };
    let mut budget = MAX_CASCADE;
    soft_delete(tx, p, o, seq, now, &mut budget, 0)?;
    if let (Some(t), Some(old)) = (&flows, &old) {
        let id = Id::new(o.key_prefix, tx.marker(), seq);
        t.after_save(tx, &change(p, o, Op::Delete, id, Some(old), None))?;
    }
    Ok(())
}

fn soft_delete(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    now: i64,
    budget: &mut usize,
    depth: usize,
) -> ApiResult<()> {
    let schema = tx.schema().clone();
    let id = Value::Id(Id::new(o.key_prefix, tx.marker(), seq));
    for rel in &o.children {
        let Some(child) = schema.object(&rel.child_object).cloned() else {
            continue;
        };
        let fi = child.field_index(&rel.field).expect("relationship field");
        let rule = child.fields[fi].delete_rule;
        let kids = tx.find_by_field(&child, fi, &id, false, *budget + 1)?;
        if kids.is_empty() {
            continue;
        }
        match rule {
            DeleteRule::Restrict => {
                return Err(ApiError::new(
                    ErrorCode::DeleteFailed,
                    format!("Your attempt to delete {} could not be completed because it is associated with {} records.", o.label, child.label),
                ));
            }
            DeleteRule::SetNull => {
                let stamp = idx(&child, "SystemModstamp");
                for k in kids {
                    let mut vals = vec![(fi, Value::Null)];
                    if let Some(s) = stamp {
                        vals.push((s, Value::DateTime(now)));
                    }
                    let before = changes::before_update(tx, p, &child, k, &vals)?;
                    tx.update(&child, k, &vals)?;
                    changes::updated(tx, p, &child, k, before, &vals)?;
                }
            }
            DeleteRule::Cascade => {
                if depth > 8 || kids.len() > *budget {
                    return Err(ApiError::new(
                        ErrorCode::DeleteFailed,
                        "The delete would cascade to too many records; delete the children first.",
                    ));
                }
                *budget -= kids.len();
                for k in kids {
                    soft_delete(tx, p, &child, k, now, budget, depth + 1)?;
                }
            }
        }
    }
    let mut vals = vec![(
        idx(o, "IsDeleted").expect("system field"),
        Value::Bool(true),
    )];
    for (name, v) in [
        ("LastModifiedDate", Value::DateTime(now)),
        ("SystemModstamp", Value::DateTime(now)),
        ("LastModifiedById", Value::Id(p.user_id)),
    ] {
        if let Some(i) = idx(o, name) {
            vals.push((i, v));
        }
    }
    tx.update(o, seq, &vals)?;
    if o.name == "PushTopic" {
        topics::topics_changed(tx);
    }
    changes::deleted(tx, p, o, seq, depth > 0)
}

/// Restores a soft-deleted row and the children its deletion cascaded to (those deleted at the
/// same instant through a cascading relationship).
pub fn undelete_tx(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    now: i64,
) -> ApiResult<()> {
    require(o.caps.undeletable, o, "undeleted")?;
    require(p.perms.object(o).delete, o, "")?;
    let stamp = idx(o, "SystemModstamp").expect("system field");
    let row = tx.get(o, seq, &[stamp])?.ok_or_else(ApiError::not_found)?;
    if !row.deleted {
        return Err(ApiError::new(
            ErrorCode::UndeleteFailed,
            "Entity is not in the recycle bin",
        ));
    }
    let deleted_at = match row.values[0] {
        Value::DateTime(t) => t,
        _ => 0,
    };
    check_cascade_parents_live(tx, o, seq)?;
    restore(tx, p, o, seq, deleted_at, now, 0)
}

/// A record whose deletion cascaded from a parent (master-detail, or a cascading lookup) can only
/// come back with that parent: restoring it alone would leave a live child of a deleted record.
fn check_cascade_parents_live(tx: &mut dyn WriteTx, o: &ObjectDef, seq: u64) -> ApiResult<()> {
    let parents: Vec<usize> = o
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.ty == FieldType::Reference && f.delete_rule == DeleteRule::Cascade)
        .map(|(i, _)| i)
        .collect();
    if parents.is_empty() {
        return Ok(());
    }
    let schema = tx.schema().clone();
    let row = tx.get(o, seq, &parents)?.ok_or_else(ApiError::not_found)?;
    for (k, &i) in parents.iter().enumerate() {
        let Value::Id(parent) = &row.values[k] else {
            continue;
        };
        let f = &o.fields[i];
        let Some(target) = schema
            .object(f.reference_to.as_deref().unwrap_or(""))
            .cloned()
        else {
            continue;
        };
        let Some(pseq) = seq_of(tx.marker(), &target, parent) else {
            continue;
        };
        if tx.exists(&target, pseq)? == Some(true) {
            return Err(ApiError::with_fields(
                ErrorCode::UndeleteFailed,
                format!(
                    "{}: the parent {} {} is in the recycle bin; undelete it first",
                    f.label,
                    target.label,
                    parent.to_18()
                ),
                vec![f.name.clone()],
            ));
        }
    }
    Ok(())
}

fn restore(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    deleted_at: i64,
    now: i64,
    depth: usize,
) -> ApiResult<()> {
    let all: Vec<usize> = (0..o.fields.len()).collect();
    let row = tx.get(o, seq, &all)?.ok_or_else(ApiError::not_found)?;
    let input = Input {
        values: o
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.unique)
            .map(|(i, _)| (i, row.values[i].clone()))
            .collect(),
        ext_refs: vec![],
    };
    check_unique(tx, o, &input, Some(seq))?;
    let mut vals = vec![(
        idx(o, "IsDeleted").expect("system field"),
        Value::Bool(false),
    )];
    for (name, v) in [
        ("LastModifiedDate", Value::DateTime(now)),
        ("SystemModstamp", Value::DateTime(now)),
        ("LastModifiedById", Value::Id(p.user_id)),
    ] {
        if let Some(i) = idx(o, name) {
            vals.push((i, v));
        }
    }
    tx.update(o, seq, &vals)?;
    if o.name == "PushTopic" {
        topics::topics_changed(tx);
    }
    let mut restored = row.values;
    for (i, v) in vals {
        restored[i] = v;
    }
    changes::undeleted(tx, p, o, seq, &restored)?;
    if depth > 8 {
        return Ok(());
    }
    let schema = tx.schema().clone();
    let id = Value::Id(Id::new(o.key_prefix, tx.marker(), seq));
    for rel in o.children.iter().filter(|r| r.cascade_delete) {
        let Some(child) = schema.object(&rel.child_object).cloned() else {
            continue;
        };
        let fi = child.field_index(&rel.field).expect("relationship field");
        let cs = idx(&child, "SystemModstamp").expect("system field");
        for k in tx.find_by_field(&child, fi, &id, true, MAX_CASCADE)? {
            if let Some(r) = tx.get(&child, k, &[cs])? {
                if r.deleted && r.values[0] == Value::DateTime(deleted_at) {
                    restore(tx, p, &child, k, deleted_at, now, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

fn resolve_ext_refs(tx: &mut dyn WriteTx, o: &ObjectDef, input: &mut Input) -> ApiResult<()> {
    for r in std::mem::take(&mut input.ext_refs) {
        let found = tx.find_by_field(&r.target, r.ext_field, &r.value, false, 2)?;
        let ext_name = &r.target.fields[r.ext_field].name;
        let shown = r.value.to_text();
        match found.as_slice() {
            [one] => input.set(r.field, Value::Id(Id::new(r.target.key_prefix, tx.marker(), *one))),
            [] => {
                return Err(ApiError::with_fields(
                    ErrorCode::InvalidField,
                    format!("Foreign key external ID: {shown} not found for field {ext_name} in entity {}", r.target.name),
                    vec![o.fields[r.field].name.clone()],
                ))
            }
            _ => {
                return Err(ApiError::with_fields(
                    ErrorCode::InvalidField,
                    format!("Foreign key external ID: {shown} matched more than one record for field {ext_name} in entity {}", r.target.name),
                    vec![o.fields[r.field].name.clone()],
                ))
            }
        }
    }
    Ok(())
}

fn check_references(tx: &mut dyn WriteTx, o: &ObjectDef, input: &Input) -> ApiResult<()> {
    let schema = tx.schema().clone();
    for (i, v) in &input.values {
        let f = &o.fields[*i];
        let (FieldType::Reference, Value::Id(id)) = (f.ty, v) else {
            continue;
        };
        let target = schema
            .object(f.reference_to.as_deref().unwrap_or(""))
            .cloned();
        let state = match (&target, id.seq_in(tx.marker())) {
            (Some(t), Some(seq)) => tx.exists(t, seq)?,
            _ => None,
        };
        match state {
            Some(false) => {}
            Some(true) => {
                return Err(ApiError::with_fields(
                    ErrorCode::EntityIsDeleted,
                    "entity is deleted",
                    vec![f.name.clone()],
                ))
            }
            None => {
                return Err(ApiError::with_fields(
                    ErrorCode::InvalidCrossReferenceKey,
                    format!("{}: invalid cross reference id", f.label),
                    vec![f.name.clone()],
                ))
            }
        }
    }
    Ok(())
}

fn check_unique(
    tx: &mut dyn WriteTx,
    o: &ObjectDef,
    input: &Input,
    me: Option<u64>,
) -> ApiResult<()> {
    for (i, v) in &input.values {
        let f = &o.fields[*i];
        if !f.unique || v.is_null() {
            continue;
        }
        let hits = tx.find_by_field(o, *i, v, false, 2)?;
        if let Some(other) = hits.into_iter().find(|s| Some(*s) != me) {
            let other = Id::new(o.key_prefix, tx.marker(), other);
            return Err(ApiError::with_fields(
                ErrorCode::DuplicateValue,
                format!(
                    "duplicate value found: {} duplicates value on record with id: {}",
                    f.name,
                    other.to_18()
                ),
                vec![f.name.clone()],
            ));
        }
    }
    Ok(())
}

fn derived_sources(o: &ObjectDef) -> Vec<usize> {
    let mut out = Vec::new();
    for f in &o.fields {
        match &f.derived {
            Some(Derived::FullName) => {
                out.extend(["FirstName", "LastName"].iter().filter_map(|n| idx(o, n)))
            }
            Some(Derived::PicklistIn { source, .. }) => out.extend(idx(o, source)),
            _ => {}
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Computes derived fields into `input`; `stored(i)` gives the current value of a field not being
/// changed (updates). Auto-numbers are only set when `inserting`.
fn derive(
    o: &ObjectDef,
    input: &mut Input,
    seq: u64,
    inserting: bool,
    stored: impl Fn(usize) -> Option<Value>,
) {
    let value = |input: &Input, i: usize| input.get(i).cloned().or_else(|| stored(i));
    let mut out = Vec::new();
    for (i, f) in o.fields.iter().enumerate() {
        match &f.derived {
            Some(Derived::FullName) => {
                let (Some(fi), Some(li)) = (idx(o, "FirstName"), idx(o, "LastName")) else {
                    continue;
                };
                if input.get(fi).is_none() && input.get(li).is_none() {
                    continue;
                }
                let first = text_of(value(input, fi).as_ref());
                let last = text_of(value(input, li).as_ref());
                let name = [first, last]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push((
                    i,
                    if name.is_empty() {
                        Value::Null
                    } else {
                        Value::Text(name)
                    },
                ));
            }
            Some(Derived::AutoNumber { format, start }) if inserting && input.get(i).is_none() => {
                out.push((i, Value::Text(auto_number(format, start + seq - 1))));
            }
            Some(Derived::AutoNumber { .. }) => {}
            Some(Derived::PicklistIn { source, values }) => {
                let Some(si) = idx(o, source) else { continue };
                if input.get(si).is_none() {
                    continue;
                }
                let v = text_of(value(input, si).as_ref());
                out.push((
                    i,
                    Value::Bool(v.is_some_and(|v| values.iter().any(|x| x == &v))),
                ));
            }
            None => {}
        }
    }
    for (i, v) in out {
        input.set(i, v);
    }
}

/// Formats an auto-number: `INV-{0000}` with 7 → `INV-0007`.
pub fn auto_number(format: &str, n: u64) -> String {
    let Some(open) = format.find('{') else {
        return format!("{format}{n}");
    };
    let Some(close) = format[open..].find('}').map(|c| c + open) else {
        return format!("{format}{n}");
    };
    let width = format[open + 1..close]
        .chars()
        .filter(|c| *c == '0')
        .count();
    format!(
        "{}{:0width$}{}",
        &format[..open],
        n,
        &format[close + 1..],
        width = width
    )
}

/// What bulk processing remembers between the rows of one chunk (one write transaction):
/// referenced records known to be live, and external ids of other objects known to match exactly
/// one record. Only positive answers are kept, and only for facts the chunk's own writes cannot
/// change, so a cached answer is the answer the database would give.
#[derive(Debug, Default)]
pub struct BulkCache {
    live: std::collections::HashSet<(model::KeyPrefix, u64)>,
    ext: std::collections::HashMap<(String, usize, String), u64>,
    /// Sequences reserved for new rows and not used yet: `(next, end)`.
    seqs: (u64, u64),
}

/// Sequences reserved at a time for bulk inserts (unused ones at the end of a chunk stay
/// unused: ids are never reused, gaps are allowed).
const SEQ_BLOCK: u64 = 256;

/// A bulk insert row prepared outside the writer by [`prepare_bulk_insert`]: every field's value
/// with defaults applied, the parents still to find by external id, and the required-field
/// error to report once those are found.
#[derive(Debug, Clone)]
pub struct BulkInsertRow {
    /// Every field's value (`values[i]` for `o.fields[i]`).
    values: Vec<Value>,
    /// Fields set (given, through a parent's external id, or by a default), in the order
    /// `insert_tx` would have them in its input.
    order: Vec<u16>,
    ext_refs: Vec<crate::coerce::ExtRef>,
    missing: Option<ApiError>,
}

impl BulkInsertRow {
    /// The fields the row sets, with their values, as a validated record body (platform events
    /// published by a Bulk insert job); the required-field error, if the row has one.
    pub fn into_input(self) -> ApiResult<Input> {
        if let Some(e) = self.missing {
            return Err(e);
        }
        Ok(Input {
            values: self
                .order
                .iter()
                .map(|&i| (i as usize, self.values[i as usize].clone()))
                .collect(),
            ext_refs: self.ext_refs,
        })
    }
}

/// The part of [`insert_tx`] that needs no database, done outside the writer: defaults, and the
/// required-field check (its error is reported by [`insert_bulk_tx`] in `insert_tx`'s order).
pub fn prepare_bulk_insert(p: &Principal, o: &ObjectDef, input: Input) -> BulkInsertRow {
    let n = o.fields.len();
    let mut values = vec![Value::Null; n];
    let mut set = vec![false; n];
    let mut order: Vec<u16> = Vec::with_capacity(input.values.len() + 4);
    for (i, v) in input.values {
        if !set[i] {
            set[i] = true;
            order.push(i as u16);
        }
        values[i] = v;
    }
    let mut by_ext = vec![false; n];
    for r in &input.ext_refs {
        by_ext[r.field] = true;
        if !set[r.field] {
            set[r.field] = true;
            order.push(r.field as u16);
        }
    }
    for (i, f) in o.fields.iter().enumerate() {
        if set[i] {
            continue;
        }
        let v = match &f.default {
            Some(DefaultValue::Bool(b)) => Value::Bool(*b),
            Some(DefaultValue::Text(t)) => Value::Text(t.clone()),
            Some(DefaultValue::Number(n)) => {
                if f.ty == FieldType::Int {
                    Value::Int(*n as i64)
                } else {
                    Value::Double(*n)
                }
            }
            Some(DefaultValue::CurrentUser) => Value::Id(p.user_id),
            None => continue,
        };
        set[i] = true;
        order.push(i as u16);
        values[i] = v;
    }
    let missing: Vec<String> = o
        .fields
        .iter()
        .enumerate()
        .filter(|(i, f)| f.required && f.createable() && !by_ext[*i] && values[*i].is_null())
        .map(|(_, f)| f.name.clone())
        .collect();
    let missing = (!missing.is_empty()).then(|| {
        ApiError::with_fields(
            ErrorCode::RequiredFieldMissing,
            format!("Required fields are missing: [{}]", missing.join(", ")),
            missing,
        )
    });
    BulkInsertRow {
        values,
        order,
        ext_refs: input.ext_refs,
        missing,
    }
}

/// Positions of the fields every insert sets (`Id`, audit fields), looked up once per chunk.
#[derive(Debug, Clone)]
pub struct InsertShape {
    audit: Vec<(usize, u8)>,
    booleans: Vec<usize>,
    derived: bool,
}

impl InsertShape {
    /// The shape of `o`'s inserts.
    pub fn of(o: &ObjectDef) -> InsertShape {
        let audit = [
            "Id",
            "CreatedDate",
            "LastModifiedDate",
            "SystemModstamp",
            "CreatedById",
            "LastModifiedById",
            "IsDeleted",
        ]
        .iter()
        .enumerate()
        .filter_map(|(k, n)| idx(o, n).map(|i| (i, k as u8)))
        .collect();
        InsertShape {
            audit,
            booleans: (0..o.fields.len())
                .filter(|&i| o.fields[i].ty == FieldType::Boolean)
                .collect(),
            derived: o.fields.iter().any(|f| f.derived.is_some()),
        }
    }
}

impl BulkInsertRow {
    /// Every field's value (complete once [`insert_bulk_check`] succeeded).
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// True when checking the row reads rows of `o` itself (a reference to an `o` record, or
    /// a parent of type `o` by external id): rows of `o` written before it must be in the
    /// database by then.
    pub fn reads_own_object(&self, o: &ObjectDef) -> bool {
        self.ext_refs.iter().any(|r| r.target.name == o.name)
            || self.order.iter().any(|&i| {
                let f = &o.fields[i as usize];
                f.ty == FieldType::Reference && f.reference_prefix == Some(o.key_prefix)
            })
    }
}

/// [`insert_tx`] for bulk rows, in the writer: the same checks in the same order with the same
/// errors, but references and parents' external ids are answered from `cache` when possible,
/// uniqueness is enforced by the store's unique indexes (the duplicate is looked up only to word
/// the error), and the row is written with [`WriteTx::insert_full`], whose statement stays
/// prepared for the whole chunk.
pub fn insert_bulk_tx(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    shape: &InsertShape,
    mut row: BulkInsertRow,
    now: i64,
    cache: &mut BulkCache,
) -> ApiResult<u64> {
    let seq = insert_bulk_check(tx, p, o, shape, &mut row, now, cache)?;
    match tx.insert_full(o, &row.values) {
        Ok(()) => {
            changes::created(tx, p, o, seq, row.values.iter().enumerate())?;
            Ok(seq)
        }
        Err(store::StoreError::Unique(field)) => Err(insert_bulk_unique_error(tx, o, &row, field)),
        Err(e) => Err(e.into()),
    }
}

/// Everything [`insert_bulk_tx`] does before writing: the checks, the new sequence (returned),
/// derived and audit fields. Afterwards `row.values()` is what to write; a unique index refusing
/// it is worded by [`insert_bulk_unique_error`].
pub fn insert_bulk_check(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    shape: &InsertShape,
    row: &mut BulkInsertRow,
    now: i64,
    cache: &mut BulkCache,
) -> ApiResult<u64> {
    require(o.caps.createable, o, "inserted")?;
    require(p.perms.object(o).create, o, "")?;
    if o.name == "PushTopic" {
        return Err(ApiError::new(
            ErrorCode::InvalidOperation,
            "PushTopic records cannot be loaded through the Bulk APIs; create them through REST or SOAP",
        ));
    }
    if !row.ext_refs.is_empty() {
        let mut refs = Input {
            values: vec![],
            ext_refs: std::mem::take(&mut row.ext_refs),
        };
        resolve_ext_refs_cached(tx, o, &mut refs, cache)?;
        for (i, v) in refs.values {
            row.values[i] = v;
        }
    }
    if let Some(e) = row.missing.take() {
        return Err(e);
    }
    check_reference_values(
        tx,
        o,
        row.order
            .iter()
            .map(|&i| (i as usize, &row.values[i as usize])),
        cache,
    )?;
    if cache.seqs.0 >= cache.seqs.1 {
        let first = tx.reserve_seqs(o, SEQ_BLOCK)?;
        cache.seqs = (first, first + SEQ_BLOCK);
    }
    let seq = cache.seqs.0;
    cache.seqs.0 += 1;
    if shape.derived {
        let mut input = Input {
            values: row
                .order
                .iter()
                .map(|&i| (i as usize, row.values[i as usize].clone()))
                .collect(),
            ext_refs: vec![],
        };
        derive(o, &mut input, seq, true, |_| None);
        for (i, v) in input.values {
            row.values[i] = v;
            if !row.order.contains(&(i as u16)) {
                row.order.push(i as u16);
            }
        }
    }
    let me = Value::Id(p.user_id);
    for &(i, k) in &shape.audit {
        row.values[i] = match k {
            0 => Value::Id(Id::new(o.key_prefix, tx.marker(), seq)),
            1..=3 => Value::DateTime(now),
            4 | 5 => me.clone(),
            _ => Value::Bool(false),
        };
    }
    for &i in &shape.booleans {
        // What the column's own default (`NOT NULL DEFAULT 0`) would store.
        if row.values[i].is_null() {
            row.values[i] = Value::Bool(false);
        }
    }
    Ok(seq)
}

/// The error [`insert_tx`] answers for a row that a unique index refused (`field` is what the
/// store reported, used only if the duplicate cannot be found again).
pub fn insert_bulk_unique_error(
    tx: &mut dyn WriteTx,
    o: &ObjectDef,
    row: &BulkInsertRow,
    field: String,
) -> ApiError {
    let input = Input {
        values: row
            .order
            .iter()
            .map(|&i| (i as usize, row.values[i as usize].clone()))
            .collect(),
        ext_refs: vec![],
    };
    match check_unique(tx, o, &input, None) {
        Err(e) => e,
        Ok(()) => store::StoreError::Unique(field).into(),
    }
}

/// [`update_tx`] (without `If-Unmodified-Since`) for bulk rows: `state` is the row's
/// [`store::ReadTx::exists`] answer, looked up for the whole chunk at once; references and
/// external ids come from `cache`; uniqueness is enforced by the unique indexes; the row is
/// written with [`WriteTx::update_columns`].
#[allow(clippy::too_many_arguments)]
pub fn update_bulk_tx(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    state: Option<bool>,
    mut input: Input,
    now: i64,
    cache: &mut BulkCache,
) -> ApiResult<()> {
    require(o.caps.updateable, o, "updated")?;
    require(p.perms.object(o).edit, o, "")?;
    match state {
        None => return Err(ApiError::not_found()),
        Some(true) => {
            return Err(ApiError::new(
                ErrorCode::EntityIsDeleted,
                "entity is deleted",
            ))
        }
        Some(false) => {}
    }
    resolve_ext_refs_cached(tx, o, &mut input, cache)?;
    let nulled: Vec<String> = input
        .values
        .iter()
        .filter(|(i, v)| v.is_null() && o.fields[*i].required)
        .map(|(i, _)| o.fields[*i].name.clone())
        .collect();
    if !nulled.is_empty() {
        return Err(ApiError::with_fields(
            ErrorCode::RequiredFieldMissing,
            format!("Required fields are missing: [{}]", nulled.join(", ")),
            nulled,
        ));
    }
    check_references_cached(tx, o, &input, cache)?;
    let sources: Vec<usize> = derived_sources(o)
        .into_iter()
        .filter(|i| input.get(*i).is_none())
        .collect();
    let stored = if sources.is_empty() {
        None
    } else {
        tx.get(o, seq, &sources)?
    };
    derive(o, &mut input, seq, false, |i| {
        let k = sources.iter().position(|s| *s == i)?;
        stored.as_ref().map(|r| r.values[k].clone())
    });
    for (name, v) in [
        ("LastModifiedDate", Value::DateTime(now)),
        ("SystemModstamp", Value::DateTime(now)),
        ("LastModifiedById", Value::Id(p.user_id)),
    ] {
        if let Some(i) = idx(o, name) {
            input.set(i, v);
        }
    }
    if o.name == "User" {
        let active = idx(o, "IsActive").and_then(|i| input.get(i));
        if active == Some(&Value::Bool(false)) {
            tx.delete_user_sessions(seq)?;
            tx.delete_user_refresh_tokens(seq)?;
        }
    }
    // Rows of a chunk with the same non-empty columns share one prepared statement.
    if o.name == "PushTopic" {
        return Err(ApiError::new(
            ErrorCode::InvalidOperation,
            "PushTopic records cannot be loaded through the Bulk APIs; update them through REST or SOAP",
        ));
    }
    let before = changes::before_update(tx, p, o, seq, &input.values)?;
    // Kept only when a change event needs them: bulk updates are a hot path.
    let written = before.publishes().then(|| input.values.clone());
    let columns: Vec<usize> = input.values.iter().map(|(i, _)| *i).collect();
    let values: Vec<Value> = input.values.into_iter().map(|(_, v)| v).collect();
    match tx.update_columns(o, seq, &columns, &values) {
        Ok(()) => match written {
            Some(w) => changes::updated(tx, p, o, seq, before, &w),
            None => Ok(()),
        },
        Err(store::StoreError::Unique(field)) => {
            let checked = Input {
                values: columns.into_iter().zip(values).collect(),
                ext_refs: vec![],
            };
            check_unique(tx, o, &checked, Some(seq))?;
            Err(store::StoreError::Unique(field).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `resolve_ext_refs`, answering from (and filling) `cache` for parents of other objects.
fn resolve_ext_refs_cached(
    tx: &mut dyn WriteTx,
    o: &ObjectDef,
    input: &mut Input,
    cache: &mut BulkCache,
) -> ApiResult<()> {
    for r in std::mem::take(&mut input.ext_refs) {
        // Rows of `o` written by this chunk could add matches for `o`'s own external ids.
        let cacheable = r.target.name != o.name;
        let key = (r.target.name.clone(), r.ext_field, format!("{:?}", r.value));
        if cacheable {
            if let Some(&seq) = cache.ext.get(&key) {
                input.set(
                    r.field,
                    Value::Id(Id::new(r.target.key_prefix, tx.marker(), seq)),
                );
                continue;
            }
        }
        let found = tx.find_by_field(&r.target, r.ext_field, &r.value, false, 2)?;
        let ext_name = &r.target.fields[r.ext_field].name;
        let shown = r.value.to_text();
        match found.as_slice() {
            [one] => {
                if cacheable {
                    cache.ext.insert(key, *one);
                }
                input.set(r.field, Value::Id(Id::new(r.target.key_prefix, tx.marker(), *one)))
            }
            [] => {
                return Err(ApiError::with_fields(
                    ErrorCode::InvalidField,
                    format!("Foreign key external ID: {shown} not found for field {ext_name} in entity {}", r.target.name),
                    vec![o.fields[r.field].name.clone()],
                ))
            }
            _ => {
                return Err(ApiError::with_fields(
                    ErrorCode::InvalidField,
                    format!("Foreign key external ID: {shown} matched more than one record for field {ext_name} in entity {}", r.target.name),
                    vec![o.fields[r.field].name.clone()],
                ))
            }
        }
    }
    Ok(())
}

/// `check_references`, answering from (and filling) `cache` for records known to be live. Bulk
/// insert, update and upsert chunks never delete, so a live record stays live for the chunk.
fn check_references_cached(
    tx: &mut dyn WriteTx,
    o: &ObjectDef,
    input: &Input,
    cache: &mut BulkCache,
) -> ApiResult<()> {
    check_reference_values(tx, o, input.values.iter().map(|(i, v)| (*i, v)), cache)
}

/// The reference checks of `check_references` over `(field, value)` pairs, in order.
fn check_reference_values<'v>(
    tx: &mut dyn WriteTx,
    o: &ObjectDef,
    values: impl Iterator<Item = (usize, &'v Value)>,
    cache: &mut BulkCache,
) -> ApiResult<()> {
    let mut schema = None;
    for (i, v) in values {
        let f = &o.fields[i];
        let (FieldType::Reference, Value::Id(id)) = (f.ty, v) else {
            continue;
        };
        let seq = id.seq_in(tx.marker());
        if let Some(seq) = seq {
            if cache.live.contains(&(id.prefix(), seq)) {
                continue;
            }
        }
        let schema = schema.get_or_insert_with(|| tx.schema().clone());
        let target = schema
            .object(f.reference_to.as_deref().unwrap_or(""))
            .cloned();
        let state = match (&target, seq) {
            (Some(t), Some(seq)) => tx.exists(t, seq)?,
            _ => None,
        };
        match state {
            Some(false) => {
                if let Some(seq) = seq {
                    cache.live.insert((id.prefix(), seq));
                }
            }
            Some(true) => {
                return Err(ApiError::with_fields(
                    ErrorCode::EntityIsDeleted,
                    "entity is deleted",
                    vec![f.name.clone()],
                ))
            }
            None => {
                return Err(ApiError::with_fields(
                    ErrorCode::InvalidCrossReferenceKey,
                    format!("{}: invalid cross reference id", f.label),
                    vec![f.name.clone()],
                ))
            }
        }
    }
    Ok(())
}

impl Org {
    /// An object the caller may see, by name (case-insensitive); NOT_FOUND otherwise.
    pub fn visible_object(&self, p: &Principal, name: &str) -> ApiResult<Arc<ObjectDef>> {
        crate::ops::visible(&self.schema(), p, name)
    }

    fn after_write(&self, o: &ObjectDef) {
        if AUTH_OBJECTS.iter().any(|n| *n == o.name) {
            self.invalidate_auth();
        }
    }

    /// Parses an id from a URL for object `o`: NOT_FOUND unless it is a well-formed id of `o` from
    /// this org.
    pub fn record_seq(&self, o: &ObjectDef, id: &str) -> ApiResult<u64> {
        let id = Id::parse(id).map_err(|_| ApiError::not_found())?;
        seq_of(self.store.marker(), o, &id).ok_or_else(ApiError::not_found)
    }

    /// Restores records from the recycle bin (SOAP `undelete()`); one result per id.
    pub async fn undelete(&self, p: &Principal, ids: Vec<String>) -> Vec<ApiResult<Id>> {
        let schema = self.schema();
        let marker = self.store.marker();
        let mut out = Vec::with_capacity(ids.len());
        for raw in ids {
            let parsed = Id::parse(raw.trim())
                .map_err(|_| ApiError::new(ErrorCode::MalformedId, format!("malformed id {raw}")));
            let r = match parsed {
                Err(e) => Err(e),
                Ok(id) => match schema
                    .object_by_prefix(id.prefix())
                    .cloned()
                    .zip(id.seq_in(marker))
                {
                    None => Err(ApiError::new(
                        ErrorCode::InvalidCrossReferenceKey,
                        "invalid cross reference id",
                    )),
                    Some((o, seq)) => {
                        let (p2, o2) = (p.clone(), o.clone());
                        let r = self
                            .store
                            .write(move |tx| undelete_tx(tx, &p2, &o2, seq, now_millis()))
                            .await
                            .map(|_| id);
                        if r.is_ok() {
                            self.after_write(&o);
                        }
                        r
                    }
                },
            };
            out.push(r);
        }
        out
    }

    /// getUpdated: ids of records changed in `[start, end)` (times truncated to the minute).
    pub fn updated(
        &self,
        p: &Principal,
        object: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> ApiResult<(Vec<Id>, i64)> {
        let o = self.visible_object(p, object)?;
        let (start, end, latest) = replication_window(start_ms, end_ms, 30)?;
        let seqs = self
            .store
            .read(|tx| tx.updated_between(&o, start, end, 600_001))?;
        if seqs.len() > 600_000 {
            return Err(ApiError::new(
                ErrorCode::ExceededIdLimit,
                "Too many ids: narrow the start and end dates",
            ));
        }
        let marker = self.store.marker();
        Ok((
            seqs.into_iter()
                .map(|s| Id::new(o.key_prefix, marker, s))
                .collect(),
            latest,
        ))
    }

    /// getDeleted: records deleted in `[start, end)`, with their deletion time; also the earliest
    /// date still available.
    pub fn deleted(
        &self,
        p: &Principal,
        object: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> ApiResult<Deleted> {
        let o = self.visible_object(p, object)?;
        let (start, end, latest) = replication_window(start_ms, end_ms, 15)?;
        let rows = self
            .store
            .read(|tx| tx.deleted_between(&o, start, end, 600_001))?;
        if rows.len() > 600_000 {
            return Err(ApiError::new(
                ErrorCode::ExceededIdLimit,
                "Too many ids: narrow the start and end dates",
            ));
        }
        let marker = self.store.marker();
        let earliest = (now_millis() - 15 * 86_400_000) / 60_000 * 60_000;
        Ok((
            rows.into_iter()
                .map(|(s, t)| (Id::new(o.key_prefix, marker, s), t))
                .collect(),
            earliest,
            latest,
        ))
    }

    /// Sets a user's password (`POST /sobjects/User/{id}/password`). Users may change their own;
    /// changing others' needs Manage Users.
    pub async fn set_password(
        &self,
        p: &Principal,
        user_id: &str,
        new_password: &str,
    ) -> ApiResult<()> {
        let schema = self.schema();
        let user = schema.object("User").expect("standard").clone();
        let seq = self.record_seq(&user, user_id)?;
        if seq != p.user_seq && !p.perms.manage_users {
            return Err(access_error(&user));
        }
        if self.user_info(seq)?.is_none() {
            return Err(ApiError::not_found());
        }
        check_password_policy(new_password)?;
        let pw = new_password.to_string();
        let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&pw))
            .await
            .map_err(|_| ApiError::internal())?;
        self.store
            .write(move |tx| {
                tx.set_password_hash(seq, &hash)?;
                Ok(())
            })
            .await?;
        Ok(())
    }
}

/// Salesforce's default password policy: at least 8 characters mixing letters and numbers.
pub fn check_password_policy(pw: &str) -> ApiResult<()> {
    let ok = pw.chars().count() >= 8
        && pw.chars().any(|c| c.is_alphabetic())
        && pw.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidPassword,
            "Your password must be at least 8 characters long and include letters and numbers.",
        ))
    }
}

fn replication_window(start_ms: i64, end_ms: i64, days_back: i64) -> ApiResult<(i64, i64, i64)> {
    let minute = 60_000;
    let start = start_ms / minute * minute;
    let end = end_ms / minute * minute;
    let now = now_millis();
    if end <= start {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationDate,
            "endDate must chronologically follow startDate by at least one minute",
        ));
    }
    if start < now - days_back * 86_400_000 {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationDate,
            format!("startDate cannot be more than {days_back} days ago"),
        ));
    }
    let latest = end.min(now / minute * minute);
    Ok((start, end, latest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_numbers_format() {
        assert_eq!(auto_number("{00000000}", 1000), "00001000");
        assert_eq!(auto_number("INV-{0000}", 7), "INV-0007");
        assert_eq!(auto_number("{0}", 12345), "12345");
    }
}

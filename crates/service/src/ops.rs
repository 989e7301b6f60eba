//! Record operations inside a given transaction: the building blocks of single REST requests,
//! Composite subrequests and sObject collections, so that all of them validate, check
//! permissions and answer errors identically. Reads take a `ReadTx`, writes a `WriteTx`; a write
//! transaction can serve reads too (Composite reads see its own earlier writes).

use std::sync::Arc;

use model::value::now_millis;
use model::{ApiError, ApiResult, ErrorCode, FieldType, Id, ObjectDef, ObjectKind, Schema, Value};
use serde_json::{Map, Value as Json};
use store::{ReadTx, WriteTx};

use crate::auth::Principal;
use crate::coerce::{coerce_record, coerce_value, Mode};
use crate::records::{delete_tx, insert_tx, seq_of, update_tx, Record, Upserted};

/// An object the caller may see, by name (case-insensitive); NOT_FOUND otherwise.
pub fn visible(schema: &Schema, p: &Principal, name: &str) -> ApiResult<Arc<ObjectDef>> {
    schema
        .object(name)
        .filter(|o| o.kind != ObjectKind::PlatformEvent || o.caps.createable)
        .filter(|o| p.perms.object(o).read || p.perms.object(o).create)
        .cloned()
        .ok_or_else(ApiError::not_found)
}

/// The row of a record id given in a URL: NOT_FOUND unless it is a well-formed id of `o` from
/// this org.
pub fn row_of(tx: &dyn ReadTx, o: &ObjectDef, id: &str) -> ApiResult<u64> {
    if o.kind == ObjectKind::PlatformEvent {
        // Events are published, never stored: no record of one exists.
        return Err(ApiError::not_found());
    }
    let id = Id::parse(id).map_err(|_| ApiError::not_found())?;
    seq_of(tx.marker(), o, &id).ok_or_else(ApiError::not_found)
}

fn as_map(body: &Json) -> ApiResult<&Map<String, Json>> {
    body.as_object().ok_or_else(|| {
        ApiError::new(
            ErrorCode::JsonParserError,
            "The request body must be a JSON object",
        )
    })
}

/// What a create answers.
#[derive(Debug, Clone)]
pub struct Created {
    /// The new record's id (for a platform event, the `e00…` id of the publish).
    pub id: Id,
    /// For a platform event: its `EventUuid`, reported as an `OPERATION_ENQUEUED` "error" of
    /// the successful result.
    pub enqueued: Option<String>,
}

impl Created {
    /// The save result as REST answers it: `{"id", "success": true, "errors": […]}`.
    pub fn result_json(&self) -> Json {
        let errors = match &self.enqueued {
            Some(uuid) => serde_json::json!([{
                "statusCode": "OPERATION_ENQUEUED",
                "message": uuid,
                "fields": [],
            }]),
            None => Json::Array(vec![]),
        };
        serde_json::json!({"id": self.id.to_18(), "success": true, "errors": errors})
    }
}

/// Creates a record of `o` from a JSON body (for a platform event: publishes it).
pub fn create(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    body: &Json,
) -> ApiResult<Created> {
    if o.kind == ObjectKind::PlatformEvent {
        let published = crate::events::publish_tx(tx, p, o, as_map(body)?)?;
        return Ok(Created {
            id: published.id,
            enqueued: Some(published.uuid),
        });
    }
    let schema = tx.schema().clone();
    let input = coerce_record(p, &schema, o, as_map(body)?, Mode::Create)?;
    let seq = insert_tx(tx, p, o, input, now_millis())?;
    Ok(Created {
        id: Id::new(o.key_prefix, tx.marker(), seq),
        enqueued: None,
    })
}

/// Updates row `seq` of `o` from a JSON body.
pub fn update(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    body: &Json,
    unmodified_since: Option<i64>,
) -> ApiResult<()> {
    let schema = tx.schema().clone();
    let input = coerce_record(p, &schema, o, as_map(body)?, Mode::Update)?;
    update_tx(tx, p, o, seq, input, now_millis(), unmodified_since)
}

/// Deletes row `seq` of `o` (to the recycle bin).
pub fn delete(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    unmodified_since: Option<i64>,
) -> ApiResult<()> {
    delete_tx(tx, p, o, seq, now_millis(), unmodified_since)
}

/// The fields to output: all readable ones, or those named in `?fields=` (plus Id).
pub fn output_fields(p: &Principal, o: &ObjectDef, fields: Option<&str>) -> ApiResult<Vec<usize>> {
    if o.kind == ObjectKind::PlatformEvent {
        return Err(ApiError::not_found());
    }
    match fields.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok((0..o.fields.len())
            .filter(|&i| p.perms.field_readable(o, &o.fields[i]))
            .collect()),
        Some(list) => {
            let mut out = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let i = o.field_index(name).filter(|&i| p.perms.field_readable(o, &o.fields[i])).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidField,
                        format!("No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", o.name),
                    )
                })?;
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            if let Some(id) = o.field_index("Id") {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            Ok(out)
        }
    }
}

/// Reads row `seq` of `o` for output, applying field-level security.
pub fn read(
    tx: &dyn ReadTx,
    p: &Principal,
    o: &Arc<ObjectDef>,
    seq: u64,
    fields: Option<&str>,
) -> ApiResult<Record> {
    if !p.perms.object(o).read {
        return Err(ApiError::not_found());
    }
    // Platform events have no records: `output_fields` answers NOT_FOUND for them.
    let positions = output_fields(p, o, fields)?;
    let lm = o.field_index("LastModifiedDate").expect("system field");
    let mut want = positions.clone();
    want.push(lm);
    let row = tx.get(o, seq, &want)?.ok_or_else(ApiError::not_found)?;
    if row.deleted {
        return Err(ApiError::new(
            ErrorCode::EntityIsDeleted,
            "entity is deleted",
        ));
    }
    let last_modified_ms = match row.values.last() {
        Some(Value::DateTime(t)) => *t,
        _ => 0,
    };
    let fields = positions.iter().copied().zip(row.values).collect();
    Ok(Record {
        object: o.clone(),
        id: Id::new(o.key_prefix, tx.marker(), seq),
        fields,
        last_modified_ms,
    })
}

/// Reads a record by the id in a URL. A segment that is not an id is taken for an external-id
/// field name, as Salesforce does.
pub fn read_by_id(
    tx: &dyn ReadTx,
    p: &Principal,
    o: &Arc<ObjectDef>,
    id: &str,
    fields: Option<&str>,
) -> ApiResult<Record> {
    if !p.perms.object(o).read {
        return Err(ApiError::not_found());
    }
    let seq = match Id::parse(id) {
        Ok(parsed) => seq_of(tx.marker(), o, &parsed).ok_or_else(ApiError::not_found)?,
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("Provided external ID field does not exist or is not accessible: {id}"),
            ));
        }
    };
    read(tx, p, o, seq, fields)
}

/// Live rows whose external-id field `field` equals `value` (the field's position, the rows).
pub fn find_external(
    tx: &dyn ReadTx,
    p: &Principal,
    o: &ObjectDef,
    field: &str,
    value: &str,
) -> ApiResult<(usize, Vec<u64>)> {
    let fi = o
        .field_index(field)
        .filter(|&i| o.fields[i].id_lookup() && p.perms.field_readable(o, &o.fields[i]))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("Provided external ID field does not exist or is not accessible: {field}"),
            )
        })?;
    let f = &o.fields[fi];
    if f.ty == FieldType::Id {
        let seq = Id::parse(value)
            .ok()
            .and_then(|id| seq_of(tx.marker(), o, &id));
        let live = match seq {
            Some(s) => tx.exists(o, s)? == Some(false),
            None => false,
        };
        return Ok((fi, seq.filter(|_| live).into_iter().collect()));
    }
    let v = coerce_value(o, f, &Json::String(value.to_string()))?;
    Ok((fi, tx.find_by_field(o, fi, &v, false, 201)?))
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// Inserted or updated one record.
    Done(Upserted),
    /// More than one record has the key; nothing was written (HTTP 300).
    Multiple(Vec<u64>),
}

/// Upserts by external id: inserts when no record has `value` in `field`, updates when one has.
pub fn upsert(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    field: &str,
    value: &str,
    body: &Json,
    update_only: bool,
) -> ApiResult<UpsertOutcome> {
    let map = as_map(body)?;
    let (fi, hits) = find_external(tx, p, o, field, value)?;
    let f = o.fields[fi].clone();
    let schema = tx.schema().clone();
    let mut rest = map.clone();
    rest.retain(|k, _| !k.eq_ignore_ascii_case(&f.name));
    let now = now_millis();
    match hits.as_slice() {
        [] if f.ty == FieldType::Id || update_only => Err(ApiError::not_found()),
        [] => {
            let mut input = coerce_record(p, &schema, o, &rest, Mode::Create)?;
            input.set(fi, coerce_value(o, &f, &Json::String(value.to_string()))?);
            let seq = insert_tx(tx, p, o, input, now)?;
            Ok(UpsertOutcome::Done(Upserted {
                id: Id::new(o.key_prefix, tx.marker(), seq),
                created: true,
            }))
        }
        [one] => {
            let input = coerce_record(p, &schema, o, &rest, Mode::Update)?;
            update_tx(tx, p, o, *one, input, now, None)?;
            Ok(UpsertOutcome::Done(Upserted {
                id: Id::new(o.key_prefix, tx.marker(), *one),
                created: false,
            }))
        }
        many => Ok(UpsertOutcome::Multiple(many.to_vec())),
    }
}

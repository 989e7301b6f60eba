//! The ingest core shared by Bulk API 2.0 jobs and Bulk API 1.0 batches: resolve a header of
//! column names against an object once ([`IngestPlan::new`]), turn rows of text cells into
//! validated field values outside the writer ([`IngestPlan::prepare`]), and apply a prepared
//! chunk inside one write transaction with per-row outcomes ([`IngestPlan::apply`]).
//!
//! Validation follows single-record REST exactly (`coerce`, `records`): the same rules in the
//! same order with the same messages. What differs is how the work is organised: values are
//! converted from text without JSON, chunk-wide lookups replace per-row queries (existence of
//! the ids of an update, the keys of an upsert, live parents), unique indexes enforce
//! uniqueness, and rows are written through statements kept prepared for the chunk. A failed
//! row changes nothing and never undoes its neighbours.

use std::collections::HashMap;
use std::sync::Arc;

use model::{writable, ApiError, ApiResult, ErrorCode, FieldType, Id, ObjectDef, Schema, Value};
use serde_json::Value as Json;
use store::WriteTx;

use crate::auth::Principal;
use crate::coerce::{coerce_str, coerce_value, ExtRef, Input, Mode};
use crate::records::{
    delete_tx, insert_bulk_check, insert_bulk_unique_error, insert_tx, prepare_bulk_insert, seq_of,
    update_bulk_tx, update_tx, BulkCache, BulkInsertRow, InsertShape,
};
use crate::triggers::{self, Op};

/// The DML operation of an ingest job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Create records.
    Insert,
    /// Update records by `Id`.
    Update,
    /// Update or create records by an external id.
    Upsert,
    /// Delete records to the recycle bin by `Id`.
    Delete,
    /// Delete records for good by `Id`.
    HardDelete,
}

impl Operation {
    /// Parses the wire spelling (case-sensitive, as Salesforce).
    pub fn parse(s: &str) -> Option<Operation> {
        Some(match s {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "upsert" => Operation::Upsert,
            "delete" => Operation::Delete,
            "hardDelete" => Operation::HardDelete,
            _ => return None,
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
            Operation::HardDelete => "hardDelete",
        }
    }
}

/// One input cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    /// No value: the field is left alone (unchanged on update, unset on insert).
    Empty,
    /// `#N/A` (or an explicit null of XML/JSON input): set the field to null.
    Null,
    /// A value, as text.
    Text(&'a str),
}

impl<'a> Cell<'a> {
    /// A CSV field: empty is [`Cell::Empty`], `#N/A` is [`Cell::Null`].
    pub fn from_csv(s: &'a str) -> Cell<'a> {
        match s {
            "" => Cell::Empty,
            "#N/A" => Cell::Null,
            _ => Cell::Text(s),
        }
    }
}

/// A row's error, as the result files show it (`CODE:message:fields --`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Status code (`REQUIRED_FIELD_MISSING`, `MISSING_ARGUMENT`, …).
    pub code: String,
    /// Message.
    pub message: String,
    /// Fields concerned.
    pub fields: Vec<String>,
}

impl RowError {
    /// An error with a code that need not be in the model's table.
    pub fn new(code: &str, message: impl Into<String>, fields: Vec<String>) -> RowError {
        RowError {
            code: code.to_string(),
            message: message.into(),
            fields,
        }
    }

    /// `CODE:message:fields --`.
    pub fn text(&self) -> String {
        format!(
            "{}:{}:{} --",
            self.code,
            self.message,
            self.fields.join(",")
        )
    }
}

impl From<ApiError> for RowError {
    fn from(e: ApiError) -> RowError {
        RowError {
            code: e.code.as_str().to_string(),
            message: e.message,
            fields: e.fields,
        }
    }
}

/// What happened to one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// Written: the record and whether it was created.
    Ok {
        /// The record.
        id: Id,
        /// True when the row created the record.
        created: bool,
    },
    /// Refused: the id the row named (update, delete) and why.
    Err {
        /// The `Id` given in the row, if any.
        id: Option<String>,
        /// The error.
        error: RowError,
    },
}

impl RowOutcome {
    /// True for [`RowOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, RowOutcome::Ok { .. })
    }
}

/// What a header column writes.
#[derive(Debug, Clone)]
enum Target {
    /// The `Id` column.
    Id,
    /// A field of the object.
    Field(usize),
    /// A reference set through the parent's external id (`Account.External_Id__c`).
    Parent {
        field: usize,
        target: Arc<ObjectDef>,
        ext_field: usize,
    },
    /// A column the operation does not use (delete files only need `Id`).
    Ignored,
}

/// A header resolved against an object for one operation.
#[derive(Debug, Clone)]
pub struct IngestPlan {
    /// The object written.
    pub object: Arc<ObjectDef>,
    /// The operation.
    pub operation: Operation,
    ext_field: Option<usize>,
    targets: Vec<Target>,
    id_column: Option<usize>,
    key_column: Option<usize>,
}

/// A chunk of rows validated outside the writer, ready for [`IngestPlan::apply`].
#[derive(Debug, Default)]
pub struct PreparedChunk {
    rows: Vec<Prepared>,
}

impl PreparedChunk {
    /// Rows in the chunk.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the chunk has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[derive(Debug)]
enum Prepared {
    Failed { id: Option<String>, error: RowError },
    Insert(BulkInsertRow),
    Update { seq: u64, id: String, input: Input },
    Upsert(Box<UpsertRow>),
    Delete { seq: u64, id: String },
}

#[derive(Debug)]
struct UpsertRow {
    /// The key value (None when the key field is `Id`).
    key: Option<Value>,
    /// For an `Id` key: the row it names, when it is an id of this object.
    id_seq: Option<u64>,
    /// The key as given, for messages.
    shown: String,
    create: Option<BulkInsertRow>,
    update: Input,
}

fn missing_field(name: &str) -> String {
    format!("InvalidBatch : Field name not found : {name}")
}

impl IngestPlan {
    /// Resolves `header` (column names as given) for `operation` on `object`. Names are
    /// case-insensitive; `Rel.Field` and `Type:Rel.Field` set a reference through the parent's
    /// external id. A name the caller cannot see is an error for the whole job (returned as the
    /// job's error message).
    pub fn new(
        p: &Principal,
        schema: &Schema,
        object: &Arc<ObjectDef>,
        operation: Operation,
        external_id: Option<&str>,
        header: &[String],
    ) -> Result<IngestPlan, String> {
        let o = object;
        let deleting = matches!(operation, Operation::Delete | Operation::HardDelete);
        let mut targets = Vec::with_capacity(header.len());
        let mut id_column = None;
        for (k, raw) in header.iter().enumerate() {
            let name = raw.trim();
            if name.eq_ignore_ascii_case("Id") {
                id_column.get_or_insert(k);
                targets.push(Target::Id);
                continue;
            }
            if deleting {
                targets.push(Target::Ignored);
                continue;
            }
            if let Some((rel_part, ext_name)) = name.split_once('.') {
                let (ty, rel) = match rel_part.split_once(':') {
                    Some((t, r)) => (Some(t), r),
                    None => (None, rel_part),
                };
                let rf = o
                    .relationship(rel)
                    .filter(|f| p.perms.field_readable(o, f))
                    .ok_or_else(|| missing_field(name))?;
                let target = schema
                    .object(rf.reference_to.as_deref().unwrap_or(""))
                    .cloned()
                    .ok_or_else(|| missing_field(name))?;
                if ty.is_some_and(|t| !t.eq_ignore_ascii_case(&target.name)) {
                    return Err(missing_field(name));
                }
                let ext_field = target
                    .field_index(ext_name)
                    .filter(|&i| {
                        target.fields[i].id_lookup()
                            && p.perms.field_readable(&target, &target.fields[i])
                    })
                    .ok_or_else(|| missing_field(name))?;
                let field = o.field_index(&rf.name).expect("relationship field exists");
                targets.push(Target::Parent {
                    field,
                    target,
                    ext_field,
                });
                continue;
            }
            let i = o
                .field_index(name)
                .filter(|&i| p.perms.field_readable(o, &o.fields[i]))
                .ok_or_else(|| missing_field(name))?;
            targets.push(Target::Field(i));
        }
        let ext_field = match (operation, external_id) {
            (Operation::Upsert, Some(n)) => Some(
                o.field_index(n)
                    .filter(|&i| o.fields[i].id_lookup())
                    .ok_or_else(|| missing_field(n))?,
            ),
            (Operation::Upsert, None) => {
                return Err("InvalidJob : External ID was blank for the upsert".into())
            }
            _ => None,
        };
        let key_column = ext_field.and_then(|fi| {
            targets.iter().position(|t| match t {
                Target::Field(i) => *i == fi,
                Target::Id => o.fields[fi].ty == FieldType::Id,
                _ => false,
            })
        });
        Ok(IngestPlan {
            object: object.clone(),
            operation,
            ext_field,
            targets,
            id_column,
            key_column,
        })
    }

    /// Columns in the header.
    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    /// Validates rows (cells in header order) outside the writer. Rows with more cells than the
    /// header fail; missing trailing cells are empty.
    pub fn prepare<'a, I>(&self, p: &Principal, marker: model::OrgMarker, rows: I) -> PreparedChunk
    where
        I: IntoIterator<Item = Vec<Cell<'a>>>,
    {
        let mut chunk = PreparedChunk::default();
        for cells in rows {
            self.prepare_into(p, marker, &cells, &mut chunk);
        }
        chunk
    }

    /// Validates one row (cells in header order) and appends it to `chunk`.
    pub fn prepare_into(
        &self,
        p: &Principal,
        marker: model::OrgMarker,
        cells: &[Cell<'_>],
        chunk: &mut PreparedChunk,
    ) {
        chunk.rows.push(self.prepare_row(p, marker, cells));
    }

    fn cell<'c>(&self, cells: &[Cell<'c>], k: Option<usize>) -> Cell<'c> {
        k.and_then(|k| cells.get(k).copied()).unwrap_or(Cell::Empty)
    }

    fn prepare_row(&self, p: &Principal, marker: model::OrgMarker, cells: &[Cell<'_>]) -> Prepared {
        let o = &self.object;
        if cells.len() > self.targets.len() {
            return Prepared::Failed {
                id: None,
                error: RowError::new(
                    "INVALID_FIELD",
                    format!(
                        "The row has {} values but the header has {} columns",
                        cells.len(),
                        self.targets.len()
                    ),
                    vec![],
                ),
            };
        }
        let given_id = match self.cell(cells, self.id_column) {
            Cell::Text(s) => Some(s.to_string()),
            _ => None,
        };
        let fail = |e: ApiError| Prepared::Failed {
            id: given_id.clone(),
            error: e.into(),
        };
        match self.operation {
            Operation::Insert => match self.coerce(p, cells, Mode::Create, None) {
                Ok(input) => Prepared::Insert(prepare_bulk_insert(p, o, input)),
                Err(e) => fail(e),
            },
            Operation::Update | Operation::Delete | Operation::HardDelete => {
                let Some(id) = given_id.clone() else {
                    let what = if self.operation == Operation::Update {
                        "update"
                    } else {
                        "delete"
                    };
                    return Prepared::Failed {
                        id: None,
                        error: RowError::new(
                            "MISSING_ARGUMENT",
                            format!("Id not specified in an {what} call"),
                            vec![],
                        ),
                    };
                };
                let seq = match Id::parse(id.trim()) {
                    Ok(parsed) if parsed.prefix() == o.key_prefix => parsed.seq_in(marker),
                    _ => {
                        return fail(ApiError::with_fields(
                            ErrorCode::MalformedId,
                            format!("{} ID: id value of incorrect type: {id}", o.label),
                            vec!["Id".into()],
                        ))
                    }
                };
                // A well-formed id of another org names no record here.
                let Some(seq) = seq else {
                    return fail(ApiError::not_found());
                };
                if self.operation == Operation::Update {
                    match self.coerce(p, cells, Mode::Update, None) {
                        Ok(input) => Prepared::Update { seq, id, input },
                        Err(e) => fail(e),
                    }
                } else {
                    Prepared::Delete { seq, id }
                }
            }
            Operation::Upsert => {
                let fi = self.ext_field.expect("upsert plans have a key field");
                let f = &o.fields[fi];
                let value = match self.cell(cells, self.key_column) {
                    Cell::Text(s) => s,
                    _ => {
                        return Prepared::Failed {
                            id: None,
                            error: RowError::new(
                                "MISSING_ARGUMENT",
                                format!("{} not specified", f.name),
                                vec![],
                            ),
                        }
                    }
                };
                // Org::upsert's order: the key, the create body, the update body.
                let (key, id_seq) = if f.ty == FieldType::Id {
                    let seq = Id::parse(value).ok().and_then(|id| seq_of(marker, o, &id));
                    (None, seq)
                } else {
                    match coerce_str(o, f, value) {
                        Ok(v) => (Some(v), None),
                        Err(e) => return fail(e),
                    }
                };
                let create = if f.ty == FieldType::Id {
                    None
                } else {
                    let mut input = match self.coerce(p, cells, Mode::Create, Some(fi)) {
                        Ok(i) => i,
                        Err(e) => return fail(e),
                    };
                    input.set(fi, key.clone().expect("non-Id keys are coerced"));
                    Some(prepare_bulk_insert(p, o, input))
                };
                let update = match self.coerce(p, cells, Mode::Update, Some(fi)) {
                    Ok(i) => i,
                    Err(e) => return fail(e),
                };
                Prepared::Upsert(Box::new(UpsertRow {
                    key,
                    id_seq,
                    shown: value.to_string(),
                    create,
                    update,
                }))
            }
        }
    }

    /// `coerce_record` over cells: the same checks in the same order. `skip` is the upsert key
    /// field, which the body never sets.
    fn coerce(
        &self,
        p: &Principal,
        cells: &[Cell<'_>],
        mode: Mode,
        skip: Option<usize>,
    ) -> ApiResult<Input> {
        let o = &self.object;
        let mut input = Input::default();
        let mut locked: Vec<String> = Vec::new();
        for (cell, target) in cells.iter().zip(&self.targets) {
            if *cell == Cell::Empty {
                continue;
            }
            match target {
                Target::Ignored => {}
                Target::Id => {
                    let is_key = skip.is_some_and(|fi| o.fields[fi].ty == FieldType::Id);
                    if mode == Mode::Create && !is_key && *cell != Cell::Null {
                        return Err(ApiError::with_fields(
                            ErrorCode::InvalidFieldForInsertUpdate,
                            "Id: cannot specify Id in an insert call",
                            vec!["Id".into()],
                        ));
                    }
                }
                Target::Field(i) => {
                    if Some(*i) == skip {
                        continue;
                    }
                    let f = &o.fields[*i];
                    if !writable(f, mode == Mode::Create) || !p.perms.field_editable(o, f) {
                        locked.push(f.name.clone());
                        continue;
                    }
                    let v = match cell {
                        Cell::Text(s) => coerce_str(o, f, s)?,
                        _ => coerce_value(o, f, &Json::Null)?,
                    };
                    input.values.push((*i, v));
                }
                Target::Parent {
                    field,
                    target,
                    ext_field,
                } => {
                    let rf = &o.fields[*field];
                    if !writable(rf, true) || !p.perms.field_editable(o, rf) {
                        return Err(ApiError::with_fields(
                            ErrorCode::InvalidFieldForInsertUpdate,
                            format!("Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", rf.name),
                            vec![rf.name.clone()],
                        ));
                    }
                    match cell {
                        Cell::Text(s) => {
                            let value = coerce_str(target, &target.fields[*ext_field], s)?;
                            input.ext_refs.push(ExtRef {
                                field: *field,
                                target: target.clone(),
                                ext_field: *ext_field,
                                value,
                            });
                        }
                        _ => input.values.push((*field, Value::Null)),
                    }
                }
            }
        }
        if !locked.is_empty() {
            return Err(ApiError::with_fields(
                ErrorCode::InvalidFieldForInsertUpdate,
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    locked.join(", ")
                ),
                locked,
            ));
        }
        Ok(input)
    }

    /// Applies a prepared chunk in the write transaction `tx`; one outcome per row, in order.
    /// A failing row changes nothing; an `Err` (a storage failure) means the chunk must be
    /// rolled back and retried.
    ///
    /// New rows are checked one by one but written up to [`INSERT_BATCH`] at a time (one
    /// statement);
    /// before anything that could see them (an update, a delete, a row referring to this
    /// object) the batch is written first, so every row sees what the rows before it wrote. A
    /// batch a unique index refuses is written again row by row to tell the rows apart.
    pub fn apply(
        &self,
        tx: &mut dyn WriteTx,
        p: &Principal,
        chunk: PreparedChunk,
        now: i64,
    ) -> ApiResult<Vec<RowOutcome>> {
        self.apply_keeping(tx, p, chunk, now, &mut Spent::default())
    }

    /// [`IngestPlan::apply`], moving the rows it is done with into `spent` instead of freeing
    /// them: the caller frees them outside the writer (rows are allocated by the threads that
    /// prepared them, and freeing them in the writer was a measurable share of its time).
    pub fn apply_keeping(
        &self,
        tx: &mut dyn WriteTx,
        p: &Principal,
        chunk: PreparedChunk,
        now: i64,
        spent: &mut Spent,
    ) -> ApiResult<Vec<RowOutcome>> {
        let o = self.object.clone();
        if o.kind == model::ObjectKind::PlatformEvent {
            // An insert job of a platform event publishes one event per row.
            return chunk
                .rows
                .into_iter()
                .map(|r| match r {
                    Prepared::Failed { id, error } => Ok(RowOutcome::Err { id, error }),
                    Prepared::Insert(row) => {
                        let published = row
                            .into_input()
                            .and_then(|input| crate::events::publish_input(tx, p, &o, &input));
                        match published {
                            Ok(e) => Ok(RowOutcome::Ok {
                                id: e.id,
                                created: true,
                            }),
                            Err(e) => row_error(e, None),
                        }
                    }
                    _ => row_error(
                        ApiError::new(
                            ErrorCode::InvalidOperation,
                            "platform events can only be inserted",
                        ),
                        None,
                    ),
                })
                .collect::<ApiResult<Vec<_>>>();
        }
        let marker = tx.marker();
        let id_of = |seq: u64| Id::new(o.key_prefix, marker, seq);
        // Rows of an object flows watch go one by one through the paths that run them (the
        // batched fast path knows no flows).
        let flows_create = triggers::watching(tx, &o, Op::Create).is_some();
        let flows_update = triggers::watching(tx, &o, Op::Update).is_some();
        let mut cache = BulkCache::default();
        let shape = InsertShape::of(&o);
        // Chunk-wide lookups: existence of the ids named by updates, the rows matching upsert keys.
        let mut update_seqs = Vec::new();
        let mut keys = Vec::new();
        let mut key_ids = Vec::new();
        for r in &chunk.rows {
            match r {
                Prepared::Update { seq, .. } => update_seqs.push(*seq),
                Prepared::Upsert(u) => match (&u.key, u.id_seq) {
                    (Some(k), _) => keys.push(k.clone()),
                    (None, Some(s)) => key_ids.push(s),
                    _ => {}
                },
                _ => {}
            }
        }
        let states: HashMap<u64, Option<bool>> = if update_seqs.is_empty() && key_ids.is_empty() {
            HashMap::new()
        } else {
            let all: Vec<u64> = update_seqs.iter().chain(&key_ids).copied().collect();
            let found = tx.exists_many(&o, &all)?;
            all.into_iter().zip(found).collect()
        };
        let mut key_hits = if keys.is_empty() {
            Vec::new()
        } else {
            let fi = self.ext_field.expect("upsert");
            tx.find_keys(&o, fi, &keys, 2)?
        }
        .into_iter();
        // Keys this chunk created (upserts later in the chunk find them), folded like the
        // column's collation folds them.
        let mut created_keys: HashMap<String, u64> = HashMap::new();
        let mut batch = Batch::new(&o);
        // Rows of the User object may end sessions before a later failure: give them a savepoint.
        let guarded = o.name == "User";
        let mut out: Vec<RowOutcome> = Vec::with_capacity(chunk.rows.len());
        for r in chunk.rows {
            let k = out.len();
            out.push(RowOutcome::Ok {
                id: id_of(0),
                created: false,
            });
            let outcome = match r {
                Prepared::Failed { id, error } => RowOutcome::Err { id, error },
                Prepared::Insert(row) if flows_create => {
                    batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                    let r = guard(tx, true, |tx| insert_tx(tx, p, &o, row.into_input()?, now));
                    match r {
                        Ok(seq) => RowOutcome::Ok {
                            id: id_of(seq),
                            created: true,
                        },
                        Err(e) => row_error(e, None)?,
                    }
                }
                Prepared::Insert(mut row) => {
                    if row.reads_own_object(&o) {
                        batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                    }
                    match insert_bulk_check(tx, p, &o, &shape, &mut row, now, &mut cache) {
                        Ok(seq) => {
                            batch.push(
                                tx,
                                p,
                                &o,
                                (k, seq, row, None),
                                &mut out,
                                &mut created_keys,
                                spent,
                            )?;
                            continue;
                        }
                        Err(e) => row_error(e, None)?,
                    }
                }
                Prepared::Update { seq, id, input } => {
                    batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                    let state = states.get(&seq).copied().flatten();
                    let r = if flows_update && state == Some(false) {
                        guard(tx, true, |tx| update_tx(tx, p, &o, seq, input, now, None))
                    } else {
                        guard(tx, guarded, |tx| {
                            update_bulk_tx(tx, p, &o, seq, state, input, now, &mut cache)
                        })
                    };
                    match r {
                        Ok(()) => RowOutcome::Ok {
                            id: id_of(seq),
                            created: false,
                        },
                        Err(e) => row_error(e, Some(id))?,
                    }
                }
                Prepared::Upsert(u) => {
                    let fi = self.ext_field.expect("upsert");
                    let folded = u.key.as_ref().map(|k| fold(&o.fields[fi], k));
                    if folded
                        .as_ref()
                        .is_some_and(|f| created_keys.contains_key(f))
                    {
                        // Its record is (to be) created by this chunk: write it first.
                        batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                    }
                    let hits: Vec<u64> = match (&folded, u.id_seq) {
                        (Some(f), _) => {
                            let pre = key_hits.next().unwrap_or_default();
                            match created_keys.get(f) {
                                Some(&s) => vec![s],
                                None => pre,
                            }
                        }
                        (None, Some(s)) if states.get(&s).copied().flatten() == Some(false) => {
                            vec![s]
                        }
                        _ => vec![],
                    };
                    let UpsertRow {
                        shown,
                        create,
                        update,
                        ..
                    } = *u;
                    match hits.as_slice() {
                        [] => match create {
                            Some(row) if flows_create => {
                                batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                                spent.inputs.push(update);
                                let r = guard(tx, true, |tx| {
                                    insert_tx(tx, p, &o, row.into_input()?, now)
                                });
                                match r {
                                    Ok(seq) => {
                                        if let Some(f) = &folded {
                                            created_keys.insert(f.clone(), seq);
                                        }
                                        RowOutcome::Ok {
                                            id: id_of(seq),
                                            created: true,
                                        }
                                    }
                                    Err(e) => row_error(e, None)?,
                                }
                            }
                            Some(mut row) => {
                                if row.reads_own_object(&o) {
                                    batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                                }
                                match insert_bulk_check(
                                    tx, p, &o, &shape, &mut row, now, &mut cache,
                                ) {
                                    Ok(seq) => {
                                        if let Some(f) = &folded {
                                            created_keys.insert(f.clone(), seq);
                                        }
                                        spent.inputs.push(update);
                                        batch.push(
                                            tx,
                                            p,
                                            &o,
                                            (k, seq, row, folded),
                                            &mut out,
                                            &mut created_keys,
                                            spent,
                                        )?;
                                        continue;
                                    }
                                    Err(e) => row_error(e, None)?,
                                }
                            }
                            None => row_error(ApiError::not_found(), None)?,
                        },
                        [one] => {
                            batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                            spent.rows.extend(create);
                            let r = guard(tx, guarded || flows_update, |tx| {
                                if flows_update {
                                    return update_tx(tx, p, &o, *one, update, now, None);
                                }
                                update_bulk_tx(
                                    tx,
                                    p,
                                    &o,
                                    *one,
                                    Some(false),
                                    update,
                                    now,
                                    &mut cache,
                                )
                            });
                            match r {
                                Ok(()) => RowOutcome::Ok {
                                    id: id_of(*one),
                                    created: false,
                                },
                                Err(e) => row_error(e, None)?,
                            }
                        }
                        _ => row_error(
                            ApiError::new(
                                ErrorCode::DuplicateExternalId,
                                format!(
                                    "{}: more than one record found for external id field: {shown}",
                                    o.fields[fi].name
                                ),
                            ),
                            None,
                        )?,
                    }
                }
                Prepared::Delete { seq, id } => {
                    batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
                    let hard = self.operation == Operation::HardDelete;
                    let r = guard(tx, true, |tx| {
                        delete_tx(tx, p, &o, seq, now, None)?;
                        if hard {
                            tx.hard_delete(&o, seq)?;
                        }
                        Ok(())
                    });
                    match r {
                        Ok(()) => RowOutcome::Ok {
                            id: id_of(seq),
                            created: false,
                        },
                        Err(e) => row_error(e, Some(id))?,
                    }
                }
            };
            out[k] = outcome;
        }
        batch.flush(tx, p, &o, &mut out, &mut created_keys, spent)?;
        Ok(out)
    }
}

/// New rows written together (one statement), at most.
pub const INSERT_BATCH: usize = 256;
/// Values bound in one statement, at most (SQLite allows 32,766).
const MAX_PARAMS: usize = 32_000;

/// Checked new rows not written yet: (outcome slot, sequence, row, folded upsert key).
struct Batch {
    rows: Vec<(usize, u64, BulkInsertRow, Option<String>)>,
    /// Rows per statement for this object.
    size: usize,
}

impl Batch {
    fn new(o: &ObjectDef) -> Batch {
        let size = (MAX_PARAMS / o.fields.len().max(1)).clamp(1, INSERT_BATCH);
        Batch {
            rows: Vec::with_capacity(size),
            size,
        }
    }
}

impl Batch {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        tx: &mut dyn WriteTx,
        p: &Principal,
        o: &ObjectDef,
        row: (usize, u64, BulkInsertRow, Option<String>),
        out: &mut [RowOutcome],
        created_keys: &mut HashMap<String, u64>,
        spent: &mut Spent,
    ) -> ApiResult<()> {
        self.rows.push(row);
        if self.rows.len() >= self.size {
            self.flush(tx, p, o, out, created_keys, spent)?;
        }
        Ok(())
    }

    fn flush(
        &mut self,
        tx: &mut dyn WriteTx,
        p: &Principal,
        o: &ObjectDef,
        out: &mut [RowOutcome],
        created_keys: &mut HashMap<String, u64>,
        spent: &mut Spent,
    ) -> ApiResult<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let marker = tx.marker();
        let together = self.rows.len() == self.size && {
            let rows: Vec<&[Value]> = self.rows.iter().map(|r| r.2.values()).collect();
            match tx.insert_full_many(o, &rows) {
                Ok(()) => true,
                Err(store::StoreError::Unique(_)) => false,
                Err(e) => return Err(e.into()),
            }
        };
        for (k, seq, row, key) in self.rows.drain(..) {
            let written = if together {
                Ok(())
            } else {
                tx.insert_full(o, row.values())
            };
            out[k] = match written {
                Ok(()) => {
                    crate::changes::created(tx, p, o, seq, row.values().iter().enumerate())?;
                    RowOutcome::Ok {
                        id: Id::new(o.key_prefix, marker, seq),
                        created: true,
                    }
                }
                Err(store::StoreError::Unique(field)) => {
                    if let Some(key) = key {
                        created_keys.remove(&key);
                    }
                    row_error(insert_bulk_unique_error(tx, o, &row, field), None)?
                }
                Err(e) => return Err(e.into()),
            };
            spent.rows.push(row);
        }
        Ok(())
    }
}

/// Rows [`IngestPlan::apply_keeping`] is done with, to be freed by the caller.
#[derive(Debug, Default)]
pub struct Spent {
    rows: Vec<BulkInsertRow>,
    inputs: Vec<Input>,
}

/// Runs `f` inside a nested savepoint when `on`, so its partial writes go if it fails.
fn guard<R>(
    tx: &mut dyn WriteTx,
    on: bool,
    f: impl FnOnce(&mut dyn WriteTx) -> ApiResult<R>,
) -> ApiResult<R> {
    if !on {
        return f(tx);
    }
    tx.savepoint()?;
    match f(tx) {
        Ok(r) => {
            tx.release_savepoint()?;
            Ok(r)
        }
        Err(e) => {
            tx.rollback_savepoint()?;
            Err(e)
        }
    }
}

/// A row's failure, unless the failure is the store's (then the whole chunk fails).
fn row_error(e: ApiError, id: Option<String>) -> ApiResult<RowOutcome> {
    if matches!(
        e.code,
        ErrorCode::UnknownException | ErrorCode::ServerUnavailable
    ) {
        return Err(e);
    }
    Ok(RowOutcome::Err {
        id,
        error: e.into(),
    })
}

/// A key as the column's collation compares it: ASCII case folded unless case-sensitive.
fn fold(f: &model::FieldDef, v: &Value) -> String {
    match v {
        Value::Text(s) if !f.case_sensitive => s.to_ascii_lowercase(),
        Value::Text(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

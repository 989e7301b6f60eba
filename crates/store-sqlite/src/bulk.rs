//! SQL for Bulk API jobs (`bulk_jobs`, `bulk_chunks`) and the bulk fast paths: rows written
//! through statements kept prepared for a whole chunk, values bound straight from
//! `model::Value`s, and many-key lookups answered by one statement per few hundred keys.

use model::{FieldDef, ObjectDef, OrgMarker, Value};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Statement};
use store::{BulkChunkRow, BulkJobFilter, BulkJobRow, StoreError, StoreResult};

use crate::ddl::ident;
use crate::tx::backend;

/// Keys per statement in [`find_keys`] and [`exists_many`].
const KEYS_PER_STATEMENT: usize = 400;

const JOB_COLUMNS: &str = "seq, kind, object, operation, external_id, state, created_by, created_ms, modstamp_ms, api_version, column_delimiter, line_ending, content_type, assignment_rule, query, upload, result_file, next_row, next_offset, chunks, processed, failed, retries, processing_ms, error_message, extra, parent";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BulkJobRow> {
    Ok(BulkJobRow {
        seq: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        object: r.get(2)?,
        operation: r.get(3)?,
        external_id: r.get(4)?,
        state: r.get(5)?,
        created_by: r.get::<_, i64>(6)? as u64,
        created_ms: r.get(7)?,
        modstamp_ms: r.get(8)?,
        api_version: r.get::<_, i64>(9)? as u32,
        column_delimiter: r.get(10)?,
        line_ending: r.get(11)?,
        content_type: r.get(12)?,
        assignment_rule: r.get(13)?,
        query: r.get(14)?,
        upload: r.get(15)?,
        result_file: r.get(16)?,
        next_row: r.get::<_, i64>(17)? as u64,
        next_offset: r.get::<_, i64>(18)? as u64,
        chunks: r.get::<_, i64>(19)? as u64,
        processed: r.get::<_, i64>(20)? as u64,
        failed: r.get::<_, i64>(21)? as u64,
        retries: r.get::<_, i64>(22)? as u32,
        processing_ms: r.get(23)?,
        error_message: r.get(24)?,
        extra: r.get(25)?,
        parent: r.get::<_, Option<i64>>(26)?.map(|p| p as u64),
    })
}

pub(crate) fn bulk_job(conn: &Connection, seq: u64) -> StoreResult<Option<BulkJobRow>> {
    conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE seq = ?1"
    ))
    .map_err(backend)?
    .query_row(params![seq as i64], job_row)
    .optional()
    .map_err(backend)
}

pub(crate) fn bulk_jobs(conn: &Connection, f: &BulkJobFilter) -> StoreResult<Vec<BulkJobRow>> {
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE seq > ?");
    let mut args: Vec<rusqlite::types::Value> = vec![(f.after_seq as i64).into()];
    for (col, list) in [("kind", &f.kinds), ("state", &f.states)] {
        if !list.is_empty() {
            sql.push_str(&format!(" AND {col} IN ("));
            for (k, v) in list.iter().enumerate() {
                sql.push_str(if k == 0 { "?" } else { ", ?" });
                args.push(v.clone().into());
            }
            sql.push(')');
        }
    }
    if let Some(u) = f.created_by {
        sql.push_str(" AND created_by = ?");
        args.push((u as i64).into());
    }
    if let Some(parent) = f.parent {
        sql.push_str(" AND parent = ?");
        args.push((parent as i64).into());
    }
    if let Some(t) = f.modified_before {
        sql.push_str(" AND modstamp_ms < ?");
        args.push(t.into());
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push((f.limit.min(i64::MAX as usize) as i64).into());
    let mut stmt = conn.prepare(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(args.iter()), job_row)
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)).collect()
}

pub(crate) fn bulk_chunks(
    conn: &Connection,
    job: u64,
    from: u64,
    limit: usize,
) -> StoreResult<Vec<BulkChunkRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT job, chunk, first_row, rows, start_offset, end_offset, results FROM bulk_chunks
             WHERE job = ?1 AND chunk >= ?2 ORDER BY chunk LIMIT ?3",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![job as i64, from as i64, limit.min(i64::MAX as usize) as i64],
            |r| {
                Ok(BulkChunkRow {
                    job: r.get::<_, i64>(0)? as u64,
                    chunk: r.get::<_, i64>(1)? as u64,
                    first_row: r.get::<_, i64>(2)? as u64,
                    rows: r.get::<_, i64>(3)? as u64,
                    start_offset: r.get::<_, i64>(4)? as u64,
                    end_offset: r.get::<_, i64>(5)? as u64,
                    results: r.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default(),
                })
            },
        )
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)).collect()
}

pub(crate) fn bulk_files(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT upload FROM bulk_jobs WHERE upload IS NOT NULL
             UNION ALL SELECT result_file FROM bulk_jobs WHERE result_file IS NOT NULL",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)).collect()
}

pub(crate) fn insert_bulk_job(conn: &Connection, j: &BulkJobRow) -> StoreResult<u64> {
    conn.prepare_cached(
        "INSERT INTO bulk_jobs (kind, object, operation, external_id, state, created_by, created_ms, modstamp_ms,
           api_version, column_delimiter, line_ending, content_type, assignment_rule, query, upload, result_file,
           next_row, next_offset, chunks, processed, failed, retries, processing_ms, error_message, extra, parent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
    )
    .map_err(backend)?
    .execute(params![
        j.kind,
        j.object,
        j.operation,
        j.external_id,
        j.state,
        j.created_by as i64,
        j.created_ms,
        j.modstamp_ms,
        j.api_version as i64,
        j.column_delimiter,
        j.line_ending,
        j.content_type,
        j.assignment_rule,
        j.query,
        j.upload,
        j.result_file,
        j.next_row as i64,
        j.next_offset as i64,
        j.chunks as i64,
        j.processed as i64,
        j.failed as i64,
        j.retries as i64,
        j.processing_ms,
        j.error_message,
        j.extra,
        j.parent.map(|p| p as i64),
    ])
    .map_err(backend)?;
    Ok(conn.last_insert_rowid() as u64)
}

pub(crate) fn update_bulk_job(conn: &Connection, j: &BulkJobRow) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE bulk_jobs SET state = ?2, modstamp_ms = ?3, upload = ?4, result_file = ?5, next_row = ?6,
           next_offset = ?7, chunks = ?8, processed = ?9, failed = ?10, retries = ?11, processing_ms = ?12,
           error_message = ?13, extra = ?14
         WHERE seq = ?1",
    )
    .map_err(backend)?
    .execute(params![
        j.seq as i64,
        j.state,
        j.modstamp_ms,
        j.upload,
        j.result_file,
        j.next_row as i64,
        j.next_offset as i64,
        j.chunks as i64,
        j.processed as i64,
        j.failed as i64,
        j.retries as i64,
        j.processing_ms,
        j.error_message,
        j.extra,
    ])
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn delete_bulk_job(conn: &Connection, seq: u64) -> StoreResult<bool> {
    delete_bulk_chunks(conn, seq)?;
    let n = conn
        .prepare_cached("DELETE FROM bulk_jobs WHERE seq = ?1")
        .map_err(backend)?
        .execute(params![seq as i64])
        .map_err(backend)?;
    Ok(n > 0)
}

pub(crate) fn delete_bulk_chunks(conn: &Connection, job: u64) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM bulk_chunks WHERE job = ?1")
        .map_err(backend)?
        .execute(params![job as i64])
        .map_err(backend)?;
    Ok(())
}

pub(crate) fn insert_bulk_chunk(conn: &Connection, c: &BulkChunkRow) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO bulk_chunks (job, chunk, first_row, rows, start_offset, end_offset, results)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(backend)?
    .execute(params![
        c.job as i64,
        c.chunk as i64,
        c.first_row as i64,
        c.rows as i64,
        c.start_offset as i64,
        c.end_offset as i64,
        (!c.results.is_empty()).then_some(&c.results[..]),
    ])
    .map_err(backend)?;
    Ok(())
}

/// Binds `v` (a value of field `f`) as parameter `k`, encoded as `codec::encode` would, without
/// copying text.
pub(crate) fn bind(
    stmt: &mut Statement<'_>,
    k: usize,
    f: &FieldDef,
    v: &Value,
    marker: OrgMarker,
) -> StoreResult<()> {
    let r = match v {
        Value::Null => stmt.raw_bind_parameter(k, rusqlite::types::Null),
        Value::Bool(b) => stmt.raw_bind_parameter(k, *b as i64),
        Value::Int(i) => stmt.raw_bind_parameter(k, *i),
        Value::Double(d) => stmt.raw_bind_parameter(k, *d),
        Value::Text(s) => stmt.raw_bind_parameter(k, s.as_str()),
        Value::Date(d) => stmt.raw_bind_parameter(k, model::value::format_date(*d)),
        Value::DateTime(ms) => stmt.raw_bind_parameter(k, *ms),
        Value::Time(ms) => stmt.raw_bind_parameter(k, *ms as i64),
        Value::Id(id) => {
            let seq = id.seq_in(marker).ok_or_else(|| {
                StoreError::Backend(format!("id {id} of field {} is not from this org", f.name))
            })?;
            stmt.raw_bind_parameter(k, seq as i64)
        }
    };
    r.map_err(backend)
}

/// `INSERT INTO t (every column) VALUES (?1, …)`.
pub(crate) fn insert_full_sql(obj: &ObjectDef) -> String {
    let cols: Vec<String> = obj.fields.iter().map(|f| ident(f.column())).collect();
    let marks: Vec<String> = (1..=cols.len()).map(|k| format!("?{k}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        ident(&obj.table()),
        cols.join(", "),
        marks.join(", ")
    )
}

/// `INSERT INTO t (every column) VALUES (?, …), … ` for `rows` rows.
pub(crate) fn insert_many_sql(obj: &ObjectDef, rows: usize) -> String {
    let cols: Vec<String> = obj.fields.iter().map(|f| ident(f.column())).collect();
    let n = cols.len();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        ident(&obj.table()),
        cols.join(", ")
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..n {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * n + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// `UPDATE t SET c1 = ?1, … WHERE "Id" = ?n`.
pub(crate) fn update_columns_sql(obj: &ObjectDef, columns: &[usize]) -> String {
    let sets: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(k, &i)| format!("{} = ?{}", ident(obj.fields[i].column()), k + 1))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE \"Id\" = ?{}",
        ident(&obj.table()),
        sets.join(", "),
        columns.len() + 1
    )
}

/// Runs a bound statement, mapping constraint failures like `backend` does.
pub(crate) fn run(stmt: &mut Statement<'_>) -> StoreResult<()> {
    stmt.raw_execute().map(|_| ()).map_err(backend_quiet)
}

/// Like `tx::backend`, but a unique-index refusal (an expected outcome of bulk rows) is not
/// logged as a failure.
fn backend_quiet(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(err, Some(msg)) = &e {
        if err.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains("UNIQUE") {
            let field = msg.rsplit('.').next().unwrap_or("").to_string();
            return StoreError::Unique(field);
        }
    }
    backend(e)
}

/// A value as the column's collation compares it (ASCII case folded for `NOCASE` text).
fn fold(f: &FieldDef, v: &Value) -> String {
    match v {
        Value::Text(s) if !f.case_sensitive => s.to_ascii_lowercase(),
        Value::Text(s) => s.clone(),
        Value::Int(i) => format!("n{}", *i as f64),
        Value::Double(d) => format!("n{}", if *d == 0.0 { 0.0 } else { *d }),
        other => format!("{other:?}"),
    }
}

/// See `ReadTx::find_keys`: one `IN (…)` statement per [`KEYS_PER_STATEMENT`] values (it uses
/// the field's index; a join against a `VALUES` list made SQLite build an automatic index over
/// the whole table for every statement). Rows are matched back to the values the way the
/// column's collation compares them.
pub(crate) fn find_keys(
    conn: &Connection,
    marker: OrgMarker,
    obj: &ObjectDef,
    field: usize,
    values: &[Value],
    limit: usize,
) -> StoreResult<Vec<Vec<u64>>> {
    let f = &obj.fields[field];
    let mut hits: std::collections::HashMap<String, Vec<u64>> = std::collections::HashMap::new();
    for batch in values.chunks(KEYS_PER_STATEMENT) {
        let marks: Vec<String> = (1..=batch.len()).map(|k| format!("?{k}")).collect();
        let sql = format!(
            "SELECT \"Id\", {col} FROM {} WHERE {col} IN ({}) AND \"IsDeleted\" = 0 ORDER BY \"Id\"",
            ident(&obj.table()),
            marks.join(", "),
            col = ident(f.column())
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        for (k, v) in batch.iter().enumerate() {
            bind(&mut stmt, k + 1, f, v, marker)?;
        }
        let mut rows = stmt.raw_query();
        while let Some(r) = rows.next().map_err(backend)? {
            let seq = r.get::<_, i64>(0).map_err(backend)? as u64;
            let v = crate::codec::decode(obj, f, r.get_ref(1).map_err(backend)?, marker);
            let e = hits.entry(fold(f, &v)).or_default();
            if !e.contains(&seq) {
                e.push(seq);
            }
        }
    }
    Ok(values
        .iter()
        .map(|v| {
            let mut h = hits.get(&fold(f, v)).cloned().unwrap_or_default();
            h.sort_unstable();
            h.truncate(limit);
            h
        })
        .collect())
}

/// See `ReadTx::exists_many`.
pub(crate) fn exists_many(
    conn: &Connection,
    obj: &ObjectDef,
    seqs: &[u64],
) -> StoreResult<Vec<Option<bool>>> {
    let mut found = std::collections::HashMap::with_capacity(seqs.len());
    for batch in seqs.chunks(KEYS_PER_STATEMENT) {
        let marks: Vec<String> = (1..=batch.len()).map(|k| format!("?{k}")).collect();
        let sql = format!(
            "SELECT \"Id\", \"IsDeleted\" FROM {} WHERE \"Id\" IN ({})",
            ident(&obj.table()),
            marks.join(", ")
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(params_from_iter(batch.iter().map(|s| *s as i64)), |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? != 0))
            })
            .map_err(backend)?;
        for r in rows {
            let (s, d) = r.map_err(backend)?;
            found.insert(s, d);
        }
    }
    Ok(seqs.iter().map(|s| found.get(s).copied()).collect())
}

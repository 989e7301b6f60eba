//! Read and write transactions over one SQLite connection.

use std::collections::HashMap;
use std::sync::Arc;

use model::{FieldDef, ObjectDef, OrgMarker, Schema, Value};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use store::{
    AppRow, BulkChunkRow, BulkJobFilter, BulkJobRow, EventBounds, EventRow, EventSelect, NewEvent,
    ReadTx, RefreshRow, SessionRow, StoreError, StoreResult, StoredRecord, WriteTx,
};

use crate::codec::{decode, encode};
use crate::ddl::{add_field_sql, create_object_sql, ident};

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(err, Some(msg)) = &e {
        if err.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains("UNIQUE") {
            // "UNIQUE constraint failed: sobj_Account.Ext__c"
            let field = msg.rsplit('.').next().unwrap_or("").to_string();
            return StoreError::Unique(field);
        }
    }
    tracing::error!(error = %e, "sqlite failure");
    StoreError::Backend(e.to_string())
}

/// A read view: a connection plus the schema snapshot it works with.
pub(crate) struct Conn<'a> {
    pub conn: &'a Connection,
    pub schema: Arc<Schema>,
    pub marker: OrgMarker,
}

impl Conn<'_> {
    fn encode(&self, f: &FieldDef, v: &Value) -> StoreResult<rusqlite::types::Value> {
        encode(f, v, self.marker).map_err(StoreError::Backend)
    }
}

/// Appends a quoted identifier (API names are `[A-Za-z0-9_]`; see `ddl::ident`).
fn push_ident(sql: &mut String, name: &str) {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    sql.push('"');
    sql.push_str(name);
    sql.push('"');
}

fn hash_blob(h: &[u8; 32]) -> &[u8] {
    &h[..]
}

impl ReadTx for Conn<'_> {
    fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn marker(&self) -> OrgMarker {
        self.marker
    }

    fn get(
        &self,
        obj: &ObjectDef,
        seq: u64,
        fields: &[usize],
    ) -> StoreResult<Option<StoredRecord>> {
        let mut sql = String::with_capacity(40 + fields.len() * 24);
        sql.push_str("SELECT ");
        for &i in fields {
            push_ident(&mut sql, obj.fields[i].column());
            sql.push_str(", ");
        }
        sql.push_str("\"IsDeleted\" FROM ");
        push_ident(&mut sql, &obj.table());
        sql.push_str(" WHERE \"Id\" = ?1");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(backend)?;
        let n = fields.len();
        stmt.query_row(params![seq as i64], |row| {
            let mut values = Vec::with_capacity(n);
            for (k, &i) in fields.iter().enumerate() {
                values.push(decode(obj, &obj.fields[i], row.get_ref(k)?, self.marker));
            }
            let deleted: i64 = row.get(n)?;
            Ok(StoredRecord {
                values,
                deleted: deleted != 0,
            })
        })
        .optional()
        .map_err(backend)
    }

    fn find_by_field(
        &self,
        obj: &ObjectDef,
        field: usize,
        value: &Value,
        include_deleted: bool,
        limit: usize,
    ) -> StoreResult<Vec<u64>> {
        let f = &obj.fields[field];
        let live = if include_deleted {
            ""
        } else {
            " AND \"IsDeleted\" = 0"
        };
        let sql = format!(
            "SELECT \"Id\" FROM {} WHERE {} = ?1{live} ORDER BY \"Id\" LIMIT ?2",
            ident(&obj.table()),
            ident(f.column())
        );
        let v = self.encode(f, value)?;
        let mut stmt = self.conn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(params![v, limit as i64], |r| r.get::<_, i64>(0))
            .map_err(backend)?;
        rows.map(|r| r.map(|x| x as u64).map_err(backend)).collect()
    }

    fn exists(&self, obj: &ObjectDef, seq: u64) -> StoreResult<Option<bool>> {
        let sql = format!(
            "SELECT \"IsDeleted\" FROM {} WHERE \"Id\" = ?1",
            ident(&obj.table())
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(backend)?;
        stmt.query_row(params![seq as i64], |r| r.get::<_, i64>(0))
            .optional()
            .map(|o| o.map(|d| d != 0))
            .map_err(backend)
    }

    fn children_of(
        &self,
        obj: &ObjectDef,
        ref_field: usize,
        parent_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<u64>> {
        let f = &obj.fields[ref_field];
        let sql = format!(
            "SELECT \"Id\" FROM {} WHERE {} = ?1 AND \"IsDeleted\" = 0 ORDER BY \"Id\" LIMIT ?2",
            ident(&obj.table()),
            ident(f.column())
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(params![parent_seq as i64, limit as i64], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(backend)?;
        rows.map(|r| r.map(|x| x as u64).map_err(backend)).collect()
    }

    fn updated_between(
        &self,
        obj: &ObjectDef,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<u64>> {
        let sql = format!(
            "SELECT \"Id\" FROM {} WHERE \"SystemModstamp\" >= ?1 AND \"SystemModstamp\" < ?2 AND \"IsDeleted\" = 0 ORDER BY \"SystemModstamp\", \"Id\" LIMIT ?3",
            ident(&obj.table())
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(params![start_ms, end_ms, limit as i64], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(backend)?;
        rows.map(|r| r.map(|x| x as u64).map_err(backend)).collect()
    }

    fn deleted_between(
        &self,
        obj: &ObjectDef,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, i64)>> {
        let sql = format!(
            "SELECT \"Id\", \"SystemModstamp\" FROM {} WHERE \"SystemModstamp\" >= ?1 AND \"SystemModstamp\" < ?2 AND \"IsDeleted\" = 1 ORDER BY \"SystemModstamp\", \"Id\" LIMIT ?3",
            ident(&obj.table())
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(params![start_ms, end_ms, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?))
            })
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.conn
            .prepare_cached("SELECT value FROM meta_kv WHERE key = ?1")
            .map_err(backend)?
            .query_row(params![key], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn password_hash(&self, user_seq: u64) -> StoreResult<Option<String>> {
        self.conn
            .prepare_cached("SELECT hash FROM auth_passwords WHERE user_seq = ?1")
            .map_err(backend)?
            .query_row(params![user_seq as i64], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRow>> {
        self.conn
            .prepare_cached("SELECT user_seq, client_id, created_ms, last_used_ms, timeout_secs, origin FROM auth_sessions WHERE token_hash = ?1")
            .map_err(backend)?
            .query_row(params![hash_blob(token_hash)], |r| {
                Ok(SessionRow {
                    user_seq: r.get::<_, i64>(0)? as u64,
                    client_id: r.get(1)?,
                    created_ms: r.get(2)?,
                    last_used_ms: r.get(3)?,
                    timeout_secs: r.get(4)?,
                    origin: r.get::<_, Option<Vec<u8>>>(5)?.and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()),
                })
            })
            .optional()
            .map_err(backend)
    }

    fn app(&self, client_id: &str) -> StoreResult<Option<AppRow>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT client_id, name, secret_hash, cert_pem, run_as_user, callback_urls, scopes FROM auth_apps WHERE client_id = ?1")
            .map_err(backend)?;
        stmt.query_row(params![client_id], app_row)
            .optional()
            .map_err(backend)
    }

    fn apps(&self) -> StoreResult<Vec<AppRow>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT client_id, name, secret_hash, cert_pem, run_as_user, callback_urls, scopes FROM auth_apps ORDER BY name")
            .map_err(backend)?;
        let rows = stmt.query_map([], app_row).map_err(backend)?;
        rows.map(|r| r.map_err(backend)).collect()
    }

    fn refresh_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<RefreshRow>> {
        self.conn
            .prepare_cached("SELECT user_seq, client_id, created_ms FROM auth_refresh_tokens WHERE token_hash = ?1")
            .map_err(backend)?
            .query_row(params![hash_blob(token_hash)], |r| {
                Ok(RefreshRow { user_seq: r.get::<_, i64>(0)? as u64, client_id: r.get(1)?, created_ms: r.get(2)? })
            })
            .optional()
            .map_err(backend)
    }

    fn query_ids(&self, plan: &store::soql::plan::Plan) -> StoreResult<Vec<u64>> {
        crate::query::query_ids(self.conn, self.marker, plan)
    }

    fn query_rows(
        &self,
        plan: &store::soql::plan::Plan,
        seqs: &[u64],
    ) -> StoreResult<Vec<store::QueryRow>> {
        crate::query::query_rows(self.conn, self.marker, plan, seqs)
    }

    fn query_count(&self, plan: &store::soql::plan::Plan) -> StoreResult<u64> {
        crate::query::query_count(self.conn, self.marker, plan)
    }

    fn query_aggregate(&self, plan: &store::soql::plan::Plan) -> StoreResult<Vec<store::QueryRow>> {
        crate::query::query_aggregate(self.conn, self.marker, plan)
    }

    fn exists_many(&self, obj: &ObjectDef, seqs: &[u64]) -> StoreResult<Vec<Option<bool>>> {
        crate::bulk::exists_many(self.conn, obj, seqs)
    }

    fn find_keys(
        &self,
        obj: &ObjectDef,
        field: usize,
        values: &[Value],
        limit: usize,
    ) -> StoreResult<Vec<Vec<u64>>> {
        crate::bulk::find_keys(self.conn, self.marker, obj, field, values, limit)
    }

    fn bulk_job(&self, seq: u64) -> StoreResult<Option<BulkJobRow>> {
        crate::bulk::bulk_job(self.conn, seq)
    }

    fn bulk_jobs(&self, filter: &BulkJobFilter) -> StoreResult<Vec<BulkJobRow>> {
        crate::bulk::bulk_jobs(self.conn, filter)
    }

    fn bulk_chunks(&self, job: u64, from: u64, limit: usize) -> StoreResult<Vec<BulkChunkRow>> {
        crate::bulk::bulk_chunks(self.conn, job, from, limit)
    }

    fn bulk_files(&self) -> StoreResult<Vec<String>> {
        crate::bulk::bulk_files(self.conn)
    }
    fn events_after(
        &self,
        select: EventSelect<'_>,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<EventRow>> {
        crate::events::after(self.conn, select, after, limit)
    }
    fn all_events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<EventRow>> {
        crate::events::all_after(self.conn, after, limit)
    }
    fn event_bounds(&self) -> StoreResult<EventBounds> {
        crate::events::bounds(self.conn)
    }
    fn change_event_members(&self) -> StoreResult<Vec<(u64, String)>> {
        crate::events::change_event_members(self.conn)
    }
    fn delivery(&self, seq: u64) -> StoreResult<Option<store::DeliveryRow>> {
        crate::delivery::get(self.conn, seq)
    }
    fn deliveries(&self, filter: &store::DeliveryFilter) -> StoreResult<Vec<store::DeliveryRow>> {
        crate::delivery::list(self.conn, filter)
    }
    fn delivery_endpoints(&self) -> StoreResult<Vec<(String, i64)>> {
        crate::delivery::endpoints(self.conn)
    }
    fn due_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> StoreResult<Vec<store::DeliveryRow>> {
        crate::delivery::due(self.conn, endpoint, now_ms, after, limit)
    }
    fn delivery_counts(&self) -> StoreResult<Vec<store::DeliveryCounts>> {
        crate::delivery::counts(self.conn)
    }
    fn expired_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<store::DeliveryRow>> {
        crate::delivery::expired(self.conn, now_ms, limit)
    }
    fn flow_faults(&self, before: u64, limit: usize) -> StoreResult<Vec<store::FaultRow>> {
        crate::delivery::faults(self.conn, before, limit)
    }
    fn sync_runs(&self, job: &str, limit: usize) -> StoreResult<Vec<store::SyncRunRow>> {
        crate::sync::runs(self.conn, job, limit)
    }
    fn sync_errors(&self, job: &str, limit: usize) -> StoreResult<Vec<store::SyncErrorRow>> {
        crate::sync::errors(self.conn, job, limit)
    }
    fn sync_state(&self, job: &str, keys: &[String]) -> StoreResult<Vec<(String, String)>> {
        crate::sync::state(self.conn, job, keys)
    }
    fn sync_state_keys(&self, job: &str) -> StoreResult<Vec<String>> {
        crate::sync::state_keys(self.conn, job)
    }
}

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRow> {
    let urls: String = r.get(5)?;
    Ok(AppRow {
        client_id: r.get(0)?,
        name: r.get(1)?,
        secret_hash: r.get(2)?,
        cert_pem: r.get(3)?,
        run_as_user: r.get::<_, Option<i64>>(4)?.map(|x| x as u64),
        callback_urls: serde_json::from_str(&urls).unwrap_or_default(),
        scopes: r.get(6)?,
    })
}

/// A write view: the writer's connection, the working schema, and the sequence counters.
pub(crate) struct WConn<'a> {
    pub read: Conn<'a>,
    pub seqs: &'a mut HashMap<String, u64>,
    pub schema_changed: bool,
    /// Open nested savepoints: the schema and change flag to restore on rollback.
    pub savepoints: Vec<(Arc<Schema>, bool)>,
    /// The statement of the last `insert_full`: table name, field count, statement (bulk rows
    /// of one chunk reuse it).
    pub insert_stmt: Option<(String, usize, rusqlite::CachedStatement<'a>)>,
    /// The statement of the last `update_columns`: table name, columns, statement.
    pub update_stmt: Option<(String, Vec<usize>, rusqlite::CachedStatement<'a>)>,
    /// The statement of the last `insert_full_many`: table name, field count, rows, statement.
    pub insert_many_stmt: Option<(String, usize, usize, rusqlite::CachedStatement<'a>)>,
    /// Whether an event was appended (the writer then announces the new tip after commit).
    pub events_appended: bool,
    /// Events to append once the job ended, kept or not ([`WriteTx::append_event_detached`]).
    pub detached: Vec<NewEvent>,
    /// Whether notifications were queued or made due (the writer then wakes the engine).
    pub deliveries_changed: bool,
    /// The job's change-event state ([`WriteTx::tx_changes`]).
    pub changes: store::TxChanges,
    /// What the service attached to the store.
    pub context: Option<&'a crate::Context>,
}

impl ReadTx for WConn<'_> {
    fn schema(&self) -> &Arc<Schema> {
        self.read.schema()
    }
    fn marker(&self) -> OrgMarker {
        self.read.marker
    }
    fn get(
        &self,
        obj: &ObjectDef,
        seq: u64,
        fields: &[usize],
    ) -> StoreResult<Option<StoredRecord>> {
        self.read.get(obj, seq, fields)
    }
    fn find_by_field(
        &self,
        obj: &ObjectDef,
        field: usize,
        value: &Value,
        include_deleted: bool,
        limit: usize,
    ) -> StoreResult<Vec<u64>> {
        self.read
            .find_by_field(obj, field, value, include_deleted, limit)
    }
    fn exists(&self, obj: &ObjectDef, seq: u64) -> StoreResult<Option<bool>> {
        self.read.exists(obj, seq)
    }
    fn children_of(
        &self,
        obj: &ObjectDef,
        ref_field: usize,
        parent_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<u64>> {
        self.read.children_of(obj, ref_field, parent_seq, limit)
    }
    fn updated_between(
        &self,
        obj: &ObjectDef,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<u64>> {
        self.read.updated_between(obj, start_ms, end_ms, limit)
    }
    fn deleted_between(
        &self,
        obj: &ObjectDef,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, i64)>> {
        self.read.deleted_between(obj, start_ms, end_ms, limit)
    }
    fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        self.read.setting(key)
    }
    fn password_hash(&self, user_seq: u64) -> StoreResult<Option<String>> {
        self.read.password_hash(user_seq)
    }
    fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRow>> {
        self.read.session(token_hash)
    }
    fn app(&self, client_id: &str) -> StoreResult<Option<AppRow>> {
        self.read.app(client_id)
    }
    fn apps(&self) -> StoreResult<Vec<AppRow>> {
        self.read.apps()
    }
    fn refresh_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<RefreshRow>> {
        self.read.refresh_token(token_hash)
    }
    fn query_ids(&self, plan: &store::soql::plan::Plan) -> StoreResult<Vec<u64>> {
        self.read.query_ids(plan)
    }
    fn query_rows(
        &self,
        plan: &store::soql::plan::Plan,
        seqs: &[u64],
    ) -> StoreResult<Vec<store::QueryRow>> {
        self.read.query_rows(plan, seqs)
    }
    fn query_count(&self, plan: &store::soql::plan::Plan) -> StoreResult<u64> {
        self.read.query_count(plan)
    }
    fn query_aggregate(&self, plan: &store::soql::plan::Plan) -> StoreResult<Vec<store::QueryRow>> {
        self.read.query_aggregate(plan)
    }
    fn exists_many(&self, obj: &ObjectDef, seqs: &[u64]) -> StoreResult<Vec<Option<bool>>> {
        self.read.exists_many(obj, seqs)
    }
    fn find_keys(
        &self,
        obj: &ObjectDef,
        field: usize,
        values: &[Value],
        limit: usize,
    ) -> StoreResult<Vec<Vec<u64>>> {
        self.read.find_keys(obj, field, values, limit)
    }
    fn bulk_job(&self, seq: u64) -> StoreResult<Option<BulkJobRow>> {
        self.read.bulk_job(seq)
    }
    fn bulk_jobs(&self, filter: &BulkJobFilter) -> StoreResult<Vec<BulkJobRow>> {
        self.read.bulk_jobs(filter)
    }
    fn bulk_chunks(&self, job: u64, from: u64, limit: usize) -> StoreResult<Vec<BulkChunkRow>> {
        self.read.bulk_chunks(job, from, limit)
    }
    fn bulk_files(&self) -> StoreResult<Vec<String>> {
        self.read.bulk_files()
    }
    fn events_after(
        &self,
        select: EventSelect<'_>,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<EventRow>> {
        self.read.events_after(select, after, limit)
    }
    fn all_events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<EventRow>> {
        self.read.all_events_after(after, limit)
    }
    fn event_bounds(&self) -> StoreResult<EventBounds> {
        self.read.event_bounds()
    }
    fn change_event_members(&self) -> StoreResult<Vec<(u64, String)>> {
        self.read.change_event_members()
    }
    fn delivery(&self, seq: u64) -> StoreResult<Option<store::DeliveryRow>> {
        self.read.delivery(seq)
    }
    fn deliveries(&self, filter: &store::DeliveryFilter) -> StoreResult<Vec<store::DeliveryRow>> {
        self.read.deliveries(filter)
    }
    fn delivery_endpoints(&self) -> StoreResult<Vec<(String, i64)>> {
        self.read.delivery_endpoints()
    }
    fn due_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> StoreResult<Vec<store::DeliveryRow>> {
        self.read.due_deliveries(endpoint, now_ms, after, limit)
    }
    fn delivery_counts(&self) -> StoreResult<Vec<store::DeliveryCounts>> {
        self.read.delivery_counts()
    }
    fn expired_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<store::DeliveryRow>> {
        self.read.expired_deliveries(now_ms, limit)
    }
    fn flow_faults(&self, before: u64, limit: usize) -> StoreResult<Vec<store::FaultRow>> {
        self.read.flow_faults(before, limit)
    }
    fn sync_runs(&self, job: &str, limit: usize) -> StoreResult<Vec<store::SyncRunRow>> {
        self.read.sync_runs(job, limit)
    }
    fn sync_errors(&self, job: &str, limit: usize) -> StoreResult<Vec<store::SyncErrorRow>> {
        self.read.sync_errors(job, limit)
    }
    fn sync_state(&self, job: &str, keys: &[String]) -> StoreResult<Vec<(String, String)>> {
        self.read.sync_state(job, keys)
    }
    fn sync_state_keys(&self, job: &str) -> StoreResult<Vec<String>> {
        self.read.sync_state_keys(job)
    }
}

impl WConn<'_> {
    fn conn(&self) -> &Connection {
        self.read.conn
    }

    fn exec_all(&self, stmts: &[String]) -> StoreResult<()> {
        for s in stmts {
            self.conn().execute(s, []).map_err(backend)?;
        }
        Ok(())
    }
}

impl<'a> WriteTx for WConn<'a> {
    fn insert(&mut self, obj: &ObjectDef, values: &[(usize, Value)]) -> StoreResult<u64> {
        let id_pos = obj.field_index("Id");
        let explicit_id = values
            .iter()
            .find(|(i, _)| Some(*i) == id_pos)
            .map(|(_, v)| v.clone());
        let seq = match explicit_id {
            Some(Value::Id(id)) => id
                .seq_in(self.read.marker)
                .ok_or_else(|| StoreError::Backend("foreign id".into()))?,
            _ => self.next_seq(obj)?,
        };
        let mut cols = vec!["\"Id\"".to_string()];
        let mut vals: Vec<rusqlite::types::Value> =
            vec![rusqlite::types::Value::Integer(seq as i64)];
        for (i, v) in values {
            if Some(*i) == id_pos {
                continue;
            }
            let f = &obj.fields[*i];
            cols.push(ident(f.column()));
            vals.push(self.read.encode(f, v)?);
        }
        let marks: Vec<String> = (1..=vals.len()).map(|k| format!("?{k}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            ident(&obj.table()),
            cols.join(", "),
            marks.join(", ")
        );
        self.conn()
            .prepare_cached(&sql)
            .map_err(backend)?
            .execute(params_from_iter(vals.iter()))
            .map_err(backend)?;
        let counter = self.seqs.entry(obj.table()).or_insert(0);
        *counter = (*counter).max(seq);
        Ok(seq)
    }

    fn update(&mut self, obj: &ObjectDef, seq: u64, values: &[(usize, Value)]) -> StoreResult<()> {
        if values.is_empty() {
            return Ok(());
        }
        let mut sets = Vec::with_capacity(values.len());
        let mut vals: Vec<rusqlite::types::Value> = Vec::with_capacity(values.len() + 1);
        for (k, (i, v)) in values.iter().enumerate() {
            let f = &obj.fields[*i];
            sets.push(format!("{} = ?{}", ident(f.column()), k + 1));
            vals.push(self.read.encode(f, v)?);
        }
        vals.push(rusqlite::types::Value::Integer(seq as i64));
        let sql = format!(
            "UPDATE {} SET {} WHERE \"Id\" = ?{}",
            ident(&obj.table()),
            sets.join(", "),
            vals.len()
        );
        self.conn()
            .prepare_cached(&sql)
            .map_err(backend)?
            .execute(params_from_iter(vals.iter()))
            .map_err(backend)?;
        Ok(())
    }

    fn hard_delete(&mut self, obj: &ObjectDef, seq: u64) -> StoreResult<()> {
        let sql = format!("DELETE FROM {} WHERE \"Id\" = ?1", ident(&obj.table()));
        self.conn()
            .prepare_cached(&sql)
            .map_err(backend)?
            .execute(params![seq as i64])
            .map_err(backend)?;
        Ok(())
    }

    fn next_seq(&mut self, obj: &ObjectDef) -> StoreResult<u64> {
        let table = obj.table();
        let current = match self.seqs.get(&table) {
            Some(&n) => n,
            None => {
                let n: Option<i64> = self
                    .conn()
                    .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = ?1")
                    .map_err(backend)?
                    .query_row(params![table], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                n.unwrap_or(0) as u64
            }
        };
        let next = current + 1;
        self.seqs.insert(table, next);
        Ok(next)
    }

    fn reserve_seqs(&mut self, obj: &ObjectDef, n: u64) -> StoreResult<u64> {
        let first = self.next_seq(obj)?;
        if n > 1 {
            if let Some(c) = self.seqs.get_mut(obj.table().as_str()) {
                *c = first + n - 1;
            }
        }
        Ok(first)
    }

    fn create_object(&mut self, def: &ObjectDef, spec_json: &str) -> StoreResult<()> {
        // Platform events are published, never stored as records: no table.
        if def.kind != model::ObjectKind::PlatformEvent {
            self.exec_all(&create_object_sql(def))?;
        }
        self.conn()
            .execute(
                "INSERT INTO meta_objects (name, prefix, spec, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![
                    def.name,
                    def.key_prefix.as_str(),
                    spec_json,
                    model::value::now_millis()
                ],
            )
            .map_err(backend)?;
        let mut defs = self.read.schema.to_defs();
        defs.push(def.clone());
        self.read.schema = Arc::new(
            Schema::build(defs, self.read.schema.generation + 1)
                .map_err(|e| StoreError::Backend(e.message))?,
        );
        self.schema_changed = true;
        Ok(())
    }

    fn add_field(&mut self, object: &str, def: &FieldDef, spec_json: &str) -> StoreResult<()> {
        let mut defs = self.read.schema.to_defs();
        let o = defs
            .iter_mut()
            .find(|o| o.name.eq_ignore_ascii_case(object))
            .ok_or_else(|| StoreError::Backend(format!("no object {object}")))?;
        o.push_field(def.clone())
            .map_err(|e| StoreError::Backend(e.message))?;
        let canonical = o.name.clone();
        let schema = Schema::build(defs, self.read.schema.generation + 1)
            .map_err(|e| StoreError::Backend(e.message))?;
        let built = schema.object(&canonical).expect("just added").clone();
        let field = built.field(&def.name).expect("just added").clone();
        if built.kind != model::ObjectKind::PlatformEvent {
            self.exec_all(&add_field_sql(&built, &field))?;
        }
        self.conn()
            .execute(
                "INSERT INTO meta_fields (object, name, spec, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![canonical, def.name, spec_json, model::value::now_millis()],
            )
            .map_err(backend)?;
        self.read.schema = Arc::new(schema);
        self.schema_changed = true;
        Ok(())
    }

    fn savepoint(&mut self) -> StoreResult<()> {
        let name = format!("sp{}", self.savepoints.len());
        self.conn()
            .prepare_cached(&format!("SAVEPOINT {name}"))
            .and_then(|mut s| s.execute([]))
            .map_err(backend)?;
        self.savepoints
            .push((self.read.schema.clone(), self.schema_changed));
        Ok(())
    }

    fn release_savepoint(&mut self) -> StoreResult<()> {
        let Some(_) = self.savepoints.pop() else {
            return Err(StoreError::Backend("no savepoint to release".into()));
        };
        let name = format!("sp{}", self.savepoints.len());
        self.conn()
            .prepare_cached(&format!("RELEASE {name}"))
            .and_then(|mut s| s.execute([]))
            .map_err(backend)?;
        Ok(())
    }

    fn rollback_savepoint(&mut self) -> StoreResult<()> {
        let Some((schema, changed)) = self.savepoints.pop() else {
            return Err(StoreError::Backend("no savepoint to roll back".into()));
        };
        let name = format!("sp{}", self.savepoints.len());
        for sql in [format!("ROLLBACK TO {name}"), format!("RELEASE {name}")] {
            self.conn()
                .prepare_cached(&sql)
                .and_then(|mut s| s.execute([]))
                .map_err(backend)?;
        }
        self.read.schema = schema;
        self.schema_changed = changed;
        Ok(())
    }

    fn set_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        self.conn()
            .prepare_cached("INSERT INTO meta_kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .map_err(backend)?
            .execute(params![key, value])
            .map_err(backend)?;
        Ok(())
    }

    fn set_password_hash(&mut self, user_seq: u64, hash: &str) -> StoreResult<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO auth_passwords (user_seq, hash, changed_ms) VALUES (?1, ?2, ?3) ON CONFLICT(user_seq) DO UPDATE SET hash = excluded.hash, changed_ms = excluded.changed_ms",
            )
            .map_err(backend)?
            .execute(params![user_seq as i64, hash, model::value::now_millis()])
            .map_err(backend)?;
        Ok(())
    }

    fn insert_session(&mut self, token_hash: &[u8; 32], row: &SessionRow) -> StoreResult<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO auth_sessions (token_hash, user_seq, client_id, created_ms, last_used_ms, timeout_secs, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(backend)?
            .execute(params![
                hash_blob(token_hash),
                row.user_seq as i64,
                row.client_id,
                row.created_ms,
                row.last_used_ms,
                row.timeout_secs,
                row.origin.as_ref().map(|o| &o[..])
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn touch_session(&mut self, token_hash: &[u8; 32], last_used_ms: i64) -> StoreResult<()> {
        self.conn()
            .prepare_cached("UPDATE auth_sessions SET last_used_ms = max(last_used_ms, ?2) WHERE token_hash = ?1")
            .map_err(backend)?
            .execute(params![hash_blob(token_hash), last_used_ms])
            .map_err(backend)?;
        Ok(())
    }

    fn delete_session(&mut self, token_hash: &[u8; 32]) -> StoreResult<bool> {
        let n = self
            .conn()
            .prepare_cached("DELETE FROM auth_sessions WHERE token_hash = ?1")
            .map_err(backend)?
            .execute(params![hash_blob(token_hash)])
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn delete_user_sessions(&mut self, user_seq: u64) -> StoreResult<()> {
        self.conn()
            .execute(
                "DELETE FROM auth_sessions WHERE user_seq = ?1",
                params![user_seq as i64],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete_sessions_from(&mut self, origin: &[u8; 32]) -> StoreResult<Vec<[u8; 32]>> {
        let mut stmt = self
            .conn()
            .prepare_cached("DELETE FROM auth_sessions WHERE origin = ?1 RETURNING token_hash")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![hash_blob(origin)], |r| r.get::<_, Vec<u8>>(0))
            .map_err(backend)?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(h) = <[u8; 32]>::try_from(r.map_err(backend)?.as_slice()) {
                out.push(h);
            }
        }
        Ok(out)
    }

    fn delete_user_refresh_tokens(&mut self, user_seq: u64) -> StoreResult<()> {
        self.conn()
            .execute(
                "DELETE FROM auth_refresh_tokens WHERE user_seq = ?1",
                params![user_seq as i64],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn prune_sessions(&mut self, now_ms: i64) -> StoreResult<usize> {
        self.conn()
            .execute(
                "DELETE FROM auth_sessions WHERE last_used_ms + timeout_secs * 1000 < ?1",
                params![now_ms],
            )
            .map_err(backend)
    }

    fn upsert_app(&mut self, app: &AppRow) -> StoreResult<()> {
        let urls = serde_json::to_string(&app.callback_urls).unwrap_or_else(|_| "[]".into());
        self.conn()
            .execute(
                "INSERT INTO auth_apps (client_id, name, secret_hash, cert_pem, run_as_user, callback_urls, scopes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(client_id) DO UPDATE SET name = excluded.name, secret_hash = excluded.secret_hash, cert_pem = excluded.cert_pem,
                   run_as_user = excluded.run_as_user, callback_urls = excluded.callback_urls, scopes = excluded.scopes",
                params![app.client_id, app.name, app.secret_hash, app.cert_pem, app.run_as_user.map(|x| x as i64), urls, app.scopes],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn insert_refresh_token(&mut self, token_hash: &[u8; 32], row: &RefreshRow) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO auth_refresh_tokens (token_hash, user_seq, client_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![hash_blob(token_hash), row.user_seq as i64, row.client_id, row.created_ms],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete_refresh_token(&mut self, token_hash: &[u8; 32]) -> StoreResult<bool> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM auth_refresh_tokens WHERE token_hash = ?1",
                params![hash_blob(token_hash)],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn insert_full(&mut self, obj: &ObjectDef, values: &[Value]) -> StoreResult<()> {
        if values.len() != obj.fields.len() {
            return Err(StoreError::Backend(format!(
                "insert_full of {} with {} values for {} fields",
                obj.name,
                values.len(),
                obj.fields.len()
            )));
        }
        let conn: &'a Connection = self.read.conn;
        let marker = self.read.marker;
        let same = matches!(&self.insert_stmt, Some((t, n, _))
            if *n == obj.fields.len() && t.len() == obj.name.len() + 5 && t.ends_with(obj.name.as_str()));
        if !same {
            let stmt = conn
                .prepare_cached(&crate::bulk::insert_full_sql(obj))
                .map_err(backend)?;
            self.insert_stmt = Some((obj.table(), obj.fields.len(), stmt));
        }
        let Some((table, _, stmt)) = self.insert_stmt.as_mut() else {
            return Err(StoreError::Backend("no insert statement".into()));
        };
        let mut seq = None;
        for (k, (f, v)) in obj.fields.iter().zip(values).enumerate() {
            crate::bulk::bind(stmt, k + 1, f, v, marker)?;
            if f.ty == model::FieldType::Id {
                if let Value::Id(id) = v {
                    seq = id.seq_in(marker);
                }
            }
        }
        let Some(seq) = seq else {
            return Err(StoreError::Backend(format!(
                "insert_full of {} without an id",
                obj.name
            )));
        };
        crate::bulk::run(stmt)?;
        match self.seqs.get_mut(table.as_str()) {
            Some(c) => *c = (*c).max(seq),
            None => {
                self.seqs.insert(table.clone(), seq);
            }
        }
        Ok(())
    }

    fn insert_full_many(&mut self, obj: &ObjectDef, rows: &[&[Value]]) -> StoreResult<()> {
        let n = obj.fields.len();
        if rows.is_empty() {
            return Ok(());
        }
        if rows.iter().any(|r| r.len() != n) {
            return Err(StoreError::Backend(format!(
                "insert_full_many of {} with rows of the wrong width",
                obj.name
            )));
        }
        let marker = self.read.marker;
        let conn: &'a Connection = self.read.conn;
        let same = matches!(&self.insert_many_stmt, Some((t, f, r, _))
            if *f == n && *r == rows.len() && t.len() == obj.name.len() + 5 && t.ends_with(obj.name.as_str()));
        if !same {
            let stmt = conn
                .prepare_cached(&crate::bulk::insert_many_sql(obj, rows.len()))
                .map_err(backend)?;
            self.insert_many_stmt = Some((obj.table(), n, rows.len(), stmt));
        }
        let Some((_, _, _, stmt)) = self.insert_many_stmt.as_mut() else {
            return Err(StoreError::Backend("no insert statement".into()));
        };
        let id_pos = obj.fields.iter().position(|f| f.ty == model::FieldType::Id);
        let mut max_seq = 0;
        for (r, values) in rows.iter().enumerate() {
            for (k, (f, v)) in obj.fields.iter().zip(values.iter()).enumerate() {
                crate::bulk::bind(stmt, r * n + k + 1, f, v, marker)?;
            }
            if let Some(Value::Id(id)) = id_pos.map(|i| &values[i]) {
                max_seq = max_seq.max(id.seq_in(marker).unwrap_or(0));
            }
        }
        crate::bulk::run(stmt)?;
        let table = obj.table();
        let c = self.seqs.entry(table).or_insert(0);
        *c = (*c).max(max_seq);
        Ok(())
    }

    fn update_columns(
        &mut self,
        obj: &ObjectDef,
        seq: u64,
        columns: &[usize],
        values: &[Value],
    ) -> StoreResult<()> {
        if columns.is_empty() {
            return Ok(());
        }
        let conn: &'a Connection = self.read.conn;
        let marker = self.read.marker;
        let same = matches!(&self.update_stmt, Some((t, c, _))
            if c.as_slice() == columns && t.len() == obj.name.len() + 5 && t.ends_with(obj.name.as_str()));
        if !same {
            let stmt = conn
                .prepare_cached(&crate::bulk::update_columns_sql(obj, columns))
                .map_err(backend)?;
            self.update_stmt = Some((obj.table(), columns.to_vec(), stmt));
        }
        let Some((_, _, stmt)) = self.update_stmt.as_mut() else {
            return Err(StoreError::Backend("no update statement".into()));
        };
        for (k, (&i, v)) in columns.iter().zip(values).enumerate() {
            crate::bulk::bind(stmt, k + 1, &obj.fields[i], v, marker)?;
        }
        stmt.raw_bind_parameter(columns.len() + 1, seq as i64)
            .map_err(backend)?;
        crate::bulk::run(stmt)
    }

    fn insert_bulk_job(&mut self, row: &BulkJobRow) -> StoreResult<u64> {
        crate::bulk::insert_bulk_job(self.conn(), row)
    }

    fn update_bulk_job(&mut self, row: &BulkJobRow) -> StoreResult<()> {
        crate::bulk::update_bulk_job(self.conn(), row)
    }

    fn delete_bulk_job(&mut self, seq: u64) -> StoreResult<bool> {
        crate::bulk::delete_bulk_job(self.conn(), seq)
    }

    fn insert_bulk_chunk(&mut self, row: &BulkChunkRow) -> StoreResult<()> {
        crate::bulk::insert_bulk_chunk(self.conn(), row)
    }

    fn delete_bulk_chunks(&mut self, job: u64) -> StoreResult<()> {
        crate::bulk::delete_bulk_chunks(self.conn(), job)
    }

    fn append_event(&mut self, event: &NewEvent) -> StoreResult<u64> {
        let id = crate::events::append(self.conn(), event)?;
        self.events_appended = true;
        Ok(id)
    }

    fn append_event_detached(&mut self, event: NewEvent) {
        self.detached.push(event);
    }

    fn prune_events(&mut self, before_ms: i64) -> StoreResult<u64> {
        crate::events::prune(self.conn(), before_ms)
    }

    fn enqueue_delivery(&mut self, d: &store::NewDelivery) -> StoreResult<u64> {
        let seq = crate::delivery::enqueue(self.conn(), d)?;
        self.deliveries_changed = true;
        Ok(seq)
    }

    fn settle_deliveries(
        &mut self,
        outcomes: &[(u64, store::Settle)],
        now_ms: i64,
    ) -> StoreResult<()> {
        crate::delivery::settle(self.conn(), outcomes, now_ms)
    }

    fn requeue_deliveries(
        &mut self,
        seqs: &[u64],
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<u64> {
        let n = crate::delivery::requeue(self.conn(), seqs, now_ms, expires_ms)?;
        self.deliveries_changed |= n > 0;
        Ok(n)
    }

    fn add_flow_fault(&mut self, fault: &store::FaultRow, keep: u64) -> StoreResult<u64> {
        crate::delivery::add_fault(self.conn(), fault, keep)
    }

    fn purge_deliveries(&mut self, seqs: &[u64]) -> StoreResult<u64> {
        crate::delivery::purge(self.conn(), seqs)
    }

    fn put_sync_run(&mut self, run: &store::SyncRunRow) -> StoreResult<u64> {
        crate::sync::put_run(self.conn(), run)
    }

    fn end_running_sync_runs(&mut self, now_ms: i64) -> StoreResult<u64> {
        crate::sync::end_running(self.conn(), now_ms)
    }

    fn put_sync_error(&mut self, e: &store::SyncErrorRow) -> StoreResult<()> {
        crate::sync::put_error(self.conn(), e)
    }

    fn clear_sync_errors(&mut self, job: &str, keys: &[String]) -> StoreResult<u64> {
        crate::sync::clear_errors(self.conn(), job, keys)
    }

    fn put_sync_state(&mut self, job: &str, key: &str, image: &str) -> StoreResult<()> {
        crate::sync::put_state(self.conn(), job, key, image)
    }

    fn forget_sync_state(&mut self, job: &str, key: &str) -> StoreResult<()> {
        crate::sync::forget_state(self.conn(), job, key)
    }

    fn clear_sync_state(&mut self, job: &str) -> StoreResult<u64> {
        crate::sync::clear_state(self.conn(), job)
    }

    fn rewrite_event(&mut self, replay_id: u64, payload: Option<&str>) -> StoreResult<()> {
        crate::events::rewrite(self.conn(), replay_id, payload)
    }

    fn tx_changes(&mut self) -> &mut store::TxChanges {
        &mut self.changes
    }

    fn context(&self) -> Option<std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        self.context.cloned()
    }

    fn set_change_events(&mut self, object: &str, selected: bool) -> StoreResult<u64> {
        let mut defs = self.read.schema.to_defs();
        let o = defs
            .iter_mut()
            .find(|o| o.name.eq_ignore_ascii_case(object))
            .ok_or_else(|| StoreError::Backend(format!("no object {object}")))?;
        let canonical = o.name.clone();
        let seq = crate::events::set_change_events(self.conn(), &canonical, selected)?;
        if o.change_events != selected {
            o.change_events = selected;
            self.read.schema = Arc::new(
                Schema::build(defs, self.read.schema.generation + 1)
                    .map_err(|e| StoreError::Backend(e.message))?,
            );
            self.schema_changed = true;
        }
        Ok(seq)
    }
}

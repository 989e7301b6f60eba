//! Storage traits: the read and write transactions the service layer runs its use cases in.
//!
//! A backend offers two things: short read transactions on a pooled connection ([`Store::read`]) and
//! write jobs run by a single writer that group-commits ([`Store::write`]). A write job runs inside
//! a savepoint: if it fails, only its own changes roll back and the other jobs of the same batch
//! still commit. Its result reaches the caller only after the batch's commit is durable.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use model::{ApiError, ObjectDef, OrgMarker, Schema, Value};

mod bulk;
mod delivery;
mod events;
mod query;
mod sync;
mod types;
pub use bulk::{BulkChunkRow, BulkJobFilter, BulkJobRow};
pub use delivery::{
    DeliveryCounts, DeliveryFilter, DeliveryRow, DeliveryState, FaultRow, NewDelivery, Settle,
};
pub use events::{EventBounds, EventKind, EventRow, EventSelect, EventTip, NewEvent, TxChanges};
pub use query::{Cell, QueryRow};
/// The SOQL crate, re-exported so backends can name [`soql::plan::Plan`] without depending on it
/// directly.
pub use soql;
pub use sync::{SyncErrorRow, SyncRunRow};
pub use types::*;

/// Failures of the storage layer itself (as opposed to business rules).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused a value; carries the field name when known.
    #[error("duplicate value for {0}")]
    Unique(String),
    /// The database failed (I/O, corruption, a bug in generated SQL).
    #[error("storage failure: {0}")]
    Backend(String),
    /// The writer is gone (shutting down).
    #[error("the store is shut down")]
    Closed,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unique(f) => ApiError::with_fields(
                model::ErrorCode::DuplicateValue,
                format!("duplicate value found: {f} duplicates value on another record"),
                vec![f],
            ),
            StoreError::Closed => ApiError::new(
                model::ErrorCode::ServerUnavailable,
                "The server is shutting down.",
            ),
            // Backends log the detail before it reaches here; callers see a generic error.
            StoreError::Backend(_) => ApiError::internal(),
        }
    }
}

/// Result of storage operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What a read transaction can see and do.
pub trait ReadTx {
    /// The schema this transaction works with.
    fn schema(&self) -> &Arc<Schema>;
    /// The org marker stamped into ids.
    fn marker(&self) -> OrgMarker;
    /// Reads the given fields (positions in `obj.fields`) of row `seq`, deleted rows included.
    fn get(&self, obj: &ObjectDef, seq: u64, fields: &[usize])
        -> StoreResult<Option<StoredRecord>>;
    /// Row numbers whose `field` equals `value` (case-insensitively for text unless the field is
    /// case-sensitive), live rows only unless `include_deleted`; at most `limit`.
    fn find_by_field(
        &self,
        obj: &ObjectDef,
        field: usize,
        value: &Value,
        include_deleted: bool,
        limit: usize,
    ) -> StoreResult<Vec<u64>>;
    /// Whether row `seq` exists, and if so whether it is deleted.
    fn exists(&self, obj: &ObjectDef, seq: u64) -> StoreResult<Option<bool>>;
    /// Rows with `ref_field` pointing at `parent_seq` (live rows only), at most `limit`.
    fn children_of(
        &self,
        obj: &ObjectDef,
        ref_field: usize,
        parent_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<u64>>;
    /// Live rows whose SystemModstamp lies in `[start, end)`, ascending.
    fn updated_between(
        &self,
        obj: &ObjectDef,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<u64>>;
    /// Deleted rows whose deletion time lies in `[start, end)`, with that time.
    fn deleted_between(
        &self,
        obj: &ObjectDef,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, i64)>>;
    /// Reads a setting.
    fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// The password hash of a user.
    fn password_hash(&self, user_seq: u64) -> StoreResult<Option<String>>;
    /// A session by the hash of its token.
    fn session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRow>>;
    /// A connected app by client id.
    fn app(&self, client_id: &str) -> StoreResult<Option<AppRow>>;
    /// All connected apps.
    fn apps(&self) -> StoreResult<Vec<AppRow>>;
    /// A refresh token by the hash of its value.
    fn refresh_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<RefreshRow>>;

    /// Root row sequences matching a records plan, in result order, after OFFSET/LIMIT.
    fn query_ids(&self, plan: &soql::plan::Plan) -> StoreResult<Vec<u64>>;
    /// The rows for the given root sequences (a page of [`ReadTx::query_ids`]), in that order,
    /// with parent columns joined and child subqueries evaluated (one statement per child
    /// relationship per page). Sequences that no longer exist are skipped.
    fn query_rows(&self, plan: &soql::plan::Plan, seqs: &[u64]) -> StoreResult<Vec<QueryRow>>;
    /// `SELECT COUNT() ...`: the number of matching rows (groups, with GROUP BY), after
    /// OFFSET/LIMIT.
    fn query_count(&self, plan: &soql::plan::Plan) -> StoreResult<u64>;
    /// Aggregate queries: one row per group (`seq` 0), cells in SELECT order.
    fn query_aggregate(&self, plan: &soql::plan::Plan) -> StoreResult<Vec<QueryRow>>;

    /// For each of `seqs`, whether the row exists and, if so, whether it is deleted (as
    /// [`ReadTx::exists`], for many rows at once).
    fn exists_many(&self, obj: &ObjectDef, seqs: &[u64]) -> StoreResult<Vec<Option<bool>>> {
        seqs.iter().map(|&s| self.exists(obj, s)).collect()
    }
    /// For each of `values`, the live rows whose `field` equals it (as
    /// [`ReadTx::find_by_field`] without deleted rows, for many values at once), at most
    /// `limit` each, ascending.
    fn find_keys(
        &self,
        obj: &ObjectDef,
        field: usize,
        values: &[Value],
        limit: usize,
    ) -> StoreResult<Vec<Vec<u64>>> {
        values
            .iter()
            .map(|v| self.find_by_field(obj, field, v, false, limit))
            .collect()
    }
    /// A Bulk API job.
    fn bulk_job(&self, seq: u64) -> StoreResult<Option<BulkJobRow>>;
    /// Bulk API jobs matching `filter`, in sequence order.
    fn bulk_jobs(&self, filter: &BulkJobFilter) -> StoreResult<Vec<BulkJobRow>>;
    /// Chunks `from..` of a job, in order, at most `limit`.
    fn bulk_chunks(&self, job: u64, from: u64, limit: usize) -> StoreResult<Vec<BulkChunkRow>>;
    /// Every file name the bulk jobs refer to (uploads and results).
    fn bulk_files(&self) -> StoreResult<Vec<String>>;
    /// Up to `limit` events of `select` with replay ids above `after`, in replay id order.
    fn events_after(
        &self,
        select: EventSelect<'_>,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<EventRow>>;
    /// Up to `limit` events of any stream with replay ids above `after`, in replay id order.
    fn all_events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<EventRow>>;
    /// Which replay ids the log can still serve.
    fn event_bounds(&self) -> StoreResult<EventBounds>;
    /// The objects selected for change events, with their selection numbers.
    fn change_event_members(&self) -> StoreResult<Vec<(u64, String)>>;
    /// A notification of the delivery queue.
    fn delivery(&self, seq: u64) -> StoreResult<Option<DeliveryRow>>;
    /// Notifications matching `filter`, in sequence order.
    fn deliveries(&self, filter: &DeliveryFilter) -> StoreResult<Vec<DeliveryRow>>;
    /// The endpoints that have queued notifications, each with its earliest due time (ms).
    fn delivery_endpoints(&self) -> StoreResult<Vec<(String, i64)>>;
    /// Up to `limit` queued notifications of `endpoint` due at `now_ms`, in due order
    /// (`next_ms`, then sequence), starting after position `after` (`(next_ms, seq)` of the last
    /// one read before) or, with `None`, at the earliest.
    fn due_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// Up to `limit` queued notifications whose expiry passed at `now_ms`, earliest first.
    fn expired_deliveries(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<DeliveryRow>>;
    /// Flow faults older than sequence `before` (0: the newest), newest first, at most `limit`.
    fn flow_faults(&self, before: u64, limit: usize) -> StoreResult<Vec<FaultRow>>;
    /// Counts of the queue per endpoint (reads every row: for operators, not hot paths).
    fn delivery_counts(&self) -> StoreResult<Vec<DeliveryCounts>>;
    /// The newest runs of sync job `job`, newest first.
    fn sync_runs(&self, job: &str, limit: usize) -> StoreResult<Vec<SyncRunRow>>;
    /// The rows sync job `job`'s target refused, newest first.
    fn sync_errors(&self, job: &str, limit: usize) -> StoreResult<Vec<SyncErrorRow>>;
    /// What bidirectional sync job `job` last left both sides agreeing on, for those of `keys`
    /// it has synchronized: `(key, image)` with the image as JSON text.
    fn sync_state(&self, job: &str, keys: &[String]) -> StoreResult<Vec<(String, String)>>;
    /// Every key bidirectional job `job` has an agreed image of.
    fn sync_state_keys(&self, job: &str) -> StoreResult<Vec<String>>;
}

/// What a write transaction can do in addition.
pub trait WriteTx: ReadTx {
    /// Inserts a row with the given field values (positions in `obj.fields`); returns its sequence.
    fn insert(&mut self, obj: &ObjectDef, values: &[(usize, Value)]) -> StoreResult<u64>;
    /// Updates fields of row `seq`.
    fn update(&mut self, obj: &ObjectDef, seq: u64, values: &[(usize, Value)]) -> StoreResult<()>;
    /// Removes a row for good.
    fn hard_delete(&mut self, obj: &ObjectDef, seq: u64) -> StoreResult<()>;
    /// Reserves and returns the sequence the next insert into `obj` will get (for auto-numbers and
    /// ids needed before the row is written).
    fn next_seq(&mut self, obj: &ObjectDef) -> StoreResult<u64>;
    /// Reserves `n` consecutive sequences for inserts into `obj` and returns the first (as `n`
    /// calls of [`WriteTx::next_seq`]; bulk loads reserve a block at a time).
    fn reserve_seqs(&mut self, obj: &ObjectDef, n: u64) -> StoreResult<u64> {
        let first = self.next_seq(obj)?;
        for _ in 1..n {
            self.next_seq(obj)?;
        }
        Ok(first)
    }
    /// Creates a custom object's table and records its spec; the new schema becomes visible to
    /// this and later jobs, and to readers after commit.
    fn create_object(&mut self, def: &ObjectDef, spec_json: &str) -> StoreResult<()>;
    /// Adds a custom field's column (and index) and records its spec.
    fn add_field(
        &mut self,
        object: &str,
        def: &model::FieldDef,
        spec_json: &str,
    ) -> StoreResult<()>;
    /// Writes a setting.
    fn set_setting(&mut self, key: &str, value: &str) -> StoreResult<()>;
    /// Opens a nested savepoint inside the job (Composite and collections without allOrNone use
    /// one per subrequest or record). Pair it with [`WriteTx::release_savepoint`] or
    /// [`WriteTx::rollback_savepoint`].
    fn savepoint(&mut self) -> StoreResult<()>;
    /// Keeps what was done since the innermost open savepoint.
    fn release_savepoint(&mut self) -> StoreResult<()>;
    /// Undoes what was done since the innermost open savepoint, and closes it.
    fn rollback_savepoint(&mut self) -> StoreResult<()>;
    /// Sets a user's password hash.
    fn set_password_hash(&mut self, user_seq: u64, hash: &str) -> StoreResult<()>;
    /// Stores a new session.
    fn insert_session(&mut self, token_hash: &[u8; 32], row: &SessionRow) -> StoreResult<()>;
    /// Records that a session was used (extends its inactivity timeout).
    fn touch_session(&mut self, token_hash: &[u8; 32], last_used_ms: i64) -> StoreResult<()>;
    /// Removes a session; returns whether it existed.
    fn delete_session(&mut self, token_hash: &[u8; 32]) -> StoreResult<bool>;
    /// Removes every session of a user (password change, deactivation).
    fn delete_user_sessions(&mut self, user_seq: u64) -> StoreResult<()>;
    /// Removes the sessions issued from (or with) a refresh token; returns their token hashes.
    fn delete_sessions_from(&mut self, origin: &[u8; 32]) -> StoreResult<Vec<[u8; 32]>>;
    /// Removes every refresh token of a user (deactivation).
    fn delete_user_refresh_tokens(&mut self, user_seq: u64) -> StoreResult<()>;
    /// Removes sessions idle since before `cutoff_ms`; returns how many.
    fn prune_sessions(&mut self, now_ms: i64) -> StoreResult<usize>;
    /// Creates or replaces a connected app.
    fn upsert_app(&mut self, app: &AppRow) -> StoreResult<()>;
    /// Stores a refresh token.
    fn insert_refresh_token(&mut self, token_hash: &[u8; 32], row: &RefreshRow) -> StoreResult<()>;
    /// Revokes a refresh token; returns whether it existed.
    fn delete_refresh_token(&mut self, token_hash: &[u8; 32]) -> StoreResult<bool>;

    /// Inserts one row given every field's value: `values[i]` is the value of `obj.fields[i]`
    /// (the `Id` included, as the row's id). The bulk fast path: backends keep the statement
    /// prepared across calls with the same object. A unique index refusing a value answers
    /// [`StoreError::Unique`] and changes nothing.
    fn insert_full(&mut self, obj: &ObjectDef, values: &[Value]) -> StoreResult<()> {
        let pairs: Vec<(usize, Value)> = values.iter().cloned().enumerate().collect();
        self.insert(obj, &pairs).map(|_| ())
    }
    /// Inserts several rows as [`WriteTx::insert_full`] does, all or nothing: if any row is
    /// refused (a unique index), none is written and the error is returned. Backends write
    /// them with one statement.
    fn insert_full_many(&mut self, obj: &ObjectDef, rows: &[&[Value]]) -> StoreResult<()> {
        self.savepoint()?;
        for r in rows {
            if let Err(e) = self.insert_full(obj, r) {
                self.rollback_savepoint()?;
                return Err(e);
            }
        }
        self.release_savepoint()
    }
    /// Updates fields `columns` of row `seq` to `values` (same order); as [`WriteTx::update`],
    /// with the statement kept prepared across calls with the same columns.
    fn update_columns(
        &mut self,
        obj: &ObjectDef,
        seq: u64,
        columns: &[usize],
        values: &[Value],
    ) -> StoreResult<()> {
        let pairs: Vec<(usize, Value)> = columns
            .iter()
            .copied()
            .zip(values.iter().cloned())
            .collect();
        self.update(obj, seq, &pairs)
    }
    /// Stores a new Bulk API job; returns its sequence.
    fn insert_bulk_job(&mut self, row: &BulkJobRow) -> StoreResult<u64>;
    /// Writes every changeable column of a job (state, files, cursor, counters, error).
    fn update_bulk_job(&mut self, row: &BulkJobRow) -> StoreResult<()>;
    /// Removes a job and its chunks; returns whether it existed.
    fn delete_bulk_job(&mut self, seq: u64) -> StoreResult<bool>;
    /// Stores a processed chunk.
    fn insert_bulk_chunk(&mut self, row: &BulkChunkRow) -> StoreResult<()>;
    /// Removes a job's chunks (a query job that starts over).
    fn delete_bulk_chunks(&mut self, job: u64) -> StoreResult<()>;
    /// Appends an event; it commits (or rolls back) with the job. Returns its replay id.
    fn append_event(&mut self, event: &NewEvent) -> StoreResult<u64>;
    /// Appends an event after the job ends, whether the job keeps its changes or not (platform
    /// events published immediately); it commits with the job's batch.
    fn append_event_detached(&mut self, event: NewEvent);
    /// Removes events created before `before_ms`; returns how many.
    fn prune_events(&mut self, before_ms: i64) -> StoreResult<u64>;
    /// Replaces the payload of an event this job appended, or removes the event (`None`).
    fn rewrite_event(&mut self, replay_id: u64, payload: Option<&str>) -> StoreResult<()>;
    /// This job's change-event state.
    fn tx_changes(&mut self) -> &mut TxChanges;
    /// What the service attached to the store with [`Store::set_context`].
    fn context(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>>;
    /// Queues a notification; it commits (or rolls back) with the job. Returns its sequence.
    fn enqueue_delivery(&mut self, d: &NewDelivery) -> StoreResult<u64>;
    /// Records how attempts ended (at `now_ms`). Notifications no longer queued (purged,
    /// settled elsewhere) are left alone.
    fn settle_deliveries(&mut self, outcomes: &[(u64, Settle)], now_ms: i64) -> StoreResult<()>;
    /// Makes notifications due at `now_ms` again: dead ones return to the queue with
    /// `expires_ms` as their new expiry; queued ones only move their next attempt (and keep
    /// the later of the two expiries). Returns how many changed.
    fn requeue_deliveries(
        &mut self,
        seqs: &[u64],
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<u64>;
    /// Records a flow fault, keeping the newest `keep`; returns its sequence.
    fn add_flow_fault(&mut self, fault: &FaultRow, keep: u64) -> StoreResult<u64>;
    /// Removes notifications for good; returns how many existed.
    fn purge_deliveries(&mut self, seqs: &[u64]) -> StoreResult<u64>;
    /// Records a sync run (`id` 0: a new one, whose id is returned) or updates it.
    fn put_sync_run(&mut self, run: &SyncRunRow) -> StoreResult<u64>;
    /// Marks every run still `running` as `interrupted` (at start, after a stop).
    fn end_running_sync_runs(&mut self, now_ms: i64) -> StoreResult<u64>;
    /// Records (or replaces) the error of a source row.
    fn put_sync_error(&mut self, e: &SyncErrorRow) -> StoreResult<()>;
    /// Removes the errors of the source rows `keys` (written since); returns how many.
    fn clear_sync_errors(&mut self, job: &str, keys: &[String]) -> StoreResult<u64>;
    /// Records what both sides of bidirectional job `job` now agree on for `key`.
    fn put_sync_state(&mut self, job: &str, key: &str, image: &str) -> StoreResult<()>;
    /// Forgets the agreed image of `key` (deleted on both sides).
    fn forget_sync_state(&mut self, job: &str, key: &str) -> StoreResult<()>;
    /// Forgets every agreed image of job `job` (a reset); returns how many there were.
    fn clear_sync_state(&mut self, job: &str) -> StoreResult<u64>;
    /// Selects (or deselects) `object` for change events. Returns the selection's number (its
    /// `PlatformEventChannelMember` id), also when it already was selected.
    fn set_change_events(&mut self, object: &str, selected: bool) -> StoreResult<u64>;
}

/// Boxed future returned by [`Store::write`].
pub type WriteFuture<R> = Pin<Box<dyn Future<Output = Result<R, ApiError>> + Send>>;

/// A write job: runs in the writer, inside a savepoint.
pub type WriteJob = Box<dyn FnOnce(&mut dyn WriteTx) -> JobDone + Send>;

/// What a finished job hands back to the writer: whether to keep its changes, and what to do once
/// the commit has (or has not) happened.
pub struct JobDone {
    /// Keep the job's changes (`false` rolls back to the job's savepoint).
    pub keep: bool,
    /// Called after the batch commit with its outcome.
    pub after_commit: Box<dyn FnOnce(StoreResult<()>) + Send>,
}

/// A storage backend.
pub trait Store: Send + Sync + 'static {
    /// The current (committed) schema.
    fn schema(&self) -> Arc<Schema>;
    /// The org marker stamped into ids.
    fn marker(&self) -> OrgMarker;
    /// Runs `f` on a pooled read connection. Blocks briefly; keep reads short.
    fn read_dyn(&self, f: &mut dyn FnMut(&dyn ReadTx));
    /// Queues a write job; fails only when the writer is gone.
    fn submit(&self, job: WriteJob) -> Pin<Box<dyn Future<Output = StoreResult<()>> + Send + '_>>;
    /// Like [`Store::submit`], for a job as small as one record's save: a store may run it at
    /// once on the calling thread when its writer is idle (it still commits and syncs like any
    /// other job). Big jobs go through [`Store::submit`], so they never hold up the caller.
    fn submit_small(
        &self,
        job: WriteJob,
    ) -> Pin<Box<dyn Future<Output = StoreResult<()>> + Send + '_>> {
        self.submit(job)
    }
    /// The last committed event (and the events of the commit that made it the last); changes
    /// after every commit that added events.
    fn event_tip(&self) -> tokio::sync::watch::Receiver<EventTip>;
    /// Moves after every commit that queued notifications ([`WriteTx::enqueue_delivery`]) or
    /// made some due again: the delivery engine waits on it.
    fn delivery_wake(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Attaches the service's state that write jobs may need ([`WriteTx::context`]).
    fn set_context(&self, ctx: Arc<dyn std::any::Any + Send + Sync>);
    /// The directory holding the store's files, when it has one (Bulk API uploads go beside).
    fn data_dir(&self) -> Option<PathBuf> {
        None
    }
}

impl dyn Store {
    /// Runs a read transaction and returns its result.
    pub fn read<R>(&self, f: impl FnOnce(&dyn ReadTx) -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.read_dyn(&mut |tx| {
            if let Some(f) = f.take() {
                out = Some(f(tx));
            }
        });
        out.expect("read_dyn runs the closure exactly once")
    }

    /// Runs a write job in the group-committing writer and waits until its batch is durable.
    /// An `Err` from the job rolls back the job's changes only.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn WriteTx) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let (job, rx) = write_job(f);
        self.submit(job).await.map_err(ApiError::from)?;
        rx.await.map_err(|_| ApiError::from(StoreError::Closed))?
    }

    /// [`write`](Self::write) for a job as small as one record's save ([`Store::submit_small`]):
    /// when the writer is idle it runs at once on this thread.
    pub async fn write_small<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn WriteTx) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let (job, rx) = write_job(f);
        self.submit_small(job).await.map_err(ApiError::from)?;
        rx.await.map_err(|_| ApiError::from(StoreError::Closed))?
    }
}

/// A write job running `f`, and where its result arrives once the commit is durable.
#[allow(clippy::type_complexity)]
fn write_job<R: Send + 'static>(
    f: impl FnOnce(&mut dyn WriteTx) -> Result<R, ApiError> + Send + 'static,
) -> (
    WriteJob,
    tokio::sync::oneshot::Receiver<Result<R, ApiError>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<R, ApiError>>();
    let job: WriteJob = Box::new(move |wtx: &mut dyn WriteTx| {
        let result = f(wtx);
        let keep = result.is_ok();
        JobDone {
            keep,
            after_commit: Box::new(move |commit: StoreResult<()>| {
                let out = match commit {
                    Ok(()) => result,
                    Err(e) => Err(e.into()),
                };
                let _ = tx.send(out);
            }),
        }
    });
    (job, rx)
}

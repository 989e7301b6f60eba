//! Bulk API 1.0 (`/services/async/NN.N`): jobs that take batches of up to 10,000 records in
//! CSV, JSON or XML, and query jobs whose batches are SOQL.
//!
//! Jobs and batches are rows of the store's bulk job table (kinds `Classic` and
//! `ClassicBatch`; a batch names its job as its parent), and each batch's request body is a file
//! in the bulk directory, synced before the batch is acknowledged. The runner processes queued
//! batches in the background — one at a time per job in `Serial` mode — each in one write
//! transaction that also stores the batch's results and marks it Completed. A batch
//! interrupted by a crash is still InProgress at the next start and runs again; since nothing of
//! it was committed, every record is written and reported exactly once.
//!
//! Errors carry Bulk 1.0's exception codes (`InvalidJob`, `InvalidBatch`, `InvalidJobState`,
//! …) in [`BulkError::code`]; the HTTP layer renders them as `<error>` documents.

use std::path::PathBuf;
use std::sync::Arc;

use model::value::now_millis;
use model::{ApiError, Id, KeyPrefix};
use store::{BulkChunkRow, BulkJobFilter, BulkJobRow};
use tokio::sync::mpsc;

use super::classic_data::{self, Format, MAX_BATCH_RECORDS};
use super::ingest::{IngestPlan, Operation, RowOutcome};
use super::{query, random_name, results, sync_dir, Bulk, BulkError, JOB_PREFIX};
use crate::auth::Principal;

/// Key prefix of batch ids (`751…`).
pub const BATCH_PREFIX: KeyPrefix = KeyPrefix(*b"751");
/// Key prefix of query result ids (`752…`).
pub const RESULT_PREFIX: KeyPrefix = KeyPrefix(*b"752");
/// Largest batch body accepted, in bytes (Salesforce: 10,000,000).
pub const MAX_BATCH_BYTES: usize = 10_000_000;

const KIND_JOB: &str = "Classic";
const KIND_BATCH: &str = "ClassicBatch";

/// Batch states.
pub mod state {
    /// Waiting to be processed.
    pub const QUEUED: &str = "Queued";
    /// Being processed.
    pub const IN_PROGRESS: &str = "InProgress";
    /// Processed (some records may have failed).
    pub const COMPLETED: &str = "Completed";
    /// Could not be processed at all (see the state message).
    pub const FAILED: &str = "Failed";
    /// Not processed because the job was aborted.
    pub const NOT_PROCESSED: &str = "NotProcessed";
}

/// What `POST /job` asks for.
#[derive(Debug, Clone, Default)]
pub struct JobSpec {
    /// `insert`, `update`, `upsert`, `delete`, `hardDelete`, `query`, `queryAll`.
    pub operation: Option<String>,
    /// Object API name.
    pub object: Option<String>,
    /// Upsert key.
    pub external_id: Option<String>,
    /// `Parallel`, `Serial` (or `0`, `1`).
    pub concurrency: Option<String>,
    /// `CSV`, `JSON`, `XML`.
    pub content_type: Option<String>,
    /// Assignment rule id.
    pub assignment_rule: Option<String>,
}

/// Batch counts of a job by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Queued.
    pub queued: u64,
    /// InProgress.
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// NotProcessed.
    pub not_processed: u64,
}

impl BatchCounts {
    /// Every batch.
    pub fn total(&self) -> u64 {
        self.queued + self.in_progress + self.completed + self.failed + self.not_processed
    }
}

/// A job as `jobInfo` shows it.
#[derive(Debug, Clone)]
pub struct ClassicJob {
    /// `750…`.
    pub id: Id,
    /// Operation.
    pub operation: String,
    /// Object.
    pub object: String,
    /// Creator.
    pub created_by: Id,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last change (ms).
    pub modstamp_ms: i64,
    /// `Open`, `Closed`, `Aborted`, `Failed`.
    pub state: String,
    /// Upsert key.
    pub external_id: Option<String>,
    /// `Parallel` or `Serial`.
    pub concurrency: String,
    /// Data format.
    pub format: Format,
    /// API version (40 for 40.0).
    pub api_version: u32,
    /// Assignment rule id.
    pub assignment_rule: Option<String>,
    /// Batches by state.
    pub batches: BatchCounts,
    /// Records processed by its batches.
    pub processed: u64,
    /// Records failed.
    pub failed: u64,
    /// Milliseconds of processing.
    pub processing_ms: i64,
}

/// A batch as `batchInfo` shows it.
#[derive(Debug, Clone)]
pub struct ClassicBatch {
    /// `751…`.
    pub id: Id,
    /// Its job.
    pub job_id: Id,
    /// See [`state`].
    pub state: String,
    /// Why it failed.
    pub state_message: Option<String>,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last change (ms).
    pub modstamp_ms: i64,
    /// Records processed.
    pub processed: u64,
    /// Records failed.
    pub failed: u64,
    /// Milliseconds of processing.
    pub processing_ms: i64,
}

/// A batch's results.
#[derive(Debug, Clone)]
pub enum BatchResults {
    /// One outcome per record of an ingest batch, in request order.
    Ingest(Vec<RowOutcome>),
    /// The result ids of a query batch.
    Query(Vec<Id>),
}

fn invalid_job(m: impl Into<String>) -> BulkError {
    BulkError::new(400, "InvalidJob", m)
}

fn invalid_batch(m: impl Into<String>) -> BulkError {
    BulkError::new(400, "InvalidBatch", m)
}

fn invalid_state(m: impl Into<String>) -> BulkError {
    BulkError::new(400, "InvalidJobState", m)
}

fn internal() -> BulkError {
    BulkError::new(
        500,
        "Unknown",
        "An internal error occurred; see the server log",
    )
}

/// The concurrency mode spelled as Salesforce shows it (`0`/`1` are simple-salesforce's).
fn concurrency(s: Option<&str>) -> Result<&'static str, BulkError> {
    match s.map(str::trim) {
        None | Some("") | Some("Parallel") | Some("0") => Ok("Parallel"),
        Some("Serial") | Some("1") => Ok("Serial"),
        Some(other) => Err(invalid_job(format!(
            "Invalid concurrency mode: {other}. Valid values are Parallel and Serial"
        ))),
    }
}

fn extra_concurrency(j: &BulkJobRow) -> String {
    j.extra
        .as_deref()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .and_then(|v| v["concurrencyMode"].as_str().map(str::to_string))
        .unwrap_or_else(|| "Parallel".into())
}

impl Bulk {
    fn batch_id(&self, seq: u64) -> Id {
        Id::new(BATCH_PREFIX, self.org.store().marker(), seq)
    }

    fn seq_of(&self, prefix: KeyPrefix, id: &str) -> Option<u64> {
        let id = Id::parse(id.trim()).ok()?;
        (id.prefix() == prefix)
            .then(|| id.seq_in(self.org.store().marker()))
            .flatten()
    }

    fn classic_view(&self, j: &BulkJobRow, batches: &[BulkJobRow]) -> ClassicJob {
        let mut counts = BatchCounts::default();
        let (mut processed, mut failed, mut ms) = (0, 0, 0);
        for b in batches {
            match b.state.as_str() {
                state::QUEUED => counts.queued += 1,
                state::IN_PROGRESS => counts.in_progress += 1,
                state::COMPLETED => counts.completed += 1,
                state::FAILED => counts.failed += 1,
                _ => counts.not_processed += 1,
            }
            processed += b.processed;
            failed += b.failed;
            ms += b.processing_ms;
        }
        ClassicJob {
            id: self.job_id(j.seq),
            operation: j.operation.clone(),
            object: j.object.clone(),
            created_by: Id::new(KeyPrefix(*b"005"), self.org.store().marker(), j.created_by),
            created_ms: j.created_ms,
            modstamp_ms: j.modstamp_ms,
            state: j.state.clone(),
            external_id: j.external_id.clone(),
            concurrency: extra_concurrency(j),
            format: Format::parse(&j.content_type).unwrap_or(Format::Xml),
            api_version: j.api_version,
            assignment_rule: j.assignment_rule.clone(),
            batches: counts,
            processed,
            failed,
            processing_ms: ms,
        }
    }

    fn batch_view(&self, b: &BulkJobRow) -> ClassicBatch {
        ClassicBatch {
            id: self.batch_id(b.seq),
            job_id: self.job_id(b.parent.unwrap_or_default()),
            state: b.state.clone(),
            state_message: b.error_message.clone(),
            created_ms: b.created_ms,
            modstamp_ms: b.modstamp_ms,
            processed: b.processed,
            failed: b.failed,
            processing_ms: b.processing_ms,
        }
    }

    fn batches_of(&self, job: u64) -> Result<Vec<BulkJobRow>, BulkError> {
        let filter = BulkJobFilter {
            kinds: vec![KIND_BATCH.into()],
            parent: Some(job),
            limit: usize::MAX,
            ..Default::default()
        };
        Ok(self.org.store().read(|tx| tx.bulk_jobs(&filter))?)
    }

    /// A Bulk 1.0 job the caller may see.
    fn classic_load(&self, p: &Principal, id: &str) -> Result<BulkJobRow, BulkError> {
        let unknown = || invalid_job(format!("Invalid job id: {id}"));
        let seq = self.seq_of(JOB_PREFIX, id).ok_or_else(unknown)?;
        let j = self
            .org
            .store()
            .read(|tx| tx.bulk_job(seq))?
            .filter(|j| j.kind == KIND_JOB && Self::may_see(p, j))
            .ok_or_else(unknown)?;
        Ok(j)
    }

    fn classic_load_batch(
        &self,
        p: &Principal,
        job_id: &str,
        batch_id: &str,
    ) -> Result<(BulkJobRow, BulkJobRow), BulkError> {
        let j = self.classic_load(p, job_id)?;
        let unknown = || invalid_batch(format!("Invalid batch id: {batch_id}"));
        let seq = self.seq_of(BATCH_PREFIX, batch_id).ok_or_else(unknown)?;
        let b = self
            .org
            .store()
            .read(|tx| tx.bulk_job(seq))?
            .filter(|b| b.kind == KIND_BATCH && b.parent == Some(j.seq))
            .ok_or_else(unknown)?;
        Ok((j, b))
    }

    /// The format of a job (for choosing how to answer about it).
    pub fn classic_format(&self, p: &Principal, job_id: &str) -> Option<Format> {
        let j = self.classic_load(p, job_id).ok()?;
        Format::parse(&j.content_type)
    }

    /// `POST /job`: a new Open job.
    pub async fn classic_create(
        &self,
        p: &Principal,
        version: u32,
        spec: &JobSpec,
        default_format: Format,
    ) -> Result<ClassicJob, BulkError> {
        let operation = spec.operation.as_deref().map(str::trim).unwrap_or("");
        let (op, is_query) = match operation {
            "query" | "queryAll" => (None, true),
            other => match Operation::parse(other) {
                // Operation names are case-sensitive in Bulk 1.0.
                Some(op) if op.as_str() == other => (Some(op), false),
                _ => {
                    return Err(BulkError::new(
                        400,
                        "InvalidJob",
                        format!("Invalid operation: {operation}. Valid values are insert, update, upsert, delete, hardDelete, query and queryAll"),
                    ))
                }
            },
        };
        let object = spec.object.as_deref().map(str::trim).unwrap_or("");
        if object.is_empty() {
            return Err(invalid_job("The object of the job is required"));
        }
        let o = self
            .org
            .visible_object(p, object)
            .ok()
            .filter(|o| o.kind != model::ObjectKind::PlatformEvent)
            .ok_or_else(|| invalid_job(format!("Unable to find object: {object}")))?;
        if op == Some(Operation::HardDelete) && !p.perms.modify_all_data {
            return Err(BulkError::new(
                400,
                "FeatureNotEnabled",
                "hardDelete requires the Bulk API Hard Delete permission",
            ));
        }
        let external_id = match (op, spec.external_id.as_deref().map(str::trim)) {
            (Some(Operation::Upsert), None | Some("")) => {
                return Err(invalid_job(format!(
                    "External ID was blank for {}. An External ID must be specified for upsert.",
                    o.name
                )))
            }
            (Some(Operation::Upsert), Some(e)) => {
                let f = o
                    .field(e)
                    .filter(|f| f.id_lookup() && p.perms.field_readable(&o, f))
                    .ok_or_else(|| {
                        invalid_job(format!(
                            "Field {e} does not exist or is not an External ID field on {}",
                            o.name
                        ))
                    })?;
                Some(f.name.clone())
            }
            _ => None,
        };
        let format = match spec.content_type.as_deref().map(str::trim) {
            None | Some("") => default_format,
            Some(t) if t.starts_with("ZIP_") => {
                return Err(BulkError::new(
                    400,
                    "FeatureNotEnabled",
                    format!("Content type {t} is not supported; send CSV, JSON or XML batches"),
                ))
            }
            Some(t) => Format::parse(t).ok_or_else(|| {
                invalid_job(format!(
                    "Invalid content type: {t}. Valid values are CSV, JSON and XML"
                ))
            })?,
        };
        let mode = concurrency(spec.concurrency.as_deref())?;
        let now = now_millis();
        let mut row = BulkJobRow {
            kind: KIND_JOB.into(),
            object: o.name.clone(),
            operation: if is_query {
                operation.to_string()
            } else {
                op.map(|o| o.as_str().to_string()).unwrap_or_default()
            },
            external_id,
            state: "Open".into(),
            created_by: p.user_seq,
            created_ms: now,
            modstamp_ms: now,
            api_version: version,
            column_delimiter: "COMMA".into(),
            line_ending: "LF".into(),
            content_type: format.as_str().into(),
            assignment_rule: spec.assignment_rule.clone().filter(|a| !a.is_empty()),
            extra: Some(serde_json::json!({ "concurrencyMode": mode }).to_string()),
            ..Default::default()
        };
        row.seq = self.insert_job(&row).await?;
        Ok(self.classic_view(&row, &[]))
    }

    /// `GET /job/{id}`.
    pub fn classic_job(&self, p: &Principal, id: &str) -> Result<ClassicJob, BulkError> {
        let j = self.classic_load(p, id)?;
        let batches = self.batches_of(j.seq)?;
        Ok(self.classic_view(&j, &batches))
    }

    /// `POST /job/{id}` with a state: `Closed` (no more batches) or `Aborted` (queued batches
    /// are not processed).
    pub async fn classic_set_state(
        &self,
        p: &Principal,
        id: &str,
        wanted: &str,
    ) -> Result<ClassicJob, BulkError> {
        let j = self.classic_load(p, id)?;
        let wanted = match wanted.trim() {
            "Closed" => "Closed",
            "Aborted" => "Aborted",
            other => {
                return Err(invalid_state(format!(
                    "Invalid state: {other}. A job can be set to Closed or Aborted"
                )))
            }
        };
        let seq = j.seq;
        let job_id = self.job_id(seq).to_18();
        self.org
            .store()
            .write(move |tx| {
                let Some(mut j) = tx.bulk_job(seq)? else {
                    return Ok(Err(invalid_job(format!("Invalid job id: {job_id}"))));
                };
                let allowed = match wanted {
                    "Closed" => j.state == "Open" || j.state == "Closed",
                    _ => j.state == "Open" || j.state == "Closed" || j.state == "Aborted",
                };
                if !allowed {
                    return Ok(Err(invalid_state(format!(
                        "Job {job_id} is {}; it cannot be set to {wanted}",
                        j.state
                    ))));
                }
                if j.state == wanted {
                    return Ok(Ok(()));
                }
                let now = now_millis();
                j.state = wanted.into();
                j.modstamp_ms = now;
                tx.update_bulk_job(&j)?;
                if wanted == "Aborted" {
                    let filter = BulkJobFilter {
                        kinds: vec![KIND_BATCH.into()],
                        parent: Some(seq),
                        states: vec![state::QUEUED.into()],
                        limit: usize::MAX,
                        ..Default::default()
                    };
                    for mut b in tx.bulk_jobs(&filter)? {
                        b.state = state::NOT_PROCESSED.into();
                        b.modstamp_ms = now;
                        tx.update_bulk_job(&b)?;
                    }
                }
                Ok(Ok(()))
            })
            .await??;
        self.classic_job(p, id)
    }

    /// `POST /job/{id}/batch`: stores the batch's data (synced) and queues it.
    pub async fn classic_add_batch(
        &self,
        p: &Principal,
        job_id: &str,
        data: Vec<u8>,
    ) -> Result<ClassicBatch, BulkError> {
        let j = self.classic_load(p, job_id)?;
        if j.state != "Open" {
            return Err(invalid_state(format!(
                "Job {} is {}; batches can only be added to an Open job",
                self.job_id(j.seq).to_18(),
                j.state
            )));
        }
        if data.len() > MAX_BATCH_BYTES {
            return Err(BulkError::new(
                400,
                "ClientInputError",
                format!("Exceeded max size limit of {MAX_BATCH_BYTES} bytes for a batch"),
            ));
        }
        if data.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid_batch("The batch is empty"));
        }
        let name = random_name(j.seq, "batch");
        if !self.write_synced(&name, data).await {
            return Err(internal());
        }
        let now = now_millis();
        let row = BulkJobRow {
            kind: KIND_BATCH.into(),
            object: j.object.clone(),
            operation: j.operation.clone(),
            external_id: j.external_id.clone(),
            state: state::QUEUED.into(),
            created_by: j.created_by,
            created_ms: now,
            modstamp_ms: now,
            api_version: j.api_version,
            column_delimiter: j.column_delimiter.clone(),
            line_ending: j.line_ending.clone(),
            content_type: j.content_type.clone(),
            assignment_rule: j.assignment_rule.clone(),
            upload: Some(name.clone()),
            extra: j.extra.clone(),
            parent: Some(j.seq),
            ..Default::default()
        };
        let job_seq = j.seq;
        let r = row.clone();
        let inserted = self
            .org
            .store()
            .write(move |tx| {
                // The job may have been closed since it was read.
                match tx.bulk_job(job_seq)? {
                    Some(j) if j.state == "Open" => Ok(Ok(tx.insert_bulk_job(&r)?)),
                    Some(j) => Ok(Err(j.state)),
                    None => Ok(Err("deleted".to_string())),
                }
            })
            .await;
        let seq = match inserted {
            Ok(Ok(seq)) => seq,
            Ok(Err(state)) => {
                let _ = std::fs::remove_file(self.dir.join(&name));
                return Err(invalid_state(format!(
                    "Job {} is {state}; batches can only be added to an Open job",
                    self.job_id(job_seq).to_18()
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_file(self.dir.join(&name));
                return Err(e.into());
            }
        };
        self.kick();
        let mut row = row;
        row.seq = seq;
        Ok(self.batch_view(&row))
    }

    /// `GET /job/{id}/batch/{batch}`.
    pub fn classic_batch(
        &self,
        p: &Principal,
        job_id: &str,
        batch_id: &str,
    ) -> Result<ClassicBatch, BulkError> {
        let (_, b) = self.classic_load_batch(p, job_id, batch_id)?;
        Ok(self.batch_view(&b))
    }

    /// `GET /job/{id}/batch`.
    pub fn classic_batches(
        &self,
        p: &Principal,
        job_id: &str,
    ) -> Result<Vec<ClassicBatch>, BulkError> {
        let j = self.classic_load(p, job_id)?;
        Ok(self
            .batches_of(j.seq)?
            .iter()
            .map(|b| self.batch_view(b))
            .collect())
    }

    /// `GET /job/{id}/batch/{batch}/request`: the batch's data as it was sent.
    pub async fn classic_request(
        &self,
        p: &Principal,
        job_id: &str,
        batch_id: &str,
    ) -> Result<(Format, Vec<u8>), BulkError> {
        let (j, b) = self.classic_load_batch(p, job_id, batch_id)?;
        let format = Format::parse(&j.content_type).unwrap_or(Format::Xml);
        let path = self.dir.join(b.upload.unwrap_or_default());
        let data = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|_| internal())?
            .map_err(|_| internal())?;
        Ok((format, data))
    }

    /// `GET /job/{id}/batch/{batch}/result`: per-record outcomes, or a query's result ids.
    pub fn classic_results(
        &self,
        p: &Principal,
        job_id: &str,
        batch_id: &str,
    ) -> Result<(Format, BatchResults), BulkError> {
        let (j, b) = self.classic_load_batch(p, job_id, batch_id)?;
        let format = Format::parse(&j.content_type).unwrap_or(Format::Xml);
        let done = b.state == state::COMPLETED;
        let query = j.operation == "query" || j.operation == "queryAll";
        if !done && (b.state != state::FAILED || query) {
            return Err(invalid_batch(format!(
                "Batch {} is {}; results are available once it is Completed",
                self.batch_id(b.seq).to_18(),
                b.state
            )));
        }
        if query {
            let ids = if done {
                vec![Id::new(RESULT_PREFIX, self.org.store().marker(), b.seq)]
            } else {
                vec![]
            };
            return Ok((format, BatchResults::Query(ids)));
        }
        let prefix = self
            .org
            .schema()
            .object(&j.object)
            .map(|o| o.key_prefix)
            .unwrap_or(KeyPrefix(*b"000"));
        let marker = self.org.store().marker();
        let chunks = self.org.store().read(|tx| tx.bulk_chunks(b.seq, 0, 1))?;
        let outcomes = match chunks.first() {
            Some(c) => results::decode(&c.results, prefix, marker).ok_or_else(internal)?,
            None => vec![],
        };
        Ok((format, BatchResults::Ingest(outcomes)))
    }

    /// `GET /job/{id}/batch/{batch}/result/{result}`: a query batch's records, streamed.
    pub fn classic_query_result(
        &self,
        p: &Principal,
        job_id: &str,
        batch_id: &str,
        result_id: &str,
    ) -> Result<(Format, mpsc::Receiver<Vec<u8>>), BulkError> {
        let (j, b) = self.classic_load_batch(p, job_id, batch_id)?;
        let format = Format::parse(&j.content_type).unwrap_or(Format::Xml);
        let unknown = || invalid_batch(format!("Invalid result id: {result_id}"));
        if self.seq_of(RESULT_PREFIX, result_id) != Some(b.seq) {
            return Err(unknown());
        }
        let name = b.result_file.clone().ok_or_else(unknown)?;
        let path = self.dir.join(name);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let Ok(mut f) = std::fs::File::open(&path) else {
                return;
            };
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(buf).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok((format, rx))
    }

    /// Queued and interrupted batches, oldest first, with their jobs' concurrency modes.
    pub(super) fn runnable_batches(&self) -> Vec<(BulkJobRow, bool)> {
        let filter = BulkJobFilter {
            kinds: vec![KIND_BATCH.into()],
            states: vec![state::QUEUED.into(), state::IN_PROGRESS.into()],
            limit: 256,
            ..Default::default()
        };
        match self.org.store().read(|tx| tx.bulk_jobs(&filter)) {
            Ok(rows) => rows
                .into_iter()
                .map(|b| {
                    let serial = extra_concurrency(&b) == "Serial";
                    (b, serial)
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list bulk batches");
                vec![]
            }
        }
    }

    /// Moves a batch to InProgress (NotProcessed if its job was aborted); the batch if it is
    /// (now) InProgress.
    async fn start_batch(&self, seq: u64) -> Option<BulkJobRow> {
        self.org
            .store()
            .write(move |tx| {
                let Some(mut b) = tx.bulk_job(seq)? else {
                    return Ok(None);
                };
                let aborted = match b.parent {
                    Some(j) => tx.bulk_job(j)?.is_none_or(|j| j.state == "Aborted"),
                    None => true,
                };
                if b.state == state::QUEUED {
                    b.state = if aborted {
                        state::NOT_PROCESSED
                    } else {
                        state::IN_PROGRESS
                    }
                    .into();
                    b.modstamp_ms = now_millis();
                    tx.update_bulk_job(&b)?;
                }
                Ok((b.state == state::IN_PROGRESS).then_some(b))
            })
            .await
            .ok()
            .flatten()
    }

    /// Ends an InProgress batch: `f` changes the row (and may write more) in the same
    /// transaction. Does nothing if the batch is no longer InProgress.
    async fn finish_batch<F>(&self, seq: u64, f: F) -> Result<bool, ApiError>
    where
        F: FnOnce(&mut dyn store::WriteTx, &mut BulkJobRow) -> Result<(), ApiError>
            + Send
            + 'static,
    {
        self.org
            .store()
            .write(move |tx| {
                let Some(mut b) = tx.bulk_job(seq)? else {
                    return Ok(false);
                };
                if b.state != state::IN_PROGRESS {
                    return Ok(false);
                }
                f(tx, &mut b)?;
                b.modstamp_ms = now_millis();
                tx.update_bulk_job(&b)?;
                Ok(true)
            })
            .await
    }

    async fn fail_batch(&self, seq: u64, message: String) {
        tracing::info!(batch = seq, %message, "bulk batch failed");
        let _ = self
            .finish_batch(seq, move |_, b| {
                b.state = state::FAILED.into();
                b.error_message = Some(message);
                Ok(())
            })
            .await;
    }

    /// Processes one batch (called by the runner).
    pub(super) async fn process_batch(self: Arc<Self>, seq: u64) {
        let Some(b) = self.start_batch(seq).await else {
            return;
        };
        let started = std::time::Instant::now();
        let p = match super::job_principal(&self.org, &b) {
            Ok(p) => p,
            Err(_) => {
                self.fail_batch(
                    seq,
                    "InvalidUser : The user who created the job no longer exists".into(),
                )
                .await;
                return;
            }
        };
        let format = Format::parse(&b.content_type).unwrap_or(Format::Xml);
        let path = self.dir.join(b.upload.clone().unwrap_or_default());
        let data = match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
            Ok(Ok(d)) => d,
            _ => {
                self.fail_batch(
                    seq,
                    "InternalServerError : the batch data is missing".into(),
                )
                .await;
                return;
            }
        };
        if b.operation == "query" || b.operation == "queryAll" {
            self.process_query_batch(b, p, format, data, started).await;
        } else {
            self.process_ingest_batch(b, p, format, data, started).await;
        }
    }

    async fn process_ingest_batch(
        &self,
        b: BulkJobRow,
        p: Principal,
        format: Format,
        data: Vec<u8>,
        started: std::time::Instant,
    ) {
        let seq = b.seq;
        let schema = self.org.schema();
        let (o, op) = match super::target_of(&schema, &b) {
            Ok(t) => t,
            Err(why) => {
                self.fail_batch(seq, format!("InvalidBatch : {why}")).await;
                return;
            }
        };
        let parsed =
            tokio::task::spawn_blocking(move || classic_data::read_records(format, &data)).await;
        let records = match parsed {
            Ok(Ok(r)) => r,
            Ok(Err(message)) => {
                self.fail_batch(seq, message).await;
                return;
            }
            Err(_) => return,
        };
        debug_assert!(records.rows.len() <= MAX_BATCH_RECORDS);
        let plan = match IngestPlan::new(
            &p,
            &schema,
            &o,
            op,
            b.external_id.as_deref(),
            &records.header,
        ) {
            Ok(plan) => Arc::new(plan),
            Err(message) => {
                self.fail_batch(seq, message).await;
                return;
            }
        };
        let marker = self.org.store().marker();
        let (plan2, p2) = (plan.clone(), p.clone());
        let prepared = tokio::task::spawn_blocking(move || {
            plan2.prepare(
                &p2,
                marker,
                records
                    .rows
                    .iter()
                    .map(|r| r.iter().map(|c| c.as_cell()).collect::<Vec<_>>()),
            )
        })
        .await;
        let Ok(prepared) = prepared else {
            return;
        };
        let (slot_tx, slot_rx) = tokio::sync::oneshot::channel();
        let r = self
            .finish_batch(seq, move |tx, b| {
                let now = now_millis();
                let outcomes = plan.apply(tx, &p, prepared, now)?;
                let failed = outcomes.iter().filter(|o| !o.is_ok()).count() as u64;
                tx.insert_bulk_chunk(&BulkChunkRow {
                    job: b.seq,
                    chunk: 0,
                    first_row: 0,
                    rows: outcomes.len() as u64,
                    start_offset: 0,
                    end_offset: 0,
                    results: results::encode(&outcomes, tx.marker()),
                })?;
                b.state = state::COMPLETED.into();
                b.processed = outcomes.len() as u64;
                b.failed = failed;
                b.processing_ms = started.elapsed().as_millis() as i64;
                let _ = slot_tx.send(outcomes);
                Ok(())
            })
            .await;
        match r {
            Ok(true) => {
                if let Ok(outcomes) = slot_rx.await {
                    self.after_chunk(&o, &outcomes);
                }
            }
            Ok(false) => {}
            Err(e) => {
                // A storage failure: nothing was written; the batch fails as a whole.
                self.fail_batch(seq, format!("InternalServerError : {}", e.message))
                    .await;
            }
        }
    }

    async fn process_query_batch(
        self: &Arc<Self>,
        b: BulkJobRow,
        p: Principal,
        format: Format,
        data: Vec<u8>,
        started: std::time::Instant,
    ) {
        let seq = b.seq;
        let text = String::from_utf8_lossy(&data).trim().to_string();
        let plan = match query::compile(&self.org.schema(), &p, &text, b.operation == "queryAll") {
            Ok(plan) => plan,
            Err(e) => {
                self.fail_batch(
                    seq,
                    format!(
                        "InvalidBatch : Failed to process query: {}: {}",
                        e.code, e.message
                    ),
                )
                .await;
                return;
            }
        };
        if !plan.object.name.eq_ignore_ascii_case(&b.object) {
            self.fail_batch(
                seq,
                format!(
                    "InvalidBatch : The query is on {} but the job's object is {}",
                    plan.object.name, b.object
                ),
            )
            .await;
            return;
        }
        if let Err(e) = query::check_bulk_query(&plan) {
            let message = e.message.replace("Bulk V2 Query", "Bulk API query");
            self.fail_batch(seq, message).await;
            return;
        }
        let name = random_name(seq, "results");
        let path: PathBuf = self.dir.join(&name);
        let me = self.clone();
        let version = b.api_version;
        let written = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let store = me.org.store().clone();
                let mut keep_going = || !me.stopping();
                match format {
                    Format::Csv => query::run_to_file(
                        &*store,
                        &plan,
                        &path,
                        seq,
                        super::csv::Dialect {
                            delimiter: b',',
                            crlf: false,
                        },
                        &mut keep_going,
                    )
                    .map(|w| w.map(|w| w.rows)),
                    _ => classic_data::write_query_results(
                        &*store,
                        &plan,
                        format,
                        version,
                        &path,
                        &mut keep_going,
                    ),
                }
            })
            .await
        };
        let remove = |path: PathBuf| {
            let _ = std::fs::remove_file(path);
        };
        match written {
            Ok(Ok(Some(rows))) => {
                sync_dir(&self.dir);
                let r = self
                    .finish_batch(seq, move |_, b| {
                        b.state = state::COMPLETED.into();
                        b.result_file = Some(name);
                        b.processed = rows;
                        b.processing_ms = started.elapsed().as_millis() as i64;
                        Ok(())
                    })
                    .await;
                if !matches!(r, Ok(true)) {
                    remove(path);
                }
            }
            Ok(Ok(None)) => remove(path),
            Ok(Err(e)) => {
                remove(path);
                self.fail_batch(seq, format!("InvalidBatch : {}: {}", e.code, e.message))
                    .await;
            }
            Err(_) => remove(path),
        }
    }

    /// Deletes an expired Bulk 1.0 job's batches (rows and files); the job itself is deleted by
    /// the caller.
    pub(super) async fn delete_classic_batches(&self, job: u64) {
        let Ok(batches) = self.batches_of(job) else {
            return;
        };
        for b in batches {
            let seq = b.seq;
            if self
                .org
                .store()
                .write(move |tx| Ok(tx.delete_bulk_job(seq)?))
                .await
                .is_ok()
            {
                self.remove_files(&b).await;
            }
        }
    }
}

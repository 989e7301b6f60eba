//! Bulk API jobs: Bulk API 2.0 ingest and query jobs, and the ingest core Bulk API 1.0 batches
//! reuse ([`IngestPlan`]).
//!
//! * **Jobs** are rows of the store (`store::BulkJobRow`); their data lives in files under
//!   `<data>/bulk/`: the upload (streamed to disk as it arrives and synced before the upload is
//!   acknowledged) and a query job's CSV results.
//! * **Processing** ([`Bulk::run`]) happens in the background: an ingest job's rows are read in
//!   chunks of [`Options::chunk_rows`], validated outside the writer (the next chunk while the
//!   current one is written), and each chunk's record writes, its per-row results and the job's
//!   cursor commit in one write transaction. After a crash a job resumes at its cursor, so
//!   every row is processed and reported exactly once.
//! * **Results** are streamed: ingest result files from the chunk rows and the upload, query
//!   pages from the result file, in pieces of about 64 KB, never whole in memory.
//!
//! Wire formats (JSON job info, CSV content types, error arrays) are the HTTP layer's; this
//! module speaks in [`Job`]s and [`BulkError`]s.

pub mod classic;
pub mod classic_data;
pub mod csv;
mod ingest;
mod query;
mod results;
mod runner;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};

use model::value::now_millis;
use model::{ApiError, Id, KeyPrefix};
use parking_lot::Mutex;
use serde_json::{Map, Value as Json};
use store::{BulkJobFilter, BulkJobRow};
use tokio::sync::mpsc;

pub use ingest::{Cell, IngestPlan, Operation, PreparedChunk, RowError, RowOutcome, Spent};
pub use results::ResultKind;

use crate::auth::Principal;
use crate::Org;

/// Key prefix of job ids (`750…`).
pub const JOB_PREFIX: KeyPrefix = KeyPrefix(*b"750");

/// An error of a Bulk API call: HTTP status, error code (Bulk has codes of its own, such as
/// `INVALIDJOBSTATE`), message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkError {
    /// HTTP status.
    pub status: u16,
    /// `errorCode`.
    pub code: String,
    /// `message`.
    pub message: String,
}

impl BulkError {
    /// An error.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> BulkError {
        BulkError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// `NOT_FOUND`.
    pub fn not_found() -> BulkError {
        ApiError::not_found().into()
    }

    fn invalid_job(message: impl Into<String>) -> BulkError {
        BulkError::new(400, "INVALIDJOB", message)
    }

    fn invalid_state(message: impl Into<String>) -> BulkError {
        BulkError::new(400, "INVALIDJOBSTATE", message)
    }
}

impl From<store::StoreError> for BulkError {
    fn from(e: store::StoreError) -> BulkError {
        ApiError::from(e).into()
    }
}

/// Ingest (`/jobs/ingest`) or query (`/jobs/query`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `V2Ingest`.
    Ingest,
    /// `V2Query`.
    Query,
}

impl JobKind {
    /// The `jobType` value.
    pub fn job_type(self) -> &'static str {
        match self {
            JobKind::Ingest => "V2Ingest",
            JobKind::Query => "V2Query",
        }
    }

    fn of(s: &str) -> Option<JobKind> {
        match s {
            "V2Ingest" => Some(JobKind::Ingest),
            "V2Query" => Some(JobKind::Query),
            _ => None,
        }
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Created, waiting for data (ingest).
    Open,
    /// Data complete, waiting to be processed.
    UploadComplete,
    /// Being processed.
    InProgress,
    /// Processed.
    JobComplete,
    /// Could not be processed (rows processed before stay written).
    Failed,
    /// Stopped by the client.
    Aborted,
}

impl JobState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Open => "Open",
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "Open" => JobState::Open,
            "UploadComplete" => JobState::UploadComplete,
            "InProgress" => JobState::InProgress,
            "JobComplete" => JobState::JobComplete,
            "Failed" => JobState::Failed,
            "Aborted" => JobState::Aborted,
            _ => return None,
        })
    }

    /// JobComplete, Failed or Aborted.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::JobComplete | JobState::Failed | JobState::Aborted
        )
    }
}

const DELIMITERS: &[(&str, u8)] = &[
    ("BACKQUOTE", b'`'),
    ("CARET", b'^'),
    ("COMMA", b','),
    ("PIPE", b'|'),
    ("SEMICOLON", b';'),
    ("TAB", b'\t'),
];

/// The CSV layout a job's settings name.
pub fn dialect(column_delimiter: &str, line_ending: &str) -> csv::Dialect {
    csv::Dialect {
        delimiter: DELIMITERS
            .iter()
            .find(|(n, _)| *n == column_delimiter)
            .map(|(_, b)| *b)
            .unwrap_or(b','),
        crlf: line_ending == "CRLF",
    }
}

/// A job as the surfaces show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `750…`.
    pub id: Id,
    /// Ingest or query.
    pub kind: JobKind,
    /// Object API name.
    pub object: String,
    /// `insert`, …, `query`, `queryAll`.
    pub operation: String,
    /// Upsert key field.
    pub external_id: Option<String>,
    /// State.
    pub state: JobState,
    /// The creating user.
    pub created_by: Id,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last change (ms).
    pub modstamp_ms: i64,
    /// API version it was created with (59 for 59.0).
    pub api_version: u32,
    /// `COMMA`, …
    pub column_delimiter: String,
    /// `LF` or `CRLF`.
    pub line_ending: String,
    /// `CSV`.
    pub content_type: String,
    /// Assignment rule, when given.
    pub assignment_rule: Option<String>,
    /// The SOQL of a query job.
    pub query: Option<String>,
    /// Rows processed (ingest: successes and failures; query: result rows).
    pub processed: u64,
    /// Rows failed.
    pub failed: u64,
    /// Processing retries.
    pub retries: u32,
    /// Milliseconds of processing.
    pub processing_ms: i64,
    /// Why a failed job failed.
    pub error_message: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Clone)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// The locator of the next page, when there is one.
    pub next: Option<String>,
}

/// Settings of the bulk engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per chunk (one write transaction each).
    pub chunk_rows: usize,
    /// Largest upload accepted, in bytes (Salesforce: 150 MB).
    pub max_upload_bytes: u64,
    /// Jobs processed at once.
    pub max_concurrent_jobs: usize,
    /// Chunks validated ahead of the one being written.
    pub prepare_ahead: usize,
    /// Terminal jobs are deleted this long after their last change (Salesforce: 7 days).
    pub retention_ms: i64,
    /// How often expired jobs and stray files are looked for.
    pub sweep_every: std::time::Duration,
    /// Jobs per page of the job list (Salesforce: 1,000).
    pub list_page: usize,
}

impl Default for Options {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Options {
            chunk_rows: 10_000,
            max_upload_bytes: 150 * 1024 * 1024,
            max_concurrent_jobs: 2,
            // The writer keeps one core busy; validation gets the others.
            prepare_ahead: cores.saturating_sub(1).clamp(1, 4),
            retention_ms: 7 * 86_400_000,
            sweep_every: std::time::Duration::from_secs(3600),
            list_page: 1000,
        }
    }
}

/// The bulk engine of an org: job state, files, the background runner.
pub struct Bulk {
    org: Arc<Org>,
    dir: PathBuf,
    opts: Options,
    wake: tokio::sync::Notify,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulk").field("dir", &self.dir).finish()
    }
}

/// Engines by org id, so surfaces that only hold the [`Org`] find its engine.
static ENGINES: Mutex<Vec<(Id, Weak<Bulk>)>> = Mutex::new(Vec::new());

fn now_secs_ms() -> i64 {
    now_millis()
}

/// The object and operation a stored job or batch names, or why they no longer apply (the
/// message without its `InvalidJob`/`InvalidBatch` prefix).
pub(crate) fn target_of(
    schema: &model::Schema,
    row: &BulkJobRow,
) -> Result<(Arc<model::ObjectDef>, Operation), String> {
    let o = schema
        .object(&row.object)
        .cloned()
        .ok_or_else(|| format!("Unable to find object: {}", row.object))?;
    let op = Operation::parse(&row.operation)
        .ok_or_else(|| format!("Invalid operation: {}", row.operation))?;
    Ok((o, op))
}

/// The principal a job's rows are written as: its creator, with the Bulk API as the change
/// origin (change events report it; PushTopics ignore such changes).
pub(crate) fn job_principal(org: &crate::Org, j: &BulkJobRow) -> model::ApiResult<Principal> {
    let mut p = org.principal_for(j.created_by)?;
    p.origin = crate::auth::Origin::new("bulkapi", model::ApiVersion(j.api_version).number(), None);
    Ok(p)
}

fn random_name(seq: u64, what: &str) -> String {
    format!("{seq}-{:016x}.{what}.csv", rand::random::<u64>())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Bulk {
    /// Creates the engine of `org` with its files in `dir` (created if needed), removes files
    /// no job refers to (uploads of a crash), and makes it findable with [`Bulk::of`]. Call it
    /// before serving, then spawn [`Bulk::run`].
    pub fn install(org: Arc<Org>, dir: PathBuf, opts: Options) -> std::io::Result<Arc<Bulk>> {
        std::fs::create_dir_all(&dir)?;
        let bulk = Arc::new(Bulk {
            org: org.clone(),
            dir,
            opts,
            wake: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
        });
        bulk.clean_files(None);
        let mut engines = ENGINES.lock();
        engines.retain(|(id, w)| *id != org.org_id() && w.strong_count() > 0);
        engines.push((org.org_id(), Arc::downgrade(&bulk)));
        Ok(bulk)
    }

    /// The engine installed for `org`.
    pub fn of(org: &Org) -> Option<Arc<Bulk>> {
        ENGINES
            .lock()
            .iter()
            .find(|(id, _)| *id == org.org_id())
            .and_then(|(_, w)| w.upgrade())
    }

    /// The directory of job files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The org.
    pub fn org(&self) -> &Arc<Org> {
        &self.org
    }

    fn job_id(&self, seq: u64) -> Id {
        Id::new(JOB_PREFIX, self.org.store().marker(), seq)
    }

    fn job_seq(&self, id: &str) -> Option<u64> {
        let id = Id::parse(id.trim()).ok()?;
        (id.prefix() == JOB_PREFIX)
            .then(|| id.seq_in(self.org.store().marker()))
            .flatten()
    }

    fn view(&self, j: &BulkJobRow) -> Job {
        Job {
            id: self.job_id(j.seq),
            kind: JobKind::of(&j.kind).unwrap_or(JobKind::Ingest),
            object: j.object.clone(),
            operation: j.operation.clone(),
            external_id: j.external_id.clone(),
            state: JobState::parse(&j.state).unwrap_or(JobState::Failed),
            created_by: Id::new(KeyPrefix(*b"005"), self.org.store().marker(), j.created_by),
            created_ms: j.created_ms,
            modstamp_ms: j.modstamp_ms,
            api_version: j.api_version,
            column_delimiter: j.column_delimiter.clone(),
            line_ending: j.line_ending.clone(),
            content_type: j.content_type.clone(),
            assignment_rule: j.assignment_rule.clone(),
            query: j.query.clone(),
            processed: j.processed,
            failed: j.failed,
            retries: j.retries,
            processing_ms: j.processing_ms,
            error_message: j.error_message.clone(),
        }
    }

    fn may_see(p: &Principal, j: &BulkJobRow) -> bool {
        j.created_by == p.user_seq || p.perms.modify_all_data || p.perms.view_all_data
    }

    /// A job of `kind` the caller may see, by id.
    fn load(&self, p: &Principal, kind: JobKind, id: &str) -> Result<BulkJobRow, BulkError> {
        let seq = self.job_seq(id).ok_or_else(BulkError::not_found)?;
        let j = self
            .org
            .store()
            .read(|tx| tx.bulk_job(seq))?
            .ok_or_else(BulkError::not_found)?;
        if JobKind::of(&j.kind) != Some(kind) || !Self::may_see(p, &j) {
            return Err(BulkError::not_found());
        }
        Ok(j)
    }

    /// Wakes the runner (a job became runnable).
    fn kick(&self) {
        self.wake.notify_one();
    }

    /// Runs a change of a job in a write transaction: `f` sees the current row and either
    /// refuses or changes it (`Ok(true)` writes it back).
    async fn change<F>(&self, seq: u64, f: F) -> Result<BulkJobRow, BulkError>
    where
        F: FnOnce(&mut BulkJobRow) -> Result<bool, BulkError> + Send + 'static,
    {
        let r = self
            .org
            .store()
            .write(move |tx| {
                let Some(mut j) = tx.bulk_job(seq)? else {
                    return Ok(Err(BulkError::not_found()));
                };
                match f(&mut j) {
                    Ok(true) => {
                        j.modstamp_ms = now_secs_ms();
                        tx.update_bulk_job(&j)?;
                        Ok(Ok(j))
                    }
                    Ok(false) => Ok(Ok(j)),
                    Err(e) => Ok(Err(e)),
                }
            })
            .await?;
        r
    }

    fn settings(spec: &Map<String, Json>) -> Result<(String, String, String), BulkError> {
        let text = |k: &str, default: &str| -> Result<String, BulkError> {
            match spec.get(k) {
                None | Some(Json::Null) => Ok(default.to_string()),
                Some(Json::String(s)) => Ok(s.clone()),
                Some(other) => Err(BulkError::invalid_job(format!(
                    "InvalidJob : Invalid value for {k}: {other}"
                ))),
            }
        };
        let delimiter = text("columnDelimiter", "COMMA")?;
        if !DELIMITERS.iter().any(|(n, _)| *n == delimiter) {
            return Err(BulkError::invalid_job(format!(
                "InvalidJob : Invalid column delimiter: {delimiter}. Valid values are BACKQUOTE, CARET, COMMA, PIPE, SEMICOLON and TAB"
            )));
        }
        let line_ending = text("lineEnding", "LF")?;
        if line_ending != "LF" && line_ending != "CRLF" {
            return Err(BulkError::invalid_job(format!(
                "InvalidJob : Invalid line ending: {line_ending}. Valid values are LF and CRLF"
            )));
        }
        let content_type = text("contentType", "CSV")?;
        if !content_type.eq_ignore_ascii_case("CSV") {
            return Err(BulkError::invalid_job(format!(
                "InvalidJob : Invalid content type: {content_type}. Bulk API 2.0 jobs accept CSV"
            )));
        }
        Ok((delimiter, line_ending, "CSV".into()))
    }

    /// Validates an ingest job's settings (`POST /jobs/ingest`) into a new job row.
    fn ingest_row(
        &self,
        p: &Principal,
        version: u32,
        spec: &Map<String, Json>,
    ) -> Result<BulkJobRow, BulkError> {
        let s = |k: &str| spec.get(k).and_then(Json::as_str).map(str::trim);
        let operation = s("operation").ok_or_else(|| {
            BulkError::invalid_job(
                "InvalidJob : Operation is required (insert, update, upsert, delete or hardDelete)",
            )
        })?;
        let op = Operation::parse(operation).ok_or_else(|| {
            BulkError::invalid_job(format!("InvalidJob : Invalid operation: {operation}"))
        })?;
        let object = s("object")
            .filter(|o| !o.is_empty())
            .ok_or_else(|| BulkError::invalid_job("InvalidJob : The object is required"))?;
        let o = self
            .org
            .visible_object(p, object)
            .ok()
            // Platform events can be published by insert jobs; nothing else applies to them.
            .filter(|o| o.kind != model::ObjectKind::PlatformEvent || op == Operation::Insert)
            .ok_or_else(|| {
                BulkError::new(
                    404,
                    "NOT_FOUND",
                    format!("sObject type '{object}' is not supported."),
                )
            })?;
        if op == Operation::HardDelete && !p.perms.modify_all_data {
            return Err(BulkError::new(
                400,
                "FEATURENOTENABLED",
                "hardDelete requires the Bulk API Hard Delete permission",
            ));
        }
        let external_id = match (op, s("externalIdFieldName").filter(|e| !e.is_empty())) {
            (Operation::Upsert, None) => {
                return Err(BulkError::invalid_job(format!(
                    "InvalidJob : External ID was blank for {}. An External ID must be specified for upsert.",
                    o.name
                )))
            }
            (Operation::Upsert, Some(e)) => {
                let f = o
                    .field(e)
                    .filter(|f| f.id_lookup() && p.perms.field_readable(&o, f))
                    .ok_or_else(|| {
                        BulkError::invalid_job(format!(
                            "InvalidJob : Field {e} does not exist or is not an External ID field on {}",
                            o.name
                        ))
                    })?;
                Some(f.name.clone())
            }
            (_, _) => None,
        };
        let (column_delimiter, line_ending, content_type) = Self::settings(spec)?;
        let now = now_secs_ms();
        Ok(BulkJobRow {
            kind: "V2Ingest".into(),
            object: o.name.clone(),
            operation: op.as_str().into(),
            external_id,
            state: JobState::Open.as_str().into(),
            created_by: p.user_seq,
            created_ms: now,
            modstamp_ms: now,
            api_version: version,
            column_delimiter,
            line_ending,
            content_type,
            assignment_rule: s("assignmentRuleId").map(str::to_string),
            ..Default::default()
        })
    }

    /// Stores a new job row; returns its sequence.
    pub(crate) async fn insert_job(&self, row: &BulkJobRow) -> model::ApiResult<u64> {
        let r = row.clone();
        self.org
            .store()
            .write(move |tx| Ok(tx.insert_bulk_job(&r)?))
            .await
    }

    /// `POST /jobs/ingest` with a JSON body: a new Open job.
    pub async fn create_ingest(
        &self,
        p: &Principal,
        version: u32,
        spec: &Map<String, Json>,
    ) -> Result<Job, BulkError> {
        let mut row = self.ingest_row(p, version, spec)?;
        row.seq = self.insert_job(&row).await?;
        Ok(self.view(&row))
    }

    /// `POST /jobs/ingest` as `multipart/form-data` (`job` and `content` parts): a job whose
    /// data is already complete (state UploadComplete).
    pub async fn create_ingest_with_data(
        &self,
        p: &Principal,
        version: u32,
        spec: &Map<String, Json>,
        content: Vec<u8>,
    ) -> Result<Job, BulkError> {
        let mut row = self.ingest_row(p, version, spec)?;
        if content.len() as u64 > self.opts.max_upload_bytes {
            return Err(too_large(self.opts.max_upload_bytes));
        }
        let name = random_name(0, "upload");
        if !self.write_synced(&name, content).await {
            return Err(ApiError::internal().into());
        }
        row.upload = Some(name.clone());
        row.state = JobState::UploadComplete.as_str().into();
        match self.insert_job(&row).await {
            Ok(seq) => row.seq = seq,
            Err(e) => {
                let _ = std::fs::remove_file(self.dir.join(&name));
                return Err(e.into());
            }
        }
        self.kick();
        Ok(self.view(&row))
    }

    /// `POST /jobs/query`: a query job (state UploadComplete), after checking the query.
    pub async fn create_query(
        &self,
        p: &Principal,
        version: u32,
        spec: &Map<String, Json>,
    ) -> Result<Job, BulkError> {
        let s = |k: &str| spec.get(k).and_then(Json::as_str);
        let operation = s("operation").unwrap_or("");
        let include_deleted = match operation {
            "query" => false,
            "queryAll" => true,
            other => {
                return Err(BulkError::invalid_job(format!(
                    "InvalidJob : Invalid operation: {other}. Query jobs accept query and queryAll"
                )))
            }
        };
        let text = s("query")
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| BulkError::invalid_job("InvalidJob : The query is required"))?;
        let plan = query::compile(&self.org.schema(), p, text, include_deleted)?;
        query::check_bulk_query(&plan)?;
        let (column_delimiter, line_ending, content_type) = Self::settings(spec)?;
        let now = now_secs_ms();
        let mut row = BulkJobRow {
            kind: "V2Query".into(),
            object: plan.object.name.clone(),
            operation: operation.into(),
            state: JobState::UploadComplete.as_str().into(),
            created_by: p.user_seq,
            created_ms: now,
            modstamp_ms: now,
            api_version: version,
            column_delimiter,
            line_ending,
            content_type,
            query: Some(text.to_string()),
            ..Default::default()
        };
        row.seq = self.insert_job(&row).await?;
        self.kick();
        Ok(self.view(&row))
    }

    /// `GET /jobs/{kind}/{id}`.
    pub fn job(&self, p: &Principal, kind: JobKind, id: &str) -> Result<Job, BulkError> {
        self.load(p, kind, id).map(|j| self.view(&j))
    }

    /// `GET /jobs/{kind}`: the caller's jobs (everyone's with View/Modify All Data), a page at
    /// a time; `locator` is the previous page's `next`.
    pub fn list(
        &self,
        p: &Principal,
        kind: JobKind,
        locator: Option<&str>,
        job_type: Option<&str>,
        pk_chunking: Option<bool>,
    ) -> Result<JobList, BulkError> {
        let after = match locator {
            Some(l) => self.job_seq(l).ok_or_else(|| {
                BulkError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            })?,
            None => 0,
        };
        if pk_chunking == Some(true) || job_type.is_some_and(|t| t != kind.job_type()) {
            return Ok(JobList {
                jobs: vec![],
                next: None,
            });
        }
        let filter = BulkJobFilter {
            kinds: vec![kind.job_type().into()],
            created_by: (!(p.perms.modify_all_data || p.perms.view_all_data)).then_some(p.user_seq),
            after_seq: after,
            limit: self.opts.list_page + 1,
            ..Default::default()
        };
        let mut rows = self.org.store().read(|tx| tx.bulk_jobs(&filter))?;
        let more = rows.len() > self.opts.list_page;
        rows.truncate(self.opts.list_page);
        let next = if more {
            rows.last().map(|j| self.job_id(j.seq).to_18())
        } else {
            None
        };
        Ok(JobList {
            jobs: rows.iter().map(|j| self.view(j)).collect(),
            next,
        })
    }

    /// `PATCH /jobs/{kind}/{id}` `{"state": …}`: close (ingest) or abort.
    pub async fn set_state(
        &self,
        p: &Principal,
        kind: JobKind,
        id: &str,
        state: &str,
    ) -> Result<Job, BulkError> {
        let j = self.load(p, kind, id)?;
        let wanted = JobState::parse(state)
            .filter(|s| {
                matches!(s, JobState::Aborted)
                    || (kind == JobKind::Ingest && *s == JobState::UploadComplete)
            })
            .ok_or_else(|| {
                BulkError::invalid_state(format!(
                    "Invalid job state: {state}. A job can be set to {}",
                    if kind == JobKind::Ingest {
                        "UploadComplete or Aborted"
                    } else {
                        "Aborted"
                    }
                ))
            })?;
        let j = self
            .change(j.seq, move |j| {
                let current = JobState::parse(&j.state).unwrap_or(JobState::Failed);
                let allowed = match wanted {
                    JobState::UploadComplete => current == JobState::Open,
                    _ => matches!(
                        current,
                        JobState::Open | JobState::UploadComplete | JobState::InProgress
                    ),
                };
                if !allowed {
                    return Err(BulkError::invalid_state(format!(
                        "Job state transition from {} to {} is not allowed",
                        current.as_str(),
                        wanted.as_str()
                    )));
                }
                j.state = wanted.as_str().into();
                Ok(true)
            })
            .await?;
        self.kick();
        Ok(self.view(&j))
    }

    /// `DELETE /jobs/{kind}/{id}`: the job, its chunks and its files.
    pub async fn delete(&self, p: &Principal, kind: JobKind, id: &str) -> Result<(), BulkError> {
        let j = self.load(p, kind, id)?;
        let seq = j.seq;
        let removed = self
            .org
            .store()
            .write(move |tx| {
                let Some(j) = tx.bulk_job(seq)? else {
                    return Ok(Err(BulkError::not_found()));
                };
                let state = JobState::parse(&j.state).unwrap_or(JobState::Failed);
                let deletable = state.is_terminal()
                    || (kind == JobKind::Ingest && state == JobState::UploadComplete);
                if !deletable {
                    return Ok(Err(BulkError::new(
                        400,
                        "API_ERROR",
                        "Error encountered when deleting the job because the job is not terminated",
                    )));
                }
                tx.delete_bulk_job(seq)?;
                Ok(Ok(j))
            })
            .await??;
        self.remove_files(&removed).await;
        Ok(())
    }

    /// Writes `data` to a new file `name` of the bulk directory and syncs it and the directory;
    /// false (and no file left behind) if that failed.
    async fn write_synced(&self, name: &str, data: Vec<u8>) -> bool {
        let path = self.dir.join(name);
        let dir = self.dir.clone();
        let p = path.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = File::create(&p)?;
            f.write_all(&data)?;
            f.sync_all()?;
            sync_dir(&dir);
            Ok(())
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!(path = %path.display(), "cannot write a bulk data file");
            let _ = std::fs::remove_file(&path);
            return false;
        }
        true
    }

    async fn remove_files(&self, j: &BulkJobRow) {
        let paths: Vec<PathBuf> = [&j.upload, &j.result_file]
            .into_iter()
            .flatten()
            .map(|n| self.dir.join(n))
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        })
        .await;
    }

    /// Starts `PUT /jobs/ingest/{id}/batches`: checks the job takes data and opens a new file
    /// for it. Write the body with [`Upload::write`], then [`Upload::finish`].
    pub fn begin_upload(&self, p: &Principal, id: &str) -> Result<Upload, BulkError> {
        let j = self.load(p, JobKind::Ingest, id)?;
        check_uploadable(&j, &self.job_id(j.seq))?;
        let name = random_name(j.seq, "upload");
        let path = self.dir.join(&name);
        let file = File::create(&path).map_err(|e| {
            tracing::error!(error = %e, path = %path.display(), "cannot create a bulk upload file");
            BulkError::from(ApiError::internal())
        })?;
        Ok(Upload {
            seq: j.seq,
            id: self.job_id(j.seq),
            name,
            path,
            file: Some(file),
            size: 0,
            limit: self.opts.max_upload_bytes,
            dir: self.dir.clone(),
        })
    }

    /// A result file of an ingest job, streamed in pieces (`unprocessedrecords` too).
    pub fn ingest_results(
        &self,
        p: &Principal,
        id: &str,
        kind: ResultKind,
    ) -> Result<mpsc::Receiver<Vec<u8>>, BulkError> {
        let j = self.load(p, JobKind::Ingest, id)?;
        let o = self.org.schema().object(&j.object).cloned();
        let prefix = o.map(|o| o.key_prefix).unwrap_or(KeyPrefix(*b"000"));
        let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
        let store = self.org.store().clone();
        let dir = self.dir.clone();
        let d = dialect(&j.column_delimiter, &j.line_ending);
        tokio::task::spawn_blocking(move || {
            let mut sink = |b: Vec<u8>| b.is_empty() || tx.blocking_send(b).is_ok();
            if let Err(e) = results::write_results(&*store, &j, &dir, kind, d, prefix, &mut sink) {
                tracing::error!(error = %e, job = j.seq, "streaming bulk results failed");
            }
        });
        Ok(rx)
    }

    /// `GET /jobs/query/{id}/results`: one page (`maxRecords` rows from the locator's row).
    pub fn query_results(
        &self,
        p: &Principal,
        id: &str,
        version: u32,
        locator: Option<&str>,
        max_records: Option<u64>,
    ) -> Result<QueryResults, BulkError> {
        let j = self.load(p, JobKind::Query, id)?;
        if j.state != JobState::JobComplete.as_str() {
            return Err(BulkError::invalid_state(format!(
                "The job is in state {}; results are available once it is JobComplete",
                j.state
            )));
        }
        if version != j.api_version {
            return Err(BulkError::new(
                409,
                "API_ERROR",
                format!(
                    "The job was created with API version {}.0; get its results with the same version",
                    j.api_version
                ),
            ));
        }
        let first = match locator.filter(|l| !l.is_empty() && *l != "null") {
            Some(l) => query::parse_locator(l)
                .filter(|o| *o <= j.processed)
                .ok_or_else(query::bad_locator)?,
            None => 0,
        };
        let max = max_records
            .filter(|m| *m > 0)
            .unwrap_or(DEFAULT_MAX_RECORDS);
        let count = max.min(j.processed - first);
        let end = first + count;
        let next = if end < j.processed {
            query::locator(end)
        } else {
            "null".to_string()
        };
        let entry = if count > 0 {
            self.org
                .store()
                .read(|tx| tx.bulk_chunks(j.seq, first / query::PAGE_INDEX_ROWS, 1))?
                .into_iter()
                .next()
        } else {
            None
        };
        let Some(name) = j.result_file.clone() else {
            return Err(ApiError::internal().into());
        };
        let path = self.dir.join(name);
        let d = dialect(&j.column_delimiter, &j.line_ending);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
        tokio::task::spawn_blocking(move || {
            let mut sink = |b: Vec<u8>| b.is_empty() || tx.blocking_send(b).is_ok();
            if let Err(e) = query::copy_page(&path, d, entry.as_ref(), first, count, &mut sink) {
                tracing::error!(error = %e, "streaming bulk query results failed");
            }
        });
        Ok(QueryResults {
            locator: next,
            records: count,
            body: rx,
        })
    }

    /// Removes files of the bulk directory no job refers to; with `older_than_ms`, only files
    /// not modified for that long (uploads being written are young).
    fn clean_files(&self, older_than_ms: Option<i64>) {
        let Ok(known) = self.org.store().read(|tx| tx.bulk_files()) else {
            return;
        };
        let known: std::collections::HashSet<String> = known.into_iter().collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if known.contains(&name) {
                continue;
            }
            if let Some(age) = older_than_ms {
                let young = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|el| (el.as_millis() as i64) < age);
                if young {
                    continue;
                }
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Rows per query results page when the client does not say (`maxRecords`).
pub const DEFAULT_MAX_RECORDS: u64 = 100_000;

/// A page of query results.
#[derive(Debug)]
pub struct QueryResults {
    /// `Sforce-Locator`: the next page's locator, or `null`.
    pub locator: String,
    /// `Sforce-NumberOfRecords`.
    pub records: u64,
    /// The CSV, in pieces.
    pub body: mpsc::Receiver<Vec<u8>>,
}

fn too_large(limit: u64) -> BulkError {
    BulkError::new(
        413,
        "REQUEST_ENTITY_TOO_LARGE",
        format!("The upload is larger than the maximum of {limit} bytes for a job"),
    )
}

fn check_uploadable(j: &BulkJobRow, id: &Id) -> Result<(), BulkError> {
    if j.upload.is_some() {
        return Err(BulkError::invalid_job(format!(
            "Found multiple contents for job: <{}>, please 'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make sure the job only contains one batch",
            id.to_18()
        )));
    }
    if j.state != JobState::Open.as_str() {
        return Err(BulkError::new(
            409,
            "INVALIDJOBSTATE",
            format!(
                "Data can only be uploaded to an Open job; this job is {}",
                j.state
            ),
        ));
    }
    Ok(())
}

/// An upload being received: the body goes to a new file as it arrives.
#[derive(Debug)]
pub struct Upload {
    seq: u64,
    id: Id,
    name: String,
    path: PathBuf,
    file: Option<File>,
    size: u64,
    limit: u64,
    dir: PathBuf,
}

impl Upload {
    /// Appends a piece of the body (on a blocking thread).
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), BulkError> {
        self.size += data.len() as u64;
        if self.size > self.limit {
            return Err(too_large(self.limit));
        }
        let Some(mut f) = self.file.take() else {
            return Err(ApiError::internal().into());
        };
        let r = tokio::task::spawn_blocking(move || f.write_all(&data).map(|_| f)).await;
        match r {
            Ok(Ok(f)) => {
                self.file = Some(f);
                Ok(())
            }
            _ => Err(ApiError::internal().into()),
        }
    }

    /// Syncs the file and records it as the job's data (only if the job still takes data).
    pub async fn finish(mut self, bulk: &Bulk) -> Result<(), BulkError> {
        let Some(f) = self.file.take() else {
            return Err(ApiError::internal().into());
        };
        let dir = self.dir.clone();
        let synced = tokio::task::spawn_blocking(move || {
            let r = f.sync_all();
            sync_dir(&dir);
            r
        })
        .await;
        if !matches!(synced, Ok(Ok(()))) {
            return Err(ApiError::internal().into());
        }
        let (name, id) = (self.name.clone(), self.id);
        let r = bulk
            .change(self.seq, move |j| {
                check_uploadable(j, &id)?;
                j.upload = Some(name);
                Ok(true)
            })
            .await;
        match r {
            Ok(_) => {
                // The job owns the file now.
                self.path = PathBuf::new();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // An upload that was not recorded leaves no file behind.
        if !self.path.as_os_str().is_empty() {
            self.file.take();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Runs one chunk of rows (a Bulk API 1.0 batch, up to 10,000 rows) in one write transaction
/// and returns each row's outcome: the same processing as a Bulk API 2.0 chunk.
pub async fn process_rows(
    org: &Org,
    p: &Principal,
    plan: Arc<IngestPlan>,
    rows: Vec<Vec<Option<String>>>,
) -> Result<Vec<RowOutcome>, ApiError> {
    let marker = org.store().marker();
    let chunk = {
        let cells = rows.iter().map(|r| {
            r.iter()
                .map(|c| match c {
                    None => Cell::Null,
                    Some(s) => Cell::from_csv(s),
                })
                .collect::<Vec<_>>()
        });
        plan.prepare(p, marker, cells)
    };
    let p2 = p.clone();
    org.store()
        .write(move |tx| plan.apply(tx, &p2, chunk, now_millis()))
        .await
}

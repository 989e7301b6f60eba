//! The background runner: picks up jobs that are UploadComplete or InProgress (also after a
//! restart), processes them, and deletes terminal jobs after the retention period
//! ([`Options::retention_ms`](super::Options), looked for every `sweep_every`).
//!
//! An ingest job is a pipeline over its upload: a reader thread cuts the file into chunks of
//! rows (remembering their byte ranges), blocking tasks validate up to
//! [`Options::prepare_ahead`](super::Options) chunks at once, and the chunks are written in
//! order, each as one write job that also stores the chunk's results and advances the job's
//! cursor. Two chunk write jobs are queued at a time, so the writer finds the next one waiting
//! when it commits (and group commit may sync both at once). A chunk whose write job finds the
//! cursor elsewhere (an abort, a delete, a failed chunk before it) changes nothing, so a row is
//! never applied twice.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::future::Future;
use std::io::{self, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::value::now_millis;
use model::ApiResult;
use store::{BulkChunkRow, BulkJobFilter, BulkJobRow};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::csv::{split_fields, strip_bom, Dialect, RowReader};
use super::ingest::{Cell, IngestPlan, PreparedChunk, RowOutcome, Spent};
use super::{dialect, query, random_name, results, Bulk, JobKind, JobState};
use crate::auth::Principal;

/// Attempts at a failing chunk before the job fails.
const MAX_ATTEMPTS: u32 = 10;
/// Bytes of rows in a chunk at most (a chunk also ends at `chunk_rows` rows).
const MAX_CHUNK_BYTES: usize = 32 * 1024 * 1024;
/// Chunk write jobs queued at once: the writer finds the next chunk waiting when it commits
/// one, and group commit may sync both together.
const WRITES_IN_FLIGHT: usize = 2;

/// A queued chunk write: its outcomes once committed (`None` if it changed nothing), and the
/// rows it is done with (freed by whoever receives them, not by the writer).
type Written = tokio::sync::oneshot::Receiver<(ApiResult<Option<Vec<RowOutcome>>>, Spent)>;

/// Rows of the upload read for one chunk.
struct RawChunk {
    first_row: u64,
    start_offset: u64,
    end_offset: u64,
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

/// Where a prepared chunk lies.
#[derive(Debug, Clone, Copy)]
struct ChunkMeta {
    first_row: u64,
    rows: u64,
    start_offset: u64,
    end_offset: u64,
}

enum Done {
    Finished,
    Stopped,
}

fn next_chunk(
    rows: &mut RowReader<File>,
    first_row: u64,
    max_rows: usize,
) -> io::Result<Option<RawChunk>> {
    let start_offset = rows.offset();
    let mut data = Vec::new();
    let mut spans = Vec::new();
    while spans.len() < max_rows && data.len() < MAX_CHUNK_BYTES {
        let Some((_, row)) = rows.next_row()? else {
            break;
        };
        if row.is_empty() {
            continue;
        }
        spans.push((data.len(), data.len() + row.len()));
        data.extend_from_slice(row);
    }
    if spans.is_empty() {
        return Ok(None);
    }
    Ok(Some(RawChunk {
        first_row,
        start_offset,
        end_offset: rows.offset(),
        data,
        spans,
    }))
}

fn prepare_raw(
    plan: &IngestPlan,
    p: &Principal,
    marker: model::OrgMarker,
    delimiter: u8,
    raw: RawChunk,
) -> (ChunkMeta, PreparedChunk) {
    let mut chunk = PreparedChunk::default();
    let mut fields = Vec::with_capacity(plan.columns());
    for &(a, b) in &raw.spans {
        split_fields(&raw.data[a..b], delimiter, &mut fields);
        let cells: Vec<Cell<'_>> = fields.iter().map(|f| Cell::from_csv(f)).collect();
        plan.prepare_into(p, marker, &cells, &mut chunk);
    }
    (
        ChunkMeta {
            first_row: raw.first_row,
            rows: raw.spans.len() as u64,
            start_offset: raw.start_offset,
            end_offset: raw.end_offset,
        },
        chunk,
    )
}

/// Reads the header row: the column names and where the data starts. `Err` is the job's error
/// message.
fn read_header(path: &PathBuf, d: Dialect) -> Result<Option<(Vec<String>, u64)>, String> {
    let file = File::open(path)
        .map_err(|e| format!("InternalServerError : cannot read the upload: {e}"))?;
    let mut r = RowReader::new(file, 0, d);
    let Some((_, row)) = r
        .next_row()
        .map_err(|e| format!("ClientInputError : {e}"))?
    else {
        return Ok(None);
    };
    let row = strip_bom(row);
    if !d.crlf && row.last() == Some(&b'\r') {
        return Err(
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"
                .into(),
        );
    }
    if d.crlf && row.contains(&b'\n') {
        return Err(
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is CRLF"
                .into(),
        );
    }
    let mut fields = Vec::new();
    split_fields(row, d.delimiter, &mut fields);
    let names = fields.into_iter().map(|f| f.into_owned()).collect();
    Ok(Some((names, r.offset())))
}

impl Bulk {
    /// Processes jobs until `shutdown` completes: jobs waiting or interrupted by a restart
    /// first, new ones as they are closed. Expired jobs are deleted hourly. Returns after the
    /// chunks being written are committed; interrupted jobs resume at the next start.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut running: HashMap<u64, JoinHandle<()>> = HashMap::new();
        // Bulk API 1.0 batches being processed: batch sequence → (job sequence, task).
        let mut batches: HashMap<u64, (u64, JoinHandle<()>)> = HashMap::new();
        let mut next_sweep = Instant::now();
        loop {
            running.retain(|_, h| !h.is_finished());
            if running.len() < self.opts.max_concurrent_jobs {
                let filter = BulkJobFilter {
                    kinds: vec!["V2Ingest".into(), "V2Query".into()],
                    states: vec![
                        JobState::UploadComplete.as_str().into(),
                        JobState::InProgress.as_str().into(),
                    ],
                    limit: 64,
                    ..Default::default()
                };
                match self.org.store().read(|tx| tx.bulk_jobs(&filter)) {
                    Ok(jobs) => {
                        for j in jobs {
                            if running.len() >= self.opts.max_concurrent_jobs {
                                break;
                            }
                            if running.contains_key(&j.seq) {
                                continue;
                            }
                            let me = self.clone();
                            let seq = j.seq;
                            running.insert(seq, tokio::spawn(async move { me.process(j).await }));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list bulk jobs"),
                }
            }
            batches.retain(|_, (_, h)| !h.is_finished());
            for (b, serial) in self.runnable_batches() {
                if batches.len() >= self.opts.max_concurrent_jobs {
                    break;
                }
                let job = b.parent.unwrap_or_default();
                if batches.contains_key(&b.seq)
                    || (serial && batches.values().any(|(j, _)| *j == job))
                {
                    continue;
                }
                let me = self.clone();
                let seq = b.seq;
                let task = tokio::spawn(async move {
                    let again = me.clone();
                    me.process_batch(seq).await;
                    again.kick();
                });
                batches.insert(seq, (job, task));
            }
            if Instant::now() >= next_sweep {
                self.sweep().await;
                next_sweep = Instant::now() + self.opts.sweep_every;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        self.stopping.store(true, Ordering::SeqCst);
        for (_, h) in running {
            let _ = h.await;
        }
        for (_, (_, h)) in batches {
            let _ = h.await;
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    async fn process(self: Arc<Self>, j: BulkJobRow) {
        match JobKind::of(&j.kind) {
            Some(JobKind::Ingest) => self.process_ingest(j.seq).await,
            Some(JobKind::Query) => self.process_query(j.seq).await,
            None => {}
        }
        self.kick();
    }

    /// Moves an UploadComplete job to InProgress; the job if it is (now) InProgress.
    async fn start(&self, seq: u64) -> Option<BulkJobRow> {
        let j = self
            .change(seq, |j| {
                if j.state == JobState::UploadComplete.as_str() {
                    j.state = JobState::InProgress.as_str().into();
                    return Ok(true);
                }
                Ok(false)
            })
            .await
            .ok()?;
        (j.state == JobState::InProgress.as_str()).then_some(j)
    }

    async fn fail(&self, seq: u64, message: String) {
        tracing::info!(job = seq, %message, "bulk job failed");
        let _ = self
            .change(seq, move |j| {
                if j.state == JobState::InProgress.as_str()
                    || j.state == JobState::UploadComplete.as_str()
                {
                    j.state = JobState::Failed.as_str().into();
                    j.error_message = Some(message);
                    return Ok(true);
                }
                Ok(false)
            })
            .await;
    }

    async fn complete(&self, seq: u64) {
        let _ = self
            .change(seq, |j| {
                if j.state == JobState::InProgress.as_str() {
                    j.state = JobState::JobComplete.as_str().into();
                    return Ok(true);
                }
                Ok(false)
            })
            .await;
    }

    async fn process_ingest(self: &Arc<Self>, seq: u64) {
        let Some(j) = self.start(seq).await else {
            return;
        };
        let Some(upload) = j.upload.clone() else {
            self.complete(seq).await;
            return;
        };
        let p = match super::job_principal(&self.org, &j) {
            Ok(p) => p,
            Err(_) => {
                self.fail(
                    seq,
                    "InvalidJob : The user who created the job no longer exists".into(),
                )
                .await;
                return;
            }
        };
        let schema = self.org.schema();
        let (o, op) = match super::target_of(&schema, &j) {
            Ok(t) => t,
            Err(why) => {
                self.fail(seq, format!("InvalidJob : {why}")).await;
                return;
            }
        };
        let d = dialect(&j.column_delimiter, &j.line_ending);
        let path = self.dir.join(&upload);
        let header = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_header(&path, d)).await
        };
        let (header, header_end) = match header {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => {
                self.complete(seq).await;
                return;
            }
            Ok(Err(message)) => {
                self.fail(seq, message).await;
                return;
            }
            Err(_) => return,
        };
        let plan = match IngestPlan::new(&p, &schema, &o, op, j.external_id.as_deref(), &header) {
            Ok(plan) => Arc::new(plan),
            Err(message) => {
                self.fail(seq, message).await;
                return;
            }
        };
        let mut attempts = 0;
        loop {
            let Ok(Some(j)) = self.org.store().read(|tx| tx.bulk_job(seq)) else {
                return;
            };
            if j.state != JobState::InProgress.as_str() || self.stopping() {
                return;
            }
            let start = if j.next_offset == 0 {
                header_end
            } else {
                j.next_offset
            };
            let r = self
                .run_chunks(&plan, &p, seq, path.clone(), d, start, j.next_row, j.chunks)
                .await;
            match r {
                Ok(Done::Finished) => {
                    self.complete(seq).await;
                    return;
                }
                Ok(Done::Stopped) => return,
                Err(message) => {
                    attempts += 1;
                    tracing::warn!(job = seq, attempt = attempts, %message, "bulk chunk failed");
                    if attempts >= MAX_ATTEMPTS {
                        self.fail(seq, format!("InternalServerError : {message}"))
                            .await;
                        return;
                    }
                    let _ = self
                        .change(seq, |j| {
                            j.retries += 1;
                            Ok(true)
                        })
                        .await;
                    tokio::time::sleep(Duration::from_millis(500 * attempts as u64)).await;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_chunks(
        &self,
        plan: &Arc<IngestPlan>,
        p: &Principal,
        seq: u64,
        path: PathBuf,
        d: Dialect,
        start: u64,
        first_row: u64,
        first_chunk: u64,
    ) -> Result<Done, String> {
        let chunk_rows = self.opts.chunk_rows.max(1);
        let (raw_tx, mut raw_rx) = mpsc::channel::<io::Result<RawChunk>>(2);
        tokio::task::spawn_blocking(move || {
            let opened = File::open(&path).and_then(|mut f| {
                f.seek(SeekFrom::Start(start))?;
                Ok(f)
            });
            let file = match opened {
                Ok(f) => f,
                Err(e) => {
                    let _ = raw_tx.blocking_send(Err(e));
                    return;
                }
            };
            let mut rows = RowReader::new(file, start, d);
            let mut row = first_row;
            loop {
                match next_chunk(&mut rows, row, chunk_rows) {
                    Ok(Some(c)) => {
                        row += c.spans.len() as u64;
                        if raw_tx.blocking_send(Ok(c)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = raw_tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let marker = self.org.store().marker();
        let ahead = self.opts.prepare_ahead.max(1);
        let mut pending: VecDeque<JoinHandle<(ChunkMeta, PreparedChunk)>> = VecDeque::new();
        let mut inflight: VecDeque<Written> = VecDeque::new();
        let mut raw_done = false;
        let mut chunk_no = first_chunk;
        let mut last = Instant::now();
        loop {
            while pending.len() < ahead && !raw_done {
                match raw_rx.recv().await {
                    Some(Ok(raw)) => {
                        let (plan, p) = (plan.clone(), p.clone());
                        pending.push_back(tokio::task::spawn_blocking(move || {
                            prepare_raw(&plan, &p, marker, d.delimiter, raw)
                        }));
                    }
                    Some(Err(e)) => return Err(format!("cannot read the upload: {e}")),
                    None => raw_done = true,
                }
            }
            if inflight.len() < WRITES_IN_FLIGHT {
                if let Some(h) = pending.pop_front() {
                    let (meta, prepared) = h
                        .await
                        .map_err(|e| format!("validation task failed: {e}"))?;
                    if self.stopping() {
                        return Ok(Done::Stopped);
                    }
                    let elapsed = last.elapsed().as_millis() as i64;
                    last = Instant::now();
                    inflight.push_back(
                        self.submit_chunk(plan, p, seq, chunk_no, meta, prepared, elapsed)
                            .await?,
                    );
                    chunk_no += 1;
                    continue;
                }
            }
            let Some(written) = inflight.pop_front() else {
                return Ok(Done::Finished);
            };
            match written.await {
                Ok((Ok(Some(outcomes)), _spent)) => self.after_chunk(&plan.object, &outcomes),
                // The job moved on (aborted, deleted) and the chunk changed nothing.
                Ok((Ok(None), _)) => return Ok(Done::Stopped),
                Ok((Err(e), _)) => return Err(format!("{}: {}", e.code, e.message)),
                Err(_) => return Err("the store is shut down".into()),
            }
        }
    }

    /// Queues one chunk's write job: its rows, its results and the job's cursor in one
    /// transaction. The job answers `None` when the cursor is not where the chunk starts (the
    /// job was aborted or deleted, or the chunk before it failed): then it changed nothing.
    /// Queued in order, a chunk runs after the one before it, possibly in the same batch.
    #[allow(clippy::too_many_arguments)]
    async fn submit_chunk(
        &self,
        plan: &Arc<IngestPlan>,
        p: &Principal,
        seq: u64,
        chunk_no: u64,
        meta: ChunkMeta,
        prepared: PreparedChunk,
        elapsed_ms: i64,
    ) -> Result<Written, String> {
        let (plan2, p2) = (plan.clone(), p.clone());
        let (tx_out, rx) = tokio::sync::oneshot::channel();
        let job: store::WriteJob = Box::new(move |tx: &mut dyn store::WriteTx| {
            let mut spent = Spent::default();
            let result = (|| -> ApiResult<Option<Vec<RowOutcome>>> {
                let Some(mut j) = tx.bulk_job(seq)? else {
                    return Ok(None);
                };
                if j.state != JobState::InProgress.as_str()
                    || j.next_row != meta.first_row
                    || j.chunks != chunk_no
                {
                    return Ok(None);
                }
                let now = now_millis();
                let outcomes = plan2.apply_keeping(tx, &p2, prepared, now, &mut spent)?;
                let failed = outcomes.iter().filter(|o| !o.is_ok()).count() as u64;
                tx.insert_bulk_chunk(&BulkChunkRow {
                    job: seq,
                    chunk: chunk_no,
                    first_row: meta.first_row,
                    rows: meta.rows,
                    start_offset: meta.start_offset,
                    end_offset: meta.end_offset,
                    results: results::encode(&outcomes, tx.marker()),
                })?;
                j.next_row += meta.rows;
                j.next_offset = meta.end_offset;
                j.chunks += 1;
                j.processed += meta.rows;
                j.failed += failed;
                j.processing_ms += elapsed_ms;
                j.modstamp_ms = now;
                tx.update_bulk_job(&j)?;
                Ok(Some(outcomes))
            })();
            store::JobDone {
                keep: result.is_ok(),
                after_commit: Box::new(move |commit| {
                    let result = match commit {
                        Ok(()) => result,
                        Err(e) => Err(e.into()),
                    };
                    let _ = tx_out.send((result, spent));
                }),
            }
        });
        self.org
            .store()
            .submit(job)
            .await
            .map_err(|e| format!("cannot queue the chunk: {e}"))?;
        Ok(rx)
    }

    /// What REST does after writing setup objects: permission caches and sessions of users.
    pub(super) fn after_chunk(&self, o: &model::ObjectDef, outcomes: &[RowOutcome]) {
        if crate::perms::AUTH_OBJECTS.iter().any(|n| *n == o.name) {
            self.org.invalidate_auth();
        }
        if o.name == "User" {
            let marker = self.org.store().marker();
            for r in outcomes {
                if let RowOutcome::Ok { id, .. } = r {
                    if let Some(s) = id.seq_in(marker) {
                        self.org.sessions.remove_user(s);
                    }
                }
            }
        }
    }

    async fn process_query(self: &Arc<Self>, seq: u64) {
        let Some(j) = self.start(seq).await else {
            return;
        };
        let p = match super::job_principal(&self.org, &j) {
            Ok(p) => p,
            Err(_) => {
                self.fail(
                    seq,
                    "InvalidJob : The user who created the job no longer exists".into(),
                )
                .await;
                return;
            }
        };
        let text = j.query.clone().unwrap_or_default();
        let plan = match query::compile(&self.org.schema(), &p, &text, j.operation == "queryAll") {
            Ok(plan) => plan,
            Err(e) => {
                self.fail(seq, format!("{}: {}", e.code, e.message)).await;
                return;
            }
        };
        if let Err(e) = query::check_bulk_query(&plan) {
            self.fail(seq, e.message).await;
            return;
        }
        let name = random_name(seq, "results");
        let path = self.dir.join(&name);
        let d = dialect(&j.column_delimiter, &j.line_ending);
        let me = self.clone();
        let written = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let store = me.org.store().clone();
                let mut pages = 0u32;
                let mut keep_going = || {
                    if me.stopping() {
                        return false;
                    }
                    // Notice an abort every few pages.
                    pages += 1;
                    if pages < 8 {
                        return true;
                    }
                    pages = 0;
                    matches!(store.read(|tx| tx.bulk_job(seq)), Ok(Some(j)) if j.state == JobState::InProgress.as_str())
                };
                query::run_to_file(&*me.org.store().clone(), &plan, &path, seq, d, &mut keep_going)
            })
            .await
        };
        let remove = |path: PathBuf| {
            let _ = std::fs::remove_file(path);
        };
        match written {
            Ok(Ok(Some(w))) => {
                super::sync_dir(&self.dir);
                let name2 = name.clone();
                let r = self
                    .org
                    .store()
                    .write(move |tx| {
                        let Some(mut j) = tx.bulk_job(seq)? else {
                            return Ok(false);
                        };
                        if j.state != JobState::InProgress.as_str() {
                            return Ok(false);
                        }
                        tx.delete_bulk_chunks(seq)?;
                        for c in &w.index {
                            tx.insert_bulk_chunk(c)?;
                        }
                        j.result_file = Some(name2);
                        j.processed = w.rows;
                        j.chunks = w.index.len() as u64;
                        j.state = JobState::JobComplete.as_str().into();
                        j.modstamp_ms = now_millis();
                        tx.update_bulk_job(&j)?;
                        Ok(true)
                    })
                    .await;
                if !matches!(r, Ok(true)) {
                    remove(path);
                }
            }
            Ok(Ok(None)) => remove(path),
            Ok(Err(e)) => {
                remove(path);
                self.fail(seq, format!("{}: {}", e.code, e.message)).await;
            }
            Err(_) => remove(path),
        }
    }

    /// Deletes terminal jobs older than the retention period, and stray files.
    async fn sweep(&self) {
        let cutoff = now_millis() - self.opts.retention_ms;
        let filter = BulkJobFilter {
            kinds: vec!["V2Ingest".into(), "V2Query".into(), "Classic".into()],
            states: vec![
                JobState::JobComplete.as_str().into(),
                JobState::Failed.as_str().into(),
                JobState::Aborted.as_str().into(),
                // Bulk API 1.0 jobs stay Open or Closed; they expire all the same.
                "Open".into(),
                "Closed".into(),
            ],
            modified_before: Some(cutoff),
            limit: 1000,
            ..Default::default()
        };
        let Ok(jobs) = self.org.store().read(|tx| tx.bulk_jobs(&filter)) else {
            return;
        };
        for j in jobs {
            let seq = j.seq;
            let r = self
                .org
                .store()
                .write(move |tx| {
                    let old = tx.bulk_job(seq)?.filter(|j| {
                        (j.kind == "Classic"
                            || JobState::parse(&j.state).is_some_and(JobState::is_terminal))
                            && j.modstamp_ms < cutoff
                    });
                    if let Some(j) = old {
                        tx.delete_bulk_job(seq)?;
                        return Ok(Some(j));
                    }
                    Ok(None)
                })
                .await;
            if let Ok(Some(j)) = r {
                if j.kind == "Classic" {
                    self.delete_classic_batches(j.seq).await;
                }
                self.remove_files(&j).await;
            }
        }
        self.clean_files(Some(86_400_000));
    }
}

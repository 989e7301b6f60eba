//! Batch Data Synchronization: sync jobs move rows from a source into a target in batches,
//! each batch written in one transaction together with the job's cursor, so the cursor never
//! passes rows the target has not committed and a failed or killed run continues from exactly
//! where the committed data ends. Rows the target refuses go to the job's error table with the
//! source key, the reason and the payload; a later run that writes them clears them.

pub mod bidirectional;
pub mod connector;
pub mod contract;
pub mod files;
pub mod http;
pub mod job;
pub mod mysql;
pub mod org_source;
pub mod postgres;
pub mod remote;
pub mod targets;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use model::value::now_millis;
use model::{ApiError, ApiResult, ErrorCode, Schema};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use service::automation::BoxFuture;
use service::{Org, Principal};
use store::{SyncErrorRow, SyncRunRow};

use job::{Job, JobDef, Operation, SourceDef, TargetDef};

/// The setting holding the API-managed jobs.
const API_JOBS: &str = "sync.jobs";

/// Where a job's read position is: the cursor column's value and the key, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The cursor column's value.
    pub value: String,
    /// The key column's value.
    pub key: String,
}

fn cursor_setting(job: &str) -> String {
    format!("sync.cursor.{job}")
}

/// A run in progress, as the API shows it.
#[derive(Debug, Clone, Default)]
struct Progress {
    run: u64,
    read: u64,
    written: u64,
    failed: u64,
}

/// The org's sync jobs.
pub struct Engine {
    jobs: RwLock<BTreeMap<String, (Arc<Job>, bool)>>,
    files: Mutex<Vec<JobDef>>,
    api: Mutex<BTreeMap<String, Json>>,
    admin: tokio::sync::Mutex<()>,
    running: Mutex<HashMap<String, Progress>>,
    /// Where named credentials come from (remote orgs).
    automation: Arc<automation::Automation>,
    /// The only folder file sources and targets may use.
    files_root: std::path::PathBuf,
}

impl Engine {
    /// No jobs yet; remote orgs are reached through `automation`'s named credentials, files
    /// must lie in `files_root`.
    pub fn new(
        automation: Arc<automation::Automation>,
        files_root: std::path::PathBuf,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            automation,
            files_root,
            jobs: RwLock::default(),
            files: Mutex::default(),
            api: Mutex::default(),
            admin: tokio::sync::Mutex::new(()),
            running: Mutex::default(),
        })
    }

    /// Reads the job files of `dir` and the API-managed jobs, installs them, and marks runs a
    /// stop interrupted. Returns how many jobs.
    pub async fn load(&self, org: &Org, dir: Option<&Path>) -> Result<usize, String> {
        let files = match dir {
            Some(d) => job::read_dir(d)?,
            None => Vec::new(),
        };
        let api: BTreeMap<String, Json> = match org
            .store()
            .read(|tx| tx.setting(API_JOBS))
            .map_err(|e| format!("cannot read the stored sync jobs: {e}"))?
        {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| format!("the stored sync jobs are damaged: {e}"))?,
            None => BTreeMap::new(),
        };
        *self.files.lock() = files;
        let jobs = self.compile_all(&api, &org.schema())?;
        let n = jobs.len();
        *self.jobs.write() = jobs;
        *self.api.lock() = api;
        let now = now_millis();
        org.store()
            .write(move |tx| Ok(tx.end_running_sync_runs(now)?))
            .await
            .map_err(|e| format!("cannot close interrupted sync runs: {}", e.message))?;
        Ok(n)
    }

    fn compile_all(
        &self,
        api: &BTreeMap<String, Json>,
        schema: &Schema,
    ) -> Result<BTreeMap<String, (Arc<Job>, bool)>, String> {
        let mut out = BTreeMap::new();
        let files = self.files.lock().clone();
        let mut defs: Vec<(JobDef, bool)> = files.into_iter().map(|d| (d, false)).collect();
        for (name, doc) in api {
            let d: JobDef = serde_json::from_value(doc.clone())
                .map_err(|e| format!("stored sync job {name}: {e}"))?;
            defs.push((d, true));
        }
        for (d, from_api) in defs {
            let name = d.name.clone();
            let j = job::compile(d, schema)?;
            if out.insert(name.clone(), (Arc::new(j), from_api)).is_some() {
                return Err(format!("two sync jobs are named {name}"));
            }
        }
        Ok(out)
    }

    fn job_json(&self, org: &Org, job: &Job, from_api: bool) -> Json {
        let name = &job.def.name;
        let cursor = org
            .store()
            .read(|tx| tx.setting(&cursor_setting(name)))
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<Json>(&t).ok());
        let last = org
            .store()
            .read(|tx| tx.sync_runs(name, 1))
            .ok()
            .and_then(|r| r.into_iter().next());
        let running = self.running.lock().get(name).cloned();
        let mut v = serde_json::to_value(&job.def).unwrap_or(Json::Null);
        if let Json::Object(m) = &mut v {
            m.insert(
                "source_of_definition".into(),
                json!(if from_api { "api" } else { "file" }),
            );
            m.insert("cursor".into(), cursor.unwrap_or(Json::Null));
            if job.bidirectional.is_some() {
                let at = org
                    .store()
                    .read(|tx| tx.setting(&bidirectional::change_setting(name)))
                    .ok()
                    .flatten()
                    .and_then(|t| t.parse::<u64>().ok());
                m.insert("changeCursor".into(), json!(at));
            }
            m.insert("lastRun".into(), last.as_ref().map_or(Json::Null, run_json));
            m.insert(
                "running".into(),
                running.map_or(Json::Null, |p| {
                    json!({"runId": p.run, "read": p.read, "written": p.written, "failed": p.failed})
                }),
            );
        }
        v
    }

    /// Runs `job` to the end (in the background task that `start` made).
    async fn run(self: Arc<Self>, org: Arc<Org>, p: Principal, job: Arc<Job>, mut run: SyncRunRow) {
        let name = job.def.name.clone();
        let mut result = self.run_batches(&org, &p, &job, &mut run).await;
        if result.is_ok() && job.def.kind.as_deref() == Some("migration") {
            match self.validate(&org, &p, &job).await {
                Ok(report) => run.report = Some(report.to_string()),
                Err(m) => result = Err(format!("validating the migration: {m}")),
            }
        }
        run.ended_ms = Some(now_millis());
        match result {
            Ok(()) => run.status = "succeeded".into(),
            Err(m) => {
                tracing::warn!(job = %name, "sync run failed: {m}");
                run.status = "failed".into();
                run.message = Some(m);
            }
        }
        // The job is free before its end is on record: a client that sees the run ended may
        // start or reset the job at once (a run left "running" by a crash in between is ended
        // at the next start).
        self.running.lock().remove(&name);
        let r = run.clone();
        if let Err(e) = org.store().write(move |tx| Ok(tx.put_sync_run(&r)?)).await {
            tracing::error!(job = %name, error = %e.message, "cannot record the end of a sync run");
        }
    }

    /// Shows a run's counts as its job's progress.
    fn progress(&self, parent: &str, run: &SyncRunRow) {
        if let Some(pr) = self.running.lock().get_mut(parent) {
            pr.read = run.read;
            pr.written = run.written;
            pr.failed = run.failed;
        }
    }

    /// Runs every leg of the job (itself, then its streams), each from its own cursor.
    async fn run_batches(
        &self,
        org: &Arc<Org>,
        p: &Principal,
        job: &Arc<Job>,
        run: &mut SyncRunRow,
    ) -> Result<(), String> {
        if job.bidirectional.is_some() {
            return bidirectional::run(self, org, p, job, run).await;
        }
        let parent = job.def.name.clone();
        self.run_leg(org, p, job, &parent, run).await?;
        for leg in &job.streams {
            self.run_leg(org, p, leg, &parent, run)
                .await
                .map_err(|m| format!("stream {}: {m}", leg.def.name))?;
        }
        Ok(())
    }

    /// Runs one source-to-target leg from its cursor; progress goes to `parent`'s entry.
    async fn run_leg(
        &self,
        org: &Arc<Org>,
        p: &Principal,
        job: &Arc<Job>,
        parent: &str,
        run: &mut SyncRunRow,
    ) -> Result<(), String> {
        let source = open_source(&job.def.source, org, p, self).await?;
        let writer = Writer::open(job, self).await?;
        let at: Option<Cursor> = org
            .store()
            .read(|tx| tx.setting(&cursor_setting(&job.def.name)))
            .map_err(|e| format!("reading the cursor: {e}"))?
            .and_then(|t| serde_json::from_str(&t).ok());
        let n = job.def.batch_size;
        // A correlation only touches records the target already has: those with the same
        // values in the matching fields (its key by default), read once. A row matched by other
        // fields is written to the matched record: its key goes where the key's mapping reads.
        let present = if job.def.kind.as_deref() == Some("correlation") {
            let key = key_column(job)
                .ok_or("a correlation writes by the target's key (external id or key column)")?
                .to_string();
            let fields: Vec<String> = if job.def.match_on.is_empty() {
                vec![key.clone()]
            } else {
                job.def.match_on.clone()
            };
            let expr = |f: &String| job.mapping.iter().find(|(k, _)| k == f).map(|(_, e)| e);
            let exprs: Vec<&automation::jq::Expr> = fields.iter().filter_map(expr).collect();
            if exprs.len() != fields.len() {
                return Err("a correlation matches on fields the mapping sets".into());
            }
            let rekey = if fields.contains(&key) {
                None
            } else {
                let e = expr(&key).ok_or("the mapping does not set the target's key")?;
                Some(simple_path(e.source()).map(str::to_string).ok_or_else(|| {
                    format!(
                        "with match_on, the mapping of {key} reads one source field (`.id`), \
                         where the matched record's key is put"
                    )
                })?)
            };
            let mut with_key = fields.clone();
            let at = match fields.iter().position(|f| *f == key) {
                Some(i) => i,
                None => {
                    with_key.push(key);
                    fields.len()
                }
            };
            let mut matched: HashMap<String, Json> = HashMap::new();
            for t in self.target_tuples(org, p, job, &with_key).await? {
                let k = t.get(at).cloned().unwrap_or(Json::Null);
                if let Some(m) = tuple_key(t[..fields.len()].iter()) {
                    matched.insert(m, k);
                }
            }
            Some((matched, exprs, rekey))
        } else {
            None
        };
        let keep = |rows: Vec<postgres::Row>| -> (Vec<postgres::Row>, u64) {
            let Some((matched, exprs, rekey)) = &present else {
                return (rows, 0);
            };
            let n = rows.len() as u64;
            let kept: Vec<postgres::Row> = rows
                .into_iter()
                .filter_map(|mut r| {
                    let values: Vec<Json> = exprs
                        .iter()
                        .map(|e| map_value(e, &r.data).map_or(Json::Null, |v| v.into_owned()))
                        .collect();
                    let key = matched.get(&tuple_key(values.iter())?)?;
                    if let (Some(path), Json::Object(m)) = (rekey, &mut r.data) {
                        m.insert(path.clone(), key.clone());
                    }
                    Some(r)
                })
                .collect();
            let skipped = n - kept.len() as u64;
            (kept, skipped)
        };
        let mut rows = source.page(at.as_ref(), true, n).await?;
        if matches!(writer, Writer::Org) {
            // Into the org: while the writer commits one batch, the next is read, mapped and
            // validated (the cursor moves only with each commit; a failed commit drops what was
            // prepared ahead).
            let Some(last) = rows.last().map(|r| r.at.clone()) else {
                return Ok(());
            };
            let mut full = rows.len() == n;
            let (rows, skipped) = keep(rows);
            let mut batch = self.prepare_org(org, p, job, rows, &last, skipped)?;
            let mut last = last;
            loop {
                let commit = commit_org(org.clone(), run.clone(), batch);
                let ahead = async {
                    if !full {
                        return Ok(None);
                    }
                    let rows = source.page(Some(&last), false, n).await?;
                    let Some(l) = rows.last().map(|r| r.at.clone()) else {
                        return Ok(None);
                    };
                    let f = rows.len() == n;
                    let (rows, skipped) = keep(rows);
                    let b = self.prepare_org(org, p, job, rows, &l, skipped)?;
                    Ok::<_, String>(Some((b, l, f)))
                };
                let (done, next) = tokio::join!(commit, ahead);
                *run = done?;
                self.progress(parent, run);
                match next? {
                    Some((b, l, f)) => {
                        batch = b;
                        last = l;
                        full = f;
                    }
                    None => return Ok(()),
                }
            }
        }
        while let Some(last) = rows.last().map(|r| r.at.clone()) {
            let full = rows.len() == n;
            // Read the next page while this one is written (the cursor moves only with the
            // write; a failed write drops what was read ahead).
            let (kept, skipped) = keep(std::mem::take(&mut rows));
            let write = self.write_external(org, &writer, job, run, kept, &last, skipped);
            let read_ahead = async {
                if full {
                    Some(source.page(Some(&last), false, n).await)
                } else {
                    None
                }
            };
            let (written, next) = tokio::join!(write, read_ahead);
            written?;
            self.progress(parent, run);
            match next {
                Some(next) => rows = next?,
                None => break,
            }
        }
        Ok(())
    }

    /// A migration's validation report: the source's keys (the mapped key of every row) against
    /// the target's, with counts and samples of what is missing on either side.
    async fn validate(
        &self,
        org: &Arc<Org>,
        p: &Principal,
        job: &Arc<Job>,
    ) -> Result<Json, String> {
        use std::collections::BTreeSet;
        let key_col = match &job.def.target {
            TargetDef::Org {
                external_id: Some(ext),
                ..
            } => ext.clone(),
            TargetDef::Postgres { key, .. } | TargetDef::Mysql { key, .. } => key.clone(),
            _ => {
                return Ok(
                    json!({"skipped": "keys are compared for upserts into the org and for database targets"}),
                )
            }
        };
        let Some((_, expr)) = job.mapping.iter().find(|(k, _)| *k == key_col) else {
            return Ok(json!({"skipped": format!("the mapping does not set {key_col}")}));
        };
        let text = json_text;
        // Every source row, in pages.
        let source = open_source(&job.def.source, org, p, self).await?;
        let mut src = BTreeSet::new();
        let mut rows_read = 0u64;
        let mut at: Option<Cursor> = None;
        loop {
            let rows = source.page(at.as_ref(), false, 5_000).await?;
            rows_read += rows.len() as u64;
            for r in &rows {
                if let Some(k) = map_value(expr, &r.data).ok().and_then(|v| text(&v)) {
                    src.insert(k);
                }
            }
            match rows.last() {
                Some(l) if rows.len() == 5_000 => at = Some(l.at.clone()),
                _ => break,
            }
        }
        let tgt = self.target_keys(org, p, job, &key_col).await?;
        let missing: Vec<&String> = src.difference(&tgt).collect();
        let extra: Vec<&String> = tgt.difference(&src).collect();
        Ok(json!({
            "key": key_col,
            "sourceRows": rows_read,
            "sourceKeys": src.len(),
            "targetKeys": tgt.len(),
            "matched": src.intersection(&tgt).count(),
            "missingInTarget": {"count": missing.len(), "sample": missing.iter().take(20).collect::<Vec<_>>()},
            "onlyInTarget": {"count": extra.len(), "sample": extra.iter().take(20).collect::<Vec<_>>()},
            "valid": missing.is_empty(),
        }))
    }

    /// The values of `fields` of every record of the job's target.
    async fn target_tuples(
        &self,
        org: &Arc<Org>,
        p: &Principal,
        job: &Arc<Job>,
        fields: &[String],
    ) -> Result<Vec<Vec<Json>>, String> {
        let tuples = match Writer::open(job, self).await? {
            Writer::External(t) => t.tuples(fields).await?,
            Writer::Org => {
                let TargetDef::Org { object, .. } = &job.def.target else {
                    return Err("not an org target".into());
                };
                let target = connector::OrgTarget {
                    org: org.clone(),
                    p: p.clone(),
                    object: object.clone(),
                    operation: job.operation,
                    external_id: None,
                };
                connector::Target::tuples(&target, fields).await?
            }
        };
        tuples.ok_or_else(|| {
            "a correlation reads the target's records; this target cannot list them (use the \
             org, a remote org or a database)"
                .to_string()
        })
    }

    /// Every key of the job's target (its key column, or the external id field in the org).
    async fn target_keys(
        &self,
        org: &Arc<Org>,
        p: &Principal,
        job: &Arc<Job>,
        key_col: &str,
    ) -> Result<std::collections::BTreeSet<String>, String> {
        Ok(match Writer::open(job, self).await? {
            Writer::External(t) => t.keys().await?.unwrap_or_default().into_iter().collect(),
            Writer::Org => {
                let TargetDef::Org { object, .. } = &job.def.target else {
                    return Err("not an org target".into());
                };
                let target = connector::OrgTarget {
                    org: org.clone(),
                    p: p.clone(),
                    object: object.clone(),
                    operation: job.operation,
                    external_id: Some(key_col.to_string()),
                };
                connector::Target::keys(&target)
                    .await?
                    .unwrap_or_default()
                    .into_iter()
                    .collect()
            }
        })
    }

    /// Starts the runs of scheduled jobs when they are due, and of change-triggered jobs when
    /// their object changed (by anyone but the job), until `shutdown` (once, in the
    /// background). A job still running is not started twice; its changes wait for the end.
    pub async fn run_schedules(
        self: Arc<Self>,
        org: Arc<Org>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use chrono::Utc;
        let mut next: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
        // Change-triggered jobs: the replay id up to which changes were looked at (0 at start:
        // changes still in the log start a run that catches up).
        let mut seen: HashMap<String, u64> = HashMap::new();
        loop {
            let jobs: Vec<Arc<Job>> = self
                .jobs
                .read()
                .values()
                .map(|(j, _)| j.clone())
                .filter(|j| j.schedule.is_some() || j.def.trigger.is_some())
                .collect();
            let now = Utc::now();
            next.retain(|name, _| jobs.iter().any(|j| &j.def.name == name));
            seen.retain(|name, _| jobs.iter().any(|j| &j.def.name == name));
            for job in &jobs {
                let name = &job.def.name;
                let mut start = false;
                if let Some(schedule) = &job.schedule {
                    let due = *next
                        .entry(name.clone())
                        .or_insert_with(|| schedule.after(&now).next().unwrap_or(now));
                    if due <= now {
                        next.insert(name.clone(), schedule.after(&now).next().unwrap_or(now));
                        start = true;
                    }
                }
                let running = self.running.lock().contains_key(name);
                if job.def.trigger.is_some() && !running {
                    let at = seen.entry(name.clone()).or_insert(0);
                    start |= self.changed_since(&org, job, at);
                }
                if !start || running {
                    continue;
                }
                let user = job.def.run_as.clone().unwrap_or_default();
                let p = match org
                    .user_by_username(&user)
                    .ok()
                    .flatten()
                    .filter(|u| u.active)
                    .map(|u| org.principal_for(u.seq))
                {
                    Some(Ok(p)) => p,
                    _ => {
                        tracing::warn!(job = %name, "sync run skipped: no active user {user}");
                        continue;
                    }
                };
                if let Err(e) =
                    service::sync::SyncJobs::start(self.clone(), org.clone(), p, name).await
                {
                    tracing::warn!(job = %name, error = %e.message, "sync run not started");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            }
        }
    }

    /// Whether the source object of change-triggered `job` has change events after `at` that
    /// the job did not cause; moves `at` past what was looked at.
    fn changed_since(&self, org: &Org, job: &Job, at: &mut u64) -> bool {
        let SourceDef::Org { object, .. } = &job.def.source else {
            return false;
        };
        let Some(stream) = org.schema().object(object).map(|o| o.change_event_name()) else {
            return false;
        };
        let bus = org.events();
        let mut found = false;
        while *at < bus.tip() {
            let Ok(b) = bus.read(
                &service::events::Selection::Stream(stream.clone()),
                *at,
                500,
            ) else {
                break;
            };
            found |= b
                .events
                .iter()
                .any(|e| !bidirectional::is_own(&e.event.payload, &job.def.name));
            if b.through <= *at {
                break;
            }
            *at = b.through;
        }
        found
    }

    /// Maps a batch for the org and validates it (outside the writer); [`commit_org`] writes it.
    fn prepare_org(
        &self,
        org: &Arc<Org>,
        p: &Principal,
        job: &Arc<Job>,
        rows: Vec<postgres::Row>,
        last: &Cursor,
        skipped: u64,
    ) -> Result<OrgBatch, String> {
        let TargetDef::Org {
            object,
            external_id,
            ..
        } = &job.def.target
        else {
            return Err("not an org target".into());
        };
        let schema = org.schema();
        let o = schema
            .object(object)
            .cloned()
            .ok_or_else(|| format!("the object {object} no longer exists"))?;
        let (job2, p2, ext, op) = (
            job.def.name.clone(),
            p.clone(),
            external_id.clone(),
            job.operation,
        );
        let setting = cursor_setting(&job.def.name);
        // Rows go through the Bulk API's ingest plan: the same checks, the batched insert path
        // (and flows, row by row, for objects they watch), one outcome per row.
        let bulk_op = match op {
            Operation::Insert => service::bulk::Operation::Insert,
            Operation::Upsert => service::bulk::Operation::Upsert,
            Operation::Update => service::bulk::Operation::Update,
            Operation::Delete => service::bulk::Operation::Delete,
        };
        // Columns: a field, or `Relationship.External_Id__c` for a parent looked up by its
        // external id (the mapping gives `{External_Id__c: value}`).
        let mut columns: Vec<(String, Option<String>)> = Vec::new();
        for (k, e) in &job.mapping {
            let inner = if o.field_index(k).is_none() {
                rows.iter()
                    .filter_map(|r| map_value(e, &r.data).ok())
                    .find_map(|v| v.as_object().and_then(|m| m.keys().next().cloned()))
            } else {
                None
            };
            columns.push((k.clone(), inner));
        }
        let header: Vec<String> = columns
            .iter()
            .map(|(k, inner)| match inner {
                Some(e) => format!("{k}.{e}"),
                None => k.clone(),
            })
            .collect();
        let plan =
            service::bulk::IngestPlan::new(&p2, &schema, &o, bulk_op, ext.as_deref(), &header)
                .map_err(|e| format!("the mapping does not fit {}: {e}", o.name))?;
        // Each row as text cells in header order (None: set to null).
        let mut keys = Vec::new();
        let mut texts: Vec<Vec<Option<String>>> = Vec::new();
        let mut early: Vec<(String, String, String)> = Vec::new();
        for r in &rows {
            let mut row = Vec::with_capacity(columns.len());
            let mut bad = None;
            for ((k, inner), (_, e)) in columns.iter().zip(&job.mapping) {
                let v = match map_value(e, &r.data) {
                    Ok(v) => v,
                    Err(m) => {
                        bad = Some(format!("mapping {k}: {m}"));
                        break;
                    }
                };
                let v: &Json = match (inner, &*v) {
                    (Some(e), Json::Object(m)) => m.get(e).unwrap_or(&Json::Null),
                    (Some(_), Json::Null) => &Json::Null,
                    (Some(e), other) => {
                        bad = Some(format!(
                            "the mapping of {k} gave {other}, not {{{e}: value}}"
                        ));
                        break;
                    }
                    (None, v) => v,
                };
                row.push(match v {
                    Json::Null => None,
                    Json::String(s) if s.is_empty() => None,
                    Json::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                });
            }
            match bad {
                Some(m) => early.push((r.at.key.clone(), m, r.data.to_string())),
                None => {
                    keys.push(r.at.key.clone());
                    texts.push(row);
                }
            }
        }
        let chunk = plan.prepare(
            &p2,
            org.store().marker(),
            texts.iter().map(|row| {
                row.iter()
                    .map(|c| match c {
                        Some(t) => service::bulk::Cell::Text(t),
                        None => service::bulk::Cell::Null,
                    })
                    .collect::<Vec<_>>()
            }),
        );
        Ok(OrgBatch {
            early,
            plan,
            p: p2,
            chunk,
            keys,
            texts,
            header,
            job: job2,
            setting,
            read: rows.len() as u64 + skipped,
            cursor_to: serde_json::to_string(last).expect("cursor serializes"),
            object: object.clone(),
        })
    }
}

/// A batch for the org, validated and ready for the writer.
struct OrgBatch {
    early: Vec<(String, String, String)>,
    plan: service::bulk::IngestPlan,
    p: Principal,
    chunk: service::bulk::PreparedChunk,
    keys: Vec<String>,
    texts: Vec<Vec<Option<String>>>,
    header: Vec<String>,
    job: String,
    setting: String,
    read: u64,
    cursor_to: String,
    object: String,
}

/// Writes a prepared batch, its errors, the cursor and the run's counts (`next` continues the
/// run's) in one transaction; the run as it is after it.
async fn commit_org(
    org: Arc<Org>,
    mut next: SyncRunRow,
    b: OrgBatch,
) -> Result<SyncRunRow, String> {
    let OrgBatch {
        early,
        plan,
        p: p2,
        chunk,
        keys,
        texts,
        header,
        job: job2,
        setting,
        read,
        cursor_to,
        object,
    } = b;
    next.read += read;
    next.cursor_to = Some(cursor_to);
    let done = org
        .store()
        .write(move |tx| {
            let now = now_millis();
            for (key, error, payload) in &early {
                tx.put_sync_error(&SyncErrorRow {
                    job: job2.clone(),
                    run: next.id,
                    key: key.clone(),
                    error: error.clone(),
                    payload: payload.clone(),
                    created_ms: now,
                })?;
                next.failed += 1;
            }
            let outcomes = plan.apply(tx, &p2, chunk, now)?;
            let mut ok = Vec::new();
            for ((key, cells), outcome) in keys.iter().zip(&texts).zip(outcomes) {
                match outcome {
                    service::bulk::RowOutcome::Ok { .. } => {
                        ok.push(key.clone());
                        next.written += 1;
                    }
                    service::bulk::RowOutcome::Err { error, .. } => {
                        // The row as written: its cells by column.
                        let payload: serde_json::Map<String, Json> = header
                            .iter()
                            .zip(cells)
                            .map(|(h, c)| (h.clone(), c.clone().map_or(Json::Null, Json::String)))
                            .collect();
                        tx.put_sync_error(&SyncErrorRow {
                            job: job2.clone(),
                            run: next.id,
                            key: key.clone(),
                            error: format!("{}: {}", error.code, error.message),
                            payload: Json::Object(payload).to_string(),
                            created_ms: now,
                        })?;
                        next.failed += 1;
                    }
                }
            }
            tx.clear_sync_errors(&job2, &ok)?;
            tx.set_setting(&setting, next.cursor_to.as_deref().unwrap_or("null"))?;
            tx.put_sync_run(&next)?;
            Ok(next)
        })
        .await
        .map_err(|e| format!("writing a batch: {}", e.message))?;
    org.note_write(&object);
    Ok(done)
}

impl Engine {
    /// A file path of a job, inside the files folder (relative paths are taken from it).
    fn file_path(&self, path: &str) -> Result<String, String> {
        let p = std::path::Path::new(path);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.files_root.join(p)
        };
        let escapes = p
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        if escapes || !full.starts_with(&self.files_root) {
            return Err(format!(
                "{path} is outside the files folder {}; sync jobs read and write files there only",
                self.files_root.display()
            ));
        }
        Ok(full.to_string_lossy().into_owned())
    }

    /// The credential of an HTTP connector: the named one, or one without authentication for
    /// an absolute URL.
    fn http_credential(
        &self,
        name: Option<&str>,
        url: &str,
    ) -> Result<Arc<automation::credentials::Credential>, String> {
        match name {
            Some(n) => self.credential(n),
            None => automation::credentials::build("http", &json!({"url": url}))
                .map(Arc::new)
                .map_err(|m| format!("{m} (give an absolute URL, or a credential)")),
        }
    }

    fn credential(&self, name: &str) -> Result<Arc<automation::credentials::Credential>, String> {
        self.automation.named_credential(name).ok_or_else(|| {
            format!("there is no named credential {name} (conflux/named-credentials/{name})")
        })
    }
}

/// Opens a job's source.
async fn open_source(
    def: &SourceDef,
    org: &Arc<Org>,
    p: &Principal,
    engine: &Engine,
) -> Result<Box<dyn connector::Source>, String> {
    use connector::{FileSource, RemoteSource};
    Ok(match (def, def.table()) {
        (SourceDef::File { path, format }, _) => Box::new(FileSource {
            path: engine.file_path(path)?,
            format: files::Format::parse(format.as_deref(), path)?,
        }),
        (
            SourceDef::Salesforce {
                credential,
                object,
                fields,
                api_version,
                overlap_seconds,
                bulk,
            },
            _,
        ) => Box::new(RemoteSource {
            remote: remote::Remote::new(engine.credential(credential)?, api_version, object),
            fields: fields.clone(),
            overlap: *overlap_seconds,
            bulk: bulk.then(http::Held::default),
        }),
        (
            SourceDef::Http {
                url,
                credential,
                records,
                next,
                since_param,
                cursor,
                key,
                overlap_seconds,
            },
            _,
        ) => Box::new(http::HttpSource::new(
            engine.http_credential(credential.as_deref(), url)?,
            http::HttpSourceDef {
                url,
                records: records.as_deref(),
                next: next.as_deref(),
                since: since_param.as_deref(),
                cursor,
                key,
                overlap_secs: *overlap_seconds,
            },
        )?),
        (
            SourceDef::Org {
                object,
                overlap_seconds,
            },
            _,
        ) => Box::new(org_source::Source::open(
            org.clone(),
            p.clone(),
            object,
            *overlap_seconds,
        )?),
        (SourceDef::Postgres { .. }, Some(t)) => Box::new(
            postgres::Source::open(t.url, t.table, t.cursor, t.key, t.overlap_seconds).await?,
        ),
        (SourceDef::Mysql { .. }, Some(t)) => {
            Box::new(mysql::Source::open(t.url, t.table, t.cursor, t.key, t.overlap_seconds).await?)
        }
        _ => return Err("the source is incomplete".into()),
    })
}

/// An open target: this org (written by the engine together with the cursor) or another.
enum Writer {
    Org,
    External(Box<dyn connector::Target>),
}

impl Writer {
    async fn open(job: &Job, engine: &Engine) -> Result<Writer, String> {
        let def = &job.def.target;
        let columns = mapping_columns(job);
        let parallelism = job.def.parallelism.unwrap_or(1);
        use connector::{FileTarget, RemoteTarget};
        Ok(Writer::External(match def {
            TargetDef::Org { .. } => return Ok(Writer::Org),
            TargetDef::File { path, format } => Box::new(FileTarget {
                path: engine.file_path(path)?,
                format: files::Format::parse(format.as_deref(), path)?,
                columns,
            }),
            TargetDef::Http {
                url,
                method,
                credential,
            } => Box::new(http::HttpTarget::new(
                engine.http_credential(credential.as_deref(), url)?,
                url,
                method,
                parallelism,
            )?),
            TargetDef::Salesforce {
                credential,
                object,
                operation,
                external_id,
                api_version,
                bulk,
            } => Box::new(RemoteTarget {
                bulk: *bulk,
                parallelism,
                remote: remote::Remote::new(engine.credential(credential)?, api_version, object),
                operation: match operation.as_str() {
                    "insert" => Operation::Insert,
                    "update" => Operation::Update,
                    "delete" => Operation::Delete,
                    _ => Operation::Upsert,
                },
                external_id: external_id.clone(),
            }),
            TargetDef::Postgres { url, table, key } => {
                Box::new(targets::Postgres::open(url, table, key).await?)
            }
            TargetDef::Mysql { url, table, key } => {
                Box::new(targets::Mysql::open(url, table, key).await?)
            }
        }))
    }
}

impl Engine {
    /// Maps a batch, writes it to a database target (committed there first), then records its
    /// errors, the cursor and the run's counts in the org.
    #[allow(clippy::too_many_arguments)]
    async fn write_external(
        &self,
        org: &Arc<Org>,
        writer: &Writer,
        job: &Arc<Job>,
        run: &mut SyncRunRow,
        rows: Vec<postgres::Row>,
        last: &Cursor,
        skipped: u64,
    ) -> Result<(), String> {
        let mapped: Vec<(String, Result<Record, String>)> = rows
            .iter()
            .map(|r| (r.at.key.clone(), map_row(job, &r.data)))
            .collect();
        let good: Vec<&serde_json::Map<String, Json>> =
            mapped.iter().filter_map(|(_, m)| m.as_ref().ok()).collect();
        let outcomes = match writer {
            Writer::External(t) => t.write(&good).await?,
            Writer::Org => unreachable!("org targets are written by commit_org"),
        };
        let mut outcomes = outcomes.into_iter();
        let now = now_millis();
        let mut next = run.clone();
        next.read += rows.len() as u64 + skipped;
        next.cursor_to = Some(serde_json::to_string(last).expect("cursor serializes"));
        let mut errors = Vec::new();
        let mut ok = Vec::new();
        for (key, m) in &mapped {
            let result = match m {
                Ok(body) => outcomes
                    .next()
                    .unwrap_or(Ok(()))
                    .map_err(|e| (e, Json::Object(body.clone()).to_string())),
                Err(e) => Err((e.clone(), "null".to_string())),
            };
            match result {
                Ok(()) => {
                    ok.push(key.clone());
                    next.written += 1;
                }
                Err((error, payload)) => {
                    next.failed += 1;
                    errors.push(SyncErrorRow {
                        job: job.def.name.clone(),
                        run: next.id,
                        key: key.clone(),
                        error,
                        payload,
                        created_ms: now,
                    });
                }
            }
        }
        let (name, setting) = (job.def.name.clone(), cursor_setting(&job.def.name));
        let done = org
            .store()
            .write(move |tx| {
                for e in &errors {
                    tx.put_sync_error(e)?;
                }
                tx.clear_sync_errors(&name, &ok)?;
                tx.set_setting(&setting, next.cursor_to.as_deref().unwrap_or("null"))?;
                tx.put_sync_run(&next)?;
                Ok(next)
            })
            .await
            .map_err(|e| format!("recording a batch: {}", e.message))?;
        *run = done;
        Ok(())
    }
}

/// A point in time in any of the usual text forms (Salesforce's, PostgreSQL's), as ms.
pub(crate) fn instant(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDateTime};
    if let Some(ms) = model::value::parse_datetime(text) {
        return Some(ms);
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, f) {
            return Some(t.timestamp_millis());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// A JSON value as the text it stands for: strings as they are, other values as JSON, null as
/// nothing (keys, cells and URL parts are compared and written this way).
pub(crate) fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Values as one text (`None` when one of them is null or empty: such rows match nothing).
fn tuple_key<'a>(values: impl Iterator<Item = &'a Json>) -> Option<String> {
    let mut out = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push('\u{1f}');
        }
        match v {
            Json::Null => return None,
            Json::String(s) if s.is_empty() => return None,
            Json::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
    }
    Some(out)
}

/// The mapping's target columns, in order.
fn mapping_columns(job: &Job) -> Vec<String> {
    job.mapping.iter().map(|(c, _)| c.clone()).collect()
}

/// The mapping column that keys the target: its external id (org) or key column (databases).
fn key_column(job: &Job) -> Option<&str> {
    match &job.def.target {
        TargetDef::Org { external_id, .. } | TargetDef::Salesforce { external_id, .. } => {
            external_id.as_deref()
        }
        TargetDef::Postgres { key, .. } | TargetDef::Mysql { key, .. } => Some(key),
        TargetDef::File { .. } | TargetDef::Http { .. } => None,
    }
}

/// A mapped row: target field or column → value.
pub type Record = serde_json::Map<String, Json>;

/// A source row through the job's mapping.
fn map_row(job: &Job, data: &Json) -> Result<serde_json::Map<String, Json>, String> {
    let mut m = serde_json::Map::new();
    for (f, e) in &job.mapping {
        let v = map_value(e, data).map_err(|err| format!("mapping {f}: {err}"))?;
        m.insert(f.clone(), v.into_owned());
    }
    Ok(m)
}

/// One mapping's value for a source row: `.column` (the usual mapping) is read directly,
/// anything else runs through jq.
fn map_value<'a>(
    e: &automation::jq::Expr,
    data: &'a Json,
) -> Result<std::borrow::Cow<'a, Json>, String> {
    static NULL: Json = Json::Null;
    match simple_path(e.source()) {
        Some(name) if data.is_object() => {
            Ok(std::borrow::Cow::Borrowed(data.get(name).unwrap_or(&NULL)))
        }
        _ => e.first(data, &Json::Null).map(std::borrow::Cow::Owned),
    }
}

/// `name` when `expr` is exactly `.name` (an identifier).
fn simple_path(expr: &str) -> Option<&str> {
    let name = expr.trim().strip_prefix('.')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
}

fn run_json(r: &SyncRunRow) -> Json {
    use model::value::format_datetime_z;
    json!({
        "runId": r.id,
        "status": r.status,
        "startedDate": format_datetime_z(r.started_ms),
        "endedDate": r.ended_ms.map(format_datetime_z),
        "read": r.read,
        "written": r.written,
        "failed": r.failed,
        "cursorFrom": r.cursor_from.as_deref().and_then(|t| serde_json::from_str::<Json>(t).ok()),
        "cursorTo": r.cursor_to.as_deref().and_then(|t| serde_json::from_str::<Json>(t).ok()),
        "message": r.message,
        "report": r.report.as_deref().and_then(|t| serde_json::from_str::<Json>(t).ok()),
    })
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidInput, msg)
}

impl service::sync::SyncJobs for Engine {
    fn jobs(&self, org: &Org) -> Vec<Json> {
        let jobs: Vec<(Arc<Job>, bool)> = self.jobs.read().values().cloned().collect();
        jobs.iter()
            .map(|(j, a)| self.job_json(org, j, *a))
            .collect()
    }

    fn job(&self, org: &Org, name: &str) -> Option<Json> {
        let (j, a) = self.jobs.read().get(name).cloned()?;
        Some(self.job_json(org, &j, a))
    }

    fn put_job<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        mut doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>> {
        Box::pin(async move {
            let _one = self.admin.lock().await;
            service::metadata::name_definition(
                &mut doc,
                name,
                "sync job",
                "{source, target, mapping}",
            )?;
            let _: JobDef = serde_json::from_value(doc.clone())
                .map_err(|e| invalid(format!("sync job {name}: {e}")))?;
            if self.files.lock().iter().any(|f| f.name == name) {
                return Err(invalid(format!(
                    "sync job {name} is defined in the metadata folder; change its file instead"
                )));
            }
            let mut api = self.api.lock().clone();
            let created = api.insert(name.to_string(), doc).is_none();
            let jobs = self.compile_all(&api, &org.schema()).map_err(invalid)?;
            let text = serde_json::to_string(&api).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(API_JOBS, &text)?))
                .await?;
            *self.api.lock() = api;
            *self.jobs.write() = jobs;
            let shown = self.job(org, name).unwrap_or(Json::Null);
            Ok((shown, created))
        })
    }

    fn delete_job<'a>(&'a self, org: &'a Org, name: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let _one = self.admin.lock().await;
            if self.running.lock().contains_key(name) {
                return Err(invalid(format!("sync job {name} is running")));
            }
            let mut api = self.api.lock().clone();
            if api.remove(name).is_none() {
                return Err(ApiError::not_found());
            }
            let jobs = self.compile_all(&api, &org.schema()).map_err(invalid)?;
            let text = serde_json::to_string(&api).expect("JSON values serialize");
            org.store()
                .write(move |tx| Ok(tx.set_setting(API_JOBS, &text)?))
                .await?;
            *self.api.lock() = api;
            *self.jobs.write() = jobs;
            Ok(())
        })
    }

    fn start<'a>(
        self: Arc<Self>,
        org: Arc<Org>,
        p: Principal,
        name: &'a str,
    ) -> BoxFuture<'a, ApiResult<u64>> {
        Box::pin(async move {
            let (job, _) = self
                .jobs
                .read()
                .get(name)
                .cloned()
                .ok_or_else(ApiError::not_found)?;
            {
                let mut running = self.running.lock();
                if running.contains_key(name) {
                    return Err(ApiError::new(
                        ErrorCode::InvalidOperation,
                        format!("sync job {name} is already running"),
                    ));
                }
                running.insert(name.to_string(), Progress::default());
            }
            let from = org
                .store()
                .read(|tx| tx.setting(&cursor_setting(name)))
                .ok()
                .flatten();
            let mut run = SyncRunRow {
                job: name.to_string(),
                started_ms: now_millis(),
                status: "running".into(),
                cursor_from: from.clone(),
                cursor_to: from,
                ..SyncRunRow::default()
            };
            let r = run.clone();
            let id = match org.store().write(move |tx| Ok(tx.put_sync_run(&r)?)).await {
                Ok(id) => id,
                Err(e) => {
                    self.running.lock().remove(name);
                    return Err(e);
                }
            };
            run.id = id;
            if let Some(pr) = self.running.lock().get_mut(name) {
                pr.run = id;
            }
            tokio::spawn(self.clone().run(org, p, job, run));
            Ok(id)
        })
    }

    fn runs(&self, org: &Org, name: &str, limit: usize) -> ApiResult<Vec<Json>> {
        if !self.jobs.read().contains_key(name) {
            return Err(ApiError::not_found());
        }
        let rows = org.store().read(|tx| tx.sync_runs(name, limit))?;
        Ok(rows.iter().map(run_json).collect())
    }

    fn errors(&self, org: &Org, name: &str, limit: usize) -> ApiResult<Vec<Json>> {
        let Some((job, _)) = self.jobs.read().get(name).cloned() else {
            return Err(ApiError::not_found());
        };
        let mut rows = org.store().read(|tx| tx.sync_errors(name, limit))?;
        for leg in &job.streams {
            rows.extend(
                org.store()
                    .read(|tx| tx.sync_errors(&leg.def.name, limit))?,
            );
        }
        rows.truncate(limit);
        Ok(rows
            .iter()
            .map(|e| {
                json!({
                    "key": e.key,
                    "runId": e.run,
                    "error": e.error,
                    "payload": serde_json::from_str::<Json>(&e.payload).unwrap_or(Json::Null),
                    "date": model::value::format_datetime_z(e.created_ms),
                })
            })
            .collect())
    }

    fn reset<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        cursor: Option<Json>,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let Some((job, _)) = self.jobs.read().get(name).cloned() else {
                return Err(ApiError::not_found());
            };
            if self.running.lock().contains_key(name) {
                return Err(invalid(format!("sync job {name} is running")));
            }
            if !job.streams.is_empty() {
                if cursor.is_some() {
                    return Err(invalid(
                        "a job with streams is reset to the beginning only (each stream has its own cursor)",
                    ));
                }
                let keys: Vec<String> = std::iter::once(name.to_string())
                    .chain(job.streams.iter().map(|l| l.def.name.clone()))
                    .map(|n| cursor_setting(&n))
                    .collect();
                return org
                    .store()
                    .write(move |tx| {
                        for k in &keys {
                            tx.set_setting(k, "null")?;
                        }
                        Ok(())
                    })
                    .await;
            }
            if job.bidirectional.is_some() {
                if cursor.is_some() {
                    return Err(invalid(
                        "a bidirectional job is reset to the beginning only (it then compares every record)",
                    ));
                }
                let (name, ds, cs) = (
                    name.to_string(),
                    cursor_setting(name),
                    bidirectional::change_setting(name),
                );
                return org
                    .store()
                    .write(move |tx| {
                        tx.set_setting(&ds, "null")?;
                        tx.set_setting(&cs, "null")?;
                        tx.clear_sync_state(&name)?;
                        Ok(())
                    })
                    .await;
            }
            let value = match cursor {
                None | Some(Json::Null) => None,
                Some(c) => {
                    let c: Cursor = serde_json::from_value(c).map_err(|e| {
                        invalid(format!("a cursor is {{\"value\": …, \"key\": …}}: {e}"))
                    })?;
                    Some(serde_json::to_string(&c).expect("cursor serializes"))
                }
            };
            let key = cursor_setting(name);
            org.store()
                .write(move |tx| Ok(tx.set_setting(&key, value.as_deref().unwrap_or("null"))?))
                .await
        })
    }
}

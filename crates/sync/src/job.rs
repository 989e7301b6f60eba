//! Sync job definitions: what a job file says (YAML or JSON, one job per file in
//! `metadata/sync/`, or through the admin API), checked and compiled once.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use automation::jq::Expr;

/// A sync job as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobDef {
    /// Its unique name.
    pub name: String,
    /// A label for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Where rows come from.
    pub source: SourceDef,
    /// Where they go.
    pub target: TargetDef,
    /// Target field → jq expression over the source row (`.`).
    pub mapping: Map<String, Json>,
    /// Rows read and written per transaction (default 500, at most 10,000).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Requests a remote-org or HTTP target has in flight at once within a batch (default 1, at
    /// most 32); outcomes keep the rows' order, and the cursor still moves per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// `incremental` (the default), `migration` (a run ends with a validation report comparing
    /// the source's keys with the target's), `broadcast` (`streams` add targets) or
    /// `aggregation` (`streams` add sources merged into the target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A correlation's matching fields: target fields or columns the mapping sets; a source row
    /// is written only when a target record has the same values in all of them (default: the
    /// target's key or external id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_on: Vec<String>,
    /// The further targets (broadcast) or sources (aggregation), each with its own mapping and
    /// its own cursor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamDef>,
    /// When to run by itself: a cron expression (`*/15 * * * *`, or six fields with seconds
    /// first), in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The user scheduled runs act as (required with `schedule` and `trigger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// `changes`: a run starts by itself when the org source's object changes (its change
    /// events; Change Data Capture must be on for it). Changes the job made itself do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// A bidirectional job's way back: the table's rows into the org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse: Option<ReverseDef>,
    /// A bidirectional job's conflict policy: which side wins a field both sides changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<ConflictDef>,
}

/// The database-to-org direction of a bidirectional job.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReverseDef {
    /// The org's external id field that holds the table's key.
    pub external_id: String,
    /// The table column that grows when a row changes (a timestamp: it also dates the row's
    /// edits for `last_writer_wins`).
    pub cursor: String,
    /// Seconds before the committed cursor each run reads again (default 5).
    #[serde(default = "default_overlap")]
    pub overlap_seconds: u64,
    /// Org field → jq expression over the table row (`.`).
    pub mapping: Map<String, Json>,
}

/// Who wins when both sides changed a field since they last agreed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConflictDef {
    /// The policy of fields not listed: `last_writer_wins` (the default), `source` (the org is
    /// the source of truth) or `target` (the table is).
    #[serde(default = "default_policy")]
    pub default: String,
    /// Table column → policy.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
}

fn default_policy() -> String {
    "last_writer_wins".into()
}

/// A compiled conflict policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The side whose row changed last wins.
    LastWriterWins,
    /// The org wins.
    Source,
    /// The table wins.
    Target,
}

impl Policy {
    fn parse(s: &str) -> Result<Policy, String> {
        Ok(match s {
            "last_writer_wins" => Policy::LastWriterWins,
            "source" => Policy::Source,
            "target" => Policy::Target,
            other => {
                return Err(format!(
                    "conflict policy {other:?} is not last_writer_wins, source or target"
                ))
            }
        })
    }
}

/// What a bidirectional job adds, compiled.
#[derive(Debug)]
pub struct Bidirectional {
    /// The org object.
    pub object: String,
    /// Its external id field holding the table's key.
    pub external_id: String,
    /// The table's key column.
    pub key: String,
    /// Org field → expression over the table row.
    pub reverse: Vec<(String, Expr)>,
    /// The policy of columns not in `fields`.
    pub default: Policy,
    /// Column → policy.
    pub fields: std::collections::BTreeMap<String, Policy>,
}

/// One more leg of a broadcast or aggregation job.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamDef {
    /// Its name (letters, digits, underscores), unique in the job.
    pub name: String,
    /// Another source (aggregation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceDef>,
    /// Another target (broadcast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetDef>,
    /// Its mapping.
    pub mapping: Map<String, Json>,
}

fn default_batch() -> usize {
    500
}

fn default_version() -> String {
    "60.0".into()
}

fn default_method() -> String {
    "POST".into()
}

fn default_overlap() -> u64 {
    5
}

/// A source as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceDef {
    /// A PostgreSQL table read incrementally by a compound cursor.
    Postgres {
        /// `postgres://user@host:port/database` (key=value strings work too).
        url: String,
        /// The table (optionally `schema.table`).
        table: String,
        /// The column that grows when a row changes (a timestamp, or any ordered type).
        cursor: String,
        /// A unique column that orders rows sharing a cursor value.
        key: String,
        /// Seconds before the committed cursor each run reads again, so rows committed late
        /// with an older cursor value are not missed (timestamp cursors; default 5).
        #[serde(default = "default_overlap")]
        overlap_seconds: u64,
    },
    /// This org: an object's records in `SystemModstamp` order.
    Org {
        /// The object read.
        object: String,
        /// Seconds before the committed cursor each run reads again (default 5).
        #[serde(default = "default_overlap")]
        overlap_seconds: u64,
    },
    /// An object of a remote Salesforce-compatible org, reached through a named credential.
    Salesforce {
        /// The named credential (its URL is the org's instance URL).
        credential: String,
        /// The object read.
        object: String,
        /// Fields selected besides `Id` and `SystemModstamp`.
        #[serde(default)]
        fields: Vec<String>,
        /// The API version (default 60.0).
        #[serde(default = "default_version")]
        api_version: String,
        /// Seconds before the committed cursor each run reads again (default 5).
        #[serde(default = "default_overlap")]
        overlap_seconds: u64,
        /// Read through one Bulk API 2.0 query job per run instead of the REST query resource
        /// (for large reads).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bulk: bool,
    },
    /// A CSV or JSON-lines file, read as an append-only log (the cursor counts rows read).
    File {
        /// The file's path (on the server).
        path: String,
        /// `csv` or `jsonl` (default: by extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// An HTTP JSON API, followed page by page from the committed cursor.
    Http {
        /// The first page: an absolute URL, or a path after the credential's URL.
        url: String,
        /// A named credential (base URL and authentication).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
        /// jq finding the records in a response (default: the response itself when it is an
        /// array, else its `records`, `data` or `items`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        records: Option<String>,
        /// jq finding the next page's URL in a response (absolute or relative; null ends).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
        /// The query parameter the API filters by: it is given the cursor value to read from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_param: Option<String>,
        /// jq giving a record's cursor value (`.updated_at`).
        cursor: String,
        /// jq giving a record's unique key (`.id`).
        key: String,
        /// Seconds before the committed cursor each run reads again (default 5).
        #[serde(default = "default_overlap")]
        overlap_seconds: u64,
    },
    /// A MySQL or MariaDB table, read the same way.
    Mysql {
        /// `mysql://user:password@host:port/database`.
        url: String,
        /// The table (optionally `database.table`).
        table: String,
        /// The column that grows when a row changes.
        cursor: String,
        /// A unique column that orders rows sharing a cursor value.
        key: String,
        /// Seconds before the committed cursor each run reads again (default 5).
        #[serde(default = "default_overlap")]
        overlap_seconds: u64,
    },
}

impl SourceDef {
    /// `postgres`, `mysql` or `org`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceDef::Postgres { .. } => "postgres",
            SourceDef::Mysql { .. } => "mysql",
            SourceDef::Org { .. } => "org",
            SourceDef::Salesforce { .. } => "salesforce",
            SourceDef::File { .. } => "file",
            SourceDef::Http { .. } => "http",
        }
    }
}

/// The parts every table source has.
#[derive(Debug, Clone, Copy)]
pub struct TableSource<'a> {
    /// Connection string.
    pub url: &'a str,
    /// Table.
    pub table: &'a str,
    /// Cursor column.
    pub cursor: &'a str,
    /// Key column.
    pub key: &'a str,
    /// Overlap window, seconds.
    pub overlap_seconds: u64,
}

impl SourceDef {
    /// Its connection, table and columns (database sources).
    pub fn table(&self) -> Option<TableSource<'_>> {
        Some(match self {
            SourceDef::Org { .. }
            | SourceDef::Salesforce { .. }
            | SourceDef::File { .. }
            | SourceDef::Http { .. } => return None,
            SourceDef::Postgres {
                url,
                table,
                cursor,
                key,
                overlap_seconds,
            }
            | SourceDef::Mysql {
                url,
                table,
                cursor,
                key,
                overlap_seconds,
            } => TableSource {
                url,
                table,
                cursor,
                key,
                overlap_seconds: *overlap_seconds,
            },
        })
    }
}

/// A target as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetDef {
    /// This org.
    Org {
        /// The object written.
        object: String,
        /// `insert`, `upsert`, `update` or `delete`.
        operation: String,
        /// The external id field upserts match on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
    },
    /// An object of a remote Salesforce-compatible org, through a named credential.
    Salesforce {
        /// The named credential.
        credential: String,
        /// The object written.
        object: String,
        /// `insert`, `upsert`, `update` or `delete`.
        operation: String,
        /// The external id field upserts match on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
        /// The API version (default 60.0).
        #[serde(default = "default_version")]
        api_version: String,
        /// Write each batch as one Bulk API 2.0 ingest job instead of sObject Collections calls
        /// (for large batches).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bulk: bool,
    },
    /// A CSV or JSON-lines file rows are appended to (at least once).
    File {
        /// The file's path (on the server).
        path: String,
        /// `csv` or `jsonl` (default: by extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// An HTTP JSON API: each row sent as a JSON body.
    Http {
        /// Where: an absolute URL or a path after the credential's URL, `{column}` replaced by
        /// the row's value (`/customers/{id}`).
        url: String,
        /// `POST` (the default), `PUT` or `PATCH`.
        #[serde(default = "default_method")]
        method: String,
        /// A named credential (base URL and authentication).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
    /// A PostgreSQL table, rows upserted by `key` (`INSERT … ON CONFLICT`).
    Postgres {
        /// Connection string.
        url: String,
        /// The table.
        table: String,
        /// Its primary or unique key column (the mapping must set it).
        key: String,
    },
    /// A MySQL/MariaDB table, rows upserted by `key` (`ON DUPLICATE KEY UPDATE`).
    Mysql {
        /// `mysql://user:password@host:port/database`.
        url: String,
        /// The table.
        table: String,
        /// Its primary or unique key column (the mapping must set it).
        key: String,
    },
}

/// What an org target does with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create a record.
    Insert,
    /// Create or update by external id.
    Upsert,
    /// Update the record named by the mapped `Id`.
    Update,
    /// Delete the record named by the mapped `Id`.
    Delete,
}

/// A compiled job.
#[derive(Debug)]
pub struct Job {
    /// As written.
    pub def: JobDef,
    /// When it runs by itself.
    pub schedule: Option<cron::Schedule>,
    /// The further legs of a broadcast or aggregation, compiled as jobs of their own (named
    /// `Job.stream`, so each has its own cursor and error rows).
    pub streams: Vec<std::sync::Arc<Job>>,
    /// Target field → expression.
    pub mapping: Vec<(String, Expr)>,
    /// The org target's operation.
    pub operation: Operation,
    /// A bidirectional job's way back and conflict policy.
    pub bidirectional: Option<Bidirectional>,
}

/// Reads every job file of `dir` (`*.yaml`, `*.yml`, `*.json`, sorted by name).
pub fn read_dir(dir: &Path) -> Result<Vec<JobDef>, String> {
    automation::flows::read_documents(dir)
}

/// Checks a job against the schema and compiles its mapping.
pub fn compile(def: JobDef, schema: &model::Schema) -> Result<Job, String> {
    let name = def.name.clone();
    let err = |m: String| format!("sync job {name}: {m}");
    let bidirectional = def.kind.as_deref() == Some("bidirectional");
    if !bidirectional && (def.reverse.is_some() || def.conflicts.is_some()) {
        return Err(err(
            "`reverse` and `conflicts` belong to bidirectional jobs".into(),
        ));
    }
    match def.trigger.as_deref() {
        None => {}
        Some("changes") => {
            let SourceDef::Org { object, .. } = &def.source else {
                return Err(err(
                    "trigger: changes follows the org's change events; the source is not the org"
                        .into(),
                ));
            };
            let o = schema
                .object(object)
                .ok_or_else(|| err(format!("there is no object {object} to read")))?;
            if !o.change_events {
                return Err(err(format!(
                    "trigger: changes needs Change Data Capture on {object} \
                     (select it: PlatformEventChannelMember on ChangeEvents)"
                )));
            }
            if def.run_as.is_none() {
                return Err(err(
                    "a triggered job names the user its runs act as (`run_as: username`)".into(),
                ));
            }
        }
        Some(other) => return Err(err(format!("trigger {other:?} is not `changes`"))),
    }
    if !def.match_on.is_empty() {
        if def.kind.as_deref() != Some("correlation") {
            return Err(err("match_on belongs to correlation jobs".into()));
        }
        if let Some(f) = def.match_on.iter().find(|f| !def.mapping.contains_key(*f)) {
            return Err(err(format!(
                "match_on names {f}, which the mapping does not set"
            )));
        }
    }
    if !bidirectional {
        return compile_one_way(def, schema);
    }
    // A bidirectional job pairs an object of the org with a PostgreSQL table: `mapping` is the
    // way out, `reverse` the way back; both are checked as one-way jobs would be.
    let Some(reverse) = def.reverse.clone() else {
        return Err(err(
            "a bidirectional job has `reverse` (external_id, cursor, mapping)".into(),
        ));
    };
    let SourceDef::Org { object, .. } = &def.source else {
        return Err(err("a bidirectional job's source is the org".into()));
    };
    let object = object.clone();
    let TargetDef::Postgres { key, .. } = &def.target else {
        return Err(err(
            "a bidirectional job's target is a PostgreSQL table".into()
        ));
    };
    let key = key.clone();
    let o = schema
        .object(&object)
        .ok_or_else(|| err(format!("there is no object {object}")))?;
    if !o.change_events {
        return Err(err(format!(
            "a bidirectional job follows {object}'s change events (their change origin tells the \
             job's own writes from others'): select {object} for Change Data Capture \
             (PlatformEventChannelMember on ChangeEvents)"
        )));
    }
    let back = JobDef {
        name: def.name.clone(),
        kind: None,
        trigger: None,
        reverse: None,
        conflicts: None,
        schedule: None,
        streams: Vec::new(),
        mapping: reverse.mapping.clone(),
        source: SourceDef::Org {
            object: object.clone(),
            overlap_seconds: 0,
        },
        target: TargetDef::Org {
            object: object.clone(),
            operation: "upsert".into(),
            external_id: Some(reverse.external_id.clone()),
        },
        ..def.clone()
    };
    let back = compile_one_way(back, schema)?;
    if reverse.cursor.trim().is_empty() {
        return Err(err("reverse.cursor is empty".into()));
    }
    let conflicts = def.conflicts.clone().unwrap_or(ConflictDef {
        default: default_policy(),
        fields: Default::default(),
    });
    let default = Policy::parse(&conflicts.default).map_err(err)?;
    let mut fields = std::collections::BTreeMap::new();
    for (c, p) in &conflicts.fields {
        if !def.mapping.contains_key(c) {
            return Err(err(format!(
                "conflicts.fields names {c}, which the mapping does not set"
            )));
        }
        fields.insert(c.clone(), Policy::parse(p).map_err(err)?);
    }
    let one_way = JobDef {
        kind: None,
        reverse: None,
        conflicts: None,
        ..def
    };
    let mut job = compile_one_way(one_way, schema)?;
    job.def.kind = Some("bidirectional".into());
    job.def.reverse = Some(reverse.clone());
    job.def.conflicts = Some(conflicts);
    job.bidirectional = Some(Bidirectional {
        object: o.name.clone(),
        external_id: reverse.external_id,
        key,
        reverse: back.mapping,
        default,
        fields,
    });
    Ok(job)
}

/// Checks a job that moves rows one way (every kind but bidirectional, and each direction of
/// that).
fn compile_one_way(def: JobDef, schema: &model::Schema) -> Result<Job, String> {
    let name = def.name.clone();
    let err = |m: String| format!("sync job {name}: {m}");
    if name.is_empty()
        || name.len() > 80
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err(format!(
            "sync job name {name:?}: use letters, digits and underscores, starting with a letter"
        ));
    }
    let schedule = match &def.schedule {
        None => None,
        Some(text) => {
            let fields = text.split_whitespace().count();
            let full = if fields == 5 {
                format!("0 {text}")
            } else {
                text.clone()
            };
            let s = <cron::Schedule as std::str::FromStr>::from_str(&full)
                .map_err(|e| err(format!("schedule {text:?} is not a cron expression: {e}")))?;
            if def.run_as.is_none() {
                return Err(err(
                    "a scheduled job names the user its runs act as (`run_as: username`)".into(),
                ));
            }
            Some(s)
        }
    };
    let mut streams = Vec::new();
    match def.kind.as_deref() {
        None | Some("incremental") | Some("migration") | Some("correlation") => {
            if !def.streams.is_empty() {
                return Err(err(
                    "streams belong to broadcast and aggregation jobs".into()
                ));
            }
        }
        Some(kind @ ("broadcast" | "aggregation")) => {
            if def.streams.is_empty() {
                return Err(err(format!("a {kind} job lists its further streams")));
            }
            let mut names = std::collections::HashSet::new();
            for s in &def.streams {
                if !names.insert(s.name.to_ascii_lowercase()) {
                    return Err(err(format!("two streams are named {}", s.name)));
                }
                let leg = match (kind, &s.source, &s.target) {
                    ("broadcast", None, Some(t)) => JobDef {
                        target: t.clone(),
                        ..def.clone()
                    },
                    ("aggregation", Some(src), None) => JobDef {
                        source: src.clone(),
                        ..def.clone()
                    },
                    ("broadcast", _, _) => {
                        return Err(err(format!(
                            "stream {}: a broadcast stream names a target (and no source)",
                            s.name
                        )))
                    }
                    _ => {
                        return Err(err(format!(
                            "stream {}: an aggregation stream names a source (and no target)",
                            s.name
                        )))
                    }
                };
                let leg = JobDef {
                    name: format!("{}_{}", def.name, s.name),
                    kind: None,
                    trigger: None,
                    match_on: Vec::new(),
                    streams: Vec::new(),
                    schedule: None,
                    mapping: s.mapping.clone(),
                    ..leg
                };
                streams.push(std::sync::Arc::new(compile(leg, schema)?));
            }
        }
        Some(other) => {
            return Err(err(format!(
            "kind {other:?} is not incremental, migration, broadcast, aggregation, correlation \
             or bidirectional"
        )))
        }
    }
    if def.parallelism.is_some_and(|n| n == 0 || n > 32) {
        return Err(err("parallelism is outside 1..=32".into()));
    }
    if def.batch_size == 0 || def.batch_size > 10_000 {
        return Err(err(format!(
            "batch_size {} is outside 1..=10000",
            def.batch_size
        )));
    }
    match (&def.source, def.source.table()) {
        (_, Some(t)) => {
            for (what, v) in [
                ("url", t.url),
                ("table", t.table),
                ("cursor", t.cursor),
                ("key", t.key),
            ] {
                if v.trim().is_empty() {
                    return Err(err(format!("the source's {what} is empty")));
                }
            }
        }
        (SourceDef::File { path, format }, None) => {
            crate::files::Format::parse(format.as_deref(), path).map_err(err)?;
            if path.is_empty() {
                return Err(err("the source's path is empty".into()));
            }
        }
        (SourceDef::Org { object, .. }, None) => {
            schema
                .object(object)
                .ok_or_else(|| err(format!("there is no object {object} to read")))?;
        }
        (
            SourceDef::Http {
                url,
                credential,
                records,
                next,
                cursor,
                key,
                ..
            },
            None,
        ) => {
            if url.is_empty() {
                return Err(err("the source's url is empty".into()));
            }
            check_http_url("source", url, credential.as_deref()).map_err(err)?;
            for (what, e) in [
                ("records", records.as_deref()),
                ("next", next.as_deref()),
                ("cursor", Some(cursor.as_str())),
                ("key", Some(key.as_str())),
            ] {
                if let Some(e) = e {
                    Expr::compile(e)
                        .map_err(|m| err(format!("the source's {what} expression: {m}")))?;
                }
            }
        }
        _ => {}
    }
    let (object, operation, external_id) = match &def.target {
        TargetDef::Org {
            object,
            operation,
            external_id,
        } => (object, operation, external_id),
        TargetDef::Http {
            url,
            method,
            credential,
        } => {
            if url.is_empty() {
                return Err(err("the target's url is empty".into()));
            }
            check_http_url("target", url, credential.as_deref()).map_err(err)?;
            if !["POST", "PUT", "PATCH"].contains(&method.to_ascii_uppercase().as_str()) {
                return Err(err(format!("method {method:?} is not POST, PUT or PATCH")));
            }
            let mapping = compile_mapping(&def, &err)?;
            return Ok(Job {
                def,
                schedule,
                streams: streams.clone(),
                mapping,
                operation: Operation::Insert,
                bidirectional: None,
            });
        }
        TargetDef::File { path, format } => {
            crate::files::Format::parse(format.as_deref(), path).map_err(err)?;
            if path.is_empty() {
                return Err(err("the target's path is empty".into()));
            }
            let mapping = compile_mapping(&def, &err)?;
            return Ok(Job {
                def,
                schedule,
                streams: streams.clone(),
                mapping,
                operation: Operation::Insert,
                bidirectional: None,
            });
        }
        TargetDef::Salesforce {
            credential,
            object,
            operation,
            external_id,
            ..
        } => {
            if credential.is_empty() || object.is_empty() {
                return Err(err("the target names a credential and an object".into()));
            }
            let operation = parse_operation(operation).map_err(err)?;
            match (operation, external_id) {
                (Operation::Upsert, Some(ext)) if def.mapping.contains_key(ext) => {}
                (Operation::Upsert, _) => {
                    return Err(err(
                        "an upsert names its external_id field, and the mapping sets it".into(),
                    ))
                }
                (Operation::Update | Operation::Delete, _) if !def.mapping.contains_key("Id") => {
                    return Err(err("updates and deletes need `Id` in the mapping".into()))
                }
                _ => {}
            }
            let mapping = compile_mapping(&def, &err)?;
            return Ok(Job {
                def,
                schedule,
                streams: streams.clone(),
                mapping,
                operation,
                bidirectional: None,
            });
        }
        TargetDef::Postgres { url, table, key } | TargetDef::Mysql { url, table, key } => {
            for (what, v) in [("url", url), ("table", table), ("key", key)] {
                if v.trim().is_empty() {
                    return Err(err(format!("the target's {what} is empty")));
                }
            }
            if !def.mapping.contains_key(key) {
                return Err(err(format!("the mapping must set {key}, the target's key")));
            }
            let mut mapping = Vec::new();
            for (c, e) in &def.mapping {
                let src = e.as_str().ok_or_else(|| {
                    err(format!(
                        "the mapping of {c} must be a jq expression (a string)"
                    ))
                })?;
                mapping.push((c.clone(), Expr::compile(src).map_err(err)?));
            }
            return Ok(Job {
                def,
                schedule,
                streams: streams.clone(),
                mapping,
                operation: Operation::Upsert,
                bidirectional: None,
            });
        }
    };
    let o = schema
        .object(object)
        .ok_or_else(|| err(format!("there is no object {object}")))?;
    let operation = parse_operation(operation).map_err(err)?;
    if operation == Operation::Upsert {
        let ext = external_id
            .as_deref()
            .ok_or_else(|| err("an upsert names its external_id field".into()))?;
        let i = o
            .field_index(ext)
            .ok_or_else(|| err(format!("{} has no field {ext}", o.name)))?;
        if !(o.fields[i].external_id || o.fields[i].name == "Id") {
            return Err(err(format!("{}.{ext} is not an external id field", o.name)));
        }
        if !def.mapping.keys().any(|k| k.eq_ignore_ascii_case(ext)) {
            return Err(err(format!("the mapping must set {ext}, the upsert key")));
        }
    }
    if matches!(operation, Operation::Update | Operation::Delete)
        && !def.mapping.keys().any(|k| k == "Id")
    {
        return Err(err("updates and deletes need `Id` in the mapping".into()));
    }
    let mut mapping = Vec::new();
    for (f, e) in &def.mapping {
        // A relationship name (`Account`) takes `{External_Id__c: value}`: the parent is looked
        // up by that external id when the row is written.
        if o.field_index(f).is_none() && o.relationship(f).is_none() {
            return Err(err(format!("{} has no field or relationship {f}", o.name)));
        }
        let src = e.as_str().ok_or_else(|| {
            err(format!(
                "the mapping of {f} must be a jq expression (a string)"
            ))
        })?;
        mapping.push((f.clone(), Expr::compile(src).map_err(err)?));
    }
    Ok(Job {
        def: JobDef {
            target: TargetDef::Org {
                object: o.name.clone(),
                operation: operation_name(operation).into(),
                external_id: external_id.clone(),
            },
            ..def
        },
        schedule,
        streams,
        mapping,
        operation,
        bidirectional: None,
    })
}

fn parse_operation(o: &str) -> Result<Operation, String> {
    Ok(match o {
        "insert" => Operation::Insert,
        "upsert" => Operation::Upsert,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        other => {
            return Err(format!(
                "operation {other:?} is not insert, upsert, update or delete"
            ))
        }
    })
}

/// An HTTP connector's URL is absolute, unless a named credential gives the base it follows.
fn check_http_url(side: &str, url: &str, credential: Option<&str>) -> Result<(), String> {
    if credential.is_none() && !crate::http::is_absolute(url) {
        return Err(format!(
            "the {side}'s url {url:?} is not absolute (give an absolute URL, or a credential)"
        ));
    }
    Ok(())
}

/// The mapping's expressions, unchecked against any schema (remote and database targets).
fn compile_mapping(
    def: &JobDef,
    err: &dyn Fn(String) -> String,
) -> Result<Vec<(String, Expr)>, String> {
    let mut mapping = Vec::new();
    for (c, e) in &def.mapping {
        let src = e.as_str().ok_or_else(|| {
            err(format!(
                "the mapping of {c} must be a jq expression (a string)"
            ))
        })?;
        mapping.push((c.clone(), Expr::compile(src).map_err(err)?));
    }
    Ok(mapping)
}

fn operation_name(o: Operation) -> &'static str {
    match o {
        Operation::Insert => "insert",
        Operation::Upsert => "upsert",
        Operation::Update => "update",
        Operation::Delete => "delete",
    }
}

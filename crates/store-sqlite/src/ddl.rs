//! SQL definitions derived from metadata: one table per object, typed columns, indexes.
//!
//! Column encodings (see `model::Storage`): ids and references are the integer sequence of the
//! target row; booleans 0/1; date-times milliseconds since the epoch; times milliseconds since
//! midnight; dates `YYYY-MM-DD` text; numbers REAL; text columns use `NOCASE` collation unless the
//! field is case-sensitive, so equality, LIKE, ORDER BY and unique indexes are case-insensitive.

use model::{FieldDef, FieldType, ObjectDef, Storage};

/// Quotes an identifier (API names are `[A-Za-z0-9_]`, so doubling quotes is never needed, but we
/// refuse anything else to keep generated SQL safe).
pub fn ident(name: &str) -> String {
    assert!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "unsafe identifier {name:?}"
    );
    format!("\"{name}\"")
}

/// The column declaration of a field.
pub fn column_decl(f: &FieldDef) -> String {
    let col = ident(f.column());
    if f.ty == FieldType::Id {
        return format!("{col} INTEGER PRIMARY KEY AUTOINCREMENT");
    }
    match (f.ty, f.ty.storage()) {
        (FieldType::Boolean, _) => format!("{col} INTEGER NOT NULL DEFAULT 0"),
        (_, Storage::Integer) => format!("{col} INTEGER"),
        (_, Storage::Real) => format!("{col} REAL"),
        (_, Storage::Text) if f.case_sensitive => format!("{col} TEXT COLLATE BINARY"),
        (_, Storage::Text) => format!("{col} TEXT COLLATE NOCASE"),
    }
}

/// The index a field needs, if any.
pub fn index_sql(o: &ObjectDef, f: &FieldDef) -> Option<String> {
    let table = o.table();
    let name = ident(&format!("ix_{}_{}", o.name, f.name));
    if f.ty == FieldType::Id {
        return None;
    }
    if f.unique {
        return Some(format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {}({}) WHERE \"IsDeleted\" = 0",
            ident(&table),
            ident(f.column())
        ));
    }
    if f.indexed() || f.name == "SystemModstamp" {
        return Some(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON {}({})",
            ident(&table),
            ident(f.column())
        ));
    }
    None
}

/// `CREATE TABLE` plus index statements for an object.
pub fn create_object_sql(o: &ObjectDef) -> Vec<String> {
    let cols: Vec<String> = o.fields.iter().map(column_decl).collect();
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
        ident(&o.table()),
        cols.join(",\n  ")
    )];
    out.extend(o.fields.iter().filter_map(|f| index_sql(o, f)));
    out
}

/// `ALTER TABLE … ADD COLUMN` plus the index for a new field.
pub fn add_field_sql(o: &ObjectDef, f: &FieldDef) -> Vec<String> {
    let mut out = vec![format!(
        "ALTER TABLE {} ADD COLUMN {}",
        ident(&o.table()),
        column_decl(f)
    )];
    out.extend(index_sql(o, f));
    out
}

/// The system tables: settings, applied metadata specs, auth state, Bulk API jobs and their
/// processed chunks, the event log, the delivery queue.
pub const SYSTEM_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS meta_kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta_objects (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  prefix TEXT NOT NULL,
  spec TEXT NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta_fields (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  object TEXT NOT NULL COLLATE NOCASE,
  name TEXT NOT NULL COLLATE NOCASE,
  spec TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  UNIQUE(object, name)
);
CREATE TABLE IF NOT EXISTS meta_change_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  object TEXT NOT NULL UNIQUE COLLATE NOCASE,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_passwords (
  user_seq INTEGER PRIMARY KEY,
  hash TEXT NOT NULL,
  changed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_sessions (
  token_hash BLOB PRIMARY KEY,
  user_seq INTEGER NOT NULL,
  client_id TEXT,
  created_ms INTEGER NOT NULL,
  last_used_ms INTEGER NOT NULL,
  timeout_secs INTEGER NOT NULL,
  origin BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_auth_sessions_user ON auth_sessions(user_seq);
CREATE TABLE IF NOT EXISTS auth_apps (
  client_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  cert_pem TEXT,
  run_as_user INTEGER,
  callback_urls TEXT NOT NULL DEFAULT '[]',
  scopes TEXT NOT NULL DEFAULT 'api refresh_token'
);
CREATE TABLE IF NOT EXISTS auth_refresh_tokens (
  token_hash BLOB PRIMARY KEY,
  user_seq INTEGER NOT NULL,
  client_id TEXT NOT NULL,
  created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_auth_refresh_user ON auth_refresh_tokens(user_seq);
CREATE TABLE IF NOT EXISTS bulk_jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  object TEXT NOT NULL,
  operation TEXT NOT NULL,
  external_id TEXT,
  state TEXT NOT NULL,
  created_by INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  modstamp_ms INTEGER NOT NULL,
  api_version INTEGER NOT NULL,
  column_delimiter TEXT NOT NULL,
  line_ending TEXT NOT NULL,
  content_type TEXT NOT NULL,
  assignment_rule TEXT,
  query TEXT,
  upload TEXT,
  result_file TEXT,
  next_row INTEGER NOT NULL DEFAULT 0,
  next_offset INTEGER NOT NULL DEFAULT 0,
  chunks INTEGER NOT NULL DEFAULT 0,
  processed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  retries INTEGER NOT NULL DEFAULT 0,
  processing_ms INTEGER NOT NULL DEFAULT 0,
  error_message TEXT,
  extra TEXT,
  parent INTEGER
);
CREATE INDEX IF NOT EXISTS ix_bulk_jobs_state ON bulk_jobs(state);
CREATE TABLE IF NOT EXISTS bulk_chunks (
  job INTEGER NOT NULL,
  chunk INTEGER NOT NULL,
  first_row INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  start_offset INTEGER NOT NULL,
  end_offset INTEGER NOT NULL,
  results BLOB,
  UNIQUE(job, chunk)
);
CREATE TABLE IF NOT EXISTS event_log (
  replay_id INTEGER PRIMARY KEY AUTOINCREMENT,
  stream TEXT NOT NULL,
  kind INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  uuid TEXT NOT NULL,
  schema_id TEXT NOT NULL,
  payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_event_log_stream ON event_log(stream, replay_id);
CREATE INDEX IF NOT EXISTS ix_event_log_kind ON event_log(kind, replay_id);
CREATE TABLE IF NOT EXISTS delivery_queue (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  action TEXT NOT NULL,
  record TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  next_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  state INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_ms INTEGER,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS ix_delivery_due ON delivery_queue(state, endpoint, next_ms);
CREATE INDEX IF NOT EXISTS ix_delivery_expiry ON delivery_queue(state, expires_ms);
CREATE INDEX IF NOT EXISTS ix_delivery_failing ON delivery_queue(endpoint, state, attempts)
  WHERE state = 0 AND attempts > 0;
CREATE TABLE IF NOT EXISTS flow_faults (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  created_ms INTEGER NOT NULL,
  flow TEXT NOT NULL,
  object TEXT NOT NULL,
  record TEXT NOT NULL,
  event TEXT NOT NULL,
  user TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery_endpoints (
  endpoint TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job TEXT NOT NULL,
  started_ms INTEGER NOT NULL,
  ended_ms INTEGER,
  status TEXT NOT NULL,
  read INTEGER NOT NULL DEFAULT 0,
  written INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  cursor_from TEXT,
  cursor_to TEXT,
  message TEXT,
  report TEXT
);
CREATE INDEX IF NOT EXISTS ix_sync_runs_job ON sync_runs(job, id);
CREATE TABLE IF NOT EXISTS sync_errors (
  job TEXT NOT NULL,
  key TEXT NOT NULL,
  run INTEGER NOT NULL,
  error TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (job, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_state (
  job TEXT NOT NULL,
  key TEXT NOT NULL,
  image TEXT NOT NULL,
  PRIMARY KEY (job, key)
) WITHOUT ROWID;
"#;

/// Upgrades of the system tables, applied in order when the column they add is missing:
/// `(table, column, statements)`.
pub const UPGRADES: &[(&str, &str, &str)] = &[
    (
        "auth_sessions",
        "origin",
        "ALTER TABLE auth_sessions ADD COLUMN origin BLOB;",
    ),
    (
        "bulk_jobs",
        "parent",
        "ALTER TABLE bulk_jobs ADD COLUMN parent INTEGER;",
    ),
    (
        "sync_runs",
        "report",
        "ALTER TABLE sync_runs ADD COLUMN report TEXT;",
    ),
];

/// Created after [`UPGRADES`] ran (they index upgraded columns).
pub const LATE_INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS ix_auth_sessions_origin ON auth_sessions(origin);
     CREATE INDEX IF NOT EXISTS ix_bulk_jobs_parent ON bulk_jobs(parent) WHERE parent IS NOT NULL;";

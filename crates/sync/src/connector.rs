//! The one contract every connector keeps. A [`Source`] hands out rows in a fixed order after a
//! cursor (so a run resumes exactly where its committed cursor says); a [`Target`] writes rows
//! and answers one outcome per row, everything committed when it returns. The engine only ever
//! talks to these two traits (the org target alone also has a transactional path that writes
//! rows and cursor together), and `crate::contract` checks any connector against them.

use std::sync::Arc;

use serde_json::Value as Json;
use service::automation::BoxFuture;
use service::{Org, Principal};

use crate::job::Operation;
use crate::postgres::Row;
use crate::targets::Outcome;
use crate::{files, mysql, org_source, postgres, remote, targets, Cursor, Record};

/// Where rows come from.
pub trait Source: Send + Sync {
    /// Up to `limit` rows after `after` (all from the start when `None`), in the source's
    /// order; every row after `after` comes exactly once across consecutive pages. With
    /// `rewind`, rows of the overlap window before `after` are read again (late commits).
    fn page<'a>(
        &'a self,
        after: Option<&'a Cursor>,
        rewind: bool,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, String>>;
}

/// Where rows go.
pub trait Target: Send + Sync {
    /// Writes `rows`; one outcome per row, in order. When it returns `Ok`, every accepted row is
    /// committed (the cursor may move past them).
    fn write<'a>(&'a self, rows: &'a [&'a Record]) -> BoxFuture<'a, Result<Vec<Outcome>, String>>;

    /// Every key the target holds (correlations and migration reports); `None` when the target
    /// has no keys (append-only files).
    fn keys(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, String>>;

    /// The values of `columns` of every row the target holds (correlations by several
    /// fields); `None` when the target cannot list its rows.
    fn tuples<'a>(
        &'a self,
        columns: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<Vec<Json>>>, String>> {
        let _ = columns;
        Box::pin(async { Ok(None) })
    }
}

impl Source for postgres::Source {
    fn page<'a>(
        &'a self,
        after: Option<&'a Cursor>,
        rewind: bool,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, String>> {
        Box::pin(postgres::Source::page(self, after, rewind, limit))
    }
}

impl Source for mysql::Source {
    fn page<'a>(
        &'a self,
        after: Option<&'a Cursor>,
        rewind: bool,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, String>> {
        Box::pin(mysql::Source::page(self, after, rewind, limit))
    }
}

impl Source for org_source::Source {
    fn page<'a>(
        &'a self,
        after: Option<&'a Cursor>,
        rewind: bool,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, String>> {
        Box::pin(async move { org_source::Source::page(self, after, rewind, limit) })
    }
}

/// A remote org's object as a source.
pub struct RemoteSource {
    /// The object, through its credential.
    pub remote: remote::Remote,
    /// Fields read besides `Id` and `SystemModstamp`.
    pub fields: Vec<String>,
    /// Overlap window, seconds.
    pub overlap: u64,
    /// Read by Bulk API 2.0 query jobs (the rows of the current one held here); `None`: through
    /// the REST query resource, page by page.
    pub bulk: Option<crate::http::Held>,
}

impl Source for RemoteSource {
    fn page<'a>(
        &'a self,
        after: Option<&'a Cursor>,
        rewind: bool,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, String>> {
        let Some(held) = &self.bulk else {
            return Box::pin(
                self.remote
                    .page(&self.fields, after, rewind, self.overlap, limit),
            );
        };
        Box::pin(async move {
            let (all, start) = match held.resume(after, rewind) {
                Some(h) => h,
                None => {
                    let rows = self
                        .remote
                        .bulk_read(&self.fields, after, rewind, self.overlap)
                        .await?;
                    (Arc::new(rows), 0)
                }
            };
            Ok(held.serve(all, start, limit))
        })
    }
}

/// A CSV or JSON-lines file as a source (an append-only log).
pub struct FileSource {
    /// Its full path.
    pub path: String,
    /// Its format.
    pub format: files::Format,
}

impl Source for FileSource {
    fn page<'a>(
        &'a self,
        after: Option<&'a Cursor>,
        _rewind: bool,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, String>> {
        let (path, format, after) = (self.path.clone(), self.format, after.cloned());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || files::page(&path, format, after.as_ref(), limit))
                .await
                .map_err(|e| e.to_string())?
        })
    }
}

impl Target for targets::Postgres {
    fn write<'a>(&'a self, rows: &'a [&'a Record]) -> BoxFuture<'a, Result<Vec<Outcome>, String>> {
        Box::pin(targets::Postgres::write(self, rows))
    }

    fn keys(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, String>> {
        Box::pin(async move { targets::Postgres::keys(self).await.map(Some) })
    }

    fn tuples<'a>(
        &'a self,
        columns: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<Vec<Json>>>, String>> {
        Box::pin(async move { targets::Postgres::tuples(self, columns).await.map(Some) })
    }
}

impl Target for targets::Mysql {
    fn write<'a>(&'a self, rows: &'a [&'a Record]) -> BoxFuture<'a, Result<Vec<Outcome>, String>> {
        Box::pin(targets::Mysql::write(self, rows))
    }

    fn keys(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, String>> {
        Box::pin(async move { targets::Mysql::keys(self).await.map(Some) })
    }

    fn tuples<'a>(
        &'a self,
        columns: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<Vec<Json>>>, String>> {
        Box::pin(async move { targets::Mysql::tuples(self, columns).await.map(Some) })
    }
}

/// A remote org's object as a target.
pub struct RemoteTarget {
    /// The object, through its credential.
    pub remote: remote::Remote,
    /// What it does with a row.
    pub operation: Operation,
    /// The external id field upserts match on.
    pub external_id: Option<String>,
    /// Write each batch as one Bulk API 2.0 ingest job (else sObject Collections calls).
    pub bulk: bool,
    /// Collections calls in flight at once.
    pub parallelism: usize,
}

impl Target for RemoteTarget {
    fn write<'a>(&'a self, rows: &'a [&'a Record]) -> BoxFuture<'a, Result<Vec<Outcome>, String>> {
        let ext = self.external_id.as_deref();
        if self.bulk {
            Box::pin(self.remote.bulk_write(self.operation, ext, rows))
        } else {
            Box::pin(
                self.remote
                    .write(self.operation, ext, rows, self.parallelism),
            )
        }
    }

    fn keys(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, String>> {
        let field = self.external_id.clone().unwrap_or_else(|| "Id".into());
        Box::pin(async move { self.remote.values(&field).await.map(Some) })
    }

    fn tuples<'a>(
        &'a self,
        columns: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<Vec<Json>>>, String>> {
        Box::pin(async move { self.remote.tuples(columns).await.map(Some) })
    }
}

/// A CSV or JSON-lines file rows are appended to.
pub struct FileTarget {
    /// Its full path.
    pub path: String,
    /// Its format.
    pub format: files::Format,
    /// The columns (the mapping's), in order.
    pub columns: Vec<String>,
}

impl Target for FileTarget {
    fn write<'a>(&'a self, rows: &'a [&'a Record]) -> BoxFuture<'a, Result<Vec<Outcome>, String>> {
        let rows: Vec<Record> = rows.iter().map(|r| (*r).clone()).collect();
        let (path, format, columns) = (self.path.clone(), self.format, self.columns.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&Record> = rows.iter().collect();
                files::append(&path, format, &columns, &refs)
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }

    fn keys(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, String>> {
        Box::pin(async { Ok(None) })
    }
}

/// This org's object as a target, each batch in its own transaction through the Bulk API's
/// ingest plan (the engine's own runs write the cursor in the same transaction instead).
pub struct OrgTarget {
    /// The org.
    pub org: Arc<Org>,
    /// Who writes.
    pub p: Principal,
    /// The object.
    pub object: String,
    /// What it does with a row.
    pub operation: Operation,
    /// The external id field upserts match on.
    pub external_id: Option<String>,
}

impl Target for OrgTarget {
    fn write<'a>(&'a self, rows: &'a [&'a Record]) -> BoxFuture<'a, Result<Vec<Outcome>, String>> {
        Box::pin(async move {
            let schema = self.org.schema();
            let o = schema
                .object(&self.object)
                .cloned()
                .ok_or_else(|| format!("there is no object {}", self.object))?;
            let op = match self.operation {
                Operation::Insert => service::bulk::Operation::Insert,
                Operation::Upsert => service::bulk::Operation::Upsert,
                Operation::Update => service::bulk::Operation::Update,
                Operation::Delete => service::bulk::Operation::Delete,
            };
            let mut header: Vec<String> = Vec::new();
            for r in rows {
                for k in r.keys() {
                    if !header.contains(k) {
                        header.push(k.clone());
                    }
                }
            }
            let plan = service::bulk::IngestPlan::new(
                &self.p,
                &schema,
                &o,
                op,
                self.external_id.as_deref(),
                &header,
            )
            .map_err(|e| format!("the rows do not fit {}: {e}", o.name))?;
            let texts: Vec<Vec<Option<String>>> = rows
                .iter()
                .map(|r| {
                    header
                        .iter()
                        .map(|h| match r.get(h) {
                            None | Some(Json::Null) => None,
                            Some(Json::String(s)) if s.is_empty() => None,
                            Some(Json::String(s)) => Some(s.clone()),
                            Some(other) => Some(other.to_string()),
                        })
                        .collect()
                })
                .collect();
            let chunk = plan.prepare(
                &self.p,
                self.org.store().marker(),
                texts.iter().map(|row| {
                    row.iter()
                        .map(|c| match c {
                            Some(t) => service::bulk::Cell::Text(t),
                            None => service::bulk::Cell::Null,
                        })
                        .collect::<Vec<_>>()
                }),
            );
            let p = self.p.clone();
            let outcomes = self
                .org
                .store()
                .write(move |tx| plan.apply(tx, &p, chunk, model::value::now_millis()))
                .await
                .map_err(|e| format!("writing to {}: {}", o.name, e.message))?;
            self.org.note_write(&o.name);
            Ok(outcomes
                .into_iter()
                .map(|r| match r {
                    service::bulk::RowOutcome::Ok { .. } => Ok(()),
                    service::bulk::RowOutcome::Err { error, .. } => {
                        Err(format!("{}: {}", error.code, error.message))
                    }
                })
                .collect())
        })
    }

    fn keys(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, String>> {
        Box::pin(async move {
            let field = self.external_id.clone().unwrap_or_else(|| "Id".into());
            let source =
                org_source::Source::open(self.org.clone(), self.p.clone(), &self.object, 0)?;
            Ok(Some(
                source
                    .all_values(&field)?
                    .iter()
                    .filter_map(crate::json_text)
                    .collect(),
            ))
        })
    }

    fn tuples<'a>(
        &'a self,
        columns: &'a [String],
    ) -> BoxFuture<'a, Result<Option<Vec<Vec<Json>>>, String>> {
        Box::pin(async move {
            let source =
                org_source::Source::open(self.org.clone(), self.p.clone(), &self.object, 0)?;
            source.all_tuples(columns).map(Some)
        })
    }
}

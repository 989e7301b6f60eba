//! Bulk API 2.0 query jobs: checking a query against what Bulk supports, running it page by
//! page through the query engine into a CSV result file (never the whole result in memory), and
//! reading pages of that file back by locator.
//!
//! The result file is indexed every [`PAGE_INDEX_ROWS`] rows (a chunk row per index entry), so a
//! locator — the row offset, opaque to clients — is found with one seek and a short scan.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use base64::Engine;
use model::{ApiError, ErrorCode, Value};
use soql::plan::{Column, Plan, PlanKind};
use store::{BulkChunkRow, Cell, QueryRow, Store};

use super::csv::{push_quoted, Dialect, RowReader};
use super::BulkError;
use crate::auth::Principal;

/// Rows between two entries of a result file's index.
pub const PAGE_INDEX_ROWS: u64 = 10_000;
/// Rows read from the store per query page while writing results.
const READ_PAGE: usize = 2_000;

/// Compiles SOQL for the caller (as `Org::query` does).
pub fn compile(
    schema: &model::Schema,
    p: &Principal,
    text: &str,
    include_deleted: bool,
) -> Result<Plan, ApiError> {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let opts = soql::ResolveOptions {
        today: (today.year(), today.month(), today.day()),
        now_ms: model::value::now_millis(),
        include_deleted,
    };
    soql::compile(text, schema, &*p.perms, &opts).map_err(|e| ApiError::new(e.code, e.message))
}

/// Refuses what Bulk API 2.0 does not run: parent-to-child subqueries, aggregates and
/// `COUNT()`, `GROUP BY`, `OFFSET`.
pub fn check_bulk_query(plan: &Plan) -> Result<(), BulkError> {
    let refuse = |m: &str| Err(BulkError::new(400, "API_ERROR", m));
    if plan
        .columns
        .iter()
        .any(|c| matches!(c, Column::Children { .. }))
    {
        return refuse(
            "FeatureNotEnabled : Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
        );
    }
    if !plan.group_by.is_empty() {
        return refuse("FeatureNotEnabled : GROUP BY is not supported in Bulk V2 Query");
    }
    if plan.kind != PlanKind::Records {
        return refuse(
            "FeatureNotEnabled : Aggregate queries and COUNT() are not supported in Bulk V2 Query",
        );
    }
    if plan.offset.is_some() {
        return refuse("FeatureNotEnabled : OFFSET is not supported in Bulk V2 Query");
    }
    Ok(())
}

/// The CSV header of a plan: fields by name, parent fields by dotted path (`Account.Name`).
pub fn header(plan: &Plan) -> Vec<String> {
    fn walk(cols: &[Column], prefix: &str, out: &mut Vec<String>) {
        for c in cols {
            match c {
                Column::Field { key, .. }
                | Column::Group { key, .. }
                | Column::Aggregate { key, .. } => out.push(format!("{prefix}{key}")),
                Column::Parent { key, columns, .. } => {
                    walk(columns, &format!("{prefix}{key}."), out)
                }
                Column::Children { .. } => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&plan.columns, "", &mut out);
    out
}

/// Appends one result row as CSV fields (every value quoted, nulls empty).
fn push_row(cols: &[Column], row: Option<&QueryRow>, d: u8, first: &mut bool, out: &mut Vec<u8>) {
    for (k, c) in cols.iter().enumerate() {
        let cell = row.and_then(|r| r.cells.get(k));
        match c {
            Column::Parent { columns, .. } => {
                let parent = match cell {
                    Some(Cell::Parent(Some(p))) => Some(&**p),
                    _ => None,
                };
                push_row(columns, parent, d, first, out);
            }
            Column::Children { .. } => {}
            _ => {
                if !*first {
                    out.push(d);
                }
                *first = false;
                match cell {
                    Some(Cell::Value(v)) if !matches!(v, Value::Null) => {
                        push_quoted(out, &v.to_text())
                    }
                    _ => out.extend_from_slice(b"\"\""),
                }
            }
        }
    }
}

/// What running a query produced.
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// Index entries (chunk rows without results).
    pub index: Vec<BulkChunkRow>,
}

/// Runs `plan` and writes the CSV results to `path`; `keep_going` is asked between pages (an
/// abort or shutdown stops the run). Syncs the file before returning.
pub fn run_to_file(
    store: &dyn Store,
    plan: &Plan,
    path: &Path,
    job: u64,
    dialect: Dialect,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Option<Written>, ApiError> {
    let io_err = |e: io::Error| {
        tracing::error!(error = %e, "writing bulk query results failed");
        ApiError::internal()
    };
    let file = File::create(path).map_err(io_err)?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    let le = dialect.line_ending();
    let mut line = Vec::with_capacity(4096);
    for (k, h) in header(plan).iter().enumerate() {
        if k > 0 {
            line.push(dialect.delimiter);
        }
        push_quoted(&mut line, h);
    }
    line.extend_from_slice(le);
    w.write_all(&line).map_err(io_err)?;
    let mut offset = line.len() as u64;
    let seqs = store.read(|tx| tx.query_ids(plan))?;
    let mut rows = 0u64;
    let mut index: Vec<BulkChunkRow> = Vec::new();
    for page in seqs.chunks(READ_PAGE) {
        if !keep_going() {
            return Ok(None);
        }
        let got = store.read(|tx| tx.query_rows(plan, page))?;
        for r in &got {
            if index.last().is_none_or(|last| last.rows == PAGE_INDEX_ROWS) {
                if let Some(last) = index.last_mut() {
                    last.end_offset = offset;
                }
                index.push(BulkChunkRow {
                    job,
                    chunk: rows / PAGE_INDEX_ROWS,
                    first_row: rows,
                    rows: 0,
                    start_offset: offset,
                    end_offset: offset,
                    results: Vec::new(),
                });
            }
            line.clear();
            let mut first = true;
            push_row(
                &plan.columns,
                Some(r),
                dialect.delimiter,
                &mut first,
                &mut line,
            );
            line.extend_from_slice(le);
            w.write_all(&line).map_err(io_err)?;
            offset += line.len() as u64;
            rows += 1;
            if let Some(last) = index.last_mut() {
                last.rows += 1;
            }
        }
    }
    if let Some(last) = index.last_mut() {
        last.end_offset = offset;
    }
    let file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    Ok(Some(Written { rows, index }))
}

/// Encodes a row offset as a locator (URL-safe, opaque).
pub fn locator(offset: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(offset.to_string())
}

/// Decodes a locator.
pub fn parse_locator(s: &str) -> Option<u64> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()?;
    std::str::from_utf8(&b).ok()?.parse().ok()
}

/// Copies the header line and `count` rows starting at row `first` (located through `entry`,
/// the index entry of the page holding it) from a result file to `sink`.
pub fn copy_page(
    path: &Path,
    dialect: Dialect,
    entry: Option<&BulkChunkRow>,
    first: u64,
    count: u64,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> io::Result<()> {
    let le = dialect.line_ending();
    let mut file = File::open(path)?;
    let mut out = Vec::with_capacity(80 * 1024);
    {
        let mut r = RowReader::new(&mut file, 0, dialect);
        if let Some((_, h)) = r.next_row()? {
            out.extend_from_slice(h);
            out.extend_from_slice(le);
        }
    }
    if let (Some(e), true) = (entry, count > 0) {
        file.seek(SeekFrom::Start(e.start_offset))?;
        let mut r = RowReader::new(&mut file, e.start_offset, dialect);
        let mut at = e.first_row;
        let mut copied = 0;
        while copied < count {
            let Some((_, row)) = r.next_row()? else { break };
            if at >= first {
                out.extend_from_slice(row);
                out.extend_from_slice(le);
                copied += 1;
                if out.len() >= 64 * 1024 && !sink(std::mem::take(&mut out)) {
                    return Ok(());
                }
            }
            at += 1;
        }
    }
    let _ = sink(out);
    Ok(())
}

impl From<ApiError> for BulkError {
    fn from(e: ApiError) -> BulkError {
        BulkError {
            status: e.http_status(),
            code: e.code.as_str().to_string(),
            message: e.message,
        }
    }
}

/// `INVALID_QUERY_LOCATOR`.
pub fn bad_locator() -> BulkError {
    ApiError::new(ErrorCode::InvalidQueryLocator, "invalid query locator").into()
}

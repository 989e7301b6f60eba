//! SQLite side of the sync control tables (`sync_runs`, `sync_errors`, `sync_state`).

use rusqlite::{params, Connection};
use store::{StoreResult, SyncErrorRow, SyncRunRow};

use crate::tx::backend;

fn param(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

const RUN_COLUMNS: &str = "id, job, started_ms, ended_ms, status, read, written, failed, \
     cursor_from, cursor_to, message, report";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SyncRunRow> {
    Ok(SyncRunRow {
        id: r.get::<_, i64>(0)? as u64,
        job: r.get(1)?,
        started_ms: r.get(2)?,
        ended_ms: r.get(3)?,
        status: r.get(4)?,
        read: r.get::<_, i64>(5)? as u64,
        written: r.get::<_, i64>(6)? as u64,
        failed: r.get::<_, i64>(7)? as u64,
        cursor_from: r.get(8)?,
        cursor_to: r.get(9)?,
        message: r.get(10)?,
        report: r.get(11)?,
    })
}

pub(crate) fn runs(conn: &Connection, job: &str, limit: usize) -> StoreResult<Vec<SyncRunRow>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE job = ?1 ORDER BY id DESC"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([job], run_row).map_err(backend)?;
    rows.take(limit).map(|r| r.map_err(backend)).collect()
}

pub(crate) fn put_run(conn: &Connection, r: &SyncRunRow) -> StoreResult<u64> {
    if r.id == 0 {
        conn.prepare_cached(
            "INSERT INTO sync_runs (job, started_ms, ended_ms, status, read, written, failed,
                                    cursor_from, cursor_to, message, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(backend)?
        .execute(params![
            r.job,
            r.started_ms,
            r.ended_ms,
            r.status,
            param(r.read),
            param(r.written),
            param(r.failed),
            r.cursor_from,
            r.cursor_to,
            r.message,
            r.report
        ])
        .map_err(backend)?;
        return Ok(conn.last_insert_rowid() as u64);
    }
    conn.prepare_cached(
        "UPDATE sync_runs SET ended_ms = ?2, status = ?3, read = ?4, written = ?5, failed = ?6,
                              cursor_to = ?7, message = ?8, report = ?9
         WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![
        param(r.id),
        r.ended_ms,
        r.status,
        param(r.read),
        param(r.written),
        param(r.failed),
        r.cursor_to,
        r.message,
        r.report
    ])
    .map_err(backend)?;
    Ok(r.id)
}

pub(crate) fn errors(conn: &Connection, job: &str, limit: usize) -> StoreResult<Vec<SyncErrorRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT job, run, key, error, payload, created_ms FROM sync_errors
             WHERE job = ?1 ORDER BY created_ms DESC, key",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([job], |r| {
            Ok(SyncErrorRow {
                job: r.get(0)?,
                run: r.get::<_, i64>(1)? as u64,
                key: r.get(2)?,
                error: r.get(3)?,
                payload: r.get(4)?,
                created_ms: r.get(5)?,
            })
        })
        .map_err(backend)?;
    rows.take(limit).map(|r| r.map_err(backend)).collect()
}

pub(crate) fn put_error(conn: &Connection, e: &SyncErrorRow) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sync_errors (job, key, run, error, payload, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(backend)?
    .execute(params![
        e.job,
        e.key,
        param(e.run),
        e.error,
        e.payload,
        e.created_ms
    ])
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn clear_errors(conn: &Connection, job: &str, keys: &[String]) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare_cached("DELETE FROM sync_errors WHERE job = ?1 AND key = ?2")
        .map_err(backend)?;
    let mut n = 0;
    for k in keys {
        n += stmt.execute(params![job, k]).map_err(backend)? as u64;
    }
    Ok(n)
}

pub(crate) fn end_running(conn: &Connection, now: i64) -> StoreResult<u64> {
    Ok(conn
        .prepare_cached(
            "UPDATE sync_runs SET status = 'interrupted', ended_ms = ?1,
                    message = 'the server stopped during the run; the next run continues from its last committed cursor'
             WHERE status = 'running'",
        )
        .map_err(backend)?
        .execute([now])
        .map_err(backend)? as u64)
}

pub(crate) fn state(
    conn: &Connection,
    job: &str,
    keys: &[String],
) -> StoreResult<Vec<(String, String)>> {
    let mut stmt = conn
        .prepare_cached("SELECT image FROM sync_state WHERE job = ?1 AND key = ?2")
        .map_err(backend)?;
    let mut out = Vec::new();
    for k in keys {
        let mut rows = stmt.query(params![job, k]).map_err(backend)?;
        if let Some(r) = rows.next().map_err(backend)? {
            out.push((k.clone(), r.get(0).map_err(backend)?));
        }
    }
    Ok(out)
}

pub(crate) fn state_keys(conn: &Connection, job: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT key FROM sync_state WHERE job = ?1")
        .map_err(backend)?;
    let rows = stmt.query_map([job], |r| r.get(0)).map_err(backend)?;
    rows.map(|r| r.map_err(backend)).collect()
}

pub(crate) fn put_state(conn: &Connection, job: &str, key: &str, image: &str) -> StoreResult<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO sync_state (job, key, image) VALUES (?1, ?2, ?3)")
        .map_err(backend)?
        .execute(params![job, key, image])
        .map_err(backend)?;
    Ok(())
}

pub(crate) fn forget_state(conn: &Connection, job: &str, key: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM sync_state WHERE job = ?1 AND key = ?2")
        .map_err(backend)?
        .execute(params![job, key])
        .map_err(backend)?;
    Ok(())
}

pub(crate) fn clear_state(conn: &Connection, job: &str) -> StoreResult<u64> {
    Ok(conn
        .prepare_cached("DELETE FROM sync_state WHERE job = ?1")
        .map_err(backend)?
        .execute([job])
        .map_err(backend)? as u64)
}

//! SQL for the event log (`event_log`): appends, reads after a replay id, bounds and pruning.
//! Replay ids are the table's `AUTOINCREMENT` row ids, so they never go back and are never
//! reused, even after every event was pruned or the server restarted.

use rusqlite::{params, Connection, OptionalExtension};
use store::{EventBounds, EventKind, EventRow, EventSelect, NewEvent, StoreResult};

use crate::tx::backend;

/// `meta_kv` key holding the highest replay id pruned so far.
const PRUNED_THROUGH: &str = "events_pruned_through";
/// `meta_kv` key holding the replay id through which ids may be announced before the commit that
/// appended them is durable (see [`recover_reservation`]).
const RESERVED_THROUGH: &str = "events_reserved_through";
/// Replay ids reserved at a time: a commit whose events go past the reservation records a new one
/// this far beyond them, and is announced only once durable.
pub(crate) const RESERVE: u64 = 1 << 20;

const COLUMNS: &str = "replay_id, stream, kind, created_ms, uuid, schema_id, payload";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        replay_id: r.get::<_, i64>(0)? as u64,
        event: NewEvent {
            stream: r.get(1)?,
            kind: EventKind::from_code(r.get(2)?).unwrap_or(EventKind::Platform),
            created_ms: r.get(3)?,
            uuid: r.get(4)?,
            schema_id: r.get(5)?,
            payload: r.get(6)?,
        },
    })
}

pub(crate) fn append(conn: &Connection, e: &NewEvent) -> StoreResult<u64> {
    conn.prepare_cached(
        "INSERT INTO event_log (stream, kind, created_ms, uuid, schema_id, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(backend)?
    .execute(params![
        e.stream,
        e.kind.code(),
        e.created_ms,
        e.uuid,
        e.schema_id,
        e.payload
    ])
    .map_err(backend)?;
    Ok(conn.last_insert_rowid() as u64)
}

pub(crate) fn after(
    conn: &Connection,
    select: EventSelect<'_>,
    after: u64,
    limit: usize,
) -> StoreResult<Vec<EventRow>> {
    let after = after.min(i64::MAX as u64) as i64;
    // No `LIMIT ?`: SQLite plans with a bound LIMIT's value, so every new value would prepare
    // the statement again. The index gives rows in order; reading stops after `limit`.
    let (sql, key): (String, rusqlite::types::Value) = match select {
        EventSelect::Stream(s) => (
            format!("SELECT {COLUMNS} FROM event_log WHERE stream = ?1 AND replay_id > ?2 ORDER BY replay_id"),
            s.to_string().into(),
        ),
        EventSelect::Kind(k) => (
            format!("SELECT {COLUMNS} FROM event_log WHERE kind = ?1 AND replay_id > ?2 ORDER BY replay_id"),
            k.code().into(),
        ),
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt.query_map(params![key, after], row).map_err(backend)?;
    rows.take(limit).map(|r| r.map_err(backend)).collect()
}

pub(crate) fn all_after(conn: &Connection, after: u64, limit: usize) -> StoreResult<Vec<EventRow>> {
    // Without `LIMIT ?` (see `after`).
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM event_log WHERE replay_id > ?1 ORDER BY replay_id"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![after.min(i64::MAX as u64) as i64], row)
        .map_err(backend)?;
    rows.take(limit).map(|r| r.map_err(backend)).collect()
}

/// The last replay id given (the sequence, whether or not that event is still in the log).
pub(crate) fn last(conn: &Connection) -> StoreResult<u64> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'event_log'")
        .map_err(backend)?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(last.unwrap_or(0).max(0) as u64)
}

pub(crate) fn bounds(conn: &Connection) -> StoreResult<EventBounds> {
    Ok(EventBounds {
        pruned_through: get_kv(conn, PRUNED_THROUGH)?,
        last: last(conn)?,
    })
}

/// A number kept in `meta_kv` (0 when absent).
fn get_kv(conn: &Connection, key: &str) -> StoreResult<u64> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta_kv WHERE key = ?1")
        .map_err(backend)?
        .query_row([key], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn set_kv(conn: &Connection, key: &str, value: u64) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO meta_kv (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .map_err(backend)?
    .execute(params![key, value.to_string()])
    .map_err(backend)?;
    Ok(())
}

/// Records that replay ids through `through` may be announced before their commit is durable.
/// Written in a commit that is itself announced only once durable.
pub(crate) fn reserve(conn: &Connection, through: u64) -> StoreResult<()> {
    set_kv(conn, RESERVED_THROUGH, through)
}

/// At start: moves the replay id sequence past the reservation and returns it. Subscribers may
/// have received events of a commit that a power loss then undid; their ids are at most the
/// reservation, so starting after it keeps every replay id unique. After a clean stop the
/// reservation equals the sequence ([`settle_reservation`]) and nothing is skipped.
pub(crate) fn recover_reservation(conn: &Connection) -> StoreResult<u64> {
    let through = get_kv(conn, RESERVED_THROUGH)?;
    if last(conn)? < through {
        let n = conn
            .prepare_cached("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'event_log'")
            .map_err(backend)?
            .execute([through.min(i64::MAX as u64) as i64])
            .map_err(backend)?;
        if n == 0 {
            conn.prepare_cached("INSERT INTO sqlite_sequence (name, seq) VALUES ('event_log', ?1)")
                .map_err(backend)?
                .execute([through.min(i64::MAX as u64) as i64])
                .map_err(backend)?;
        }
    }
    Ok(through)
}

/// At a clean stop, when every commit is durable: nothing beyond the sequence was announced, so
/// the reservation shrinks back to it.
pub(crate) fn settle_reservation(conn: &Connection) -> StoreResult<()> {
    set_kv(conn, RESERVED_THROUGH, last(conn)?)
}

/// Removes the events created before `before_ms`: every event older than the first one that is
/// not (replay order is publication order, so the log stays a suffix of the sequence).
pub(crate) fn prune(conn: &Connection, before_ms: i64) -> StoreResult<u64> {
    let keep_from: Option<i64> = conn
        .prepare_cached(
            "SELECT replay_id FROM event_log WHERE created_ms >= ?1 ORDER BY replay_id LIMIT 1",
        )
        .map_err(backend)?
        .query_row([before_ms], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let through = match keep_from {
        Some(k) => k - 1,
        None => bounds(conn)?.last as i64,
    };
    let current = bounds(conn)?.pruned_through as i64;
    if through <= current {
        return Ok(0);
    }
    let n = conn
        .prepare_cached("DELETE FROM event_log WHERE replay_id <= ?1")
        .map_err(backend)?
        .execute([through])
        .map_err(backend)?;
    set_kv(conn, PRUNED_THROUGH, through as u64)?;
    Ok(n as u64)
}

pub(crate) fn rewrite(conn: &Connection, replay_id: u64, payload: Option<&str>) -> StoreResult<()> {
    let id = replay_id.min(i64::MAX as u64) as i64;
    match payload {
        Some(p) => conn
            .prepare_cached("UPDATE event_log SET payload = ?2 WHERE replay_id = ?1")
            .and_then(|mut s| s.execute(params![id, p])),
        None => conn
            .prepare_cached("DELETE FROM event_log WHERE replay_id = ?1")
            .and_then(|mut s| s.execute(params![id])),
    }
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn change_event_members(conn: &Connection) -> StoreResult<Vec<(u64, String)>> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, object FROM meta_change_events ORDER BY seq")
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)).collect()
}

/// Records (or removes) the selection of `object`; returns its number (0 when removing one that
/// was not selected).
pub(crate) fn set_change_events(
    conn: &Connection,
    object: &str,
    selected: bool,
) -> StoreResult<u64> {
    let existing: Option<i64> = conn
        .query_row(
            "SELECT seq FROM meta_change_events WHERE object = ?1",
            [object],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    match (existing, selected) {
        (Some(seq), true) => Ok(seq as u64),
        (None, true) => {
            conn.execute(
                "INSERT INTO meta_change_events (object, created_ms) VALUES (?1, ?2)",
                params![object, model::value::now_millis()],
            )
            .map_err(backend)?;
            Ok(conn.last_insert_rowid() as u64)
        }
        (Some(seq), false) => {
            conn.execute("DELETE FROM meta_change_events WHERE seq = ?1", [seq])
                .map_err(backend)?;
            Ok(seq as u64)
        }
        (None, false) => Ok(0),
    }
}

//! SQL for the delivery queue (`delivery_queue`): enqueue, due reads per endpoint, settling
//! attempts, requeue and purge. Sequences are `AUTOINCREMENT` row ids, so a notification id is
//! never reused; `delivery_endpoints` lists every endpoint ever queued to, so finding due work
//! is one index probe per endpoint, however long the queue.

use rusqlite::{params, Connection, OptionalExtension};
use store::{
    DeliveryCounts, DeliveryFilter, DeliveryRow, DeliveryState, FaultRow, NewDelivery, Settle,
    StoreResult,
};

use crate::tx::backend;

const COLUMNS: &str = "seq, kind, endpoint, action, record, payload, created_ms, next_ms, \
                       expires_ms, state, attempts, last_ms, last_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        seq: r.get::<_, i64>(0)? as u64,
        new: NewDelivery {
            kind: r.get(1)?,
            endpoint: r.get(2)?,
            action: r.get(3)?,
            record: r.get(4)?,
            payload: r.get(5)?,
            created_ms: r.get(6)?,
            next_ms: r.get(7)?,
            expires_ms: r.get(8)?,
        },
        state: DeliveryState::from_code(r.get(9)?),
        attempts: r.get::<_, i64>(10)? as u32,
        last_ms: r.get(11)?,
        last_error: r.get(12)?,
    })
}

fn seq_param(seq: u64) -> i64 {
    seq.min(i64::MAX as u64) as i64
}

pub(crate) fn enqueue(conn: &Connection, d: &NewDelivery) -> StoreResult<u64> {
    conn.prepare_cached("INSERT OR IGNORE INTO delivery_endpoints (endpoint) VALUES (?1)")
        .map_err(backend)?
        .execute([&d.endpoint])
        .map_err(backend)?;
    conn.prepare_cached(
        "INSERT INTO delivery_queue (kind, endpoint, action, record, payload, created_ms, next_ms,
                                     expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .map_err(backend)?
    .execute(params![
        d.kind,
        d.endpoint,
        d.action,
        d.record,
        d.payload,
        d.created_ms,
        d.next_ms,
        d.expires_ms
    ])
    .map_err(backend)?;
    Ok(conn.last_insert_rowid() as u64)
}

pub(crate) fn get(conn: &Connection, seq: u64) -> StoreResult<Option<DeliveryRow>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM delivery_queue WHERE seq = ?1"
    ))
    .map_err(backend)?
    .query_row([seq_param(seq)], row)
    .optional()
    .map_err(backend)
}

pub(crate) fn list(conn: &Connection, f: &DeliveryFilter) -> StoreResult<Vec<DeliveryRow>> {
    let mut sql = format!("SELECT {COLUMNS} FROM delivery_queue WHERE seq > ?1");
    let mut args: Vec<rusqlite::types::Value> = vec![seq_param(f.after).into()];
    if let Some(s) = f.state {
        args.push(s.code().into());
        sql.push_str(&format!(" AND state = ?{}", args.len()));
    }
    if f.failed {
        sql.push_str(" AND state = 0 AND attempts > 0");
    }
    if let Some(e) = &f.endpoint {
        args.push(e.clone().into());
        sql.push_str(&format!(" AND endpoint = ?{}", args.len()));
    }
    if let Some(a) = &f.action {
        args.push(a.clone().into());
        sql.push_str(&format!(" AND action = ?{}", args.len()));
    }
    sql.push_str(" ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), row)
        .map_err(backend)?;
    rows.take(f.limit).map(|r| r.map_err(backend)).collect()
}

/// The endpoints the queue has ever held, by name.
fn endpoint_names(conn: &Connection) -> StoreResult<Vec<String>> {
    conn.prepare_cached("SELECT endpoint FROM delivery_endpoints ORDER BY endpoint")
        .map_err(backend)?
        .query_map([], |r| r.get(0))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)
}

pub(crate) fn endpoints(conn: &Connection) -> StoreResult<Vec<(String, i64)>> {
    let names = endpoint_names(conn)?;
    let mut due = conn
        .prepare_cached("SELECT MIN(next_ms) FROM delivery_queue WHERE state = 0 AND endpoint = ?1")
        .map_err(backend)?;
    let mut out = Vec::new();
    for n in names {
        let next: Option<i64> = due.query_row([&n], |r| r.get(0)).map_err(backend)?;
        if let Some(next) = next {
            out.push((n, next));
        }
    }
    Ok(out)
}

pub(crate) fn due(
    conn: &Connection,
    endpoint: &str,
    now_ms: i64,
    after: Option<(i64, u64)>,
    limit: usize,
) -> StoreResult<Vec<DeliveryRow>> {
    // No `LIMIT ?` (a bound LIMIT makes SQLite prepare again for each value); the index
    // (state, endpoint, next_ms, then the row id) gives rows in due order, from the position
    // on, and reading stops after `limit`.
    let (after_ms, after_seq) = after.map_or((i64::MIN, i64::MIN), |(ms, s)| (ms, seq_param(s)));
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM delivery_queue
             WHERE state = 0 AND endpoint = ?1 AND next_ms <= ?2 AND (next_ms, seq) > (?3, ?4)
             ORDER BY next_ms, seq"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![endpoint, now_ms, after_ms, after_seq], row)
        .map_err(backend)?;
    rows.take(limit).map(|r| r.map_err(backend)).collect()
}

pub(crate) fn expired(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
) -> StoreResult<Vec<DeliveryRow>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM delivery_queue
             WHERE state = 0 AND expires_ms <= ?1 ORDER BY expires_ms"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([now_ms], row).map_err(backend)?;
    rows.take(limit).map(|r| r.map_err(backend)).collect()
}

pub(crate) fn counts(conn: &Connection) -> StoreResult<Vec<DeliveryCounts>> {
    // Per endpoint, index range counts (no scan and sort of the whole queue, which the console
    // and the CLI poll): queued and dead rows from `ix_delivery_due`, failing ones from the
    // partial `ix_delivery_failing`, the oldest queued one by sequence.
    let names = endpoint_names(conn)?;
    let count = |sql: &str, endpoint: &str| -> StoreResult<u64> {
        conn.prepare_cached(sql)
            .map_err(backend)?
            .query_row([endpoint], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(backend)
    };
    let mut out = Vec::new();
    for endpoint in names {
        let waiting = count(
            "SELECT COUNT(*) FROM delivery_queue WHERE state = 0 AND endpoint = ?1",
            &endpoint,
        )?;
        let dead = count(
            "SELECT COUNT(*) FROM delivery_queue WHERE state = 1 AND endpoint = ?1",
            &endpoint,
        )?;
        if waiting == 0 && dead == 0 {
            continue;
        }
        let failing = count(
            "SELECT COUNT(*) FROM delivery_queue INDEXED BY ix_delivery_failing
             WHERE state = 0 AND attempts > 0 AND endpoint = ?1",
            &endpoint,
        )?;
        let oldest_ms: Option<i64> = if waiting == 0 {
            None
        } else {
            conn.prepare_cached(
                // In sequence order, stopping at the first: the index on due time would have
                // every queued row sorted first.
                "SELECT created_ms FROM delivery_queue NOT INDEXED
                 WHERE state = 0 AND endpoint = ?1 ORDER BY seq LIMIT 1",
            )
            .map_err(backend)?
            .query_row([&endpoint], |r| r.get(0))
            .optional()
            .map_err(backend)?
        };
        out.push(DeliveryCounts {
            endpoint,
            queued: waiting - failing,
            failing,
            dead,
            oldest_ms,
        });
    }
    Ok(out)
}

pub(crate) fn settle(conn: &Connection, outcomes: &[(u64, Settle)], now: i64) -> StoreResult<()> {
    // Delivered rows, nearly all of a batch, go first and in sequence order, through one
    // statement: neighbours share pages, and the statement cache is asked once, not per row.
    // (A sequence is in at most one outcome of a batch, so the order changes nothing else.)
    let mut delivered: Vec<i64> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Settle::Delivered))
        .map(|(seq, _)| seq_param(*seq))
        .collect();
    if !delivered.is_empty() {
        delivered.sort_unstable();
        let mut delete = conn
            .prepare_cached("DELETE FROM delivery_queue WHERE seq = ?1 AND state = 0")
            .map_err(backend)?;
        for seq in delivered {
            delete.execute([seq]).map_err(backend)?;
        }
    }
    for (seq, outcome) in outcomes {
        let seq = seq_param(*seq);
        match outcome {
            Settle::Delivered => continue,
            Settle::Retry { next_ms, error } => conn
                .prepare_cached(
                    "UPDATE delivery_queue SET attempts = attempts + 1, next_ms = ?2,
                            last_ms = ?3, last_error = ?4
                     WHERE seq = ?1 AND state = 0",
                )
                .and_then(|mut s| s.execute(params![seq, next_ms, now, error])),
            Settle::Dead { error } => conn
                .prepare_cached(
                    "UPDATE delivery_queue SET state = 1, attempts = attempts + 1,
                            last_ms = ?2, last_error = ?3
                     WHERE seq = ?1 AND state = 0",
                )
                .and_then(|mut s| s.execute(params![seq, now, error])),
            Settle::Expired { error } => conn
                .prepare_cached(
                    "UPDATE delivery_queue SET state = 1, last_error = ?2
                     WHERE seq = ?1 AND state = 0",
                )
                .and_then(|mut s| s.execute(params![seq, error])),
            Settle::Defer { next_ms } => conn
                .prepare_cached(
                    "UPDATE delivery_queue SET next_ms = ?2 WHERE seq = ?1 AND state = 0",
                )
                .and_then(|mut s| s.execute(params![seq, next_ms])),
        }
        .map_err(backend)?;
    }
    Ok(())
}

pub(crate) fn requeue(
    conn: &Connection,
    seqs: &[u64],
    now_ms: i64,
    expires_ms: i64,
) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE delivery_queue SET state = 0, next_ms = ?2,
                    expires_ms = MAX(CASE WHEN state = 1 THEN 0 ELSE expires_ms END, ?3)
             WHERE seq = ?1",
        )
        .map_err(backend)?;
    let mut n = 0;
    for s in seqs {
        n += stmt
            .execute(params![seq_param(*s), now_ms, expires_ms])
            .map_err(backend)? as u64;
    }
    Ok(n)
}

pub(crate) fn purge(conn: &Connection, seqs: &[u64]) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare_cached("DELETE FROM delivery_queue WHERE seq = ?1")
        .map_err(backend)?;
    let mut n = 0;
    for s in seqs {
        n += stmt.execute([seq_param(*s)]).map_err(backend)? as u64;
    }
    Ok(n)
}

pub(crate) fn add_fault(conn: &Connection, f: &FaultRow, keep: u64) -> StoreResult<u64> {
    conn.prepare_cached(
        "INSERT INTO flow_faults (created_ms, flow, object, record, event, user, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(backend)?
    .execute(params![
        f.created_ms,
        f.flow,
        f.object,
        f.record,
        f.event,
        f.user,
        f.message
    ])
    .map_err(backend)?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached("DELETE FROM flow_faults WHERE seq <= ?1")
        .map_err(backend)?
        .execute([seq - keep.min(i64::MAX as u64) as i64])
        .map_err(backend)?;
    Ok(seq as u64)
}

pub(crate) fn faults(conn: &Connection, before: u64, limit: usize) -> StoreResult<Vec<FaultRow>> {
    let before = if before == 0 {
        i64::MAX
    } else {
        seq_param(before)
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, created_ms, flow, object, record, event, user, message
             FROM flow_faults WHERE seq < ?1 ORDER BY seq DESC",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([before], |r| {
            Ok(FaultRow {
                seq: r.get::<_, i64>(0)? as u64,
                created_ms: r.get(1)?,
                flow: r.get(2)?,
                object: r.get(3)?,
                record: r.get(4)?,
                event: r.get(5)?,
                user: r.get(6)?,
                message: r.get(7)?,
            })
        })
        .map_err(backend)?;
    rows.take(limit).map(|r| r.map_err(backend)).collect()
}

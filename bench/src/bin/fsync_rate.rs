//! The single-commit fsync rate of this machine: SQLite in WAL mode with `synchronous=FULL`,
//! one 200-byte row per transaction, in the given directory (use the same filesystem as the
//! data directory). Prints commits per second.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let path = std::path::Path::new(&dir).join("fsync-rate.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", [])?;
    let payload = "x".repeat(200);
    let t = Instant::now();
    for _ in 0..n {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [&payload])?;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    println!("{rate:.0}");
    Ok(())
}

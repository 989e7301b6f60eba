//! The embedded default store: SQLite in WAL mode with a group-committing writer and a reader pool.
//!
//! There is one write connection ([`Writer`], behind a lock). The writer thread takes every job
//! waiting in its queue (up to [`MAX_BATCH`]), runs each inside its own savepoint within one
//! transaction and commits once; a small job (one record's save, [`Store::submit_small`]) that
//! finds the queue empty and the writer idle runs the same way at once on its caller's thread,
//! sparing two thread hand-offs (to the writer and, for subscribers, back to the runtime), which
//! on a virtual machine cost more than the write. Either way the batch then goes to the sync
//! thread, which syncs the WAL once for every batch waiting (group commit) and only then reports
//! each job's outcome, while the writer goes on. The batch's events are announced to subscribers
//! between the commit and the sync ([`Durability`]). Readers use a small pool of connections that
//! see committed data only.
//!
//! WAL checkpoints run on their own thread and connection, started after each commit once the
//! WAL holds [`CHECKPOINT_FROM_PAGES`], so copying WAL frames into the database overlaps with the
//! writer's next batch; the writer's own checkpoint (past [`WRITER_CHECKPOINT_PAGES`]) then finds
//! little left to copy and lets the WAL start over, which bounds its size. Small commits below
//! that length are not followed by a checkpoint: one that copied everything would let the next
//! commit start the WAL over, and SQLite syncs a restarted WAL's header inside `COMMIT`. Before
//! each checkpoint, idle pooled readers still holding an older snapshot end their read
//! transaction: a reader's snapshot is as far as a checkpoint may copy, and a pinned one made the
//! WAL grow without bound during Bulk loads (and left the copying to the writer).
//!
//! The schema lives in memory as an immutable [`Schema`] snapshot. A job that changes metadata
//! (custom objects and fields are DDL) works on the writer's working copy; the copy becomes the
//! published snapshot after the commit, and is dropped if the job or the commit fails.

mod bulk;
mod codec;

mod ddl;
mod delivery;
mod events;
mod query;
mod sync;
mod tx;

#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use model::spec::{CustomFieldSpec, CustomObjectSpec};
use model::{KeyPrefix, ObjectDef, OrgMarker, Schema};
use parking_lot::Mutex;
use rusqlite::Connection;
use store::{EventTip, ReadTx, Store, StoreError, StoreResult, WriteJob};
use tokio::sync::mpsc;

use crate::tx::{backend, Conn, WConn};

pub use ddl::ident;

/// WAL pages from which the checkpoint thread copies the WAL into the database after each
/// commit. Below it the WAL is left to grow: a checkpoint that copies everything lets the next
/// commit start the WAL over, and SQLite syncs a restarted WAL's header inside that `COMMIT`,
/// which would put a sync in front of every small commit's announcement (≈ 0.3 ms).
const CHECKPOINT_FROM_PAGES: i32 = 1024;

thread_local! {
    /// Pages in the WAL after the last commit of this thread's write connection.
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The write connection's WAL hook: notes the WAL's length for the writer, and checkpoints past
/// [`WRITER_CHECKPOINT_PAGES`] (what SQLite's own `wal_autocheckpoint` would do; a hook of our
/// own replaces it).
fn after_wal_commit(wal: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    if i64::from(pages) >= WRITER_CHECKPOINT_PAGES {
        // Busy readers stop it short; the next commit tries again.
        let _ = wal.checkpoint();
    }
    Ok(())
}

/// Most events the writer hands to subscribers with a commit's announcement ([`EventTip`]);
/// a commit that adds more leaves them to read the log.
const FRESH_EVENTS: usize = 256;
/// Most jobs committed together.
pub const MAX_BATCH: usize = 512;
/// WAL pages after which the writer checkpoints itself (as `wal_autocheckpoint` would): the
/// checkpoint thread has usually copied them already, and a complete checkpoint lets the WAL
/// start over.
pub const WRITER_CHECKPOINT_PAGES: i64 = 8192;
/// Queue length in front of the writer; senders wait when it is full (back-pressure).
pub const QUEUE_LEN: usize = 4096;

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of pooled read connections.
    pub readers: usize,
    /// Sync the WAL after every commit before acknowledging it. Off only for throwaway test data.
    pub durable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            readers: 6,
            durable: true,
        }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    schema: Arc<ArcSwap<Schema>>,
    marker: OrgMarker,
    readers: Arc<Vec<Mutex<Reader>>>,
    /// Durable commits so far; readers compare it with their snapshot's to reuse it.
    commits: Arc<AtomicU64>,
    /// Stops the thread that releases stale reader snapshots.
    stop: Arc<AtomicBool>,
    janitor: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The last committed event's replay id (the writer sends it).
    tip: Arc<tokio::sync::watch::Sender<EventTip>>,
    /// Moves after commits that queued notifications.
    wake: Arc<tokio::sync::watch::Sender<u64>>,
    /// Runs WAL checkpoints after commits (ends when the writer does).
    checkpoints: Mutex<Option<std::thread::JoinHandle<()>>>,
    next_reader: AtomicUsize,
    jobs: Mutex<Option<mpsc::Sender<WriteJob>>>,
    /// The write connection and its state, shared by the writer thread and small jobs run in place.
    writer: Arc<Mutex<Writer>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What the service attached for write jobs ([`Store::set_context`]).
    context: Arc<Mutex<Option<Context>>>,
    /// Whether the writer syncs the WAL itself after each commit (see [`Durability`]).
    defers_sync: bool,
}

/// The service's state attached to the store.
type Context = Arc<dyn std::any::Any + Send + Sync>;

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn open_conn(path: &Path, durable: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -32768)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// Loads the applied custom metadata and builds the schema.
fn load_schema(conn: &Connection) -> StoreResult<Schema> {
    let mut defs = model::standard::standard_objects();
    let mut stmt = conn
        .prepare("SELECT name, prefix, spec FROM meta_objects ORDER BY seq")
        .map_err(backend)?;
    let objects = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    for (name, prefix, spec) in objects {
        let mut spec: CustomObjectSpec = serde_json::from_str(&spec)
            .map_err(|e| StoreError::Backend(format!("stored spec of {name}: {e}")))?;
        spec.full_name = name.clone();
        let prefix = KeyPrefix::parse(&prefix)
            .ok_or_else(|| StoreError::Backend(format!("bad prefix of {name}")))?;
        defs.push(
            spec.to_object(prefix)
                .map_err(|e| StoreError::Backend(format!("stored object {name}: {}", e.message)))?,
        );
    }
    let mut stmt = conn
        .prepare("SELECT object, name, spec FROM meta_fields ORDER BY seq")
        .map_err(backend)?;
    let fields = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    for (object, name, spec) in fields {
        let spec: CustomFieldSpec = serde_json::from_str(&spec)
            .map_err(|e| StoreError::Backend(format!("stored spec of {object}.{name}: {e}")))?;
        let f = spec.to_field(&name).map_err(|e| {
            StoreError::Backend(format!("stored field {object}.{name}: {}", e.message))
        })?;
        let o: &mut ObjectDef = defs
            .iter_mut()
            .find(|o| o.name.eq_ignore_ascii_case(&object))
            .ok_or_else(|| {
                StoreError::Backend(format!("stored field {name} of unknown object {object}"))
            })?;
        o.push_field(f)
            .map_err(|e| StoreError::Backend(e.message))?;
    }
    for (_, object) in crate::events::change_event_members(conn)? {
        if let Some(o) = defs
            .iter_mut()
            .find(|o| o.name.eq_ignore_ascii_case(&object))
        {
            o.change_events = true;
        }
    }
    let generation: u64 = conn
        .query_row(
            "SELECT value FROM meta_kv WHERE key = 'schema_generation'",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    Schema::build(defs, generation)
        .map_err(|e| StoreError::Backend(format!("stored metadata is inconsistent: {}", e.message)))
}

/// Creates missing tables and columns for every object of the schema (new standard fields after an
/// upgrade arrive this way).
fn sync_tables(conn: &Connection, schema: &Schema) -> StoreResult<()> {
    for o in schema.objects() {
        if o.kind == model::ObjectKind::PlatformEvent {
            continue;
        }
        let table = o.table();
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({})", ident(&table)))
            .map_err(backend)?;
        let existing: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(1))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        if existing.is_empty() {
            for sql in ddl::create_object_sql(o) {
                conn.execute(&sql, []).map_err(backend)?;
            }
            continue;
        }
        for f in &o.fields {
            if !existing.iter().any(|c| c.eq_ignore_ascii_case(f.column())) {
                for sql in ddl::add_field_sql(o, f) {
                    conn.execute(&sql, []).map_err(backend)?;
                }
            } else if let Some(sql) = ddl::index_sql(o, f) {
                conn.execute(&sql, []).map_err(backend)?;
            }
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts the writer thread.
    /// Must be called inside a Tokio runtime.
    pub fn open(path: &Path, options: Options) -> StoreResult<Arc<SqliteStore>> {
        let conn = open_conn(path, options.durable).map_err(backend)?;
        conn.execute_batch(ddl::SYSTEM_TABLES).map_err(backend)?;
        for (table, column, sql) in ddl::UPGRADES {
            let has: bool = conn
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
                ))
                .and_then(|mut s| s.exists([]))
                .map_err(backend)?;
            if !has {
                conn.execute_batch(sql).map_err(backend)?;
            }
        }
        conn.execute_batch(ddl::LATE_INDEXES).map_err(backend)?;
        let marker = match conn.query_row(
            "SELECT value FROM meta_kv WHERE key = 'org_marker'",
            [],
            |r| r.get::<_, String>(0),
        ) {
            Ok(m) => OrgMarker::parse(&m).ok_or_else(|| {
                StoreError::Backend(format!("stored org marker {m:?} is invalid"))
            })?,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                let m = OrgMarker::random();
                conn.execute(
                    "INSERT INTO meta_kv (key, value) VALUES ('org_marker', ?1)",
                    [m.as_str()],
                )
                .map_err(backend)?;
                m
            }
            Err(e) => return Err(backend(e)),
        };
        let schema = load_schema(&conn)?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
        sync_tables(&conn, &schema)?;
        let reserved = events::recover_reservation(&conn)?;
        conn.execute_batch("COMMIT").map_err(backend)?;
        let durability = Durability::new(&conn, path, options.durable, reserved);
        let defers_sync = durability.wal.is_some();
        let schema = Arc::new(ArcSwap::from_pointee(schema));
        let mut readers = Vec::new();
        for _ in 0..options.readers.max(1) {
            let r = open_conn(path, options.durable).map_err(backend)?;
            r.pragma_update(None, "query_only", "ON").map_err(backend)?;
            readers.push(Mutex::new(Reader {
                conn: r,
                snapshot: None,
            }));
        }
        let readers = Arc::new(readers);
        let commits = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        conn.wal_hook(Some(after_wal_commit));
        let checkpointer = open_conn(path, options.durable).map_err(backend)?;
        let (checkpoint_tx, checkpoint_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let checkpoints = {
            let (readers, commits) = (readers.clone(), commits.clone());
            std::thread::Builder::new()
                .name("conflux-checkpoint".into())
                .spawn(move || {
                    // One checkpoint per wake-up; wake-ups during a checkpoint coalesce into one.
                    for () in checkpoint_rx.iter() {
                        // Idle readers still holding an older snapshot would stop the checkpoint
                        // at their snapshot (and keep the WAL from starting over): end them first.
                        release_stale(&readers, commits.load(Ordering::Acquire));
                        if let Err(e) =
                            checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::warn!(error = %e, "WAL checkpoint failed");
                        }
                    }
                })
                .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?
        };
        let janitor = {
            let (readers, commits, stop) = (readers.clone(), commits.clone(), stop.clone());
            std::thread::Builder::new()
                .name("conflux-readers".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        release_stale(&readers, commits.load(Ordering::Acquire));
                    }
                })
                .map_err(|e| StoreError::Backend(format!("cannot start the reader janitor: {e}")))?
        };
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let tip = Arc::new(tokio::sync::watch::Sender::new(EventTip {
            last: events::bounds(&conn)?.last,
            ..EventTip::default()
        }));
        let wake = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let context: Arc<Mutex<Option<Context>>> = Arc::default();
        let (sync_tx, sync_rx) = std::sync::mpsc::channel();
        let sync_thread = {
            let wal = match &durability.wal {
                Some(f) => Some(f.try_clone().map_err(|e| {
                    StoreError::Backend(format!("cannot open the WAL for the sync thread: {e}"))
                })?),
                None => None,
            };
            // The sync thread's own view of the writer's durability: the same WAL file and
            // reservation.
            let durability = Durability {
                wal,
                reserved: durability.reserved.clone(),
            };
            let (tip, wake) = (tip.clone(), wake.clone());
            std::thread::Builder::new()
                .name("conflux-sync".into())
                .spawn(move || sync_loop(sync_rx, durability, tip, wake))
                .map_err(|e| StoreError::Backend(format!("cannot start the sync thread: {e}")))?
        };
        let writer = Arc::new(Mutex::new(Writer {
            conn,
            schema: schema.clone(),
            marker,
            durability,
            seqs: HashMap::new(),
            commits: commits.clone(),
            checkpoint: Some(checkpoint_tx),
            tip: tip.clone(),
            wake: wake.clone(),
            context: context.clone(),
            syncer: Some(sync_tx),
        }));
        let handle = {
            let writer = writer.clone();
            std::thread::Builder::new()
                .name("conflux-writer".into())
                .spawn(move || writer_loop(writer, rx, sync_thread))
                .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?
        };
        Ok(Arc::new(SqliteStore {
            path: path.to_path_buf(),
            schema,
            marker,
            readers,
            commits,
            stop,
            janitor: Mutex::new(Some(janitor)),
            checkpoints: Mutex::new(Some(checkpoints)),
            tip,
            wake,
            next_reader: AtomicUsize::new(0),
            jobs: Mutex::new(Some(tx)),
            writer,
            writer_thread: Mutex::new(Some(handle)),
            context,
            defers_sync,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the writer syncs the WAL itself after each commit, so a commit's events are
    /// announced while the sync runs (a durable store whose WAL file could be opened).
    pub fn defers_sync(&self) -> bool {
        self.defers_sync
    }

    /// How many pooled readers hold an open read transaction (for tests and diagnostics).
    pub fn open_snapshots(&self) -> usize {
        self.readers
            .iter()
            .filter(|r| r.try_lock().is_none_or(|r| r.snapshot.is_some()))
            .count()
    }

    /// Stops accepting writes, lets the writer finish what is queued, and waits for it.
    /// Blocks: call it from a blocking context at shutdown.
    pub fn close(&self) {
        drop(self.jobs.lock().take());
        if let Some(h) = self.writer_thread.lock().take() {
            let _ = h.join();
        }
        if let Some(h) = self.checkpoints.lock().take() {
            let _ = h.join();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.janitor.lock().take() {
            let _ = h.join();
        }
        release_stale(&self.readers, u64::MAX);
    }
}

/// A pooled read connection and the commit count its open read transaction started at.
///
/// A reader keeps its read transaction (its snapshot) open between requests as long as nothing
/// was committed since it began: beginning and ending a SQLite read transaction takes file locks
/// and was the largest cost of a GET by id. Any commit makes the snapshot stale; the next read
/// starts a new transaction, and the janitor thread ends stale idle ones so they never hold back
/// WAL checkpoints for long.
struct Reader {
    conn: Connection,
    snapshot: Option<u64>,
}

/// Ends the read transactions of idle readers whose snapshot predates commit `current`.
fn release_stale(readers: &[Mutex<Reader>], current: u64) {
    for r in readers {
        if let Some(mut r) = r.try_lock() {
            if r.snapshot.is_some_and(|s| s != current) {
                if !r.conn.is_autocommit() {
                    let _ = exec(&r.conn, "COMMIT");
                }
                r.snapshot = None;
            }
        }
    }
}

/// How the writer makes a commit durable, and how far replay ids may be announced before it is.
///
/// With a durable store the writer connection runs with `synchronous=NORMAL`, so `COMMIT` writes
/// the WAL frames (and makes them visible) without waiting for the disk; the sync thread then
/// syncs the WAL file, which is what `synchronous=FULL` does inside `COMMIT`, and only after that
/// are the batch's jobs acknowledged. The gap lets a commit's events reach subscribers while the
/// sync runs. What may be seen before it is durable survives `kill -9` (it is in the kernel's page
/// cache) and is lost only with the machine; replay ids stay unique even then because ids are
/// announced early only up to a reservation that an earlier, durable commit recorded
/// ([`events::recover_reservation`]).
struct Durability {
    /// The WAL file, synced after each commit; `None` when SQLite syncs inside `COMMIT` (the
    /// WAL could not be opened) or nothing is synced (a throwaway store).
    wal: Option<std::fs::File>,
    /// Replay ids through this one may be announced before their commit is durable (raised by
    /// the sync thread once a commit that recorded a new reservation is durable).
    reserved: Arc<AtomicU64>,
}

impl Durability {
    fn new(conn: &Connection, path: &Path, durable: bool, reserved: u64) -> Durability {
        let reserved = Arc::new(AtomicU64::new(reserved));
        if !durable {
            return Durability {
                wal: None,
                reserved,
            };
        }
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&wal_path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                conn.pragma_update(None, "synchronous", "NORMAL")
                    .map(|()| f)
                    .map_err(|e| e.to_string())
            });
        match wal {
            Ok(f) => Durability {
                wal: Some(f),
                reserved,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot sync the WAL apart from commits; SQLite syncs inside each commit");
                Durability {
                    wal: None,
                    reserved,
                }
            }
        }
    }

    /// Syncs what the last commit wrote.
    fn sync(&self) -> std::io::Result<()> {
        match &self.wal {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// A committed batch waiting for its WAL sync: what happens once it is durable.
struct Committed {
    /// The jobs' outcome reports.
    done: Vec<Box<dyn FnOnce(StoreResult<()>) + Send>>,
    /// The replay id reservation the commit recorded, if it recorded one.
    reserve: Option<u64>,
    /// The commit's last event and its events, when they may be announced only once durable.
    late: Option<(u64, Option<EventTip>)>,
    /// Whether the commit queued notifications (the delivery engine is woken once durable).
    deliveries: bool,
}

/// Makes `last` the announced tip, with the commit's events when they follow the current tip.
fn announce(tip: &tokio::sync::watch::Sender<EventTip>, last: u64, fresh: Option<EventTip>) {
    tip.send_if_modified(|t| {
        if last <= t.last {
            return false;
        }
        *t = match fresh.filter(|f| f.after == t.last) {
            Some(f) => f,
            None => EventTip {
                last,
                ..EventTip::default()
            },
        };
        true
    });
}

/// What happens once committed batches are durable (`synced` is the sync's outcome).
fn settle(
    batches: Vec<Committed>,
    synced: &std::io::Result<()>,
    reserved: &AtomicU64,
    tip: &tokio::sync::watch::Sender<EventTip>,
    wake: &tokio::sync::watch::Sender<u64>,
) {
    if let Err(e) = synced {
        // The batches are committed and visible, but may not survive the machine: nobody is told
        // they succeeded.
        tracing::error!(error = %e, "cannot sync the WAL; the batches' jobs are told they failed");
    }
    for b in batches {
        let outcome = match synced {
            Ok(()) => {
                if let Some(r) = b.reserve {
                    reserved.fetch_max(r, Ordering::AcqRel);
                }
                if let Some((last, fresh)) = b.late {
                    announce(tip, last, fresh);
                }
                if b.deliveries {
                    wake.send_modify(|n| *n += 1);
                }
                Ok(())
            }
            Err(e) => Err(format!("the commit could not be made durable: {e}")),
        };
        for d in b.done {
            d(outcome.clone().map_err(StoreError::Backend));
        }
    }
}

/// The sync thread: syncs the WAL once for every committed batch waiting (in commit order),
/// then settles them. The writer goes on to its next batch meanwhile.
fn sync_loop(
    rx: std::sync::mpsc::Receiver<Committed>,
    durability: Durability,
    tip: Arc<tokio::sync::watch::Sender<EventTip>>,
    wake: Arc<tokio::sync::watch::Sender<u64>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        let synced = durability.sync();
        settle(batches, &synced, &durability.reserved, &tip, &wake);
    }
}

/// The write connection and what the writer keeps between batches, behind one lock: the writer
/// thread runs queued batches, and a small job ([`Store::submit_small`]) runs at once on its
/// caller's thread when the writer is idle.
struct Writer {
    conn: Connection,
    schema: Arc<ArcSwap<Schema>>,
    marker: OrgMarker,
    durability: Durability,
    /// Sequence numbers handed out, per key prefix.
    seqs: HashMap<String, u64>,
    /// Durable commits so far (shared with the readers).
    commits: Arc<AtomicU64>,
    /// Wakes the checkpoint thread; `None` once the store is closing (the thread then ends).
    checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
    tip: Arc<tokio::sync::watch::Sender<EventTip>>,
    wake: Arc<tokio::sync::watch::Sender<u64>>,
    context: Arc<Mutex<Option<Context>>>,
    /// The sync thread's queue; `None` once the store is closing (no batch runs after that).
    syncer: Option<std::sync::mpsc::Sender<Committed>>,
}

impl Writer {
    /// Runs `batch` as one transaction and hands it to the sync thread; starts a checkpoint when
    /// the WAL has grown long.
    fn run(&mut self, batch: Vec<WriteJob>) {
        self.run_batch(batch);
        if let Some(c) = self
            .checkpoint
            .as_ref()
            .filter(|_| WAL_PAGES.get() >= CHECKPOINT_FROM_PAGES)
        {
            // Full means a checkpoint is already pending.
            let _ = c.try_send(());
        }
    }

    fn run_batch(&mut self, batch: Vec<WriteJob>) {
        let conn = &self.conn;
        let context = self.context.lock().clone();
        let mut working = self.schema.load_full();
        let mut changed = false;
        let mut events = false;
        let mut deliveries = false;
        let mut done: Vec<Box<dyn FnOnce(StoreResult<()>) + Send>> =
            Vec::with_capacity(batch.len());
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            let err = backend(e);
            drop(batch);
            tracing::error!(error = %err, "cannot begin a write transaction");
            return;
        }
        let seqs_before = self.seqs.clone();
        for job in batch {
            if exec(conn, "SAVEPOINT job").is_err() {
                continue;
            }
            let mut w = WConn {
                read: Conn {
                    conn,
                    schema: working.clone(),
                    marker: self.marker,
                },
                seqs: &mut self.seqs,
                schema_changed: false,
                savepoints: Vec::new(),
                insert_stmt: None,
                update_stmt: None,
                insert_many_stmt: None,
                events_appended: false,
                detached: Vec::new(),
                deliveries_changed: false,
                changes: Default::default(),
                context: context.as_ref(),
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut done = job(&mut w);
                if done.keep {
                    if let Some(at_end) = w.changes.at_end.take() {
                        if let Err(e) = at_end(&mut w) {
                            tracing::error!(error = %e, "a write job's change events could not be completed; its changes were rolled back");
                            let report =
                                std::mem::replace(&mut done.after_commit, Box::new(|_| {}));
                            report(Err(e));
                            done.keep = false;
                        }
                    }
                }
                done
            }));
            let (schema_after, schema_changed) = (w.read.schema.clone(), w.schema_changed);
            let detached = std::mem::take(&mut w.detached);
            let job_events = w.events_appended;
            let job_deliveries = w.deliveries_changed;
            drop(w);
            match outcome {
                Ok(d) if d.keep => {
                    let _ = exec(conn, "RELEASE job");
                    if schema_changed {
                        working = schema_after;
                        changed = true;
                    }
                    events |= job_events;
                    deliveries |= job_deliveries;
                    done.push(d.after_commit);
                }
                Ok(d) => {
                    let _ = exec(conn, "ROLLBACK TO job").and_then(|_| exec(conn, "RELEASE job"));
                    done.push(d.after_commit);
                }
                Err(_) => {
                    tracing::error!("a write job panicked; its changes were rolled back");
                    let _ = exec(conn, "ROLLBACK TO job").and_then(|_| exec(conn, "RELEASE job"));
                }
            }
            for e in &detached {
                match events::append(conn, e) {
                    Ok(_) => events = true,
                    Err(err) => tracing::error!(error = %err, "cannot append a detached event"),
                }
            }
        }
        let mut commit = Ok(());
        if changed {
            commit = conn
                .execute("INSERT INTO meta_kv (key, value) VALUES ('schema_generation', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [working.generation.to_string()])
                .map(|_| ())
                .map_err(backend);
        }
        // The new tip: the sequence as the batch leaves it (an event appended in a savepoint that
        // was rolled back gave its id back). Past the durable reservation, the commit records a
        // new one and is announced only once durable.
        let mut last_event = None;
        let mut reserve = None;
        let mut fresh = None;
        if events && commit.is_ok() {
            commit = events::last(conn).and_then(|last| {
                last_event = Some(last);
                // The batch's events, read back on this connection (its pages are at hand), to
                // go out with the announcement; not when the replay ids say there are too many.
                let after = self.tip.borrow().last;
                if last.saturating_sub(after) <= FRESH_EVENTS as u64 {
                    fresh = Some(EventTip {
                        last,
                        fresh: Some(events::all_after(conn, after, FRESH_EVENTS)?.into()),
                        after,
                    });
                }
                if last > self.durability.reserved.load(Ordering::Acquire) {
                    let through = last + events::RESERVE;
                    events::reserve(conn, through)?;
                    reserve = Some(through);
                }
                Ok(())
            });
        }
        if commit.is_ok() {
            commit = exec(conn, "COMMIT").map_err(backend);
        }
        if let Err(e) = commit {
            tracing::error!(error = %e, "commit failed; the batch was rolled back");
            let _ = exec(conn, "ROLLBACK");
            self.seqs = seqs_before;
            for d in done {
                d(Err(StoreError::Backend(e.to_string())));
            }
            return;
        }
        if changed {
            self.schema.store(working);
        }
        // Before anyone hears of this commit: a read that starts after an acknowledgement must
        // not reuse a snapshot from before it.
        self.commits.fetch_add(1, Ordering::Release);
        let early = self.durability.wal.is_some() && reserve.is_none();
        let mut late = None;
        if let Some(last) = last_event {
            if early {
                announce(&self.tip, last, fresh);
            } else {
                late = Some((last, fresh));
            }
        }
        let batch = Committed {
            done,
            reserve,
            late,
            deliveries,
        };
        let batch = match &self.syncer {
            Some(s) => match s.send(batch) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(b)) => b,
            },
            None => batch,
        };
        // The sync thread is gone (it can only have panicked): sync here.
        let synced = self.durability.sync();
        settle(
            vec![batch],
            &synced,
            &self.durability.reserved,
            &self.tip,
            &self.wake,
        );
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_BATCH`]) and runs them as one batch;
/// when the queue closes, waits for the sync thread and settles the replay id reservation.
fn writer_loop(
    writer: Arc<Mutex<Writer>>,
    mut rx: mpsc::Receiver<WriteJob>,
    sync_thread: std::thread::JoinHandle<()>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut w = writer.lock();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        w.run(batch);
    }
    let mut w = writer.lock();
    drop(w.syncer.take());
    drop(w.checkpoint.take());
    let _ = sync_thread.join();
    // A clean stop: every commit is durable, so the next start need not skip replay ids.
    if let Err(e) = events::settle_reservation(&w.conn).and_then(|()| {
        w.durability
            .sync()
            .map_err(|e| StoreError::Backend(e.to_string()))
    }) {
        tracing::warn!(error = %e, "cannot settle the replay id reservation");
    }
    tracing::debug!("writer stopped");
}

/// Runs a statement through the statement cache (the writer runs the same few transaction-control
/// statements for every job; parsing them from text each time is measurable).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

impl Store for SqliteStore {
    fn schema(&self) -> Arc<Schema> {
        self.schema.load_full()
    }

    fn marker(&self) -> OrgMarker {
        self.marker
    }

    fn read_dyn(&self, f: &mut dyn FnMut(&dyn ReadTx)) {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let mut guard = (0..n)
            .find_map(|k| self.readers[(start + k) % n].try_lock())
            .unwrap_or_else(|| self.readers[start % n].lock());
        let schema = self.schema.load_full();
        let reader = &mut *guard;
        // One read transaction per read, so multi-statement reads see one snapshot; reused
        // while nothing was committed since it began (see `Reader`).
        let current = self.commits.load(Ordering::Acquire);
        let reusable = reader.snapshot == Some(current) && !reader.conn.is_autocommit();
        if !reusable {
            if !reader.conn.is_autocommit() {
                let _ = exec(&reader.conn, "COMMIT");
            }
            reader.snapshot = exec(&reader.conn, "BEGIN").ok().map(|_| current);
        }
        let view = Conn {
            conn: &reader.conn,
            schema,
            marker: self.marker,
        };
        f(&view);
        if reader.conn.is_autocommit() {
            // A failed statement ended the transaction; start afresh next time.
            reader.snapshot = None;
        }
    }

    fn data_dir(&self) -> Option<PathBuf> {
        self.path.parent().map(Path::to_path_buf)
    }

    fn set_context(&self, ctx: Context) {
        *self.context.lock() = Some(ctx);
    }

    fn event_tip(&self) -> tokio::sync::watch::Receiver<EventTip> {
        self.tip.subscribe()
    }

    fn delivery_wake(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wake.subscribe()
    }

    fn submit_small(
        &self,
        job: WriteJob,
    ) -> Pin<Box<dyn Future<Output = StoreResult<()>> + Send + '_>> {
        let Some(sender) = self.jobs.lock().clone() else {
            return Box::pin(async { Err(StoreError::Closed) });
        };
        // Nothing queued and the writer idle: run it here, sparing the hand-off to the writer
        // thread and back (its sync still happens on the sync thread).
        if sender.capacity() == sender.max_capacity() {
            if let Some(mut w) = self.writer.try_lock() {
                if w.syncer.is_some() {
                    w.run(vec![job]);
                    return Box::pin(async { Ok(()) });
                }
            }
        }
        Box::pin(async move { sender.send(job).await.map_err(|_| StoreError::Closed) })
    }

    fn submit(&self, job: WriteJob) -> Pin<Box<dyn Future<Output = StoreResult<()>> + Send + '_>> {
        let sender = self.jobs.lock().clone();
        Box::pin(async move {
            match sender {
                Some(s) => s.send(job).await.map_err(|_| StoreError::Closed),
                None => Err(StoreError::Closed),
            }
        })
    }
}

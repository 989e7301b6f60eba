//! SOQL queries: compile against the caller's permissions, run, and page through results with
//! query locators.
//!
//! The first page of a records query fixes the result: the matching row sequences (in result
//! order) are kept in a cursor, and each page fetches its rows by sequence. `totalSize` is therefore
//! exact on every page and later pages are consistent with the first. A locator is
//! `<cursor id>-<offset of the next row>` (a single path segment, accepted under `/query/` whatever
//! resource produced it). Cursors expire after an idle period and the oldest are dropped beyond a
//! cap; an expired locator answers `INVALID_QUERY_LOCATOR`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::{ApiError, ApiResult, ErrorCode, Id, KeyPrefix};
use parking_lot::Mutex;
use soql::plan::{Plan, PlanKind};
use store::QueryRow;

use crate::auth::Principal;
use crate::Org;

/// Most aggregate rows a query may return (aggregate queries cannot page).
pub const MAX_AGGREGATE_ROWS: usize = 2000;

/// One page of a query result.
#[derive(Debug, Clone)]
pub struct QueryPage {
    /// The compiled query (its columns describe the rows).
    pub plan: Arc<Plan>,
    /// Rows of the whole query (count for `COUNT()`).
    pub total_size: u64,
    /// No more pages.
    pub done: bool,
    /// The locator of the next page, when not done.
    pub next_locator: Option<String>,
    /// This page's rows.
    pub rows: Vec<QueryRow>,
}

/// An open cursor.
#[derive(Debug)]
struct Cursor {
    plan: Arc<Plan>,
    /// The query text, to compile again when permissions or metadata change between pages.
    text: String,
    include_deleted: bool,
    /// The auth generation the plan was compiled under.
    generation: u64,
    seqs: Arc<Vec<u64>>,
    user_seq: u64,
    page_size: usize,
    touched: Instant,
}

/// What a locator fetch needs from its cursor.
struct PageSource {
    plan: Arc<Plan>,
    text: String,
    include_deleted: bool,
    generation: u64,
    seqs: Arc<Vec<u64>>,
    page_size: usize,
}

/// Open query cursors by id.
#[derive(Debug)]
pub struct Cursors {
    max: usize,
    idle: Duration,
    next: AtomicU64,
    map: Mutex<HashMap<String, Cursor>>,
}

impl Cursors {
    /// A cursor table with a size cap and an idle expiry.
    pub fn new(max: usize, idle_secs: u64) -> Cursors {
        Cursors {
            max: max.max(1),
            idle: Duration::from_secs(idle_secs.max(1)),
            next: AtomicU64::new(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self, marker: model::OrgMarker, c: Cursor) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let key = Id::new(KeyPrefix(*b"01g"), marker, n).to_18();
        let mut map = self.map.lock();
        let idle = self.idle;
        map.retain(|_, c| c.touched.elapsed() < idle);
        if map.len() >= self.max {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, c)| c.touched)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key.clone(), c);
        key
    }

    fn take_page(&self, key: &str, user_seq: u64) -> Option<PageSource> {
        let mut map = self.map.lock();
        let c = map.get_mut(key)?;
        if c.user_seq != user_seq || c.touched.elapsed() >= self.idle {
            return None;
        }
        c.touched = Instant::now();
        Some(PageSource {
            plan: c.plan.clone(),
            text: c.text.clone(),
            include_deleted: c.include_deleted,
            generation: c.generation,
            seqs: c.seqs.clone(),
            page_size: c.page_size,
        })
    }

    fn replace_plan(&self, key: &str, plan: Arc<Plan>, generation: u64) {
        if let Some(c) = self.map.lock().get_mut(key) {
            c.plan = plan;
            c.generation = generation;
        }
    }
}

fn store_err(e: store::StoreError) -> ApiError {
    e.into()
}

fn invalid_locator() -> ApiError {
    ApiError::new(ErrorCode::InvalidQueryLocator, "invalid query locator")
}

impl Org {
    /// Compiles SOQL against the current schema and the caller's permissions.
    fn compile(&self, p: &Principal, text: &str, include_deleted: bool) -> ApiResult<Plan> {
        use chrono::Datelike;
        let today = chrono::Utc::now().date_naive();
        let opts = soql::ResolveOptions {
            today: (today.year(), today.month(), today.day()),
            now_ms: model::value::now_millis(),
            include_deleted,
        };
        soql::compile(text, &self.schema(), &*p.perms, &opts)
            .map_err(|e| ApiError::new(e.code, e.message))
    }

    /// Runs a SOQL query and returns its first page.
    pub fn query(
        &self,
        p: &Principal,
        text: &str,
        include_deleted: bool,
        page_size: usize,
    ) -> ApiResult<QueryPage> {
        self.store
            .read(|tx| self.query_in(tx, p, text, include_deleted, page_size))
    }

    /// Runs a SOQL query on the given transaction (Composite queries see the request's own
    /// earlier writes) and returns its first page.
    pub fn query_in(
        &self,
        tx: &dyn store::ReadTx,
        p: &Principal,
        text: &str,
        include_deleted: bool,
        page_size: usize,
    ) -> ApiResult<QueryPage> {
        let generation = self.auth_generation();
        let plan = Arc::new(self.compile(p, text, include_deleted)?);
        let page_size = page_size.clamp(1, self.config.query_page_size.max(1));
        match plan.kind {
            PlanKind::Count => {
                let n = tx.query_count(&plan).map_err(store_err)?;
                Ok(QueryPage {
                    plan,
                    total_size: n,
                    done: true,
                    next_locator: None,
                    rows: Vec::new(),
                })
            }
            PlanKind::Aggregate => {
                let rows = tx.query_aggregate(&plan).map_err(store_err)?;
                if rows.len() > MAX_AGGREGATE_ROWS {
                    return Err(ApiError::new(ErrorCode::ExceededIdLimit, "Aggregate query does not support queryMore(), use LIMIT to restrict the results to a single batch"));
                }
                Ok(QueryPage {
                    plan,
                    total_size: rows.len() as u64,
                    done: true,
                    next_locator: None,
                    rows,
                })
            }
            PlanKind::Records => {
                let seqs = tx.query_ids(&plan).map_err(store_err)?;
                let rows = tx
                    .query_rows(&plan, &seqs[..seqs.len().min(page_size)])
                    .map_err(store_err)?;
                let total = seqs.len();
                if total <= page_size {
                    return Ok(QueryPage {
                        plan,
                        total_size: total as u64,
                        done: true,
                        next_locator: None,
                        rows,
                    });
                }
                let key = self.cursors.open(
                    self.store.marker(),
                    Cursor {
                        plan: plan.clone(),
                        text: text.to_string(),
                        include_deleted,
                        generation,
                        seqs: Arc::new(seqs),
                        user_seq: p.user_seq,
                        page_size,
                        touched: Instant::now(),
                    },
                );
                Ok(QueryPage {
                    plan,
                    total_size: total as u64,
                    done: false,
                    next_locator: Some(format!("{key}-{page_size}")),
                    rows,
                })
            }
        }
    }

    /// The page of a query locator (`<cursor>-<offset>`).
    pub fn query_more(&self, p: &Principal, locator: &str) -> ApiResult<QueryPage> {
        let (key, offset) = locator.rsplit_once('-').ok_or_else(invalid_locator)?;
        let offset: usize = offset.parse().map_err(|_| invalid_locator())?;
        let src = self
            .cursors
            .take_page(key, p.user_seq)
            .ok_or_else(invalid_locator)?;
        let (seqs, page_size) = (src.seqs, src.page_size);
        // Permissions or metadata changed since the first page: compile again, so a field the
        // caller may no longer read is refused (INVALID_FIELD) rather than served from the cursor.
        let generation = self.auth_generation();
        let plan = if src.generation == generation {
            src.plan
        } else {
            let plan = Arc::new(self.compile(p, &src.text, src.include_deleted)?);
            self.cursors.replace_plan(key, plan.clone(), generation);
            plan
        };
        if offset >= seqs.len() {
            return Err(invalid_locator());
        }
        let end = (offset + page_size).min(seqs.len());
        let rows = self
            .store
            .read(|tx| tx.query_rows(&plan, &seqs[offset..end]))
            .map_err(store_err)?;
        let done = end >= seqs.len();
        Ok(QueryPage {
            plan,
            total_size: seqs.len() as u64,
            done,
            next_locator: (!done).then(|| format!("{key}-{end}")),
            rows,
        })
    }
}

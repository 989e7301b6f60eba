//! Session cache: validated sessions in memory so that authenticating a request costs one hash and
//! one map lookup; the store stays the source of truth (sessions survive restarts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use store::SessionRow;

/// A session held in memory.
#[derive(Debug)]
pub struct CachedSession {
    /// The stored row.
    pub row: SessionRow,
    /// Last use seen by this process.
    pub last_used: AtomicI64,
    /// Last use written to the store.
    pub persisted: AtomicI64,
}

/// Sessions by token hash.
#[derive(Debug, Default)]
pub struct SessionCache {
    map: RwLock<HashMap<[u8; 32], Arc<CachedSession>>>,
    /// Sessions ended recently. A request that read the row from the store just before it was
    /// deleted must not put it back in the cache, where it would outlive the deletion.
    ended: Mutex<HashMap<[u8; 32], Instant>>,
}

/// How long an ended session is remembered (far longer than a store read takes).
const ENDED_MEMORY: Duration = Duration::from_secs(120);

/// Last-use times are written back at most this often per session.
pub const TOUCH_EVERY_MS: i64 = 60_000;

impl SessionCache {
    /// A cached session.
    pub fn get(&self, h: &[u8; 32]) -> Option<Arc<CachedSession>> {
        self.map.read().get(h).cloned()
    }

    /// Caches a session loaded from (or just written to) the store.
    pub fn insert(&self, h: [u8; 32], row: SessionRow) -> Arc<CachedSession> {
        let c = Arc::new(CachedSession {
            last_used: AtomicI64::new(row.last_used_ms),
            persisted: AtomicI64::new(row.last_used_ms),
            row,
        });
        if self.ended.lock().contains_key(&h) {
            return c;
        }
        let mut map = self.map.write();
        if map.len() > 200_000 {
            // Bound memory: drop everything; sessions reload from the store on next use.
            map.clear();
        }
        map.insert(h, c.clone());
        c
    }

    /// Forgets a session (it reloads from the store on next use).
    pub fn remove(&self, h: &[u8; 32]) {
        self.map.write().remove(h);
    }

    /// Forgets a session that is being deleted from the store (revoked, logged out, expired) and
    /// keeps it out of the cache for a while, so that a concurrent load cannot revive it.
    pub fn end(&self, h: &[u8; 32]) {
        {
            let mut ended = self.ended.lock();
            if ended.len() > 10_000 {
                ended.retain(|_, at| at.elapsed() < ENDED_MEMORY);
                if ended.len() > 100_000 {
                    // Bound memory under a flood of logouts; the race it guards is rare.
                    ended.clear();
                }
            }
            ended.insert(*h, Instant::now());
        }
        self.map.write().remove(h);
    }

    /// Forgets every cached session (they reload from the store on next use).
    pub fn clear(&self) {
        self.map.write().clear();
    }

    /// Forgets every session of a user.
    pub fn remove_user(&self, user_seq: u64) {
        self.map.write().retain(|_, s| s.row.user_seq != user_seq);
    }
}

impl CachedSession {
    /// True when idle longer than its timeout at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms - self.last_used.load(Ordering::Relaxed) > self.row.timeout_secs * 1000
    }

    /// Marks a use; returns true when the last-use time should be written back.
    pub fn touch(&self, now_ms: i64) -> bool {
        self.last_used.fetch_max(now_ms, Ordering::Relaxed);
        let persisted = self.persisted.load(Ordering::Relaxed);
        if now_ms - persisted >= TOUCH_EVERY_MS {
            return self
                .persisted
                .compare_exchange(persisted, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SessionRow {
        SessionRow {
            user_seq: 1,
            client_id: None,
            created_ms: 0,
            last_used_ms: 0,
            timeout_secs: 60,
            origin: None,
        }
    }

    #[test]
    fn an_ended_session_is_not_cached_again() {
        let cache = SessionCache::default();
        cache.insert([1; 32], row());
        assert!(cache.get(&[1; 32]).is_some());
        cache.end(&[1; 32]);
        assert!(cache.get(&[1; 32]).is_none());
        // A load that raced with the deletion does not put it back.
        cache.insert([1; 32], row());
        assert!(cache.get(&[1; 32]).is_none());
        cache.insert([2; 32], row());
        assert!(cache.get(&[2; 32]).is_some());
    }
}

//! Transport-neutral use cases of the org: authentication and sessions, permissions, records,
//! metadata, queries, limits. Every surface (REST, SOAP, Bulk, CometD, gRPC, the console) goes through
//! [`Org`], so a permission or limit checked here holds everywhere.

pub mod auth;
pub mod automation;
pub mod avro;
pub mod bootstrap;
pub mod bulk;
pub mod changes;
mod coerce;
pub mod config;
pub mod events;
pub mod limits;
pub mod managed;
pub mod metadata;
pub mod metrics;
pub mod ops;
pub mod outbox;
pub mod perms;
pub mod pubsub;
pub mod query;
pub mod records;
pub mod sync;
pub mod topics;
pub mod triggers;
pub mod users;
pub mod xml;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use model::value::now_millis;
use model::{ApiError, ApiResult, Id, Schema};
use parking_lot::{Mutex, RwLock};
use store::Store;

pub use auth::{AuthError, Login, Origin, Principal};
pub use config::OrgConfig;
pub use perms::Perms;
pub use users::UserInfo;

/// The org: the store plus the in-memory state that makes requests cheap (sessions, users,
/// permissions, query cursors, API usage).
pub struct Org {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: OrgConfig,
    pub(crate) sessions: auth::SessionCache,
    pub(crate) limiter: auth::LoginLimiter,
    pub(crate) codes: Mutex<HashMap<[u8; 32], auth::PendingCode>>,
    pub(crate) users: RwLock<HashMap<u64, (u64, Arc<UserInfo>)>>,
    pub(crate) perms: RwLock<HashMap<u64, (u64, Arc<Perms>)>>,
    auth_generation: AtomicU64,
    pub(crate) cursors: query::Cursors,
    /// API request counters and limits.
    pub usage: limits::Usage,
    /// Recent activity, for the console's charts.
    pub metrics: metrics::Metrics,
    bus: events::Bus,
    /// Avro layouts of the event types, for the Pub/Sub API.
    pub(crate) layouts: avro::Layouts,
    org_id: Id,
    /// What write jobs reach through the store's context.
    pub(crate) job_context: Arc<changes::JobContext>,
    /// The flows, for the admin API.
    pub(crate) automation: automation::Slot,
    pub(crate) sync: sync::Slot,
}

impl std::fmt::Debug for Org {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Org").field("org_id", &self.org_id).finish()
    }
}

impl Org {
    /// Wraps a store. Call [`bootstrap::ensure`] once before serving.
    pub fn new(store: Arc<dyn Store>, config: OrgConfig) -> Arc<Org> {
        let org_id = Id::new(model::KeyPrefix(*b"00D"), store.marker(), 1);
        let limiter = auth::LoginLimiter::new(
            config.lockout_attempts,
            config.lockout_window_secs,
            config.logins_per_hour,
            config.failed_logins_per_ip_per_hour,
        );
        let usage = limits::Usage::new(
            config.daily_api_requests,
            config.max_concurrent_long_requests,
        );
        let job_context = Arc::new(changes::JobContext {
            overflow_after: config.cdc_overflow_after,
            topics: topics::Registry::default(),
            triggers: triggers::Slot::default(),
        });
        store.set_context(job_context.clone());
        Arc::new(Org {
            bus: events::Bus::new(store.clone()),
            layouts: avro::Layouts::default(),
            store,
            sessions: auth::SessionCache::default(),
            limiter,
            codes: Mutex::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            perms: RwLock::new(HashMap::new()),
            auth_generation: AtomicU64::new(1),
            cursors: query::Cursors::new(config.max_query_cursors, config.query_locator_idle_secs),
            usage,
            metrics: metrics::Metrics::default(),
            config,
            org_id,
            job_context,
            automation: automation::Slot::default(),
            sync: sync::Slot::default(),
        })
    }

    /// The event bus (platform events, change events, PushTopics).
    pub fn events(&self) -> &events::Bus {
        &self.bus
    }

    /// The Avro layout of the events of `stream` (a platform event type, or a change event
    /// entity such as `AccountChangeEvent`).
    pub fn event_layout(&self, stream: &str) -> Option<Arc<avro::Layout>> {
        self.layouts.of_stream(&self.schema(), stream)
    }

    /// The org id (`00D…`).
    pub fn org_id(&self) -> Id {
        self.org_id
    }

    /// The settings.
    pub fn config(&self) -> &OrgConfig {
        &self.config
    }

    /// The current schema.
    pub fn schema(&self) -> Arc<Schema> {
        self.store.schema()
    }

    /// The store (for surfaces that run whole use cases in one transaction, like Composite).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn auth_generation(&self) -> u64 {
        self.auth_generation.load(Ordering::Acquire)
    }

    /// Call after a write to `object` committed outside the `Org` methods (Composite, Bulk):
    /// refreshes cached permissions when users or permission records changed, and drops cached
    /// sessions after user changes (a deactivation deleted some in the same transaction).
    pub fn note_write(&self, object: &str) {
        if perms::AUTH_OBJECTS
            .iter()
            .any(|n| n.eq_ignore_ascii_case(object))
        {
            self.invalidate_auth();
        }
        if object.eq_ignore_ascii_case("User") {
            self.sessions.clear();
        }
    }

    /// Invalidates cached users and permissions (after writes to setup objects or metadata).
    pub fn invalidate_auth(&self) {
        self.auth_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Authenticates a request by its access token.
    pub fn authenticate(&self, token: &str) -> ApiResult<Principal> {
        let token = token.trim();
        if token.is_empty() || token.len() > 512 {
            return Err(ApiError::invalid_session());
        }
        let h = auth::token_hash(token);
        let now = now_millis();
        let cached = match self.sessions.get(&h) {
            Some(c) => c,
            None => {
                let row = self
                    .store
                    .read(|tx| tx.session(&h))?
                    .ok_or_else(ApiError::invalid_session)?;
                self.sessions.insert(h, row)
            }
        };
        if cached.expired(now) {
            self.sessions.end(&h);
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.write(move |tx| Ok(tx.delete_session(&h)?)).await;
            });
            return Err(ApiError::invalid_session());
        }
        if cached.touch(now) {
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.write(move |tx| Ok(tx.touch_session(&h, now)?)).await;
            });
        }
        let user = match self.user_info(cached.row.user_seq)? {
            Some(u) if u.active => u,
            _ => {
                // A deactivated (or vanished) user's sessions end for good: reactivating the user
                // must not bring them back.
                self.sessions.end(&h);
                let store = self.store.clone();
                tokio::spawn(async move {
                    let _ = store.write(move |tx| Ok(tx.delete_session(&h)?)).await;
                });
                return Err(ApiError::invalid_session());
            }
        };
        let perms = self.perms_for(&user)?;
        if !perms.may_use_api() {
            return Err(ApiError::new(
                model::ErrorCode::ApiDisabledForOrg,
                "The REST API is not enabled for this Organization.",
            ));
        }
        Ok(Principal {
            user_seq: user.seq,
            user_id: user.id,
            username: user.username.clone(),
            perms,
            session: Some(h),
            client_id: cached.row.client_id.clone(),
            origin: auth::Origin::default(),
            prepared: None,
        })
    }

    /// Ends the session of `token` (SOAP `logout()`).
    pub async fn logout(&self, token: &str) -> bool {
        self.revoke(token).await
    }

    /// A principal acting as `user` with their permissions, without a session (internal jobs).
    pub fn principal_for(&self, user_seq: u64) -> ApiResult<Principal> {
        let user = self.user_info(user_seq)?.ok_or_else(ApiError::not_found)?;
        let perms = self.perms_for(&user)?;
        Ok(Principal {
            user_seq: user.seq,
            user_id: user.id,
            username: user.username.clone(),
            perms,
            session: None,
            client_id: None,
            origin: auth::Origin::default(),
            prepared: None,
        })
    }
}

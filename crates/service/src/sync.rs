//! What the surfaces may ask of the org's sync jobs without knowing them: list, read, create or
//! replace and delete jobs, start runs, read run history and error rows, reset cursors. The sync
//! crate installs an implementation with [`Org::set_sync`].

use std::sync::Arc;

use model::{ApiError, ApiResult, ErrorCode};
use serde_json::Value as Json;

use crate::auth::Principal;
use crate::automation::BoxFuture;
use crate::Org;

/// The org's sync jobs, as the admin API sees them.
pub trait SyncJobs: Send + Sync + 'static {
    /// Every job with its cursor, last run and progress.
    fn jobs(&self, org: &Org) -> Vec<Json>;
    /// One job.
    fn job(&self, org: &Org, name: &str) -> Option<Json>;
    /// Creates or replaces an API-managed job (`true` when created).
    fn put_job<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>>;
    /// Deletes an API-managed job.
    fn delete_job<'a>(&'a self, org: &'a Org, name: &'a str) -> BoxFuture<'a, ApiResult<()>>;
    /// Starts a run in the background as `p`; its id.
    fn start<'a>(
        self: Arc<Self>,
        org: Arc<Org>,
        p: Principal,
        name: &'a str,
    ) -> BoxFuture<'a, ApiResult<u64>>;
    /// The newest runs.
    fn runs(&self, org: &Org, name: &str, limit: usize) -> ApiResult<Vec<Json>>;
    /// The rows the target refused.
    fn errors(&self, org: &Org, name: &str, limit: usize) -> ApiResult<Vec<Json>>;
    /// Moves the cursor (`None`: back to the beginning).
    fn reset<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        cursor: Option<Json>,
    ) -> BoxFuture<'a, ApiResult<()>>;
}

/// The installed sync jobs.
#[derive(Default)]
pub(crate) struct Slot(parking_lot::RwLock<Option<Arc<dyn SyncJobs>>>);

impl Org {
    /// Installs the org's sync jobs.
    pub fn set_sync(&self, s: Arc<dyn SyncJobs>) {
        *self.sync.0.write() = Some(s);
    }

    /// The sync jobs, for callers allowed to manage them (Modify All Data).
    pub fn sync(&self, p: &Principal) -> ApiResult<Arc<dyn SyncJobs>> {
        if !p.perms.modify_all_data {
            return Err(ApiError::new(
                ErrorCode::InsufficientAccess,
                "You need the Modify All Data permission to manage sync jobs.",
            ));
        }
        self.sync.0.read().clone().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "Sync jobs are not enabled on this server.",
            )
        })
    }
}

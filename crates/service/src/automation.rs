//! What the surfaces may ask of the org's automation (flows) without knowing it: list, read,
//! create or replace and delete flows, the WSDL of an Outbound Message, and the fault log. The
//! automation crate installs an implementation with [`Org::set_automation`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use model::value::format_datetime_z;
use model::{ApiError, ApiResult, ErrorCode, Id, KeyPrefix};
use serde_json::{json, Value as Json};
use store::FaultRow;

use crate::auth::Principal;
use crate::Org;

/// A boxed future borrowing its arguments.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The org's flows, as the admin API sees them.
pub trait Automation: Send + Sync + 'static {
    /// Every flow, as written, with `"source": "file"` or `"api"`.
    fn flows(&self) -> Vec<Json>;
    /// One flow by name.
    fn flow(&self, name: &str) -> Option<Json>;
    /// Creates or replaces an API-managed flow (checked first; `true` when created).
    fn put_flow<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        def: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>>;
    /// Deletes an API-managed flow.
    fn delete_flow<'a>(&'a self, org: &'a Org, name: &'a str) -> BoxFuture<'a, ApiResult<()>>;
    /// The WSDL of the Outbound Message `name`, for receiver developers.
    fn outbound_wsdl(&self, org: &Org, name: &str) -> Option<String>;
}

/// The installed automation.
#[derive(Default)]
pub(crate) struct Slot(parking_lot::RwLock<Option<Arc<dyn Automation>>>);

impl Org {
    /// Installs the org's automation.
    pub fn set_automation(&self, a: Arc<dyn Automation>) {
        *self.automation.0.write() = Some(a);
    }

    /// The org's automation, for callers allowed to manage flows (Customize Application).
    pub fn automation(&self, p: &Principal) -> ApiResult<Arc<dyn Automation>> {
        if !(p.perms.customize_application || p.perms.modify_all_data) {
            return Err(ApiError::new(
                ErrorCode::InsufficientAccess,
                "You need the Customize Application permission to manage flows.",
            ));
        }
        self.automation.0.read().clone().ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, "Flows are not enabled on this server.")
        })
    }

    /// The newest flow faults (before fault `before`, an `0Fl…` id, when given).
    pub fn flow_faults(
        &self,
        p: &Principal,
        before: Option<&str>,
        limit: usize,
    ) -> ApiResult<Vec<FaultRow>> {
        if !(p.perms.view_all_data || p.perms.modify_all_data) {
            return Err(ApiError::new(
                ErrorCode::InsufficientAccess,
                "You need the View All Data permission to see flow faults.",
            ));
        }
        let before = match before {
            Some(id) => Id::parse(id)
                .ok()
                .filter(|i| i.prefix() == KeyPrefix(*b"0Fl"))
                .and_then(|i| i.seq_in(self.store.marker()))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::MalformedId,
                        format!("{id} is not a fault id (0Fl…)"),
                    )
                })?,
            None => 0,
        };
        Ok(self
            .store
            .read(|tx| tx.flow_faults(before, limit.clamp(1, 2_000)))?)
    }

    /// A fault in its JSON form.
    pub fn fault_json(&self, f: &FaultRow) -> Json {
        json!({
            "id": Id::new(KeyPrefix(*b"0Fl"), self.store.marker(), f.seq).to_18(),
            "createdDate": format_datetime_z(f.created_ms),
            "flow": f.flow,
            "object": f.object,
            "recordId": if f.record.is_empty() { Json::Null } else { Json::from(f.record.clone()) },
            "event": f.event,
            "user": f.user,
            "message": f.message,
        })
    }
}

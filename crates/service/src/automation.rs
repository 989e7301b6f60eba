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

use crate::auth::{Prepared, Principal};
use crate::triggers::Op;
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
    /// Whether a save of `object` may need [`Automation::prepare`] (a before-save flow calls out).
    fn calls_out(&self, object: &str, op: Op) -> bool;
    /// Before a single-record save: makes the callouts of the before-save flows that will enter,
    /// so the write job can apply their replies. `id` is the record's for updates; `body` the
    /// request's field values.
    fn prepare<'a>(
        &'a self,
        org: &'a Org,
        p: &'a Principal,
        object: &'a str,
        op: Op,
        id: Option<&'a str>,
        body: &'a Json,
    ) -> BoxFuture<'a, ApiResult<Option<Prepared>>>;
    /// The invocable flows (`on: [invoke]`): name and label.
    fn invocable(&self) -> Vec<(String, String)>;
    /// Runs an invocable flow once per input; the Salesforce-shaped result of each.
    fn invoke<'a>(
        &'a self,
        org: &'a Org,
        p: &'a Principal,
        name: &'a str,
        inputs: Vec<Json>,
    ) -> BoxFuture<'a, ApiResult<Vec<Json>>>;
    /// External Services: name, credential and operations.
    fn external_services(&self) -> Vec<Json>;
    /// The OpenAPI document of an External Service, as registered.
    fn external_service_doc(&self, name: &str) -> Option<Json>;
    /// Registers (or replaces) an External Service from an OpenAPI 3 document, reached through
    /// the named credential `credential` (`true` when created).
    fn put_external_service<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        credential: &'a str,
        doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>>;
    /// Removes an External Service no flow calls.
    fn delete_external_service<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>>;
    /// Named credentials (secrets redacted).
    fn credentials(&self) -> Vec<Json>;
    /// Creates or replaces a named credential (`true` when created).
    fn put_credential<'a>(
        &'a self,
        org: &'a Org,
        name: &'a str,
        doc: Json,
    ) -> BoxFuture<'a, ApiResult<(Json, bool)>>;
    /// Deletes a named credential.
    fn delete_credential<'a>(&'a self, org: &'a Org, name: &'a str)
        -> BoxFuture<'a, ApiResult<()>>;
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

    /// The automation, for the request path itself (no permission check: saves and invocations
    /// check their own).
    pub fn automation_for_requests(&self) -> Option<Arc<dyn Automation>> {
        self.automation.0.read().clone()
    }

    /// Before a single-record REST save: the callouts its before-save flows make, if any.
    pub async fn prepare_save(
        &self,
        p: &Principal,
        object: &str,
        id: Option<&str>,
        body: &Json,
    ) -> ApiResult<Option<Prepared>> {
        let Some(a) = self.automation_for_requests() else {
            return Ok(None);
        };
        let op = if id.is_some() { Op::Update } else { Op::Create };
        let schema = self.schema();
        let Some(o) = schema.object(object) else {
            return Ok(None);
        };
        if !a.calls_out(&o.name, op) {
            return Ok(None);
        }
        a.prepare(self, p, &o.name, op, id, body).await
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

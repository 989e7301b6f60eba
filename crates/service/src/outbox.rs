//! The operator's view of the delivery queue: list queued, failing and dead-lettered
//! notifications with their attempts and last errors, make them due again, purge them. Reading
//! needs View All Data; changing needs Modify All Data.

use model::value::{format_datetime_z, now_millis};
use model::{ApiError, ApiResult, ErrorCode, Id, KeyPrefix};
use serde_json::{json, Value as Json};
use store::{DeliveryCounts, DeliveryFilter, DeliveryRow, DeliveryState};

use crate::auth::Principal;
use crate::Org;

/// Notifications one call lists or changes at most.
pub const MAX_PAGE: usize = 2_000;

/// Which notifications an operator means.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `queued` (never failed), `failed` (queued after failures), `dead`, or any.
    pub state: Option<String>,
    /// Only this endpoint.
    pub endpoint: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only these notification ids (`04l…`).
    pub ids: Vec<String>,
    /// Ids above this one (paging).
    pub after: Option<String>,
    /// At most this many (≤ [`MAX_PAGE`]).
    pub limit: usize,
}

fn deny() -> ApiError {
    ApiError::new(
        ErrorCode::InsufficientAccess,
        "You need the View All Data permission to see the delivery queue and Modify All Data to change it.",
    )
}

impl Org {
    /// The notification id of queue sequence `seq` (`04l…`).
    pub fn notification_id(&self, seq: u64) -> String {
        Id::new(KeyPrefix(*b"04l"), self.store.marker(), seq).to_18()
    }

    fn notification_seq(&self, id: &str) -> ApiResult<u64> {
        Id::parse(id)
            .ok()
            .filter(|i| i.prefix() == KeyPrefix(*b"04l"))
            .and_then(|i| i.seq_in(self.store.marker()))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::MalformedId,
                    format!("{id} is not a notification id (04l…)"),
                )
            })
    }

    /// A notification in its JSON form.
    pub fn delivery_json(&self, r: &DeliveryRow) -> Json {
        let state = match (r.state, r.attempts) {
            (DeliveryState::Dead, _) => "dead",
            (DeliveryState::Queued, 0) => "queued",
            (DeliveryState::Queued, _) => "failed",
        };
        let payload = serde_json::from_str::<Json>(&r.new.payload).unwrap_or(Json::Null);
        json!({
            "id": self.notification_id(r.seq),
            "kind": r.new.kind,
            "endpoint": r.new.endpoint,
            "action": r.new.action,
            "recordId": if r.new.record.is_empty() { Json::Null } else { Json::from(r.new.record.clone()) },
            "state": state,
            "attempts": r.attempts,
            "createdDate": format_datetime_z(r.new.created_ms),
            "nextAttemptDate": (r.state == DeliveryState::Queued).then(|| format_datetime_z(r.new.next_ms)),
            "expirationDate": format_datetime_z(r.new.expires_ms),
            "lastAttemptDate": r.last_ms.map(format_datetime_z),
            "lastError": r.last_error,
            "payload": payload,
        })
    }

    /// The notifications `sel` names, in id order.
    pub fn deliveries(&self, p: &Principal, sel: &Selection) -> ApiResult<Vec<DeliveryRow>> {
        if !(p.perms.view_all_data || p.perms.modify_all_data) {
            return Err(deny());
        }
        let limit = sel.limit.clamp(1, MAX_PAGE);
        let (state, failed) = match sel.state.as_deref() {
            None | Some("") | Some("all") => (None, false),
            Some("queued") => (Some(DeliveryState::Queued), false),
            Some("failed") => (None, true),
            Some("dead") => (Some(DeliveryState::Dead), false),
            Some(other) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidInput,
                    format!("state {other} is not queued, failed, dead or all"),
                ))
            }
        };
        if !sel.ids.is_empty() {
            if sel.ids.len() > MAX_PAGE {
                return Err(ApiError::new(
                    ErrorCode::LimitExceeded,
                    format!("at most {MAX_PAGE} ids at a time"),
                ));
            }
            let seqs = sel
                .ids
                .iter()
                .map(|i| self.notification_seq(i))
                .collect::<ApiResult<Vec<u64>>>()?;
            let rows = self.store.read(|tx| {
                seqs.iter()
                    .map(|s| tx.delivery(*s))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            return Ok(rows.into_iter().flatten().collect());
        }
        let after = match &sel.after {
            Some(a) => self.notification_seq(a)?,
            None => 0,
        };
        let filter = DeliveryFilter {
            state,
            failed,
            endpoint: sel.endpoint.clone(),
            action: sel.action.clone(),
            after,
            limit,
        };
        Ok(self.store.read(|tx| tx.deliveries(&filter))?)
    }

    /// One notification by id.
    pub fn delivery(&self, p: &Principal, id: &str) -> ApiResult<DeliveryRow> {
        self.deliveries(
            p,
            &Selection {
                ids: vec![id.to_string()],
                limit: 1,
                ..Default::default()
            },
        )?
        .pop()
        .ok_or_else(ApiError::not_found)
    }

    /// Counts per endpoint.
    pub fn delivery_counts(&self, p: &Principal) -> ApiResult<Vec<DeliveryCounts>> {
        if !(p.perms.view_all_data || p.perms.modify_all_data) {
            return Err(deny());
        }
        Ok(self.store.read(|tx| tx.delivery_counts())?)
    }

    /// Makes the selected notifications due now: failed ones are retried at once, dead ones
    /// return to the queue with a fresh expiry. Returns how many changed.
    pub async fn requeue_deliveries(&self, p: &Principal, sel: &Selection) -> ApiResult<u64> {
        if !p.perms.modify_all_data {
            return Err(deny());
        }
        let seqs: Vec<u64> = self.deliveries(p, sel)?.iter().map(|r| r.seq).collect();
        let now = now_millis();
        let expires = now + self.config.delivery_expiry_ms;
        self.store
            .write(move |tx| Ok(tx.requeue_deliveries(&seqs, now, expires)?))
            .await
    }

    /// Removes the selected notifications for good. Returns how many.
    pub async fn purge_deliveries(&self, p: &Principal, sel: &Selection) -> ApiResult<u64> {
        if !p.perms.modify_all_data {
            return Err(deny());
        }
        if sel.ids.is_empty()
            && sel.state.is_none()
            && sel.endpoint.is_none()
            && sel.action.is_none()
        {
            return Err(ApiError::new(
                ErrorCode::InvalidInput,
                "say which notifications to purge: ids, a state, an endpoint or an action",
            ));
        }
        let seqs: Vec<u64> = self.deliveries(p, sel)?.iter().map(|r| r.seq).collect();
        self.store
            .write(move |tx| Ok(tx.purge_deliveries(&seqs)?))
            .await
    }
}

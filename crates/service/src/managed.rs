//! Managed event subscriptions (`ManagedEventSubscription`, a Tooling API type): a named
//! Pub/Sub subscription whose position the server keeps. Each one names its topic, where to
//! start when nothing was committed (`defaultReplay`), where to restart when the committed
//! position is no longer retained (`errorRecoveryReplay`), and whether it may run (`state`).
//! Subscribers commit replay ids as they finish with events; the next `ManagedSubscribe` call
//! continues after the last commit. The definitions and positions are one settings entry of the
//! store (an org has at most [`MAX_SUBSCRIPTIONS`]), so every change is one durable write.

use model::{is_valid_custom_stem, ApiError, ApiResult, ErrorCode, Id, KeyPrefix};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use crate::auth::Principal;

/// Key prefix of `ManagedEventSubscription` ids.
pub const PREFIX: KeyPrefix = KeyPrefix(*b"18x");
/// Most managed subscriptions an org may have (Salesforce: 200).
pub const MAX_SUBSCRIPTIONS: usize = 200;
const SETTING: &str = "pubsub.managed_subscriptions";

/// Where a managed subscription starts without a usable committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Start {
    /// New events only.
    #[serde(rename = "LATEST")]
    Latest,
    /// Every retained event.
    #[serde(rename = "EARLIEST")]
    Earliest,
}

/// A managed event subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managed {
    /// Its number (the id's sequence).
    pub seq: u64,
    /// `DeveloperName` (the Tooling `FullName`).
    pub name: String,
    /// `MasterLabel`.
    pub label: String,
    /// The topic (`/event/Low_Ink__e`, `/data/AccountChangeEvent`).
    pub topic: String,
    /// Start when nothing was committed.
    pub default_replay: Start,
    /// Start when the committed position is no longer retained.
    pub error_recovery_replay: Start,
    /// `RUN` (subscribers may connect) or `STOP`.
    pub running: bool,
    /// The last committed replay id.
    pub committed: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    next: u64,
    items: Vec<Managed>,
}

impl Managed {
    /// Its `18x…` id.
    pub fn id(&self, org: &crate::Org) -> Id {
        Id::new(PREFIX, org.store.marker(), self.seq)
    }

    /// Its Tooling `Metadata`.
    pub fn metadata(&self) -> Json {
        let start = |s: Start| match s {
            Start::Latest => "LATEST",
            Start::Earliest => "EARLIEST",
        };
        json!({
            "label": self.label,
            "topicName": self.topic,
            "defaultReplay": start(self.default_replay),
            "errorRecoveryReplay": start(self.error_recovery_replay),
            "state": if self.running { "RUN" } else { "STOP" },
        })
    }
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::with_fields(ErrorCode::InvalidInput, message, vec![field.into()])
}

fn start_of(metadata: &Map<String, Json>, key: &str, default: Start) -> ApiResult<Start> {
    match metadata.get(key) {
        None | Some(Json::Null) => Ok(default),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("LATEST") => Ok(Start::Latest),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("EARLIEST") => Ok(Start::Earliest),
        Some(v) => Err(invalid(
            key,
            format!("{key} must be LATEST or EARLIEST, not {v}"),
        )),
    }
}

fn running_of(metadata: &Map<String, Json>, default: bool) -> ApiResult<bool> {
    match metadata.get("state") {
        None | Some(Json::Null) => Ok(default),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("RUN") => Ok(true),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("STOP") => Ok(false),
        Some(v) => Err(invalid(
            "state",
            format!("state must be RUN or STOP, not {v}"),
        )),
    }
}

fn require_customize(p: &Principal) -> ApiResult<()> {
    if p.perms.modify_all_data {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InsufficientAccess,
            "managing event subscriptions needs the Customize Application permission",
        ))
    }
}

impl crate::Org {
    fn managed_all(&self) -> ApiResult<Stored> {
        let text = self.store.read(|tx| tx.setting(SETTING))?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Applies `f` to the stored subscriptions in one write job.
    async fn managed_change<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Stored) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<R> {
        self.store
            .write(move |tx| {
                let mut all: Stored = tx
                    .setting(SETTING)?
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                let r = f(&mut all)?;
                let text = serde_json::to_string(&all).map_err(|_| ApiError::internal())?;
                tx.set_setting(SETTING, &text)?;
                Ok(r)
            })
            .await
    }

    /// Every managed subscription.
    pub fn managed_subscriptions(&self) -> ApiResult<Vec<Managed>> {
        Ok(self.managed_all()?.items)
    }

    /// The managed subscription with id `key` (15 or 18 characters) or `DeveloperName` `key`.
    pub fn managed_subscription(&self, key: &str) -> ApiResult<Option<Managed>> {
        let by_id = Id::parse(key).ok().filter(|id| id.prefix() == PREFIX);
        Ok(self.managed_all()?.items.into_iter().find(|m| match by_id {
            Some(id) => m.id(self) == id,
            None => m.name == key,
        }))
    }

    /// Creates a managed subscription (`POST …/tooling/sobjects/ManagedEventSubscription`).
    pub async fn create_managed_subscription(
        &self,
        p: &Principal,
        full_name: &str,
        metadata: &Map<String, Json>,
    ) -> ApiResult<Id> {
        require_customize(p)?;
        if !is_valid_custom_stem(full_name) {
            return Err(invalid(
                "FullName",
                format!("{full_name} is not a valid developer name (letters, digits and single underscores, starting with a letter)"),
            ));
        }
        let topic = metadata
            .get("topicName")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                ApiError::with_fields(
                    ErrorCode::RequiredFieldMissing,
                    "Required fields are missing: [topicName]",
                    vec!["topicName".into()],
                )
            })?
            .to_string();
        self.pubsub_topic(p, &topic).map_err(|_| {
            invalid(
                "topicName",
                format!("{topic} is not a Pub/Sub topic of this org"),
            )
        })?;
        let mut m = Managed {
            seq: 0,
            name: full_name.to_string(),
            label: metadata
                .get("label")
                .and_then(Json::as_str)
                .unwrap_or(full_name)
                .to_string(),
            topic,
            default_replay: start_of(metadata, "defaultReplay", Start::Latest)?,
            error_recovery_replay: start_of(metadata, "errorRecoveryReplay", Start::Latest)?,
            running: running_of(metadata, true)?,
            committed: None,
        };
        let seq = self
            .managed_change(move |all| {
                if all.items.iter().any(|x| x.name == m.name) {
                    return Err(ApiError::with_fields(
                        ErrorCode::DuplicateValue,
                        format!(
                            "a managed event subscription named {} already exists",
                            m.name
                        ),
                        vec!["FullName".into()],
                    ));
                }
                if all.items.len() >= MAX_SUBSCRIPTIONS {
                    return Err(ApiError::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "an org has at most {MAX_SUBSCRIPTIONS} managed event subscriptions"
                        ),
                    ));
                }
                all.next += 1;
                m.seq = all.next;
                all.items.push(m);
                Ok(all.next)
            })
            .await?;
        Ok(Id::new(PREFIX, self.store.marker(), seq))
    }

    /// Changes a managed subscription's label, replay settings or state (`PATCH`).
    pub async fn update_managed_subscription(
        &self,
        p: &Principal,
        key: &str,
        metadata: &Map<String, Json>,
    ) -> ApiResult<()> {
        require_customize(p)?;
        let cur = self
            .managed_subscription(key)?
            .ok_or_else(ApiError::not_found)?;
        if let Some(t) = metadata.get("topicName").and_then(Json::as_str) {
            if t != cur.topic {
                return Err(invalid(
                    "topicName",
                    "the topic of a managed event subscription cannot change".into(),
                ));
            }
        }
        let label = metadata
            .get("label")
            .and_then(Json::as_str)
            .map(str::to_string);
        let default_replay = start_of(metadata, "defaultReplay", cur.default_replay)?;
        let error_recovery_replay =
            start_of(metadata, "errorRecoveryReplay", cur.error_recovery_replay)?;
        let running = running_of(metadata, cur.running)?;
        self.managed_change(move |all| {
            let m = all
                .items
                .iter_mut()
                .find(|m| m.seq == cur.seq)
                .ok_or_else(ApiError::not_found)?;
            if let Some(l) = label {
                m.label = l;
            }
            m.default_replay = default_replay;
            m.error_recovery_replay = error_recovery_replay;
            m.running = running;
            Ok(())
        })
        .await
    }

    /// Deletes a managed subscription.
    pub async fn delete_managed_subscription(&self, p: &Principal, key: &str) -> ApiResult<()> {
        require_customize(p)?;
        let cur = self
            .managed_subscription(key)?
            .ok_or_else(ApiError::not_found)?;
        self.managed_change(move |all| {
            all.items.retain(|m| m.seq != cur.seq);
            Ok(())
        })
        .await
    }

    /// Records that managed subscription `seq` is done with every event up to `replay_id`
    /// (durable when this returns).
    pub async fn commit_managed_replay(&self, seq: u64, replay_id: u64) -> ApiResult<()> {
        self.managed_change(move |all| {
            let m = all
                .items
                .iter_mut()
                .find(|m| m.seq == seq)
                .ok_or_else(ApiError::not_found)?;
            m.committed = Some(replay_id);
            Ok(())
        })
        .await
    }
}

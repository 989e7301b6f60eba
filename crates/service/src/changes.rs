//! Change Data Capture: the change events that creates, updates, deletes and undeletes of records
//! of selected objects publish. Each event is appended to the event log inside the write job that
//! made the change, so it commits (or rolls back) with it. Events of one job share the
//! `transactionKey`, `commitNumber` and `commitTimestamp` of the job and are numbered by
//! `sequenceNumber`; identical consecutive changes of one entity (the same fields set to the same
//! values on several records, bulk deletes) are merged into one event listing every record when
//! the job ends. Past [`OVERFLOW_AFTER`] changes in one job, each further entity gets a single
//! `GAP_OVERFLOW` event; a change whose event would exceed 1 MB is reported by a gap event.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use model::value::{format_datetime_z, now_millis};
use model::{ApiResult, Id, ObjectDef, Value};
use serde_json::{json, Map, Value as Json};
use store::{EventKind, EventSelect, NewEvent, StoreResult, WriteTx};

use crate::auth::Principal;
use crate::topics::{self, TopicChange};

/// Changes in one transaction after which each further entity gets one `GAP_OVERFLOW` event
/// (creates, deletes and undeletes count one; updates one per changed field).
pub const OVERFLOW_AFTER: u64 = 100_000;
/// Payload size above which a change is reported by a gap event (header only).
const MAX_EVENT_BYTES: usize = 1_000_000;
/// The `recordIds` of an overflow event.
const OVERFLOW_ID: &str = "000000000000000AAA";

/// What write jobs need to know of the org (attached to the store as its context).
#[derive(Debug)]
pub struct JobContext {
    /// Changes in one transaction before overflow events (see [`OVERFLOW_AFTER`]).
    pub overflow_after: u64,
    /// The active PushTopics.
    pub topics: crate::topics::Registry,
    /// Automation reacting to record writes.
    pub triggers: crate::triggers::Slot,
}

/// The context attached to the store `tx` writes to.
pub(crate) fn context(tx: &dyn WriteTx) -> Option<Arc<JobContext>> {
    tx.context()?.downcast::<JobContext>().ok()
}

/// Fields change events leave out of the body (the id is in the header).
fn reported(o: &ObjectDef, i: usize) -> bool {
    crate::avro::reported_in_changes(&o.fields[i].name)
}

/// A field value as change events carry it (date-times in ISO 8601 with `Z`).
pub(crate) fn field_json(v: &Value) -> Json {
    match v {
        Value::DateTime(ms) => Json::String(format_datetime_z(*ms)),
        v => v.to_json(),
    }
}

fn id_of(tx: &dyn WriteTx, o: &ObjectDef, seq: u64) -> String {
    Id::new(o.key_prefix, tx.marker(), seq).to_18()
}

/// The body of a CREATE or UNDELETE event: the record's non-null reported fields.
fn whole_record<'v>(
    o: &ObjectDef,
    values: impl IntoIterator<Item = (usize, &'v Value)>,
) -> Map<String, Json> {
    values
        .into_iter()
        .filter(|(i, v)| !v.is_null() && reported(o, *i))
        .map(|(i, v)| (o.fields[i].name.clone(), field_json(v)))
        .collect()
}

/// Record `seq` of `o` was created with `values` (null ones are left out): its change event and
/// PushTopic notifications.
pub(crate) fn created<'v>(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    values: impl IntoIterator<Item = (usize, &'v Value)>,
) -> ApiResult<()> {
    if o.change_events {
        let body = whole_record(o, values);
        let id = id_of(tx, o, seq);
        publish(tx, p, o, "CREATE", id, Vec::new(), body, 1)?;
    }
    notify_topics(tx, p, o, seq, TopicChange::Created, &[])
}

fn notify_topics(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    change: TopicChange,
    changed: &[usize],
) -> ApiResult<()> {
    let topics = topics::watching(tx, p, o);
    if topics.is_empty() {
        return Ok(());
    }
    topics::notify(tx, &topics, o, seq, change, changed)
}

/// What an update must know of the record before it writes (see [`before_update`]).
#[derive(Debug, Default)]
pub(crate) struct Before {
    old: Option<Vec<Value>>,
    topics: Vec<Arc<topics::Topic>>,
}

impl Before {
    /// True when [`updated`] will publish something (its `new` values are needed).
    pub(crate) fn publishes(&self) -> bool {
        self.old.is_some()
    }
}

/// Reads the current values of the fields an update of `seq` sets, when the update will publish
/// change events or PushTopic notifications (pass the result to [`updated`]).
pub(crate) fn before_update(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    new: &[(usize, Value)],
) -> ApiResult<Before> {
    let topics = topics::watching(tx, p, o);
    if !o.change_events && topics.is_empty() {
        return Ok(Before::default());
    }
    let cols: Vec<usize> = new.iter().map(|(i, _)| *i).collect();
    let old = tx.get(o, seq, &cols)?.map(|r| r.values);
    Ok(Before { old, topics })
}

/// Record `seq` of `o` was updated to `new` from what [`before_update`] read: the change event
/// reports the fields whose values changed, and `LastModifiedDate`.
pub(crate) fn updated(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    before: Before,
    new: &[(usize, Value)],
) -> ApiResult<()> {
    let Some(old) = before.old else {
        return Ok(());
    };
    let mut body = Map::new();
    let mut names = Vec::new();
    let mut changed = Vec::new();
    for ((i, v), was) in new.iter().zip(&old) {
        if v != was {
            changed.push(*i);
        }
        if !reported(o, *i) {
            continue;
        }
        let name = &o.fields[*i].name;
        if v != was || name == "LastModifiedDate" {
            body.insert(name.clone(), field_json(v));
            names.push(name.clone());
        }
    }
    if o.change_events {
        let weight = names.len().max(1) as u64;
        let id = id_of(tx, o, seq);
        publish(tx, p, o, "UPDATE", id, names, body, weight)?;
    }
    if !before.topics.is_empty() {
        topics::notify(tx, &before.topics, o, seq, TopicChange::Updated, &changed)?;
    }
    Ok(())
}

/// Record `seq` of `o` was deleted (moved to the recycle bin); `cascaded` when the deletion of a
/// parent deleted it (PushTopics do not report those).
pub(crate) fn deleted(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    cascaded: bool,
) -> ApiResult<()> {
    if o.change_events {
        let id = id_of(tx, o, seq);
        publish(tx, p, o, "DELETE", id, Vec::new(), Map::new(), 1)?;
    }
    if cascaded {
        return Ok(());
    }
    notify_topics(tx, p, o, seq, TopicChange::Deleted, &[])
}

/// Record `seq` of `o` was restored; `values` are all its fields as restored.
pub(crate) fn undeleted(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    seq: u64,
    values: &[Value],
) -> ApiResult<()> {
    if o.change_events {
        let body = whole_record(o, values.iter().enumerate());
        let id = id_of(tx, o, seq);
        publish(tx, p, o, "UNDELETE", id, Vec::new(), body, 1)?;
    }
    notify_topics(tx, p, o, seq, TopicChange::Undeleted, &[])
}

/// The schema id of `o`'s change events.
pub fn schema_id(o: &ObjectDef) -> String {
    crate::events::schema_id_named(&o.change_event_name(), o)
}

/// Appends one change event (or the gap event standing in for it).
#[allow(clippy::too_many_arguments)]
fn publish(
    tx: &mut dyn WriteTx,
    p: &Principal,
    o: &ObjectDef,
    change_type: &str,
    record_id: String,
    changed: Vec<String>,
    body: Map<String, Json>,
    weight: u64,
) -> ApiResult<()> {
    let entity = o.change_event_name();
    let limit = context(tx).map_or(OVERFLOW_AFTER, |c| c.overflow_after);
    let now = now_millis();
    if tx.tx_changes().key.is_empty() {
        let last = tx.event_bounds()?.last;
        let st = tx.tx_changes();
        st.key = crate::events::uuid_v4();
        st.commit_number = last + 1;
        st.commit_ms = now;
        st.first_after = last;
        st.at_end = Some(finish);
    }
    let st = tx.tx_changes();
    st.counted += weight;
    let (change_type, record_ids, changed, body) = if st.counted > limit {
        if st.overflowed.contains(&entity) {
            return Ok(());
        }
        st.overflowed.push(entity.clone());
        (
            "GAP_OVERFLOW".to_string(),
            vec![OVERFLOW_ID.to_string()],
            Vec::new(),
            Map::new(),
        )
    } else {
        (change_type.to_string(), vec![record_id], changed, body)
    };
    st.sequence += 1;
    let header = |change_type: &str, changed: &[String]| {
        json!({
            "entityName": o.name,
            "recordIds": record_ids,
            "changeType": change_type,
            "changedFields": changed,
            "changeOrigin": p.origin.change_origin(),
            "transactionKey": st.key,
            "sequenceNumber": st.sequence,
            "commitTimestamp": st.commit_ms,
            "commitNumber": st.commit_number,
            "commitUser": p.user_id.to_18(),
        })
    };
    let body_digest = digest_of_body(&body);
    // The body is serialized once; the header goes after it.
    let body_text = Json::Object(body).to_string();
    let with_header = |h: Json| {
        let head = format!("\"ChangeEventHeader\":{h}}}");
        if body_text.len() <= 2 {
            format!("{{{head}")
        } else {
            format!("{},{head}", &body_text[..body_text.len() - 1])
        }
    };
    let mut text = with_header(header(&change_type, &changed));
    let mut kind = change_type.clone();
    if text.len() > MAX_EVENT_BYTES {
        kind = format!("GAP_{change_type}");
        text = json!({ "ChangeEventHeader": header(&kind, &[]) }).to_string();
    }
    let digest = {
        let mut h = DefaultHasher::new();
        (&entity, &kind, &changed, &p.user_id.to_18()).hash(&mut h);
        if !kind.starts_with("GAP_") {
            body_digest.hash(&mut h);
        }
        h.finish() | 1
    };
    if digest == st.last_digest {
        st.mergeable = true;
    }
    st.last_digest = digest;
    tx.append_event(&NewEvent {
        stream: entity,
        kind: EventKind::Change,
        created_ms: now,
        uuid: crate::events::uuid_v4(),
        schema_id: schema_id(o),
        payload: text,
    })?;
    Ok(())
}

/// A digest of what [`merge_key`] compares in a body.
fn digest_of_body(body: &Map<String, Json>) -> u64 {
    let mut h = DefaultHasher::new();
    for (k, v) in body {
        k.hash(&mut h);
        match (k.as_str(), v) {
            ("LastModifiedDate", Json::String(t)) => t.get(..19).hash(&mut h),
            _ => v.to_string().hash(&mut h),
        }
    }
    h.finish()
}

/// What two change events of one transaction must share to be merged: everything but the
/// header's `recordIds` and `sequenceNumber`, with `LastModifiedDate` to the second (records
/// changed by one request within the same second).
fn merge_key(payload: &str) -> String {
    let Ok(Json::Object(mut m)) = serde_json::from_str::<Json>(payload) else {
        return payload.to_string();
    };
    if let Some(Json::Object(h)) = m.get_mut("ChangeEventHeader") {
        h.remove("recordIds");
        h.remove("sequenceNumber");
    }
    if let Some(Json::String(t)) = m.get_mut("LastModifiedDate") {
        t.truncate(19);
    }
    Json::Object(m).to_string()
}

/// Runs when a job that published mergeable change events ends: merges each run of consecutive
/// identical changes of one entity into its first event (whose `recordIds` then lists every
/// record) and renumbers the job's events.
fn finish(tx: &mut dyn WriteTx) -> StoreResult<()> {
    let st = tx.tx_changes();
    if !st.mergeable {
        return Ok(());
    }
    let from = st.first_after;
    let rows = tx.events_after(EventSelect::Kind(EventKind::Change), from, usize::MAX)?;
    // (replay id, stream, payload, merge key, changed)
    type Kept = (u64, String, Map<String, Json>, String, bool);
    let mut kept: Vec<Kept> = Vec::new();
    for r in rows {
        let Ok(Json::Object(payload)) = serde_json::from_str::<Json>(&r.event.payload) else {
            continue;
        };
        let key = merge_key(&r.event.payload);
        if let Some(last) = kept.last_mut() {
            if last.1 == r.event.stream && last.3 == key {
                let ids: Vec<Json> = payload
                    .get("ChangeEventHeader")
                    .and_then(|h| h.get("recordIds"))
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default();
                if let Some(Json::Array(into)) = last
                    .2
                    .get_mut("ChangeEventHeader")
                    .and_then(|h| h.get_mut("recordIds"))
                {
                    into.extend(ids);
                }
                last.4 = true;
                tx.rewrite_event(r.replay_id, None)?;
                continue;
            }
        }
        kept.push((r.replay_id, r.event.stream, payload, key, false));
    }
    for (n, (replay_id, _, mut payload, _, mut changed)) in kept.into_iter().enumerate() {
        if let Some(Json::Object(h)) = payload.get_mut("ChangeEventHeader") {
            let seq = json!(n + 1);
            if h.get("sequenceNumber") != Some(&seq) {
                h.insert("sequenceNumber".into(), seq);
                changed = true;
            }
        }
        if changed {
            tx.rewrite_event(replay_id, Some(&Json::Object(payload).to_string()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::BootstrapConfig;
    use crate::{Org, OrgConfig};

    fn headers(org: &Org) -> Vec<(String, String, usize)> {
        org.store
            .read(|tx| tx.events_after(EventSelect::Kind(EventKind::Change), 0, 1000))
            .unwrap()
            .into_iter()
            .map(|r| {
                let p: Json = serde_json::from_str(&r.event.payload).unwrap();
                let h = &p["ChangeEventHeader"];
                (
                    r.event.stream,
                    h["changeType"].as_str().unwrap().to_string(),
                    h["recordIds"].as_array().unwrap().len(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn selections_from_files_and_overflow_after_the_configured_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_sqlite::SqliteStore::open(
            &dir.path().join("cdc.db"),
            store_sqlite::Options {
                readers: 2,
                durable: false,
            },
        )
        .unwrap();
        let config = OrgConfig {
            cdc_overflow_after: 3,
            ..OrgConfig::default()
        };
        let org = Org::new(store, config);
        crate::bootstrap::ensure(
            &org,
            BootstrapConfig {
                admin_username: Some("admin@cdc.test".into()),
                admin_password: Some("Passw0rd-123".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let p = org.principal_for(1).unwrap();
        // Selections come from `platformEventChannelMembers/*.yaml`, idempotently.
        let meta = dir.path().join("meta");
        std::fs::create_dir_all(meta.join("platformEventChannelMembers")).unwrap();
        for e in ["AccountChangeEvent", "ContactChangeEvent"] {
            std::fs::write(
                meta.join(format!("platformEventChannelMembers/ChangeEvents_{e}.yaml")),
                format!("eventChannel: ChangeEvents\nselectedEntity: {e}\n"),
            )
            .unwrap();
        }
        let applied = org.apply_metadata_dir(&meta).await.unwrap();
        assert_eq!(
            applied.members,
            ["AccountChangeEvent", "ContactChangeEvent"]
        );
        assert!(org
            .apply_metadata_dir(&meta)
            .await
            .unwrap()
            .members
            .is_empty());
        assert!(org.schema().object("Account").unwrap().change_events);
        std::fs::write(
            meta.join("platformEventChannelMembers/Bad.yaml"),
            "eventChannel: ChangeEvents\nselectedEntity: Nope__ChangeEvent\n",
        )
        .unwrap();
        let err = org.apply_metadata_dir(&meta).await.unwrap_err();
        assert!(err.contains("Nope__ChangeEvent"), "{err}");

        // Five creates and two contacts in one transaction: three events, then one overflow
        // event per further entity.
        let account = org.schema().object("Account").unwrap().clone();
        let contact = org.schema().object("Contact").unwrap().clone();
        org.store
            .write(move |tx| {
                for k in 0..5 {
                    let body = json!({"Name": format!("A{k}")});
                    crate::ops::create(tx, &p, &account, &body)?;
                }
                for k in 0..2 {
                    let body = json!({"LastName": format!("C{k}")});
                    crate::ops::create(tx, &p, &contact, &body)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let got = headers(&org);
        let kinds: Vec<(&str, &str)> = got
            .iter()
            .map(|(s, t, _)| (s.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("AccountChangeEvent", "CREATE"),
                ("AccountChangeEvent", "CREATE"),
                ("AccountChangeEvent", "CREATE"),
                ("AccountChangeEvent", "GAP_OVERFLOW"),
                ("ContactChangeEvent", "GAP_OVERFLOW"),
            ]
        );
        assert!(got.iter().all(|(_, _, n)| *n == 1));
        // The selection is stored: a store opened on the same file loads it.
        let again = store_sqlite::SqliteStore::open(
            &dir.path().join("cdc.db"),
            store_sqlite::Options {
                readers: 1,
                durable: false,
            },
        )
        .unwrap();
        let schema = store::Store::schema(&*again);
        assert!(schema.object("Contact").unwrap().change_events);
        assert!(!schema.object("Lead").unwrap().change_events);
    }
}

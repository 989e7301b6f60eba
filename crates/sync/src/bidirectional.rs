//! Bidirectional sync between an object of the org and a PostgreSQL table. Each run collects
//! the keys that changed on either side since the last run (the org's change events, skipping
//! those whose change origin is the job itself; the table's rows after its compound cursor),
//! reads both sides' current rows for those keys, and merges them field by field against what
//! both sides last agreed on (the job's state table): a field changed on one side is copied to
//! the other, a field changed on both is settled by the job's conflict policy. What is written
//! becomes the new agreed state, so a run that reads back its own writes finds nothing to do:
//! no echo, and the two sides converge.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use model::value::now_millis;
use serde_json::{Map, Value as Json};
use service::events::Selection;
use service::{Org, Origin, Principal};
use store::{SyncErrorRow, SyncRunRow};

use crate::instant;
use crate::job::{Bidirectional, Job, Policy, TargetDef};
use crate::{cursor_setting, map_value, org_source, postgres, targets, Cursor, Engine, Record};

/// The client name the job's own org writes carry in their change origin
/// (`…;client=conflux-sync:Job`), so their change events are told apart.
pub fn client_name(job: &str) -> String {
    format!("conflux-sync:{job}")
}

/// Whether a change event was caused by job `job`'s own writes.
pub fn is_own(payload: &str, job: &str) -> bool {
    let origin = serde_json::from_str::<Json>(payload)
        .ok()
        .and_then(|v| {
            v.get("ChangeEventHeader")?
                .get("changeOrigin")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default();
    origin.ends_with(&format!(";client={}", client_name(job)))
}

/// The setting holding the replay id of the last change event a job read.
pub fn change_setting(job: &str) -> String {
    format!("sync.cursor.{job}.changes")
}

/// A JSON value as the text a key is compared by.
fn key_text(v: &Json) -> Option<String> {
    crate::json_text(v).filter(|s| !s.is_empty())
}

/// Whether two values mean the same: equal JSON, both empty (null or ""), or the same number,
/// boolean or instant written differently (`12.5` and `"12.50"`, two date-time formats).
pub fn same(a: &Json, b: &Json) -> bool {
    if a == b {
        return true;
    }
    match (key_text(a), key_text(b)) {
        (None, None) => true,
        (Some(x), Some(y)) => {
            if x == y {
                return true;
            }
            if let (Ok(m), Ok(n)) = (x.parse::<f64>(), y.parse::<f64>()) {
                return m == n;
            }
            if let (Some(m), Some(n)) = (instant(&x), instant(&y)) {
                return m == n;
            }
            x.eq_ignore_ascii_case("true") && y.eq_ignore_ascii_case("true")
                || x.eq_ignore_ascii_case("false") && y.eq_ignore_ascii_case("false")
        }
        _ => false,
    }
}

/// A field of an org record by name, whatever its case.
fn field<'a>(rec: &'a Map<String, Json>, name: &str) -> &'a Json {
    static NULL: Json = Json::Null;
    rec.get(name)
        .or_else(|| {
            rec.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .unwrap_or(&NULL)
}

/// What one key needs: the table's row to write (changed columns, with the key), the org
/// fields to write, and the image both sides agree on afterwards; or, when one side deleted a
/// record both had agreed on, the delete on the other side.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Delete the table's row (the org deleted its record).
    pub delete_table: bool,
    /// Delete the org's record (the table deleted its row).
    pub delete_org: bool,
    /// The record is gone from both sides afterwards: forget the agreed image.
    pub forget: bool,
    /// Columns for the table (`None`: nothing to write).
    pub table: Option<Record>,
    /// Whether the table has the row (the columns update it) or not (they insert it).
    pub exists: bool,
    /// Fields for the org record (`None`: nothing to write).
    pub org: Option<Record>,
    /// What both sides hold afterwards (table columns).
    pub image: Record,
}

/// One side's row of a key, in the table's columns, with when it last changed.
pub struct Side {
    /// Column → value.
    pub values: Record,
    /// When the row last changed (ms), if known.
    pub at: Option<i64>,
}

/// Merges a key's two sides against what they last agreed on (`agreed`), column by column,
/// under the job's policies.
pub fn merge(
    columns: &[String],
    org: Option<&Side>,
    table: Option<&Side>,
    agreed: Option<&Record>,
    policy: &dyn Fn(&str) -> Policy,
) -> Record {
    static NULL: Json = Json::Null;
    let mut image = Record::new();
    for c in columns {
        let a = org.map(|s| s.values.get(c).unwrap_or(&NULL));
        let b = table.map(|s| s.values.get(c).unwrap_or(&NULL));
        let v = match (a, b) {
            (Some(a), None) => a.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => continue,
            (Some(a), Some(b)) if same(a, b) => a.clone(),
            (Some(a), Some(b)) => {
                let was = agreed.map(|s| s.get(c).unwrap_or(&NULL));
                let a_changed = was.is_none_or(|s| !same(a, s));
                let b_changed = was.is_none_or(|s| !same(b, s));
                match (a_changed, b_changed) {
                    (true, false) => a.clone(),
                    (false, true) => b.clone(),
                    // Both changed (or, after a half-finished run, neither did): the policy.
                    _ => match policy(c) {
                        Policy::Source => a.clone(),
                        Policy::Target => b.clone(),
                        Policy::LastWriterWins => {
                            let (ta, tb) = (
                                org.and_then(|s| s.at).unwrap_or(0),
                                table.and_then(|s| s.at).unwrap_or(0),
                            );
                            if tb > ta {
                                b.clone()
                            } else {
                                a.clone()
                            }
                        }
                    },
                }
            }
        };
        image.insert(c.clone(), v);
    }
    image
}

/// Runs one bidirectional pass of `job`.
pub(crate) async fn run(
    engine: &Engine,
    org: &Arc<Org>,
    p: &Principal,
    job: &Arc<Job>,
    run: &mut SyncRunRow,
) -> Result<(), String> {
    let bi = job
        .bidirectional
        .as_ref()
        .ok_or("not a bidirectional job")?;
    let (TargetDef::Postgres { url, table, key }, Some(rev)) = (&job.def.target, &job.def.reverse)
    else {
        return Err("a bidirectional job pairs the org with a PostgreSQL table".into());
    };
    let name = job.def.name.clone();
    let schema = org.schema();
    let o = schema
        .object(&bi.object)
        .cloned()
        .ok_or_else(|| format!("the object {} no longer exists", bi.object))?;
    if !o.change_events {
        return Err(format!(
            "Change Data Capture is off for {}; a bidirectional job follows its change events",
            o.name
        ));
    }
    let org_side = org_source::Source::open(org.clone(), p.clone(), &o.name, 0)?;
    let db = postgres::Source::open(url, table, &rev.cursor, key, rev.overlap_seconds).await?;
    let db_out = targets::Postgres::open(url, table, key).await?;

    // The org's changes since the last run: its change events, minus the job's own.
    let bus = org.events();
    let stored: Option<u64> = org
        .store()
        .read(|tx| tx.setting(&change_setting(&name)))
        .map_err(|e| format!("reading the change cursor: {e}"))?
        .and_then(|t| t.parse().ok());
    let tip = bus.tip();
    let pruned = bus.bounds().map_err(|e| e.message)?.pruned_through;
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let mut full = stored.is_none_or(|c| c < pruned);
    let mut changes_to = tip;
    if let Some(from) = stored.filter(|_| !full) {
        let stream = Selection::Stream(o.change_event_name());
        let mut at = from;
        let mut ids: Vec<String> = Vec::new();
        while at < tip {
            let b = bus.read(&stream, at, 1_000).map_err(|e| e.message)?;
            for e in &b.events {
                if is_own(&e.event.payload, &name) {
                    continue;
                }
                let v: Json = serde_json::from_str(&e.event.payload).unwrap_or_default();
                let h = &v["ChangeEventHeader"];
                if h["changeType"] == "GAP_OVERFLOW" {
                    full = true;
                }
                if let Some(list) = h["recordIds"].as_array() {
                    ids.extend(list.iter().filter_map(|i| i.as_str().map(str::to_string)));
                }
            }
            if b.through <= at {
                break;
            }
            at = b.through;
        }
        changes_to = at.max(from);
        if !full {
            ids.sort();
            ids.dedup();
            keys.extend(
                org_side
                    .values_of(&bi.external_id, &ids, true)?
                    .iter()
                    .filter_map(key_text),
            );
        }
    }
    if full {
        // First run, or the log no longer holds every change since the last: every record.
        changes_to = tip;
        keys.extend(
            org_side
                .all_values(&bi.external_id)?
                .iter()
                .filter_map(key_text),
        );
    }

    // The table's changes since its cursor (with the overlap window).
    let at: Option<Cursor> = org
        .store()
        .read(|tx| tx.setting(&cursor_setting(&name)))
        .map_err(|e| format!("reading the cursor: {e}"))?
        .and_then(|t| serde_json::from_str(&t).ok());
    let n = job.def.batch_size;
    let mut db_to = at.clone();
    let mut rewind = true;
    loop {
        let rows = db.page(db_to.as_ref(), rewind, n).await?;
        rewind = false;
        keys.extend(rows.iter().map(|r| r.at.key.clone()));
        match rows.last() {
            Some(l) => db_to = Some(l.at.clone()),
            None => break,
        }
        if rows.len() < n {
            break;
        }
    }
    // Rows deleted from the table since: keys agreed on that the table no longer has (one
    // pass over the table's keys).
    let agreed_keys = org
        .store()
        .read(|tx| tx.sync_state_keys(&name))
        .map_err(|e| format!("reading the agreed state: {e}"))?;
    if !agreed_keys.is_empty() {
        let present: std::collections::HashSet<String> = db_out.keys().await?.into_iter().collect();
        keys.extend(agreed_keys.into_iter().filter(|k| !present.contains(k)));
    }
    // Keys a run could not write yet are tried again.
    let failed = org
        .store()
        .read(|tx| tx.sync_errors(&name, 100_000))
        .map_err(|e| format!("reading the error rows: {e}"))?;
    keys.extend(failed.into_iter().map(|e| e.key));

    let mut origin = p.clone();
    origin.origin = Origin::new(
        "rest",
        "60.0",
        Some(&format!("client={}", client_name(&name))),
    );
    let columns: Vec<String> = job.mapping.iter().map(|(c, _)| c.clone()).collect();
    let keys: Vec<String> = keys.into_iter().collect();
    for chunk in keys.chunks(n) {
        reconcile(
            engine, org, &origin, job, bi, &org_side, &db, &db_out, &columns, chunk, run,
        )
        .await?;
    }

    // Both cursors move once every key they covered is settled.
    let (cs, ds) = (change_setting(&name), cursor_setting(&name));
    let db_text = db_to.map(|c| serde_json::to_string(&c).expect("cursor serializes"));
    let mut next = run.clone();
    if db_text.is_some() {
        next.cursor_to = db_text.clone();
    }
    let done = org
        .store()
        .write(move |tx| {
            tx.set_setting(&cs, &changes_to.to_string())?;
            if let Some(t) = &db_text {
                tx.set_setting(&ds, t)?;
            }
            tx.put_sync_run(&next)?;
            Ok(next)
        })
        .await
        .map_err(|e| format!("recording the cursors: {}", e.message))?;
    *run = done;
    Ok(())
}

/// Reads both sides of `keys`, merges them, writes the table (committed first), then the org
/// records, the agreed images, the error rows and the run's counts in one transaction.
#[allow(clippy::too_many_arguments)]
async fn reconcile(
    engine: &Engine,
    org: &Arc<Org>,
    origin: &Principal,
    job: &Arc<Job>,
    bi: &Bidirectional,
    org_side: &org_source::Source,
    db: &postgres::Source,
    db_out: &targets::Postgres,
    columns: &[String],
    keys: &[String],
    run: &mut SyncRunRow,
) -> Result<(), String> {
    let name = job.def.name.clone();
    let now = now_millis();
    let mut org_now: HashMap<String, Map<String, Json>> = HashMap::new();
    for rec in org_side.by_values(&bi.external_id, keys)? {
        if let Json::Object(m) = rec {
            if let Some(k) = key_text(field(&m, &bi.external_id)) {
                org_now.insert(k, m);
            }
        }
    }
    let mut db_now: HashMap<String, postgres::Row> = HashMap::new();
    for r in db.by_keys(keys).await? {
        db_now.insert(r.at.key.clone(), r);
    }
    let agreed: HashMap<String, Record> = {
        let k = keys.to_vec();
        let j = name.clone();
        org.store()
            .read(move |tx| tx.sync_state(&j, &k))
            .map_err(|e| format!("reading the agreed state: {e}"))?
            .into_iter()
            .filter_map(|(k, t)| match serde_json::from_str(&t) {
                Ok(Json::Object(m)) => Some((k, m)),
                _ => None,
            })
            .collect()
    };
    let policy = |c: &str| bi.fields.get(c).copied().unwrap_or(bi.default);

    let mut plans: Vec<(String, Plan)> = Vec::new();
    let mut errors: Vec<SyncErrorRow> = Vec::new();
    // A refused row of this run (also used inside the write job, hence owned captures).
    let error = {
        let (job, run) = (name.clone(), run.id);
        move |key: &str, error: String, payload: String| SyncErrorRow {
            job: job.clone(),
            run,
            key: key.to_string(),
            error,
            payload,
            created_ms: now,
        }
    };
    for k in keys {
        let rec = org_now.get(k);
        let row = db_now.get(k);
        let a = match rec.map(|m| crate::map_row(job, &Json::Object(m.clone()))) {
            Some(Ok(values)) => Some(Side {
                values,
                at: rec.and_then(|m| {
                    field(m, "SystemModstamp")
                        .as_str()
                        .and_then(model::value::parse_datetime)
                }),
            }),
            Some(Err(m)) => {
                errors.push(error(
                    k,
                    m,
                    Json::Object(rec.cloned().unwrap_or_default()).to_string(),
                ));
                continue;
            }
            None => None,
        };
        let b = row.map(|r| Side {
            values: columns
                .iter()
                .map(|c| (c.clone(), r.data.get(c).cloned().unwrap_or(Json::Null)))
                .collect(),
            at: instant(&r.at.value),
        });
        // A record both sides had agreed on and one side no longer has was deleted there:
        // the delete wins over edits on the other side.
        if agreed.contains_key(k) && (a.is_none() || b.is_none()) {
            plans.push((
                k.clone(),
                Plan {
                    delete_table: a.is_none() && b.is_some(),
                    delete_org: b.is_none() && a.is_some(),
                    forget: true,
                    ..Plan::default()
                },
            ));
            continue;
        }
        if a.is_none() && b.is_none() {
            continue;
        }
        let image = merge(columns, a.as_ref(), b.as_ref(), agreed.get(k), &policy);
        // The table: the columns whose value moves (every column for a new row).
        let table = match &b {
            None => Some(image.clone()),
            Some(b) => {
                let mut changed: Record = image
                    .iter()
                    .filter(|(c, v)| !same(v, b.values.get(*c).unwrap_or(&Json::Null)))
                    .map(|(c, v)| (c.clone(), v.clone()))
                    .collect();
                if changed.is_empty() {
                    None
                } else {
                    changed.insert(bi.key.clone(), Json::from(k.clone()));
                    Some(changed)
                }
            }
        };
        // The org: the way back over the table row as it will be, the fields whose value moves.
        let mut input = row
            .and_then(|r| r.data.as_object().cloned())
            .unwrap_or_default();
        input.extend(image.iter().map(|(c, v)| (c.clone(), v.clone())));
        let input = Json::Object(input);
        let mut fields = Record::new();
        let mut bad = None;
        for (f, e) in &bi.reverse {
            match map_value(e, &input) {
                Ok(v) => {
                    let moves = rec.is_none_or(|m| !same(&v, field(m, f)));
                    if moves && !f.eq_ignore_ascii_case(&bi.external_id) {
                        fields.insert(f.clone(), v.into_owned());
                    }
                }
                Err(m) => {
                    bad = Some(format!("reverse mapping {f}: {m}"));
                    break;
                }
            }
        }
        if let Some(m) = bad {
            errors.push(error(k, m, input.to_string()));
            continue;
        }
        let org_write = (rec.is_none() || !fields.is_empty()).then_some(fields);
        plans.push((
            k.clone(),
            Plan {
                table,
                exists: b.is_some(),
                org: org_write,
                image,
                ..Plan::default()
            },
        ));
    }

    // The table first: what it refuses is neither agreed nor written to the org.
    let rows = |exists: bool| -> Vec<&Record> {
        plans
            .iter()
            .filter(|(_, p)| p.exists == exists)
            .filter_map(|(_, p)| p.table.as_ref())
            .collect()
    };
    let mut inserted = db_out.write(&rows(false)).await?.into_iter();
    let mut updated = db_out.update(&rows(true)).await?.into_iter();
    let gone: Vec<String> = plans
        .iter()
        .filter(|(_, p)| p.delete_table)
        .map(|(k, _)| k.clone())
        .collect();
    let mut deleted = db_out.delete(&gone).await?.into_iter();
    let mut written = 0u64;
    let mut ready: Vec<(String, Plan)> = Vec::new();
    for (k, plan) in plans {
        if plan.delete_table {
            match deleted.next().unwrap_or(Ok(())) {
                Ok(()) => written += 1,
                Err(m) => {
                    errors.push(error(&k, format!("PostgreSQL: {m}"), "null".into()));
                    continue;
                }
            }
        }
        if let Some(row) = &plan.table {
            let outcome = if plan.exists {
                updated.next()
            } else {
                inserted.next()
            };
            match outcome.unwrap_or(Ok(())) {
                Ok(()) => written += 1,
                Err(m) => {
                    errors.push(error(
                        &k,
                        format!("PostgreSQL: {m}"),
                        Json::Object(row.clone()).to_string(),
                    ));
                    continue;
                }
            }
        }
        ready.push((k, plan));
    }

    let o = org
        .schema()
        .object(&bi.object)
        .cloned()
        .ok_or_else(|| format!("the object {} no longer exists", bi.object))?;
    let (ext, who) = (bi.external_id.clone(), origin.clone());
    let mut next = run.clone();
    next.read += keys.len() as u64;
    let job_name = name.clone();
    let refused = error.clone();
    let done =
        org.store()
            .write(move |tx| {
                let mut ok = Vec::new();
                for (k, plan) in &ready {
                    if plan.delete_org {
                        tx.savepoint()?;
                        let outcome = service::ops::find_external(&*tx, &who, &o, &ext, k)
                            .and_then(|(_, rows)| {
                                for seq in rows {
                                    service::records::delete_tx(tx, &who, &o, seq, now, None)?;
                                }
                                Ok(())
                            });
                        match outcome {
                            Ok(()) => {
                                tx.release_savepoint()?;
                                written += 1;
                            }
                            Err(e) => {
                                tx.rollback_savepoint()?;
                                errors.push(refused(
                                    k,
                                    format!("{}: {}", e.code, e.message),
                                    "null".into(),
                                ));
                                continue;
                            }
                        }
                    }
                    if plan.forget {
                        tx.forget_sync_state(&job_name, k)?;
                        ok.push(k.clone());
                        continue;
                    }
                    if let Some(fields) = &plan.org {
                        tx.savepoint()?;
                        let body = Json::Object(fields.clone());
                        match service::ops::upsert(tx, &who, &o, &ext, k, &body, false) {
                            Ok(service::ops::UpsertOutcome::Done(_)) => {
                                tx.release_savepoint()?;
                                written += 1;
                            }
                            Ok(service::ops::UpsertOutcome::Multiple(_)) => {
                                tx.rollback_savepoint()?;
                                errors.push(refused(
                                    k,
                                    format!("more than one {} has {ext} = {k}", o.name),
                                    body.to_string(),
                                ));
                                continue;
                            }
                            Err(e) => {
                                tx.rollback_savepoint()?;
                                errors.push(refused(
                                    k,
                                    format!("{}: {}", e.code, e.message),
                                    body.to_string(),
                                ));
                                continue;
                            }
                        }
                    }
                    let image = Json::Object(plan.image.clone()).to_string();
                    tx.put_sync_state(&job_name, k, &image)?;
                    ok.push(k.clone());
                }
                for e in &errors {
                    tx.put_sync_error(e)?;
                }
                next.written += written;
                next.failed += errors.len() as u64;
                tx.clear_sync_errors(&job_name, &ok)?;
                tx.put_sync_run(&next)?;
                Ok(next)
            })
            .await
            .map_err(|e| format!("writing a batch: {}", e.message))?;
    org.note_write(&bi.object);
    *run = done;
    engine.progress(&name, run);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn side(v: Json, at: i64) -> Side {
        Side {
            values: v.as_object().unwrap().clone(),
            at: Some(at),
        }
    }

    #[test]
    fn values_written_differently_are_the_same() {
        assert!(same(&json!(12.5), &json!("12.50")));
        assert!(same(&json!(100), &json!(100.0)));
        assert!(same(&json!(null), &json!("")));
        assert!(same(&json!(true), &json!("true")));
        assert!(same(
            &json!("2026-12-03T10:00:00.000Z"),
            &json!("2026-12-03 10:00:00+00")
        ));
        assert!(!same(&json!("a"), &json!("b")));
        assert!(!same(&json!(null), &json!(0)));
    }

    #[test]
    fn merge_keeps_one_sided_changes_and_settles_conflicts_by_policy() {
        let cols: Vec<String> = ["name", "phone", "city"].map(String::from).to_vec();
        let agreed = json!({"name": "N", "phone": "1", "city": "X"});
        let agreed = agreed.as_object().unwrap();
        // The org renamed and changed the phone; the table changed the phone later and the city.
        let org = side(json!({"name": "N org", "phone": "2", "city": "X"}), 100);
        let table = side(json!({"name": "N", "phone": "3", "city": "Y"}), 200);
        let lww = merge(&cols, Some(&org), Some(&table), Some(agreed), &|_| {
            Policy::LastWriterWins
        });
        assert_eq!(
            Json::Object(lww),
            json!({"name": "N org", "phone": "3", "city": "Y"})
        );
        let source = merge(&cols, Some(&org), Some(&table), Some(agreed), &|c| {
            if c == "phone" {
                Policy::Source
            } else {
                Policy::Target
            }
        });
        assert_eq!(source["phone"], "2");
        // Without an agreed image every difference is a conflict.
        let first = merge(&cols, Some(&org), Some(&table), None, &|_| Policy::Target);
        assert_eq!(
            Json::Object(first),
            json!({"name": "N", "phone": "3", "city": "Y"})
        );
        // One side only: its values.
        let only = merge(&cols, None, Some(&table), Some(agreed), &|_| Policy::Source);
        assert_eq!(
            Json::Object(only),
            json!({"name": "N", "phone": "3", "city": "Y"})
        );
    }
}

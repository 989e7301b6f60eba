//! Tests of the SQLite store: round trips, group-commit isolation, metadata persistence.

use std::sync::Arc;

use model::spec::{CustomFieldSpec, CustomObjectSpec};
use model::{ApiError, ErrorCode, Value};
use store::Store;

use crate::{Options, SqliteStore, FRESH_EVENTS};

fn open(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    SqliteStore::open(&dir.path().join("org.db"), Options::default()).unwrap()
}

fn name_values(o: &model::ObjectDef, name: &str) -> Vec<(usize, Value)> {
    vec![(o.field_index("Name").unwrap(), Value::Text(name.into()))]
}

#[tokio::test]
async fn insert_then_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let account = st.schema().object("Account").unwrap().clone();
    let a = account.clone();
    let seq = st
        .write(move |tx| Ok(tx.insert(&a, &name_values(&a, "Acme"))?))
        .await
        .unwrap();
    let name = account.field_index("Name").unwrap();
    let id = account.field_index("Id").unwrap();
    let row = st
        .read(|tx| tx.get(&account, seq, &[id, name]))
        .unwrap()
        .unwrap();
    assert_eq!(row.values[1], Value::Text("Acme".into()));
    match &row.values[0] {
        Value::Id(i) => assert_eq!(i.prefix().as_str(), "001"),
        other => panic!("{other:?}"),
    }
    let found = st
        .read(|tx| tx.find_by_field(&account, name, &Value::Text("ACME".into()), false, 10))
        .unwrap();
    assert_eq!(found, vec![seq], "text equality is case-insensitive");
}

#[tokio::test]
async fn a_failed_job_does_not_spoil_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    let account = st.schema().object("Account").unwrap().clone();
    let mut handles = Vec::new();
    for i in 0..50 {
        let st = st.clone();
        let a = account.clone();
        handles.push(tokio::spawn(async move {
            st.write(move |tx| {
                tx.insert(&a, &name_values(&a, &format!("A{i}")))?;
                if i % 5 == 0 {
                    return Err(ApiError::new(ErrorCode::InvalidInput, "refused"));
                }
                Ok(())
            })
            .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        if h.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 40);
    let name = account.field_index("Name").unwrap();
    let count = (0..50)
        .filter(|i| {
            !st.read(|tx| tx.find_by_field(&account, name, &Value::Text(format!("A{i}")), true, 1))
                .unwrap()
                .is_empty()
        })
        .count();
    assert_eq!(
        count, 40,
        "rows of failed jobs were rolled back, the others kept"
    );
}

#[tokio::test]
async fn custom_metadata_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        let st: &dyn Store = &*s;
        let spec = CustomObjectSpec {
            full_name: "Invoice__c".into(),
            label: Some("Invoice".into()),
            ..Default::default()
        };
        let prefix = st.schema().next_custom_prefix();
        let def = spec.to_object(prefix).unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        st.write(move |tx| Ok(tx.create_object(&def, &json)?))
            .await
            .unwrap();
        let fspec: CustomFieldSpec = serde_json::from_value(
            serde_json::json!({"type": "Text", "length": 20, "externalId": true, "unique": true}),
        )
        .unwrap();
        let f = fspec.to_field("Ext__c").unwrap();
        let json = serde_json::to_string(&fspec).unwrap();
        st.write(move |tx| Ok(tx.add_field("invoice__c", &f, &json)?))
            .await
            .unwrap();
        let o = st.schema().object("Invoice__c").unwrap().clone();
        assert!(o.field("ext__c").is_some());
        let ext = o.field_index("Ext__c").unwrap();
        let o2 = o.clone();
        st.write(move |tx| Ok(tx.insert(&o2, &[(ext, Value::Text("X-1".into()))])?))
            .await
            .unwrap();
        let o3 = o.clone();
        let dup = st
            .write(move |tx| Ok(tx.insert(&o3, &[(ext, Value::Text("x-1".into()))])?))
            .await;
        assert!(
            dup.is_err(),
            "unique external id is enforced case-insensitively"
        );
        s.close();
    }
    let s = open(&dir);
    let o = s.schema().object("Invoice__c").unwrap().clone();
    assert_eq!(o.key_prefix.as_str(), "a00");
    assert!(o.field("Ext__c").unwrap().external_id);
    let st: &dyn Store = &*s;
    let ext = o.field_index("Ext__c").unwrap();
    assert_eq!(
        st.read(|tx| tx.find_by_field(&o, ext, &Value::Text("X-1".into()), false, 5))
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn sequences_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let a = st.schema().object("Account").unwrap().clone();
    let a1 = a.clone();
    let first = st
        .write(move |tx| Ok(tx.insert(&a1, &name_values(&a1, "x"))?))
        .await
        .unwrap();
    let a2 = a.clone();
    st.write(move |tx| Ok(tx.hard_delete(&a2, first)?))
        .await
        .unwrap();
    s.close();
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let a3 = a.clone();
    let second = st
        .write(move |tx| Ok(tx.insert(&a3, &name_values(&a3, "y"))?))
        .await
        .unwrap();
    assert!(second > first);
}

#[tokio::test]
async fn reads_after_an_acknowledged_write_see_it_on_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let account = st.schema().object("Account").unwrap().clone();
    let name = account.field_index("Name").unwrap();
    // Warm every pooled reader so each holds a snapshot from before the write.
    for _ in 0..32 {
        assert!(st
            .read(|tx| tx.find_by_field(&account, name, &Value::Text("late".into()), false, 5))
            .unwrap()
            .is_empty());
    }
    let a = account.clone();
    st.write(move |tx| Ok(tx.insert(&a, &name_values(&a, "late"))?))
        .await
        .unwrap();
    for _ in 0..32 {
        let found = st
            .read(|tx| tx.find_by_field(&account, name, &Value::Text("late".into()), false, 5))
            .unwrap();
        assert_eq!(
            found.len(),
            1,
            "a reader served a snapshot from before an acknowledged commit"
        );
    }
}

#[tokio::test]
async fn stale_reader_snapshots_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let account = st.schema().object("Account").unwrap().clone();
    let name = account.field_index("Name").unwrap();
    for _ in 0..16 {
        st.read(|tx| tx.find_by_field(&account, name, &Value::Text("x".into()), false, 1))
            .unwrap();
    }
    let a = account.clone();
    st.write(move |tx| Ok(tx.insert(&a, &name_values(&a, "x"))?))
        .await
        .unwrap();
    // The janitor runs every 200 ms; give it a few rounds.
    let mut released = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if s.open_snapshots() == 0 {
            released = true;
            break;
        }
    }
    assert!(
        released,
        "idle readers still hold snapshots from before the last commit"
    );
}

#[tokio::test]
async fn nested_savepoints_roll_back_only_their_part() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let account = st.schema().object("Account").unwrap().clone();
    let a = account.clone();
    st.write(move |tx| {
        tx.insert(&a, &name_values(&a, "kept-1"))?;
        tx.savepoint()?;
        tx.insert(&a, &name_values(&a, "undone"))?;
        tx.rollback_savepoint()?;
        tx.savepoint()?;
        tx.insert(&a, &name_values(&a, "kept-2"))?;
        tx.savepoint()?;
        tx.insert(&a, &name_values(&a, "undone-inner"))?;
        tx.rollback_savepoint()?;
        tx.release_savepoint()?;
        Ok(())
    })
    .await
    .unwrap();
    let name = account.field_index("Name").unwrap();
    let has = |n: &str| {
        !st.read(|tx| tx.find_by_field(&account, name, &Value::Text(n.into()), false, 1))
            .unwrap()
            .is_empty()
    };
    assert!(has("kept-1") && has("kept-2"));
    assert!(!has("undone") && !has("undone-inner"));
}

#[tokio::test]
async fn bulk_lookups_and_rows_agree_with_the_single_row_methods() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let account = st.schema().object("Account").unwrap().clone();
    let a = account.clone();
    let seqs = st
        .write(move |tx| {
            let mut out = Vec::new();
            for n in ["Acme", "acme", "Beta", "Gone"] {
                out.push(tx.insert(&a, &name_values(&a, n))?);
            }
            let deleted = a.field_index("IsDeleted").unwrap();
            tx.update(&a, out[3], &[(deleted, Value::Bool(true))])?;
            Ok(out)
        })
        .await
        .unwrap();
    let name = account.field_index("Name").unwrap();
    let keys: Vec<Value> = ["ACME", "beta", "gone", "none"]
        .iter()
        .map(|k| Value::Text(k.to_string()))
        .collect();
    let many = st
        .read(|tx| tx.find_keys(&account, name, &keys, 2))
        .unwrap();
    let one_by_one: Vec<Vec<u64>> = keys
        .iter()
        .map(|k| {
            st.read(|tx| tx.find_by_field(&account, name, k, false, 2))
                .unwrap()
        })
        .collect();
    assert_eq!(many, one_by_one);
    assert_eq!(many[0], vec![seqs[0], seqs[1]]);
    let exists = st
        .read(|tx| tx.exists_many(&account, &[seqs[0], seqs[3], 999_999]))
        .unwrap();
    assert_eq!(exists, vec![Some(false), Some(true), None]);

    // Full rows, one at a time and several at once (all or nothing).
    let a = account.clone();
    let marker = st.marker();
    let written = st
        .write(move |tx| {
            let row = |tx: &mut dyn store::WriteTx, n: &str| {
                let seq = tx.next_seq(&a)?;
                let mut v = vec![Value::Null; a.fields.len()];
                v[a.field_index("Id").unwrap()] =
                    Value::Id(model::Id::new(a.key_prefix, marker, seq));
                v[a.field_index("Name").unwrap()] = Value::Text(n.into());
                v[a.field_index("IsDeleted").unwrap()] = Value::Bool(false);
                Ok::<_, store::StoreError>(v)
            };
            let r1 = row(tx, "Full one")?;
            tx.insert_full(&a, &r1)?;
            let r2 = row(tx, "Full two")?;
            let r3 = row(tx, "Full three")?;
            tx.insert_full_many(&a, &[&r2, &r3])?;
            Ok(())
        })
        .await;
    assert!(written.is_ok(), "{written:?}");
    let found = st
        .read(|tx| tx.find_keys(&account, name, &[Value::Text("full TWO".into())], 5))
        .unwrap();
    assert_eq!(found[0].len(), 1);
}

#[tokio::test]
async fn a_database_from_before_bulk_batches_gains_the_parent_column() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).close();
    // Make it look like a database written before Bulk API 1.0 batches existed.
    {
        let conn = rusqlite::Connection::open(dir.path().join("org.db")).unwrap();
        conn.execute_batch(
            "DROP INDEX ix_bulk_jobs_parent; ALTER TABLE bulk_jobs DROP COLUMN parent;",
        )
        .unwrap();
    }
    let s = open(&dir);
    let st: &dyn Store = &*s;
    let row = store::BulkJobRow {
        kind: "ClassicBatch".into(),
        state: "Queued".into(),
        parent: Some(7),
        ..Default::default()
    };
    let seq = st
        .write(move |tx| Ok(tx.insert_bulk_job(&row)?))
        .await
        .unwrap();
    let filter = store::BulkJobFilter {
        parent: Some(7),
        limit: 10,
        ..Default::default()
    };
    let found = st.read(|tx| tx.bulk_jobs(&filter)).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].seq, found[0].parent), (seq, Some(7)));
}

fn event(stream: &str, kind: store::EventKind, created_ms: i64, n: u32) -> store::NewEvent {
    store::NewEvent {
        stream: stream.into(),
        kind,
        created_ms,
        uuid: format!("uuid-{n}"),
        schema_id: "schema".into(),
        payload: format!("{{\"n\":{n}}}"),
    }
}

#[tokio::test]
async fn the_event_log_numbers_events_once_and_commits_them_with_their_job() {
    use store::{EventKind, EventSelect};
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    let mut tip = st.event_tip();
    assert_eq!(tip.borrow().last, 0);
    let ids = st
        .write(|tx| {
            let a = tx.append_event(&event("Low_Ink__e", EventKind::Platform, 1_000, 1))?;
            let b = tx.append_event(&event("AccountChangeEvent", EventKind::Change, 1_000, 2))?;
            Ok((a, b))
        })
        .await
        .unwrap();
    assert!(ids.1 > ids.0);
    assert!(
        tip.has_changed().unwrap(),
        "a commit with events moves the tip"
    );
    {
        // The announcement carries the commit's events, as a read of the log would give them.
        let t = tip.borrow_and_update();
        assert_eq!((t.last, t.after), (ids.1, 0));
        let logged = st.read(|tx| tx.all_events_after(0, 100)).unwrap();
        assert_eq!(t.fresh.as_deref(), Some(&logged[..]));
    }
    // A job that fails takes its events with it; a detached event survives the failure.
    let failed = st
        .write(|tx| -> Result<(), ApiError> {
            tx.append_event(&event("Low_Ink__e", EventKind::Platform, 2_000, 3))?;
            tx.append_event_detached(event("Low_Ink__e", EventKind::Platform, 2_000, 4));
            Err(ApiError::new(ErrorCode::InvalidInput, "no"))
        })
        .await;
    assert!(failed.is_err());
    let ink = st
        .read(|tx| tx.events_after(EventSelect::Stream("Low_Ink__e"), 0, 100))
        .unwrap();
    let payloads: Vec<&str> = ink.iter().map(|e| e.event.payload.as_str()).collect();
    assert_eq!(payloads, ["{\"n\":1}", "{\"n\":4}"]);
    assert!(ink[1].replay_id > ids.1);
    {
        // Only the detached event committed: it is all the announcement carries.
        let t = tip.borrow_and_update();
        assert_eq!((t.last, t.after), (ink[1].replay_id, ids.1));
        assert_eq!(t.fresh.as_deref(), Some(&ink[1..]));
    }
    let changes = st
        .read(|tx| tx.events_after(EventSelect::Kind(EventKind::Change), 0, 100))
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].event.stream, "AccountChangeEvent");
    assert_eq!(changes[0].event.kind, EventKind::Change);
    let all = st.read(|tx| tx.all_events_after(ids.0, 100)).unwrap();
    assert_eq!(
        all.len(),
        2,
        "after the first: the change event and the detached one"
    );

    // Pruning keeps the log a suffix; ids are never reused, even after a reopen.
    let pruned = st.write(|tx| Ok(tx.prune_events(1_500)?)).await.unwrap();
    assert_eq!(pruned, 2);
    let b = st.read(|tx| tx.event_bounds()).unwrap();
    assert_eq!(b.pruned_through, ids.1);
    assert_eq!(b.last, ink[1].replay_id);
    assert_eq!(st.write(|tx| Ok(tx.prune_events(1_500)?)).await.unwrap(), 0);
    let last = ink[1].replay_id;
    st.write(|tx| Ok(tx.prune_events(10_000)?)).await.unwrap();
    drop(st);
    s.close();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    assert_eq!(st.event_tip().borrow().last, last);
    let next = st
        .write(|tx| Ok(tx.append_event(&event("Low_Ink__e", EventKind::Platform, 3_000, 5))?))
        .await
        .unwrap();
    assert!(
        next > last,
        "replay ids never go back after pruning everything"
    );
    let b = st.read(|tx| tx.event_bounds()).unwrap();
    assert_eq!((b.pruned_through, b.last), (last, next));
}

#[tokio::test]
async fn a_commit_with_many_events_leaves_subscribers_to_read_the_log() {
    use store::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    // One commit of `count` events; the announcement it made.
    let commit = |count: u32| {
        let st = st.clone();
        async move {
            st.write(move |tx| {
                for k in 0..count {
                    tx.append_event(&event("Low_Ink__e", EventKind::Platform, 1_000, k))?;
                }
                Ok(())
            })
            .await
            .unwrap();
            st.event_tip().borrow().clone()
        }
    };
    let n = FRESH_EVENTS as u32 + 1;
    let t = commit(n).await;
    assert_eq!(t.last, u64::from(n));
    assert!(t.fresh.is_none(), "too many to hand over");
    // One fewer is handed over whole.
    let t = commit(n - 1).await;
    assert_eq!(t.after, u64::from(n));
    assert_eq!(t.fresh.map(|f| f.len()), Some(FRESH_EVENTS));
    drop(st);
    s.close();
}

#[tokio::test]
async fn the_wal_stays_short_while_small_commits_pile_up() {
    use store::EventKind;
    /// `commits` commits of one 20 KB event each (≈ 6 WAL pages), `pause` apart; the WAL's
    /// length afterwards, in pages.
    async fn wal_pages_after(commits: u32, pause: std::time::Duration) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            readers: 2,
            durable: false,
        };
        let s = SqliteStore::open(&dir.path().join("org.db"), options).unwrap();
        let st: Arc<dyn Store> = s.clone();
        for k in 0..commits {
            st.write(move |tx| {
                let mut e = event("Low_Ink__e", EventKind::Platform, 1_000, k);
                e.payload = format!("{{\"n\":\"{}\"}}", "x".repeat(20_000));
                Ok(tx.append_event(&e)?)
            })
            .await
            .unwrap();
            tokio::time::sleep(pause).await;
        }
        let wal = std::fs::metadata(dir.path().join("org.db-wal"))
            .unwrap()
            .len();
        drop(st);
        s.close();
        wal / 4096
    }
    // ≈ 4,800 pages in all: past CHECKPOINT_FROM_PAGES the checkpoint thread copies each
    // commit back and the WAL starts over, long before the writer's own checkpoint (past
    // WRITER_CHECKPOINT_PAGES, 8,192) would step in.
    let pages = wal_pages_after(800, std::time::Duration::from_millis(2)).await;
    assert!(pages < 4_096, "{pages} pages");
}

#[tokio::test]
async fn replay_ids_announced_before_their_commit_was_durable_are_never_reused() {
    use store::{EventKind, EventSelect};
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert!(s.defers_sync(), "a durable store syncs the WAL itself");
    let st: Arc<dyn Store> = s.clone();
    let publish = |st: Arc<dyn Store>, n: u32| async move {
        st.write(move |tx| {
            Ok(tx.append_event(&event("Low_Ink__e", EventKind::Platform, 1_000, n))?)
        })
        .await
        .unwrap()
    };
    let first = publish(st.clone(), 1).await;
    // What the disk holds now that the first commit is durable (the writer is idle: the database
    // file, then the WAL whose frames a checkpoint may be copying into it).
    let lost = tempfile::tempdir().unwrap();
    for f in ["org.db", "org.db-wal"] {
        std::fs::copy(dir.path().join(f), lost.path().join(f)).unwrap();
    }
    // Its events are announced while the commit is synced: subscribers may see replay id
    // `second` before the disk holds it.
    let second = publish(st.clone(), 2).await;
    assert_eq!(second, first + 1);
    drop(st);
    s.close();

    // A power loss took the second commit: the files are as they were before it.
    let s = SqliteStore::open(&lost.path().join("org.db"), Options::default()).unwrap();
    let st: Arc<dyn Store> = s.clone();
    let kept = st
        .read(|tx| tx.events_after(EventSelect::Stream("Low_Ink__e"), 0, 10))
        .unwrap();
    assert_eq!(
        kept.iter().map(|e| e.replay_id).collect::<Vec<_>>(),
        [first]
    );
    let third = publish(st.clone(), 3).await;
    assert!(
        third > second,
        "a replay id a subscriber may have seen ({second}) is not given to another event ({third})"
    );
    assert!(st.event_tip().borrow().last >= third);
    drop(st);
    s.close();

    // After a clean stop nothing is skipped.
    let s = open(&dir);
    assert!(s.defers_sync(), "and so does a reopened one");
    let st: Arc<dyn Store> = s.clone();
    assert_eq!(st.event_tip().borrow().last, second);
    assert_eq!(publish(st.clone(), 4).await, second + 1);
    drop(st);
    s.close();
}

fn delivery(endpoint: &str, action: &str, next_ms: i64) -> store::NewDelivery {
    store::NewDelivery {
        kind: "webhook".into(),
        endpoint: endpoint.into(),
        action: action.into(),
        record: String::new(),
        payload: "{}".into(),
        created_ms: 1,
        next_ms,
        expires_ms: 1_000,
    }
}

#[tokio::test]
async fn queue_counts_per_endpoint_split_queued_failing_and_dead_with_the_oldest_queued() {
    use store::{DeliveryCounts, Settle};
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    let made = |endpoint: &str, created_ms: i64| store::NewDelivery {
        created_ms,
        ..delivery(endpoint, "A", created_ms)
    };
    let seqs = st
        .write(move |tx| {
            let mut v = Vec::new();
            for (e, at) in [
                ("http://c", 10),
                ("http://c", 20),
                ("http://c", 30),
                ("http://d", 40),
                ("http://e", 50),
            ] {
                v.push(tx.enqueue_delivery(&made(e, at))?);
            }
            Ok(v)
        })
        .await
        .unwrap();
    let outcomes = vec![
        (seqs[0], Settle::Delivered),
        (
            seqs[1],
            Settle::Retry {
                next_ms: 900,
                error: "HTTP 500".into(),
            },
        ),
        (
            seqs[3],
            Settle::Dead {
                error: "gone".into(),
            },
        ),
        (seqs[4], Settle::Delivered),
    ];
    st.write(move |tx| Ok(tx.settle_deliveries(&outcomes, 60)?))
        .await
        .unwrap();
    // An endpoint with nothing left is not listed; the oldest queued row counts, failing or not.
    assert_eq!(
        st.read(|tx| tx.delivery_counts()).unwrap(),
        vec![
            DeliveryCounts {
                endpoint: "http://c".into(),
                queued: 1,
                failing: 1,
                dead: 0,
                oldest_ms: Some(20),
            },
            DeliveryCounts {
                endpoint: "http://d".into(),
                queued: 0,
                failing: 0,
                dead: 1,
                oldest_ms: None,
            },
        ]
    );
}

#[tokio::test]
async fn the_delivery_queue_commits_with_its_job_and_settles_each_outcome() {
    use store::{DeliveryFilter, DeliveryState, Settle};
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    let mut wake = st.delivery_wake();
    // A rolled-back job queues nothing; a kept one wakes the engine.
    let r: Result<(), ApiError> = st
        .write(|tx| {
            tx.enqueue_delivery(&delivery("http://a", "A", 10))?;
            Err(ApiError::new(ErrorCode::InvalidField, "no"))
        })
        .await;
    assert!(r.is_err());
    assert!(!wake.has_changed().unwrap());
    let seqs = st
        .write(|tx| {
            let mut v = Vec::new();
            for (e, next) in [("http://a", 30), ("http://a", 10), ("http://b", 20)] {
                v.push(tx.enqueue_delivery(&delivery(e, "A", next))?);
            }
            Ok(v)
        })
        .await
        .unwrap();
    assert!(wake.has_changed().unwrap());
    wake.mark_unchanged();
    assert_eq!(
        st.read(|tx| tx.deliveries(&store::DeliveryFilter {
            limit: 10,
            ..Default::default()
        }))
        .unwrap()
        .len(),
        3,
        "the rolled-back job queued nothing"
    );
    let seqs: [u64; 3] = seqs.try_into().unwrap();
    let endpoints = st.read(|tx| tx.delivery_endpoints()).unwrap();
    assert_eq!(
        endpoints,
        vec![("http://a".to_string(), 10), ("http://b".to_string(), 20)]
    );
    let due = st
        .read(|tx| tx.due_deliveries("http://a", 15, None, 10))
        .unwrap();
    assert_eq!(due.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![seqs[1]]);
    let due = st
        .read(|tx| tx.due_deliveries("http://a", 50, None, 10))
        .unwrap();
    assert_eq!(
        due.iter().map(|d| d.seq).collect::<Vec<_>>(),
        vec![seqs[1], seqs[0]],
        "earliest due first"
    );
    // Reading on from a position skips what came before it in due order.
    let first = &due[0];
    let rest = st
        .read(|tx| tx.due_deliveries("http://a", 50, Some((first.new.next_ms, first.seq)), 10))
        .unwrap();
    assert_eq!(
        rest.iter().map(|d| d.seq).collect::<Vec<_>>(),
        vec![seqs[0]]
    );
    let last = &due[1];
    assert!(st
        .read(|tx| tx.due_deliveries("http://a", 50, Some((last.new.next_ms, last.seq)), 10))
        .unwrap()
        .is_empty());

    let outcomes = vec![
        (seqs[0], Settle::Delivered),
        (
            seqs[1],
            Settle::Retry {
                next_ms: 500,
                error: "HTTP 500".into(),
            },
        ),
        (
            seqs[2],
            Settle::Dead {
                error: "expired".into(),
            },
        ),
    ];
    st.write(move |tx| Ok(tx.settle_deliveries(&outcomes, 40)?))
        .await
        .unwrap();
    assert!(st.read(|tx| tx.delivery(seqs[0])).unwrap().is_none());
    let retried = st.read(|tx| tx.delivery(seqs[1])).unwrap().unwrap();
    assert_eq!(
        (retried.attempts, retried.new.next_ms, retried.last_ms),
        (1, 500, Some(40))
    );
    assert_eq!(retried.last_error.as_deref(), Some("HTTP 500"));
    let dead = st.read(|tx| tx.delivery(seqs[2])).unwrap().unwrap();
    assert_eq!(dead.state, DeliveryState::Dead);
    assert!(st
        .read(|tx| tx.due_deliveries("http://b", 1_000, None, 10))
        .unwrap()
        .is_empty());
    let failed = st
        .read(|tx| {
            tx.deliveries(&DeliveryFilter {
                failed: true,
                limit: 10,
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(failed.len(), 1);
    let counts = st.read(|tx| tx.delivery_counts()).unwrap();
    assert_eq!((counts[0].failing, counts[1].dead), (1, 1));

    // Settling something dead again changes nothing; requeue brings it back with a new expiry.
    let again = vec![(seqs[2], Settle::Delivered)];
    st.write(move |tx| Ok(tx.settle_deliveries(&again, 41)?))
        .await
        .unwrap();
    assert!(st.read(|tx| tx.delivery(seqs[2])).unwrap().is_some());
    let n = st
        .write(move |tx| Ok(tx.requeue_deliveries(&[seqs[2]], 60, 9_000)?))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(wake.has_changed().unwrap());
    let back = st.read(|tx| tx.delivery(seqs[2])).unwrap().unwrap();
    assert_eq!(
        (
            back.state,
            back.new.next_ms,
            back.new.expires_ms,
            back.attempts
        ),
        (DeliveryState::Queued, 60, 9_000, 1)
    );
    let n = st
        .write(move |tx| Ok(tx.purge_deliveries(&[seqs[1], seqs[2], 999])?))
        .await
        .unwrap();
    assert_eq!(n, 2);
    drop(st);
    s.close();
    // Reopened, the sequence continues.
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    let next = st
        .write(|tx| Ok(tx.enqueue_delivery(&delivery("http://a", "A", 1))?))
        .await
        .unwrap();
    assert!(next > seqs[2]);
}

#[tokio::test]
async fn a_small_write_runs_in_place_when_the_writer_is_idle_and_queues_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    let account = st.schema().object("Account").unwrap().clone();
    let here = std::thread::current().id();
    let a = account.clone();
    let (seq, ran_on) = st
        .write_small(move |tx| {
            let seq = tx.insert(&a, &name_values(&a, "In place"))?;
            Ok((seq, std::thread::current().id()))
        })
        .await
        .unwrap();
    assert_eq!(
        ran_on, here,
        "an idle writer lets a small job run on its caller's thread"
    );
    let name = account.field_index("Name").unwrap();
    let row = st.read(|tx| tx.get(&account, seq, &[name])).unwrap();
    assert_eq!(row.unwrap().values[0], Value::Text("In place".into()));

    // While the writer is busy (its lock held), a small job goes to the writer thread.
    let busy = s.writer.lock();
    let a = account.clone();
    let queued = tokio::spawn({
        let st = st.clone();
        async move {
            st.write_small(move |tx| {
                tx.insert(&a, &name_values(&a, "Queued"))?;
                Ok(std::thread::current().name().map(str::to_string))
            })
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!queued.is_finished(), "the job waits for the busy writer");
    drop(busy);
    let ran_on = queued.await.unwrap().unwrap();
    assert_eq!(ran_on.as_deref(), Some("conflux-writer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_writes_in_place_and_queued_writes_interleave_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let st: Arc<dyn Store> = s.clone();
    let account = st.schema().object("Account").unwrap().clone();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (st, a) = (st.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            let job = move |tx: &mut dyn store::WriteTx| {
                Ok(tx.insert(&a, &name_values(&a, &format!("A{i}")))?)
            };
            if i % 3 == 0 {
                st.write(job).await
            } else {
                st.write_small(job).await
            }
        }));
    }
    let mut seqs = std::collections::BTreeSet::new();
    for t in tasks {
        assert!(
            seqs.insert(t.await.unwrap().unwrap()),
            "sequences are unique"
        );
    }
    assert_eq!(seqs.len(), 300);
    let name = account.field_index("Name").unwrap();
    let names: std::collections::BTreeSet<String> = seqs
        .iter()
        .map(
            |&seq| match st.read(|tx| tx.get(&account, seq, &[name])).unwrap() {
                Some(r) => match &r.values[0] {
                    Value::Text(t) => t.to_string(),
                    other => panic!("{other:?}"),
                },
                None => panic!("row {seq} is missing"),
            },
        )
        .collect();
    assert_eq!(names.len(), 300, "every acknowledged write is there once");
}

//! Tests of the ingest core against single-record REST: the same inputs must give the same
//! stored values and the same errors, row by row.

use std::sync::Arc;

use model::{ApiError, Id, ObjectDef, Value};
use serde_json::{json, Value as Json};

use super::ingest::{Cell, IngestPlan, Operation, RowOutcome};
use crate::bootstrap::BootstrapConfig;
use crate::coerce::{coerce_str, coerce_value};
use crate::{Org, OrgConfig, Principal};

async fn org() -> (tempfile::TempDir, Arc<Org>, Principal) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_sqlite::SqliteStore::open(
        &dir.path().join("bulk.db"),
        store_sqlite::Options {
            readers: 2,
            durable: false,
        },
    )
    .expect("store");
    let org = Org::new(store, OrgConfig::default());
    crate::bootstrap::ensure(
        &org,
        BootstrapConfig {
            admin_username: Some("admin@bulk.test".into()),
            admin_password: Some("Passw0rd-123".into()),
            ..Default::default()
        },
    )
    .await
    .expect("bootstrap");
    let p = org.principal_for(1).expect("admin");
    (dir, org, p)
}

/// Runs `bulk`'s background runner until the returned sender is used (or dropped).
fn spawn_runner(
    bulk: &Arc<super::Bulk>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(bulk.clone().run(async move {
        let _ = stopped.await;
    }));
    (stop, runner)
}

fn object(org: &Org, name: &str) -> Arc<ObjectDef> {
    org.schema().object(name).expect("object").clone()
}

/// Runs rows (CSV cells) through the bulk core as one chunk.
async fn bulk(
    org: &Org,
    p: &Principal,
    object: &str,
    op: Operation,
    ext: Option<&str>,
    header: &[&str],
    rows: &[Vec<&str>],
) -> Vec<RowOutcome> {
    let o = self::object(org, object);
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let plan = IngestPlan::new(p, &org.schema(), &o, op, ext, &header).expect("plan");
    let chunk = plan.prepare(
        p,
        org.store().marker(),
        rows.iter()
            .map(|r| r.iter().map(|c| Cell::from_csv(c)).collect::<Vec<_>>()),
    );
    let p2 = p.clone();
    org.store()
        .write(move |tx| plan.apply(tx, &p2, chunk, model::value::now_millis()))
        .await
        .expect("chunk applies")
}

/// The same row through REST (`ops::create`).
async fn rest_create(org: &Org, p: &Principal, object: &str, body: Json) -> Result<Id, ApiError> {
    let o = self::object(org, object);
    let p2 = p.clone();
    org.store()
        .write(move |tx| crate::ops::create(tx, &p2, &o, &body).map(|c| c.id))
        .await
}

fn all_fields(org: &Org, o: &ObjectDef, id: &Id) -> Vec<Value> {
    let seq = id.seq_in(org.store().marker()).expect("own id");
    let all: Vec<usize> = (0..o.fields.len()).collect();
    org.store()
        .read(|tx| tx.get(o, seq, &all))
        .expect("read")
        .expect("row")
        .values
}

/// Values that differ between two records of the same content: ids, auto-numbers, times.
fn comparable(o: &ObjectDef, values: Vec<Value>) -> Vec<(String, Value)> {
    o.fields
        .iter()
        .zip(values)
        .filter(|(f, _)| {
            !matches!(
                f.name.as_str(),
                "Id" | "CreatedDate" | "LastModifiedDate" | "SystemModstamp"
            ) && !matches!(f.derived, Some(model::Derived::AutoNumber { .. }))
        })
        .map(|(f, v)| (f.name.clone(), v))
        .collect()
}

#[test]
fn text_coercion_matches_json_coercion() {
    let schema = model::Schema::build(model::standard::standard_objects(), 1).expect("schema");
    let inputs = [
        "",
        " ",
        "0",
        "7",
        " 42 ",
        "-3",
        "1.5",
        "1e3",
        "123456789012",
        "abc",
        "true",
        "FALSE",
        "yes",
        "NaN",
        "inf",
        "2024-01-02",
        "2024-02-30",
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.123Z",
        "2024-01-02 03:04:05",
        "2024-01-02T03:04:05.5",
        "2024-01-02T03:04:05+02:00",
        "2024-01-02T03:04:05.123456789Z",
        "2024-01-02T23:59:60Z",
        "2024-01-02 03:04:05Z",
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",
        "12:30:00",
        "a@b.co",
        "not an email",
        "001D000000IRFmaIAH",
        "003D000000IRFmaIAH",
        "nonsense-id",
        "Hot",
        "Red;Blue;red",
        "x;;y",
        &"z".repeat(300),
        "é",
        "\"quoted\"",
    ];
    let mut compared = 0;
    for o in schema.objects() {
        for f in &o.fields {
            for s in inputs {
                let text = coerce_str(o, f, s);
                let json = coerce_value(o, f, &Json::String(s.to_string()));
                assert_eq!(text, json, "{}.{} from {s:?}", o.name, f.name);
                compared += 1;
            }
        }
    }
    assert!(compared > 1000);
}

#[tokio::test]
async fn bulk_inserts_store_and_refuse_what_rest_does() {
    let (_dir, org, p) = org().await;
    let o = object(&org, "Contact");
    let account = rest_create(&org, &p, "Account", json!({"Name": "Parent"}))
        .await
        .expect("account");
    let header = [
        "LastName",
        "FirstName",
        "Email",
        "AccountId",
        "Birthdate",
        "CreatedDate",
        "Id",
    ];
    let acct = account.to_18();
    let rows: Vec<Vec<&str>> = vec![
        vec![
            "Smith",
            "Ann",
            "ann@example.com",
            &acct,
            "1980-05-06",
            "",
            "",
        ],
        vec!["", "NoLast", "", "", "", "", ""],
        vec!["Bad", "", "not-an-email", "", "", "", ""],
        vec!["Ref", "", "", "001000000000000AAA", "", "", ""],
        vec!["Typed", "", "", "003D000000IRFmaIAH", "", "", ""],
        vec!["Date", "", "", "", "1980-13-40", "", ""],
        vec!["Locked", "", "", "", "", "2020-01-01T00:00:00Z", ""],
        vec!["WithId", "", "", "", "", "", "003D000000IRFmaIAH"],
        vec!["Nulls", "#N/A", "#N/A", "#N/A", "#N/A", "", "#N/A"],
    ];
    let outcomes = bulk(&org, &p, "Contact", Operation::Insert, None, &header, &rows).await;
    assert_eq!(outcomes.len(), rows.len());
    for (row, outcome) in rows.iter().zip(&outcomes) {
        let mut body = serde_json::Map::new();
        for (h, c) in header.iter().zip(row) {
            match Cell::from_csv(c) {
                Cell::Empty => {}
                Cell::Null => {
                    body.insert(h.to_string(), Json::Null);
                }
                Cell::Text(s) => {
                    body.insert(h.to_string(), Json::String(s.to_string()));
                }
            }
        }
        let rest = rest_create(&org, &p, "Contact", Json::Object(body)).await;
        match (outcome, rest) {
            (RowOutcome::Ok { id, created }, Ok(rest_id)) => {
                assert!(created);
                assert_eq!(
                    comparable(&o, all_fields(&org, &o, id)),
                    comparable(&o, all_fields(&org, &o, &rest_id)),
                    "{row:?}"
                );
            }
            (RowOutcome::Err { error, .. }, Err(e)) => {
                assert_eq!(error.code, e.code.as_str(), "{row:?}");
                assert_eq!(error.message, e.message, "{row:?}");
                assert_eq!(error.fields, e.fields, "{row:?}");
            }
            (b, r) => panic!("{row:?}: bulk {b:?}, REST {r:?}"),
        }
    }
    assert!(outcomes.iter().filter(|o| o.is_ok()).count() >= 2);
}

#[tokio::test]
async fn a_refused_row_in_a_batch_keeps_its_neighbours() {
    let (_dir, org, p) = org().await;
    org.create_custom_field(
        &p,
        "Account.Code__c",
        &json!({"type": "Text", "length": 20, "externalId": true, "unique": true, "label": "Code"}),
    )
    .await
    .expect("field");
    let first = rest_create(
        &org,
        &p,
        "Account",
        json!({"Name": "Taken", "Code__c": "K-50"}),
    )
    .await
    .expect("first");
    // More rows than one statement writes, so the refused statement is written again row by row.
    const N: usize = super::ingest::INSERT_BATCH + 44;
    let codes: Vec<String> = (0..N).map(|i| format!("k-{i}")).collect();
    let names: Vec<String> = (0..N).map(|i| format!("Row {i}")).collect();
    let rows: Vec<Vec<&str>> = (0..N)
        .map(|i| vec![names[i].as_str(), codes[i].as_str()])
        .collect();
    let outcomes = bulk(
        &org,
        &p,
        "Account",
        Operation::Insert,
        None,
        &["Name", "Code__c"],
        &rows,
    )
    .await;
    let failed: Vec<usize> = (0..N).filter(|i| !outcomes[*i].is_ok()).collect();
    assert_eq!(
        failed,
        vec![50],
        "only the duplicate fails (case-insensitively)"
    );
    let RowOutcome::Err { error, .. } = &outcomes[50] else {
        unreachable!()
    };
    assert_eq!(error.code, "DUPLICATE_VALUE");
    assert_eq!(
        error.message,
        format!(
            "duplicate value found: Code__c duplicates value on record with id: {}",
            first.to_18()
        )
    );
    assert_eq!(
        error.text(),
        format!("DUPLICATE_VALUE:{}:Code__c --", error.message)
    );
    // Ids follow the rows' order.
    let seqs: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            RowOutcome::Ok { id, .. } => id.seq_in(org.store().marker()),
            _ => None,
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn upserts_see_the_rows_before_them() {
    let (_dir, org, p) = org().await;
    org.create_custom_field(
        &p,
        "Account.Code__c",
        &json!({"type": "Text", "length": 20, "externalId": true, "label": "Code"}),
    )
    .await
    .expect("field");
    let existing = rest_create(
        &org,
        &p,
        "Account",
        json!({"Name": "Old", "Code__c": "E-1"}),
    )
    .await
    .expect("existing");
    let rows = vec![
        vec!["E-1", "Updated", "10"],
        vec!["N-1", "Created", "1"],
        vec!["n-1", "Created then updated", "2"],
        vec!["", "No key", "3"],
        vec!["N-2", "", "abc"],
    ];
    let outcomes = bulk(
        &org,
        &p,
        "Account",
        Operation::Upsert,
        Some("Code__c"),
        &["Code__c", "Name", "NumberOfEmployees"],
        &rows,
    )
    .await;
    assert_eq!(
        outcomes[0],
        RowOutcome::Ok {
            id: existing,
            created: false
        }
    );
    let RowOutcome::Ok {
        id: created,
        created: true,
    } = outcomes[1]
    else {
        panic!("{:?}", outcomes[1])
    };
    assert_eq!(
        outcomes[2],
        RowOutcome::Ok {
            id: created,
            created: false
        },
        "the second row with the same key (any case) updates the record the first created"
    );
    let RowOutcome::Err { error, .. } = &outcomes[3] else {
        panic!()
    };
    assert_eq!(error.code, "MISSING_ARGUMENT");
    let RowOutcome::Err { error, .. } = &outcomes[4] else {
        panic!()
    };
    assert_eq!(error.code, "JSON_PARSER_ERROR");
    let o = object(&org, "Account");
    let name = o.field_index("Name").unwrap();
    let seq = created.seq_in(org.store().marker()).unwrap();
    let stored = org
        .store()
        .read(|tx| tx.get(&o, seq, &[name]))
        .unwrap()
        .unwrap();
    assert_eq!(stored.values[0], Value::Text("Created then updated".into()));
}

#[tokio::test]
async fn updates_leave_empty_cells_alone_and_null_na() {
    let (_dir, org, p) = org().await;
    let id = rest_create(
        &org,
        &p,
        "Account",
        json!({"Name": "Keep", "Industry": "Banking", "NumberOfEmployees": 5}),
    )
    .await
    .expect("account");
    let ids = id.to_18();
    let outcomes = bulk(
        &org,
        &p,
        "Account",
        Operation::Update,
        None,
        &["Id", "Name", "Industry", "NumberOfEmployees"],
        &[
            vec![ids.as_str(), "", "#N/A", "6"],
            vec!["", "x", "", ""],
            vec!["001D000000IRFmaIAH", "x", "", ""],
            vec![ids.as_str(), "#N/A", "", ""],
        ],
    )
    .await;
    assert!(outcomes[0].is_ok());
    let RowOutcome::Err { error, .. } = &outcomes[1] else {
        panic!()
    };
    assert_eq!(error.code, "MISSING_ARGUMENT");
    let RowOutcome::Err { id: given, error } = &outcomes[2] else {
        panic!()
    };
    assert_eq!(given.as_deref(), Some("001D000000IRFmaIAH"));
    assert_eq!(
        error.code, "NOT_FOUND",
        "an id of another org names nothing here"
    );
    let RowOutcome::Err { error, .. } = &outcomes[3] else {
        panic!()
    };
    assert_eq!(error.code, "REQUIRED_FIELD_MISSING");
    let o = object(&org, "Account");
    let f: Vec<usize> = ["Name", "Industry", "NumberOfEmployees"]
        .iter()
        .map(|n| o.field_index(n).unwrap())
        .collect();
    let seq = id.seq_in(org.store().marker()).unwrap();
    let row = org.store().read(|tx| tx.get(&o, seq, &f)).unwrap().unwrap();
    assert_eq!(
        row.values,
        vec![Value::Text("Keep".into()), Value::Null, Value::Int(6)]
    );
}

#[tokio::test]
async fn deletes_and_hard_deletes() {
    let (_dir, org, p) = org().await;
    let a = rest_create(&org, &p, "Account", json!({"Name": "A"}))
        .await
        .unwrap();
    let b = rest_create(&org, &p, "Account", json!({"Name": "B"}))
        .await
        .unwrap();
    let (sa, sb) = (a.to_18(), b.to_18());
    let out = bulk(
        &org,
        &p,
        "Account",
        Operation::Delete,
        None,
        &["Id"],
        &[vec![sa.as_str()], vec![sa.as_str()]],
    )
    .await;
    assert!(out[0].is_ok());
    let RowOutcome::Err { error, .. } = &out[1] else {
        panic!()
    };
    assert_eq!(error.code, "ENTITY_IS_DELETED");
    let out = bulk(
        &org,
        &p,
        "Account",
        Operation::HardDelete,
        None,
        &["Id"],
        &[vec![sb.as_str()]],
    )
    .await;
    assert!(out[0].is_ok());
    let o = object(&org, "Account");
    let m = org.store().marker();
    assert_eq!(
        org.store()
            .read(|tx| tx.exists(&o, a.seq_in(m).unwrap()))
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        org.store()
            .read(|tx| tx.exists(&o, b.seq_in(m).unwrap()))
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn headers_naming_unknown_fields_fail_the_job() {
    let (_dir, org, p) = org().await;
    let o = object(&org, "Account");
    let schema = org.schema();
    for bad in ["Nope__c", "Parent.Nope__c", "Contact:Parent.Id", "Nope.Id"] {
        let e = IngestPlan::new(
            &p,
            &schema,
            &o,
            Operation::Insert,
            None,
            &["Name".into(), bad.into()],
        )
        .unwrap_err();
        assert_eq!(e, format!("InvalidBatch : Field name not found : {bad}"));
    }
    assert!(IngestPlan::new(
        &p,
        &schema,
        &o,
        Operation::Insert,
        None,
        &[
            "name".into(),
            "Account:Parent.Id".into(),
            "parent.id".into()
        ]
    )
    .is_ok());
}

#[tokio::test]
async fn the_runner_processes_chunks_and_expires_old_jobs() {
    use super::{Bulk, JobKind, JobState, Options, ResultKind};
    let (dir, org, p) = org().await;
    let bulk_dir = dir.path().join("bulk");
    let opts = Options {
        chunk_rows: 3,
        ..Options::default()
    };
    let bulk = Bulk::install(org.clone(), bulk_dir.clone(), opts).expect("install");
    let (stop, runner) = spawn_runner(&bulk);
    let spec = json!({"object": "Account", "operation": "insert"});
    let mut csv = String::from("Name,NumberOfEmployees\n");
    for i in 0..10 {
        csv.push_str(&format!("Runner {i},{}\n", if i == 4 { "x" } else { "1" }));
    }
    let job = bulk
        .create_ingest_with_data(&p, 59, spec.as_object().unwrap(), csv.into_bytes())
        .await
        .expect("job");
    assert_eq!(job.state, JobState::UploadComplete);
    let id = job.id.to_18();
    let done = loop {
        let j = bulk.job(&p, JobKind::Ingest, &id).expect("job");
        if j.state.is_terminal() {
            break j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done.state, JobState::JobComplete);
    assert_eq!((done.processed, done.failed), (10, 1));
    let seq = done.id.seq_in(org.store().marker()).unwrap();
    let chunks = org.store().read(|tx| tx.bulk_chunks(seq, 0, 100)).unwrap();
    assert_eq!(chunks.len(), 4, "10 rows in chunks of 3");
    let mut failed = bulk
        .ingest_results(&p, &id, ResultKind::Failed)
        .expect("results");
    let mut text = Vec::new();
    while let Some(piece) = failed.recv().await {
        text.extend(piece);
    }
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "\"sf__Id\",\"sf__Error\",Name,NumberOfEmployees\n\"\",\"JSON_PARSER_ERROR:Cannot deserialize instance of int from VALUE_STRING value x or request may be missing a required field: --\",Runner 4,x\n"
    );
    let _ = stop.send(());
    runner.await.unwrap();
    assert_eq!(
        std::fs::read_dir(&bulk_dir).unwrap().count(),
        1,
        "the upload"
    );

    // A runner whose retention has passed deletes the job, its chunks and its file.
    let expiring = Bulk::install(
        org.clone(),
        bulk_dir.clone(),
        Options {
            retention_ms: -1,
            ..Options::default()
        },
    )
    .expect("install");
    let (stop, runner) = spawn_runner(&expiring);
    loop {
        if expiring.job(&p, JobKind::Ingest, &id).is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    runner.await.unwrap();
    assert_eq!(std::fs::read_dir(&bulk_dir).unwrap().count(), 0);
    assert!(org
        .store()
        .read(|tx| tx.bulk_chunks(seq, 0, 100))
        .unwrap()
        .is_empty());
    assert_eq!(org.count_accounts_named("Runner%"), 9);
}

impl Org {
    fn count_accounts_named(&self, like: &str) -> u64 {
        let p = self.principal_for(1).unwrap();
        self.query(
            &p,
            &format!("SELECT COUNT() FROM Account WHERE Name LIKE '{like}'"),
            false,
            200,
        )
        .unwrap()
        .total_size
    }
}

#[tokio::test]
async fn classic_batches_wait_for_the_runner_abort_and_expire_with_their_job() {
    use super::classic::{state, JobSpec};
    use super::classic_data::Format;
    use super::{Bulk, Options};
    let (dir, org, p) = org().await;
    let bulk_dir = dir.path().join("bulk");
    let bulk = Bulk::install(org.clone(), bulk_dir.clone(), Options::default()).expect("install");
    let spec = JobSpec {
        operation: Some("insert".into()),
        object: Some("Account".into()),
        concurrency: Some("1".into()),
        content_type: Some("CSV".into()),
        ..Default::default()
    };
    let job = bulk
        .classic_create(&p, 59, &spec, Format::Xml)
        .await
        .expect("job");
    assert_eq!(job.concurrency, "Serial");
    let id = job.id.to_18();
    // No runner yet: batches stay queued.
    let first = bulk
        .classic_add_batch(&p, &id, b"Name\nClassic 1\nClassic 2\n".to_vec())
        .await
        .expect("batch");
    let second = bulk
        .classic_add_batch(&p, &id, b"Name\nClassic 3\n".to_vec())
        .await
        .expect("batch");
    assert_eq!(first.state, state::QUEUED);
    assert_eq!(bulk.classic_job(&p, &id).unwrap().batches.queued, 2);
    // Aborting the job leaves its queued batches unprocessed, for good.
    let aborted = bulk
        .classic_set_state(&p, &id, "Aborted")
        .await
        .expect("abort");
    assert_eq!(aborted.state, "Aborted");
    assert_eq!(aborted.batches.not_processed, 2);
    let (stop, runner) = spawn_runner(&bulk);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for b in [&first, &second] {
        let b = bulk.classic_batch(&p, &id, &b.id.to_18()).expect("batch");
        assert_eq!(b.state, state::NOT_PROCESSED);
    }
    assert!(bulk.classic_results(&p, &id, &first.id.to_18()).is_err());
    let _ = stop.send(());
    runner.await.unwrap();
    assert_eq!(org.count_accounts_named("Classic%"), 0);
    assert_eq!(
        std::fs::read_dir(&bulk_dir).unwrap().count(),
        2,
        "the batches' data"
    );

    // Past the retention period the job, its batches and their files go.
    let expiring = Bulk::install(
        org.clone(),
        bulk_dir.clone(),
        Options {
            retention_ms: -1,
            ..Options::default()
        },
    )
    .expect("install");
    let (stop, runner) = spawn_runner(&expiring);
    while expiring.classic_job(&p, &id).is_ok() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    runner.await.unwrap();
    assert_eq!(std::fs::read_dir(&bulk_dir).unwrap().count(), 0);
    let batch_seq = first.id.seq_in(org.store().marker()).unwrap();
    assert!(org
        .store()
        .read(|tx| tx.bulk_job(batch_seq))
        .unwrap()
        .is_none());
}

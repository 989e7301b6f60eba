//! Sync jobs end to end against the machine's PostgreSQL: an initial load and incremental runs
//! into the org with rows sharing a timestamp and rows committed late inside the overlap window
//! (none missed, none duplicated, compared row by row), refused rows in the error table until
//! the data is fixed, and `kill -9` in the middle of a run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{data_dir, Org};

const PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn pg() -> postgres::Client {
    postgres::Client::connect(PG_URL, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "these tests need PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`): {e}. \
             Start it (e.g. `service postgresql start`) and run again."
        )
    })
}

/// A fresh source table: id, name, revenue, updated_at.
fn source_table(db: &mut postgres::Client, name: &str) {
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {name};
         CREATE TABLE {name} (id text PRIMARY KEY, name text, revenue numeric(12,2),
                              updated_at timestamptz NOT NULL);"
    ))
    .unwrap();
}

fn insert(db: &mut postgres::Client, table: &str, rows: &[(String, Option<String>, f64, &str)]) {
    let mut tx = db.transaction().unwrap();
    for (id, name, revenue, ts) in rows {
        tx.execute(
            &format!(
                "INSERT INTO {table} (id, name, revenue, updated_at) VALUES ($1, $2, $3::float8::numeric, $4::text::timestamptz)"
            ),
            &[id, name, revenue, ts],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn write_customer_field(data: &std::path::Path) {
    let objects = data.join("metadata/objects");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(
        objects.join("Account.yaml"),
        "fields:\n  - fullName: Customer_Id__c\n    type: Text\n    length: 40\n    externalId: true\n    unique: true\n",
    )
    .unwrap();
}

fn job(table: &str, batch: usize) -> Value {
    json!({
        "source": {"type": "postgres", "url": PG_URL, "table": table,
                   "cursor": "updated_at", "key": "id", "overlap_seconds": 5},
        "target": {"type": "org", "object": "Account", "operation": "upsert",
                   "external_id": "Customer_Id__c"},
        "mapping": {"Customer_Id__c": ".id", "Name": ".name", "AnnualRevenue": ".revenue"},
        "batch_size": batch
    })
}

/// Starts a run and waits for it to end; the run.
fn run(org: &Org, name: &str) -> Value {
    let (s, b) = org.call(
        Method::POST,
        &org.data(&format!("/conflux/sync-jobs/{name}/run")),
        None,
    );
    assert_eq!(s, 202, "{b}");
    let id = b["runId"].as_u64().unwrap();
    let t = Instant::now();
    loop {
        let (s, b) = org.call(
            Method::GET,
            &org.data(&format!("/conflux/sync-jobs/{name}/runs?limit=5")),
            None,
        );
        assert_eq!(s, 200, "{b}");
        let r = b["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["runId"] == id)
            .cloned()
            .unwrap();
        if r["status"] != "running" {
            return r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "run {id} did not end: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The org's Accounts of a sync, by customer id: (name, revenue).
fn org_side(org: &Org, prefix: &str) -> BTreeMap<String, (Value, Value)> {
    let mut out = BTreeMap::new();
    let mut page = org.query(&format!(
        "SELECT Customer_Id__c, Name, AnnualRevenue FROM Account WHERE Customer_Id__c LIKE '{prefix}%'"
    ));
    loop {
        for r in page["records"].as_array().unwrap() {
            let id = r["Customer_Id__c"].as_str().unwrap().to_string();
            let prev = out.insert(id.clone(), (r["Name"].clone(), r["AnnualRevenue"].clone()));
            assert!(prev.is_none(), "{id} is in the org twice");
        }
        match page["nextRecordsUrl"].as_str() {
            Some(next) => {
                let (s, b) = org.call(Method::GET, &org.url(next), None);
                assert_eq!(s, 200);
                page = b;
            }
            None => break,
        }
    }
    out
}

fn source_side(db: &mut postgres::Client, table: &str) -> BTreeMap<String, (Value, Value)> {
    db.query(
        &format!("SELECT id, name, revenue::float8 FROM {table} WHERE name IS NOT NULL"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let rev: f64 = r.get(2);
        (
            r.get::<_, String>(0),
            (json!(r.get::<_, String>(1)), json!(rev)),
        )
    })
    .collect()
}

#[test]
fn postgres_to_org_incremental_sync_misses_nothing_and_duplicates_nothing() {
    let mut db = pg();
    let table = format!("sync_src_{}", std::process::id());
    source_table(&mut db, &table);
    let data = data_dir("sync-pg");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);

    // 250 rows; 60 of them share one timestamp, across batch boundaries (batches of 40).
    let mut rows = Vec::new();
    for i in 0..250 {
        let ts = if (100..160).contains(&i) {
            "2026-11-01T10:00:00Z".to_string()
        } else {
            format!("2026-11-01T{:02}:{:02}:00Z", 8 + i / 60, i % 60)
        };
        rows.push((
            format!("C{i:04}"),
            Some(format!("Customer {i}")),
            i as f64 * 10.5,
            ts,
        ));
    }
    let refs: Vec<(String, Option<String>, f64, &str)> = rows
        .iter()
        .map(|(a, b, c, d)| (a.clone(), b.clone(), *c, d.as_str()))
        .collect();
    insert(&mut db, &table, &refs);

    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Customers"),
        Some(job(&table, 40)),
    );
    assert_eq!(s, 201, "{b}");
    // Bad definitions are refused with the reason.
    for (body, says) in [
        (
            json!({"source": {"type": "postgres", "url": PG_URL, "table": table, "cursor": "updated_at", "key": "id"},
                "target": {"type": "org", "object": "Nope", "operation": "insert"}, "mapping": {}}),
            "no object Nope",
        ),
        (
            json!({"source": {"type": "postgres", "url": PG_URL, "table": table, "cursor": "updated_at", "key": "id"},
                "target": {"type": "org", "object": "Account", "operation": "upsert", "external_id": "Name"},
                "mapping": {"Name": ".name"}}),
            "not an external id",
        ),
        (
            json!({"source": {"type": "ftp"}, "target": {}, "mapping": {}}),
            "unknown variant",
        ),
        (
            json!({"name": "Other", "source": {"type": "postgres", "url": PG_URL, "table": table, "cursor": "updated_at", "key": "id"},
                "target": {"type": "org", "object": "Account", "operation": "insert"}, "mapping": {}}),
            "names the sync job \"Other\", the URL Bad",
        ),
        (
            json!(["not", "an", "object"]),
            "a sync job is a JSON object",
        ),
    ] {
        let (s, b) = org.call(Method::PUT, &org.data("/conflux/sync-jobs/Bad"), Some(body));
        assert_eq!(s, 400, "{b}");
        assert!(
            b[0]["message"].as_str().unwrap().contains(says),
            "{says}: {b}"
        );
    }

    let r = run(&org, "Customers");
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        (r["read"].as_u64(), r["written"].as_u64()),
        (Some(250), Some(250)),
        "{r}"
    );
    assert_eq!(org_side(&org, "C"), source_side(&mut db, &table));

    // More rows: some share the last synced timestamp, some were committed late with a
    // timestamp inside the overlap window, and updates.
    let (_, j) = org.call(Method::GET, &org.data("/conflux/sync-jobs/Customers"), None);
    let last_ts: String = db
        .query_one(&format!("SELECT max(updated_at)::text FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert!(j["cursor"]["key"].as_str().is_some(), "{j}");
    let late: String = db
        .query_one(
            &format!("SELECT (max(updated_at) - interval '2 seconds')::text FROM {table}"),
            &[],
        )
        .unwrap()
        .get(0);
    let mut more = Vec::new();
    for i in 0..30 {
        // Keys before the cursor's key at the cursor's own timestamp: committed late.
        more.push((
            format!("A{i:04}"),
            Some(format!("Same ts {i}")),
            1.0,
            last_ts.clone(),
        ));
    }
    for i in 0..20 {
        more.push((
            format!("E{i:04}"),
            Some(format!("Late {i}")),
            2.0,
            late.clone(),
        ));
    }
    let refs: Vec<(String, Option<String>, f64, &str)> = more
        .iter()
        .map(|(a, b, c, d)| (a.clone(), b.clone(), *c, d.as_str()))
        .collect();
    insert(&mut db, &table, &refs);
    db.execute(
        &format!(
            "UPDATE {table} SET name = name || ' (renamed)', updated_at = now() WHERE id < 'C0010'"
        ),
        &[],
    )
    .unwrap();
    let r = run(&org, "Customers");
    assert_eq!(r["status"], "succeeded", "{r}");
    let mut want = source_side(&mut db, &table);
    let got: BTreeMap<String, (Value, Value)> = ["A", "C", "E"]
        .iter()
        .flat_map(|p| org_side(&org, p))
        .collect();
    assert_eq!(got.len(), 300);
    assert_eq!(got, want, "both sides agree row by row");

    // Rows the org refuses (Name is required) land in the error table with the reason; fixing
    // the data and running again clears them.
    insert(
        &mut db,
        &table,
        &[
            ("F0001".into(), None, 3.0, "2030-01-01T00:00:00Z"),
            ("F0002".into(), None, 3.0, "2030-01-01T00:00:00Z"),
            (
                "F0003".into(),
                Some("Fine".into()),
                3.0,
                "2030-01-01T00:00:00Z",
            ),
        ],
    );
    let r = run(&org, "Customers");
    assert_eq!(
        (r["failed"].as_u64(), r["status"].as_str()),
        (Some(2), Some("succeeded")),
        "{r}"
    );
    let (s, b) = org.call(
        Method::GET,
        &org.data("/conflux/sync-jobs/Customers/errors"),
        None,
    );
    assert_eq!(s, 200);
    let errors = b["errors"].as_array().unwrap();
    let keys: Vec<&str> = errors.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 2, "{b}");
    assert!(keys.contains(&"F0001") && keys.contains(&"F0002"), "{b}");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("REQUIRED_FIELD_MISSING"),
        "{b}"
    );
    assert_eq!(
        errors[0]["payload"]["Customer_Id__c"]
            .as_str()
            .unwrap()
            .len(),
        5
    );
    db.execute(
        &format!("UPDATE {table} SET name = 'Fixed ' || id, updated_at = '2030-01-02T00:00:00Z' WHERE name IS NULL"),
        &[],
    )
    .unwrap();
    let r = run(&org, "Customers");
    assert_eq!(r["failed"].as_u64(), Some(0), "{r}");
    let (_, b) = org.call(
        Method::GET,
        &org.data("/conflux/sync-jobs/Customers/errors"),
        None,
    );
    assert_eq!(b["errors"].as_array().unwrap().len(), 0, "{b}");
    want = source_side(&mut db, &table);
    let got: BTreeMap<String, (Value, Value)> = ["A", "C", "E", "F"]
        .iter()
        .flat_map(|p| org_side(&org, p))
        .collect();
    assert_eq!(got, want);

    // Reset: the next run reads everything again and still duplicates nothing.
    let (s, _) = org.call(
        Method::POST,
        &org.data("/conflux/sync-jobs/Customers/reset"),
        None,
    );
    assert_eq!(s, 204);
    let r = run(&org, "Customers");
    assert_eq!(r["read"].as_u64(), Some(303), "{r}");
    let got: BTreeMap<String, (Value, Value)> = ["A", "C", "E", "F"]
        .iter()
        .flat_map(|p| org_side(&org, p))
        .collect();
    assert_eq!(got, want);
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn a_run_killed_midway_resumes_from_the_committed_cursor_without_duplicates() {
    let mut db = pg();
    let table = format!("sync_kill_{}", std::process::id());
    source_table(&mut db, &table);
    db.batch_execute(&format!(
        "INSERT INTO {table} SELECT 'K' || lpad(g::text, 6, '0'), 'Bulk ' || g, g,
                timestamptz '2026-11-01' + (g / 7) * interval '1 second'
         FROM generate_series(1, 8000) g"
    ))
    .unwrap();
    let data = data_dir("sync-kill");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Bulk"),
        Some(job(&table, 100)),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.call(Method::POST, &org.data("/conflux/sync-jobs/Bulk/run"), None);
    assert_eq!(s, 202, "{b}");
    // Kill it once some batches committed.
    let t = Instant::now();
    loop {
        let (_, j) = org.call(Method::GET, &org.data("/conflux/sync-jobs/Bulk"), None);
        if j["running"]["written"].as_u64().unwrap_or(0) >= 300 || j["running"].is_null() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(10));
    }
    let Org { srv, .. } = org;
    srv.kill9();

    let org = Org::start_in(&data, &[], &[]);
    let (_, j) = org.call(Method::GET, &org.data("/conflux/sync-jobs/Bulk"), None);
    let (value, key) = (
        j["cursor"]["value"].as_str().unwrap().to_string(),
        j["cursor"]["key"].as_str().unwrap().to_string(),
    );
    // The cursor is exactly where the committed data ends.
    let covered: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE (updated_at, id) <= ($1::text::timestamptz, $2)"),
            &[&value, &key],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        org_side(&org, "K").len() as i64,
        covered,
        "cursor {value} {key}"
    );
    eprintln!("killed after {covered} of 8000 rows were committed");
    let (_, runs) = org.call(Method::GET, &org.data("/conflux/sync-jobs/Bulk/runs"), None);
    if covered < 8000 {
        assert_eq!(runs["runs"][0]["status"], "interrupted", "{runs}");
    }
    let r = run(&org, "Bulk");
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(org_side(&org, "K"), source_side(&mut db, &table));
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

fn cli(args: &[&str], org: &Org) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_conflux"));
    cmd.args(args)
        .args(["--url", &org.srv.http, "--session-id", &org.token]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CONFLUX_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_cli_puts_runs_and_reports_a_sync_job() {
    let mut db = pg();
    let table = format!("sync_cli_{}", std::process::id());
    source_table(&mut db, &table);
    insert(
        &mut db,
        &table,
        &[
            ("L1".into(), Some("One".into()), 1.0, "2026-11-01T00:00:00Z"),
            ("L2".into(), None, 2.0, "2026-11-01T00:00:01Z"),
            (
                "L3".into(),
                Some("Three".into()),
                3.0,
                "2026-11-01T00:00:02Z",
            ),
        ],
    );
    let data = data_dir("sync-cli");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);
    let file = data.join("Leads_In.yaml");
    std::fs::write(&file, serde_yaml::to_string(&job(&table, 10)).unwrap()).unwrap();
    let (ok, out) = cli(&["sync", "put", file.to_str().unwrap()], &org);
    assert!(ok, "{out}");
    assert!(out.contains("sync job Leads_In saved"), "{out}");
    let (ok, out) = cli(&["sync", "run", "Leads_In"], &org);
    assert!(ok, "{out}");
    assert!(
        out.contains("succeeded: read 3, written 2, refused 1"),
        "{out}"
    );
    assert!(out.contains("conflux sync errors Leads_In"), "{out}");
    let (ok, out) = cli(&["sync", "errors", "Leads_In"], &org);
    assert!(
        ok && out.contains("\"L2\"") && out.contains("REQUIRED_FIELD_MISSING"),
        "{out}"
    );
    let (ok, out) = cli(&["sync", "list"], &org);
    assert!(
        ok && out.contains("Leads_In") && out.contains("postgres"),
        "{out}"
    );
    let (ok, out) = cli(&["sync", "status", "Leads_In"], &org);
    assert!(ok && out.contains("\"L3\""), "the cursor is at L3: {out}");
    let (ok, out) = cli(&["sync", "reset", "Leads_In"], &org);
    assert!(ok && out.contains("reset"), "{out}");
    let (ok, out) = cli(&["sync", "run", "Nope"], &org);
    assert!(!ok && out.contains("Nope"), "{out}");
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Runs SQL statements on the machine's MariaDB; rows of the last as (id, name, revenue).
fn maria(stmts: &[String]) -> Vec<(String, Option<String>, f64)> {
    use mysql_async::prelude::Queryable;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = mysql_async::Conn::from_url(MY_URL)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need MariaDB on 127.0.0.1:3306 (root, empty password, database \
                 `test`): {e}. Start it (e.g. `service mariadb start`) and run again."
                )
            });
        let mut out = Vec::new();
        for (i, s) in stmts.iter().enumerate() {
            if i + 1 == stmts.len() && s.starts_with("SELECT") {
                out = conn
                    .query::<(String, Option<String>, f64), _>(s.as_str())
                    .await
                    .unwrap();
            } else {
                conn.query_drop(s.as_str()).await.unwrap();
            }
        }
        conn.disconnect().await.unwrap();
        out
    })
}

#[test]
fn mariadb_to_org_sync_keeps_ties_and_late_rows() {
    let table = format!("sync_my_{}", std::process::id());
    let mut setup = vec![
        format!("DROP TABLE IF EXISTS {table}"),
        format!(
            "CREATE TABLE {table} (id VARCHAR(20) PRIMARY KEY, name VARCHAR(80), \
             revenue DECIMAL(12,2) NOT NULL, updated_at DATETIME(6) NOT NULL)"
        ),
    ];
    for i in 0..120 {
        // Rows 40..80 share one timestamp, across batches of 25.
        let ts = if (40..80).contains(&i) {
            "2026-11-01 10:00:00".to_string()
        } else {
            format!("2026-11-01 {:02}:{:02}:00", 8 + i / 60, i % 60)
        };
        setup.push(format!(
            "INSERT INTO {table} VALUES ('M{i:04}', 'Maria {i}', {}.25, '{ts}')",
            i * 3
        ));
    }
    maria(&setup);
    let data = data_dir("sync-maria");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Maria"),
        Some(json!({
            "source": {"type": "mysql", "url": MY_URL, "table": table,
                       "cursor": "updated_at", "key": "id", "overlap_seconds": 5},
            "target": {"type": "org", "object": "Account", "operation": "upsert",
                       "external_id": "Customer_Id__c"},
            "mapping": {"Customer_Id__c": ".id", "Name": ".name", "AnnualRevenue": ".revenue"},
            "batch_size": 25
        })),
    );
    assert_eq!(s, 201, "{b}");
    let r = run(&org, "Maria");
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(120)),
        "{r}"
    );

    // Late rows at the cursor's own timestamp with smaller keys, and one just before it.
    let rows = maria(&[
        format!("INSERT INTO {table} SELECT CONCAT('A', id), CONCAT('Tie ', name), 1, updated_at FROM {table} WHERE id IN ('M0078', 'M0079')"),
        format!("INSERT INTO {table} SELECT 'B0001', 'Late', 2, updated_at - INTERVAL 2 SECOND FROM {table} WHERE id = 'M0079'"),
        format!("UPDATE {table} SET name = 'Renamed', updated_at = '2026-11-02 00:00:00' WHERE id = 'M0003'"),
        format!("SELECT id, name, CAST(revenue AS DOUBLE) FROM {table}"),
    ]);
    let r = run(&org, "Maria");
    assert_eq!(r["status"], "succeeded", "{r}");
    let want: BTreeMap<String, (Value, Value)> = rows
        .into_iter()
        .map(|(id, name, rev)| (id, (json!(name), json!(rev))))
        .collect();
    let got: BTreeMap<String, (Value, Value)> = ["A", "B", "M"]
        .iter()
        .flat_map(|p| org_side(&org, p))
        .collect();
    assert_eq!(got.len(), 123);
    assert_eq!(got, want, "both sides agree row by row");
    maria(&[format!("DROP TABLE {table}")]);
}

/// Every Account of the org: Id → (Name, AnnualRevenue).
fn accounts(org: &Org) -> BTreeMap<String, (Value, Value)> {
    let mut out = BTreeMap::new();
    let mut page = org.query("SELECT Id, Name, AnnualRevenue FROM Account");
    loop {
        for r in page["records"].as_array().unwrap() {
            out.insert(
                r["Id"].as_str().unwrap().to_string(),
                (r["Name"].clone(), r["AnnualRevenue"].clone()),
            );
        }
        match page["nextRecordsUrl"].as_str() {
            Some(next) => page = org.call(Method::GET, &org.url(next), None).1,
            None => break,
        }
    }
    out
}

#[test]
fn the_org_syncs_out_to_postgres_and_mariadb() {
    let pid = std::process::id();
    let (pg_table, my_table) = (format!("out_pg_{pid}"), format!("out_my_{pid}"));
    let mut db = pg();
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {pg_table};
         CREATE TABLE {pg_table} (id text PRIMARY KEY, name text NOT NULL CHECK (name <> 'Forbidden'),
                                  revenue numeric(14,2), modstamp timestamptz);"
    ))
    .unwrap();
    maria(&[
        format!("DROP TABLE IF EXISTS {my_table}"),
        format!("CREATE TABLE {my_table} (id VARCHAR(18) PRIMARY KEY, name VARCHAR(80) NOT NULL, revenue DECIMAL(14,2))"),
    ]);
    let org = Org::start("sync-out");
    let create = |names: Vec<String>| {
        let records: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"attributes": {"type": "Account"}, "Name": n, "AnnualRevenue": i * 100}))
            .collect();
        org.collection(Method::POST, records);
    };
    create((0..150).map(|i| format!("Out {i}")).collect());
    for (name, target) in [
        (
            "Out_Pg",
            json!({"type": "postgres", "url": PG_URL, "table": pg_table, "key": "id"}),
        ),
        (
            "Out_My",
            json!({"type": "mysql", "url": MY_URL, "table": my_table, "key": "id"}),
        ),
    ] {
        let mut mapping = json!({"id": ".Id", "name": ".Name", "revenue": ".AnnualRevenue"});
        if name == "Out_Pg" {
            mapping["modstamp"] = json!(".SystemModstamp");
        }
        let (s, b) = org.call(
            Method::PUT,
            &org.data(&format!("/conflux/sync-jobs/{name}")),
            Some(
                json!({"source": {"type": "org", "object": "Account"}, "target": target,
                        "mapping": mapping, "batch_size": 40}),
            ),
        );
        assert_eq!(s, 201, "{b}");
    }
    let read_pg = |db: &mut postgres::Client| -> BTreeMap<String, (Value, Value)> {
        db.query(
            &format!("SELECT id, name, revenue::float8 FROM {pg_table}"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let rev: Option<f64> = r.get(2);
            (
                r.get::<_, String>(0),
                (json!(r.get::<_, String>(1)), json!(rev)),
            )
        })
        .collect()
    };
    let read_my = || -> BTreeMap<String, (Value, Value)> {
        maria(&[format!(
            "SELECT id, name, CAST(revenue AS DOUBLE) FROM {my_table}"
        )])
        .into_iter()
        .map(|(id, name, rev)| (id, (json!(name), json!(rev))))
        .collect()
    };
    for name in ["Out_Pg", "Out_My"] {
        let r = run(&org, name);
        assert_eq!(
            (r["status"].as_str(), r["written"].as_u64()),
            (Some("succeeded"), Some(150)),
            "{r}"
        );
    }
    let want = accounts(&org);
    assert_eq!(read_pg(&mut db), want);
    assert_eq!(read_my(), want);

    // Changes and new records; PostgreSQL refuses one row (a CHECK constraint).
    let ids: Vec<String> = want.keys().take(10).cloned().collect();
    for id in &ids {
        let (s, _) = org.call(
            Method::PATCH,
            &org.data(&format!("/sobjects/Account/{id}")),
            Some(json!({"Name": "Renamed"})),
        );
        assert_eq!(s, 204);
    }
    let mut more: Vec<String> = (0..19).map(|i| format!("Later {i}")).collect();
    more.push("Forbidden".into());
    create(more);
    for name in ["Out_Pg", "Out_My"] {
        let r = run(&org, name);
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let want = accounts(&org);
    assert_eq!(want.len(), 170);
    assert_eq!(
        read_my(),
        want,
        "MariaDB has every record, renames included"
    );
    let forbidden: Vec<String> = want
        .iter()
        .filter(|(_, (n, _))| n == "Forbidden")
        .map(|(k, _)| k.clone())
        .collect();
    let mut want_pg = want.clone();
    want_pg.remove(&forbidden[0]);
    assert_eq!(
        read_pg(&mut db),
        want_pg,
        "PostgreSQL has all but the refused row"
    );
    let (_, b) = org.call(
        Method::GET,
        &org.data("/conflux/sync-jobs/Out_Pg/errors"),
        None,
    );
    let errors = b["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{b}");
    assert_eq!(errors[0]["key"], forbidden[0].as_str());
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("check constraint"),
        "{b}"
    );
    db.batch_execute(&format!("DROP TABLE {pg_table}")).unwrap();
    maria(&[format!("DROP TABLE {my_table}")]);
}

#[test]
fn scheduled_jobs_run_by_themselves_and_lookups_resolve_parents() {
    let mut db = pg();
    let (customers, contacts) = (
        format!("sched_cust_{}", std::process::id()),
        format!("sched_cont_{}", std::process::id()),
    );
    source_table(&mut db, &customers);
    insert(
        &mut db,
        &customers,
        &[
            (
                "S1".into(),
                Some("Parent One".into()),
                1.0,
                "2026-11-01T00:00:00Z",
            ),
            (
                "S2".into(),
                Some("Parent Two".into()),
                2.0,
                "2026-11-01T00:00:01Z",
            ),
        ],
    );
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {contacts};
         CREATE TABLE {contacts} (id text PRIMARY KEY, last_name text, customer text,
                                  updated_at timestamptz NOT NULL);
         INSERT INTO {contacts} VALUES ('P1', 'Ada', 'S1', '2026-11-01'), ('P2', 'Grace', 'S2', '2026-11-01'),
                                       ('P3', 'Orphan', 'S9', '2026-11-02');"
    ))
    .unwrap();
    let data = data_dir("sync-sched");
    write_customer_field(&data);
    std::fs::write(
        data.join("metadata/objects/Contact.yaml"),
        "fields:\n  - fullName: Person_Id__c\n    type: Text\n    length: 40\n    externalId: true\n    unique: true\n",
    )
    .unwrap();
    let org = Org::start_in(&data, &[], &[]);
    // A schedule needs a user to run as; a bad expression is refused.
    let mut scheduled = job(&customers, 10);
    scheduled["schedule"] = json!("*/1 * * * * *");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Every_Second"),
        Some(scheduled.clone()),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b[0]["message"].as_str().unwrap().contains("run_as"), "{b}");
    scheduled["schedule"] = json!("every tuesday");
    scheduled["run_as"] = json!(crate::harness::USERNAME);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Every_Second"),
        Some(scheduled.clone()),
    );
    assert_eq!(s, 400, "{b}");
    scheduled["schedule"] = json!("*/1 * * * * *");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Every_Second"),
        Some(scheduled),
    );
    assert_eq!(s, 201, "{b}");
    let t = Instant::now();
    loop {
        let (_, b) = org.call(
            Method::GET,
            &org.data("/conflux/sync-jobs/Every_Second/runs"),
            None,
        );
        let done = b["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count();
        if done >= 2 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no scheduled runs: {b}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(org_side(&org, "S").len(), 2);
    let (s, _) = org.call(
        Method::DELETE,
        &org.data("/conflux/sync-jobs/Every_Second"),
        None,
    );
    // Deleting a job while a scheduled run is going is refused; try until it is between runs.
    if s != 204 {
        let t = Instant::now();
        loop {
            let (s, _) = org.call(
                Method::DELETE,
                &org.data("/conflux/sync-jobs/Every_Second"),
                None,
            );
            if s == 204 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // Contacts find their Account through its external id.
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/People"),
        Some(json!({
            "source": {"type": "postgres", "url": PG_URL, "table": contacts,
                       "cursor": "updated_at", "key": "id"},
            "target": {"type": "org", "object": "Contact", "operation": "upsert",
                       "external_id": "Person_Id__c"},
            "mapping": {"Person_Id__c": ".id", "LastName": ".last_name",
                        "Account": "{Customer_Id__c: .customer}"}
        })),
    );
    assert_eq!(s, 201, "{b}");
    let r = run(&org, "People");
    assert_eq!(
        (r["written"].as_u64(), r["failed"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    let q = org.query(
        "SELECT Person_Id__c, Account.Customer_Id__c FROM Contact WHERE Person_Id__c != null ORDER BY Person_Id__c",
    );
    let pairs: Vec<(String, String)> = q["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Person_Id__c"].as_str().unwrap().to_string(),
                r["Account"]["Customer_Id__c"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("P1".to_string(), "S1".to_string()),
            ("P2".into(), "S2".into())
        ]
    );
    let (_, b) = org.call(
        Method::GET,
        &org.data("/conflux/sync-jobs/People/errors"),
        None,
    );
    assert_eq!(b["errors"][0]["key"], "P3", "{b}");
    db.batch_execute(&format!("DROP TABLE {customers}; DROP TABLE {contacts};"))
        .unwrap();
}

#[test]
fn a_job_syncs_with_a_second_conflux_through_the_remote_org_connector() {
    let data_a = data_dir("sync-cross-a");
    let objects = data_a.join("metadata/objects");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(
        objects.join("Account.yaml"),
        "fields:\n  - fullName: Remote_Id__c\n    type: Text\n    length: 18\n    externalId: true\n    unique: true\n",
    )
    .unwrap();
    let data_b = data_dir("sync-cross-b");
    write_customer_field(&data_b);
    let a = Org::start_in(&data_a, &[], &[]);
    let b = Org::start_in(&data_b, &[], &[]);
    let (s, body) = a.call(
        Method::PUT,
        &a.data("/conflux/named-credentials/OrgB"),
        Some(
            json!({"url": b.srv.http, "auth": {"type": "oauth_client_credentials",
            "tokenUrl": format!("{}/services/oauth2/token", b.srv.http),
            "clientId": crate::harness::CLIENT_ID, "clientSecret": crate::harness::CLIENT_SECRET}}),
        ),
    );
    assert_eq!(s, 201, "{body}");
    let mut a_ids = Vec::new();
    for i in 0..230 {
        a_ids.push(a.create("Account", json!({"Name": format!("From A {i}")})));
    }
    // Push: A's Accounts into B, upserted on B's Customer_Id__c (230 records: two collection calls).
    let (s, body) = a.call(
        Method::PUT,
        &a.data("/conflux/sync-jobs/Push"),
        Some(json!({
            "source": {"type": "org", "object": "Account"},
            "target": {"type": "salesforce", "credential": "OrgB", "object": "Account",
                       "operation": "upsert", "external_id": "Customer_Id__c"},
            "mapping": {"Customer_Id__c": ".Id", "Name": ".Name"},
            "batch_size": 500,
            "parallelism": 2
        })),
    );
    assert_eq!(s, 201, "{body}");
    let r = run(&a, "Push");
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(230)),
        "{r}"
    );
    let pushed = org_side(&b, "001");
    assert_eq!(pushed.len(), 230);
    for id in &a_ids {
        assert!(pushed.contains_key(id), "{id} reached B");
    }
    // Running again writes the same records again, and B still has each once.
    let (s, _) = a.call(Method::POST, &a.data("/conflux/sync-jobs/Push/reset"), None);
    assert_eq!(s, 204);
    let r = run(&a, "Push");
    assert_eq!(r["written"].as_u64(), Some(230), "{r}");
    assert_eq!(org_side(&b, "001").len(), 230);

    // Pull: B's Accounts (the pushed ones and B's own) into A, keyed by B's ids.
    for i in 0..5 {
        b.create("Account", json!({"Name": format!("Only in B {i}")}));
    }
    let (s, body) = a.call(
        Method::PUT,
        &a.data("/conflux/sync-jobs/Pull"),
        Some(json!({
            "source": {"type": "salesforce", "credential": "OrgB", "object": "Account",
                       "fields": ["Name"]},
            "target": {"type": "org", "object": "Account", "operation": "upsert",
                       "external_id": "Remote_Id__c"},
            "mapping": {"Remote_Id__c": ".Id", "Name": "\"B: \" + .Name"},
            "batch_size": 100
        })),
    );
    assert_eq!(s, 201, "{body}");
    let r = run(&a, "Pull");
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(235)),
        "{r}"
    );
    let q = a.query("SELECT COUNT() FROM Account WHERE Remote_Id__c != null");
    assert_eq!(q["totalSize"], 235);
    let q = a.query("SELECT COUNT() FROM Account WHERE Name LIKE 'B: Only in B%'");
    assert_eq!(q["totalSize"], 5);
}

#[test]
fn csv_and_json_lines_files_in_and_out() {
    let data = data_dir("sync-files");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);
    let dir = data.join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl = dir.join("customers.jsonl");
    let csv_in = dir.join("customers.csv");
    let out = dir.join("out.csv");
    std::fs::write(
        &jsonl,
        (0..30)
            .map(|i| format!("{{\"id\": \"J{i:03}\", \"name\": \"Json {i}\", \"revenue\": {i}}}\n"))
            .collect::<String>(),
    )
    .unwrap();
    std::fs::write(
        &csv_in,
        "id,name,revenue\nV001,\"Csv, One\",10\nV002,Csv Two,\n",
    )
    .unwrap();
    for (name, path) in [("From_Jsonl", &jsonl), ("From_Csv", &csv_in)] {
        let (s, b) = org.call(
            Method::PUT,
            &org.data(&format!("/conflux/sync-jobs/{name}")),
            Some(json!({
                "source": {"type": "file", "path": path},
                "target": {"type": "org", "object": "Account", "operation": "upsert",
                           "external_id": "Customer_Id__c"},
                "mapping": {"Customer_Id__c": ".id", "Name": ".name", "AnnualRevenue": ".revenue"},
                "batch_size": 8
            })),
        );
        assert_eq!(s, 201, "{b}");
        let r = run(&org, name);
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert_eq!(org_side(&org, "J").len(), 30);
    let v = org_side(&org, "V");
    assert_eq!(v["V001"], (json!("Csv, One"), json!(10.0)));
    assert_eq!(v["V002"], (json!("Csv Two"), Value::Null));

    // Appended lines are read by the next run, and only they.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&jsonl)
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        b"{\"id\": \"J100\", \"name\": \"Appended\", \"revenue\": 1}\n",
    )
    .unwrap();
    let r = run(&org, "From_Jsonl");
    assert_eq!(r["read"].as_u64(), Some(1), "{r}");
    assert_eq!(org_side(&org, "J").len(), 31);

    // Out of the org into a CSV file.
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/To_Csv"),
        Some(json!({
            "source": {"type": "org", "object": "Account"},
            "target": {"type": "file", "path": out},
            "mapping": {"id": ".Customer_Id__c", "name": ".Name"}
        })),
    );
    assert_eq!(s, 201, "{b}");
    let r = run(&org, "To_Csv");
    assert_eq!(r["written"].as_u64(), Some(33), "{r}");
    // Files outside the server's files folder are refused.
    for path in ["/etc/passwd", "../secret.key"] {
        let (s, b) = org.call(
            Method::PUT,
            &org.data("/conflux/sync-jobs/Escape"),
            Some(json!({"source": {"type": "file", "path": path},
                        "target": {"type": "org", "object": "Account", "operation": "insert"},
                        "mapping": {"Name": ".name"}})),
        );
        assert!(s == 201 || s == 200, "{b}");
        let r = run(&org, "Escape");
        assert_eq!(r["status"], "failed", "{r}");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("outside the files folder"),
            "{r}"
        );
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,name"));
    assert_eq!(lines.count(), 33);
    assert!(text.contains("V001,\"Csv, One\""), "{text}");
}

#[test]
fn a_migration_ends_with_a_validation_report_of_counts_and_keys() {
    let mut db = pg();
    let table = format!("sync_mig_{}", std::process::id());
    source_table(&mut db, &table);
    let rows: Vec<(String, Option<String>, f64, String)> = (0..40)
        .map(|i| {
            (
                format!("G{i:03}"),
                if i == 7 {
                    None
                } else {
                    Some(format!("Migrated {i}"))
                },
                i as f64,
                format!("2026-10-01T00:{:02}:00Z", i),
            )
        })
        .collect();
    let refs: Vec<(String, Option<String>, f64, &str)> = rows
        .iter()
        .map(|(a, b, c, d)| (a.clone(), b.clone(), *c, d.as_str()))
        .collect();
    insert(&mut db, &table, &refs);
    let data = data_dir("sync-migration");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);
    // A record only the org has.
    org.create(
        "Account",
        json!({"Name": "Org only", "Customer_Id__c": "G999"}),
    );
    let mut def = job(&table, 15);
    def["kind"] = json!("migration");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Migrate"),
        Some(def.clone()),
    );
    assert_eq!(s, 201, "{b}");
    def["kind"] = json!("teleport");
    let (s, _) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Bad_Kind"),
        Some(def),
    );
    assert_eq!(s, 400);
    let r = run(&org, "Migrate");
    assert_eq!(r["status"], "succeeded", "{r}");
    let report = &r["report"];
    assert_eq!(report["sourceRows"], 40, "{r}");
    assert_eq!(report["matched"], 39, "{r}");
    assert_eq!(report["missingInTarget"]["count"], 1, "{r}");
    assert_eq!(report["missingInTarget"]["sample"][0], "G007", "{r}");
    assert_eq!(report["onlyInTarget"]["sample"][0], "G999", "{r}");
    assert_eq!(report["valid"], false, "{r}");
    // Fixed and run again: the report says every key arrived.
    db.execute(
        &format!("UPDATE {table} SET name = 'Fixed', updated_at = '2026-10-02' WHERE id = 'G007'"),
        &[],
    )
    .unwrap();
    let r = run(&org, "Migrate");
    assert_eq!(r["report"]["valid"], true, "{r}");
    assert_eq!(r["report"]["matched"], 40, "{r}");
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn broadcast_and_aggregation_jobs_keep_a_cursor_per_stream() {
    let pid = std::process::id();
    let (pg_out, my_out) = (format!("bc_pg_{pid}"), format!("bc_my_{pid}"));
    let (pg_in, my_in) = (format!("ag_pg_{pid}"), format!("ag_my_{pid}"));
    let mut db = pg();
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {pg_out};
         CREATE TABLE {pg_out} (id text PRIMARY KEY, name text);"
    ))
    .unwrap();
    source_table(&mut db, &pg_in);
    insert(
        &mut db,
        &pg_in,
        &[
            (
                "X1".into(),
                Some("From PostgreSQL".into()),
                1.0,
                "2026-11-01T00:00:00Z",
            ),
            (
                "X2".into(),
                Some("Also PostgreSQL".into()),
                2.0,
                "2026-11-01T00:00:01Z",
            ),
        ],
    );
    maria(&[
        format!("DROP TABLE IF EXISTS {my_out}"),
        format!("CREATE TABLE {my_out} (id VARCHAR(18) PRIMARY KEY, name VARCHAR(80))"),
        format!("DROP TABLE IF EXISTS {my_in}"),
        format!("CREATE TABLE {my_in} (code VARCHAR(10) PRIMARY KEY, label VARCHAR(80), changed DATETIME(6))"),
        format!("INSERT INTO {my_in} VALUES ('Y1', 'From MariaDB', '2026-11-01 00:00:00'), ('X2', 'MariaDB wins X2', '2026-11-02 00:00:00')"),
    ]);
    let data = data_dir("sync-streams");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);
    for i in 0..12 {
        org.create("Account", json!({"Name": format!("Everywhere {i}")}));
    }
    // Broadcast: one source, two targets, each with its own mapping and cursor.
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Everywhere"),
        Some(json!({
            "kind": "broadcast",
            "source": {"type": "org", "object": "Account", "overlap_seconds": 0},
            "target": {"type": "postgres", "url": PG_URL, "table": pg_out, "key": "id"},
            "mapping": {"id": ".Id", "name": ".Name"},
            "streams": [{"name": "maria",
                         "target": {"type": "mysql", "url": MY_URL, "table": my_out, "key": "id"},
                         "mapping": {"id": ".Id", "name": "\"M \" + .Name"}}],
            "batch_size": 5
        })),
    );
    assert_eq!(s, 201, "{b}");
    let r = run(&org, "Everywhere");
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(24)),
        "{r}"
    );
    let pg_rows: i64 = db
        .query_one(&format!("SELECT count(*) FROM {pg_out}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(pg_rows, 12);
    let my_rows = maria(&[format!("SELECT id, name, 0.0 FROM {my_out}")]);
    assert_eq!(my_rows.len(), 12);
    assert!(my_rows
        .iter()
        .all(|(_, n, _)| n.as_deref().unwrap().starts_with("M Everywhere")));
    // One more record: each stream moves on from its own cursor.
    org.create("Account", json!({"Name": "Everywhere late"}));
    let r = run(&org, "Everywhere");
    assert_eq!(r["written"].as_u64(), Some(2), "{r}");

    // Aggregation: two sources merged into the org by key; the later source's value wins.
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Merged"),
        Some(json!({
            "kind": "aggregation",
            "source": {"type": "postgres", "url": PG_URL, "table": pg_in, "cursor": "updated_at", "key": "id"},
            "target": {"type": "org", "object": "Account", "operation": "upsert", "external_id": "Customer_Id__c"},
            "mapping": {"Customer_Id__c": ".id", "Name": ".name"},
            "streams": [{"name": "erp",
                         "source": {"type": "mysql", "url": MY_URL, "table": my_in, "cursor": "changed", "key": "code"},
                         "mapping": {"Customer_Id__c": ".code", "Name": ".label"}}]
        })),
    );
    assert_eq!(s, 201, "{b}");
    let r = run(&org, "Merged");
    assert_eq!(r["status"], "succeeded", "{r}");
    let got = org_side(&org, "X");
    assert_eq!(got["X1"].0, "From PostgreSQL");
    assert_eq!(got["X2"].0, "MariaDB wins X2");
    assert_eq!(org_side(&org, "Y")["Y1"].0, "From MariaDB");
    // A stream without its target or source is refused.
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Broken"),
        Some(
            json!({"kind": "broadcast", "source": {"type": "org", "object": "Account"},
                    "target": {"type": "postgres", "url": PG_URL, "table": pg_out, "key": "id"},
                    "mapping": {"id": ".Id"}, "streams": [{"name": "x", "mapping": {}}]}),
        ),
    );
    assert_eq!(s, 400, "{b}");
    db.batch_execute(&format!("DROP TABLE {pg_out}; DROP TABLE {pg_in};"))
        .unwrap();
    maria(&[
        format!("DROP TABLE {my_out}"),
        format!("DROP TABLE {my_in}"),
    ]);
}

#[test]
fn a_correlation_touches_only_records_both_sides_have() {
    let mut db = pg();
    let table = format!("sync_corr_{}", std::process::id());
    source_table(&mut db, &table);
    insert(
        &mut db,
        &table,
        &[
            (
                "K1".into(),
                Some("Both, renamed".into()),
                1.0,
                "2026-11-01T00:00:00Z",
            ),
            (
                "K2".into(),
                Some("Only in PostgreSQL".into()),
                2.0,
                "2026-11-01T00:00:01Z",
            ),
            (
                "K3".into(),
                Some("Both too".into()),
                3.0,
                "2026-11-01T00:00:02Z",
            ),
        ],
    );
    let data = data_dir("sync-correlation");
    write_customer_field(&data);
    let org = Org::start_in(&data, &[], &[]);
    org.create("Account", json!({"Name": "Old K1", "Customer_Id__c": "K1"}));
    org.create("Account", json!({"Name": "Old K3", "Customer_Id__c": "K3"}));
    org.create(
        "Account",
        json!({"Name": "Only in the org", "Customer_Id__c": "K9"}),
    );
    let mut def = job(&table, 2);
    def["kind"] = json!("correlation");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Correlate"),
        Some(def),
    );
    assert_eq!(s, 201, "{b}");
    let r = run(&org, "Correlate");
    assert_eq!(
        (r["read"].as_u64(), r["written"].as_u64()),
        (Some(3), Some(2)),
        "{r}"
    );
    let got = org_side(&org, "K");
    assert_eq!(got.len(), 3, "nothing created: {got:?}");
    assert_eq!(got["K1"].0, "Both, renamed");
    assert_eq!(got["K3"].0, "Both too");
    assert_eq!(got["K9"].0, "Only in the org");
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

/// The Accounts of a bidirectional test, by customer id: (name, phone, revenue).
fn org_rows(org: &Org, prefix: &str) -> BTreeMap<String, (Value, Value, Value)> {
    let page = org.query(&format!(
        "SELECT Customer_Id__c, Name, Phone, AnnualRevenue FROM Account WHERE Customer_Id__c LIKE '{prefix}%'"
    ));
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let rev = r["AnnualRevenue"]
                .as_f64()
                .map_or(Value::Null, |f| json!(f));
            (
                r["Customer_Id__c"].as_str().unwrap().to_string(),
                (r["Name"].clone(), r["Phone"].clone(), rev),
            )
        })
        .collect()
}

fn table_rows(db: &mut postgres::Client, table: &str) -> BTreeMap<String, (Value, Value, Value)> {
    db.query(
        &format!("SELECT id, name, phone, revenue::float8 FROM {table}"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        let rev: Option<f64> = r.get(3);
        (
            r.get::<_, String>(0),
            (
                json!(r.get::<_, String>(1)),
                json!(r.get::<_, Option<String>>(2)),
                json!(rev),
            ),
        )
    })
    .collect()
}

#[test]
fn bidirectional_sync_with_postgres_converges_after_concurrent_edits_without_echo() {
    let mut db = pg();
    let table = format!("sync_bi_{}", std::process::id());
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id text PRIMARY KEY, name text NOT NULL, phone text,
                              revenue numeric(12,2),
                              updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
         CREATE OR REPLACE FUNCTION {table}_touch() RETURNS trigger AS $$
           BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER {table}_touch BEFORE UPDATE ON {table}
           FOR EACH ROW EXECUTE FUNCTION {table}_touch();
         INSERT INTO {table} (id, name, phone, revenue) VALUES
           ('B1', 'Table one', '555-0101', 10), ('B2', 'Table two', NULL, 20),
           ('B3', 'Table three', '555-0103', NULL);"
    ))
    .unwrap();
    let data = data_dir("sync-bidirectional");
    write_customer_field(&data);
    let members = data.join("metadata/platformEventChannelMembers");
    std::fs::create_dir_all(&members).unwrap();
    std::fs::write(
        members.join("ChangeEvents_AccountChangeEvent.yaml"),
        "eventChannel: ChangeEvents\nselectedEntity: AccountChangeEvent\n",
    )
    .unwrap();
    let org = Org::start_in(&data, &[], &[]);
    for (k, name, phone, rev) in [
        ("A1", "Org one", Some("555-0201"), Some(1.5)),
        ("A2", "Org two", None, Some(2.0)),
        ("A3", "Org three", Some("555-0203"), None),
    ] {
        org.create(
            "Account",
            json!({"Customer_Id__c": k, "Name": name, "Phone": phone, "AnnualRevenue": rev}),
        );
    }
    let def = json!({
        "kind": "bidirectional",
        "source": {"type": "org", "object": "Account"},
        "target": {"type": "postgres", "url": PG_URL, "table": table, "key": "id"},
        "mapping": {"id": ".Customer_Id__c", "name": ".Name", "phone": ".Phone",
                    "revenue": ".AnnualRevenue"},
        "reverse": {"external_id": "Customer_Id__c", "cursor": "updated_at",
                    "mapping": {"Customer_Id__c": ".id", "Name": ".name", "Phone": ".phone",
                                "AnnualRevenue": ".revenue"}},
        "conflicts": {"default": "last_writer_wins",
                      "fields": {"phone": "source", "revenue": "target"}},
        "batch_size": 2
    });
    // A bidirectional job needs the object's change events; without `reverse` it is refused.
    let mut bad = def.clone();
    bad.as_object_mut().unwrap().remove("reverse");
    let (s, b) = org.call(Method::PUT, &org.data("/conflux/sync-jobs/Both"), Some(bad));
    assert_eq!(s, 400, "{b}");
    let (s, b) = org.call(Method::PUT, &org.data("/conflux/sync-jobs/Both"), Some(def));
    assert_eq!(s, 201, "{b}");

    // The first run: each side gets the other's records.
    let r = run(&org, "Both");
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["written"], 6, "{r}");
    let (o, t) = (org_rows(&org, ""), table_rows(&mut db, &table));
    assert_eq!(o.len(), 6, "{o:?}");
    assert_eq!(o, t, "both sides hold the same six rows");
    assert_eq!(t["A1"], (json!("Org one"), json!("555-0201"), json!(1.5)));
    assert_eq!(
        o["B1"],
        (json!("Table one"), json!("555-0101"), json!(10.0))
    );

    // Run again: the writes of the first run come back on both sides, and are not echoed.
    let r = run(&org, "Both");
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(0)),
        "{r}"
    );

    // Concurrent edits on both sides, some to the same fields.
    let patch = |k: &str, body: Value| {
        let (s, b) = org.call(
            Method::PATCH,
            &org.data(&format!("/sobjects/Account/Customer_Id__c/{k}")),
            Some(body),
        );
        assert!(s == 200 || s == 204, "{s} {b}");
    };
    let sql = |db: &mut postgres::Client, stmt: String| db.batch_execute(&stmt).unwrap();
    let pause = || std::thread::sleep(Duration::from_millis(30));
    // Different fields of one record: both edits stay.
    patch("A1", json!({"Name": "Org one, renamed in the org"}));
    sql(
        &mut db,
        format!("UPDATE {table} SET phone = '555-9991' WHERE id = 'A1'"),
    );
    // Both change the phone: the org is the phone's source of truth.
    patch("A2", json!({"Phone": "555-ORG"}));
    sql(
        &mut db,
        format!("UPDATE {table} SET phone = '555-TABLE' WHERE id = 'A2'"),
    );
    // Both change the revenue: the table is the revenue's source of truth.
    sql(
        &mut db,
        format!("UPDATE {table} SET revenue = 77 WHERE id = 'B1'"),
    );
    patch("B1", json!({"AnnualRevenue": 66}));
    // Both rename: the last writer wins, whichever side it is.
    patch("B2", json!({"Name": "B2 renamed in the org first"}));
    pause();
    sql(
        &mut db,
        format!("UPDATE {table} SET name = 'B2 renamed in the table last' WHERE id = 'B2'"),
    );
    sql(
        &mut db,
        format!("UPDATE {table} SET name = 'B3 renamed in the table first' WHERE id = 'B3'"),
    );
    pause();
    patch("B3", json!({"Name": "B3 renamed in the org last"}));
    // New on each side.
    org.create(
        "Account",
        json!({"Customer_Id__c": "A4", "Name": "Org four"}),
    );
    sql(
        &mut db,
        format!("INSERT INTO {table} (id, name) VALUES ('B4', 'Table four')"),
    );

    let r = run(&org, "Both");
    assert_eq!(r["status"], "succeeded", "{r}");
    let (_, errors) = org.call(
        Method::GET,
        &org.data("/conflux/sync-jobs/Both/errors"),
        None,
    );
    assert_eq!(r["failed"], 0, "{r} {errors}");
    let (o, t) = (org_rows(&org, ""), table_rows(&mut db, &table));
    assert_eq!(o, t, "the sides converged");
    assert_eq!(o.len(), 8);
    assert_eq!(o["A1"].0, "Org one, renamed in the org");
    assert_eq!(o["A1"].1, "555-9991");
    assert_eq!(o["A2"].1, "555-ORG");
    assert_eq!(o["B1"].2, json!(77.0));
    assert_eq!(o["B2"].0, "B2 renamed in the table last");
    assert_eq!(o["B3"].0, "B3 renamed in the org last");
    assert_eq!(o["A4"].0, "Org four");
    assert_eq!(o["B4"].0, "Table four");

    // The job's own org writes carry its change origin (so its change events are not read back
    // as changes); the users' edits carry theirs.
    let mut c = crate::events::Bayeux::new(&org);
    c.handshake();
    let r = c.subscribe("/data/AccountChangeEvent", Some(-2));
    assert_eq!(r["successful"], true, "{r}");
    let mut events = Vec::new();
    loop {
        let (data, reply) = c.connect(true);
        assert_eq!(reply["successful"], true, "{reply}");
        if data.is_empty() {
            break;
        }
        events.extend(data);
    }
    let header = |e: &Value| e["data"]["payload"]["ChangeEventHeader"].clone();
    let own: Vec<Value> = events
        .iter()
        .map(header)
        .filter(|h| {
            h["changeOrigin"]
                .as_str()
                .unwrap()
                .ends_with(";client=conflux-sync:Both")
        })
        .collect();
    assert!(
        own.iter().any(|h| h["changeType"] == "UPDATE"
            && h["changedFields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "AnnualRevenue")),
        "the job's update of B1's revenue: {own:?}"
    );
    assert!(own.iter().any(|h| h["changeType"] == "CREATE"), "{own:?}");
    assert!(
        events
            .iter()
            .map(header)
            .any(|h| h["changeType"] == "UPDATE"
                && !h["changeOrigin"].as_str().unwrap().contains("conflux-sync")),
        "the users' edits: {events:?}"
    );

    // Nothing more to do: no echo loop.
    for _ in 0..2 {
        let r = run(&org, "Both");
        assert_eq!(
            (r["status"].as_str(), r["written"].as_u64()),
            (Some("succeeded"), Some(0)),
            "{r}"
        );
    }
    let (s, b) = org.call(Method::GET, &org.data("/conflux/sync-jobs/Both"), None);
    assert_eq!(s, 200, "{b}");
    assert!(b["changeCursor"].as_u64().unwrap() > 0, "{b}");
    let change_cursor = b["changeCursor"].clone();

    // A reset goes back to the beginning only: a cursor is refused and changes nothing.
    let (s, b) = org.call(
        Method::POST,
        &org.data("/conflux/sync-jobs/Both/reset"),
        Some(json!({"cursor": {"value": "2020-01-01T00:00:00Z", "key": "A1"}})),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains("beginning only"), "{b}");
    let (_, after) = org.call(Method::GET, &org.data("/conflux/sync-jobs/Both"), None);
    assert_eq!(after["changeCursor"], change_cursor, "{after}");

    // A reset compares every record again, and finds them agreeing.
    let (s, b) = org.call(
        Method::POST,
        &org.data("/conflux/sync-jobs/Both/reset"),
        None,
    );
    assert_eq!(s, 204, "{b}");
    let r = run(&org, "Both");
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(0)),
        "{r}"
    );
    assert_eq!(r["read"], 8, "{r}");

    // Deletes go across too, and win over an edit of the same record on the other side.
    let id_of = |k: &str| {
        org.query(&format!(
            "SELECT Id FROM Account WHERE Customer_Id__c = '{k}'"
        ))["records"][0]["Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for k in ["A3", "B3"] {
        let (s, b) = org.call(
            Method::DELETE,
            &org.data(&format!("/sobjects/Account/{}", id_of(k))),
            None,
        );
        assert_eq!(s, 204, "{b}");
    }
    sql(
        &mut db,
        format!("UPDATE {table} SET phone = '555-EDITED' WHERE id = 'B3'"),
    );
    sql(&mut db, format!("DELETE FROM {table} WHERE id = 'B4'"));
    let r = run(&org, "Both");
    assert_eq!(
        (r["status"].as_str(), r["failed"].as_u64()),
        (Some("succeeded"), Some(0)),
        "{r}"
    );
    let (o, t) = (org_rows(&org, ""), table_rows(&mut db, &table));
    assert_eq!(o, t, "the sides converged after deletes");
    let left: Vec<&String> = o.keys().collect();
    assert_eq!(left, ["A1", "A2", "A4", "B1", "B2"], "{o:?}");
    let r = run(&org, "Both");
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(0)),
        "{r}"
    );
    db.batch_execute(&format!(
        "DROP TABLE {table}; DROP FUNCTION {table}_touch();"
    ))
    .unwrap();
}

#[test]
fn change_triggered_jobs_run_when_the_org_changes() {
    let mut db = pg();
    let table = format!("sync_trig_{}", std::process::id());
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id text PRIMARY KEY, name text);"
    ))
    .unwrap();
    let data = data_dir("sync-trigger");
    let org = Org::start_in(&data, &[], &[]);
    let def = json!({
        "source": {"type": "org", "object": "Account"},
        "target": {"type": "postgres", "url": PG_URL, "table": table, "key": "id"},
        "mapping": {"id": ".Id", "name": ".Name"},
        "trigger": "changes",
        "run_as": crate::harness::USERNAME
    });
    // Change events must be on for the object.
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Live"),
        Some(def.clone()),
    );
    assert_eq!(s, 400, "{b}");
    assert!(
        b[0]["message"]
            .as_str()
            .unwrap()
            .contains("Change Data Capture"),
        "{b}"
    );
    let (s, b) = org.tooling(
        "PlatformEventChannelMember",
        "ChangeEvents_AccountChangeEvent",
        json!({"eventChannel": "ChangeEvents", "selectedEntity": "AccountChangeEvent"}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.call(Method::PUT, &org.data("/conflux/sync-jobs/Live"), Some(def));
    assert_eq!(s, 201, "{b}");

    // Each change reaches the table without anyone starting a run.
    let id = org.create("Account", json!({"Name": "Live one"}));
    let wait_for = |db: &mut postgres::Client, want: &str| {
        let t = Instant::now();
        loop {
            let got: Option<String> = db
                .query_opt(&format!("SELECT name FROM {table} WHERE id = $1"), &[&id])
                .unwrap()
                .map(|r| r.get(0));
            if got.as_deref() == Some(want) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the change did not reach the table: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&mut db, "Live one");
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{id}")),
        Some(json!({"Name": "Live one, renamed"})),
    );
    assert_eq!(s, 204);
    wait_for(&mut db, "Live one, renamed");
    let (_, b) = org.call(Method::GET, &org.data("/conflux/sync-jobs/Live/runs"), None);
    assert!(b["runs"].as_array().unwrap().len() >= 2, "{b}");
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn a_correlation_matches_records_by_configured_fields() {
    let mut db = pg();
    let table = format!("sync_corr_multi_{}", std::process::id());
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id text PRIMARY KEY, name text, city text, phone text);
         INSERT INTO {table} VALUES ('P1', 'Acme', 'Paris', NULL), ('P2', 'Acme', 'Lyon', NULL),
                                    ('P3', 'Zeta', 'Oslo', NULL);"
    ))
    .unwrap();
    let org = Org::start("sync-correlation-fields");
    for (name, city, phone) in [
        ("Acme", "Paris", "111"),
        ("Acme", "Berlin", "222"),
        ("Zeta", "Oslo", "333"),
    ] {
        org.create(
            "Account",
            json!({"Name": name, "BillingCity": city, "Phone": phone}),
        );
    }
    let mut def = json!({
        "kind": "correlation",
        "match_on": ["name", "city"],
        "source": {"type": "org", "object": "Account"},
        "target": {"type": "postgres", "url": PG_URL, "table": table, "key": "id"},
        "mapping": {"id": ".Id", "name": ".Name", "city": ".BillingCity", "phone": ".Phone"}
    });
    // The matching fields are ones the mapping sets.
    def["match_on"] = json!(["name", "country"]);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Match"),
        Some(def.clone()),
    );
    assert_eq!(s, 400, "{b}");
    def["match_on"] = json!(["name", "city"]);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Match"),
        Some(def),
    );
    assert_eq!(s, 201, "{b}");
    let r = run(&org, "Match");
    assert_eq!(
        (
            r["status"].as_str(),
            r["read"].as_u64(),
            r["written"].as_u64()
        ),
        (Some("succeeded"), Some(3), Some(2)),
        "{r}"
    );
    let rows: BTreeMap<String, Option<String>> = db
        .query(&format!("SELECT id, phone FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: BTreeMap<String, Option<String>> =
        [("P1", Some("111")), ("P2", None), ("P3", Some("333"))]
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
    assert_eq!(rows, want, "matched rows updated in place, nothing added");
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

//! Sync job benchmark driver (run by `cargo xtask bench sync`).
//!
//! `sync_load run BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET SERVER_PID PG_URL CSV WORK`
//! loads the seeded 10-column CSV (`bulk_load gen`) into a PostgreSQL table (not timed), then
//! times, in one run:
//! 1. the pipeline a sync job replaces: `COPY (SELECT …) TO STDOUT (FORMAT csv, HEADER)` of the
//!    table into a file under WORK, then a Bulk API 2.0 insert job of that file into a fresh
//!    object, from job creation to JobComplete;
//! 2. a sync job from the table into another fresh object (upsert on the external id, batches of
//!    5,000), from the run's start to its end, sampling the server's resident memory.
//!
//! Prints `sync <rows> <copy s> <bulk s> <sync s> <rss before MB> <rss max MB>`.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bench::{rss_mb, Api};
use serde_json::{json, Value};

const V: &str = "v60.0";
const CATEGORIES: [&str; 5] = ["Prospect", "Customer", "Partner", "Reseller", "Other"];

/// A custom object with the CSV's fields and a unique external id.
fn create_object(api: &Api, object: &str) -> Result<()> {
    let tooling = |kind: &str, name: &str, meta: Value| {
        api.call(
            reqwest::Method::POST,
            &format!("/tooling/sobjects/{kind}"),
            Some(json!({"FullName": name, "Metadata": meta})),
        )
    };
    tooling(
        "CustomObject",
        object,
        json!({"label": object.trim_end_matches("__c"), "nameField": {"type": "Text", "label": "Name"}}),
    )?;
    let values: Vec<Value> = CATEGORIES.iter().map(|c| json!({"fullName": c})).collect();
    for (field, meta) in [
        (
            "Row_Number__c",
            json!({"type": "Number", "precision": 18, "scale": 0, "label": "Row"}),
        ),
        (
            "External_Id__c",
            json!({"type": "Text", "length": 20, "externalId": true, "unique": true, "label": "Ext"}),
        ),
        ("Email__c", json!({"type": "Email", "label": "Email"})),
        (
            "Amount__c",
            json!({"type": "Currency", "precision": 16, "scale": 2, "label": "Amount"}),
        ),
        (
            "Created_At__c",
            json!({"type": "DateTime", "label": "Created"}),
        ),
        (
            "Is_Active__c",
            json!({"type": "Checkbox", "label": "Active"}),
        ),
        (
            "Category__c",
            json!({"type": "Picklist", "label": "Category", "valueSet": {"valueSetDefinition": {"value": values}}}),
        ),
        (
            "Score__c",
            json!({"type": "Number", "precision": 18, "scale": 6, "label": "Score"}),
        ),
        (
            "Description__c",
            json!({"type": "Text", "length": 255, "label": "Description"}),
        ),
    ] {
        tooling("CustomField", &format!("{object}.{field}"), meta)?;
    }
    Ok(())
}

const TABLE: &str = "conflux_bench_sync";

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, base, user, pass, cid, secret, pid, pg_url, csv, work] = a.as_slice() else {
        bail!("usage: sync_load run BASE USER PASS CLIENT_ID CLIENT_SECRET PID PG_URL CSV WORK");
    };
    if cmd != "run" {
        bail!("unknown command {cmd}");
    }
    let mut db = postgres::Client::connect(pg_url, postgres::NoTls)
        .with_context(|| format!("PostgreSQL at {pg_url}"))?;
    eprintln!("    loading {csv} into PostgreSQL table {TABLE} (not timed)");
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {TABLE};
         CREATE TABLE {TABLE} (row_number bigint, external_id text PRIMARY KEY, name text,
           email text, amount numeric(16,2), created_at timestamptz, is_active boolean,
           category text, score double precision, description text);"
    ))?;
    {
        let mut w = db.copy_in(&format!("COPY {TABLE} FROM STDIN (FORMAT csv, HEADER)"))?;
        let data = std::fs::read(csv)?;
        w.write_all(&data)?;
        w.finish()?;
    }
    // A sync source has an index on its (cursor, key) order, as an incremental source should.
    db.batch_execute(&format!(
        "CREATE INDEX ON {TABLE} (created_at, external_id); ANALYZE {TABLE}"
    ))?;
    let rows: i64 = db
        .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])?
        .get(0);

    let api = Api::login(base, user, pass, cid, secret)?;
    create_object(&api, "Bulk_Target__c")?;
    create_object(&api, "Sync_Target__c")?;

    // 1. COPY TO, then the Bulk API.
    eprintln!("    COPY … TO a CSV file");
    let out = std::path::Path::new(work).join("copy.csv");
    let t = Instant::now();
    {
        let mut r = db.copy_out(&format!(
            "COPY (SELECT row_number AS \"Row_Number__c\", external_id AS \"External_Id__c\",
                    name AS \"Name\", email AS \"Email__c\", amount AS \"Amount__c\",
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS \"Created_At__c\",
                    CASE WHEN is_active THEN 'true' ELSE 'false' END AS \"Is_Active__c\",
                    category AS \"Category__c\", score AS \"Score__c\", description AS \"Description__c\"
                  FROM {TABLE}) TO STDOUT (FORMAT csv, HEADER)"
        ))?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
        std::io::copy(&mut r, &mut f)?;
        f.flush()?;
    }
    let copy_s = t.elapsed().as_secs_f64();
    eprintln!("    Bulk API 2.0 insert of the copy");
    let t = Instant::now();
    let job = api.call(
        reqwest::Method::POST,
        "/jobs/ingest",
        Some(json!({"object": "Bulk_Target__c", "operation": "insert", "contentType": "CSV", "lineEnding": "LF"})),
    )?;
    let id = job["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no job id: {job}"))?
        .to_string();
    let resp = api
        .http
        .put(format!("{base}/services/data/{V}/jobs/ingest/{id}/batches"))
        .bearer_auth(&api.token)
        .header("Content-Type", "text/csv")
        .body(std::fs::File::open(&out)?)
        .send()?;
    if !resp.status().is_success() {
        bail!("upload: {}", resp.text()?);
    }
    api.call(
        reqwest::Method::PATCH,
        &format!("/jobs/ingest/{id}"),
        Some(json!({"state": "UploadComplete"})),
    )?;
    loop {
        let j = api.call(reqwest::Method::GET, &format!("/jobs/ingest/{id}"), None)?;
        match j["state"].as_str() {
            Some("JobComplete") => {
                if j["numberRecordsFailed"] != 0 || j["numberRecordsProcessed"] != rows {
                    bail!("the Bulk job did not load every row: {j}");
                }
                break;
            }
            Some("Failed" | "Aborted") => bail!("the Bulk job failed: {j}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let bulk_s = t.elapsed().as_secs_f64();

    // 2. The sync job.
    eprintln!("    sync job from PostgreSQL into the org");
    let mapping = json!({
        "Row_Number__c": ".row_number", "External_Id__c": ".external_id", "Name": ".name",
        "Email__c": ".email", "Amount__c": ".amount", "Created_At__c": ".created_at",
        "Is_Active__c": ".is_active", "Category__c": ".category", "Score__c": ".score",
        "Description__c": ".description"
    });
    api.call(
        reqwest::Method::PUT,
        "/conflux/sync-jobs/Bench_Sync",
        Some(json!({
            "source": {"type": "postgres", "url": pg_url, "table": TABLE,
                       "cursor": "created_at", "key": "external_id"},
            "target": {"type": "org", "object": "Sync_Target__c", "operation": "upsert",
                       "external_id": "External_Id__c"},
            "mapping": mapping,
            "batch_size": 5000
        })),
    )?;
    let before = rss_mb(pid);
    let mut max = before;
    let t = Instant::now();
    let run = api.call(
        reqwest::Method::POST,
        "/conflux/sync-jobs/Bench_Sync/run",
        None,
    )?;
    let run_id = run["runId"].clone();
    let mut last_print = Instant::now();
    let r = loop {
        max = max.max(rss_mb(pid));
        let runs = api.call(
            reqwest::Method::GET,
            "/conflux/sync-jobs/Bench_Sync/runs?limit=3",
            None,
        )?;
        let r = runs["runs"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["runId"] == run_id))
            .cloned()
            .ok_or_else(|| anyhow!("run {run_id} not found"))?;
        if r["status"] != "running" {
            break r;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            let j = api.call(reqwest::Method::GET, "/conflux/sync-jobs/Bench_Sync", None)?;
            eprintln!(
                "      {} rows written, server RSS {:.0} MB",
                j["running"]["written"],
                rss_mb(pid)
            );
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let sync_s = t.elapsed().as_secs_f64();
    if r["status"] != "succeeded" || r["written"] != rows || r["failed"] != 0 {
        bail!("the sync run did not write every row: {r}");
    }
    db.batch_execute(&format!("DROP TABLE {TABLE}"))?;
    println!("sync {rows} {copy_s:.2} {bulk_s:.2} {sync_s:.2} {before:.1} {max:.1}");
    Ok(())
}

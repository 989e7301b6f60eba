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
        Some("pubsub") => pubsub(
            root,
            args.get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000),
        ),
        other => {
            bail!("unknown benchmark {other:?}; available: rest, bulk, collections, streaming, pubsub")
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
    let (srv, token) = streaming_server(&rel, &work.join("publish"))?;
    let out = Command::new(rel.join("publish_load"))
        .args([&srv.http, &token])
        .arg(&work)
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
Durable publishing, {} events: Conflux (4 x 200-event sObject collections, synchronous=FULL) {:.0} events/s; \
nats-server JetStream (file storage, 256 in flight, no fsync) {:.0} msgs/s; ratio **{:.2}**.\n",
        table(&lean),
        h["clients"], h["delivered"], f(&h["fanoutSeconds"]), f(&h["rssHeldMb"]), f(&h["rssBeforeMb"]),
        table(&node),
        publish["events"], f(&publish["confluxPerSec"]), f(&publish["jetstreamPerSec"]), f(&publish["ratio"]),
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

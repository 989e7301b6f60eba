//! Project automation (`cargo xtask <command>`): the whole test suite CI runs, the real-client
//! conformance suites against a freshly started server, tidy checks, benchmarks.

mod bench;
mod codegen;
mod tidy;

use test_support as server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test           everything CI runs: formatting, tidy, unit and integration tests, conformance
  conformance    start a fresh server and run the real-client suites in conformance/
  tidy           project conventions (every Rust file starts with a //! line, …)
  codegen        regenerate the Pub/Sub API's Rust code from its .proto (--check: verify)
  bench <name>   run a benchmark from bench/ (rest)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("conformance") => conformance(),
        Some("tidy") => tidy::run(&root()),
        Some("codegen") => {
            codegen::run(&root(), args.get(1).map(String::as_str) == Some("--check"))
        }
        Some("bench") => bench::run(&root(), &args[1..]),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let t = Instant::now();
    eprintln!("==> {name}");
    f().with_context(|| format!("step '{name}' failed"))?;
    eprintln!("    {name}: ok in {:.0?}", t.elapsed());
    Ok(())
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn test() -> Result<()> {
    let t = Instant::now();
    step("formatting (cargo fmt --check)", || {
        run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))
    })?;
    step("tidy", || tidy::run(&root()))?;
    step(
        "generated code is up to date (cargo xtask codegen --check)",
        || codegen::run(&root(), true),
    )?;
    step("build", || {
        run(Command::new("cargo").args(["build", "--workspace", "--bins"]))
    })?;
    step(
        "services the tests use (PostgreSQL, MariaDB)",
        ensure_services,
    )?;
    step("unit and integration tests", || {
        if has_nextest() {
            run(Command::new("cargo").args(["nextest", "run", "--workspace", "--no-fail-fast"]))
        } else {
            eprintln!("    cargo-nextest not found; using cargo test");
            run(Command::new("cargo").args(["test", "--workspace", "--no-fail-fast"]))
        }
    })?;
    step(
        "conformance (real clients against a fresh server)",
        conformance,
    )?;
    eprintln!("==> all checks passed in {:.0?}", t.elapsed());
    Ok(())
}

/// Makes sure the services the tests talk to are up: starts them with `service` when they are
/// installed but stopped, else fails saying what to start.
fn ensure_services() -> Result<()> {
    let up = |port: u16| {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            std::time::Duration::from_secs(2),
        )
        .is_ok()
    };
    for (name, port, service) in [
        ("PostgreSQL", 5432, "postgresql"),
        ("MariaDB", 3306, "mariadb"),
    ] {
        if up(port) {
            continue;
        }
        eprintln!(
            "    {name} is not answering on 127.0.0.1:{port}; trying `service {service} start`"
        );
        let _ = Command::new("service").args([service, "start"]).status();
        let t = Instant::now();
        while !up(port) {
            if t.elapsed().as_secs() > 30 {
                bail!(
                    "{name} is needed on 127.0.0.1:{port} (database `test`, see the README) and could not be started; start it and run again"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    Ok(())
}

fn conformance() -> Result<()> {
    let root = root();
    let bin = root.join("target/debug/conflux");
    // Always (re)build: a stale binary would test yesterday's server. Cheap when up to date.
    run(Command::new("cargo").args(["build", "--package", "conflux"]))?;
    let work = server::scratch_dir("conformance")?;
    let (key, cert) = server::jwt_key_pair(&work)?;
    // A shortened delivery retry schedule, so the Outbound Message suites see a receiver that
    // comes up late served within seconds (configuration, not sleeps in product code).
    let srv = server::Server::start_with(
        &bin,
        &work.join("data"),
        &[(
            "CONFLUX_CLIENT_CERT_FILE",
            cert.to_str().unwrap_or_default(),
        )],
        &[
            "--delivery-retry-base-ms",
            "300",
            "--delivery-retry-cap-ms",
            "1000",
        ],
    )?;
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("conformance/run.sh"));
    for (k, v) in srv.client_env() {
        cmd.env(k, v);
    }
    cmd.env("CONFLUX_JWT_KEY_FILE", &key);
    // The console suite's screenshots of each main page (named in the README).
    cmd.env(
        "CONFLUX_SCREENSHOTS",
        root.join("target/console-screenshots"),
    );
    let result = run(&mut cmd);
    let stopped = srv.stop();
    result?;
    stopped.context("the server did not shut down cleanly after the conformance run")?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

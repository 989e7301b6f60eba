//! `conflux sync list|put|run|status|errors|reset`: sync jobs from the terminal. `run` follows
//! the run with a spinner counting rows read, written and refused until it ends.

use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};

use crate::remote::{Conn, ConnArgs, FileArgs, OrgArgs};

/// Sync job commands.
#[derive(Debug, clap::Subcommand)]
pub enum SyncCommand {
    /// List the jobs with their cursor and last run.
    List(OrgArgs),
    /// Create or replace a job from a YAML or JSON file (its `name`, or the file's name).
    Put(FileArgs),
    /// Run a job and follow it to the end.
    Run(Named),
    /// A job's definition, cursor, last runs.
    Status(Named),
    /// The source rows the job's target refused, with the reason and payload.
    Errors(Named),
    /// Move a job's cursor back to the beginning (or to `--value`/`--key`).
    Reset(ResetArgs),
}

/// A job name and the org.
#[derive(Debug, clap::Args)]
pub struct Named {
    /// The job's name.
    pub name: String,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `sync reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The job's name.
    pub name: String,
    /// Continue after this cursor value (with `--key`) instead of from the beginning.
    #[arg(long, requires = "key")]
    pub value: Option<String>,
    /// The key of the row at `--value`.
    #[arg(long, requires = "value")]
    pub key: Option<String>,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn run_line(r: &Value) -> String {
    format!(
        "run {} {}: read {}, written {}, refused {}{}",
        r["runId"],
        r["status"].as_str().unwrap_or(""),
        r["read"],
        r["written"],
        r["failed"],
        r["message"]
            .as_str()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    )
}

/// Runs a sync command.
pub async fn run(cmd: SyncCommand) -> Result<i32> {
    match cmd {
        SyncCommand::List(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let body = conn
                .json(Method::GET, "/conflux/sync-jobs", None, "listing sync jobs")
                .await?;
            let jobs = body["jobs"].as_array().cloned().unwrap_or_default();
            if jobs.is_empty() {
                eprintln!("no sync jobs");
            }
            for j in jobs {
                println!(
                    "{:<32} {:<10} → {:<20} {}",
                    j["name"].as_str().unwrap_or(""),
                    j["source"]["type"].as_str().unwrap_or(""),
                    j["target"]["object"]
                        .as_str()
                        .or(j["target"]["table"].as_str())
                        .unwrap_or(""),
                    if j["lastRun"].is_null() {
                        "never run".to_string()
                    } else {
                        run_line(&j["lastRun"])
                    }
                );
            }
            Ok(0)
        }
        SyncCommand::Put(a) => {
            let name = a.put("sync-jobs", "sync job").await?;
            println!("sync job {name} saved");
            Ok(0)
        }
        SyncCommand::Run(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let started = conn
                .json(
                    Method::POST,
                    &format!("/conflux/sync-jobs/{}/run", a.name),
                    None,
                    &format!("starting sync job {}", a.name),
                )
                .await?;
            let id = started["runId"].clone();
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            loop {
                let runs = conn
                    .json(
                        Method::GET,
                        &format!("/conflux/sync-jobs/{}/runs?limit=5", a.name),
                        None,
                        "reading the run",
                    )
                    .await?;
                let Some(r) = runs["runs"]
                    .as_array()
                    .and_then(|rs| rs.iter().find(|r| r["runId"] == id))
                    .cloned()
                else {
                    bail!("run {id} of {} disappeared", a.name);
                };
                if r["status"] != "running" {
                    bar.finish_and_clear();
                    println!("{}", run_line(&r));
                    if r["failed"].as_u64().unwrap_or(0) > 0 {
                        println!("see the refused rows: conflux sync errors {}", a.name);
                    }
                    return Ok(if r["status"] == "succeeded" { 0 } else { 1 });
                }
                let job = conn
                    .json(
                        Method::GET,
                        &format!("/conflux/sync-jobs/{}", a.name),
                        None,
                        "reading the job",
                    )
                    .await?;
                let p = &job["running"];
                bar.set_message(format!(
                    "{}: read {}, written {}, refused {}",
                    a.name, p["read"], p["written"], p["failed"]
                ));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        SyncCommand::Status(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let mut job = conn
                .json(
                    Method::GET,
                    &format!("/conflux/sync-jobs/{}", a.name),
                    None,
                    &format!("reading sync job {}", a.name),
                )
                .await?;
            let runs = conn
                .json(
                    Method::GET,
                    &format!("/conflux/sync-jobs/{}/runs?limit=10", a.name),
                    None,
                    "reading its runs",
                )
                .await?;
            job["runs"] = runs["runs"].clone();
            println!("{}", serde_json::to_string_pretty(&job)?);
            Ok(0)
        }
        SyncCommand::Errors(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let body = conn
                .json(
                    Method::GET,
                    &format!("/conflux/sync-jobs/{}/errors", a.name),
                    None,
                    "reading refused rows",
                )
                .await?;
            let errors = body["errors"].as_array().cloned().unwrap_or_default();
            if errors.is_empty() {
                eprintln!("no refused rows");
            }
            for e in errors {
                println!("{e}");
            }
            Ok(0)
        }
        SyncCommand::Reset(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let body = match (&a.value, &a.key) {
                (Some(v), Some(k)) => json!({"cursor": {"value": v, "key": k}}),
                _ => json!({}),
            };
            conn.json(
                Method::POST,
                &format!("/conflux/sync-jobs/{}/reset", a.name),
                Some(&body),
                &format!("resetting sync job {}", a.name),
            )
            .await?;
            println!("sync job {} reset", a.name);
            Ok(0)
        }
    }
}

//! `conflux flows list|show|put|delete|faults`: manage an org's flows from the terminal (put a
//! YAML or JSON file, see where each flow comes from) and read the flow fault log.

use anyhow::Result;
use reqwest::Method;
use serde_json::Value;

use crate::remote::{Conn, ConnArgs, FileArgs, OrgArgs};

/// Flow commands.
#[derive(Debug, clap::Subcommand)]
pub enum FlowsCommand {
    /// List the flows (name, object, trigger, where it is defined).
    List(OrgArgs),
    /// Print one flow as JSON.
    Show(Named),
    /// Create or replace a flow from a YAML or JSON file (its `name`, or the file's name).
    Put(FileArgs),
    /// Delete a flow created through the API.
    Delete(Named),
    /// The newest flow faults (one JSON object per line).
    Faults(FaultArgs),
}

/// A flow name and the org.
#[derive(Debug, clap::Args)]
pub struct Named {
    /// The flow's name.
    pub name: String,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `flows faults`.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs a flows command.
pub async fn run(cmd: FlowsCommand) -> Result<i32> {
    match cmd {
        FlowsCommand::List(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let body = conn
                .json(Method::GET, "/conflux/flows", None, "listing flows")
                .await?;
            let flows = body["flows"].as_array().cloned().unwrap_or_default();
            if flows.is_empty() {
                eprintln!("no flows");
            }
            for f in flows {
                let on: Vec<&str> = f["on"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!(
                    "{:<32} {:<20} {:<12} {:<22} {}{}",
                    f["name"].as_str().unwrap_or(""),
                    f["object"].as_str().unwrap_or(""),
                    f["timing"].as_str().unwrap_or(""),
                    on.join(","),
                    f["source"].as_str().unwrap_or(""),
                    if f["active"] == false {
                        " (inactive)"
                    } else {
                        ""
                    }
                );
            }
            Ok(0)
        }
        FlowsCommand::Show(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let body = conn
                .json(
                    Method::GET,
                    &format!("/conflux/flows/{}", a.name),
                    None,
                    &format!("reading flow {}", a.name),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(0)
        }
        FlowsCommand::Put(a) => {
            let name = a.put("flows", "flow").await?;
            println!("flow {name} saved");
            Ok(0)
        }
        FlowsCommand::Delete(a) => {
            let conn = Conn::connect(&a.conn).await?;
            conn.json(
                Method::DELETE,
                &format!("/conflux/flows/{}", a.name),
                None,
                &format!("deleting flow {}", a.name),
            )
            .await?;
            println!("flow {} deleted", a.name);
            Ok(0)
        }
        FlowsCommand::Faults(a) => {
            let conn = Conn::connect(&a.conn).await?;
            let body = conn
                .json(
                    Method::GET,
                    &format!("/conflux/flow-faults?limit={}", a.limit),
                    None,
                    "reading flow faults",
                )
                .await?;
            for f in body["faults"].as_array().cloned().unwrap_or_default() {
                println!("{f}");
            }
            Ok(0)
        }
    }
}

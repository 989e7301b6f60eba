//! `conflux delivery list|retry|requeue|purge`: the delivery queue (Outbound Messages,
//! webhooks) from the terminal — what is queued, failing or dead-lettered, with attempts and
//! last errors; send failed ones again now, bring dead ones back, or drop them.

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::remote::{Conn, ConnArgs};

/// Delivery queue commands.
#[derive(Debug, clap::Subcommand)]
pub enum DeliveryCommand {
    /// List notifications (a table; --json for one JSON object per line).
    List(ListArgs),
    /// Attempt queued (failing) notifications again now.
    Retry(ChangeArgs),
    /// Return dead-lettered notifications to the queue with a fresh expiry.
    Requeue(ChangeArgs),
    /// Remove notifications for good.
    Purge(ChangeArgs),
}

/// `delivery list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// queued, failed, dead or all.
    #[arg(long, default_value = "all")]
    pub state: String,
    /// Only this endpoint (URL).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only this action (Outbound Message or webhook name).
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `delivery retry|requeue|purge`.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// Notification ids (`04l…`); without them, --state/--endpoint/--action select.
    pub ids: Vec<String>,
    /// failed, dead, queued or all.
    #[arg(long)]
    pub state: Option<String>,
    /// Only this endpoint (URL).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only this action.
    #[arg(long)]
    pub action: Option<String>,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs a delivery command.
pub async fn run(cmd: DeliveryCommand) -> Result<i32> {
    match cmd {
        DeliveryCommand::List(a) => list(a).await,
        DeliveryCommand::Retry(a) => change(a, "requeue", "failed", "retried").await,
        DeliveryCommand::Requeue(a) => change(a, "requeue", "dead", "requeued").await,
        DeliveryCommand::Purge(a) => change(a, "purge", "", "purged").await,
    }
}

async fn list(a: ListArgs) -> Result<i32> {
    let conn = Conn::connect(&a.conn).await?;
    let mut url = reqwest::Url::parse("http://x/conflux/deliveries")?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("state", &a.state)
            .append_pair("limit", &a.limit.to_string());
        if let Some(e) = &a.endpoint {
            q.append_pair("endpoint", e);
        }
        if let Some(x) = &a.action {
            q.append_pair("action", x);
        }
    }
    let path = format!("/conflux/deliveries?{}", url.query().unwrap_or(""));
    let body = conn
        .json(Method::GET, &path, None, "listing the delivery queue")
        .await?;
    let items = body["deliveries"].as_array().cloned().unwrap_or_default();
    if a.json {
        for d in &items {
            println!("{d}");
        }
        return Ok(0);
    }
    if items.is_empty() {
        eprintln!("no notifications match");
        return Ok(0);
    }
    println!(
        "{:<18}  {:<8}  {:<6}  {:>8}  {:<24}  {:<24}  LAST ERROR",
        "ID", "KIND", "STATE", "ATTEMPTS", "ACTION", "NEXT ATTEMPT"
    );
    for d in &items {
        let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<18}  {:<8}  {:<6}  {:>8}  {:<24}  {:<24}  {}",
            s("id"),
            s("kind"),
            s("state"),
            d["attempts"].as_u64().unwrap_or(0),
            s("action"),
            s("nextAttemptDate"),
            s("lastError")
        );
    }
    if body["nextAfter"].is_string() {
        eprintln!("(more: raise --limit or narrow with --state/--endpoint/--action)");
    }
    Ok(0)
}

async fn change(a: ChangeArgs, verb: &str, default_state: &str, done: &str) -> Result<i32> {
    let mut body = json!({});
    if !a.ids.is_empty() {
        body["ids"] = json!(a.ids);
    } else {
        let state = a
            .state
            .clone()
            .or_else(|| (!default_state.is_empty()).then(|| default_state.to_string()));
        if state.is_none() && a.endpoint.is_none() && a.action.is_none() {
            bail!("say which notifications: ids, or --state/--endpoint/--action");
        }
        body["state"] = json!(state);
        body["endpoint"] = json!(a.endpoint);
        body["action"] = json!(a.action);
    }
    let conn = Conn::connect(&a.conn).await?;
    let reply: Value = conn
        .json(
            Method::POST,
            &format!("/conflux/deliveries/{verb}"),
            Some(&body),
            &format!("{verb} notifications"),
        )
        .await?;
    let key = if verb == "purge" {
        "purged"
    } else {
        "requeued"
    };
    println!("{} notifications {done}", reply[key].as_u64().unwrap_or(0));
    Ok(0)
}

//! `conflux events tail` and `conflux events publish`: watch a Streaming API channel from the
//! terminal (one JSON line per event) and publish platform events, against this server or any
//! Salesforce-compatible org.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::remote::{check, Conn, ConnArgs};

/// Event commands.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print the events of a channel as they arrive, one JSON object per line.
    Tail(TailArgs),
    /// Publish a platform event.
    Publish(PublishArgs),
}

/// `events tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The channel: `/event/Name__e` (a bare `Name__e` means the same), `/data/AccountChangeEvent`,
    /// `/data/ChangeEvents`, `/topic/Name`.
    pub channel: String,
    /// Where to start: -1 new events only, -2 every retained event, or a replay id (start after it).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub replay: i64,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `events publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The platform event type, e.g. `Low_Ink__e`.
    pub event: String,
    /// The event's fields as a JSON object, e.g. '{"Printer_Model__c": "XZO-5"}'.
    #[arg(long, default_value = "{}")]
    pub json: String,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs an events command.
pub async fn run(cmd: EventsCommand) -> Result<i32> {
    match cmd {
        EventsCommand::Tail(a) => tail(a).await,
        EventsCommand::Publish(a) => publish(a).await,
    }
}

async fn publish(a: PublishArgs) -> Result<i32> {
    let fields: Value = serde_json::from_str(&a.json)
        .with_context(|| format!("--json is not valid JSON: {}", a.json))?;
    if !fields.is_object() {
        bail!("--json must be a JSON object of field values");
    }
    let conn = Conn::connect(&a.conn).await?;
    let resp = conn
        .http
        .post(conn.data(&format!("/sobjects/{}", a.event)))
        .bearer_auth(&conn.token)
        .json(&fields)
        .send()
        .await
        .context("cannot reach the org")?;
    let body: Value = check(resp, &format!("publishing {}", a.event))
        .await?
        .json()
        .await?;
    let uuid = body["errors"][0]["message"].as_str().unwrap_or("");
    println!("published {} (EventUuid {uuid})", a.event);
    Ok(0)
}

/// A Bayeux long-polling session.
struct Bayeux {
    conn: Conn,
    url: String,
    client_id: String,
    n: u64,
}

impl Bayeux {
    async fn send(&mut self, mut messages: Vec<Value>) -> Result<Vec<Value>> {
        for m in &mut messages {
            self.n += 1;
            m["id"] = json!(self.n.to_string());
            if !self.client_id.is_empty() {
                m["clientId"] = json!(self.client_id);
            }
        }
        let resp = self
            .conn
            .http
            .request(Method::POST, &self.url)
            .bearer_auth(&self.conn.token)
            .json(&messages)
            .timeout(Duration::from_secs(180))
            .send()
            .await
            .context("cannot reach the Streaming API")?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("the Streaming API answered {status} without JSON"))?;
        body.as_array()
            .cloned()
            .ok_or_else(|| anyhow!("the Streaming API answered {body} instead of a message array"))
    }

    async fn handshake(&mut self) -> Result<()> {
        self.client_id.clear();
        let r = self
            .send(vec![json!({"channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["long-polling"]})])
            .await?;
        let reply = r.first().cloned().unwrap_or(Value::Null);
        if reply["successful"] != true {
            bail!("handshake refused: {}", failure(&reply));
        }
        self.client_id = reply["clientId"].as_str().unwrap_or_default().to_string();
        Ok(())
    }
}

fn failure(reply: &Value) -> String {
    let reason = reply["ext"]["sfdc"]["failureReason"].as_str();
    let error = reply["error"].as_str().unwrap_or("no reason given");
    match reason {
        Some(r) => format!("{error} ({r})"),
        None => error.to_string(),
    }
}

async fn tail(a: TailArgs) -> Result<i32> {
    let channel = if a.channel.starts_with('/') {
        a.channel.clone()
    } else {
        format!("/event/{}", a.channel)
    };
    let conn = Conn::connect(&a.conn).await?;
    let version = conn.version.trim_start_matches('v').to_string();
    let mut b = Bayeux {
        url: format!("{}/cometd/{version}", conn.instance),
        conn,
        client_id: String::new(),
        n: 0,
    };
    let mut replay = a.replay;
    let mut seen = 0u64;
    let mut out = tokio::io::stdout();
    'session: loop {
        b.handshake().await?;
        let r = b
            .send(vec![
                json!({"channel": "/meta/subscribe", "subscription": channel,
                "ext": {"replay": {channel.as_str(): replay}}}),
            ])
            .await?;
        let reply = r.first().cloned().unwrap_or(Value::Null);
        if reply["successful"] != true {
            bail!("cannot subscribe to {channel}: {}", failure(&reply));
        }
        eprintln!("conflux: listening on {channel} (replay from {replay}); Ctrl-C stops");
        loop {
            let msgs = b
                .send(vec![
                    json!({"channel": "/meta/connect", "connectionType": "long-polling"}),
                ])
                .await?;
            for m in &msgs {
                if m["channel"] == "/meta/connect" {
                    if m["successful"] != true {
                        if m["advice"]["reconnect"] == "handshake" {
                            continue 'session;
                        }
                        bail!("the connection was refused: {}", failure(m));
                    }
                    continue;
                }
                if m["channel"] != channel.as_str() {
                    continue;
                }
                if let Some(id) = m["data"]["event"]["replayId"].as_i64() {
                    replay = id;
                }
                let line = format!("{}\n", m["data"]);
                out.write_all(line.as_bytes()).await?;
                out.flush().await?;
                seen += 1;
                if a.count.is_some_and(|c| seen >= c) {
                    return Ok(0);
                }
            }
        }
    }
}

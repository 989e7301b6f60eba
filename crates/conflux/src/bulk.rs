//! `conflux bulk load` and `conflux bulk export`: move CSV data in and out of an org through
//! Bulk API 2.0, with progress bars, against this server or any Salesforce-compatible org.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::remote::{check, Conn, ConnArgs};

/// Bulk data commands.
#[derive(Debug, clap::Subcommand)]
pub enum BulkCommand {
    /// Insert, update, upsert or delete records from a CSV file (first row: field API names).
    Load(LoadArgs),
    /// Run a SOQL query and write the result to a CSV file.
    Export(ExportArgs),
}

/// Operations of a load.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Operation {
    /// Create new records.
    Insert,
    /// Change records named by an `Id` column.
    Update,
    /// Insert or update by an external ID (--external-id).
    Upsert,
    /// Delete records named by an `Id` column (recycle bin).
    Delete,
    /// Delete records for good.
    HardDelete,
}

impl Operation {
    fn wire(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
            Operation::HardDelete => "hardDelete",
        }
    }
}

/// Column delimiters of Bulk API 2.0.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Delimiter {
    /// `,`
    Comma,
    /// `;`
    Semicolon,
    /// `|`
    Pipe,
    /// Tab.
    Tab,
    /// `^`
    Caret,
    /// `` ` ``
    Backquote,
}

impl Delimiter {
    fn wire(self) -> &'static str {
        match self {
            Delimiter::Comma => "COMMA",
            Delimiter::Semicolon => "SEMICOLON",
            Delimiter::Pipe => "PIPE",
            Delimiter::Tab => "TAB",
            Delimiter::Caret => "CARET",
            Delimiter::Backquote => "BACKQUOTE",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Pipe => b'|',
            Delimiter::Tab => b'\t',
            Delimiter::Caret => b'^',
            Delimiter::Backquote => b'`',
        }
    }
}

/// `conflux bulk load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The object to load (API name, e.g. Account or Invoice__c).
    #[arg(long)]
    pub object: String,
    /// What to do with each row.
    #[arg(long, value_enum)]
    pub operation: Operation,
    /// The CSV file.
    #[arg(long)]
    pub file: PathBuf,
    /// External ID field for upserts.
    #[arg(long)]
    pub external_id: Option<String>,
    /// The file's column delimiter.
    #[arg(long, value_enum, default_value = "comma")]
    pub delimiter: Delimiter,
    /// Line endings of the file are CRLF.
    #[arg(long)]
    pub crlf: bool,
    /// Where to save the result files (default: ./bulk-results/<job id>).
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `conflux bulk export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The SOQL query.
    #[arg(long)]
    pub query: String,
    /// Include deleted records (queryAll).
    #[arg(long)]
    pub all: bool,
    /// The CSV file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per results page.
    #[arg(long, default_value_t = 50_000)]
    pub page_size: u64,
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Exit status when every row succeeded (0), some rows failed (2).
pub async fn run(cmd: BulkCommand) -> Result<i32> {
    match cmd {
        BulkCommand::Load(a) => load(a).await,
        BulkCommand::Export(a) => export(a).await,
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

fn count_rows(path: &Path, delimiter: u8) -> Result<(u64, Vec<String>)> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .context("the file has no header row")?
        .iter()
        .map(str::to_string)
        .collect();
    let mut n = 0u64;
    let mut rec = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut rec)
        .with_context(|| format!("{} is not valid CSV", path.display()))?
    {
        n += 1;
    }
    Ok((n, header))
}

async fn load(a: LoadArgs) -> Result<i32> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("checking {}", a.file.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let file = a.file.clone();
    let delim = a.delimiter.byte();
    let (rows, header) = tokio::task::spawn_blocking(move || count_rows(&file, delim)).await??;
    spinner.finish_and_clear();
    if matches!(a.operation, Operation::Upsert) && a.external_id.is_none() {
        bail!("--operation upsert needs --external-id FIELD");
    }
    if matches!(
        a.operation,
        Operation::Update | Operation::Delete | Operation::HardDelete
    ) && !header.iter().any(|h| h.eq_ignore_ascii_case("Id"))
    {
        bail!(
            "{} needs an Id column in {}",
            a.operation.wire(),
            a.file.display()
        );
    }
    let conn = Conn::connect(&a.conn).await?;
    let mut job = json!({"object": a.object, "operation": a.operation.wire(), "contentType": "CSV", "columnDelimiter": a.delimiter.wire(), "lineEnding": if a.crlf { "CRLF" } else { "LF" }});
    if let Some(ext) = &a.external_id {
        job["externalIdFieldName"] = json!(ext);
    }
    let created = conn
        .json(Method::POST, "/jobs/ingest", Some(&job), "creating the job")
        .await?;
    let id = created["id"]
        .as_str()
        .context("the job has no id")?
        .to_string();
    eprintln!(
        "job {id}: {} {} rows into {}",
        a.operation.wire(),
        rows,
        a.object
    );

    // Upload, streaming the file with a byte progress bar.
    let size = tokio::fs::metadata(&a.file).await?.len();
    let up = bar(
        size,
        "upload  [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
    );
    let f = tokio::fs::File::open(&a.file).await?;
    let counter = up.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(move |chunk| {
        if let Ok(c) = &chunk {
            counter.inc(c.len() as u64);
        }
        chunk
    });
    let resp = conn
        .request(
            Method::PUT,
            &conn.data(&format!("/jobs/ingest/{id}/batches")),
        )
        .header("Content-Type", "text/csv")
        .header("Content-Length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    let uploaded = match resp {
        Ok(r) => check(r, "uploading the file").await.map(|_| ()),
        Err(e) => Err(anyhow::Error::new(e).context("uploading the file")),
    };
    if let Err(e) = uploaded {
        up.abandon();
        let _ = conn
            .json(
                Method::PATCH,
                &format!("/jobs/ingest/{id}"),
                Some(&json!({"state": "Aborted"})),
                "aborting the job",
            )
            .await;
        return Err(e);
    }
    up.finish_and_clear();
    conn.json(
        Method::PATCH,
        &format!("/jobs/ingest/{id}"),
        Some(&json!({"state": "UploadComplete"})),
        "closing the job",
    )
    .await?;

    // Processing, from the job's counters.
    let pb = bar(rows, "process [{bar:40}] {pos}/{len} rows  {msg}");
    let info = loop {
        let info = conn
            .json(
                Method::GET,
                &format!("/jobs/ingest/{id}"),
                None,
                "reading the job",
            )
            .await?;
        pb.set_position(info["numberRecordsProcessed"].as_u64().unwrap_or(0));
        let failed = info["numberRecordsFailed"].as_u64().unwrap_or(0);
        pb.set_message(if failed > 0 {
            format!("{failed} failed")
        } else {
            String::new()
        });
        match info["state"].as_str().unwrap_or("") {
            "JobComplete" | "Failed" | "Aborted" => break info,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    pb.finish_and_clear();

    let dir = a
        .results_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("bulk-results").join(&id));
    tokio::fs::create_dir_all(&dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (resource, name) in [
        ("successfulResults", "success.csv"),
        ("failedResults", "failed.csv"),
        ("unprocessedrecords", "unprocessed.csv"),
    ] {
        let resp = conn
            .request(
                Method::GET,
                &conn.data(&format!("/jobs/ingest/{id}/{resource}")),
            )
            .header("Accept", "text/csv")
            .send()
            .await?;
        let mut resp = check(resp, &format!("downloading {resource}")).await?;
        let mut out = tokio::fs::File::create(dir.join(name)).await?;
        while let Some(chunk) = resp.chunk().await? {
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
    }
    let state = info["state"].as_str().unwrap_or("");
    let processed = info["numberRecordsProcessed"].as_u64().unwrap_or(0);
    let failed = info["numberRecordsFailed"].as_u64().unwrap_or(0);
    println!(
        "job {id}: {state}. {} rows succeeded, {failed} failed, {} not processed.",
        processed.saturating_sub(failed),
        rows.saturating_sub(processed)
    );
    println!(
        "results: {}/success.csv, failed.csv, unprocessed.csv",
        dir.display()
    );
    if state == "Failed" {
        bail!(
            "the job failed: {}",
            info["errorMessage"].as_str().unwrap_or("no reason given")
        );
    }
    if failed > 0 {
        print_error_summary(&dir.join("failed.csv"))?;
        return Ok(2);
    }
    Ok(0)
}

/// Prints the most frequent errors of a failedResults file.
fn print_error_summary(path: &Path) -> Result<()> {
    let mut reader = csv::Reader::from_path(path)?;
    let col = reader.headers()?.iter().position(|h| h == "sf__Error");
    let Some(col) = col else { return Ok(()) };
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for rec in reader.records() {
        let rec = rec?;
        let err = rec.get(col).unwrap_or("");
        let key = err.split(" --").next().unwrap_or(err).trim().to_string();
        *counts.entry(key).or_default() += 1;
    }
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    println!("most frequent errors:");
    for (err, n) in top.iter().take(5) {
        println!("  {n:>7}  {err}");
    }
    Ok(())
}

async fn export(a: ExportArgs) -> Result<i32> {
    let conn = Conn::connect(&a.conn).await?;
    let job = json!({"operation": if a.all { "queryAll" } else { "query" }, "query": a.query, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"});
    let created = conn
        .json(
            Method::POST,
            "/jobs/query",
            Some(&job),
            "creating the query job",
        )
        .await?;
    let id = created["id"]
        .as_str()
        .context("the job has no id")?
        .to_string();
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(120));
    let info = loop {
        let info = conn
            .json(
                Method::GET,
                &format!("/jobs/query/{id}"),
                None,
                "reading the query job",
            )
            .await?;
        let state = info["state"].as_str().unwrap_or("").to_string();
        spinner.set_message(format!("job {id}: {state}"));
        match state.as_str() {
            "JobComplete" | "Failed" | "Aborted" => break info,
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    spinner.finish_and_clear();
    if info["state"] != "JobComplete" {
        bail!(
            "the query job ended {}: {}",
            info["state"].as_str().unwrap_or(""),
            info["errorMessage"].as_str().unwrap_or("no reason given")
        );
    }
    let total = info["numberRecordsProcessed"].as_u64().unwrap_or(0);
    let pb = bar(total, "export  [{bar:40}] {pos}/{len} rows");
    let mut out = tokio::fs::File::create(&a.out)
        .await
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut locator: Option<String> = None;
    let mut first = true;
    let mut written = 0u64;
    loop {
        let mut url = format!(
            "{}?maxRecords={}",
            conn.data(&format!("/jobs/query/{id}/results")),
            a.page_size
        );
        if let Some(l) = &locator {
            url.push_str(&format!("&locator={l}"));
        }
        let resp = check(
            conn.request(Method::GET, &url)
                .header("Accept", "text/csv")
                .send()
                .await?,
            "downloading results",
        )
        .await?;
        let next = resp
            .headers()
            .get("Sforce-Locator")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let n: u64 = resp
            .headers()
            .get("Sforce-NumberOfRecords")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp.bytes().await?;
        // Every page is a whole CSV with its header; keep the header of the first one only.
        let skip = if first {
            0
        } else {
            body.iter()
                .position(|b| *b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(body.len())
        };
        out.write_all(&body[skip..]).await?;
        first = false;
        written += n;
        pb.set_position(written);
        match next.as_deref() {
            None | Some("null") | Some("") => break,
            Some(l) => locator = Some(l.to_string()),
        }
    }
    out.flush().await?;
    pb.finish_and_clear();
    println!("exported {written} rows to {}", a.out.display());
    Ok(0)
}

//! The `conflux` binary: `conflux serve` runs the org and every surface; `conflux bulk` moves
//! CSV data in and out of any Salesforce-compatible org.

mod bulk;
mod delivery;
mod events;
mod flows;
mod remote;
mod sync;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// mimalloc: request handling allocates many small objects from several threads, where it is
/// markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Conflux: a self-hosted integration platform that speaks the Salesforce API.
#[derive(Debug, Parser)]
#[command(name = "conflux", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the org, its REST/SOAP/OAuth surfaces) on the embedded SQLite store.
    Serve(ServeArgs),
    /// Load CSV files into an org and export query results, through Bulk API 2.0.
    #[command(subcommand)]
    Bulk(bulk::BulkCommand),
    /// Watch a Streaming API channel, publish platform events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// The delivery queue: list, retry, requeue and purge Outbound Messages and webhooks.
    #[command(subcommand)]
    Delivery(delivery::DeliveryCommand),
    /// Flows: list, show, put, delete, and the fault log.
    #[command(subcommand)]
    Flows(flows::FlowsCommand),
    /// Sync jobs: list, put, run (with progress), status, errors, reset.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Data directory: the database, generated TLS certificates, and an optional `metadata/` folder.
    #[arg(long = "data", env = "CONFLUX_DATA", default_value = "conflux-data")]
    data: PathBuf,
    /// Plain HTTP address (`host:port`, port 0 picks one; `off` disables).
    #[arg(long, env = "CONFLUX_HTTP", default_value = "127.0.0.1:8080")]
    http: String,
    /// HTTPS address (`host:port`, port 0 picks one; `off` disables).
    #[arg(long, env = "CONFLUX_HTTPS", default_value = "127.0.0.1:8443")]
    https: String,
    /// Pub/Sub API address (gRPC over TLS, with the HTTPS certificate; port 0 picks one; `off`
    /// disables).
    #[arg(long, env = "CONFLUX_GRPC", default_value = "127.0.0.1:7443")]
    grpc: String,
    /// Seconds a Pub/Sub subscription stays silent before a keep-alive response (at most 270).
    #[arg(long, env = "CONFLUX_PUBSUB_KEEPALIVE", default_value_t = 60)]
    pubsub_keepalive: u64,
    /// TLS certificate chain (PEM). Without it a local CA and certificate are generated.
    #[arg(long, env = "CONFLUX_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-cert.
    #[arg(long, env = "CONFLUX_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Metadata folder to apply at start (default: DATA/metadata when it exists).
    #[arg(long, env = "CONFLUX_METADATA")]
    metadata: Option<PathBuf>,
    /// Public base URL used in links (default: derived from each request's Host header).
    #[arg(long, env = "CONFLUX_PUBLIC_URL")]
    public_url: Option<String>,
    /// Idle seconds before a session expires.
    #[arg(long, env = "CONFLUX_SESSION_TIMEOUT", default_value_t = 7200)]
    session_timeout: i64,
    /// API requests allowed per rolling 24 hours.
    #[arg(long, env = "CONFLUX_DAILY_API_REQUESTS", default_value_t = 5_000_000)]
    daily_api_requests: u64,
    /// Concurrent requests allowed to run longer than 20 seconds.
    #[arg(long, env = "CONFLUX_MAX_LONG_REQUESTS", default_value_t = 25)]
    max_long_requests: usize,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "CONFLUX_MAX_BODY", default_value_t = 32 * 1024 * 1024)]
    max_body: usize,
    /// Hours events (platform events, change events) stay available for replay.
    #[arg(long, env = "CONFLUX_EVENT_RETENTION_HOURS", default_value_t = 72)]
    event_retention_hours: u64,
    /// Streaming API (CometD) clients connected at once, at most.
    #[arg(long, env = "CONFLUX_STREAMING_MAX_CLIENTS", default_value_t = 2000)]
    streaming_max_clients: usize,
    /// Seconds a Streaming API connect is held open when no event arrives.
    #[arg(long, env = "CONFLUX_STREAMING_TIMEOUT", default_value_t = 110)]
    streaming_timeout: u64,
    /// Milliseconds before the first retry of a failed delivery (each further failure doubles it).
    #[arg(long, env = "CONFLUX_DELIVERY_RETRY_BASE_MS", default_value_t = 30_000)]
    delivery_retry_base_ms: u64,
    /// Longest wait between two delivery attempts, in milliseconds (default 2 hours).
    #[arg(
        long,
        env = "CONFLUX_DELIVERY_RETRY_CAP_MS",
        default_value_t = 7_200_000
    )]
    delivery_retry_cap_ms: u64,
    /// Seconds an undelivered notification is retried before it goes to the dead-letter queue
    /// (default 24 hours, at most 7 days).
    #[arg(long, env = "CONFLUX_DELIVERY_EXPIRY_SECS", default_value_t = 86_400)]
    delivery_expiry_secs: u64,
    /// Milliseconds a receiver has to answer one delivery.
    #[arg(long, env = "CONFLUX_DELIVERY_TIMEOUT_MS", default_value_t = 60_000)]
    delivery_timeout_ms: u64,
    /// Messages in flight to one endpoint at a time.
    #[arg(long, env = "CONFLUX_DELIVERY_CONCURRENCY", default_value_t = 8)]
    delivery_concurrency: usize,
}

fn delivery_policy(a: &ServeArgs) -> Result<server::DeliveryPolicy> {
    use std::time::Duration;
    let expiry = Duration::from_secs(a.delivery_expiry_secs.max(1));
    if expiry > server::MAX_DELIVERY_EXPIRY {
        anyhow::bail!(
            "--delivery-expiry-secs {} is longer than 7 days ({} s); choose a shorter expiry",
            a.delivery_expiry_secs,
            server::MAX_DELIVERY_EXPIRY.as_secs()
        );
    }
    Ok(server::DeliveryPolicy {
        base: Duration::from_millis(a.delivery_retry_base_ms.max(1)),
        cap: Duration::from_millis(a.delivery_retry_cap_ms.max(a.delivery_retry_base_ms).max(1)),
        expiry,
        timeout: Duration::from_millis(a.delivery_timeout_ms.clamp(1, 120_000)),
        concurrency: a.delivery_concurrency.clamp(1, 256),
        ..Default::default()
    })
}

fn addr(s: &str) -> Option<String> {
    (!s.eq_ignore_ascii_case("off") && !s.is_empty()).then(|| s.to_string())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn serve(a: ServeArgs) -> Result<()> {
    let mut org = service::OrgConfig {
        session_timeout_secs: a.session_timeout.max(1),
        daily_api_requests: a.daily_api_requests,
        max_concurrent_long_requests: a.max_long_requests.max(1),
        max_json_body: a.max_body.max(1024),
        event_retention_hours: a.event_retention_hours.max(1),
        streaming_max_clients: a.streaming_max_clients,
        streaming_timeout_ms: a.streaming_timeout.clamp(1, 3600) * 1000,
        ..Default::default()
    };
    if let Some(n) = env("CONFLUX_LOCKOUT_ATTEMPTS").and_then(|v| v.parse().ok()) {
        org.lockout_attempts = n;
    }
    let client_cert_pem = match env("CONFLUX_CLIENT_CERT_FILE") {
        Some(p) => Some(
            std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("CONFLUX_CLIENT_CERT_FILE {p}: {e}"))?,
        ),
        None => None,
    };
    let delivery = delivery_policy(&a)?;
    org.delivery_expiry_ms = delivery.expiry.as_millis() as i64;
    let cfg = server::ServerConfig {
        data_dir: a.data,
        http: addr(&a.http),
        https: addr(&a.https),
        grpc: addr(&a.grpc),
        pubsub: server::PubSubOptions {
            keepalive: std::time::Duration::from_secs(a.pubsub_keepalive.clamp(1, 270)),
        },
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        metadata_dir: a.metadata,
        public_url: a.public_url,
        org,
        bootstrap: service::bootstrap::BootstrapConfig {
            admin_username: env("CONFLUX_ADMIN_USERNAME"),
            admin_password: env("CONFLUX_ADMIN_PASSWORD"),
            client_id: env("CONFLUX_CLIENT_ID"),
            client_secret: env("CONFLUX_CLIENT_SECRET"),
            client_cert_pem,
            org_name: env("CONFLUX_ORG_NAME"),
        },
        drain_secs: 10,
        delivery,
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("conflux: shutting down");
        trigger.cancel();
    });
    server::run(cfg, shutdown).await
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONFLUX_LOG")
                // rustls warns about every client that sends an IP address as its TLS server
                // name (gRPC clients connecting to 127.0.0.1 do); that is not the operator's
                // concern.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rustls=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(a) => rt.block_on(serve(a)).map_err(|e| {
            eprintln!("conflux: {e:#}");
            e
        }),
        Command::Events(cmd) => match rt.block_on(events::run(cmd)) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("conflux: {e:#}");
                std::process::exit(1);
            }
        },
        Command::Flows(cmd) => match rt.block_on(flows::run(cmd)) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("conflux: {e:#}");
                std::process::exit(1);
            }
        },
        Command::Sync(cmd) => match rt.block_on(sync::run(cmd)) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("conflux: {e:#}");
                std::process::exit(1);
            }
        },
        Command::Delivery(cmd) => match rt.block_on(delivery::run(cmd)) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("conflux: {e:#}");
                std::process::exit(1);
            }
        },
        Command::Bulk(cmd) => match rt.block_on(bulk::run(cmd)) {
            Ok(0) => Ok(()),
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("conflux: {e:#}");
                std::process::exit(1);
            }
        },
    }
}

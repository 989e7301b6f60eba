//! Composition root: turns configuration into a running server. The only crate that names the
//! concrete backends (SQLite store) and wires every surface onto the listeners.
//!
//! Start-up prints each bound address on its own line (`http: http://127.0.0.1:8080`,
//! `https: https://127.0.0.1:8443`, `grpc: 127.0.0.1:7443`), so scripts and test harnesses can use
//! port 0.

mod listener;
pub mod tls;

pub use delivery::{Policy as DeliveryPolicy, MAX_EXPIRY as MAX_DELIVERY_EXPIRY};
pub use grpc_api::Options as PubSubOptions;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use service::bootstrap::{BootstrapConfig, Bootstrapped};
use service::{Org, OrgConfig};
use store_sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

/// Everything `conflux serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory (database, generated certificates).
    pub data_dir: PathBuf,
    /// Plain HTTP listen address, if any.
    pub http: Option<String>,
    /// HTTPS listen address, if any.
    pub https: Option<String>,
    /// Pub/Sub API (gRPC over TLS) listen address, if any.
    pub grpc: Option<String>,
    /// How the Pub/Sub API behaves.
    pub pubsub: grpc_api::Options,
    /// Operator-supplied certificate chain (PEM); generated when absent.
    pub tls_cert: Option<PathBuf>,
    /// Operator-supplied private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Metadata folder applied at start (custom objects and fields, connected apps).
    pub metadata_dir: Option<PathBuf>,
    /// Fixed public base URL for links (`https://conflux.example.com`).
    pub public_url: Option<String>,
    /// Org settings.
    pub org: OrgConfig,
    /// First-start values.
    pub bootstrap: BootstrapConfig,
    /// Seconds to wait for open connections at shutdown.
    pub drain_secs: u64,
    /// How notifications of the delivery queue are retried and expire.
    pub delivery: delivery::Policy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("conflux-data"),
            http: Some("127.0.0.1:8080".into()),
            https: Some("127.0.0.1:8443".into()),
            grpc: Some("127.0.0.1:7443".into()),
            pubsub: grpc_api::Options::default(),
            tls_cert: None,
            tls_key: None,
            metadata_dir: None,
            public_url: None,
            org: OrgConfig::default(),
            bootstrap: BootstrapConfig::default(),
            drain_secs: 10,
            delivery: delivery::Policy::default(),
        }
    }
}

/// What start-up tells the operator.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn print_bootstrap(b: &Bootstrapped, org: &Org) {
    if b.created {
        say(&format!(
            "conflux: created org {} with admin user {}",
            org.org_id().to_18(),
            b.admin_username
        ));
        if let Some(p) = &b.generated_password {
            say(&format!("conflux: admin password: {p}  (shown once; set CONFLUX_ADMIN_PASSWORD to choose it)"));
        }
        say(&format!(
            "conflux: connected app client id: {}",
            b.client_id
        ));
        if let Some(s) = &b.generated_secret {
            say(&format!("conflux: connected app client secret: {s}  (shown once; set CONFLUX_CLIENT_SECRET to choose it)"));
        }
    } else {
        say(&format!(
            "conflux: org {} (admin user {})",
            org.org_id().to_18(),
            b.admin_username
        ));
    }
}

/// Runs the server until `shutdown` is cancelled.
pub async fn run(cfg: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            cfg.data_dir.display()
        )
    })?;
    let db = cfg.data_dir.join("conflux.db");
    let store = SqliteStore::open(&db, store_sqlite::Options::default())
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", db.display()))?;
    let org = Org::new(store.clone(), cfg.org.clone());
    let boot = service::bootstrap::ensure(&org, cfg.bootstrap.clone())
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap failed: {}", e.message))?;
    say(&format!(
        "conflux: data directory {}",
        cfg.data_dir.display()
    ));
    print_bootstrap(&boot, &org);
    let metadata_dir = cfg
        .metadata_dir
        .clone()
        .or_else(|| Some(cfg.data_dir.join("metadata")).filter(|d| d.is_dir()));
    if let Some(dir) = &metadata_dir {
        let applied = org
            .apply_metadata_dir(dir)
            .await
            .map_err(|e| anyhow::anyhow!("metadata folder {}: {e}", dir.display()))?;
        say(&format!(
            "conflux: metadata {}: {} objects, {} fields, {} connected apps applied",
            dir.display(),
            applied.objects.len(),
            applied.fields.len(),
            applied.apps.len()
        ));
    }

    // Flows (metadata/flows/*.yaml) react to record writes; what they queue is drained by the
    // delivery engine (started below, once the listeners' addresses are known).
    let secret_key = secret_key(&cfg.data_dir)?;
    let automation =
        automation::Automation::new(org.store().marker(), cfg.delivery.expiry, &secret_key);
    let flows_dir = metadata_dir
        .as_ref()
        .map(|d| d.join("flows"))
        .filter(|d| d.is_dir());
    let (from_files, from_api) = automation
        .load(&org, flows_dir.as_deref())
        .map_err(|e| anyhow::anyhow!("flows: {e}"))?;
    if from_files + from_api > 0 {
        say(&format!(
            "conflux: flows: {from_files} from files, {from_api} from the API"
        ));
    }
    org.set_automation(automation.clone());
    org.set_triggers(automation.clone());

    // Sync jobs (metadata/sync/*.yaml and the admin API), run on demand.
    let sync_jobs = sync::Engine::new(automation.clone(), cfg.data_dir.join("files"));
    let sync_dir = metadata_dir
        .as_ref()
        .map(|d| d.join("sync"))
        .filter(|d| d.is_dir());
    let n = sync_jobs
        .load(&org, sync_dir.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("sync jobs: {e}"))?;
    if n > 0 {
        say(&format!("conflux: sync jobs: {n}"));
    }
    org.set_sync(sync_jobs.clone());

    // Bulk API jobs: files under <data>/bulk, processed in the background (below); installed
    // before serving so interrupted jobs' leftovers are cleaned up first.
    let bulk = service::bulk::Bulk::install(
        org.clone(),
        cfg.data_dir.join("bulk"),
        service::bulk::Options::default(),
    )
    .with_context(|| format!("cannot create {}", cfg.data_dir.join("bulk").display()))?;

    let state = http_api::AppState {
        org: org.clone(),
        public_url: cfg.public_url.clone(),
        streaming: Arc::default(),
    };
    let app = http_api::router(state);
    let drain = Duration::from_secs(cfg.drain_secs);
    let mut tasks = tokio::task::JoinSet::new();
    let mut base_url = cfg.public_url.clone();
    if let Some(addr) = &cfg.http {
        let (l, local) = listener::bind(addr).await?;
        say(&format!("http: http://{}", display_addr(local)));
        say(&format!(
            "conflux: console at http://{}/ (log in with any user of the org)",
            display_addr(local)
        ));
        base_url.get_or_insert_with(|| format!("http://{}", display_addr(local)));
        tasks.spawn(listener::serve(
            l,
            None,
            app.clone(),
            shutdown.clone(),
            drain,
        ));
    }
    let tls = if cfg.https.is_some() || cfg.grpc.is_some() {
        let files = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => tls::CertFiles {
                ca: None,
                cert: c.clone(),
                key: k.clone(),
                generated: false,
            },
            (None, None) => tls::ensure_local_certs(&cfg.data_dir.join("tls"), &[])?,
            _ => anyhow::bail!("--tls-cert and --tls-key must be given together"),
        };
        if let Some(ca) = &files.ca {
            say(&format!(
                "conflux: CA certificate {}{}",
                ca.display(),
                if files.generated {
                    " (generated; trust it in your clients)"
                } else {
                    ""
                }
            ));
        }
        Some(tls::server_config(&files.cert, &files.key)?)
    } else {
        None
    };
    if let (Some(addr), Some(config)) = (&cfg.https, &tls) {
        let (l, local) = listener::bind(addr).await?;
        say(&format!("https: https://{}", display_addr(local)));
        base_url = Some(
            cfg.public_url
                .clone()
                .unwrap_or_else(|| format!("https://{}", display_addr(local))),
        );
        tasks.spawn(listener::serve(
            l,
            Some(config.clone()),
            app.clone(),
            shutdown.clone(),
            drain,
        ));
    }
    if let (Some(addr), Some(config)) = (&cfg.grpc, &tls) {
        let (l, local) = listener::bind(addr).await?;
        say(&format!("grpc: {}", display_addr(local)));
        tasks.spawn(listener::serve(
            l,
            Some(config.clone()),
            grpc_api::router(org.clone(), cfg.pubsub.clone()),
            shutdown.clone(),
            drain,
        ));
    }
    if tasks.is_empty() {
        anyhow::bail!("no listener configured: give --http or --https");
    }
    let janitor = {
        let org = org.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let now = model::value::now_millis();
                        if let Err(e) = org.store().write(move |tx| Ok(tx.prune_sessions(now)?)).await {
                            tracing::warn!(error = %e.message, "session pruning failed");
                        }
                        let retention = org.config().event_retention_hours as i64 * 3_600_000;
                        match org.events().prune(retention).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(events = n, "expired events pruned"),
                            Err(e) => tracing::warn!(error = %e.message, "event pruning failed"),
                        }
                    }
                }
            }
        })
    };
    // Held Streaming API connects answer at once when the server stops.
    let bus_closer = {
        let org = org.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            org.events().close();
        })
    };
    let bulk_runner = {
        let shutdown = shutdown.clone();
        tokio::spawn(bulk.run(async move { shutdown.cancelled().await }))
    };
    let engine = delivery::Engine::new(
        org.clone(),
        cfg.delivery.clone(),
        automation.clone(),
        base_url.unwrap_or_default(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let deliveries = tokio::spawn(engine.run(shutdown.clone()));
    let faults = tokio::spawn(automation.clone().run_faults(org.clone(), shutdown.clone()));
    let event_flows = tokio::spawn(automation.run_event_flows(org.clone(), shutdown.clone()));
    let schedules = tokio::spawn(sync_jobs.run_schedules(org.clone(), shutdown.clone()));
    // The console's charts: the org's activity sampled every few seconds.
    let sampler = {
        let (org, shutdown) = (org.clone(), shutdown.clone());
        tokio::spawn(async move {
            let every = Duration::from_secs(http_api::METRICS_INTERVAL_SECS);
            loop {
                org.metrics.sample(
                    model::value::now_millis(),
                    org.events().tip(),
                    org.usage.since_start(),
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    };
    say("conflux: ready");
    while tasks.join_next().await.is_some() {}
    let _ = deliveries.await;
    let _ = faults.await;
    let _ = event_flows.await;
    let _ = schedules.await;
    let _ = sampler.await;
    let _ = janitor.await;
    let _ = bus_closer.await;
    let _ = bulk_runner.await;
    let s: Arc<SqliteStore> = store;
    tokio::task::spawn_blocking(move || s.close()).await.ok();
    say("conflux: stopped");
    Ok(())
}

/// The key that encrypts stored secrets (named credentials): `CONFLUX_SECRET_KEY` (32 bytes in
/// base64 or hex) when set, otherwise `<data>/secret.key`, generated on first start.
fn secret_key(data_dir: &std::path::Path) -> Result<[u8; 32]> {
    use base64::Engine as _;
    let decode = |text: &str, what: &str| -> Result<[u8; 32]> {
        let t = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(t)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| hex_bytes(t).filter(|b| b.len() == 32))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{what} must hold 32 bytes in base64 or hex (e.g. the output of `openssl rand -base64 32`)"
                )
            })?;
        Ok(bytes.try_into().expect("checked length"))
    };
    if let Ok(v) = std::env::var("CONFLUX_SECRET_KEY") {
        if !v.is_empty() {
            return decode(&v, "CONFLUX_SECRET_KEY");
        }
    }
    let path = data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            write_private(&path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            say(&format!(
                "conflux: secret key {} (generated; it encrypts stored credentials: back it up, or set CONFLUX_SECRET_KEY)",
                path.display()
            ));
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn hex_bytes(t: &str) -> Option<Vec<u8>> {
    if t.len() & 1 == 1 {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

fn display_addr(a: SocketAddr) -> String {
    a.to_string()
}

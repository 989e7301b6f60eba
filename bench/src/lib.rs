//! Benchmark helper binaries live in `src/bin`; `cargo xtask bench` orchestrates them (see
//! README). What several of them share lives here.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A nats-server with JetStream, started for one benchmark; killed when dropped.
pub struct Nats {
    child: Child,
    /// Its loopback port.
    pub port: u16,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nats {
    /// Starts nats-server with JetStream on a free loopback port, its file store in
    /// `dir/jetstream` (on the same filesystem as the Conflux data it is compared with).
    pub fn start(dir: &Path) -> Result<Nats> {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nats-server");
        Nats::start_with(Path::new(bin), dir, false)
    }

    /// Starts `bin` like [`Nats::start`]; with `sync_always`, JetStream syncs its files after
    /// every write (`sync_interval: always`, nats-server 2.10 and later), so an acknowledged
    /// message is on disk, as a Conflux acknowledgement is.
    pub fn start_with(bin: &Path, dir: &Path, sync_always: bool) -> Result<Nats> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = dir.join(if sync_always {
            "jetstream-synced"
        } else {
            "jetstream"
        });
        std::fs::create_dir_all(&store)?;
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        if sync_always {
            let conf = dir.join("nats-synced.conf");
            std::fs::write(
                &conf,
                format!(
                    "jetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                    store.display().to_string()
                ),
            )?;
            cmd.arg("-c").arg(&conf);
        } else {
            cmd.args(["-js", "-sd"]).arg(&store);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (apt-get install -y nats-server)",
                    bin.display()
                )
            })?;
        let nats = Nats { child, port };
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > end {
                bail!("nats-server did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nats)
    }
}

/// A REST client of a Conflux server logged in with the OAuth password flow.
pub struct Api {
    /// The HTTP client (long timeouts: benchmark calls can be big).
    pub http: reqwest::blocking::Client,
    /// The server's base URL.
    pub base: String,
    /// The access token.
    pub token: String,
}

impl Api {
    /// Logs in as `user` through the connected app `id`/`secret`.
    pub fn login(base: &str, user: &str, pass: &str, id: &str, secret: &str) -> Result<Api> {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3600))
            .build()?;
        let tok: serde_json::Value = http
            .post(format!("{base}/services/oauth2/token"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", id),
                ("client_secret", secret),
                ("username", user),
                ("password", pass),
            ])
            .send()?
            .json()?;
        let token = tok["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("login failed: {tok}"))?
            .to_string();
        Ok(Api {
            http,
            base: base.to_string(),
            token,
        })
    }

    /// The URL of `/services/data/v60.0{rest}`.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/services/data/v60.0{rest}", self.base)
    }

    /// Calls `/services/data/v60.0{rest}`; the JSON answer (null when empty), an error on any
    /// status but 2xx.
    pub fn call(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let (status, text) = self.send(method, rest, body)?;
        if !(200..300).contains(&status) {
            bail!("{rest}: HTTP {status}: {text}");
        }
        Ok(if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Calls `/services/data/v60.0{rest}`; the status and the JSON answer (null when empty or
    /// not JSON), whatever the status.
    pub fn call_status(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        let (status, text) = self.send(method, rest, body)?;
        Ok((status, serde_json::from_str(&text).unwrap_or_default()))
    }

    fn send(
        &self,
        method: reqwest::Method,
        rest: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, String)> {
        let mut req = self
            .http
            .request(method, self.url(rest))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send()?;
        let status = resp.status().as_u16();
        Ok((status, resp.text()?))
    }
}

/// Resident memory (VmRSS) of process `pid` now, in MB.
pub fn rss_mb(pid: impl std::fmt::Display) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

//! Dev-only helpers: start and stop a real `conflux serve` process on loopback for tests and
//! benchmarks, with known credentials and a JWT signing key registered on its connected app.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// Admin and connected-app credentials every harness-started server gets.
pub const USERNAME: &str = "admin@conformance.conflux";
/// The admin password.
pub const PASSWORD: &str = "Conform4nce-Passw0rd";
/// The connected app's consumer key.
pub const CLIENT_ID: &str = "3MVG9conformance.client.id";
/// The connected app's consumer secret.
pub const CLIENT_SECRET: &str = "conformance-secret-8f2b";

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub http: String,
    /// `https://127.0.0.1:port`.
    pub https: String,
    /// `127.0.0.1:port` of the Pub/Sub API (gRPC over TLS).
    pub grpc: String,
    /// The generated CA certificate.
    pub ca: PathBuf,
    /// Lines the server printed on stdout while starting, up to `conflux: ready`.
    pub startup: Vec<String>,
    /// Lines the server prints on stdout after start-up.
    pub stdout: mpsc::Receiver<String>,
    /// The data directory.
    pub data: PathBuf,
}

/// A fresh directory under the system temp dir.
pub fn scratch_dir(what: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "conflux-{what}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes an RSA key and a self-signed certificate for the JWT bearer flow; returns their paths.
pub fn jwt_key_pair(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).context("cannot generate an RSA key")?;
    let pem = key.to_pkcs8_pem(LineEnding::LF)?.to_string();
    let kp = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec!["conformance".to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "conflux conformance JWT");
    let cert = params.self_signed(&kp)?;
    let key_path = dir.join("jwt-key.pem");
    let cert_path = dir.join("jwt-cert.pem");
    std::fs::write(&key_path, pem)?;
    std::fs::write(&cert_path, cert.pem())?;
    Ok((key_path, cert_path))
}

impl Server {
    /// Starts `bin serve` on loopback with port 0 and waits until it is ready.
    pub fn start(bin: &Path, data: &Path, extra_env: &[(&str, &str)]) -> Result<Server> {
        Server::start_with(bin, data, extra_env, &[])
    }

    /// Like [`Server::start`], with extra `serve` arguments.
    pub fn start_with(
        bin: &Path,
        data: &Path,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--data"])
            .arg(data)
            .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(["--grpc", "127.0.0.1:0"])
            .args(args);
        cmd.env("CONFLUX_ADMIN_USERNAME", USERNAME)
            .env("CONFLUX_ADMIN_PASSWORD", PASSWORD)
            .env("CONFLUX_CLIENT_ID", CLIENT_ID)
            .env("CONFLUX_CLIENT_SECRET", CLIENT_SECRET);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut http, mut https, mut grpc, mut ca) = (None, None, None, None);
        let mut startup = Vec::new();
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    bail!("the server did not report ready within 60 s");
                }
            };
            if let Some(u) = line.strip_prefix("http: ") {
                http = Some(u.trim().to_string());
            } else if let Some(u) = line.strip_prefix("https: ") {
                https = Some(u.trim().to_string());
            } else if let Some(u) = line.strip_prefix("grpc: ") {
                grpc = Some(u.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("conflux: CA certificate ") {
                ca = Some(PathBuf::from(
                    rest.split(" (").next().unwrap_or(rest).trim(),
                ));
            } else if line == "conflux: ready" {
                break;
            }
            startup.push(line);
        }
        let (Some(http), Some(https), Some(grpc), Some(ca)) = (http, https, grpc, ca) else {
            let _ = child.kill();
            bail!("the server did not print its addresses and CA");
        };
        Ok(Server {
            child,
            http,
            https,
            grpc,
            ca,
            startup,
            stdout: rx,
            data: data.to_path_buf(),
        })
    }

    /// The environment variables the conformance suites read.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CONFLUX_HTTP_URL", self.http.clone()),
            ("CONFLUX_HTTPS_URL", self.https.clone()),
            ("CONFLUX_CA_FILE", self.ca.display().to_string()),
            ("CONFLUX_GRPC_ADDR", self.grpc.clone()),
            ("CONFLUX_USERNAME", USERNAME.to_string()),
            ("CONFLUX_PASSWORD", PASSWORD.to_string()),
            ("CONFLUX_CLIENT_ID", CLIENT_ID.to_string()),
            ("CONFLUX_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ]
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and waits for it to die.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM and checks it exits cleanly within 20 s.
    pub fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!("the server exited with {status} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        bail!("the server did not stop within 20 s of SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

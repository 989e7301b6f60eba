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
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {bin} (apt-get install -y nats-server)"))?;
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

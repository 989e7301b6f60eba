//! TLS: a local certificate authority and server certificate generated on first start (the Python
//! Salesforce clients only speak `https://`), or certificates the operator supplies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Where the certificate files are.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate clients should trust (None when the operator supplied the server cert).
    pub ca: Option<PathBuf>,
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// The server private key (PEM).
    pub key: PathBuf,
    /// True when the files were created now.
    pub generated: bool,
}

/// Returns the generated certificates in `dir`, creating them on first use: a CA valid for 10
/// years and a server certificate for `localhost`, `127.0.0.1` and `::1` (plus `extra_names`).
pub fn ensure_local_certs(dir: &Path, extra_names: &[String]) -> Result<CertFiles> {
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server-key.pem");
    if ca_path.exists() && cert_path.exists() && key_path.exists() {
        return Ok(CertFiles {
            ca: Some(ca_path),
            cert: cert_path,
            key: key_path,
            generated: false,
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Conflux local CA");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "Conflux");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(&ca_path, ca_cert.pem())?;
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(CertFiles {
        ca: Some(ca_path),
        cert: cert_path,
        key: key_path,
        generated: true,
    })
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    Ok(())
}

/// A rustls server configuration from PEM files (HTTP/1.1 and HTTP/2 by ALPN).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("cannot open {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{} holds no certificate", cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("cannot open {}", key.display()))?,
    ))
    .with_context(|| format!("cannot read the private key from {}", key.display()))?
    .ok_or_else(|| anyhow!("{} holds no private key", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

//! A small client for any Salesforce-compatible org (this server or Salesforce itself): logs in
//! with OAuth (password, client credentials, JWT bearer) or uses a given session, then calls
//! REST and Bulk API resources. Used by the operator commands.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use reqwest::{Method, Response};
use serde_json::Value;

/// Where the org is and how to log in to it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// The org's base URL: a Conflux server or a Salesforce instance/My Domain.
    #[arg(long, env = "CONFLUX_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Where the OAuth token endpoint lives, if not at --url (e.g. https://login.salesforce.com).
    #[arg(long, env = "CONFLUX_LOGIN_URL")]
    pub login_url: Option<String>,
    /// Username (OAuth password or JWT bearer flow).
    #[arg(long, env = "CONFLUX_USERNAME")]
    pub username: Option<String>,
    /// Password (OAuth password flow).
    #[arg(long, env = "CONFLUX_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Connected app consumer key.
    #[arg(long, env = "CONFLUX_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Connected app consumer secret (password and client-credentials flows).
    #[arg(long, env = "CONFLUX_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// RSA private key (PEM) for the JWT bearer flow, with --client-id and --username.
    #[arg(long, env = "CONFLUX_JWT_KEY")]
    pub jwt_key: Option<PathBuf>,
    /// Use an existing session (access token) instead of logging in.
    #[arg(long, env = "CONFLUX_SESSION_ID", hide_env_values = true)]
    pub session_id: Option<String>,
    /// Extra CA certificate (PEM) to trust, e.g. Conflux's generated conflux-data/tls/ca.pem.
    #[arg(long, env = "CONFLUX_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// API version to use.
    #[arg(long, default_value = "59.0")]
    pub api_version: String,
}

/// A logged-in connection.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// `scheme://host[:port]` of the instance.
    pub instance: String,
    /// The access token.
    pub token: String,
    /// `vNN.N`.
    pub version: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn jwt_assertion(key_pem: &str, client_id: &str, username: &str, audience: &str) -> Result<String> {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem)
        .or_else(|_| {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            rsa::RsaPrivateKey::from_pkcs1_pem(key_pem)
        })
        .context("the JWT key is not an RSA private key in PEM")?;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = b64(br#"{"alg":"RS256"}"#);
    let claims = serde_json::json!({"iss": client_id, "sub": username, "aud": audience, "exp": (now_secs() + 180).to_string()});
    let payload = b64(claims.to_string().as_bytes());
    let signing = format!("{header}.{payload}");
    let sig = SigningKey::<sha2::Sha256>::new(key).sign(signing.as_bytes());
    Ok(format!("{signing}.{}", b64(&sig.to_bytes())))
}

/// Turns a Salesforce error body into a readable error.
pub async fn check(resp: Response, what: &str) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let detail = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => a
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["errorCode"].as_str().unwrap_or("ERROR"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Ok(v) if v.get("error").is_some() => format!(
            "{}: {}",
            v["error"].as_str().unwrap_or(""),
            v["error_description"].as_str().unwrap_or("")
        ),
        _ => text.chars().take(300).collect(),
    };
    bail!("{what} failed ({status}): {detail}")
}

impl Conn {
    /// Logs in according to `args`: an explicit session, else JWT bearer, else the OAuth password
    /// flow, else client credentials.
    pub async fn connect(args: &ConnArgs) -> Result<Conn> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .user_agent(concat!("conflux/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &args.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read --ca-file {}", ca.display()))?;
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem)
                    .context("--ca-file is not a PEM certificate")?,
            );
        }
        let http = builder.build()?;
        let version = format!("v{}", args.api_version.trim_start_matches('v'));
        let url = args.url.trim_end_matches('/').to_string();
        if let Some(token) = &args.session_id {
            return Ok(Conn {
                http,
                instance: url,
                token: token.clone(),
                version,
            });
        }
        let login = args
            .login_url
            .clone()
            .unwrap_or_else(|| url.clone())
            .trim_end_matches('/')
            .to_string();
        let mut form: Vec<(&str, String)> = Vec::new();
        let mut basic = None;
        match (&args.jwt_key, &args.client_id, &args.username, &args.password, &args.client_secret) {
            (Some(key), Some(cid), Some(user), _, _) => {
                let pem = std::fs::read_to_string(key).with_context(|| format!("cannot read --jwt-key {}", key.display()))?;
                let aud = if login.contains(".salesforce.com") && !login.contains("test.") { "https://login.salesforce.com".to_string() } else { login.clone() };
                form.push(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()));
                form.push(("assertion", jwt_assertion(&pem, cid, user, &aud)?));
            }
            (None, Some(cid), Some(user), Some(pass), Some(secret)) => {
                form.extend([("grant_type", "password".into()), ("client_id", cid.clone()), ("client_secret", secret.clone()), ("username", user.clone()), ("password", pass.clone())]);
            }
            (None, Some(cid), None, None, Some(secret)) => {
                form.push(("grant_type", "client_credentials".into()));
                basic = Some((cid.clone(), secret.clone()));
            }
            _ => bail!(
                "no way to log in: give --session-id, or --client-id with --client-secret (client credentials), \
                 or add --username and --password (password flow), or --jwt-key with --client-id and --username"
            ),
        }
        let mut req = http
            .post(format!("{login}/services/oauth2/token"))
            .form(&form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {login}"))?;
        let body: Value = check(resp, "login").await?.json().await?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("the login answer has no access_token"))?
            .to_string();
        let instance = body["instance_url"]
            .as_str()
            .map(|s| s.trim_end_matches('/').to_string())
            .unwrap_or(url);
        Ok(Conn {
            http,
            instance,
            token,
            version,
        })
    }

    /// `instance/services/data/vNN.N` + `path`.
    pub fn data(&self, path: &str) -> String {
        format!("{}/services/data/{}{}", self.instance, self.version, path)
    }

    /// A request with the session.
    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// A JSON request; errors carry Salesforce's error codes and messages.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value> {
        let mut req = self
            .request(method, &self.data(path))
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = check(
            req.send()
                .await
                .with_context(|| format!("{what}: cannot reach {}", self.instance))?,
            what,
        )
        .await?;
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        Ok(resp.json().await.unwrap_or(Value::Null))
    }
}

/// Just the org (commands that name nothing else).
#[derive(Debug, clap::Args)]
pub struct OrgArgs {
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// A definition file and the org (`flows put`, `sync put`).
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// The file (YAML or JSON).
    pub file: PathBuf,
    /// The org.
    #[command(flatten)]
    pub conn: ConnArgs,
}

impl FileArgs {
    /// PUTs the file's document to `/conflux/{collection}/{name}` (its `name`, else the file's
    /// name without extension), saying `what` it is in errors; the name.
    pub async fn put(&self, collection: &str, what: &str) -> Result<String> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        let doc: Value = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not YAML or JSON", self.file.display()))?;
        let name = match doc["name"].as_str() {
            Some(n) => n.to_string(),
            None => self
                .file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_string(),
        };
        let conn = Conn::connect(&self.conn).await?;
        conn.json(
            Method::PUT,
            &format!("/conflux/{collection}/{name}"),
            Some(&doc),
            &format!("saving {what} {name}"),
        )
        .await?;
        Ok(name)
    }
}

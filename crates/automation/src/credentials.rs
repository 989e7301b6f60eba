//! Named Credentials: where a callout goes and how it authenticates (none, basic, bearer,
//! OAuth 2.0 client credentials with a cached token, HMAC signing, and a client certificate for
//! mutual TLS with any of them). Stored in the org with every secret encrypted (AES-256-GCM)
//! under a key the operator supplies or the server generates; the API never shows a secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{json, Map, Value as Json};

/// The setting holding the named credentials (secrets encrypted).
pub const SETTING: &str = "credentials.named";
/// Properties holding secrets, wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "password",
    "token",
    "clientSecret",
    "secret",
    "key",
    "privateKey",
];
/// What the API shows instead of a secret.
pub const REDACTED: &str = "********";

/// Encrypts and decrypts stored secrets.
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
}

impl Vault {
    /// A vault with a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Vault {
        Vault {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// `base64(nonce ‖ ciphertext)`.
    pub fn seal(&self, plain: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .expect("AES-GCM encrypts any input");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The plain text of [`Vault::seal`]'s output.
    pub fn open(&self, sealed: &str) -> Result<String, String> {
        let bytes = B64
            .decode(sealed)
            .map_err(|_| "a stored secret is damaged".to_string())?;
        if bytes.len() < 12 {
            return Err("a stored secret is damaged".into());
        }
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&bytes[..12]), &bytes[12..])
            .map_err(|_| {
                "a stored secret cannot be decrypted: the server's secret key changed".to_string()
            })?;
        String::from_utf8(plain).map_err(|_| "a stored secret is damaged".into())
    }

    /// The document with every secret sealed (`{"encrypted": …}`).
    pub fn seal_doc(&self, doc: &Json) -> Json {
        map_secrets(doc, &mut |v| match v {
            Json::String(s) => json!({ "encrypted": self.seal(s) }),
            other => other.clone(),
        })
    }

    /// The document with every sealed secret opened.
    pub fn open_doc(&self, doc: &Json) -> Result<Json, String> {
        let mut err = None;
        let out = map_secrets(
            doc,
            &mut |v| match v.get("encrypted").and_then(Json::as_str) {
                Some(s) => match self.open(s) {
                    Ok(p) => Json::String(p),
                    Err(e) => {
                        err = Some(e);
                        Json::Null
                    }
                },
                None => v.clone(),
            },
        );
        err.map_or(Ok(out), Err)
    }
}

/// The document with every secret shown as [`REDACTED`].
pub fn redact(doc: &Json) -> Json {
    map_secrets(doc, &mut |_| Json::from(REDACTED))
}

fn map_secrets(doc: &Json, f: &mut dyn FnMut(&Json) -> Json) -> Json {
    match doc {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if SECRET_KEYS.contains(&k.as_str()) && !v.is_null() {
                        f(v)
                    } else {
                        map_secrets(v, f)
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// How a credential authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Nothing.
    None,
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A fixed bearer token.
    Bearer {
        /// The token.
        token: String,
    },
    /// OAuth 2.0 client credentials; the token is cached until shortly before it expires.
    ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
        /// Scope, if any.
        scope: Option<String>,
    },
    /// OAuth 2.0 JWT bearer flow (Salesforce's server-to-server login): an RS256 assertion
    /// signed with the private key is exchanged for a token, cached like client credentials'.
    JwtBearer {
        /// The token endpoint (`https://login.salesforce.com/services/oauth2/token`).
        token_url: String,
        /// The connected app's consumer key (`iss`).
        client_id: String,
        /// The user the token acts as (`sub`).
        username: String,
        /// The RSA private key, PEM (PKCS#8 or PKCS#1).
        private_key: String,
        /// The audience (`aud`; default `https://login.salesforce.com`).
        audience: String,
    },
    /// HMAC-SHA256 over timestamp and body, as webhooks are signed.
    Hmac {
        /// The key.
        secret: String,
    },
}

/// A usable named credential.
pub struct Credential {
    /// Its name.
    pub name: String,
    /// The base URL callouts' paths are appended to.
    pub url: String,
    /// How it authenticates.
    pub auth: Auth,
    /// Extra headers on every callout.
    pub headers: Vec<(String, String)>,
    /// The HTTP client (with the client certificate, when there is one).
    pub http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({})", self.name)
    }
}

fn text(m: &Map<String, Json>, k: &str, what: &str) -> Result<String, String> {
    match m.get(k) {
        Some(Json::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("{what}: {k} is required (a non-empty string)")),
    }
}

/// Reads a credential document (secrets in plain text) and builds its client.
pub fn build(name: &str, doc: &Json) -> Result<Credential, String> {
    let what = format!("named credential {name}");
    let Json::Object(m) = doc else {
        return Err(format!("{what}: expected a JSON object"));
    };
    for k in m.keys() {
        if !["url", "auth", "clientCertificate", "headers", "label"].contains(&k.as_str()) {
            return Err(format!(
                "{what}: unknown property {k} (url, auth, clientCertificate, headers, label)"
            ));
        }
    }
    let url = text(m, "url", &what)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{what}: url {url:?} is not http:// or https://"));
    }
    let auth = match m.get("auth") {
        None | Some(Json::Null) => Auth::None,
        Some(Json::Object(a)) => match a.get("type").and_then(Json::as_str) {
            Some("none") => Auth::None,
            Some("basic") => Auth::Basic {
                username: text(a, "username", &what)?,
                password: text(a, "password", &what)?,
            },
            Some("bearer") => Auth::Bearer {
                token: text(a, "token", &what)?,
            },
            Some("oauth_client_credentials") => Auth::ClientCredentials {
                token_url: text(a, "tokenUrl", &what)?,
                client_id: text(a, "clientId", &what)?,
                client_secret: text(a, "clientSecret", &what)?,
                scope: a.get("scope").and_then(Json::as_str).map(str::to_string),
            },
            Some("oauth_jwt_bearer") => {
                let private_key = text(a, "privateKey", &what)?;
                rsa_key(&private_key).map_err(|m| format!("{what}: {m}"))?;
                Auth::JwtBearer {
                    token_url: text(a, "tokenUrl", &what)?,
                    client_id: text(a, "clientId", &what)?,
                    username: text(a, "username", &what)?,
                    private_key,
                    audience: a
                        .get("audience")
                        .and_then(Json::as_str)
                        .unwrap_or("https://login.salesforce.com")
                        .to_string(),
                }
            }
            Some("hmac") => Auth::Hmac {
                secret: text(a, "secret", &what)?,
            },
            other => {
                return Err(format!(
                    "{what}: auth type {other:?} is not none, basic, bearer, oauth_client_credentials, \
                     oauth_jwt_bearer or hmac"
                ))
            }
        },
        Some(_) => return Err(format!("{what}: auth must be an object with a type")),
    };
    let headers = match m.get("headers") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Object(h)) => h
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or_else(|| format!("{what}: header {k} must be a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{what}: headers must be an object of strings")),
    };
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("Conflux/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    match m.get("clientCertificate") {
        None | Some(Json::Null) => {}
        Some(Json::Object(c)) => {
            let pem = format!(
                "{}\n{}",
                text(c, "certificate", &what)?,
                text(c, "key", &what)?
            );
            let id = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                format!("{what}: the client certificate or key is not usable PEM: {e}")
            })?;
            builder = builder.identity(id);
        }
        Some(_) => {
            return Err(format!(
                "{what}: clientCertificate must be {{certificate, key}} in PEM"
            ))
        }
    }
    if let Some(ca) = m
        .get("clientCertificate")
        .and_then(|c| c.get("trust"))
        .and_then(Json::as_str)
    {
        let cert = reqwest::Certificate::from_pem(ca.as_bytes())
            .map_err(|e| format!("{what}: the trusted CA is not usable PEM: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    let http = builder
        .build()
        .map_err(|e| format!("{what}: cannot build its HTTP client: {e}"))?;
    Ok(Credential {
        name: name.to_string(),
        url,
        auth,
        headers,
        http,
        token: Mutex::new(None),
    })
}

impl Credential {
    /// Whether it fetches tokens itself (a refused one is worth fetching again).
    pub fn renews_tokens(&self) -> bool {
        matches!(
            self.auth,
            Auth::ClientCredentials { .. } | Auth::JwtBearer { .. }
        )
    }

    /// The OAuth token to use, fetched (and cached) when needed; `fresh` drops the cached one.
    pub async fn bearer(&self, fresh: bool, timeout: Duration) -> Result<Option<String>, String> {
        if !self.renews_tokens() {
            return Ok(None);
        }
        if !fresh {
            if let Some((t, until)) = self.token.lock().clone() {
                if Instant::now() < until {
                    return Ok(Some(t));
                }
            }
        }
        let (token_url, form) = match &self.auth {
            Auth::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                let mut form = vec![
                    ("grant_type", "client_credentials".to_string()),
                    ("client_id", client_id.clone()),
                    ("client_secret", client_secret.clone()),
                ];
                if let Some(s) = scope {
                    form.push(("scope", s.clone()));
                }
                (token_url, form)
            }
            Auth::JwtBearer {
                token_url,
                client_id,
                username,
                private_key,
                audience,
            } => (
                token_url,
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                    ),
                    (
                        "assertion",
                        jwt_assertion(private_key, client_id, username, audience)?,
                    ),
                ],
            ),
            _ => return Ok(None),
        };
        let resp = self
            .http
            .post(token_url)
            .timeout(timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("the token request to {token_url} failed: {e}"))?;
        let status = resp.status();
        let body: Json = resp.json().await.unwrap_or(Json::Null);
        let token = body["access_token"]
            .as_str()
            .filter(|_| status.is_success());
        let Some(token) = token else {
            return Err(format!(
                "the token endpoint {token_url} answered HTTP {}: {}",
                status.as_u16(),
                body
            ));
        };
        // Renew a minute early (or halfway, for short-lived tokens).
        let ttl = body["expires_in"].as_u64().unwrap_or(3600);
        let keep = Duration::from_secs(ttl.saturating_sub(60).max(ttl / 2));
        *self.token.lock() = Some((token.to_string(), Instant::now() + keep));
        Ok(Some(token.to_string()))
    }
}

fn rsa_key(pem: &str) -> Result<rsa::RsaPrivateKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| "privateKey is not an RSA private key in PEM (PKCS#8 or PKCS#1)".to_string())
}

/// A JWT bearer assertion: RS256 over `{iss, sub, aud, exp}`, valid for three minutes.
fn jwt_assertion(
    key_pem: &str,
    client_id: &str,
    username: &str,
    audience: &str,
) -> Result<String, String> {
    use base64::Engine;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa_key(key_pem)?;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    // Salesforce accepts a JWT bearer assertion for at most 3 minutes.
    let exp = model::value::now_millis() / 1000 + 180;
    let claims = json!({"iss": client_id, "sub": username, "aud": audience, "exp": exp});
    let signing = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(claims.to_string().as_bytes())
    );
    let sig = SigningKey::<sha2::Sha256>::new(key).sign(signing.as_bytes());
    Ok(format!("{signing}.{}", b64(&sig.to_bytes())))
}

/// The credentials of an org, by name.
pub type Credentials = BTreeMap<String, Arc<Credential>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_sealed_opened_and_redacted() {
        let v = Vault::new(&[7; 32]);
        let doc = json!({"url": "http://x", "auth": {"type": "basic", "username": "u", "password": "p@ss"},
                         "clientCertificate": {"certificate": "C", "key": "K"}});
        let sealed = v.seal_doc(&doc);
        let text = sealed.to_string();
        assert!(!text.contains("p@ss") && !text.contains("\"K\""), "{text}");
        assert_eq!(sealed["auth"]["username"], "u");
        assert_eq!(v.open_doc(&sealed).unwrap(), doc);
        assert_eq!(redact(&doc)["auth"]["password"], REDACTED);
        assert_eq!(redact(&doc)["clientCertificate"]["key"], REDACTED);
        let other = Vault::new(&[8; 32]);
        assert!(other
            .open_doc(&sealed)
            .unwrap_err()
            .contains("secret key changed"));
        assert_ne!(v.seal("same"), v.seal("same"), "a fresh nonce each time");
    }

    #[test]
    fn credential_documents_are_checked() {
        assert!(build("A", &json!({"url": "ftp://x"})).is_err());
        assert!(build("A", &json!({"url": "http://x", "auth": {"type": "magic"}})).is_err());
        assert!(build(
            "A",
            &json!({"url": "http://x", "auth": {"type": "basic", "username": "u"}})
        )
        .unwrap_err()
        .contains("password is required"));
        assert!(build("A", &json!({"url": "http://x", "colour": 1})).is_err());
        assert!(build(
            "A",
            &json!({"url": "http://x", "clientCertificate": {"certificate": "no", "key": "no"}})
        )
        .is_err());
        let c = build("A", &json!({"url": "http://x", "auth": {"type": "bearer", "token": "t"}, "headers": {"X-A": "1"}})).unwrap();
        assert_eq!(c.auth, Auth::Bearer { token: "t".into() });
        assert_eq!(c.headers, vec![("X-A".to_string(), "1".to_string())]);
    }
}

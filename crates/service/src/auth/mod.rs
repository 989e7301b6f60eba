//! Authentication: users' passwords, sessions (opaque `00D…!…` tokens), OAuth grants, SOAP login,
//! login rate limiting. Every surface authenticates through here.

mod grants;
mod jwt;
mod limiter;
mod passwords;
mod sessions;

pub(crate) use grants::PendingCode;
pub use grants::{AuthorizeRequest, TokenGrant};
pub use limiter::{LoginLimiter, Verdict};
pub use passwords::{hash_password, verify_password};
pub use sessions::SessionCache;

use std::sync::Arc;

use model::Id;

use crate::perms::Perms;

/// Why a login or token request failed. Each surface renders it in its own shape (OAuth JSON,
/// SOAP fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Wrong username or password, inactive or locked-out user.
    InvalidLogin,
    /// Too many logins for this user or address.
    RateExceeded,
    /// The client id is unknown.
    InvalidClientId,
    /// The client secret is wrong.
    InvalidClient,
    /// The grant itself is invalid (expired token, bad assertion…), with Salesforce's description.
    InvalidGrant(String),
    /// The grant type is not supported.
    UnsupportedGrantType,
    /// A required parameter is missing or malformed.
    InvalidRequest(String),
    /// The redirect URI does not match the app's callback URLs.
    RedirectMismatch,
    /// The user's profile and permission sets do not grant "API Enabled".
    ApiDisabled,
    /// Storage failed.
    Internal,
}

impl AuthError {
    /// OAuth `error` and `error_description`.
    pub fn oauth(&self) -> (&'static str, String) {
        match self {
            AuthError::InvalidLogin => ("invalid_grant", "authentication failure".into()),
            AuthError::RateExceeded => ("invalid_grant", "login rate exceeded".into()),
            AuthError::InvalidClientId => ("invalid_client_id", "client identifier invalid".into()),
            AuthError::InvalidClient => ("invalid_client", "invalid client credentials".into()),
            AuthError::InvalidGrant(d) => ("invalid_grant", d.clone()),
            AuthError::UnsupportedGrantType => {
                ("unsupported_grant_type", "grant type not supported".into())
            }
            AuthError::InvalidRequest(d) => ("invalid_request", d.clone()),
            AuthError::RedirectMismatch => (
                "redirect_uri_mismatch",
                "redirect_uri must match configuration".into(),
            ),
            AuthError::ApiDisabled => ("invalid_grant", "API is disabled for this User".into()),
            AuthError::Internal => ("server_error", "internal server error".into()),
        }
    }

    /// SOAP fault exception code and message.
    pub fn soap(&self) -> (&'static str, String) {
        match self {
            AuthError::RateExceeded => ("LOGIN_RATE_EXCEEDED", "Login rate exceeded.".into()),
            AuthError::ApiDisabled => (
                "API_CURRENTLY_DISABLED",
                "API is disabled for this User".into(),
            ),
            AuthError::Internal => ("UNKNOWN_EXCEPTION", "An unexpected error occurred.".into()),
            _ => (
                "INVALID_LOGIN",
                "Invalid username, password, security token; or user locked out.".into(),
            ),
        }
    }
}

/// Who is making a request: the user, their permissions, and how they authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user's row sequence.
    pub user_seq: u64,
    /// The user's id.
    pub user_id: Id,
    /// The username.
    pub username: String,
    /// Effective permissions.
    pub perms: Arc<Perms>,
    /// Hash of the session token, when authenticated by session.
    pub session: Option<[u8; 32]>,
    /// The connected app, when the session came from OAuth.
    pub client_id: Option<String>,
    /// The API the request came through (change events report it).
    pub origin: Origin,
    /// What automation prepared for this request before its write (callout replies).
    pub prepared: Option<Prepared>,
}

/// Something automation computed before a write job, for the job's triggers to use.
#[derive(Clone)]
pub struct Prepared(pub Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

/// The API a change came through, as change events' `changeOrigin` reports it:
/// `com/salesforce/api/rest/60.0;client=dataloader` (empty for changes made by the server itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `rest`, `soap`, `bulkapi`, `toolingrest`; empty for internal changes.
    pub api: &'static str,
    /// The API version of the request (`60.0`).
    pub version: String,
    /// The client named in the `Sforce-Call-Options: client=…` header.
    pub client: Option<String>,
}

impl Origin {
    /// An origin for `api` at `version`, with the client named in a `Sforce-Call-Options` header.
    pub fn new(
        api: &'static str,
        version: impl Into<String>,
        call_options: Option<&str>,
    ) -> Origin {
        let client = call_options.and_then(|h| {
            h.split(',')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("client"))
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        });
        Origin {
            api,
            version: version.into(),
            client,
        }
    }

    /// The `changeOrigin` text.
    pub fn change_origin(&self) -> String {
        if self.api.is_empty() {
            return String::new();
        }
        let mut s = format!("com/salesforce/api/{}/{}", self.api, self.version);
        if let Some(c) = &self.client {
            s.push_str(";client=");
            s.push_str(c);
        }
        s
    }

    /// True for changes made through the Bulk APIs (PushTopics do not report those).
    pub fn is_bulk(&self) -> bool {
        self.api == "bulkapi"
    }
}

/// A successful login: the session and what clients need to know about it.
#[derive(Debug, Clone)]
pub struct Login {
    /// The opaque access token / session id.
    pub token: String,
    /// The user.
    pub user_id: Id,
    /// The username.
    pub username: String,
    /// When the session was issued (ms since epoch).
    pub issued_at_ms: i64,
    /// Seconds of inactivity before the session expires.
    pub timeout_secs: i64,
    /// A refresh token, for grants that issue one.
    pub refresh_token: Option<String>,
    /// Scopes granted.
    pub scope: String,
}

/// SHA-256 of a token; only hashes are stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// A random string of base-62 characters.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHA: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

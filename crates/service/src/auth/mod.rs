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

//! Plain data passed across the storage boundary.

use model::Value;

/// A stored row: the requested field values (in request order) and whether it is soft-deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Values of the requested fields, in the order they were asked for.
    pub values: Vec<Value>,
    /// The row is in the recycle bin.
    pub deleted: bool,
}

/// A login session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The user the session acts as.
    pub user_seq: u64,
    /// The connected app that obtained it, if any (SOAP logins have none).
    pub client_id: Option<String>,
    /// When it was created (ms since epoch).
    pub created_ms: i64,
    /// When it was last used (ms since epoch).
    pub last_used_ms: i64,
    /// Inactivity timeout in seconds.
    pub timeout_secs: i64,
    /// Hash of the refresh token this session came from (or was issued with); revoking that
    /// refresh token ends the session too.
    pub origin: Option<[u8; 32]>,
}

impl SessionRow {
    /// True when the session has been idle longer than its timeout.
    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms - self.last_used_ms > self.timeout_secs * 1000
    }
}

/// A connected app (OAuth client).
#[derive(Debug, Clone, PartialEq)]
pub struct AppRow {
    /// Consumer key.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Hash of the consumer secret (argon2 PHC string).
    pub secret_hash: String,
    /// PEM certificate whose key signs JWT bearer assertions.
    pub cert_pem: Option<String>,
    /// The user client-credentials tokens act as.
    pub run_as_user: Option<u64>,
    /// Allowed OAuth callback URLs (authorization code flow).
    pub callback_urls: Vec<String>,
    /// Granted scopes, space separated (`api refresh_token`).
    pub scopes: String,
}

/// A refresh token.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRow {
    /// The user it acts as.
    pub user_seq: u64,
    /// The app it was issued to.
    pub client_id: String,
    /// When it was issued.
    pub created_ms: i64,
}

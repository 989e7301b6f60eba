//! Login flows: SOAP login, the OAuth token grants (password, client credentials, JWT bearer,
//! refresh token, authorization code with PKCE), the authorize step, revoke and logout.

use std::time::{Duration, Instant};

use base64::Engine;
use model::value::now_millis;
use model::{ApiError, ApiResult};
use store::{RefreshRow, SessionRow};

use super::{
    hash_password, jwt, random_token, token_hash, verify_password, AuthError, Login, Verdict,
};
use crate::users::UserInfo;
use crate::Org;

/// An OAuth token request, by grant type.
#[derive(Debug, Clone)]
pub enum TokenGrant {
    /// `grant_type=password`.
    Password {
        client_id: String,
        client_secret: Option<String>,
        username: String,
        password: String,
    },
    /// `grant_type=client_credentials` (credentials from Basic auth or the form body).
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
    JwtBearer { assertion: String },
    /// `grant_type=refresh_token`.
    RefreshToken {
        refresh_token: String,
        client_id: Option<String>,
        client_secret: Option<String>,
    },
    /// `grant_type=authorization_code`.
    AuthorizationCode {
        code: String,
        client_id: String,
        client_secret: Option<String>,
        redirect_uri: String,
        code_verifier: Option<String>,
    },
}

/// The authorize step of the authorization-code flow, after the user entered credentials.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The app.
    pub client_id: String,
    /// Where to send the code.
    pub redirect_uri: String,
    /// Username typed on the login page.
    pub username: String,
    /// Password typed on the login page.
    pub password: String,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// `S256` or `plain`.
    pub code_challenge_method: Option<String>,
}

/// A code waiting to be exchanged.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    user_seq: u64,
    client_id: String,
    redirect_uri: String,
    challenge: Option<(String, String)>,
    created: Instant,
}

/// Codes expire after this long.
const CODE_TTL: Duration = Duration::from_secs(15 * 60);
/// Clock skew tolerated on JWT expiry.
const JWT_SKEW_SECS: i64 = 180;

/// True for `http://{127.0.0.1|localhost|[::1]}[:port][/path…]`. The authority is parsed, not
/// prefix-matched: `http://localhost:1@evil.example/` has the host `evil.example`.
fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let port = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .find_map(|host| authority.strip_prefix(host));
    match port {
        Some("") => true,
        Some(p) => p.strip_prefix(':').is_some_and(|digits| {
            !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
        }),
        None => false,
    }
}

impl Org {
    /// Checks a username and password with rate limiting and lockout. Slow on purpose (Argon2).
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: &str,
        ip: &str,
    ) -> Result<std::sync::Arc<UserInfo>, AuthError> {
        // The lookup ignores surrounding whitespace (and case); so must the lockout counters, or
        // `" user@x.com"` would be a fresh set of attempts for the same account.
        let username = username.trim();
        match self.limiter.check(username, ip) {
            Verdict::Allow => {}
            Verdict::LockedOut => {
                self.limiter.failed(username, ip);
                return Err(AuthError::InvalidLogin);
            }
            Verdict::RateExceeded => return Err(AuthError::RateExceeded),
        }
        let user = self
            .user_by_username(username)
            .map_err(|_| AuthError::Internal)?;
        let hash = match &user {
            Some(u) if u.active => self
                .store
                .read(|tx| tx.password_hash(u.seq))
                .map_err(|_| AuthError::Internal)?,
            _ => None,
        };
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => verify_password(&pw, &h),
            None => {
                // Spend the same time as a real check so usernames cannot be probed by timing.
                let _ = hash_password(&pw);
                false
            }
        })
        .await
        .unwrap_or(false);
        match (ok, user) {
            (true, Some(u)) => {
                self.limiter.succeeded(username);
                Ok(u)
            }
            _ => {
                self.limiter.failed(username, ip);
                Err(AuthError::InvalidLogin)
            }
        }
    }

    /// Opens a session for `user`.
    pub(crate) async fn open_session(
        &self,
        user: &UserInfo,
        client_id: Option<String>,
        refresh: bool,
        origin: Option<[u8; 32]>,
    ) -> Result<Login, AuthError> {
        let token = format!("{}!{}", self.org_id.as_str(), random_token(96));
        let now = now_millis();
        let refresh_token = refresh.then(|| format!("5Aep{}", random_token(83)));
        // A session issued with a new refresh token, or from a presented one, ends with it.
        let origin = refresh_token.as_deref().map(token_hash).or(origin);
        let row = SessionRow {
            user_seq: user.seq,
            client_id: client_id.clone(),
            created_ms: now,
            last_used_ms: now,
            timeout_secs: self.config.session_timeout_secs,
            origin,
        };
        let h = token_hash(&token);
        let refresh_row = match (&refresh_token, &client_id) {
            (Some(rt), Some(cid)) => Some((
                token_hash(rt),
                RefreshRow {
                    user_seq: user.seq,
                    client_id: cid.clone(),
                    created_ms: now,
                },
            )),
            _ => None,
        };
        let r2 = row.clone();
        let user_seq = user.seq;
        let users = self.store.schema().object("User").cloned();
        self.store
            .write(move |tx| {
                tx.insert_session(&h, &r2)?;
                if let Some((rh, rr)) = &refresh_row {
                    tx.insert_refresh_token(rh, rr)?;
                }
                if let Some(u) = &users {
                    if let Some(i) = u.field_index("LastLoginDate") {
                        tx.update(u, user_seq, &[(i, model::Value::DateTime(now))])?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|_| AuthError::Internal)?;
        self.sessions.insert(h, row);
        Ok(Login {
            token,
            user_id: user.id,
            username: user.username.clone(),
            issued_at_ms: now,
            timeout_secs: self.config.session_timeout_secs,
            refresh_token,
            scope: "api web refresh_token".into(),
        })
    }

    /// A session for the active user `username`, opened by the server itself (the session id an
    /// Outbound Message carries so its receiver can call back as that user).
    pub async fn session_for(&self, username: &str) -> ApiResult<Login> {
        let user = self
            .user_by_username(username)?
            .filter(|u| u.active)
            .ok_or_else(|| {
                ApiError::new(
                    model::ErrorCode::InvalidInput,
                    format!("there is no active user {username}"),
                )
            })?;
        self.open_session(&user, None, false, None)
            .await
            .map_err(|_| ApiError::new(model::ErrorCode::UnknownException, "cannot open a session"))
    }

    /// SOAP `login()`.
    pub async fn soap_login(
        &self,
        username: &str,
        password: &str,
        ip: &str,
    ) -> Result<Login, AuthError> {
        let user = self.check_password(username, password, ip).await?;
        // SOAP login is an API call: the user needs "API Enabled".
        let perms = self.perms_for(&user).map_err(|_| AuthError::Internal)?;
        if !perms.may_use_api() {
            return Err(AuthError::ApiDisabled);
        }
        self.open_session(&user, None, false, None).await
    }

    async fn app_checked(
        &self,
        client_id: &str,
        secret: Option<&str>,
        require_secret: bool,
    ) -> Result<store::AppRow, AuthError> {
        let app = self
            .store
            .read(|tx| tx.app(client_id))
            .map_err(|_| AuthError::Internal)?
            .ok_or(AuthError::InvalidClientId)?;
        match secret {
            Some(s) => {
                let (s, h) = (s.to_string(), app.secret_hash.clone());
                let ok = tokio::task::spawn_blocking(move || verify_password(&s, &h))
                    .await
                    .unwrap_or(false);
                if !ok {
                    return Err(AuthError::InvalidClient);
                }
            }
            None if require_secret => return Err(AuthError::InvalidClient),
            None => {}
        }
        Ok(app)
    }

    /// Handles `/services/oauth2/token`. `audiences` are the URLs this server answers on, accepted
    /// as JWT `aud` besides Salesforce's login hosts.
    pub async fn token(
        &self,
        grant: TokenGrant,
        ip: &str,
        audiences: &[String],
    ) -> Result<Login, AuthError> {
        match grant {
            TokenGrant::Password {
                client_id,
                client_secret,
                username,
                password,
            } => {
                // The username-password flow requires the consumer secret.
                let app = self
                    .app_checked(&client_id, client_secret.as_deref(), true)
                    .await?;
                let user = self.check_password(&username, &password, ip).await?;
                self.open_session(&user, Some(app.client_id), false, None)
                    .await
            }
            TokenGrant::ClientCredentials {
                client_id,
                client_secret,
            } => {
                let app = self
                    .app_checked(&client_id, Some(&client_secret), true)
                    .await?;
                let seq = app.run_as_user.ok_or_else(|| {
                    AuthError::InvalidGrant("no client credentials user enabled".into())
                })?;
                let user = self
                    .user_info(seq)
                    .map_err(|_| AuthError::Internal)?
                    .filter(|u| u.active)
                    .ok_or(AuthError::InvalidGrant(
                        "no client credentials user enabled".into(),
                    ))?;
                self.open_session(&user, Some(app.client_id), false, None)
                    .await
            }
            TokenGrant::JwtBearer { assertion } => {
                let claims = jwt::peek_claims(&assertion).map_err(AuthError::InvalidGrant)?;
                let app = self
                    .store
                    .read(|tx| tx.app(&claims.iss))
                    .map_err(|_| AuthError::Internal)?
                    .ok_or(AuthError::InvalidClientId)?;
                let cert = app.cert_pem.clone().ok_or_else(|| {
                    AuthError::InvalidGrant(
                        "invalid assertion: no certificate is registered on the connected app"
                            .into(),
                    )
                })?;
                let claims = jwt::verify(&assertion, &cert, now_millis() / 1000, JWT_SKEW_SECS)
                    .map_err(AuthError::InvalidGrant)?;
                let aud_ok = claims.aud.iter().any(|a| {
                    let a = a.trim_end_matches('/');
                    a == "https://login.salesforce.com"
                        || a == "https://test.salesforce.com"
                        || audiences.iter().any(|x| x.trim_end_matches('/') == a)
                });
                if !aud_ok {
                    return Err(AuthError::InvalidGrant("audience is invalid".into()));
                }
                let user = self
                    .user_by_username(&claims.sub)
                    .map_err(|_| AuthError::Internal)?
                    .filter(|u| u.active)
                    .ok_or(AuthError::InvalidGrant(
                        "user hasn't approved this consumer".into(),
                    ))?;
                self.open_session(&user, Some(app.client_id), false, None)
                    .await
            }
            TokenGrant::RefreshToken {
                refresh_token,
                client_id,
                client_secret,
            } => {
                let h = token_hash(&refresh_token);
                let row = self
                    .store
                    .read(|tx| tx.refresh_token(&h))
                    .map_err(|_| AuthError::Internal)?
                    .ok_or(AuthError::InvalidGrant(
                        "expired access/refresh token".into(),
                    ))?;
                if let Some(cid) = &client_id {
                    if cid != &row.client_id {
                        return Err(AuthError::InvalidGrant(
                            "expired access/refresh token".into(),
                        ));
                    }
                }
                let app = self
                    .app_checked(&row.client_id, client_secret.as_deref(), false)
                    .await?;
                let user = match self
                    .user_info(row.user_seq)
                    .map_err(|_| AuthError::Internal)?
                {
                    Some(u) if u.active => u,
                    _ => {
                        // Deactivation ends the user's authorizations for good: reactivating the
                        // user must not bring this refresh token back.
                        let _ = self
                            .store
                            .write(move |tx| Ok(tx.delete_refresh_token(&h)?))
                            .await;
                        return Err(AuthError::InvalidGrant(
                            "expired access/refresh token".into(),
                        ));
                    }
                };
                let mut login = self
                    .open_session(&user, Some(app.client_id), false, Some(h))
                    .await?;
                login.refresh_token = None;
                Ok(login)
            }
            TokenGrant::AuthorizationCode {
                code,
                client_id,
                client_secret,
                redirect_uri,
                code_verifier,
            } => {
                let pending = self
                    .codes
                    .lock()
                    .remove(&token_hash(&code))
                    .ok_or(AuthError::InvalidGrant("invalid authorization code".into()))?;
                if pending.created.elapsed() > CODE_TTL {
                    return Err(AuthError::InvalidGrant("expired authorization code".into()));
                }
                if pending.client_id != client_id || pending.redirect_uri != redirect_uri {
                    return Err(AuthError::InvalidGrant("invalid authorization code".into()));
                }
                match (&pending.challenge, code_verifier) {
                    (Some((challenge, method)), Some(verifier)) => {
                        let computed = if method.eq_ignore_ascii_case("S256") {
                            use sha2::Digest;
                            base64::engine::general_purpose::URL_SAFE_NO_PAD
                                .encode(sha2::Sha256::digest(verifier.as_bytes()))
                        } else {
                            verifier
                        };
                        if &computed != challenge {
                            return Err(AuthError::InvalidGrant("invalid code verifier".into()));
                        }
                    }
                    (Some(_), None) => {
                        return Err(AuthError::InvalidGrant("invalid code verifier".into()))
                    }
                    (None, _) => {
                        // Without PKCE the client must prove itself with its secret.
                        if client_secret.is_none() {
                            return Err(AuthError::InvalidClient);
                        }
                    }
                }
                let app = self
                    .app_checked(&client_id, client_secret.as_deref(), false)
                    .await?;
                let user = self
                    .user_info(pending.user_seq)
                    .map_err(|_| AuthError::Internal)?
                    .filter(|u| u.active)
                    .ok_or(AuthError::InvalidLogin)?;
                let refresh = app
                    .scopes
                    .split_whitespace()
                    .any(|s| s == "refresh_token" || s == "offline_access" || s == "full");
                self.open_session(&user, Some(app.client_id), refresh, None)
                    .await
            }
        }
    }

    /// The authorize step: checks the app, the redirect URI and the user's credentials, and returns
    /// a one-time code.
    pub async fn authorize(&self, req: AuthorizeRequest, ip: &str) -> Result<String, AuthError> {
        let app = self
            .store
            .read(|tx| tx.app(&req.client_id))
            .map_err(|_| AuthError::Internal)?
            .ok_or(AuthError::InvalidClientId)?;
        self.check_redirect(&app, &req.redirect_uri)?;
        let user = self
            .check_password(&req.username, &req.password, ip)
            .await?;
        let code = format!("aPrx{}", random_token(60));
        let challenge = req.code_challenge.map(|c| {
            (
                c,
                req.code_challenge_method.unwrap_or_else(|| "plain".into()),
            )
        });
        let mut codes = self.codes.lock();
        codes.retain(|_, p| p.created.elapsed() < CODE_TTL);
        codes.insert(
            token_hash(&code),
            PendingCode {
                user_seq: user.seq,
                client_id: app.client_id,
                redirect_uri: req.redirect_uri,
                challenge,
                created: Instant::now(),
            },
        );
        Ok(code)
    }

    /// Checks a redirect URI against the app: an exact configured callback URL, or any loopback
    /// URL (native apps, RFC 8252).
    pub fn check_redirect(&self, app: &store::AppRow, uri: &str) -> Result<(), AuthError> {
        if app.callback_urls.iter().any(|u| u == uri) || is_loopback_redirect(uri) {
            Ok(())
        } else {
            Err(AuthError::RedirectMismatch)
        }
    }

    /// Looks up a connected app (for the authorize page).
    pub fn app(&self, client_id: &str) -> Option<store::AppRow> {
        self.store.read(|tx| tx.app(client_id)).ok().flatten()
    }

    /// Revokes an access token or a refresh token. Returns whether it was known.
    pub async fn revoke(&self, token: &str) -> bool {
        let h = token_hash(token);
        self.sessions.end(&h);
        let outcome = self
            .store
            .write(move |tx| {
                let session = tx.delete_session(&h)?;
                // Revoking a refresh token also revokes the access tokens issued from it.
                let refresh = tx.delete_refresh_token(&h)?;
                let issued = if refresh {
                    tx.delete_sessions_from(&h)?
                } else {
                    Vec::new()
                };
                Ok((session || refresh, issued))
            })
            .await;
        match outcome {
            Ok((known, issued)) => {
                for s in &issued {
                    self.sessions.end(s);
                }
                known
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_redirect;

    #[test]
    fn loopback_redirects_are_parsed_not_prefix_matched() {
        for ok in [
            "http://127.0.0.1:53682/callback",
            "http://localhost:1717/OauthRedirect?x=1",
            "http://[::1]:8080/",
            "http://localhost/cb",
            "http://127.0.0.1",
            "http://localhost:8080",
            "http://localhost?x=1",
        ] {
            assert!(is_loopback_redirect(ok), "{ok}");
        }
        for bad in [
            "https://evil.example.com/",
            "http://localhost:1717@evil.example.com/cb",
            "http://127.0.0.1:80@evil.example.com/",
            "http://localhost@evil.example.com/",
            "http://localhost.evil.example.com/",
            "http://127.0.0.1.nip.io/",
            "http://localhost:/cb",
            "http://localhost:99999999/cb",
            "http://localhost:80\\@evil.example.com/",
            "http://localhost:80 /cb",
            "javascript:alert(1)//http://localhost/",
            "HTTP://localhost:1/",
        ] {
            assert!(!is_loopback_redirect(bad), "{bad}");
        }
    }
}

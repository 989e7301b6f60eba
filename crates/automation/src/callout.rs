//! Request and Reply: one HTTP callout through a named credential, with a unique message id
//! (also the `Idempotency-Key`), the record id when there is one, a timeout (10 s by default,
//! 120 s at most) and a response size limit; the JSON reply is what `reply_fields` map to record
//! fields. Errors say which callout failed and how, in words a user can act on.

use std::time::Duration;

use model::value::now_millis;
use serde_json::Value as Json;

use crate::credentials::{Auth, Credential};
use crate::jq::{Expr, Scope};

/// Callouts one transaction (one save or one invocation) may make at most.
pub const MAX_PER_TRANSACTION: usize = 100;
/// The total time the callouts of one transaction may take.
pub const BUDGET: Duration = Duration::from_secs(120);
/// Default and largest per-callout timeouts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest timeout a callout may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest reply read (Salesforce: 6 MB for synchronous callouts).
pub const MAX_REPLY: usize = 6 * 1024 * 1024;

/// A compiled callout action.
#[derive(Debug)]
pub struct Callout {
    /// The action's name (for errors and logs).
    pub name: String,
    /// The named credential.
    pub credential: String,
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path after the credential's URL (a jq expression when it starts with `(`).
    pub path: PathSpec,
    /// The body (jq); none for GET/DELETE.
    pub body: Option<Expr>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Timeout.
    pub timeout: Duration,
    /// Record field → jq over `$reply`.
    pub reply_fields: Vec<(String, Expr)>,
}

/// A callout's path.
#[derive(Debug)]
pub enum PathSpec {
    /// As written.
    Fixed(String),
    /// Computed.
    Expr(Expr),
    /// An External Service operation, its parameters computed.
    Operation {
        /// `Service.operationId`, for errors.
        name: String,
        /// The server's base path.
        base_path: String,
        /// The operation.
        op: std::sync::Arc<crate::external::Operation>,
        /// Parameter → expression (only those the flow gives).
        params: Vec<(crate::external::Param, Expr)>,
    },
}

/// The counters of one transaction's callouts.
#[derive(Debug)]
pub struct Budget {
    made: usize,
    deadline: std::time::Instant,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            made: 0,
            deadline: std::time::Instant::now() + BUDGET,
        }
    }
}

impl Callout {
    /// Makes the callout; the reply's JSON (null when empty, a string when not JSON).
    pub async fn call(
        &self,
        cred: &Credential,
        scope: &Scope<'_>,
        record_id: Option<&str>,
        budget: &mut Budget,
    ) -> Result<Json, String> {
        budget.made += 1;
        if budget.made > MAX_PER_TRANSACTION {
            return Err(format!(
                "too many callouts in one transaction (at most {MAX_PER_TRANSACTION})"
            ));
        }
        let left = budget
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("the callouts of this transaction took longer than 120 s in total".into());
        }
        let timeout = self.timeout.min(left);
        let mut query: Vec<(String, String)> = Vec::new();
        let mut param_headers: Vec<(String, String)> = Vec::new();
        let path = match &self.path {
            PathSpec::Operation {
                name,
                base_path,
                op,
                params,
            } => {
                use crate::external::{encode_segment, param_text, In};
                let mut path = op.path.clone();
                for p in &op.params {
                    let value = match params
                        .iter()
                        .find(|(q, _)| q.name == p.name && q.location == p.location)
                    {
                        Some((_, e)) => e.eval(scope)?,
                        None => Json::Null,
                    };
                    if value.is_null() {
                        if p.required {
                            return Err(format!(
                                "The callout {} ({name}) needs its parameter {}, which is missing",
                                self.name, p.name
                            ));
                        }
                        continue;
                    }
                    let text = param_text(p, &value)
                        .map_err(|m| format!("The callout {} ({name}): {m}", self.name))?;
                    match p.location {
                        In::Path => {
                            path = path.replace(&format!("{{{}}}", p.name), &encode_segment(&text));
                        }
                        In::Query => query.push((p.name.clone(), text)),
                        In::Header => param_headers.push((p.name.clone(), text)),
                    }
                }
                format!("{base_path}{path}")
            }
            PathSpec::Fixed(p) => p.clone(),
            PathSpec::Expr(e) => match e.eval(scope)? {
                Json::String(s) => s,
                other => {
                    return Err(format!(
                        "the path of callout {} is {other}, not a string",
                        self.name
                    ))
                }
            },
        };
        let url = format!("{}{}", cred.url.trim_end_matches('/'), path);
        let body = match &self.body {
            Some(e) => Some(e.eval(scope)?.to_string().into_bytes()),
            None => None,
        };
        let what = format!("The callout {} ({} {url})", self.name, self.method);
        let mut refreshed = false;
        loop {
            let message_id = uuid::Uuid::new_v4().to_string();
            let mut req = cred
                .http
                .request(self.method.clone(), &url)
                .timeout(timeout)
                .header("Accept", "application/json")
                .header("X-Conflux-Message-Id", &message_id)
                .header("Idempotency-Key", &message_id);
            if let Some(id) = record_id {
                req = req.header("X-Conflux-Record-Id", id);
            }
            match &cred.auth {
                Auth::None | Auth::ClientCredentials { .. } | Auth::JwtBearer { .. } => {}
                Auth::Basic { username, password } => {
                    req = req.basic_auth(username, Some(password));
                }
                Auth::Bearer { token } => req = req.bearer_auth(token),
                Auth::Hmac { secret } => {
                    let signed = body.as_deref().unwrap_or_default();
                    req = req.header(
                        delivery::webhook::SIGNATURE_HEADER,
                        delivery::webhook::signature(
                            secret.as_bytes(),
                            now_millis() / 1000,
                            signed,
                        ),
                    );
                }
            }
            if let Some(t) = cred
                .bearer(refreshed, timeout)
                .await
                .map_err(|e| format!("{what} could not authenticate: {e}"))?
            {
                req = req.bearer_auth(t);
            }
            for (k, v) in cred
                .headers
                .iter()
                .chain(&self.headers)
                .chain(&param_headers)
            {
                req = req.header(k, v);
            }
            if !query.is_empty() {
                req = req.query(&query);
            }
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            let mut resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    format!("{what} timed out after {} s", timeout.as_secs_f64())
                } else if e.is_connect() {
                    format!("{what} could not connect")
                } else {
                    format!("{what} failed: {e}")
                }
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && cred.renews_tokens() && !refreshed {
                // The cached token may have been revoked: fetch a new one and try once more.
                refreshed = true;
                continue;
            }
            let mut reply = Vec::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        if reply.len() + c.len() > MAX_REPLY {
                            return Err(format!("{what} answered more than {MAX_REPLY} bytes"));
                        }
                        reply.extend_from_slice(&c);
                    }
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => {
                        return Err(format!(
                            "{what} timed out after {} s",
                            timeout.as_secs_f64()
                        ))
                    }
                    Err(e) => return Err(format!("{what} failed while answering: {e}")),
                }
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&reply[..reply.len().min(300)]).into_owned();
                return Err(format!(
                    "{what} answered HTTP {}{}",
                    status.as_u16(),
                    if text.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", text.trim())
                    }
                ));
            }
            if reply.iter().all(u8::is_ascii_whitespace) {
                return Ok(Json::Null);
            }
            return Ok(serde_json::from_slice(&reply)
                .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&reply).into_owned())));
        }
    }
}

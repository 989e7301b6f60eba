//! A remote Salesforce-compatible org (a real org, or another Conflux) reached through a named
//! credential: as a source, an object's records by `(SystemModstamp, Id)` through the REST query
//! resource; as a target, sObject Collections (200 records per call) creating, upserting by
//! external id, updating or deleting.

use std::sync::Arc;
use std::time::Duration;

use automation::credentials::{Auth, Credential};
use model::value::{format_datetime_z, parse_datetime};
use reqwest::Method;
use serde_json::{json, Value as Json};

use crate::job::Operation;
use crate::postgres::Row;
use crate::targets::Outcome;
use crate::{Cursor, Record};

/// Timeout of one call.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A remote org and one of its objects.
pub struct Remote {
    cred: Arc<Credential>,
    version: String,
    object: String,
}

impl Remote {
    /// A remote object through `cred`.
    pub fn new(cred: Arc<Credential>, version: &str, object: &str) -> Remote {
        Remote {
            cred,
            version: version.trim_start_matches('v').to_string(),
            object: object.to_string(),
        }
    }

    /// Calls the org's REST API (`path` after `/services/data/vNN.N`), authenticating through
    /// the credential; the answer's JSON.
    async fn call(&self, method: Method, path: &str, body: Option<&Json>) -> Result<Json, String> {
        let url = format!(
            "{}/services/data/v{}{path}",
            self.cred.url.trim_end_matches('/'),
            self.version
        );
        let (status, text) = send(&self.cred, method.clone(), &url, body).await?;
        if !status.is_success() {
            return Err(format!(
                "{} {url} answered HTTP {}: {}",
                method.as_str(),
                status.as_u16(),
                text.chars().take(500).collect::<String>()
            ));
        }
        Ok(if text.trim().is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))?
        })
    }

    /// Every value of `field` of the object (through the query resource, page by page).
    pub async fn values(&self, field: &str) -> Result<Vec<String>, String> {
        let soql = format!("SELECT {field} FROM {}", self.object);
        let mut page = self
            .call(
                Method::GET,
                &format!("/query?q={}", automation::external::encode_segment(&soql)),
                None,
            )
            .await?;
        let mut out = Vec::new();
        loop {
            for r in page["records"].as_array().cloned().unwrap_or_default() {
                match &r[field] {
                    Json::Null => {}
                    Json::String(s) => out.push(s.clone()),
                    other => out.push(other.to_string()),
                }
            }
            match page["nextRecordsUrl"].as_str() {
                Some(next) => {
                    let rest = next
                        .split_once(&format!("/v{}", self.version))
                        .map_or(next, |(_, r)| r)
                        .to_string();
                    page = self.call(Method::GET, &rest, None).await?;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Up to `limit` records after `after` (see the PostgreSQL source); `fields` are selected
    /// besides `Id` and `SystemModstamp`.
    pub async fn page(
        &self,
        fields: &[String],
        after: Option<&Cursor>,
        rewind: bool,
        overlap_secs: u64,
        limit: usize,
    ) -> Result<Vec<Row>, String> {
        let mut names = vec!["Id".to_string(), "SystemModstamp".to_string()];
        for f in fields {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(f)) {
                names.push(f.clone());
            }
        }
        let mut soql = format!("SELECT {} FROM {}", names.join(", "), self.object);
        if let Some(at) = after {
            let ms = parse_datetime(&at.value)
                .ok_or_else(|| format!("the cursor {} is not a date-time", at.value))?;
            if rewind && overlap_secs > 0 {
                soql.push_str(&format!(
                    " WHERE SystemModstamp >= {}",
                    format_datetime_z(ms - overlap_secs as i64 * 1000)
                ));
            } else {
                let v = format_datetime_z(ms);
                let id = at.key.replace(['\\', '\''], "");
                soql.push_str(&format!(
                    " WHERE SystemModstamp > {v} OR (SystemModstamp = {v} AND Id > '{id}')"
                ));
            }
        }
        soql.push_str(&format!(" ORDER BY SystemModstamp, Id LIMIT {limit}"));
        let mut out = Vec::new();
        let mut page = self
            .call(
                Method::GET,
                &format!("/query?q={}", automation::external::encode_segment(&soql)),
                None,
            )
            .await?;
        loop {
            for r in page["records"].as_array().cloned().unwrap_or_default() {
                let mut r = r;
                if let Json::Object(m) = &mut r {
                    m.remove("attributes");
                }
                let stamp = r["SystemModstamp"]
                    .as_str()
                    .and_then(parse_datetime)
                    .map(format_datetime_z)
                    .ok_or_else(|| format!("a {} record has no SystemModstamp", self.object))?;
                let id = r["Id"].as_str().unwrap_or_default().to_string();
                out.push(Row {
                    data: r,
                    at: Cursor {
                        value: stamp,
                        key: id,
                    },
                });
            }
            match page["nextRecordsUrl"].as_str() {
                Some(next) => {
                    let rest = next
                        .split_once(&format!("/v{}", self.version))
                        .map_or(next, |(_, r)| r)
                        .to_string();
                    page = self.call(Method::GET, &rest, None).await?;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Writes the rows through sObject Collections, 200 per call; one outcome per row.
    pub async fn write(
        &self,
        op: Operation,
        external_id: Option<&str>,
        rows: &[&Record],
    ) -> Result<Vec<Outcome>, String> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(200) {
            let results = match op {
                Operation::Delete => {
                    let ids: Vec<&str> = chunk
                        .iter()
                        .map(|r| r.get("Id").and_then(Json::as_str).unwrap_or_default())
                        .collect();
                    self.call(
                        Method::DELETE,
                        &format!("/composite/sobjects?allOrNone=false&ids={}", ids.join(",")),
                        None,
                    )
                    .await?
                }
                _ => {
                    let records: Vec<Json> = chunk
                        .iter()
                        .map(|r| {
                            let mut m = (*r).clone();
                            m.insert("attributes".into(), json!({"type": self.object}));
                            Json::Object(m)
                        })
                        .collect();
                    let body = json!({"allOrNone": false, "records": records});
                    let (method, path) = match op {
                        Operation::Insert => (Method::POST, "/composite/sobjects".to_string()),
                        Operation::Update => (Method::PATCH, "/composite/sobjects".to_string()),
                        _ => (
                            Method::PATCH,
                            format!(
                                "/composite/sobjects/{}/{}",
                                self.object,
                                external_id.unwrap_or("Id")
                            ),
                        ),
                    };
                    self.call(method, &path, Some(&body)).await?
                }
            };
            let results = results.as_array().cloned().unwrap_or_default();
            if results.len() != chunk.len() {
                return Err(format!(
                    "the remote org answered {} results for {} records",
                    results.len(),
                    chunk.len()
                ));
            }
            for r in results {
                if r["success"] == true {
                    out.push(Ok(()));
                } else {
                    let e = &r["errors"][0];
                    out.push(Err(format!(
                        "{}: {}",
                        e["statusCode"].as_str().unwrap_or("ERROR"),
                        e["message"].as_str().unwrap_or("")
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// Sends one request through a named credential (its authentication and headers; a cached
/// OAuth token refused with 401 is fetched again once); the status and body.
pub async fn send(
    cred: &Credential,
    method: Method,
    url: &str,
    body: Option<&Json>,
) -> Result<(reqwest::StatusCode, String), String> {
    let mut fresh = false;
    loop {
        let mut req = cred.http.request(method.clone(), url).timeout(TIMEOUT);
        match &cred.auth {
            Auth::Basic { username, password } => req = req.basic_auth(username, Some(password)),
            Auth::Bearer { token } => req = req.bearer_auth(token),
            _ => {}
        }
        if let Some(t) = cred.bearer(fresh, TIMEOUT).await? {
            req = req.bearer_auth(t);
        }
        for (k, v) in &cred.headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{} {url}: {e}", method.as_str()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED && !fresh && cred.renews_tokens() {
            fresh = true;
            continue;
        }
        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        return Ok((status, text));
    }
}

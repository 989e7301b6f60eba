//! A remote Salesforce-compatible org (a real org, or another Conflux) reached through a named
//! credential: as a source, an object's records by `(SystemModstamp, Id)` through the REST query
//! resource or a Bulk API 2.0 query job; as a target, sObject Collections (200 records per call)
//! or one Bulk API 2.0 ingest job per batch, creating, upserting by external id, updating or
//! deleting.

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
        Ok(self
            .tuples(&[field.to_string()])
            .await?
            .into_iter()
            .filter_map(|mut t| crate::json_text(&t.pop()?))
            .collect())
    }

    /// The values of `fields` of every record of the object.
    pub async fn tuples(&self, fields: &[String]) -> Result<Vec<Vec<Json>>, String> {
        let soql = format!("SELECT {} FROM {}", fields.join(", "), self.object);
        Ok(self
            .query_records(&soql)
            .await?
            .iter()
            .map(|r| fields.iter().map(|f| r[f.as_str()].clone()).collect())
            .collect())
    }

    /// Every record a query finds (through the query resource, following `nextRecordsUrl`),
    /// without their `attributes`.
    async fn query_records(&self, soql: &str) -> Result<Vec<Json>, String> {
        let mut page = self
            .call(
                Method::GET,
                &format!("/query?q={}", automation::external::encode_segment(soql)),
                None,
            )
            .await?;
        let mut out = Vec::new();
        loop {
            for mut r in page["records"].as_array().cloned().unwrap_or_default() {
                if let Json::Object(m) = &mut r {
                    m.remove("attributes");
                }
                out.push(r);
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

    /// `SELECT Id, SystemModstamp, <fields> FROM <object>`: what the source reads.
    fn select(&self, fields: &[String]) -> String {
        let mut names = vec!["Id".to_string(), "SystemModstamp".to_string()];
        for f in fields {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(f)) {
                names.push(f.clone());
            }
        }
        format!("SELECT {} FROM {}", names.join(", "), self.object)
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
        let mut soql = self.select(fields);
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
        for r in self.query_records(&soql).await? {
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
        Ok(out)
    }

    /// Writes the rows through sObject Collections, 200 per call, up to `parallelism` calls at
    /// once; one outcome per row, in order.
    pub async fn write(
        &self,
        op: Operation,
        external_id: Option<&str>,
        rows: &[&Record],
        parallelism: usize,
    ) -> Result<Vec<Outcome>, String> {
        use futures::{StreamExt, TryStreamExt};
        let mut calls = Vec::new();
        for chunk in rows.chunks(200) {
            calls.push(self.write_chunk(op, external_id, chunk));
        }
        let parts: Vec<Vec<Outcome>> = futures::stream::iter(calls)
            .buffered(parallelism.max(1))
            .try_collect()
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// One sObject Collections call.
    async fn write_chunk(
        &self,
        op: Operation,
        external_id: Option<&str>,
        chunk: &[&Record],
    ) -> Result<Vec<Outcome>, String> {
        let mut out = Vec::with_capacity(chunk.len());
        {
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

/// How long to wait between looks at a Bulk API job, at most.
const POLL_MAX: Duration = Duration::from_secs(2);

impl Remote {
    /// A Bulk API resource (`/jobs/…`) with a raw body; the status and text.
    async fn bulk_call(
        &self,
        method: Method,
        path: &str,
        csv: Option<String>,
    ) -> Result<(reqwest::StatusCode, String), String> {
        let url = format!(
            "{}/services/data/v{}{path}",
            self.cred.url.trim_end_matches('/'),
            self.version
        );
        let (status, text) = send_body(
            &self.cred,
            method.clone(),
            &url,
            csv.map(|c| ("text/csv", c)),
        )
        .await?;
        if !status.is_success() {
            return Err(format!(
                "{} {url} answered HTTP {}: {}",
                method.as_str(),
                status.as_u16(),
                text.chars().take(500).collect::<String>()
            ));
        }
        Ok((status, text))
    }

    /// Waits until Bulk job `path` (`/jobs/ingest/ID`) is done; its final info.
    async fn wait_job(&self, path: &str) -> Result<Json, String> {
        let mut pause = Duration::from_millis(100);
        loop {
            let info = self.call(Method::GET, path, None).await?;
            match info["state"].as_str().unwrap_or_default() {
                "JobComplete" => return Ok(info),
                "Failed" | "Aborted" => {
                    return Err(format!(
                        "the remote Bulk job {path} ended {}: {}",
                        info["state"],
                        info["errorMessage"].as_str().unwrap_or("no message")
                    ))
                }
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_MAX);
                }
            }
        }
    }

    /// Writes the rows as one Bulk API 2.0 ingest job (CSV); one outcome per row, matched to
    /// the job's successful and failed results by the row's values.
    pub async fn bulk_write(
        &self,
        op: Operation,
        external_id: Option<&str>,
        rows: &[&Record],
    ) -> Result<Vec<Outcome>, String> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut header: Vec<String> = Vec::new();
        for r in rows {
            for k in r.keys() {
                if !header.contains(k) {
                    header.push(k.clone());
                }
            }
        }
        // `#N/A` sets a field to null; a column a row lacks is left as it is (empty).
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                header
                    .iter()
                    .map(|h| match r.get(h) {
                        None => String::new(),
                        Some(Json::Null) => "#N/A".into(),
                        Some(Json::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        w.write_record(&header).map_err(|e| e.to_string())?;
        for c in &cells {
            w.write_record(c).map_err(|e| e.to_string())?;
        }
        let body = String::from_utf8(w.into_inner().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let operation = match op {
            Operation::Insert => "insert",
            Operation::Upsert => "upsert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        };
        let mut job = json!({"object": self.object, "operation": operation,
                             "contentType": "CSV", "lineEnding": "LF"});
        if op == Operation::Upsert {
            job["externalIdFieldName"] = json!(external_id.unwrap_or("Id"));
        }
        let info = self.call(Method::POST, "/jobs/ingest", Some(&job)).await?;
        let id = info["id"]
            .as_str()
            .ok_or_else(|| format!("the remote org created no Bulk job: {info}"))?
            .to_string();
        let path = format!("/jobs/ingest/{id}");
        self.bulk_call(Method::PUT, &format!("{path}/batches"), Some(body))
            .await?;
        self.call(
            Method::PATCH,
            &path,
            Some(&json!({"state": "UploadComplete"})),
        )
        .await?;
        self.wait_job(&path).await?;
        // Each result row carries the row as uploaded after its `sf__` columns.
        let key = |values: &[String]| values.join("\u{1f}");
        let mut results: std::collections::HashMap<String, std::collections::VecDeque<Outcome>> =
            std::collections::HashMap::new();
        for (kind, ok) in [("successfulResults", true), ("failedResults", false)] {
            let (_, text) = self
                .bulk_call(Method::GET, &format!("{path}/{kind}/"), None)
                .await?;
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            let names: Vec<String> = r
                .headers()
                .map_err(|e| format!("{kind}: {e}"))?
                .iter()
                .map(str::to_string)
                .collect();
            let at: Vec<Option<usize>> = header
                .iter()
                .map(|h| names.iter().position(|n| n == h))
                .collect();
            let error = names.iter().position(|n| n == "sf__Error");
            for rec in r.records() {
                let rec = rec.map_err(|e| format!("{kind}: {e}"))?;
                let values: Vec<String> = at
                    .iter()
                    .map(|i| i.and_then(|i| rec.get(i)).unwrap_or_default().to_string())
                    .collect();
                let outcome = if ok {
                    Ok(())
                } else {
                    Err(error
                        .and_then(|i| rec.get(i))
                        .unwrap_or("refused")
                        .to_string())
                };
                results.entry(key(&values)).or_default().push_back(outcome);
            }
        }
        Ok(cells
            .iter()
            .map(|c| {
                results
                    .get_mut(&key(c))
                    .and_then(|q| q.pop_front())
                    .unwrap_or_else(|| Err("the remote Bulk job did not process the row".into()))
            })
            .collect())
    }

    /// Every record after `after` (with the overlap window when rewinding), read by one Bulk
    /// API 2.0 query job and put in `(SystemModstamp, Id)` order.
    pub async fn bulk_read(
        &self,
        fields: &[String],
        after: Option<&Cursor>,
        rewind: bool,
        overlap_secs: u64,
    ) -> Result<Vec<Row>, String> {
        let mut soql = self.select(fields);
        if let Some(at) = after {
            let ms = parse_datetime(&at.value)
                .ok_or_else(|| format!("the cursor {} is not a date-time", at.value))?;
            let from = if rewind {
                ms - overlap_secs as i64 * 1000
            } else {
                ms
            };
            soql.push_str(&format!(
                " WHERE SystemModstamp >= {}",
                format_datetime_z(from)
            ));
        }
        let info = self
            .call(
                Method::POST,
                "/jobs/query",
                Some(&json!({"operation": "query", "query": soql})),
            )
            .await?;
        let id = info["id"]
            .as_str()
            .ok_or_else(|| format!("the remote org created no query job: {info}"))?
            .to_string();
        let path = format!("/jobs/query/{id}");
        self.wait_job(&path).await?;
        let mut rows = Vec::new();
        let mut locator: Option<String> = None;
        loop {
            let url = format!(
                "{}/services/data/v{}{path}/results?maxRecords=50000{}",
                self.cred.url.trim_end_matches('/'),
                self.version,
                locator
                    .as_ref()
                    .map(|l| format!("&locator={l}"))
                    .unwrap_or_default()
            );
            let resp = send_raw(&self.cred, Method::GET, &url, None).await?;
            let next = resp
                .headers()
                .get("Sforce-Locator")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_string);
            let status = resp.status();
            let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
            if !status.is_success() {
                return Err(format!(
                    "GET {url} answered HTTP {}: {text}",
                    status.as_u16()
                ));
            }
            let mut r = csv::Reader::from_reader(text.as_bytes());
            let header: Vec<String> = r
                .headers()
                .map_err(|e| format!("query results: {e}"))?
                .iter()
                .map(str::to_string)
                .collect();
            for rec in r.records() {
                let rec = rec.map_err(|e| format!("query results: {e}"))?;
                let data: serde_json::Map<String, Json> = header
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| {
                        (
                            h.clone(),
                            if v.is_empty() {
                                Json::Null
                            } else {
                                Json::String(v.to_string())
                            },
                        )
                    })
                    .collect();
                let stamp = data
                    .get("SystemModstamp")
                    .and_then(Json::as_str)
                    .and_then(parse_datetime)
                    .map(format_datetime_z)
                    .ok_or_else(|| format!("a {} record has no SystemModstamp", self.object))?;
                let key = data
                    .get("Id")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                rows.push(Row {
                    data: Json::Object(data),
                    at: Cursor { value: stamp, key },
                });
            }
            match next {
                Some(l) => locator = Some(l),
                None => break,
            }
        }
        // Strictly after the cursor unless rewinding; in order.
        if let (Some(at), false) = (after, rewind) {
            rows.retain(|r| {
                (parse_datetime(&r.at.value), &r.at.key) > (parse_datetime(&at.value), &at.key)
            });
        }
        rows.sort_by(|a, b| {
            (parse_datetime(&a.at.value), &a.at.key).cmp(&(parse_datetime(&b.at.value), &b.at.key))
        });
        Ok(rows)
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
    let body = body.map(|b| ("application/json", b.to_string()));
    send_body(cred, method, url, body).await
}

/// Like [`send`], with a body of any content type.
async fn send_body(
    cred: &Credential,
    method: Method,
    url: &str,
    body: Option<(&str, String)>,
) -> Result<(reqwest::StatusCode, String), String> {
    let resp = send_raw(cred, method, url, body).await?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
    Ok((status, text))
}

/// Sends one request through a named credential; the response, headers and all.
async fn send_raw(
    cred: &Credential,
    method: Method,
    url: &str,
    body: Option<(&str, String)>,
) -> Result<reqwest::Response, String> {
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
        if let Some((ty, b)) = &body {
            req = req.header("Content-Type", *ty).body(b.clone());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{} {url}: {e}", method.as_str()))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !fresh && cred.renews_tokens() {
            fresh = true;
            continue;
        }
        return Ok(resp);
    }
}

//! Bulk API 2.0 (`/services/data/vNN.N/jobs/ingest|query`): job JSON, CSV uploads streamed to
//! disk, CSV results streamed out, and Bulk's error arrays. The jobs themselves are
//! [`service::bulk`]'s.
//!
//! Job info is always JSON (clients ask for it with `Accept: text/csv`); dates look like
//! `2022-01-02T21:33:43.000+0000`, `apiVersion` is a number and `contentUrl` has no leading
//! slash. Query result pages always carry `Sforce-Locator` (the literal `null` on the last page)
//! and `Sforce-NumberOfRecords`; no other response carries them.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use model::{ApiError, ApiVersion, ErrorCode};
use serde_json::{json, Map, Value as Json};
use service::bulk::{Bulk, BulkError, Job, JobKind, JobState, ResultKind};
use service::Principal;

use crate::body::{parse_json, read_limited};
use crate::error::json;
use crate::AppState;

/// What a Bulk API 2.0 request knows once authenticated (the body is still unread).
pub struct BulkCtx {
    /// Shared state.
    pub state: AppState,
    /// The caller.
    pub principal: Principal,
    /// The URL's API version.
    pub version: ApiVersion,
    /// `scheme://host[:port]` (Bulk links are paths; kept for surfaces that need absolute URLs).
    #[allow(dead_code)]
    pub base: String,
    /// Method, URI, headers.
    pub parts: http::request::Parts,
}

impl BulkCtx {
    fn query(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        if let Some(q) = self.parts.uri.query() {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        m
    }

    fn content_type(&self) -> String {
        self.parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
}

/// A Bulk error as a REST error array.
fn bulk_error(e: &BulkError) -> Response {
    if e.code == "UNKNOWN_EXCEPTION" {
        tracing::error!(message = %e.message, "internal error answered");
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    json(
        status,
        &json!([{"errorCode": e.code, "message": e.message}]),
    )
}

fn method_not_allowed(m: &Method, allowed: &str) -> BulkError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("HTTP Method '{m}' not allowed. Allowed are {allowed}"),
    )
    .into()
}

/// `/services/data/vNN.N/jobs/{rest…}`.
pub async fn dispatch(ctx: BulkCtx, rest: &[String], body: Body) -> Response {
    let Some(bulk) = Bulk::of(&ctx.state.org) else {
        return bulk_error(&BulkError::new(
            503,
            "SERVER_UNAVAILABLE",
            "The Bulk API is not running on this server.",
        ));
    };
    match route(&ctx, &bulk, rest, body).await {
        Ok(r) => r,
        Err(e) => bulk_error(&e),
    }
}

async fn route(
    ctx: &BulkCtx,
    bulk: &Bulk,
    rest: &[String],
    body: Body,
) -> Result<Response, BulkError> {
    let m = &ctx.parts.method;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let (kind, tail) = match rest.split_first() {
        Some((&"ingest", tail)) if ctx.version.0 >= 41 => (JobKind::Ingest, tail),
        Some((&"query", tail)) if ctx.version.0 >= 47 => (JobKind::Query, tail),
        _ => return Err(BulkError::not_found()),
    };
    let p = &ctx.principal;
    match tail {
        [] if *m == Method::GET => list(ctx, bulk, kind),
        [] if *m == Method::POST => create(ctx, bulk, kind, body).await,
        [] => Err(method_not_allowed(m, "GET, POST")),
        [id] if *m == Method::GET => Ok(job_response(ctx, &bulk.job(p, kind, id)?, true)),
        [id] if *m == Method::PATCH => {
            let b = json_body(ctx, body).await?;
            let state = b.get("state").and_then(Json::as_str).ok_or_else(|| {
                BulkError::new(400, "INVALIDJOBSTATE", "The job state is required")
            })?;
            let job = bulk.set_state(p, kind, id, state).await?;
            Ok(job_response(ctx, &job, false))
        }
        [id] if *m == Method::DELETE => {
            bulk.delete(p, kind, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        [_] => Err(method_not_allowed(m, "GET, PATCH, DELETE")),
        [id, "batches"] if kind == JobKind::Ingest => {
            if *m != Method::PUT {
                return Err(method_not_allowed(m, "PUT"));
            }
            upload(ctx, bulk, id, body).await
        }
        [id, which] if kind == JobKind::Ingest => {
            let which = match which.to_ascii_lowercase().as_str() {
                "successfulresults" => ResultKind::Successful,
                "failedresults" => ResultKind::Failed,
                "unprocessedrecords" => ResultKind::Unprocessed,
                _ => return Err(BulkError::not_found()),
            };
            if *m != Method::GET {
                return Err(method_not_allowed(m, "GET"));
            }
            let rx = bulk.ingest_results(p, id, which)?;
            Ok(csv_response(rx, None))
        }
        [id, "results"] if kind == JobKind::Query => {
            if *m != Method::GET {
                return Err(method_not_allowed(m, "GET"));
            }
            let q = ctx.query();
            let max = match q.get("maxRecords") {
                Some(v) => Some(v.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(
                    || {
                        BulkError::new(
                            400,
                            "INVALIDQUERYPARAMETER",
                            format!("maxRecords must be a positive whole number, not {v}"),
                        )
                    },
                )?),
                None => None,
            };
            let page = bulk.query_results(
                p,
                id,
                ctx.version.0,
                q.get("locator").map(String::as_str),
                max,
            )?;
            let (locator, n) = (page.locator.clone(), page.records);
            Ok(csv_response(page.body, Some((locator, n))))
        }
        _ => Err(BulkError::not_found()),
    }
}

/// Reads a small JSON object body.
async fn json_body(ctx: &BulkCtx, body: Body) -> Result<Map<String, Json>, BulkError> {
    let bytes = read_limited(body, ctx.state.org.config().max_json_body).await?;
    match parse_json(&bytes)? {
        Json::Object(m) => Ok(m),
        _ => Err(ApiError::new(
            ErrorCode::JsonParserError,
            "The request body must be a JSON object",
        )
        .into()),
    }
}

async fn create(
    ctx: &BulkCtx,
    bulk: &Bulk,
    kind: JobKind,
    body: Body,
) -> Result<Response, BulkError> {
    let p = &ctx.principal;
    let v = ctx.version.0;
    let ct = ctx.content_type();
    if kind == JobKind::Ingest && ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        let limit = ctx.state.org.config().max_json_body;
        let bytes = read_limited(body, limit).await?;
        let boundary = boundary(&ct).ok_or_else(|| {
            BulkError::new(400, "INVALIDJOB", "The multipart request has no boundary")
        })?;
        let parts = multipart(&bytes, &boundary);
        let job = parts
            .iter()
            .find(|(name, _)| name == "job")
            .ok_or_else(|| {
                BulkError::new(400, "INVALIDJOB", "The multipart request has no 'job' part")
            })?;
        let spec = match parse_json(&job.1)? {
            Json::Object(m) => m,
            _ => {
                return Err(BulkError::new(
                    400,
                    "INVALIDJOB",
                    "The 'job' part must be a JSON object",
                ))
            }
        };
        let content = parts
            .into_iter()
            .find(|(name, _)| name == "content")
            .map(|(_, c)| c)
            .ok_or_else(|| {
                BulkError::new(
                    400,
                    "INVALIDJOB",
                    "The multipart request has no 'content' part",
                )
            })?;
        let job = bulk.create_ingest_with_data(p, v, &spec, content).await?;
        return Ok(job_response(ctx, &job, false));
    }
    let spec = json_body(ctx, body).await?;
    let job = match kind {
        JobKind::Ingest => bulk.create_ingest(p, v, &spec).await?,
        JobKind::Query => bulk.create_query(p, v, &spec).await?,
    };
    Ok(job_response(ctx, &job, false))
}

async fn upload(ctx: &BulkCtx, bulk: &Bulk, id: &str, body: Body) -> Result<Response, BulkError> {
    let limit = bulk.options().max_upload_bytes;
    let declared = ctx
        .parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BulkError::new(
            413,
            "REQUEST_ENTITY_TOO_LARGE",
            format!("The upload is larger than the maximum of {limit} bytes for a job"),
        ));
    }
    let mut up = bulk.begin_upload(&ctx.principal, id)?;
    let mut body = body;
    const PIECE: usize = 1024 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            BulkError::from(ApiError::new(
                ErrorCode::InvalidInput,
                "The request body could not be read.",
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() >= PIECE {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(PIECE));
                up.write(full).await?;
            }
        }
    }
    if !buf.is_empty() {
        up.write(buf).await?;
    }
    up.finish(bulk).await?;
    Ok(StatusCode::CREATED.into_response())
}

fn list(ctx: &BulkCtx, bulk: &Bulk, kind: JobKind) -> Result<Response, BulkError> {
    let q = ctx.query();
    let pk = q
        .get("isPkChunkingEnabled")
        .map(|v| v.eq_ignore_ascii_case("true"));
    let page = bulk.list(
        &ctx.principal,
        kind,
        q.get("queryLocator").map(String::as_str),
        q.get("jobType").map(String::as_str),
        pk,
    )?;
    let records: Vec<Json> = page
        .jobs
        .iter()
        .map(|j| Json::Object(job_json(ctx, j, false)))
        .collect();
    let segment = match kind {
        JobKind::Ingest => "ingest",
        JobKind::Query => "query",
    };
    let next = page.next.as_ref().map(|l| {
        format!(
            "/services/data/{}/jobs/{segment}?queryLocator={l}",
            ctx.version.segment()
        )
    });
    Ok(json(
        StatusCode::OK,
        &json!({"done": next.is_none(), "records": records, "nextRecordsUrl": next}),
    ))
}

/// `2022-01-02T21:33:43.000+0000` (Salesforce shows job times to the second).
fn date(ms: i64) -> String {
    model::value::format_datetime(ms.div_euclid(1000) * 1000)
}

fn job_json(ctx: &BulkCtx, j: &Job, full: bool) -> Map<String, Json> {
    let _ = ctx;
    let mut m = Map::new();
    let id = j.id.to_18();
    m.insert("id".into(), id.clone().into());
    m.insert("operation".into(), j.operation.clone().into());
    m.insert("object".into(), j.object.clone().into());
    m.insert("createdById".into(), j.created_by.to_18().into());
    m.insert("createdDate".into(), date(j.created_ms).into());
    m.insert("systemModstamp".into(), date(j.modstamp_ms).into());
    m.insert("state".into(), j.state.as_str().into());
    if j.kind == JobKind::Ingest {
        m.insert(
            "externalIdFieldName".into(),
            j.external_id.clone().map(Json::from).unwrap_or(Json::Null),
        );
    }
    m.insert("concurrencyMode".into(), "Parallel".into());
    m.insert("contentType".into(), j.content_type.clone().into());
    m.insert("apiVersion".into(), json!(j.api_version as f64));
    m.insert("jobType".into(), j.kind.job_type().into());
    if j.kind == JobKind::Ingest {
        m.insert(
            "contentUrl".into(),
            format!(
                "services/data/v{}.0/jobs/ingest/{id}/batches",
                j.api_version
            )
            .into(),
        );
        if let Some(r) = &j.assignment_rule {
            m.insert("assignmentRuleId".into(), r.clone().into());
        }
    }
    m.insert("lineEnding".into(), j.line_ending.clone().into());
    m.insert("columnDelimiter".into(), j.column_delimiter.clone().into());
    if full {
        m.insert("numberRecordsProcessed".into(), j.processed.into());
        if j.kind == JobKind::Ingest {
            m.insert("numberRecordsFailed".into(), j.failed.into());
        }
        m.insert("retries".into(), j.retries.into());
        m.insert("totalProcessingTime".into(), j.processing_ms.into());
        if j.kind == JobKind::Ingest {
            m.insert("apiActiveProcessingTime".into(), j.processing_ms.into());
            m.insert("apexProcessingTime".into(), 0.into());
            m.insert(
                "errorMessage".into(),
                j.error_message
                    .clone()
                    .map(Json::from)
                    .unwrap_or(Json::Null),
            );
        } else {
            m.insert("isPkChunkingSupported".into(), true.into());
            if j.state == JobState::Failed {
                if let Some(e) = &j.error_message {
                    m.insert("errorMessage".into(), e.clone().into());
                }
            }
        }
    }
    m
}

/// Job info, always JSON (whatever `Accept` says).
fn job_response(ctx: &BulkCtx, j: &Job, full: bool) -> Response {
    json(StatusCode::OK, &Json::Object(job_json(ctx, j, full)))
}

/// A streamed CSV response; query pages add `Sforce-Locator` and `Sforce-NumberOfRecords`.
fn csv_response(rx: tokio::sync::mpsc::Receiver<Vec<u8>>, page: Option<(String, u64)>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(Bytes::from(b)), rx))
    });
    let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv"),
    );
    if let Some((locator, n)) = page {
        if let Ok(v) = HeaderValue::from_str(&locator) {
            h.insert("Sforce-Locator", v);
        }
        h.insert("Sforce-NumberOfRecords", HeaderValue::from(n));
    }
    r
}

/// The `boundary` parameter of a multipart content type.
fn boundary(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The named parts of a `multipart/form-data` body.
fn multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let find = |hay: &[u8], from: usize, needle: &[u8]| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut out = Vec::new();
    let Some(mut at) = find(body, 0, d) else {
        return out;
    };
    loop {
        let start = at + d.len();
        if body.get(start..start + 2) == Some(b"--") {
            break;
        }
        let Some(next) = find(body, start, d) else {
            break;
        };
        let part = &body[start..next];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        if let Some(h_end) = find(part, 0, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&part[..h_end]);
            let content = part[h_end + 4..].to_vec();
            let name = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                if !k.trim().eq_ignore_ascii_case("content-disposition") {
                    return None;
                }
                v.split(';').find_map(|p| {
                    let (k, v) = p.trim().split_once('=')?;
                    (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
                })
            });
            if let Some(name) = name {
                out.push((name, content));
            }
        }
        at = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_are_found() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"job\"\r\nContent-Type: application/json\r\n\r\n{\"object\":\"Account\"}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"content\"; filename=\"content\"\r\nContent-Type: text/csv\r\n\r\nName\nA\n\r\n--XyZ--\r\n";
        let parts = multipart(body, "XyZ");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "job");
        assert_eq!(parts[0].1, b"{\"object\":\"Account\"}");
        assert_eq!(parts[1].0, "content");
        assert_eq!(parts[1].1, b"Name\nA\n");
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
    }

    #[test]
    fn job_dates_are_shown_to_the_second() {
        assert_eq!(date(1_641_159_223_456), "2022-01-02T21:33:43.000+0000");
    }
}

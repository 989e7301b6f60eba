//! Bulk API 1.0 (`/services/async/NN.N/job…`): jobInfo and batchInfo documents in XML or JSON,
//! batch data and results in the job's format, and `<error>` documents with Bulk 1.0's
//! exception codes. The jobs and batches themselves are [`service::bulk::classic`]'s.
//!
//! Which format answers: a request with a JSON body (`POST /job`, `POST /job/{id}`) gets JSON,
//! any other body XML; requests about an existing job otherwise follow the job's content type
//! (JSON jobs answer JSON, CSV and XML jobs XML). Content-Types are exactly `application/xml`,
//! `application/json` or `text/csv`: salesforce-bulk compares them literally. A missing or
//! invalid session is HTTP 400 `InvalidSessionId`, which is what jsforce re-authenticates on.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use model::value::{format_datetime, format_datetime_z};
use model::ApiVersion;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use serde_json::{json, Map, Value as Json};
use service::bulk::classic::{BatchResults, ClassicBatch, ClassicJob, JobSpec, MAX_BATCH_BYTES};
use service::bulk::classic_data::{Format, NS};
use service::bulk::{Bulk, BulkError, RowOutcome};
use service::xml::{local_name, reference_char};
use service::Principal;

use crate::body::read_limited;
use crate::rest::token_from_headers;
use crate::AppState;

/// Largest job-level document (create, close, abort).
const MAX_JOB_DOC: usize = 64 * 1024;

/// How a response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doc {
    Xml,
    Json,
}

impl Doc {
    fn of(format: Format) -> Doc {
        if format == Format::Json {
            Doc::Json
        } else {
            Doc::Xml
        }
    }
}

fn with_type(status: StatusCode, mime: &'static str, body: impl Into<Body>) -> Response {
    let mut r = (status, body.into()).into_response();
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(mime));
    r
}

fn xml_doc(status: StatusCode, root: &str, inner: &str) -> Response {
    with_type(
        status,
        "application/xml",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root} xmlns=\"{NS}\">{inner}</{root}>"
        ),
    )
}

fn json_doc(status: StatusCode, body: &Json) -> Response {
    with_type(
        status,
        "application/json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

/// A Bulk 1.0 error document.
fn error(e: &BulkError, doc: Doc) -> Response {
    if e.status >= 500 {
        tracing::error!(code = %e.code, message = %e.message, "internal error answered");
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    match doc {
        Doc::Json => json_doc(
            status,
            &json!({"exceptionCode": e.code, "exceptionMessage": e.message}),
        ),
        Doc::Xml => xml_doc(
            status,
            "error",
            &format!(
                "<exceptionCode>{}</exceptionCode><exceptionMessage>{}</exceptionMessage>",
                escape(e.code.as_str()),
                escape(e.message.as_str())
            ),
        ),
    }
}

fn invalid_url(m: impl Into<String>) -> BulkError {
    BulkError::new(404, "InvalidUrl", m)
}

fn push(out: &mut String, tag: &str, value: impl std::fmt::Display) {
    let v = value.to_string();
    out.push_str(&format!("<{tag}>{}</{tag}>", escape(v.as_str())));
}

fn job_fields(j: &ClassicJob, doc: Doc) -> Vec<(&'static str, Json)> {
    let date = |ms: i64| match doc {
        Doc::Xml => format_datetime_z(ms),
        Doc::Json => format_datetime(ms),
    };
    let mut f: Vec<(&'static str, Json)> = vec![
        ("id", j.id.to_18().into()),
        ("operation", j.operation.clone().into()),
        ("object", j.object.clone().into()),
        ("createdById", j.created_by.to_18().into()),
        ("createdDate", date(j.created_ms).into()),
        ("systemModstamp", date(j.modstamp_ms).into()),
        ("state", j.state.clone().into()),
    ];
    if let Some(e) = &j.external_id {
        f.push(("externalIdFieldName", e.clone().into()));
    }
    if let Some(a) = &j.assignment_rule {
        f.push(("assignmentRuleId", a.clone().into()));
    }
    let b = &j.batches;
    f.extend([
        ("concurrencyMode", j.concurrency.clone().into()),
        ("contentType", j.format.as_str().into()),
        ("numberBatchesQueued", b.queued.into()),
        ("numberBatchesInProgress", b.in_progress.into()),
        ("numberBatchesCompleted", b.completed.into()),
        ("numberBatchesFailed", b.failed.into()),
        ("numberBatchesTotal", b.total().into()),
        ("numberRecordsProcessed", j.processed.into()),
        ("numberRetries", 0.into()),
        ("apiVersion", Json::from(j.api_version as f64)),
        ("numberRecordsFailed", j.failed.into()),
        ("totalProcessingTime", j.processing_ms.into()),
        ("apiActiveProcessingTime", j.processing_ms.into()),
        ("apexProcessingTime", 0.into()),
    ]);
    f
}

fn batch_fields(b: &ClassicBatch, doc: Doc) -> Vec<(&'static str, Json)> {
    let date = |ms: i64| match doc {
        Doc::Xml => format_datetime_z(ms),
        Doc::Json => format_datetime(ms),
    };
    let mut f: Vec<(&'static str, Json)> = vec![
        ("id", b.id.to_18().into()),
        ("jobId", b.job_id.to_18().into()),
        ("state", b.state.clone().into()),
    ];
    if let Some(m) = &b.state_message {
        f.push(("stateMessage", m.clone().into()));
    }
    f.extend([
        ("createdDate", date(b.created_ms).into()),
        ("systemModstamp", date(b.modstamp_ms).into()),
        ("numberRecordsProcessed", b.processed.into()),
        ("numberRecordsFailed", b.failed.into()),
        ("totalProcessingTime", b.processing_ms.into()),
        ("apiActiveProcessingTime", b.processing_ms.into()),
        ("apexProcessingTime", 0.into()),
    ]);
    f
}

fn xml_fields(fields: &[(&'static str, Json)]) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        match v {
            Json::String(s) => push(&mut out, k, s),
            Json::Number(n) if *k == "apiVersion" => push(
                &mut out,
                k,
                format!("{:.1}", n.as_f64().unwrap_or_default()),
            ),
            other => push(&mut out, k, other),
        }
    }
    out
}

fn json_fields(fields: Vec<(&'static str, Json)>) -> Json {
    Json::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn job_info(status: StatusCode, j: &ClassicJob, doc: Doc) -> Response {
    let f = job_fields(j, doc);
    match doc {
        Doc::Xml => xml_doc(status, "jobInfo", &xml_fields(&f)),
        Doc::Json => json_doc(status, &json_fields(f)),
    }
}

fn batch_info(status: StatusCode, b: &ClassicBatch, doc: Doc) -> Response {
    let f = batch_fields(b, doc);
    match doc {
        Doc::Xml => xml_doc(status, "batchInfo", &xml_fields(&f)),
        Doc::Json => json_doc(status, &json_fields(f)),
    }
}

fn batch_list(list: &[ClassicBatch], doc: Doc) -> Response {
    match doc {
        Doc::Xml => {
            let mut inner = String::new();
            for b in list {
                inner.push_str("<batchInfo>");
                inner.push_str(&xml_fields(&batch_fields(b, doc)));
                inner.push_str("</batchInfo>");
            }
            xml_doc(StatusCode::OK, "batchInfoList", &inner)
        }
        Doc::Json => json_doc(
            StatusCode::OK,
            &json!({"batchInfo": list.iter().map(|b| json_fields(batch_fields(b, doc))).collect::<Vec<_>>()}),
        ),
    }
}

fn csv_field(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(&s.replace('"', "\"\""));
    out.push('"');
}

fn ingest_results(outcomes: &[RowOutcome], format: Format) -> Response {
    match format {
        Format::Csv => {
            let mut out = String::from("\"Id\",\"Success\",\"Created\",\"Error\"\n");
            for o in outcomes {
                match o {
                    RowOutcome::Ok { id, created } => {
                        csv_field(&mut out, &id.to_18());
                        out.push_str(if *created {
                            ",\"true\",\"true\",\"\"\n"
                        } else {
                            ",\"true\",\"false\",\"\"\n"
                        });
                    }
                    RowOutcome::Err { error, .. } => {
                        out.push_str("\"\",\"false\",\"false\",");
                        csv_field(&mut out, &error.text());
                        out.push('\n');
                    }
                }
            }
            with_type(StatusCode::OK, "text/csv", out)
        }
        Format::Json => {
            let list: Vec<Json> = outcomes
                .iter()
                .map(|o| match o {
                    RowOutcome::Ok { id, created } => json!({
                        "success": true, "created": created, "id": id.to_18(), "errors": []
                    }),
                    RowOutcome::Err { error, .. } => json!({
                        "success": false, "created": false, "id": null,
                        "errors": [{
                            "message": error.message,
                            "fields": error.fields,
                            "statusCode": error.code,
                        }]
                    }),
                })
                .collect();
            json_doc(StatusCode::OK, &Json::Array(list))
        }
        Format::Xml => {
            let mut inner = String::new();
            for o in outcomes {
                inner.push_str("<result>");
                match o {
                    RowOutcome::Ok { id, created } => {
                        push(&mut inner, "id", id.to_18());
                        push(&mut inner, "success", true);
                        push(&mut inner, "created", created);
                    }
                    RowOutcome::Err { error, .. } => {
                        inner.push_str("<errors>");
                        for f in &error.fields {
                            push(&mut inner, "fields", f);
                        }
                        push(&mut inner, "message", &error.message);
                        push(&mut inner, "statusCode", &error.code);
                        inner.push_str("</errors>");
                        push(&mut inner, "success", false);
                        push(&mut inner, "created", false);
                    }
                }
                inner.push_str("</result>");
            }
            xml_doc(StatusCode::OK, "results", &inner)
        }
    }
}

fn query_result_list(ids: &[model::Id], doc: Doc) -> Response {
    match doc {
        Doc::Json => json_doc(
            StatusCode::OK,
            &Json::Array(ids.iter().map(|i| i.to_18().into()).collect()),
        ),
        Doc::Xml => {
            let mut inner = String::new();
            for i in ids {
                push(&mut inner, "result", i.to_18());
            }
            xml_doc(StatusCode::OK, "result-list", &inner)
        }
    }
}

/// The children of a `<jobInfo>` document, by local name.
fn parse_job_xml(body: &[u8]) -> Result<Map<String, Json>, BulkError> {
    let bad = |m: String| BulkError::new(400, "InvalidXML", m);
    let mut r = quick_xml::Reader::from_reader(body);
    let mut depth = 0usize;
    let mut root = None;
    let mut text = String::new();
    let mut out = Map::new();
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                depth += 1;
                if depth > 4 {
                    return Err(bad("The document nests elements too deeply".into()));
                }
                if depth == 1 {
                    root = Some(local_name(e.name().as_ref()));
                }
                text.clear();
            }
            Ok(Event::Empty(e)) if depth == 1 => {
                out.insert(local_name(e.name().as_ref()), Json::String(String::new()));
            }
            Ok(Event::Empty(_)) => {}
            Ok(Event::Text(t)) => {
                text.push_str(&t.decode().map_err(|e| bad(format!("Bad text: {e}")))?)
            }
            Ok(Event::GeneralRef(g)) => text.push(
                reference_char(&g)
                    .map_err(|m| bad(format!("The XML document could not be parsed: {m}")))?,
            ),
            Ok(Event::End(e)) => {
                if depth == 2 {
                    out.insert(
                        local_name(e.name().as_ref()),
                        Json::String(text.trim().to_string()),
                    );
                }
                depth = depth.saturating_sub(1);
                text.clear();
            }
            Ok(Event::Eof) => break,
            Ok(Event::DocType(_)) => return Err(bad("DOCTYPE is not allowed".into())),
            Ok(_) => {}
            Err(e) => return Err(bad(format!("The XML document could not be parsed: {e}"))),
        }
        buf.clear();
    }
    match root.as_deref() {
        Some("jobInfo") if depth == 0 => Ok(out),
        Some(other) if depth == 0 => {
            Err(bad(format!("Expected a jobInfo document, found {other}")))
        }
        _ => Err(bad("The XML document is incomplete".into())),
    }
}

fn parse_job_doc(body: &[u8], doc: Doc) -> Result<Map<String, Json>, BulkError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match doc {
        Doc::Json => match serde_json::from_slice::<Json>(body) {
            Ok(Json::Object(m)) => Ok(m),
            Ok(_) => Err(BulkError::new(400, "InvalidJob", "Expected a JSON object")),
            Err(e) => Err(BulkError::new(
                400,
                "ClientInputError",
                format!("Failed to parse the JSON document: {e}"),
            )),
        },
        Doc::Xml => parse_job_xml(body),
    }
}

fn text_of(m: &Map<String, Json>, k: &str) -> Option<String> {
    match m.get(k)? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct Call {
    bulk: std::sync::Arc<Bulk>,
    principal: Principal,
    version: u32,
    method: Method,
    body_doc: Doc,
    body: Body,
}

impl Call {
    /// How to answer about job `id`.
    fn doc_for(&self, id: &str) -> Doc {
        self.bulk
            .classic_format(&self.principal, id)
            .map(Doc::of)
            .unwrap_or(self.body_doc)
    }

    /// Reads a job-level document (create, close, abort), refusing large ones.
    async fn small_body(&mut self) -> Result<Bytes, BulkError> {
        read_limited(std::mem::take(&mut self.body), MAX_JOB_DOC)
            .await
            .map_err(|e| BulkError::new(400, "ClientInputError", e.message))
    }
}

fn not_allowed(m: &Method) -> BulkError {
    BulkError::new(
        405,
        "InvalidUrl",
        format!("HTTP method {m} is not allowed here"),
    )
}

/// `/services/async/{rest…}`.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body_doc = if content_type.contains("json") {
        Doc::Json
    } else {
        Doc::Xml
    };
    let segments: Vec<String> = parts
        .uri
        .path()
        .trim_start_matches("/services/async/")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .collect();
    let version = match segments.first().map(String::as_str) {
        Some(v) if !v.starts_with('v') => match ApiVersion::parse(v) {
            Ok(v) => v,
            Err(_) => {
                return error(
                    &invalid_url(format!("Unsupported API version: {v}")),
                    body_doc,
                )
            }
        },
        _ => {
            return error(
                &invalid_url("Bulk API URLs are /services/async/NN.N/job…"),
                body_doc,
            )
        }
    };
    let invalid_session = || BulkError::new(400, "InvalidSessionId", "Invalid session id");
    let Some(token) = token_from_headers(&parts.headers) else {
        return error(&invalid_session(), body_doc);
    };
    let principal = match state.org.authenticate(&token) {
        Ok(p) => p,
        Err(_) => return error(&invalid_session(), body_doc),
    };
    if let Err(e) = state.org.usage.count() {
        return error(&BulkError::new(400, "ExceededQuota", e.message), body_doc);
    }
    let Some(bulk) = Bulk::of(&state.org) else {
        return error(
            &BulkError::new(503, "Unknown", "The bulk engine is not running"),
            body_doc,
        );
    };
    let call = Call {
        bulk,
        principal,
        version: version.0,
        method: parts.method.clone(),
        body_doc,
        body,
    };
    let rest: Vec<&str> = segments[1..].iter().map(String::as_str).collect();
    route(call, &rest).await
}

async fn route(call: Call, rest: &[&str]) -> Response {
    let m = call.method.clone();
    match rest {
        ["job"] => {
            if m != Method::POST {
                return error(&not_allowed(&m), call.body_doc);
            }
            let doc = call.body_doc;
            let r = async {
                let mut call = call;
                let body = call.small_body().await?;
                let spec = parse_job_doc(&body, doc)?;
                let spec = JobSpec {
                    operation: text_of(&spec, "operation"),
                    object: text_of(&spec, "object"),
                    external_id: text_of(&spec, "externalIdFieldName"),
                    concurrency: text_of(&spec, "concurrencyMode"),
                    content_type: text_of(&spec, "contentType"),
                    assignment_rule: text_of(&spec, "assignmentRuleId"),
                };
                let default = if doc == Doc::Json {
                    Format::Json
                } else {
                    Format::Xml
                };
                call.bulk
                    .classic_create(&call.principal, call.version, &spec, default)
                    .await
            }
            .await;
            match r {
                Ok(j) => job_info(StatusCode::CREATED, &j, doc),
                Err(e) => error(&e, doc),
            }
        }
        ["job", id] => {
            let id = id.to_string();
            match m {
                Method::GET => {
                    let doc = call.doc_for(&id);
                    match call.bulk.classic_job(&call.principal, &id) {
                        Ok(j) => job_info(StatusCode::OK, &j, doc),
                        Err(e) => error(&e, doc),
                    }
                }
                Method::POST => {
                    let doc = call.body_doc;
                    let r = async {
                        let mut call = call;
                let body = call.small_body().await?;
                        let spec = parse_job_doc(&body, doc)?;
                        let wanted = text_of(&spec, "state").ok_or_else(|| {
                            BulkError::new(
                                400,
                                "InvalidJobState",
                                "Send a state (Closed or Aborted) to change a job",
                            )
                        })?;
                        call.bulk
                            .classic_set_state(&call.principal, &id, &wanted)
                            .await
                    }
                    .await;
                    match r {
                        Ok(j) => job_info(StatusCode::OK, &j, doc),
                        Err(e) => error(&e, doc),
                    }
                }
                _ => error(&not_allowed(&m), call.body_doc),
            }
        }
        ["job", id, "batch"] => {
            let id = id.to_string();
            let doc = call.doc_for(&id);
            match m {
                Method::GET => match call.bulk.classic_batches(&call.principal, &id) {
                    Ok(list) => batch_list(&list, doc),
                    Err(e) => error(&e, doc),
                },
                Method::POST => {
                    let Call {
                        bulk,
                        principal,
                        body,
                        ..
                    } = call;
                    let data = match read_limited(body, MAX_BATCH_BYTES).await {
                        Ok(b) => b,
                        Err(_) => {
                            return error(
                                &BulkError::new(
                                    400,
                                    "ClientInputError",
                                    format!(
                                        "Exceeded max size limit of {MAX_BATCH_BYTES} bytes for a batch"
                                    ),
                                ),
                                doc,
                            )
                        }
                    };
                    match bulk
                        .classic_add_batch(&principal, &id, data.to_vec())
                        .await
                    {
                        Ok(b) => batch_info(StatusCode::CREATED, &b, doc),
                        Err(e) => error(&e, doc),
                    }
                }
                _ => error(&not_allowed(&m), doc),
            }
        }
        ["job", id, "spec"] => error(
            &BulkError::new(
                400,
                "FeatureNotEnabled",
                "Field mapping specs are not supported by Conflux; name the fields in the batch header",
            ),
            call.doc_for(id),
        ),
        ["job", id, "batch", batch] => {
            let doc = call.doc_for(id);
            if m != Method::GET {
                return error(&not_allowed(&m), doc);
            }
            match call.bulk.classic_batch(&call.principal, id, batch) {
                Ok(b) => batch_info(StatusCode::OK, &b, doc),
                Err(e) => error(&e, doc),
            }
        }
        ["job", id, "batch", batch, "request"] => {
            let doc = call.doc_for(id);
            if m != Method::GET {
                return error(&not_allowed(&m), doc);
            }
            match call.bulk.classic_request(&call.principal, id, batch).await {
                Ok((format, data)) => with_type(StatusCode::OK, format.mime(), data),
                Err(e) => error(&e, doc),
            }
        }
        ["job", id, "batch", batch, "result"] => {
            let doc = call.doc_for(id);
            if m != Method::GET {
                return error(&not_allowed(&m), doc);
            }
            match call.bulk.classic_results(&call.principal, id, batch) {
                Ok((format, BatchResults::Ingest(outcomes))) => ingest_results(&outcomes, format),
                Ok((format, BatchResults::Query(ids))) => query_result_list(&ids, Doc::of(format)),
                Err(e) => error(&e, doc),
            }
        }
        ["job", id, "batch", batch, "result", result] => {
            let doc = call.doc_for(id);
            if m != Method::GET {
                return error(&not_allowed(&m), doc);
            }
            match call
                .bulk
                .classic_query_result(&call.principal, id, batch, result)
            {
                Ok((format, rx)) => {
                    let stream = futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv()
                            .await
                            .map(|b| (Ok::<Bytes, std::io::Error>(Bytes::from(b)), rx))
                    });
                    with_type(StatusCode::OK, format.mime(), Body::from_stream(stream))
                }
                Err(e) => error(&e, doc),
            }
        }
        _ => error(&invalid_url("Unknown Bulk API resource"), call.body_doc),
    }
}

//! REST under `/services/data`: the versions list, then per version the resource list, limits,
//! sObject describe and CRUD, upsert by external id, getUpdated/getDeleted, query and queryAll with
//! locators, and the Tooling API's CustomObject/CustomField creation.
//!
//! One handler matches the path segments (Salesforce's URL space is irregular: external-id paths,
//! `updated`, `deleted`, `{id}/password`…), so the same dispatch can later serve Composite
//! subrequests.

pub(crate) mod admin;
mod composite;
mod describe;
mod exec;
mod out;
mod records;
mod tooling;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use model::{ApiError, ApiVersion, ErrorCode};
use serde_json::{json, Value as Json};
use service::Principal;

use crate::body::{parse_json, read_limited};
use crate::error::{api_error, json};
use crate::{scheme_of, AppState};

/// Everything a REST handler needs about the request.
#[derive(Clone)]
pub struct Ctx {
    /// Shared state.
    pub state: AppState,
    /// The authenticated caller.
    pub principal: Principal,
    /// The API version of the URL.
    pub version: ApiVersion,
    /// `scheme://host[:port]`.
    pub base: String,
    /// HTTP method.
    pub method: Method,
    /// Request headers.
    pub headers: HeaderMap,
    /// Query parameters (first value of each).
    pub query: HashMap<String, String>,
    /// Raw body.
    pub body: Bytes,
}

impl Ctx {
    /// `/services/data/vNN.N`.
    pub fn prefix(&self) -> String {
        format!("/services/data/{}", self.version.segment())
    }

    /// The body as JSON (JSON_PARSER_ERROR if it is not).
    pub fn json_body(&self) -> Result<Json, ApiError> {
        if let Some(ct) = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            let ct = ct.to_ascii_lowercase();
            if !(ct.starts_with("application/json")
                || ct.starts_with("text/plain")
                || ct.starts_with("application/x-www-form-urlencoded"))
            {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("Content type '{ct}' is not supported for this resource; send application/json"),
                ));
            }
        }
        parse_json(&self.body)
    }

    /// An HTTP-date header as milliseconds since the epoch.
    pub fn date_header(&self, name: &str) -> Option<i64> {
        let v = self.headers.get(name)?.to_str().ok()?.trim();
        if let Ok(d) = chrono::DateTime::parse_from_rfc2822(v) {
            return Some(d.timestamp_millis());
        }
        // The obsolete HTTP-date forms recipients must still accept (RFC 9110 §5.6.7):
        // RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
        let squeezed = v.split_whitespace().collect::<Vec<_>>().join(" ");
        [
            "%A, %d-%b-%y %H:%M:%S GMT",
            "%a %b %e %H:%M:%S %Y",
            "%a %b %d %H:%M:%S %Y",
        ]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(&squeezed, f).ok())
        .map(|d| d.and_utc().timestamp_millis())
    }
}

/// The access token of a request: `Authorization: Bearer|OAuth <token>`, `X-SFDC-Session`, or
/// the console's session cookie together with its CSRF token.
pub fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        for scheme in ["Bearer ", "OAuth ", "bearer ", "oauth ", "BEARER "] {
            if let Some(t) = v.strip_prefix(scheme) {
                return Some(t.trim().to_string());
            }
        }
    }
    headers
        .get("x-sfdc-session")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.trim().to_string())
        .or_else(|| crate::console::session(headers, None))
}

/// A REST error for a method the resource does not support.
pub fn method_not_allowed(method: &Method, allowed: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    )
}

/// `GET /services/data`: every served version, oldest first. No authentication.
pub async fn versions(req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return api_error(&method_not_allowed(req.method(), "GET,HEAD"));
    }
    let list: Vec<Json> = ApiVersion::all().map(|v| json!({"label": v.label(), "url": format!("/services/data/{}", v.segment()), "version": v.number()})).collect();
    json(StatusCode::OK, &Json::Array(list))
}

/// Any path nobody serves.
pub async fn not_found() -> Response {
    api_error(&ApiError::not_found())
}

fn version_error(seg: &str) -> ApiError {
    match ApiVersion::parse(seg) {
        Err(model::version::VersionError::Retired) => ApiError::new(
            ErrorCode::ApiVersionGone,
            format!(
                "API version {seg} is no longer supported; use v{}.0 or later",
                model::version::MIN_VERSION
            ),
        ),
        _ => ApiError::not_found(),
    }
}

/// `/services/data/{*rest}`.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let scheme = scheme_of(&req);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segments: Vec<String> = path
        .trim_start_matches("/services/data/")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let Some(first) = segments.first() else {
        return versions_like(&parts.method);
    };
    // REST versions are `vNN.N` (or `latest`); the bare `NN.N` of SOAP and Bulk 1.0 is not a REST
    // URL.
    if !first.starts_with('v') && !first.eq_ignore_ascii_case("latest") {
        return api_error(&ApiError::not_found());
    }
    let version = match ApiVersion::parse(first) {
        Ok(v) => v,
        Err(_) => return api_error(&version_error(first)),
    };
    let Some(token) = token_from_headers(&parts.headers) else {
        return api_error(&ApiError::invalid_session());
    };
    let principal = match state.org.authenticate(&token) {
        Ok(p) => p,
        Err(e) => return api_error(&e),
    };
    let org = state.org.clone();
    let mut response =
        authenticated(state, scheme, parts, body, principal, version, segments).await;
    // Every REST response after authentication reports the usage, refusals included.
    let (used, max) = org.usage.daily();
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{max}")) {
        response.headers_mut().insert("Sforce-Limit-Info", v);
    }
    response
}

async fn authenticated(
    state: AppState,
    scheme: crate::Scheme,
    parts: http::request::Parts,
    body: axum::body::Body,
    mut principal: Principal,
    version: ApiVersion,
    segments: Vec<String>,
) -> Response {
    let api = if segments.first().map(String::as_str) == Some("tooling") {
        "toolingrest"
    } else {
        "rest"
    };
    principal.origin = service::Origin::new(
        api,
        version.number(),
        parts
            .headers
            .get("sforce-call-options")
            .and_then(|v| v.to_str().ok()),
    );
    let org = state.org.clone();
    if let Err(e) = org.usage.count() {
        return api_error(&e);
    }
    let _in_flight = match org
        .usage
        .begin(Duration::from_millis(state.org.config().long_request_ms))
    {
        Ok(g) => g,
        Err(e) => return api_error(&e),
    };
    // Bulk API 2.0 (`/jobs/...`) streams its uploads to disk: hand it the body unread.
    if segments.get(1).map(String::as_str) == Some("jobs") {
        let base = state.base_url(&parts.headers, scheme);
        let ctx = crate::bulk2::BulkCtx {
            state,
            principal,
            version,
            base,
            parts,
        };
        return crate::bulk2::dispatch(ctx, &segments[2..], body).await;
    }
    let body = match read_limited(body, state.org.config().max_json_body).await {
        Ok(b) => b,
        Err(e) => return api_error(&e),
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            let mut m = HashMap::new();
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
            m
        })
        .unwrap_or_default();
    let base = state.base_url(&parts.headers, scheme);
    // Clients that cannot send PATCH (or DELETE) POST with `?_HttpMethod=PATCH` instead.
    let method = match query.get("_HttpMethod") {
        Some(m) if parts.method == Method::POST && m.eq_ignore_ascii_case("PATCH") => Method::PATCH,
        Some(m) if parts.method == Method::POST && m.eq_ignore_ascii_case("DELETE") => {
            Method::DELETE
        }
        _ => parts.method,
    };
    let ctx = Ctx {
        state,
        principal,
        version,
        base,
        method,
        headers: parts.headers,
        query,
        body,
    };
    let rest: Vec<&str> = segments[1..].iter().map(String::as_str).collect();
    let mut response = match route(&ctx, &rest).await {
        Ok(r) => r,
        Err(e) => rest_error(&e),
    };
    if ctx.method == Method::HEAD {
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

/// A REST error response. A deleted record named in a field of the body (a lookup to a record in
/// the recycle bin) is a validation error of the request, 400 like every DML error; the 404 of
/// `ENTITY_IS_DELETED` is for the record the URL names.
fn rest_error(e: &ApiError) -> Response {
    if e.code == ErrorCode::EntityIsDeleted && !e.fields.is_empty() {
        return json(
            StatusCode::BAD_REQUEST,
            &Json::Array(vec![crate::error::error_json(e)]),
        );
    }
    api_error(e)
}

fn versions_like(method: &Method) -> Response {
    if method != Method::GET {
        return api_error(&method_not_allowed(method, "GET,HEAD"));
    }
    let list: Vec<Json> = ApiVersion::all().map(|v| json!({"label": v.label(), "url": format!("/services/data/{}", v.segment()), "version": v.number()})).collect();
    json(StatusCode::OK, &Json::Array(list))
}

/// Decodes `%XX` escapes in one path segment. Everything else is literal: `+` stays `+`, and `&`,
/// `=` or `;` (which jsforce leaves unencoded in external-id values) are ordinary characters.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Serves a reading resource in a read transaction.
fn run_read(ctx: &Ctx, rest: &[&str]) -> Result<Response, ApiError> {
    let reply = ctx.state.org.store().read(|tx| exec::read(ctx, tx, rest))?;
    Ok(reply.into_response(ctx))
}

/// Serves a writing resource in its own write transaction.
async fn run_write(ctx: &Ctx, rest: &[&str]) -> Result<Response, ApiError> {
    let (mut c, owned): (Ctx, Vec<String>) =
        (ctx.clone(), rest.iter().map(|s| s.to_string()).collect());
    // A single-record save whose before-save flows call out makes the callouts first: nothing is
    // written while waiting for a remote service, and a failed callout writes nothing.
    let single = match rest {
        ["sobjects", object] if ctx.method == Method::POST => Some((*object, None)),
        ["sobjects", object, id] if ctx.method == Method::PATCH => Some((*object, Some(*id))),
        _ => None,
    };
    if let Some((object, id)) = single {
        if let Ok(body) = ctx.json_body() {
            c.principal.prepared = ctx
                .state
                .org
                .prepare_save(&ctx.principal, object, id, &body)
                .await?;
        }
    }
    let reply = ctx
        .state
        .org
        .store()
        .write_small(move |tx| {
            let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
            exec::write(&c, tx, &segs)
        })
        .await?;
    if let Some(o) = &reply.wrote {
        ctx.state.org.note_write(o);
    }
    Ok(reply.into_response(ctx))
}

async fn route(ctx: &Ctx, rest: &[&str]) -> Result<Response, ApiError> {
    let m = &ctx.method;
    let get = *m == Method::GET || *m == Method::HEAD;
    match rest {
        ["sobjects", object, "eventSchema"] if get => return event_schema(ctx, Some(object), None),
        ["event", "eventSchema", id] if get => return event_schema(ctx, None, Some(id)),
        ["tooling", "query"] if get => return tooling::query(ctx),
        _ => {}
    }
    // `exec::read` and `exec::write` refuse record resources of event types themselves.
    if exec::is_read(m, rest) {
        return run_read(ctx, rest);
    }
    if exec::is_write(m, rest) {
        return run_write(ctx, rest).await;
    }
    if matches!(rest, ["sobjects", _, _, ..]) {
        exec::refuse_event_records(&ctx.state.org.schema(), m, rest)?;
    }
    match rest {
        [] if get => Ok(resources(ctx)),
        [] => Err(method_not_allowed(m, "GET,HEAD")),
        ["limits"] if get => Ok(limits(ctx)),
        ["limits"] => Err(method_not_allowed(m, "GET,HEAD")),
        ["sobjects"] if get => describe::global(ctx),
        ["sobjects"] => Err(method_not_allowed(m, "GET,HEAD")),
        ["sobjects", object] if get => records::basic_info(ctx, object),
        ["sobjects", _] => Err(method_not_allowed(m, "GET,HEAD,POST")),
        ["sobjects", object, "describe"] if get => describe::object(ctx, object),
        ["sobjects", _, "describe"] => Err(method_not_allowed(m, "GET,HEAD")),
        ["sobjects", object, "updated"] if get => records::updated(ctx, object),
        ["sobjects", object, "deleted"] if get => records::deleted(ctx, object),
        ["sobjects", object, id, "password"] if object.eq_ignore_ascii_case("User") => {
            records::password(ctx, id).await
        }
        ["sobjects", _, _] | ["sobjects", _, _, _] => {
            Err(method_not_allowed(m, "GET,HEAD,PATCH,DELETE"))
        }
        ["composite", more @ ..] => composite::route(ctx, more).await,
        ["conflux", more @ ..] => admin::route(ctx, more).await,
        ["actions", "custom", "flow"] if get => admin::flow_actions(ctx),
        ["actions", "custom", "flow", name] if *m == Method::POST => {
            admin::invoke_flow(ctx, name).await
        }
        ["actions", "custom", "flow", _] => Err(method_not_allowed(m, "POST")),
        ["query"] | ["queryAll"] | ["query", _] | ["queryAll", _] => {
            Err(method_not_allowed(m, "GET,HEAD"))
        }
        ["tooling", "sobjects", kind] => tooling::create(ctx, kind).await,
        ["tooling", "sobjects", kind, id] => tooling::record(ctx, kind, id).await,
        ["tooling", "sobjects"] if get => describe::tooling_global(ctx),
        ["recent"] if get => Ok(json(StatusCode::OK, &json!([]))),
        ["tabs"] | ["theme"] | ["quickActions"] if get => Ok(json(StatusCode::OK, &json!([]))),
        _ => Err(ApiError::not_found()),
    }
}

/// `GET sobjects/{Event}/eventSchema` and `GET event/eventSchema/{schemaId}`: the Avro schema of
/// a platform event type's payload (the schema id is the `schema` of delivered events); by id,
/// change events' schemas too.
fn event_schema(ctx: &Ctx, object: Option<&str>, id: Option<&str>) -> Result<Response, ApiError> {
    let org = &ctx.state.org;
    let p = &ctx.principal;
    let layout = match (object, id) {
        (Some(name), _) => {
            let schema = org.schema();
            let o = schema
                .objects()
                .filter(|o| o.kind == model::ObjectKind::PlatformEvent)
                .filter(|o| p.perms.object(o).read || p.perms.object(o).create)
                .find(|o| o.name.eq_ignore_ascii_case(name))
                .ok_or_else(ApiError::not_found)?;
            org.event_layout(&o.name)
        }
        (None, Some(id)) => org.event_schema_by_id(p, id).ok(),
        _ => None,
    }
    .ok_or_else(ApiError::not_found)?;
    let doc: serde_json::Value =
        serde_json::from_str(&layout.json).map_err(|_| ApiError::not_found())?;
    Ok(json(StatusCode::OK, &doc))
}

fn resources(ctx: &Ctx) -> Response {
    let p = ctx.prefix();
    let mut m = serde_json::Map::new();
    for r in [
        "tooling",
        "metadata",
        "eclair",
        "folders",
        "prechatForms",
        "contact-tracing",
        "jsonxform",
        "chatter",
        "tabs",
        "appMenu",
        "quickActions",
        "queryAll",
        "commerce",
        "wave",
        "iot",
        "analytics",
        "search",
        "smartdatadiscovery",
        "identity",
        "composite",
        "parameterizedSearch",
        "fingerprint",
        "theme",
        "nouns",
        "domino",
        "event",
        "serviceTemplates",
        "recent",
        "connect",
        "licensing",
        "limits",
        "process",
        "dedupe",
        "async-queries",
        "query",
        "jobs",
        "match",
        "emailConnect",
        "localizedvalue",
        "mobile",
        "emailTemplates",
        "knowledgeManagement",
        "sobjects",
        "actions",
        "support",
        "scheduling",
    ] {
        let url = if r == "identity" {
            format!(
                "{}/id/{}/{}",
                ctx.base,
                ctx.state.org.org_id().to_18(),
                ctx.principal.user_id.to_18()
            )
        } else {
            format!("{p}/{r}")
        };
        m.insert(r.to_string(), url.into());
    }
    json(StatusCode::OK, &Json::Object(m))
}

fn limits(ctx: &Ctx) -> Response {
    let (used, max) = ctx.state.org.usage.daily();
    let fixed = |max: u64| json!({"Max": max, "Remaining": max});
    json(
        StatusCode::OK,
        &json!({
            "ConcurrentAsyncGetReportInstances": fixed(200),
            "ConcurrentSyncReportRuns": fixed(20),
            "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
            "DailyAsyncApexExecutions": fixed(250000),
            "DailyBulkApiBatches": fixed(15000),
            "DailyBulkV2QueryFileStorageMB": fixed(976562),
            "DailyBulkV2QueryJobs": fixed(10000),
            "DailyDurableStreamingApiEvents": fixed(10000),
            "DailyStandardVolumePlatformEvents": fixed(10000),
            "DataStorageMB": fixed(1024 * 1024),
            "FileStorageMB": fixed(1024 * 1024),
            "HourlyPublishedPlatformEvents": fixed(250000),
            "MassEmail": fixed(5000),
            "SingleEmail": fixed(5000),
            "StreamingApiConcurrentClients": fixed(2000),
        }),
    )
}

/// A 204 No Content.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn path_segments_decode_only_percent_escapes() {
        assert_eq!(percent_decode("A&B=C;D+E%20F%2FG"), "A&B=C;D+E F/G");
        assert_eq!(percent_decode("%C3%A9t%C3%A9"), "été");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }
}

//! Composite resources: `/composite` (up to 25 dependent subrequests with `@{ref.path}`
//! references, optionally all-or-none), `/composite/batch` (independent subrequests),
//! `/composite/tree/{T}` (nested parent-child inserts, all-or-none) and the sObject collections
//! `/composite/sobjects` (create, update, upsert, delete, retrieve up to 200 records).
//!
//! Each request runs as ONE write job: subrequests execute in order inside one transaction, each
//! in its own savepoint when failures must not undo the others; an all-or-none failure rolls the
//! whole request back before the commit, so nothing of it is ever visible. The whole request
//! counts as one API call.

use std::collections::{HashMap, HashSet};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use model::{ApiError, ApiVersion, ErrorCode, Id, ObjectDef};
use serde_json::{json, Map, Value as Json};
use service::ops::{self, UpsertOutcome};
use store::WriteTx;

use super::exec::{self, Reply};
use super::{method_not_allowed, Ctx};
use crate::error::{error_json, json};

/// Most subrequests in `/composite` and `/composite/batch`.
const MAX_SUBREQUESTS: usize = 25;
/// Most query or collections subrequests in one `/composite`.
const MAX_QUERY_SUBREQUESTS: usize = 5;
/// Most records in a collections call or a tree.
const MAX_RECORDS: usize = 200;
/// Deepest tree.
const MAX_TREE_DEPTH: usize = 5;

const ROLLED_BACK: &str =
    "The transaction was rolled back since another operation in the same transaction failed.";

fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// `/composite/{rest…}`.
pub async fn route(ctx: &Ctx, rest: &[&str]) -> Result<Response, ApiError> {
    let m = &ctx.method;
    match rest {
        [] if *m == Method::GET => {
            let p = format!("{}/composite", ctx.prefix());
            Ok(json(
                StatusCode::OK,
                &json!({"tree": format!("{p}/tree"), "batch": format!("{p}/batch"), "sobjects": format!("{p}/sobjects"), "graph": format!("{p}/graph")}),
            ))
        }
        [] if *m == Method::POST => composite(ctx).await,
        [] => Err(method_not_allowed(m, "GET,POST")),
        ["batch"] if *m == Method::POST => batch(ctx).await,
        ["tree", object] if *m == Method::POST => tree(ctx, object).await,
        ["batch"] | ["tree", _] => Err(method_not_allowed(m, "POST")),
        ["sobjects", ..] => {
            let (c, owned) = (
                ctx.clone(),
                rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            let (reply, wrote) = ctx
                .state
                .org
                .store()
                .write(move |tx| {
                    let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
                    collections(&c, tx, &segs[1..])
                })
                .await?;
            for o in &wrote {
                ctx.state.org.note_write(o);
            }
            Ok(reply.into_response(ctx))
        }
        _ => Err(ApiError::not_found()),
    }
}

// ----------------------------------------------------------------------------- subrequests

/// One parsed subrequest of `/composite` or `/composite/batch`.
#[derive(Clone)]
struct Sub {
    method: Method,
    /// Path after `/services/data/`, with its version segment; references still unresolved.
    url: String,
    reference_id: String,
    body: Option<Json>,
    headers: Vec<(String, String)>,
}

/// What one subrequest answered.
struct Outcome {
    status: StatusCode,
    body: Json,
    headers: Map<String, Json>,
}

impl Outcome {
    fn error(status: StatusCode, e: &ApiError) -> Outcome {
        Outcome {
            status,
            body: Json::Array(vec![error_json(e)]),
            headers: Map::new(),
        }
    }

    fn failed(&self) -> bool {
        self.status.as_u16() >= 400
    }
}

fn parse_method(v: Option<&Json>) -> Result<Method, ApiError> {
    match v.and_then(Json::as_str) {
        Some("GET") => Ok(Method::GET),
        Some("POST") => Ok(Method::POST),
        Some("PATCH") => Ok(Method::PATCH),
        Some("PUT") => Ok(Method::PUT),
        Some("DELETE") => Ok(Method::DELETE),
        Some(other) => Err(bad_request(
            ErrorCode::InvalidInput,
            format!("Invalid method {other}: use one of GET, POST, PATCH, PUT, DELETE (uppercase)"),
        )),
        None => Err(bad_request(
            ErrorCode::InvalidInput,
            "Each subrequest needs a method",
        )),
    }
}

fn valid_reference_id(r: &str) -> bool {
    let b = r.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn parse_headers(v: Option<&Json>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let obj = v.as_object().ok_or_else(|| {
        bad_request(
            ErrorCode::JsonParserError,
            "httpHeaders must be a JSON object",
        )
    })?;
    let mut out = Vec::new();
    for (k, val) in obj {
        if ["accept", "authorization", "content-type"].contains(&k.to_ascii_lowercase().as_str()) {
            return Err(bad_request(ErrorCode::InvalidInput, format!("The {k} header can't be set on a subrequest; it is inherited from the composite request")));
        }
        out.push((
            k.clone(),
            val.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| val.to_string()),
        ));
    }
    Ok(out)
}

/// Normalises a subrequest URL to the part after `/services/data/` (`v59.0/sobjects/…`).
fn data_path(url: &str) -> Option<&str> {
    let u = url
        .strip_prefix("/services/data/")
        .or_else(|| url.strip_prefix("services/data/"))
        .unwrap_or(url);
    u.starts_with('v').then_some(u)
}

/// Resolves `@{ref.path}` against earlier results: JSON values by reference id.
fn lookup(path: &str, done: &HashMap<String, Json>) -> Result<Json, String> {
    let (reference, rest) = path.split_once('.').unwrap_or((path, ""));
    let Some(mut v) = done.get(reference) else {
        return Err(format!("Invalid reference specified. No value for {path} found in {reference}. Provided referenceId ('{reference}') is invalid or the subrequest it names did not succeed."));
    };
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            v = v.get(name).ok_or_else(|| {
                format!("Invalid reference specified. No value for {path} found in {reference}.")
            })?;
        }
        if let Some(i) = index {
            v = v.get(i).ok_or_else(|| {
                format!("Invalid reference specified. No value for {path} found in {reference}.")
            })?;
        }
    }
    Ok(v.clone())
}

fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// Replaces every `@{…}` in a string.
fn substitute(s: &str, done: &HashMap<String, Json>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("Invalid reference specified: unterminated reference in {s}"))?;
        out.push_str(&as_text(&lookup(&after[..end], done)?));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces references inside a JSON body; a string that is exactly one reference becomes the
/// referenced value itself (numbers stay numbers, null stays null).
fn resolve_body(v: &Json, done: &HashMap<String, Json>) -> Result<Json, String> {
    Ok(match v {
        Json::String(s)
            if s.starts_with("@{") && s.ends_with('}') && s.matches("@{").count() == 1 =>
        {
            lookup(&s[2..s.len() - 1], done)?
        }
        Json::String(s) if s.contains("@{") => Json::String(substitute(s, done)?),
        Json::Array(a) => Json::Array(
            a.iter()
                .map(|x| resolve_body(x, done))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(o) => {
            let mut m = Map::new();
            for (k, x) in o {
                m.insert(k.clone(), resolve_body(x, done)?);
            }
            Json::Object(m)
        }
        other => other.clone(),
    })
}

/// Builds the context of a subrequest from its method, resolved path and body.
fn sub_ctx(
    parent: &Ctx,
    method: Method,
    path: &str,
    body: Option<&Json>,
    headers: &[(String, String)],
) -> Result<(Ctx, Vec<String>), ApiError> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let version = segs.next().ok_or_else(ApiError::not_found)?;
    let version = ApiVersion::parse(version).map_err(|_| ApiError::not_found())?;
    let segments: Vec<String> = segs.map(super::percent_decode).collect();
    let mut q = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        q.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    let mut hm = HeaderMap::new();
    hm.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        if let (Ok(name), Ok(val)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            hm.insert(name, val);
        }
    }
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let ctx = Ctx {
        state: parent.state.clone(),
        principal: parent.principal.clone(),
        version,
        base: parent.base.clone(),
        method,
        headers: hm,
        query: q,
        body: body.into(),
    };
    Ok((ctx, segments))
}

/// Runs one subrequest inside `tx`.
fn run_sub(ctx: &Ctx, tx: &mut dyn WriteTx, segs: &[&str], wrote: &mut HashSet<String>) -> Outcome {
    let result: Result<Reply, ApiError> = if exec::is_read(&ctx.method, segs) {
        exec::read(ctx, &*tx, segs)
    } else if exec::is_write(&ctx.method, segs) {
        exec::write(ctx, tx, segs)
    } else {
        match segs {
            ["composite", "sobjects", rest @ ..] => {
                collections(ctx, tx, rest).map(|(reply, objects)| {
                    wrote.extend(objects);
                    reply
                })
            }
            ["sobjects"] if ctx.method == Method::GET => Ok(Reply {
                status: StatusCode::OK,
                payload: exec::Payload::Json(super::describe::global_value(ctx)),
                location: None,
                wrote: None,
            }),
            ["sobjects", object, "describe"] if ctx.method == Method::GET => {
                super::describe::object_value(ctx, object).map(|d| Reply {
                    status: StatusCode::OK,
                    payload: exec::Payload::Json(d),
                    location: None,
                    wrote: None,
                })
            }
            _ => Err(ApiError::not_found()),
        }
    };
    match result {
        Ok(reply) => {
            if let Some(o) = &reply.wrote {
                wrote.insert(o.clone());
            }
            let mut headers = Map::new();
            if let Some(l) = &reply.location {
                headers.insert("Location".into(), Json::String(l.clone()));
            }
            Outcome {
                status: reply.status,
                body: reply.body_json(ctx),
                headers,
            }
        }
        Err(e) => {
            let status = if e.code == ErrorCode::EntityIsDeleted && !e.fields.is_empty() {
                400
            } else {
                e.http_status()
            };
            Outcome::error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &e,
            )
        }
    }
}

/// Runs a subrequest, in its own savepoint when `isolate` (a failure then undoes only it), and
/// records the objects it wrote when it succeeded.
fn run_isolated(
    ctx: &Ctx,
    tx: &mut dyn WriteTx,
    segs: &[String],
    isolate: bool,
    wrote: &mut HashSet<String>,
) -> Result<Outcome, ApiError> {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if isolate {
        tx.savepoint()?;
    }
    let mut sub_wrote = HashSet::new();
    let o = run_sub(ctx, tx, &segs, &mut sub_wrote);
    if isolate {
        if o.failed() {
            tx.rollback_savepoint()?;
        } else {
            tx.release_savepoint()?;
        }
    }
    if !o.failed() {
        wrote.extend(sub_wrote);
    }
    Ok(o)
}

fn is_query_or_collections(segs: &str) -> bool {
    let mut it = segs.split(['/', '?']).filter(|s| !s.is_empty()).skip(1);
    matches!(
        (it.next(), it.next()),
        (Some("query" | "queryAll"), _) | (Some("composite"), Some("sobjects"))
    )
}

// ----------------------------------------------------------------------------- /composite

async fn composite(ctx: &Ctx) -> Result<Response, ApiError> {
    let body = ctx.json_body()?;
    let all_or_none = body
        .get("allOrNone")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    // Subrequests always run one after another in request order, which is a valid outcome
    // whether or not the client lets the server collate them; only the type is checked.
    for flag in ["allOrNone", "collateSubrequests"] {
        if body
            .get(flag)
            .is_some_and(|v| !v.is_boolean() && !v.is_null())
        {
            return Err(bad_request(
                ErrorCode::JsonParserError,
                format!("{flag} must be true or false"),
            ));
        }
    }
    let list = body
        .get("compositeRequest")
        .and_then(Json::as_array)
        .ok_or_else(|| {
            bad_request(
                ErrorCode::JsonParserError,
                "compositeRequest is required and must be an array",
            )
        })?;
    if list.is_empty() || list.len() > MAX_SUBREQUESTS {
        return Err(bad_request(
            ErrorCode::InvalidInput,
            format!(
                "A composite request takes 1 to {MAX_SUBREQUESTS} subrequests; this one has {}",
                list.len()
            ),
        ));
    }
    let mut subs = Vec::with_capacity(list.len());
    let mut seen = HashSet::new();
    let mut heavy = 0;
    for item in list {
        let method = parse_method(item.get("method"))?;
        let url = item
            .get("url")
            .and_then(Json::as_str)
            .ok_or_else(|| bad_request(ErrorCode::InvalidInput, "Each subrequest needs a url"))?;
        if !url.starts_with("/services/data/v") {
            return Err(bad_request(
                ErrorCode::InvalidInput,
                format!("The subrequest url '{url}' must start with /services/data/vNN.N/"),
            ));
        }
        let reference_id = item
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        if !valid_reference_id(&reference_id) {
            return Err(bad_request(
                ErrorCode::JsonParserError,
                format!("Provided referenceId ('{reference_id}') must start with a letter or a number, and it can contain only letters, numbers and underscores ('_')."),
            ));
        }
        if !seen.insert(reference_id.clone()) {
            return Err(bad_request(
                ErrorCode::JsonParserError,
                format!("Duplicate referenceId provided in the request: {reference_id}"),
            ));
        }
        let path = data_path(url).unwrap_or(url).to_string();
        if is_query_or_collections(&path) {
            heavy += 1;
        }
        subs.push(Sub {
            method,
            url: path,
            reference_id,
            body: item.get("body").cloned(),
            headers: parse_headers(item.get("httpHeaders"))?,
        });
    }
    if heavy > MAX_QUERY_SUBREQUESTS {
        return Err(bad_request(ErrorCode::InvalidInput, format!("A composite request takes at most {MAX_QUERY_SUBREQUESTS} query or sObject collections subrequests")));
    }
    let c = ctx.clone();
    let (outcomes, wrote) = ctx
        .state
        .org
        .store()
        .write(move |tx| {
            let mut done: HashMap<String, Json> = HashMap::new();
            let mut outcomes: Vec<Outcome> = Vec::with_capacity(subs.len());
            let mut wrote = HashSet::new();
            let mut failed = false;
            if all_or_none {
                tx.savepoint()?;
            }
            for sub in &subs {
                if all_or_none && failed {
                    outcomes.push(Outcome::error(
                        StatusCode::BAD_REQUEST,
                        &ApiError::new(ErrorCode::ProcessingHalted, ROLLED_BACK),
                    ));
                    continue;
                }
                let resolved = substitute(&sub.url, &done).and_then(|u| {
                    sub.body
                        .as_ref()
                        .map(|b| resolve_body(b, &done))
                        .transpose()
                        .map(|b| (u, b))
                });
                let (url, body) = match resolved {
                    Ok(x) => x,
                    Err(msg) => {
                        outcomes.push(Outcome::error(
                            StatusCode::BAD_REQUEST,
                            &ApiError::new(ErrorCode::ProcessingHalted, msg),
                        ));
                        failed = true;
                        continue;
                    }
                };
                let outcome =
                    match sub_ctx(&c, sub.method.clone(), &url, body.as_ref(), &sub.headers) {
                        Err(e) => Outcome::error(StatusCode::NOT_FOUND, &e),
                        // Without allOrNone a failure undoes only its own subrequest.
                        Ok((sctx, segs)) => {
                            run_isolated(&sctx, tx, &segs, !all_or_none, &mut wrote)?
                        }
                    };
                if outcome.failed() {
                    failed = true;
                } else {
                    done.insert(sub.reference_id.clone(), outcome.body.clone());
                }
                outcomes.push(outcome);
            }
            if all_or_none {
                if failed {
                    tx.rollback_savepoint()?;
                    // Everything that had succeeded is undone, and says so.
                    for o in outcomes.iter_mut().filter(|o| !o.failed()) {
                        *o = Outcome::error(
                            StatusCode::BAD_REQUEST,
                            &ApiError::new(ErrorCode::ProcessingHalted, ROLLED_BACK),
                        );
                    }
                    wrote.clear();
                } else {
                    tx.release_savepoint()?;
                }
            }
            let rendered: Vec<(u16, Json, Map<String, Json>)> = outcomes
                .into_iter()
                .map(|o| (o.status.as_u16(), o.body, o.headers))
                .collect();
            Ok((rendered, wrote))
        })
        .await?;
    for o in &wrote {
        ctx.state.org.note_write(o);
    }
    let list = body
        .get("compositeRequest")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let results: Vec<Json> = outcomes
        .into_iter()
        .zip(list)
        .map(|((status, b, h), req)| json!({"body": b, "httpHeaders": h, "httpStatusCode": status, "referenceId": req.get("referenceId").cloned().unwrap_or(Json::Null)}))
        .collect();
    Ok(json(StatusCode::OK, &json!({"compositeResponse": results})))
}

// ----------------------------------------------------------------------------- /composite/batch

async fn batch(ctx: &Ctx) -> Result<Response, ApiError> {
    let body = ctx.json_body()?;
    let halt_on_error = body
        .get("haltOnError")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let list = body
        .get("batchRequests")
        .and_then(Json::as_array)
        .ok_or_else(|| {
            bad_request(
                ErrorCode::JsonParserError,
                "batchRequests is required and must be an array",
            )
        })?;
    if list.is_empty() || list.len() > MAX_SUBREQUESTS {
        return Err(bad_request(
            ErrorCode::InvalidInput,
            format!(
                "A batch request takes 1 to {MAX_SUBREQUESTS} subrequests; this one has {}",
                list.len()
            ),
        ));
    }
    let mut subs = Vec::with_capacity(list.len());
    for item in list {
        let method = parse_method(item.get("method"))?;
        let url = item.get("url").and_then(Json::as_str).ok_or_else(|| {
            bad_request(ErrorCode::InvalidInput, "Each batch subrequest needs a url")
        })?;
        let path = data_path(url).ok_or_else(|| {
            bad_request(
                ErrorCode::InvalidInput,
                format!("The batch subrequest url '{url}' must start with vNN.N/"),
            )
        })?;
        subs.push(Sub {
            method,
            url: path.to_string(),
            reference_id: String::new(),
            body: item.get("richInput").cloned(),
            headers: Vec::new(),
        });
    }
    let c = ctx.clone();
    let (results, wrote) = ctx
        .state
        .org
        .store()
        .write(move |tx| {
            let mut results = Vec::with_capacity(subs.len());
            let mut wrote = HashSet::new();
            let mut halted = false;
            for sub in &subs {
                if halted {
                    results.push(json!({"statusCode": 412, "result": [{"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}]}));
                    continue;
                }
                let outcome = match sub_ctx(&c, sub.method.clone(), &sub.url, sub.body.as_ref(), &sub.headers) {
                    Err(e) => Outcome::error(StatusCode::NOT_FOUND, &e),
                    // Each subrequest stands alone: a failure undoes only itself.
                    Ok((sctx, segs)) => run_isolated(&sctx, tx, &segs, true, &mut wrote)?,
                };
                if outcome.failed() && halt_on_error {
                    halted = true;
                }
                results.push(json!({"statusCode": outcome.status.as_u16(), "result": outcome.body}));
            }
            Ok((results, wrote))
        })
        .await?;
    for o in &wrote {
        ctx.state.org.note_write(o);
    }
    let has_errors = results
        .iter()
        .any(|r| r["statusCode"].as_u64().unwrap_or(0) >= 400);
    Ok(json(
        StatusCode::OK,
        &json!({"hasErrors": has_errors, "results": results}),
    ))
}

// ----------------------------------------------------------------------------- /composite/tree

/// One record of a tree, flattened: its level, its parent (index into the list), the field on
/// it that points at the parent, its fields.
struct TreeNode {
    reference_id: String,
    object: std::sync::Arc<ObjectDef>,
    level: usize,
    parent: Option<(usize, usize)>,
    fields: Map<String, Json>,
}

fn tree_error(reference_id: &str, e: &ApiError) -> Json {
    json!({"referenceId": reference_id, "errors": [{"statusCode": e.code.as_str(), "message": e.message, "fields": e.fields}]})
}

fn flatten_tree(
    ctx: &Ctx,
    schema: &model::Schema,
    records: &[Json],
    expected: &ObjectDef,
    level: usize,
    parent: Option<(usize, usize)>,
    out: &mut Vec<TreeNode>,
) -> Result<(), ApiError> {
    if level > MAX_TREE_DEPTH {
        return Err(bad_request(
            ErrorCode::InvalidInput,
            format!("A tree can be at most {MAX_TREE_DEPTH} levels deep"),
        ));
    }
    for r in records {
        let obj = r.as_object().ok_or_else(|| {
            bad_request(
                ErrorCode::JsonParserError,
                "Each tree record must be a JSON object",
            )
        })?;
        let attrs = obj
            .get("attributes")
            .and_then(Json::as_object)
            .ok_or_else(|| {
                bad_request(
                    ErrorCode::InvalidInput,
                    "Each tree record needs attributes with type and referenceId",
                )
            })?;
        let ty = attrs.get("type").and_then(Json::as_str).unwrap_or_default();
        if !ty.eq_ignore_ascii_case(&expected.name) {
            return Err(bad_request(
                ErrorCode::InvalidInput,
                format!(
                    "The record type {ty} does not match {} expected here",
                    expected.name
                ),
            ));
        }
        let reference_id = attrs
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        if !valid_reference_id(&reference_id) {
            return Err(bad_request(
                ErrorCode::InvalidInput,
                format!(
                    "Invalid referenceId '{reference_id}': use letters, digits and underscores"
                ),
            ));
        }
        if out.iter().any(|n| n.reference_id == reference_id) {
            return Err(bad_request(
                ErrorCode::InvalidInput,
                format!("Duplicate referenceId {reference_id}"),
            ));
        }
        let index = out.len();
        let mut fields = Map::new();
        let mut children = Vec::new();
        for (k, v) in obj {
            if k == "attributes" {
                continue;
            }
            match (expected.child_relationship(k), v) {
                (Some(rel), Json::Object(nested)) => {
                    let child = schema
                        .object(&rel.child_object)
                        .cloned()
                        .ok_or_else(ApiError::not_found)?;
                    let field = child.field_index(&rel.field).expect("relationship field");
                    let list = nested
                        .get("records")
                        .and_then(Json::as_array)
                        .cloned()
                        .unwrap_or_default();
                    children.push((child, field, list));
                }
                _ => {
                    fields.insert(k.clone(), v.clone());
                }
            }
        }
        out.push(TreeNode {
            reference_id,
            object: ops::visible(schema, &ctx.principal, &expected.name)?,
            level,
            parent,
            fields,
        });
        if out.len() > MAX_RECORDS {
            return Err(bad_request(
                ErrorCode::InvalidInput,
                format!("A tree can hold at most {MAX_RECORDS} records"),
            ));
        }
        for (child, field, list) in children {
            flatten_tree(
                ctx,
                schema,
                &list,
                &child,
                level + 1,
                Some((index, field)),
                out,
            )?;
        }
    }
    Ok(())
}

async fn tree(ctx: &Ctx, object: &str) -> Result<Response, ApiError> {
    let body = ctx.json_body()?;
    let schema = ctx.state.org.schema();
    let root = ops::visible(&schema, &ctx.principal, object)?;
    let records = body
        .get("records")
        .and_then(Json::as_array)
        .ok_or_else(|| {
            bad_request(
                ErrorCode::JsonParserError,
                "records is required and must be an array",
            )
        })?;
    let mut nodes = Vec::new();
    flatten_tree(ctx, &schema, records, &root, 1, None, &mut nodes)?;
    let types: HashSet<&str> = nodes.iter().map(|n| n.object.name.as_str()).collect();
    if types.len() > 5 {
        return Err(bad_request(
            ErrorCode::InvalidInput,
            "A tree can hold at most 5 object types",
        ));
    }
    let c = ctx.clone();
    let (ok, results, wrote) = ctx
        .state
        .org
        .store()
        .write(move |tx| {
            tx.savepoint()?;
            let mut ids: Vec<Option<Id>> = vec![None; nodes.len()];
            let mut errors = Vec::new();
            let max_level = nodes.iter().map(|n| n.level).max().unwrap_or(1);
            // Level by level, so every parent exists before its children.
            for level in 1..=max_level {
                for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.level == level) {
                    let mut fields = n.fields.clone();
                    if let Some((p, f)) = n.parent {
                        match ids[p] {
                            Some(pid) => {
                                fields.insert(n.object.fields[f].name.clone(), Json::String(pid.to_18()));
                            }
                            None => continue,
                        }
                    }
                    match ops::create(tx, &c.principal, &n.object, &Json::Object(fields)) {
                        Ok(c) => ids[i] = Some(c.id),
                        Err(e) => errors.push(tree_error(&n.reference_id, &e)),
                    }
                }
            }
            if errors.is_empty() {
                tx.release_savepoint()?;
                let results: Vec<Json> = (1..=max_level)
                    .flat_map(|level| nodes.iter().enumerate().filter(move |(_, n)| n.level == level))
                    .map(|(i, n)| json!({"referenceId": n.reference_id, "id": ids[i].map(|id| id.to_18())}))
                    .collect();
                let wrote: HashSet<String> = nodes.iter().map(|n| n.object.name.clone()).collect();
                Ok((true, results, wrote))
            } else {
                tx.rollback_savepoint()?;
                Ok((false, errors, HashSet::new()))
            }
        })
        .await?;
    for o in &wrote {
        ctx.state.org.note_write(o);
    }
    let status = if ok {
        StatusCode::CREATED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(json(status, &json!({"hasErrors": !ok, "results": results})))
}

// ----------------------------------------------------------------------------- collections

fn save_error(e: &ApiError) -> Json {
    json!({"statusCode": e.code.as_str(), "message": e.message, "fields": e.fields})
}

fn failure(e: &ApiError) -> Json {
    json!({"success": false, "errors": [save_error(e)]})
}

/// Runs per-record operations: each in its own savepoint; with all-or-none, any failure rolls
/// every record back and the others report ALL_OR_NONE_OPERATION_ROLLED_BACK.
fn per_record(
    tx: &mut dyn WriteTx,
    all_or_none: bool,
    count: usize,
    mut op: impl FnMut(&mut dyn WriteTx, usize) -> Result<Json, ApiError>,
) -> Result<Vec<Json>, ApiError> {
    if all_or_none {
        tx.savepoint()?;
    }
    let mut results = Vec::with_capacity(count);
    let mut any_failed = false;
    for i in 0..count {
        tx.savepoint()?;
        match op(tx, i) {
            Ok(r) => {
                tx.release_savepoint()?;
                results.push(Ok(r));
            }
            Err(e) => {
                tx.rollback_savepoint()?;
                any_failed = true;
                results.push(Err(e));
            }
        }
    }
    if all_or_none {
        if any_failed {
            tx.rollback_savepoint()?;
        } else {
            tx.release_savepoint()?;
        }
    }
    let rolled_back = ApiError::new(ErrorCode::AllOrNoneOperationRolledBack, "Record rolled back because not all records were valid and the request was using AllOrNone header");
    Ok(results
        .into_iter()
        .map(|r| match r {
            Ok(_) if all_or_none && any_failed => failure(&rolled_back),
            Ok(v) => v,
            Err(e) => failure(&e),
        })
        .collect())
}

fn records_of(body: &Json) -> Result<Vec<Map<String, Json>>, ApiError> {
    let list = body
        .get("records")
        .and_then(Json::as_array)
        .ok_or_else(|| {
            bad_request(
                ErrorCode::JsonParserError,
                "records is required and must be an array",
            )
        })?;
    if list.len() > MAX_RECORDS {
        return Err(bad_request(
            ErrorCode::ExceededIdLimit,
            format!("The number of records in a collection can't exceed {MAX_RECORDS}"),
        ));
    }
    list.iter()
        .map(|r| {
            r.as_object().cloned().ok_or_else(|| {
                bad_request(
                    ErrorCode::JsonParserError,
                    "Each record must be a JSON object",
                )
            })
        })
        .collect()
}

fn record_type(r: &Map<String, Json>) -> Result<String, ApiError> {
    r.get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| bad_request(ErrorCode::InvalidInput, "Each record needs attributes.type"))
}

fn take_id(r: &mut Map<String, Json>) -> Option<String> {
    let key = r.keys().find(|k| k.eq_ignore_ascii_case("id")).cloned()?;
    r.remove(&key).and_then(|v| v.as_str().map(str::to_string))
}

fn bool_param(ctx: &Ctx, body: Option<&Json>, name: &str) -> bool {
    body.and_then(|b| b.get(name))
        .and_then(Json::as_bool)
        .or_else(|| ctx.query.get(name).map(|v| v.eq_ignore_ascii_case("true")))
        .unwrap_or(false)
}

/// `/composite/sobjects[/{T}[/{field}]]`, in the given transaction. Returns the reply and the
/// objects written.
fn collections(
    ctx: &Ctx,
    tx: &mut dyn WriteTx,
    rest: &[&str],
) -> Result<(Reply, HashSet<String>), ApiError> {
    let p = ctx.principal.clone();
    let schema = tx.schema().clone();
    let mut wrote = HashSet::new();
    let reply = |status: StatusCode, body: Json| Reply {
        status,
        payload: exec::Payload::Json(body),
        location: None,
        wrote: None,
    };
    match (rest, &ctx.method) {
        ([], &Method::POST) | ([], &Method::PATCH) => {
            let body = ctx.json_body()?;
            let all_or_none = bool_param(ctx, Some(&body), "allOrNone");
            let mut records = records_of(&body)?;
            let types: Vec<String> = records.iter().map(record_type).collect::<Result<_, _>>()?;
            let creating = ctx.method == Method::POST;
            let ids: Vec<Option<String>> = records.iter_mut().map(take_id).collect();
            let results = per_record(tx, all_or_none, records.len(), |tx, i| {
                let mut fields = records[i].clone();
                fields.remove("attributes");
                let o = ops::visible(&schema, &p, &types[i]).map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidType,
                        format!("sObject type '{}' is not supported.", types[i]),
                    )
                })?;
                let (id, enqueued) = if creating {
                    if ids[i].is_some() {
                        return Err(ApiError::with_fields(
                            ErrorCode::InvalidFieldForInsertUpdate,
                            "Id: cannot specify Id in an insert call",
                            vec!["Id".into()],
                        ));
                    }
                    let c = ops::create(tx, &p, &o, &Json::Object(fields))?;
                    (c.id, c.enqueued)
                } else {
                    let raw = ids[i].clone().ok_or_else(|| {
                        ApiError::with_fields(
                            ErrorCode::MalformedId,
                            "Id is required to update a record",
                            vec!["Id".into()],
                        )
                    })?;
                    let seq = ops::row_of(&*tx, &o, &raw).map_err(|_| {
                        ApiError::with_fields(
                            ErrorCode::MalformedId,
                            format!("malformed id {raw}"),
                            vec!["Id".into()],
                        )
                    })?;
                    ops::update(tx, &p, &o, seq, &Json::Object(fields), None)?;
                    (Id::new(o.key_prefix, tx.marker(), seq), None)
                };
                wrote.insert(o.name.clone());
                Ok(ops::Created { id, enqueued }.result_json())
            })?;
            Ok((reply(StatusCode::OK, Json::Array(results)), wrote))
        }
        ([object, field], &Method::PATCH) => {
            let body = ctx.json_body()?;
            let all_or_none = bool_param(ctx, Some(&body), "allOrNone");
            let o = ops::visible(&schema, &p, object)?;
            let records = records_of(&body)?;
            for r in &records {
                let ty = record_type(r)?;
                if !ty.eq_ignore_ascii_case(&o.name) {
                    return Err(bad_request(
                        ErrorCode::InvalidInput,
                        format!("All records of an upsert must be {}; found {ty}", o.name),
                    ));
                }
            }
            let results = per_record(tx, all_or_none, records.len(), |tx, i| {
                let mut fields = records[i].clone();
                fields.remove("attributes");
                let key = fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .map(|(_, v)| v.clone());
                let key = match key {
                    Some(Json::String(s)) => s,
                    Some(Json::Number(n)) => n.to_string(),
                    _ => {
                        return Err(ApiError::with_fields(
                            ErrorCode::RequiredFieldMissing,
                            format!("Required fields are missing: [{field}]"),
                            vec![field.to_string()],
                        ))
                    }
                };
                match ops::upsert(tx, &p, &o, field, &key, &Json::Object(fields), false)? {
                    UpsertOutcome::Done(u) => {
                        wrote.insert(o.name.clone());
                        Ok(
                            json!({"id": u.id.to_18(), "success": true, "errors": [], "created": u.created}),
                        )
                    }
                    UpsertOutcome::Multiple(_) => Err(ApiError::new(
                        ErrorCode::DuplicateExternalId,
                        format!("{field}: more than one record found for external id field: {key}"),
                    )),
                }
            })?;
            Ok((reply(StatusCode::OK, Json::Array(results)), wrote))
        }
        ([], &Method::DELETE) => {
            let all_or_none = bool_param(ctx, None, "allOrNone");
            let ids: Vec<String> = ctx
                .query
                .get("ids")
                .map(|s| {
                    s.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() || ids.len() > MAX_RECORDS {
                return Err(bad_request(
                    ErrorCode::InvalidInput,
                    format!("ids takes 1 to {MAX_RECORDS} record ids"),
                ));
            }
            let results = per_record(tx, all_or_none, ids.len(), |tx, i| {
                let raw = &ids[i];
                let id = Id::parse(raw).map_err(|_| {
                    ApiError::new(ErrorCode::MalformedId, format!("malformed id {raw}"))
                })?;
                let o = schema
                    .object_by_prefix(id.prefix())
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidCrossReferenceKey,
                            "invalid cross reference id",
                        )
                    })?;
                let o = ops::visible(&schema, &p, &o.name)?;
                let seq = ops::row_of(&*tx, &o, raw)?;
                ops::delete(tx, &p, &o, seq, None)?;
                wrote.insert(o.name.clone());
                Ok(json!({"id": id.to_18(), "success": true, "errors": []}))
            })?;
            let results: Vec<Json> = results
                .into_iter()
                .zip(&ids)
                .map(|(mut r, raw)| {
                    if r.get("id").is_none() {
                        if let Some(m) = r.as_object_mut() {
                            m.insert(
                                "id".into(),
                                Id::parse(raw)
                                    .map(|i| Json::String(i.to_18()))
                                    .unwrap_or(Json::String(raw.clone())),
                            );
                        }
                    }
                    r
                })
                .collect();
            Ok((reply(StatusCode::OK, Json::Array(results)), wrote))
        }
        ([object], &Method::GET) | ([object], &Method::POST) => {
            let o = ops::visible(&schema, &p, object)?;
            let (ids, fields): (Vec<String>, Vec<String>) = if ctx.method == Method::GET {
                let split = |k: &str| {
                    ctx.query
                        .get(k)
                        .map(|s| {
                            s.split(',')
                                .map(|x| x.trim().to_string())
                                .filter(|x| !x.is_empty())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                (split("ids"), split("fields"))
            } else {
                let body = ctx.json_body()?;
                let list = |k: &str| {
                    body.get(k)
                        .and_then(Json::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                (list("ids"), list("fields"))
            };
            let max = if ctx.method == Method::GET { 800 } else { 2000 };
            if ids.is_empty() || ids.len() > max {
                return Err(bad_request(
                    ErrorCode::InvalidInput,
                    format!("ids takes 1 to {max} record ids"),
                ));
            }
            if fields.is_empty() {
                return Err(bad_request(
                    ErrorCode::InvalidInput,
                    "fields is required: name the fields to retrieve",
                ));
            }
            let field_list = fields.join(",");
            ops::output_fields(&p, &o, Some(&field_list))?;
            let prefix = ctx.prefix();
            let mut out = Vec::with_capacity(ids.len());
            for raw in &ids {
                let rec = ops::row_of(&*tx, &o, raw)
                    .and_then(|seq| ops::read(&*tx, &p, &o, seq, Some(&field_list)));
                out.push(match rec {
                    Ok(r) => serde_json::to_value(super::out::RecordJson {
                        prefix: &prefix,
                        record: &r,
                    })
                    .unwrap_or(Json::Null),
                    Err(_) => Json::Null,
                });
            }
            Ok((reply(StatusCode::OK, Json::Array(out)), wrote))
        }
        _ => Err(ApiError::not_found()),
    }
}

//! Conflux's own REST resources under `/services/data/vNN.N/conflux/`: the delivery queue for
//! operators (`deliveries`: list, one by id, per-endpoint summary, retry/requeue, purge), flows
//! (`flows`: list, read, create or replace, delete), the flow fault log (`flow-faults`) and the
//! WSDL of an Outbound Message (`outbound-messages/{name}/wsdl`).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use model::{ApiError, ErrorCode};
use serde_json::{json, Value as Json};
use service::outbox::Selection;

use super::{method_not_allowed, Ctx};
use crate::error::json;

/// Routes `conflux/...`.
/// How often the server samples the org's activity (`server` runs the sampler).
pub const METRICS_INTERVAL_SECS: u64 = 2;

pub async fn route(ctx: &Ctx, rest: &[&str]) -> Result<Response, ApiError> {
    let get = ctx.method == Method::GET || ctx.method == Method::HEAD;
    let post = ctx.method == Method::POST;
    match rest {
        ["deliveries"] if get => list(ctx),
        ["deliveries"] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["deliveries", "summary"] if get => summary(ctx),
        ["deliveries", "requeue"] | ["deliveries", "retry"] if post => requeue(ctx).await,
        ["deliveries", "purge"] if post => purge(ctx).await,
        ["deliveries", "requeue" | "retry" | "purge"] => {
            Err(method_not_allowed(&ctx.method, "POST"))
        }
        ["deliveries", id] if get => {
            let r = ctx.state.org.delivery(&ctx.principal, id)?;
            Ok(json(StatusCode::OK, &ctx.state.org.delivery_json(&r)))
        }
        ["deliveries", _] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["flows"] if get => {
            let flows = ctx.state.org.automation(&ctx.principal)?.flows();
            Ok(json(StatusCode::OK, &json!({ "flows": flows })))
        }
        ["flows"] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["flows", name] if get => {
            let flow = ctx
                .state
                .org
                .automation(&ctx.principal)?
                .flow(name)
                .ok_or_else(ApiError::not_found)?;
            Ok(json(StatusCode::OK, &flow))
        }
        ["flows", name] if ctx.method == Method::PUT => {
            let a = ctx.state.org.automation(&ctx.principal)?;
            let doc = flow_document(ctx)?;
            let (flow, created) = a.put_flow(&ctx.state.org, name, doc).await?;
            Ok(saved(created, &flow))
        }
        ["flows", name] if ctx.method == Method::DELETE => {
            let a = ctx.state.org.automation(&ctx.principal)?;
            a.delete_flow(&ctx.state.org, name).await?;
            Ok(super::no_content())
        }
        ["flows", _] => Err(method_not_allowed(&ctx.method, "GET,HEAD,PUT,DELETE")),
        ["flow-faults"] if get => {
            let limit = match ctx.query.get("limit") {
                Some(l) => l.parse::<usize>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidInput,
                        format!("limit {l} is not a number"),
                    )
                })?,
                None => 200,
            };
            let org = &ctx.state.org;
            let rows = org.flow_faults(
                &ctx.principal,
                ctx.query.get("before").map(String::as_str),
                limit,
            )?;
            let faults: Vec<Json> = rows.iter().map(|f| org.fault_json(f)).collect();
            Ok(json(StatusCode::OK, &json!({ "faults": faults })))
        }
        ["flow-faults"] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["metrics"] if get => {
            let perms = &ctx.principal.perms;
            if !(perms.view_all_data || perms.modify_all_data) {
                return Err(ApiError::new(
                    ErrorCode::InsufficientAccess,
                    "You need the View All Data permission to see the org's activity.",
                ));
            }
            Ok(json(
                StatusCode::OK,
                &ctx.state.org.metrics.json(METRICS_INTERVAL_SECS),
            ))
        }
        ["metrics"] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["named-credentials"] if get => {
            let list = ctx.state.org.automation(&ctx.principal)?.credentials();
            Ok(json(StatusCode::OK, &json!({ "namedCredentials": list })))
        }
        ["named-credentials", name] if get => {
            let c = ctx
                .state
                .org
                .automation(&ctx.principal)?
                .credentials()
                .into_iter()
                .find(|c| c["name"] == *name)
                .ok_or_else(ApiError::not_found)?;
            Ok(json(StatusCode::OK, &c))
        }
        ["named-credentials", name] if ctx.method == Method::PUT => {
            let a = ctx.state.org.automation(&ctx.principal)?;
            let doc = flow_document(ctx)?;
            let (c, created) = a.put_credential(&ctx.state.org, name, doc).await?;
            Ok(saved(created, &c))
        }
        ["named-credentials", name] if ctx.method == Method::DELETE => {
            let a = ctx.state.org.automation(&ctx.principal)?;
            a.delete_credential(&ctx.state.org, name).await?;
            Ok(super::no_content())
        }
        ["named-credentials", ..] => Err(method_not_allowed(&ctx.method, "GET,HEAD,PUT,DELETE")),
        ["external-services"] if get => {
            let list = ctx
                .state
                .org
                .automation(&ctx.principal)?
                .external_services();
            Ok(json(StatusCode::OK, &json!({ "externalServices": list })))
        }
        ["external-services"] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["external-services", name] if get => {
            let s = ctx
                .state
                .org
                .automation(&ctx.principal)?
                .external_services()
                .into_iter()
                .find(|s| s["name"] == *name)
                .ok_or_else(ApiError::not_found)?;
            Ok(json(StatusCode::OK, &s))
        }
        ["external-services", name, "openapi"] if get => {
            let doc = ctx
                .state
                .org
                .automation(&ctx.principal)?
                .external_service_doc(name)
                .ok_or_else(ApiError::not_found)?;
            Ok(json(StatusCode::OK, &doc))
        }
        ["external-services", name] if ctx.method == Method::PUT => {
            let a = ctx.state.org.automation(&ctx.principal)?;
            let credential = ctx.query.get("credential").cloned().ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidInput,
                    "name the named credential that reaches the service: ?credential=Name",
                )
            })?;
            let doc = flow_document(ctx)?;
            let (s, created) = a
                .put_external_service(&ctx.state.org, name, &credential, doc)
                .await?;
            Ok(saved(created, &s))
        }
        ["external-services", name] if ctx.method == Method::DELETE => {
            let a = ctx.state.org.automation(&ctx.principal)?;
            a.delete_external_service(&ctx.state.org, name).await?;
            Ok(super::no_content())
        }
        ["external-services", ..] => Err(method_not_allowed(&ctx.method, "GET,HEAD,PUT,DELETE")),
        ["sync-jobs"] if get => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            Ok(json(
                StatusCode::OK,
                &json!({ "jobs": s.jobs(&ctx.state.org) }),
            ))
        }
        ["sync-jobs"] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["sync-jobs", name] if get => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            let j = s
                .job(&ctx.state.org, name)
                .ok_or_else(ApiError::not_found)?;
            Ok(json(StatusCode::OK, &j))
        }
        ["sync-jobs", name] if ctx.method == Method::PUT => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            let doc = flow_document(ctx)?;
            let (j, created) = s.put_job(&ctx.state.org, name, doc).await?;
            Ok(saved(created, &j))
        }
        ["sync-jobs", name] if ctx.method == Method::DELETE => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            s.delete_job(&ctx.state.org, name).await?;
            Ok(super::no_content())
        }
        ["sync-jobs", _] => Err(method_not_allowed(&ctx.method, "GET,HEAD,PUT,DELETE")),
        ["sync-jobs", name, "run"] if post => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            let id = s
                .start(ctx.state.org.clone(), ctx.principal.clone(), name)
                .await?;
            Ok(json(StatusCode::ACCEPTED, &json!({ "runId": id })))
        }
        ["sync-jobs", name, "reset"] if post => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            let cursor = if ctx.body.is_empty() {
                None
            } else {
                ctx.json_body()?.get("cursor").cloned()
            };
            s.reset(&ctx.state.org, name, cursor).await?;
            Ok(super::no_content())
        }
        ["sync-jobs", _, "run" | "reset"] => Err(method_not_allowed(&ctx.method, "POST")),
        ["sync-jobs", name, "runs"] if get => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            let runs = s.runs(&ctx.state.org, name, limit_param(ctx)?)?;
            Ok(json(StatusCode::OK, &json!({ "runs": runs })))
        }
        ["sync-jobs", name, "errors"] if get => {
            let s = ctx.state.org.sync(&ctx.principal)?;
            let errors = s.errors(&ctx.state.org, name, limit_param(ctx)?)?;
            Ok(json(StatusCode::OK, &json!({ "errors": errors })))
        }
        ["sync-jobs", _, "runs" | "errors"] => Err(method_not_allowed(&ctx.method, "GET,HEAD")),
        ["outbound-messages", name, "wsdl"] if get => {
            let a = ctx.state.org.automation(&ctx.principal)?;
            let wsdl = a
                .outbound_wsdl(&ctx.state.org, name)
                .ok_or_else(ApiError::not_found)?;
            Ok(axum::response::IntoResponse::into_response((
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                wsdl,
            )))
        }
        _ => Err(ApiError::not_found()),
    }
}

fn selection_from_query(ctx: &Ctx) -> Result<Selection, ApiError> {
    let q = &ctx.query;
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidInput,
                format!("limit {l} is not a number"),
            )
        })?,
        None => 200,
    };
    Ok(Selection {
        state: q.get("state").cloned(),
        endpoint: q.get("endpoint").cloned(),
        action: q.get("action").cloned(),
        ids: q
            .get("ids")
            .map(|s| {
                s.split(',')
                    .map(|i| i.trim().to_string())
                    .filter(|i| !i.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        after: q.get("after").cloned(),
        limit,
    })
}

fn selection_from_body(ctx: &Ctx) -> Result<Selection, ApiError> {
    let body = if ctx.body.is_empty() {
        json!({})
    } else {
        ctx.json_body()?
    };
    let Json::Object(m) = body else {
        return Err(ApiError::new(
            ErrorCode::JsonParserError,
            "expected a JSON object: {\"ids\": [...]} or {\"state\": ..., \"endpoint\": ..., \"action\": ...}",
        ));
    };
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match m.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::new(
                ErrorCode::InvalidInput,
                format!("{k} must be a string"),
            )),
        }
    };
    for k in m.keys() {
        if !["ids", "state", "endpoint", "action", "limit"].contains(&k.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidInput,
                format!("unknown property {k}: use ids, state, endpoint, action or limit"),
            ));
        }
    }
    let ids = match m.get("ids") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::new(ErrorCode::InvalidInput, "ids must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidInput,
                "ids must be an array of notification ids",
            ))
        }
    };
    let limit = match m.get("limit") {
        None | Some(Json::Null) => service::outbox::MAX_PAGE,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidInput, "limit must be a positive number")
        })? as usize,
    };
    Ok(Selection {
        state: text("state")?,
        endpoint: text("endpoint")?,
        action: text("action")?,
        ids,
        after: None,
        limit,
    })
}

fn list(ctx: &Ctx) -> Result<Response, ApiError> {
    let sel = selection_from_query(ctx)?;
    let org = &ctx.state.org;
    let rows = org.deliveries(&ctx.principal, &sel)?;
    let full = rows.len() >= sel.limit.clamp(1, service::outbox::MAX_PAGE) && sel.ids.is_empty();
    let next = full
        .then(|| rows.last().map(|r| org.notification_id(r.seq)))
        .flatten();
    let items: Vec<Json> = rows.iter().map(|r| org.delivery_json(r)).collect();
    Ok(json(
        StatusCode::OK,
        &json!({"deliveries": items, "size": items.len(), "nextAfter": next}),
    ))
}

fn summary(ctx: &Ctx) -> Result<Response, ApiError> {
    let counts = ctx.state.org.delivery_counts(&ctx.principal)?;
    let endpoints: Vec<Json> = counts
        .iter()
        .map(|c| {
            json!({
                "endpoint": c.endpoint,
                "queued": c.queued,
                "failed": c.failing,
                "dead": c.dead,
                "oldestQueuedDate": c.oldest_ms.map(model::value::format_datetime_z),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "endpoints": endpoints })))
}

async fn requeue(ctx: &Ctx) -> Result<Response, ApiError> {
    let sel = selection_from_body(ctx)?;
    let n = ctx
        .state
        .org
        .requeue_deliveries(&ctx.principal, &sel)
        .await?;
    Ok(json(StatusCode::OK, &json!({ "requeued": n })))
}

async fn purge(ctx: &Ctx) -> Result<Response, ApiError> {
    let sel = selection_from_body(ctx)?;
    let n = ctx.state.org.purge_deliveries(&ctx.principal, &sel).await?;
    Ok(json(StatusCode::OK, &json!({ "purged": n })))
}

/// A flow document from the body: JSON, or YAML when the content type says so.
/// `?limit=` (default 200, at most 2,000).
fn limit_param(ctx: &Ctx) -> Result<usize, ApiError> {
    match ctx.query.get("limit") {
        Some(l) => l.parse::<usize>().map(|n| n.min(2_000)).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidInput,
                format!("limit {l} is not a number"),
            )
        }),
        None => Ok(200),
    }
}

fn flow_document(ctx: &Ctx) -> Result<Json, ApiError> {
    let yaml = ctx
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("yaml"));
    if yaml {
        let text = std::str::from_utf8(&ctx.body).map_err(|_| {
            ApiError::new(ErrorCode::JsonParserError, "the YAML document is not UTF-8")
        })?;
        serde_yaml::from_str::<Json>(text)
            .map_err(|e| ApiError::new(ErrorCode::JsonParserError, format!("invalid YAML: {e}")))
    } else {
        ctx.json_body()
    }
}

/// `GET actions/custom/flow`: the invocable flows.
pub fn flow_actions(ctx: &Ctx) -> Result<Response, ApiError> {
    let actions: Vec<Json> = ctx
        .state
        .org
        .automation_for_requests()
        .map(|a| a.invocable())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, label)| {
            json!({
                "label": label,
                "name": name,
                "type": "FLOW",
                "url": format!("{}/actions/custom/flow/{name}", ctx.prefix()),
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "actions": actions })))
}

/// `POST actions/custom/flow/{name}` with `{"inputs": [...]}`: runs an invocable flow once per
/// input; 200 when every run succeeded, otherwise 400, with a result per input either way.
pub async fn invoke_flow(ctx: &Ctx, name: &str) -> Result<Response, ApiError> {
    let body = ctx.json_body()?;
    let inputs = match body.get("inputs") {
        Some(Json::Array(a)) => a.clone(),
        _ => {
            return Err(ApiError::new(
                ErrorCode::JsonParserError,
                "expected {\"inputs\": [ {...}, ... ]}",
            ))
        }
    };
    let a = ctx
        .state
        .org
        .automation_for_requests()
        .ok_or_else(ApiError::not_found)?;
    let results = a
        .invoke(&ctx.state.org, &ctx.principal, name, inputs)
        .await?;
    let ok = results.iter().all(|r| r["isSuccess"] == true);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(json(status, &Json::Array(results)))
}

/// The answer to a PUT of a definition: 201 with it when it was created, 200 when replaced.
fn saved(created: bool, body: &Json) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(status, body)
}

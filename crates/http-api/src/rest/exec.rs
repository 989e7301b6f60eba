//! REST resources executed inside a transaction: sObject rows (by id and by external id),
//! creates, upserts and queries. A single REST request runs one of them in its own read or write
//! transaction; a Composite request runs many in one write transaction. Both answer through
//! [`Reply`], so the wire shapes and errors are the same either way.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use model::{ApiError, ErrorCode, Id, ObjectDef};
use serde_json::{json, Value as Json};
use service::ops::{self, UpsertOutcome};
use service::query::QueryPage;
use service::records::Record;
use store::{ReadTx, WriteTx};

use super::out::{PageJson, RecordJson};
use super::Ctx;
use crate::error::{json, json_of};

/// What a resource answers.
pub enum Payload {
    /// No body (204, 304).
    Empty,
    /// A JSON body.
    Json(Json),
    /// One record.
    Record(Box<Record>),
    /// A query page.
    Page(Box<QueryPage>),
}

/// A resource's answer: status, body, `Location`, and which object it wrote (for cache
/// invalidation after commit).
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub payload: Payload,
    /// `Location` header (creates).
    pub location: Option<String>,
    /// The object written, if any.
    pub wrote: Option<String>,
}

impl Reply {
    fn new(status: StatusCode, payload: Payload) -> Reply {
        Reply {
            status,
            payload,
            location: None,
            wrote: None,
        }
    }

    /// The HTTP response.
    pub fn into_response(self, ctx: &Ctx) -> Response {
        let mut r = match &self.payload {
            Payload::Empty => self.status.into_response(),
            Payload::Json(j) => json(self.status, j),
            Payload::Record(rec) => json_of(
                self.status,
                &RecordJson {
                    prefix: &ctx.prefix(),
                    record: rec,
                },
            ),
            Payload::Page(page) => json_of(
                self.status,
                &PageJson {
                    prefix: &ctx.prefix(),
                    marker: ctx.state.org.store().marker(),
                    page,
                },
            ),
        };
        if let Some(l) = self
            .location
            .as_deref()
            .and_then(|l| HeaderValue::from_str(l).ok())
        {
            r.headers_mut().insert(http::header::LOCATION, l);
        }
        r
    }

    /// The body as a JSON value (Composite embeds it), `null` when empty.
    pub fn body_json(&self, ctx: &Ctx) -> Json {
        match &self.payload {
            Payload::Empty => Json::Null,
            Payload::Json(j) => j.clone(),
            Payload::Record(rec) => serde_json::to_value(RecordJson {
                prefix: &ctx.prefix(),
                record: rec,
            })
            .unwrap_or(Json::Null),
            Payload::Page(page) => serde_json::to_value(PageJson {
                prefix: &ctx.prefix(),
                marker: ctx.state.org.store().marker(),
                page,
            })
            .unwrap_or(Json::Null),
        }
    }
}

fn record_url(ctx: &Ctx, object: &str, id: &Id) -> String {
    format!("{}/sobjects/{object}/{}", ctx.prefix(), id.to_18())
}

fn created(ctx: &Ctx, o: &ObjectDef, c: &ops::Created) -> Reply {
    let mut r = Reply::new(StatusCode::CREATED, Payload::Json(c.result_json()));
    if c.enqueued.is_none() {
        r.location = Some(record_url(ctx, &o.name, &c.id));
    }
    r.wrote = Some(o.name.clone());
    r
}

fn wrote(status: StatusCode, payload: Payload, o: &ObjectDef) -> Reply {
    let mut r = Reply::new(status, payload);
    r.wrote = Some(o.name.clone());
    r
}

fn multiple_choices(ctx: &Ctx, o: &ObjectDef, marker: model::OrgMarker, seqs: &[u64]) -> Reply {
    let urls: Vec<Json> = seqs
        .iter()
        .map(|s| json!(record_url(ctx, &o.name, &Id::new(o.key_prefix, marker, *s))))
        .collect();
    Reply::new(
        StatusCode::MULTIPLE_CHOICES,
        Payload::Json(Json::Array(urls)),
    )
}

fn not_modified_since(ctx: &Ctx, record: &Record) -> Result<Option<Reply>, ApiError> {
    if let Some(since) = ctx.date_header("if-modified-since") {
        if record.last_modified_ms / 1000 * 1000 <= since {
            return Ok(Some(Reply::new(StatusCode::NOT_MODIFIED, Payload::Empty)));
        }
    }
    if let Some(since) = ctx.date_header("if-unmodified-since") {
        if record.last_modified_ms / 1000 * 1000 > since {
            return Err(ApiError::new(
                ErrorCode::PreconditionFailed,
                "The requested resource has been modified since the If-Unmodified-Since time.",
            ));
        }
    }
    Ok(None)
}

/// Page size asked with `Sforce-Query-Options: batchSize=N` (a hint between 200 and 2000).
pub fn batch_size(ctx: &Ctx) -> usize {
    ctx.headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|kv| {
                kv.trim()
                    .strip_prefix("batchSize=")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
        })
        .map(|n| n.clamp(200, 2000))
        .unwrap_or(2000)
}

/// True when `rest` (segments after `/services/data/vNN.N`) with `method` is served by [`read`].
pub fn is_read(method: &Method, rest: &[&str]) -> bool {
    let get = *method == Method::GET || *method == Method::HEAD;
    get && matches!(rest, ["sobjects", _, id] if !reserved(id))
        || get && matches!(rest, ["sobjects", _, _, _]) && rest.get(3) != Some(&"password")
        || get
            && matches!(
                rest,
                ["query"] | ["queryAll"] | ["query", _] | ["queryAll", _]
            )
}

/// Sub-resources of an object that are not record ids.
fn reserved(segment: &str) -> bool {
    matches!(
        segment,
        "describe" | "updated" | "deleted" | "listviews" | "quickActions"
    )
}

/// True when `rest` with `method` is served by [`write`].
pub fn is_write(method: &Method, rest: &[&str]) -> bool {
    match rest {
        ["sobjects", _] => *method == Method::POST,
        ["sobjects", _, id] if reserved(id) => false,
        ["sobjects", _, id] => {
            *method == Method::PATCH
                || *method == Method::DELETE
                || (*method == Method::POST && id.eq_ignore_ascii_case("Id"))
        }
        ["sobjects", _, _, last] => {
            *last != "password"
                && (*method == Method::PATCH
                    || *method == Method::POST
                    || *method == Method::DELETE)
        }
        _ => false,
    }
}

/// Serves a reading resource on `tx`.
/// Platform events have no stored records: any record resource of one (by id, by external id,
/// updated/deleted) does not exist. Publishing (`POST sobjects/Name__e`) and describe remain.
pub fn refuse_event_records(
    schema: &model::Schema,
    method: &Method,
    rest: &[&str],
) -> Result<(), ApiError> {
    if let ["sobjects", object, more @ ..] = rest {
        let publish = *method == Method::POST && more.len() <= 1;
        let describe = matches!(more, ["describe", ..] | ["eventSchema"]);
        if !more.is_empty()
            && !publish
            && !describe
            && schema
                .object(object)
                .is_some_and(|o| o.kind == model::ObjectKind::PlatformEvent)
        {
            return Err(ApiError::not_found());
        }
    }
    Ok(())
}

pub fn read(ctx: &Ctx, tx: &dyn ReadTx, rest: &[&str]) -> Result<Reply, ApiError> {
    refuse_event_records(tx.schema(), &ctx.method, rest)?;
    let p = &ctx.principal;
    let fields = ctx.query.get("fields").map(String::as_str);
    match rest {
        ["sobjects", object, id] => {
            let o = ops::visible(tx.schema(), p, object)?;
            let r = ops::read_by_id(tx, p, &o, id, fields)?;
            if let Some(reply) = not_modified_since(ctx, &r)? {
                return Ok(reply);
            }
            Ok(Reply::new(StatusCode::OK, Payload::Record(Box::new(r))))
        }
        ["sobjects", object, field, value] => {
            let o = ops::visible(tx.schema(), p, object)?;
            let (_, hits) = ops::find_external(tx, p, &o, field, value)?;
            match hits.as_slice() {
                [] => Err(ApiError::not_found()),
                [one] => Ok(Reply::new(
                    StatusCode::OK,
                    Payload::Record(Box::new(ops::read(tx, p, &o, *one, fields)?)),
                )),
                many => Ok(multiple_choices(ctx, &o, tx.marker(), many)),
            }
        }
        ["query"] | ["queryAll"] => {
            if ctx.query.contains_key("explain") {
                return Err(ApiError::new(
                    ErrorCode::InvalidOperation,
                    "Query plans (explain) are not available on this server",
                ));
            }
            let q = ctx
                .query
                .get("q")
                .filter(|q| !q.trim().is_empty())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::MalformedQuery,
                        "A query string has to be specified",
                    )
                })?;
            let page = ctx
                .state
                .org
                .query_in(tx, p, q, rest[0] == "queryAll", batch_size(ctx))?;
            Ok(Reply::new(StatusCode::OK, Payload::Page(Box::new(page))))
        }
        ["query", locator] | ["queryAll", locator] => {
            let page = ctx.state.org.query_more(p, locator)?;
            Ok(Reply::new(StatusCode::OK, Payload::Page(Box::new(page))))
        }
        _ => Err(ApiError::not_found()),
    }
}

/// Serves a writing resource on `tx`.
pub fn write(ctx: &Ctx, tx: &mut dyn WriteTx, rest: &[&str]) -> Result<Reply, ApiError> {
    refuse_event_records(tx.schema(), &ctx.method, rest)?;
    let p = &ctx.principal;
    let schema = tx.schema().clone();
    match rest {
        ["sobjects", object] | ["sobjects", object, _] if ctx.method == Method::POST => {
            let o = ops::visible(&schema, p, object)?;
            let body = ctx.json_body()?;
            let c = ops::create(tx, p, &o, &body)?;
            Ok(created(ctx, &o, &c))
        }
        ["sobjects", object, id] => {
            let o = ops::visible(&schema, p, object)?;
            let seq = ops::row_of(tx, &o, id)?;
            let since = ctx.date_header("if-unmodified-since");
            if ctx.method == Method::PATCH {
                let body = ctx.json_body()?;
                ops::update(tx, p, &o, seq, &body, since)?;
            } else {
                ops::delete(tx, p, &o, seq, since)?;
            }
            Ok(wrote(StatusCode::NO_CONTENT, Payload::Empty, &o))
        }
        ["sobjects", object, field, value] if ctx.method == Method::DELETE => {
            let o = ops::visible(&schema, p, object)?;
            let (_, hits) = ops::find_external(tx, p, &o, field, value)?;
            match hits.as_slice() {
                [] => Err(ApiError::not_found()),
                [one] => {
                    ops::delete(tx, p, &o, *one, None)?;
                    Ok(wrote(StatusCode::NO_CONTENT, Payload::Empty, &o))
                }
                many => Ok(multiple_choices(ctx, &o, tx.marker(), many)),
            }
        }
        ["sobjects", object, field, value] => {
            let o = ops::visible(&schema, p, object)?;
            let body = ctx.json_body()?;
            let update_only = ctx
                .query
                .get("updateOnly")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            match ops::upsert(tx, p, &o, field, value, &body, update_only)? {
                UpsertOutcome::Multiple(many) => Ok(multiple_choices(ctx, &o, tx.marker(), &many)),
                UpsertOutcome::Done(out) => {
                    let id = out.id.to_18();
                    let reply = match (out.created, ctx.version.0 >= 46) {
                        (true, true) => wrote(
                            StatusCode::CREATED,
                            Payload::Json(
                                json!({"id": id, "success": true, "errors": [], "created": true}),
                            ),
                            &o,
                        ),
                        (true, false) => wrote(
                            StatusCode::CREATED,
                            Payload::Json(json!({"id": id, "success": true, "errors": []})),
                            &o,
                        ),
                        (false, true) => wrote(
                            StatusCode::OK,
                            Payload::Json(
                                json!({"id": id, "success": true, "errors": [], "created": false}),
                            ),
                            &o,
                        ),
                        (false, false) => wrote(StatusCode::NO_CONTENT, Payload::Empty, &o),
                    };
                    let mut reply = reply;
                    if out.created {
                        reply.location = Some(record_url(ctx, &o.name, &out.id));
                    }
                    Ok(reply)
                }
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

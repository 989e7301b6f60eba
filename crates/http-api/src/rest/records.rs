//! sObject resources: basic info and create (`/sobjects/T`), one row (`/sobjects/T/{id}`),
//! external-id rows and upsert (`/sobjects/T/{field}/{value}`), getUpdated/getDeleted, and
//! setting a user's password.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use model::{ApiError, ErrorCode};
use serde_json::{json, Value as Json};

use super::{method_not_allowed, no_content, Ctx};
use crate::error::json;

/// `GET /sobjects/T`: basic information about an object.
pub fn basic_info(ctx: &Ctx, object: &str) -> Result<Response, ApiError> {
    let o = ctx.state.org.visible_object(&ctx.principal, object)?;
    Ok(json(
        StatusCode::OK,
        &json!({"objectDescribe": super::describe::global_entry(ctx, &o), "recentItems": []}),
    ))
}

fn window(ctx: &Ctx) -> Result<(i64, i64), ApiError> {
    let parse = |k: &str| -> Result<i64, ApiError> {
        let raw = ctx.query.get(k).ok_or_else(|| {
            ApiError::new(
                ErrorCode::IllegalQueryParameterValue,
                format!("The '{k}' parameter is required"),
            )
        })?;
        // `+00:00` may arrive with its `+` decoded to a space.
        let fixed = raw.trim().replace(' ', "+");
        model::value::parse_datetime(&fixed).ok_or_else(|| {
            ApiError::new(
                ErrorCode::IllegalQueryParameterValue,
                format!("'{raw}' is not a valid value for the type xsd:dateTime"),
            )
        })
    };
    Ok((parse("start")?, parse("end")?))
}

/// `GET /sobjects/T/updated?start=&end=`.
pub fn updated(ctx: &Ctx, object: &str) -> Result<Response, ApiError> {
    let (start, end) = window(ctx)?;
    let (ids, latest) = ctx.state.org.updated(&ctx.principal, object, start, end)?;
    Ok(json(
        StatusCode::OK,
        &json!({"ids": ids.iter().map(|i| i.to_18()).collect::<Vec<_>>(), "latestDateCovered": model::value::format_datetime(latest)}),
    ))
}

/// `GET /sobjects/T/deleted?start=&end=`.
pub fn deleted(ctx: &Ctx, object: &str) -> Result<Response, ApiError> {
    let (start, end) = window(ctx)?;
    let (rows, earliest, latest) = ctx.state.org.deleted(&ctx.principal, object, start, end)?;
    let recs: Vec<Json> = rows
        .iter()
        .map(|(id, t)| json!({"id": id.to_18(), "deletedDate": model::value::format_datetime(*t)}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"deletedRecords": recs, "earliestDateAvailable": model::value::format_datetime(earliest), "latestDateCovered": model::value::format_datetime(latest)}),
    ))
}

/// `POST|GET /sobjects/User/{id}/password`.
pub async fn password(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    match ctx.method {
        Method::POST => {
            let body = ctx.json_body()?;
            let pw = body
                .get("NewPassword")
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    ApiError::with_fields(
                        ErrorCode::RequiredFieldMissing,
                        "Required fields are missing: [NewPassword]",
                        vec!["NewPassword".into()],
                    )
                })?;
            ctx.state.org.set_password(&ctx.principal, id, pw).await?;
            Ok(no_content())
        }
        Method::GET => {
            let user = ctx
                .state
                .org
                .schema()
                .object("User")
                .cloned()
                .ok_or_else(ApiError::not_found)?;
            ctx.state.org.record_seq(&user, id)?;
            Ok(json(StatusCode::OK, &json!({"isExpired": false})))
        }
        _ => Err(method_not_allowed(&ctx.method, "GET,POST")),
    }
}

//! The Tooling API's metadata resources: creating custom objects and fields, change event
//! selections (`PlatformEventChannelMember`) and managed event subscriptions
//! (`ManagedEventSubscription`, read back by id and by the Tooling query the Pub/Sub clients
//! run: `SELECT Id, DeveloperName, Metadata FROM ManagedEventSubscription WHERE …`).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use model::{ApiError, ErrorCode};
use serde_json::{json, Map, Value as Json};
use service::managed::Managed;
use soql::ast::{CompareOp, Condition, FieldExpr, SelectItem, ValueKind};

use super::{method_not_allowed, no_content, Ctx};
use crate::error::json;

const SUPPORTED: &str =
    "CustomObject, CustomField, PlatformEventChannelMember and ManagedEventSubscription are";

fn unsupported(kind: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("The Tooling API object {kind} is not supported by this server ({SUPPORTED})"),
    )
}

/// The `FullName` and `Metadata` of a Tooling create or update body.
fn full_name_and_metadata(
    ctx: &Ctx,
    need_name: bool,
) -> Result<(String, Map<String, Json>), ApiError> {
    let body = ctx.json_body()?;
    let full_name = body
        .get("FullName")
        .or_else(|| body.get("fullName"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if need_name && full_name.is_empty() {
        return Err(ApiError::with_fields(
            ErrorCode::RequiredFieldMissing,
            "Required fields are missing: [FullName]",
            vec!["FullName".into()],
        ));
    }
    match body
        .get("Metadata")
        .or_else(|| body.get("metadata"))
        .cloned()
        .unwrap_or(Json::Object(Default::default()))
    {
        Json::Object(m) => Ok((full_name, m)),
        _ => Err(ApiError::new(
            ErrorCode::JsonParserError,
            "Metadata must be a JSON object",
        )),
    }
}

/// `POST …/tooling/sobjects/{kind}`.
pub async fn create(ctx: &Ctx, kind: &str) -> Result<Response, ApiError> {
    if ctx.method != Method::POST {
        return Err(method_not_allowed(&ctx.method, "POST"));
    }
    let (full_name, metadata) = full_name_and_metadata(ctx, true)?;
    let org = &ctx.state.org;
    let p = &ctx.principal;
    let id = match kind {
        k if k.eq_ignore_ascii_case("CustomObject") => {
            org.create_custom_object(p, &full_name, &Json::Object(metadata))
                .await?
        }
        k if k.eq_ignore_ascii_case("CustomField") => {
            org.create_custom_field(p, &full_name, &Json::Object(metadata))
                .await?
        }
        k if k.eq_ignore_ascii_case("PlatformEventChannelMember") => {
            // FullName is `ChangeEvents_AccountChangeEvent`; Metadata may say the same.
            let (by_name_channel, by_name_entity) =
                full_name.split_once('_').unwrap_or(("", &full_name));
            let field = |k: &str| metadata.get(k).and_then(|v| v.as_str());
            let channel = field("eventChannel").unwrap_or(by_name_channel);
            let entity = field("selectedEntity").unwrap_or(by_name_entity);
            org.select_change_events(p, channel, entity).await?
        }
        k if k.eq_ignore_ascii_case("ManagedEventSubscription") => {
            org.create_managed_subscription(p, &full_name, &metadata)
                .await?
        }
        _ => return Err(unsupported(kind)),
    };
    Ok(json(
        StatusCode::CREATED,
        &json!({"id": id.to_18(), "success": true, "errors": [], "warnings": [], "infos": []}),
    ))
}

/// `…/tooling/sobjects/{kind}/{id}`: read, change or delete one.
pub async fn record(ctx: &Ctx, kind: &str, id: &str) -> Result<Response, ApiError> {
    if kind.eq_ignore_ascii_case("PlatformEventChannelMember") {
        return channel_member(ctx, id).await;
    }
    if !kind.eq_ignore_ascii_case("ManagedEventSubscription") {
        return Err(unsupported(kind));
    }
    let org = &ctx.state.org;
    match ctx.method {
        Method::GET | Method::HEAD => {
            let m = org
                .managed_subscription(id)?
                .filter(|_| {
                    ctx.principal.perms.modify_all_data || ctx.principal.perms.view_all_data
                })
                .ok_or_else(ApiError::not_found)?;
            Ok(json(StatusCode::OK, &managed_json(ctx, &m, None)))
        }
        Method::PATCH => {
            let (_, metadata) = full_name_and_metadata(ctx, false)?;
            org.update_managed_subscription(&ctx.principal, id, &metadata)
                .await?;
            Ok(no_content())
        }
        Method::DELETE => {
            org.delete_managed_subscription(&ctx.principal, id).await?;
            Ok(no_content())
        }
        _ => Err(method_not_allowed(&ctx.method, "GET,HEAD,PATCH,DELETE")),
    }
}

/// A managed subscription as a Tooling record; `fields` limits it to the queried ones.
fn managed_json(ctx: &Ctx, m: &Managed, fields: Option<&[String]>) -> Json {
    let id = m.id(&ctx.state.org).to_18();
    let all = [
        ("Id", Json::String(id.clone())),
        ("DeveloperName", Json::String(m.name.clone())),
        ("MasterLabel", Json::String(m.label.clone())),
        ("FullName", Json::String(m.name.clone())),
        ("Metadata", m.metadata()),
    ];
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": "ManagedEventSubscription", "url": format!("{}/tooling/sobjects/ManagedEventSubscription/{id}", ctx.prefix())}),
    );
    for (name, value) in all {
        if fields.is_none_or(|f| f.iter().any(|x| x.eq_ignore_ascii_case(name))) {
            out.insert(name.into(), value);
        }
    }
    Json::Object(out)
}

/// `GET` or `DELETE …/tooling/sobjects/PlatformEventChannelMember/{id}`: a change event selection.
async fn channel_member(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let org = &ctx.state.org;
    match ctx.method {
        Method::GET | Method::HEAD => {
            let (member, entity) = org.change_event_member(id)?;
            Ok(json(
                StatusCode::OK,
                &json!({
                    "attributes": {"type": "PlatformEventChannelMember", "url": format!("{}/tooling/sobjects/PlatformEventChannelMember/{}", ctx.prefix(), member.to_18())},
                    "Id": member.to_18(),
                    "DeveloperName": format!("ChangeEvents_{entity}"),
                    "FullName": format!("ChangeEvents_{entity}"),
                    "EventChannel": "ChangeEvents",
                    "SelectedEntity": entity,
                    "Metadata": {"eventChannel": "ChangeEvents", "selectedEntity": entity},
                }),
            ))
        }
        Method::DELETE => {
            org.deselect_change_events(&ctx.principal, id).await?;
            Ok(no_content())
        }
        _ => Err(method_not_allowed(&ctx.method, "GET,HEAD,DELETE")),
    }
}

fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::MalformedQuery, message)
}

/// `GET …/tooling/query?q=…`: Tooling SOQL over `ManagedEventSubscription` (fields `Id`,
/// `DeveloperName`, `MasterLabel`, `FullName`, `Metadata`; `WHERE` with `=` on `Id`,
/// `DeveloperName` or `MasterLabel`, joined by `AND`/`OR`; `LIMIT`).
pub fn query(ctx: &Ctx) -> Result<Response, ApiError> {
    let q = ctx
        .query
        .get("q")
        .ok_or_else(|| malformed("The q parameter with a SOQL query is required"))?;
    let parsed = soql::parse(q).map_err(|e| malformed(e.to_string()))?;
    if !parsed
        .from
        .object
        .eq_ignore_case("ManagedEventSubscription")
    {
        return Err(ApiError::new(
            ErrorCode::InvalidType,
            format!(
                "sObject type '{}' is not supported by this server's Tooling query (ManagedEventSubscription is)",
                parsed.from.object.name
            ),
        ));
    }
    let mut fields = Vec::new();
    for item in &parsed.select {
        match item {
            SelectItem::Field(p) if p.segments.len() == 1 => {
                let name = &p.segments[0].name;
                if !["Id", "DeveloperName", "MasterLabel", "FullName", "Metadata"]
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(name))
                {
                    return Err(ApiError::new(
                        ErrorCode::InvalidField,
                        format!("No such column '{name}' on entity 'ManagedEventSubscription'"),
                    ));
                }
                fields.push(name.clone());
            }
            _ => {
                return Err(malformed(
                    "Only plain fields can be selected from ManagedEventSubscription",
                ))
            }
        }
    }
    let org = &ctx.state.org;
    let p = &ctx.principal;
    let visible = p.perms.modify_all_data || p.perms.view_all_data;
    let mut rows: Vec<Managed> = if visible {
        org.managed_subscriptions()?
    } else {
        Vec::new()
    };
    if let Some(cond) = &parsed.where_clause {
        let mut kept = Vec::new();
        for m in rows {
            if matches(org, &m, cond)? {
                kept.push(m);
            }
        }
        rows = kept;
    }
    if let Some(limit) = &parsed.limit {
        rows.truncate(limit.value as usize);
    }
    let records: Vec<Json> = rows
        .iter()
        .map(|m| managed_json(ctx, m, Some(&fields)))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "size": records.len(),
            "totalSize": records.len(),
            "done": true,
            "queryLocator": null,
            "entityTypeName": "ManagedEventSubscription",
            "records": records,
        }),
    ))
}

fn matches(org: &service::Org, m: &Managed, cond: &Condition) -> Result<bool, ApiError> {
    match cond {
        Condition::And { operands, .. } => {
            for c in operands {
                if !matches(org, m, c)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Condition::Or { operands, .. } => {
            for c in operands {
                if matches(org, m, c)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Condition::Not { operand, .. } => Ok(!matches(org, m, operand)?),
        Condition::Compare(c) if matches!(c.op, CompareOp::Eq | CompareOp::Ne) => {
            let FieldExpr::Field(path) = &c.left else {
                return Err(malformed("Only fields can be compared"));
            };
            let ValueKind::String(v) = &c.value.kind else {
                return Err(malformed("Compare ManagedEventSubscription fields with text"));
            };
            let name = &path.segments[0].name;
            let equal = if name.eq_ignore_ascii_case("Id") {
                let id = m.id(org);
                v.len() >= 15 && id.as_str() == &v[..15]
            } else if name.eq_ignore_ascii_case("DeveloperName") || name.eq_ignore_ascii_case("FullName") {
                m.name.eq_ignore_ascii_case(v)
            } else if name.eq_ignore_ascii_case("MasterLabel") {
                m.label.eq_ignore_ascii_case(v)
            } else {
                return Err(malformed(format!("{name} cannot be filtered on")));
            };
            Ok(equal == (c.op == CompareOp::Eq))
        }
        _ => Err(malformed(
            "ManagedEventSubscription queries filter with = or != on Id, DeveloperName or MasterLabel",
        )),
    }
}

//! Describe: the global list of objects (`/sobjects`) and one object's fields and relationships
//! (`/sobjects/T/describe`), honouring the caller's object and field permissions.

use axum::http::StatusCode;
use axum::response::Response;
use model::{ApiError, FieldDef, FieldType, ObjectDef, ObjectKind};
use serde_json::{json, Value as Json};

use super::Ctx;
use crate::error::json;

fn urls(ctx: &Ctx, o: &ObjectDef) -> Json {
    let p = format!("{}/sobjects/{}", ctx.prefix(), o.name);
    json!({
        "compactLayouts": format!("{p}/describe/compactLayouts"),
        "rowTemplate": format!("{p}/{{ID}}"),
        "approvalLayouts": format!("{p}/describe/approvalLayouts"),
        "defaultValues": format!("{p}/defaultValues?recordTypeId&fields"),
        "listviews": format!("{p}/listviews"),
        "describe": format!("{p}/describe"),
        "quickActions": format!("{p}/quickActions"),
        "layouts": format!("{p}/describe/layouts"),
        "sobject": p,
    })
}

/// One object's entry in the global describe.
pub fn global_entry(ctx: &Ctx, o: &ObjectDef) -> Json {
    let perms = ctx.principal.perms.object(o);
    let event = o.kind == ObjectKind::PlatformEvent;
    json!({
        "activateable": false,
        "associateEntityType": null,
        "associateParentEntity": null,
        "createable": o.caps.createable && perms.create,
        "custom": o.kind != ObjectKind::Standard,
        "customSetting": false,
        "deepCloneable": false,
        "deletable": o.caps.deletable && perms.delete,
        "deprecatedAndHidden": false,
        "feedEnabled": false,
        "hasSubtypes": false,
        "isInterface": false,
        "isSubtype": false,
        "keyPrefix": o.key_prefix.as_str(),
        "label": o.label,
        "labelPlural": o.label_plural,
        "layoutable": !event,
        "mergeable": false,
        "mruEnabled": !event,
        "name": o.name,
        "queryable": o.caps.queryable && perms.read && !event,
        "replicateable": !event,
        "retrieveable": !event,
        "searchable": !event,
        "triggerable": true,
        "undeletable": o.caps.undeletable && perms.delete,
        "updateable": o.caps.updateable && perms.edit,
        "urls": urls(ctx, o),
    })
}

/// `304 Not Modified` when the metadata has not changed since `If-Modified-Since`.
fn not_modified(ctx: &Ctx) -> Option<Response> {
    let since = ctx.date_header("if-modified-since")?;
    let changed = ctx.state.org.metadata_changed_ms() / 1000 * 1000;
    (changed <= since)
        .then(|| axum::response::IntoResponse::into_response(StatusCode::NOT_MODIFIED))
}

/// `GET /sobjects`.
pub fn global(ctx: &Ctx) -> Result<Response, ApiError> {
    if let Some(r) = not_modified(ctx) {
        return Ok(r);
    }
    Ok(json(StatusCode::OK, &global_value(ctx)))
}

/// The global describe as JSON.
pub fn global_value(ctx: &Ctx) -> Json {
    let schema = ctx.state.org.schema();
    let list: Vec<Json> = schema
        .objects()
        .filter(|o| {
            let p = ctx.principal.perms.object(o);
            p.read || p.create
        })
        .map(|o| global_entry(ctx, o))
        .collect();
    json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list})
}

/// `GET /tooling/sobjects`: the Tooling objects this server can create.
pub fn tooling_global(ctx: &Ctx) -> Result<Response, ApiError> {
    let createable = ctx.principal.perms.customize_application;
    let entry = |name: &str, prefix: &str| json!({"name": name, "label": name, "keyPrefix": prefix, "createable": createable, "queryable": false, "custom": false});
    Ok(json(
        StatusCode::OK,
        &json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [entry("CustomObject", "01I"), entry("CustomField", "00N")]}),
    ))
}

fn field_json(ctx: &Ctx, o: &ObjectDef, f: &FieldDef) -> Json {
    let perms = &ctx.principal.perms;
    let op = perms.object(o);
    let editable = perms.field_editable(o, f);
    let text_len = if f.ty.is_text() || matches!(f.ty, FieldType::Id | FieldType::Reference) {
        f.length
    } else {
        0
    };
    let picklist: Vec<Json> = f.picklist.iter().map(|p| json!({"active": p.active, "defaultValue": p.default, "label": p.label, "validFor": null, "value": p.value})).collect();
    let default_value = match &f.default {
        Some(model::DefaultValue::Bool(b)) => json!(b),
        _ => Json::Null,
    };
    json!({
        "aggregatable": f.ty.is_filterable() && f.ty != FieldType::Boolean,
        "aiPredictionField": false,
        "autoNumber": matches!(f.derived, Some(model::Derived::AutoNumber { .. })),
        "byteLength": text_len * 3,
        "calculated": matches!(f.derived, Some(model::Derived::FullName | model::Derived::PicklistIn { .. })),
        "calculatedFormula": null,
        "cascadeDelete": f.delete_rule == model::DeleteRule::Cascade && f.ty == FieldType::Reference,
        "caseSensitive": f.case_sensitive,
        "compoundFieldName": null,
        "controllerName": null,
        "createable": f.createable() && editable && op.create,
        "custom": f.custom,
        "defaultValue": default_value,
        "defaultValueFormula": null,
        "defaultedOnCreate": f.default.is_some() || matches!(f.access, model::Access::System) || f.derived.is_some(),
        "dependentPicklist": false,
        "deprecatedAndHidden": false,
        "digits": if f.ty == FieldType::Int { f.precision } else { 0 },
        "displayLocationInDecimal": false,
        "encrypted": false,
        "externalId": f.external_id,
        "extraTypeInfo": if f.ty == FieldType::LongTextArea { json!("plaintextarea") } else { Json::Null },
        "filterable": f.ty.is_filterable(),
        "filteredLookupInfo": null,
        "formulaTreatNullNumberAsZero": false,
        "groupable": f.ty.is_filterable() && !matches!(f.ty, FieldType::Double | FieldType::Currency | FieldType::Percent | FieldType::DateTime),
        "highScaleNumber": false,
        "htmlFormatted": false,
        "idLookup": f.id_lookup(),
        "inlineHelpText": f.inline_help,
        "label": f.label,
        "length": text_len,
        "mask": null,
        "maskType": null,
        "name": f.name,
        "nameField": f.name_field,
        "namePointing": false,
        "nillable": f.nillable(),
        "permissionable": f.permissionable,
        "picklistValues": picklist,
        "polymorphicForeignKey": false,
        "precision": if matches!(f.ty, FieldType::Double | FieldType::Currency | FieldType::Percent) { f.precision } else { 0 },
        "queryByDistance": false,
        "referenceTargetField": null,
        "referenceTo": f.reference_to.iter().cloned().collect::<Vec<_>>(),
        "relationshipName": f.relationship_name,
        "relationshipOrder": if f.master_detail { json!(0) } else { Json::Null },
        "restrictedDelete": f.delete_rule == model::DeleteRule::Restrict && f.ty == FieldType::Reference,
        "restrictedPicklist": f.restricted_picklist,
        "scale": if matches!(f.ty, FieldType::Double | FieldType::Currency | FieldType::Percent) { f.scale } else { 0 },
        "searchPrefilterable": false,
        "soapType": f.ty.soap_type(),
        "sortable": f.ty.is_filterable(),
        "type": f.ty.describe_name(),
        "unique": f.unique,
        "updateable": f.updateable() && editable && op.edit,
        "writeRequiresMasterRead": false,
    })
}

/// `GET /sobjects/T/describe`.
pub fn object(ctx: &Ctx, name: &str) -> Result<Response, ApiError> {
    ctx.state.org.visible_object(&ctx.principal, name)?;
    if let Some(r) = not_modified(ctx) {
        return Ok(r);
    }
    Ok(json(StatusCode::OK, &object_value(ctx, name)?))
}

/// One object's describe as JSON.
pub fn object_value(ctx: &Ctx, name: &str) -> Result<Json, ApiError> {
    let org = &ctx.state.org;
    let o = org.visible_object(&ctx.principal, name)?;
    let perms = &ctx.principal.perms;
    let schema = org.schema();
    let fields: Vec<Json> = o
        .fields
        .iter()
        .filter(|f| perms.field_readable(&o, f))
        .map(|f| field_json(ctx, &o, f))
        .collect();
    let children: Vec<Json> = o
        .children
        .iter()
        .filter(|c| {
            schema
                .object(&c.child_object)
                .is_some_and(|co| perms.object(co).read)
        })
        .map(|c| {
            json!({
                "cascadeDelete": c.cascade_delete,
                "childSObject": c.child_object,
                "deprecatedAndHidden": false,
                "field": c.field,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": c.relationship_name,
                "restrictedDelete": c.restricted_delete,
            })
        })
        .collect();
    let mut d = global_entry(ctx, &o);
    let m = d.as_object_mut().expect("object");
    m.insert("actionOverrides".into(), json!([]));
    m.insert("childRelationships".into(), Json::Array(children));
    m.insert("compactLayoutable".into(), json!(true));
    m.insert("defaultImplementation".into(), Json::Null);
    m.insert("extendedBy".into(), Json::Null);
    m.insert("extendsInterfaces".into(), Json::Null);
    m.insert("fields".into(), Json::Array(fields));
    m.insert("implementedBy".into(), Json::Null);
    m.insert("implementsInterfaces".into(), Json::Null);
    m.insert("listviewable".into(), Json::Null);
    m.insert("lookupLayoutable".into(), Json::Null);
    m.insert("namedLayoutInfos".into(), json!([]));
    m.insert("networkScopeFieldName".into(), Json::Null);
    m.insert(
        "recordTypeInfos".into(),
        json!([{"active": true, "available": true, "defaultRecordTypeMapping": true, "developerName": "Master", "master": true, "name": "Master", "recordTypeId": "012000000000000AAA", "urls": {"layout": format!("{}/sobjects/{}/describe/layouts/012000000000000AAA", ctx.prefix(), o.name)}}]),
    );
    m.insert("searchLayoutable".into(), json!(true));
    m.insert("sobjectDescribeOption".into(), json!("FULL"));
    m.insert(
        "supportedScopes".into(),
        json!([{"label": "All", "name": "everything"}, {"label": "My", "name": "mine"}]),
    );
    Ok(d)
}

//! Turning a JSON record body into typed field values, with Salesforce's validation rules and
//! error messages. Runs before the write job, outside the writer, so the writer only does what
//! needs the database (references, uniqueness).

use std::sync::Arc;

use model::{
    writable, ApiError, ApiResult, ErrorCode, FieldDef, FieldType, Id, ObjectDef, Schema, Value,
};
use serde_json::{Map, Value as Json};

use crate::auth::Principal;

/// Create or update: decides which fields may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new record.
    Create,
    /// An existing record.
    Update,
}

/// A reference given as the parent's external id (`"Account": {"Ext__c": "A-1"}`), resolved in the
/// write transaction.
#[derive(Debug, Clone)]
pub struct ExtRef {
    /// The reference field to set.
    pub field: usize,
    /// The parent object.
    pub target: Arc<ObjectDef>,
    /// The external-id field of the parent.
    pub ext_field: usize,
    /// The external-id value.
    pub value: Value,
}

/// A validated record body.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Field positions and their new values.
    pub values: Vec<(usize, Value)>,
    /// References to resolve by external id.
    pub ext_refs: Vec<ExtRef>,
}

impl Input {
    /// The value given for field `i`, if any.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.values.iter().find(|(k, _)| *k == i).map(|(_, v)| v)
    }

    /// Sets (or replaces) field `i`.
    pub fn set(&mut self, i: usize, v: Value) {
        match self.values.iter_mut().find(|(k, _)| *k == i) {
            Some(slot) => slot.1 = v,
            None => self.values.push((i, v)),
        }
    }
}

fn token_name(v: &Json) -> &'static str {
    match v {
        Json::String(_) => "VALUE_STRING",
        Json::Number(n) if n.is_i64() || n.is_u64() => "VALUE_NUMBER_INT",
        Json::Number(_) => "VALUE_NUMBER_FLOAT",
        Json::Bool(true) => "VALUE_TRUE",
        Json::Bool(false) => "VALUE_FALSE",
        Json::Object(_) => "START_OBJECT",
        Json::Array(_) => "START_ARRAY",
        Json::Null => "VALUE_NULL",
    }
}

fn type_word(f: &FieldDef) -> &'static str {
    match f.ty {
        FieldType::Boolean => "boolean",
        FieldType::Int => "int",
        FieldType::Double | FieldType::Percent => "double",
        FieldType::Currency => "currency",
        FieldType::Date => "date",
        FieldType::DateTime => "datetime",
        FieldType::Time => "time",
        FieldType::Id | FieldType::Reference => "reference",
        FieldType::Picklist | FieldType::MultiPicklist => "picklist",
        _ => "string",
    }
}

/// The JSON_PARSER_ERROR Salesforce answers when a JSON value does not fit the field type.
pub fn parse_error(f: &FieldDef, v: &Json) -> ApiError {
    let shown = match v {
        Json::String(s) => s.clone(),
        Json::Object(_) | Json::Array(_) => String::new(),
        other => other.to_string(),
    };
    ApiError::new(
        ErrorCode::JsonParserError,
        format!(
            "Cannot deserialize instance of {} from {} value {} or request may be missing a required field",
            type_word(f),
            token_name(v),
            shown
        ),
    )
}

fn field_err(code: ErrorCode, f: &FieldDef, msg: String) -> ApiError {
    ApiError::with_fields(code, msg, vec![f.name.clone()])
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == ';' || c == '<' || c == '>')
}

fn number_of(f: &FieldDef, v: &Json) -> ApiResult<f64> {
    match v {
        Json::Number(n) => n.as_f64().ok_or_else(|| parse_error(f, v)),
        Json::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| parse_error(f, v)),
        _ => Err(parse_error(f, v)),
    }
}

/// Converts one JSON value for field `f` of object `o`.
pub fn coerce_value(o: &ObjectDef, f: &FieldDef, v: &Json) -> ApiResult<Value> {
    let _ = o;
    if v.is_null() {
        return Ok(if f.ty == FieldType::Boolean {
            Value::Bool(false)
        } else {
            Value::Null
        });
    }
    match f.ty {
        FieldType::Boolean => match v {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Json::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(parse_error(f, v)),
        },
        FieldType::Int => {
            let x = number_of(f, v)?;
            if x.fract() != 0.0 {
                return Err(parse_error(f, v));
            }
            let limit = 10f64.powi(f.precision.clamp(1, 18) as i32);
            if x.abs() >= limit {
                return Err(field_err(
                    ErrorCode::NumberOutsideValidRange,
                    f,
                    format!(
                        "{}: value outside of valid range on numeric field: {}",
                        f.label, x
                    ),
                ));
            }
            Ok(Value::Int(x as i64))
        }
        FieldType::Double | FieldType::Currency | FieldType::Percent => {
            // The API stores decimals as sent: the field's scale only rounds what the UI shows
            // (Salesforce Help, "Round Off Decimal Values of Currency Fields in the Salesforce UI
            // and API"). Only the integer digits are limited.
            let x = number_of(f, v)?;
            let int_digits = f.precision.saturating_sub(f.scale).clamp(1, 18);
            if x.abs() >= 10f64.powi(int_digits as i32) {
                return Err(field_err(
                    ErrorCode::NumberOutsideValidRange,
                    f,
                    format!(
                        "{}: value outside of valid range on numeric field: {}",
                        f.label,
                        model::value::format_double(x)
                    ),
                ));
            }
            Ok(Value::Double(x))
        }
        FieldType::Date => match v {
            Json::String(s) => {
                let t = s.trim();
                let d = model::value::parse_date(t).or_else(|| {
                    model::value::parse_datetime(t).and_then(|ms| {
                        chrono::DateTime::from_timestamp_millis(ms).map(|d| d.date_naive())
                    })
                });
                d.map(Value::Date).ok_or_else(|| parse_error(f, v))
            }
            _ => Err(parse_error(f, v)),
        },
        FieldType::DateTime => match v {
            Json::String(s) => model::value::parse_datetime(s)
                .or_else(|| {
                    model::value::parse_date(s).map(|d| {
                        d.and_hms_opt(0, 0, 0)
                            .expect("midnight")
                            .and_utc()
                            .timestamp_millis()
                    })
                })
                .map(Value::DateTime)
                .ok_or_else(|| parse_error(f, v)),
            _ => Err(parse_error(f, v)),
        },
        FieldType::Time => match v {
            Json::String(s) => model::value::parse_time(s)
                .map(Value::Time)
                .ok_or_else(|| parse_error(f, v)),
            _ => Err(parse_error(f, v)),
        },
        FieldType::Id | FieldType::Reference => match v {
            Json::String(s) if s.is_empty() => Ok(Value::Null),
            Json::String(s) => {
                let id = Id::parse(s.trim()).map_err(|_| {
                    field_err(
                        ErrorCode::MalformedId,
                        f,
                        format!("{}: id value of incorrect type: {}", f.label, s),
                    )
                })?;
                if let Some(p) = f.reference_prefix {
                    if id.prefix() != p {
                        return Err(field_err(
                            ErrorCode::FieldIntegrityException,
                            f,
                            format!("{}: id value of incorrect type: {}", f.label, s),
                        ));
                    }
                }
                Ok(Value::Id(id))
            }
            _ => Err(parse_error(f, v)),
        },
        _ => {
            let s = match v {
                Json::String(s) => s.clone(),
                Json::Number(n) => n.to_string(),
                _ => return Err(parse_error(f, v)),
            };
            if s.is_empty() {
                return Ok(Value::Null);
            }
            let s = if f.ty == FieldType::MultiPicklist {
                let mut parts: Vec<&str> = Vec::new();
                for p in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                    if !parts.iter().any(|q| q.eq_ignore_ascii_case(p)) {
                        parts.push(p);
                    }
                }
                parts.join(";")
            } else {
                s
            };
            let len = s.chars().count();
            if f.length > 0 && len > f.length as usize {
                let shown: String = s.chars().take(40).collect();
                return Err(field_err(
                    ErrorCode::StringTooLong,
                    f,
                    format!(
                        "{}: data value too large: {}{} (max length={})",
                        f.label,
                        shown,
                        if len > 40 { "..." } else { "" },
                        f.length
                    ),
                ));
            }
            if f.ty == FieldType::Email && !valid_email(&s) {
                return Err(field_err(
                    ErrorCode::InvalidEmailAddress,
                    f,
                    format!("{}: invalid email address: {}", f.label, s),
                ));
            }
            if matches!(f.ty, FieldType::Picklist | FieldType::MultiPicklist)
                && f.restricted_picklist
            {
                for part in s.split(';') {
                    if !f.picklist.iter().any(|p| p.active && p.value == part) {
                        return Err(field_err(
                            ErrorCode::InvalidOrNullForRestrictedPicklist,
                            f,
                            format!(
                                "{}: bad value for restricted picklist field: {}",
                                f.label, part
                            ),
                        ));
                    }
                }
            }
            Ok(Value::Text(s))
        }
    }
}

/// Converts one text value for field `f` of object `o` exactly as [`coerce_value`] converts the
/// JSON string `s` (same rules, same errors), without building JSON: the bulk fast path (CSV
/// fields arrive as text).
pub fn coerce_str(o: &ObjectDef, f: &FieldDef, s: &str) -> ApiResult<Value> {
    let _ = o;
    let parse_err = || parse_error(f, &Json::String(s.to_string()));
    match f.ty {
        FieldType::Boolean => {
            if s.eq_ignore_ascii_case("true") {
                Ok(Value::Bool(true))
            } else if s.eq_ignore_ascii_case("false") {
                Ok(Value::Bool(false))
            } else {
                Err(parse_err())
            }
        }
        FieldType::Int => {
            let x = s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(parse_err)?;
            if x.fract() != 0.0 {
                return Err(parse_err());
            }
            let limit = 10f64.powi(f.precision.clamp(1, 18) as i32);
            if x.abs() >= limit {
                return Err(field_err(
                    ErrorCode::NumberOutsideValidRange,
                    f,
                    format!(
                        "{}: value outside of valid range on numeric field: {}",
                        f.label, x
                    ),
                ));
            }
            Ok(Value::Int(x as i64))
        }
        FieldType::Double | FieldType::Currency | FieldType::Percent => {
            let x = s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(parse_err)?;
            let int_digits = f.precision.saturating_sub(f.scale).clamp(1, 18);
            if x.abs() >= 10f64.powi(int_digits as i32) {
                return Err(field_err(
                    ErrorCode::NumberOutsideValidRange,
                    f,
                    format!(
                        "{}: value outside of valid range on numeric field: {}",
                        f.label,
                        model::value::format_double(x)
                    ),
                ));
            }
            Ok(Value::Double(x))
        }
        FieldType::Date => {
            let t = s.trim();
            let d = model::value::parse_date(t).or_else(|| {
                datetime_millis(t).and_then(|ms| {
                    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.date_naive())
                })
            });
            d.map(Value::Date).ok_or_else(parse_err)
        }
        FieldType::DateTime => datetime_millis(s)
            .or_else(|| {
                model::value::parse_date(s).map(|d| {
                    d.and_hms_opt(0, 0, 0)
                        .expect("midnight")
                        .and_utc()
                        .timestamp_millis()
                })
            })
            .map(Value::DateTime)
            .ok_or_else(parse_err),
        FieldType::Time => model::value::parse_time(s)
            .map(Value::Time)
            .ok_or_else(parse_err),
        FieldType::Id | FieldType::Reference => {
            if s.is_empty() {
                return Ok(Value::Null);
            }
            let id = Id::parse(s.trim()).map_err(|_| {
                field_err(
                    ErrorCode::MalformedId,
                    f,
                    format!("{}: id value of incorrect type: {}", f.label, s),
                )
            })?;
            if let Some(p) = f.reference_prefix {
                if id.prefix() != p {
                    return Err(field_err(
                        ErrorCode::FieldIntegrityException,
                        f,
                        format!("{}: id value of incorrect type: {}", f.label, s),
                    ));
                }
            }
            Ok(Value::Id(id))
        }
        _ => {
            if s.is_empty() {
                return Ok(Value::Null);
            }
            let s: std::borrow::Cow<'_, str> = if f.ty == FieldType::MultiPicklist {
                let mut parts: Vec<&str> = Vec::new();
                for p in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                    if !parts.iter().any(|q| q.eq_ignore_ascii_case(p)) {
                        parts.push(p);
                    }
                }
                parts.join(";").into()
            } else {
                s.into()
            };
            if f.length > 0 && s.len() > f.length as usize {
                // Byte length bounds the character count; count characters only when needed.
                let len = s.chars().count();
                if len > f.length as usize {
                    let shown: String = s.chars().take(40).collect();
                    return Err(field_err(
                        ErrorCode::StringTooLong,
                        f,
                        format!(
                            "{}: data value too large: {}{} (max length={})",
                            f.label,
                            shown,
                            if len > 40 { "..." } else { "" },
                            f.length
                        ),
                    ));
                }
            }
            if f.ty == FieldType::Email && !valid_email(&s) {
                return Err(field_err(
                    ErrorCode::InvalidEmailAddress,
                    f,
                    format!("{}: invalid email address: {}", f.label, s),
                ));
            }
            if matches!(f.ty, FieldType::Picklist | FieldType::MultiPicklist)
                && f.restricted_picklist
            {
                for part in s.split(';') {
                    if !f.picklist.iter().any(|p| p.active && p.value == part) {
                        return Err(field_err(
                            ErrorCode::InvalidOrNullForRestrictedPicklist,
                            f,
                            format!(
                                "{}: bad value for restricted picklist field: {}",
                                f.label, part
                            ),
                        ));
                    }
                }
            }
            Ok(Value::Text(s.into_owned()))
        }
    }
}

/// [`model::value::parse_datetime`], with the common shapes (`2024-01-02T03:04:05[.mmm][Z]` and
/// `2024-01-02 03:04:05[.mmm]`) read by hand first: the general parser tries up to nine formats
/// and dominated bulk loads of date-times. The hand parser answers only where the general one
/// would answer the same; anything else falls through to it.
fn datetime_millis(s: &str) -> Option<i64> {
    fast_datetime(s.trim()).or_else(|| model::value::parse_datetime(s))
}

fn fast_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let tee = match b[10] {
        b'T' => true,
        b' ' => false,
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as u32;
        }
        Some(n)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &b[19..];
    let mut millis = 0u32;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for (k, &c) in frac[..digits.min(3)].iter().enumerate() {
            millis += (c - b'0') as u32 * [100, 10, 1][k];
        }
        rest = &frac[digits..];
    }
    match rest {
        [] => {}
        // `Z` parses (RFC 3339) only after a `T`.
        [b'Z'] if tee => {}
        _ => return None,
    }
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)?;
    let secs = date.and_hms_opt(h, mi, se)?.and_utc().timestamp();
    Some(secs * 1000 + millis as i64)
}

/// The INVALID_FIELD error for a name the caller may not see.
pub fn no_such_column(o: &ObjectDef, name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidField,
        format!("No such column '{name}' on sobject of type {}", o.name),
    )
}

/// Validates a JSON record body for `o`.
pub fn coerce_record(
    p: &Principal,
    schema: &Schema,
    o: &ObjectDef,
    body: &Map<String, Json>,
    mode: Mode,
) -> ApiResult<Input> {
    let mut input = Input::default();
    let mut locked: Vec<String> = Vec::new();
    for (key, v) in body {
        if key == "attributes" {
            continue;
        }
        let Some(i) = o.field_index(key) else {
            // `"Account": {"Ext__c": "X"}` sets AccountId through the parent's external id.
            if let (Some(rf), Json::Object(inner)) = (o.relationship(key), v) {
                input.ext_refs.push(ext_ref(p, schema, o, rf, inner)?);
                continue;
            }
            return Err(no_such_column(o, key));
        };
        let f = &o.fields[i];
        if !p.perms.field_readable(o, f) {
            return Err(no_such_column(o, key));
        }
        if f.ty == FieldType::Id {
            if mode == Mode::Create && !v.is_null() {
                return Err(ApiError::with_fields(
                    ErrorCode::InvalidFieldForInsertUpdate,
                    "Id: cannot specify Id in an insert call",
                    vec!["Id".into()],
                ));
            }
            continue;
        }
        if !writable(f, mode == Mode::Create) || !p.perms.field_editable(o, f) {
            locked.push(f.name.clone());
            continue;
        }
        input.values.push((i, coerce_value(o, f, v)?));
    }
    if !locked.is_empty() {
        return Err(ApiError::with_fields(
            ErrorCode::InvalidFieldForInsertUpdate,
            format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                locked.join(", ")
            ),
            locked,
        ));
    }
    Ok(input)
}

fn ext_ref(
    p: &Principal,
    schema: &Schema,
    o: &ObjectDef,
    rf: &FieldDef,
    inner: &Map<String, Json>,
) -> ApiResult<ExtRef> {
    let field = o.field_index(&rf.name).expect("relationship field exists");
    if !writable(rf, true) || !p.perms.field_editable(o, rf) {
        return Err(ApiError::with_fields(
            ErrorCode::InvalidFieldForInsertUpdate,
            format!("Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", rf.name),
            vec![rf.name.clone()],
        ));
    }
    let target = schema
        .object(rf.reference_to.as_deref().unwrap_or(""))
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    let keys: Vec<(&String, &Json)> = inner
        .iter()
        .filter(|(k, _)| k.as_str() != "attributes")
        .collect();
    if keys.len() != 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            format!(
                "Relationship {} must name exactly one external ID field of {}",
                rf.relationship_name.as_deref().unwrap_or(""),
                target.name
            ),
        ));
    }
    let (k, v) = keys[0];
    let ext_field = target
        .field_index(k)
        .filter(|&i| {
            target.fields[i].id_lookup() && p.perms.field_readable(&target, &target.fields[i])
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidField,
                format!(
                    "Field {k} does not exist or is not an External ID field on {}",
                    target.name
                ),
            )
        })?;
    let value = coerce_value(&target, &target.fields[ext_field], v)?;
    Ok(ExtRef {
        field,
        target,
        ext_field,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account() -> Arc<ObjectDef> {
        Schema::build(model::standard::standard_objects(), 1)
            .unwrap()
            .object("Account")
            .unwrap()
            .clone()
    }

    fn field(o: &ObjectDef, n: &str) -> FieldDef {
        o.field(n).unwrap().clone()
    }

    #[test]
    fn numbers_dates_and_text_follow_salesforce_rules() {
        let a = account();
        let emp = field(&a, "NumberOfEmployees");
        assert_eq!(coerce_value(&a, &emp, &json!(5)).unwrap(), Value::Int(5));
        assert_eq!(coerce_value(&a, &emp, &json!("7")).unwrap(), Value::Int(7));
        let e = coerce_value(&a, &emp, &json!("abc")).unwrap_err();
        assert_eq!(e.code, ErrorCode::JsonParserError);
        assert!(
            e.message.contains("VALUE_STRING value abc"),
            "{}",
            e.message
        );
        assert_eq!(
            coerce_value(&a, &emp, &json!(123456789)).unwrap_err().code,
            ErrorCode::NumberOutsideValidRange
        );
        let rev = field(&a, "AnnualRevenue");
        assert_eq!(
            coerce_value(&a, &rev, &json!(10.4)).unwrap(),
            Value::Double(10.4),
            "the API does not round to the field's scale"
        );
        let name = field(&a, "Name");
        assert_eq!(coerce_value(&a, &name, &json!("")).unwrap(), Value::Null);
        let long = "x".repeat(256);
        let e = coerce_value(&a, &name, &json!(long)).unwrap_err();
        assert_eq!(e.code, ErrorCode::StringTooLong);
        assert!(e.message.ends_with("(max length=255)"));
        assert_eq!(
            coerce_value(&a, &name, &json!({"a": 1})).unwrap_err().code,
            ErrorCode::JsonParserError
        );
        let parent = field(&a, "ParentId");
        assert_eq!(
            coerce_value(&a, &parent, &json!("nonsense"))
                .unwrap_err()
                .code,
            ErrorCode::MalformedId
        );
        assert_eq!(
            coerce_value(&a, &parent, &json!("003D000000IRFmaIAH"))
                .unwrap_err()
                .code,
            ErrorCode::FieldIntegrityException
        );
        assert!(matches!(
            coerce_value(&a, &parent, &json!("001D000000IRFmaIAH")).unwrap(),
            Value::Id(_)
        ));
    }

    #[test]
    fn emails_are_checked() {
        let s = Schema::build(model::standard::standard_objects(), 1).unwrap();
        let c = s.object("Contact").unwrap().clone();
        let email = field(&c, "Email");
        assert!(coerce_value(&c, &email, &json!("a@b.co")).is_ok());
        for bad in ["nope", "a@b", "a b@c.d", "@c.d"] {
            assert_eq!(
                coerce_value(&c, &email, &json!(bad)).unwrap_err().code,
                ErrorCode::InvalidEmailAddress,
                "{bad}"
            );
        }
    }
}

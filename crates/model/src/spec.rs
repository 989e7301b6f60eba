//! Declarative definitions of custom objects and fields, in the Salesforce Metadata vocabulary.
//!
//! The same shapes arrive three ways: as the `Metadata` of a Tooling API create
//! (`POST …/tooling/sobjects/CustomObject` / `CustomField`), from YAML files in the metadata folder,
//! and from the store, which persists the specs it has applied. Keys are the Metadata API's
//! camelCase names (`externalId`, `referenceTo`, `valueSet`…); booleans and numbers are accepted as
//! JSON values or as strings, as the Metadata API does.

use serde::{Deserialize, Deserializer, Serialize};

use crate::field::{
    is_valid_custom_stem, Access, DefaultValue, DeleteRule, Derived, FieldDef, FieldType,
    PicklistValue,
};
use crate::schema::{ObjectDef, ObjectKind};
use crate::standard::object_with_system_fields;
use crate::{ApiError, ErrorCode, KeyPrefix};

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Bool(b) => Some(b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        serde_json::Value::Null => None,
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a boolean, found {other}"
            )))
        }
    })
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => Some(
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| serde::de::Error::custom("expected a small whole number"))?,
        ),
        serde_json::Value::String(s) => Some(
            s.trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("expected a number, found {s:?}")))?,
        ),
        serde_json::Value::Null => None,
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a number, found {other}"
            )))
        }
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Null => None,
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected text, found {other}"
            )))
        }
    })
}

/// The name field of a custom object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NameFieldSpec {
    /// `Text` (default) or `AutoNumber`.
    #[serde(
        default,
        rename = "type",
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ty: Option<String>,
    /// Label of the name field.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub label: Option<String>,
    /// Auto-number display format such as `INV-{0000}`.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_format: Option<String>,
    /// First auto-number.
    #[serde(
        default,
        deserialize_with = "lenient_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub starting_number: Option<u32>,
}

/// A custom object (`Foo__c`) or platform event (`Foo__e`) definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomObjectSpec {
    /// API name including the suffix; filled from the Tooling `FullName` or the file name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full_name: String,
    /// Singular label.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub label: Option<String>,
    /// Plural label.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub plural_label: Option<String>,
    /// The name field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_field: Option<NameFieldSpec>,
    /// Description.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    /// Accepted and kept; Conflux deploys immediately.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub deployment_status: Option<String>,
    /// Accepted and kept; record-level sharing is not enforced (see ARCHITECTURE.md).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub sharing_model: Option<String>,
    /// Platform events: `PublishImmediately` (default) or `PublishAfterCommit`.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub publish_behavior: Option<String>,
    /// Platform events: `HighVolume` (default) or `StandardVolume`.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_type: Option<String>,
    /// Fields declared with the object (metadata files); Tooling creates fields separately.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<CustomFieldSpec>,
}

/// One picklist value in a value set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValueSpec {
    /// The stored value.
    #[serde(default, deserialize_with = "lenient_string")]
    pub full_name: Option<String>,
    /// The label (defaults to the value).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub label: Option<String>,
    /// Default selection.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<bool>,
}

/// The values of a picklist.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValueSetDefinition {
    /// The values in order.
    #[serde(default)]
    pub value: Vec<ValueSpec>,
    /// Sort alphabetically.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub sorted: Option<bool>,
}

/// A picklist's value set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValueSet {
    /// Only listed values are accepted.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub restricted: Option<bool>,
    /// The values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_set_definition: Option<ValueSetDefinition>,
}

/// A custom field definition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomFieldSpec {
    /// `Field__c` (files) or `Object__c.Field__c` (Tooling `FullName`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full_name: String,
    /// Metadata type: Text, TextArea, LongTextArea, Email, Phone, Url, Picklist, MultiselectPicklist,
    /// Checkbox, Number, Currency, Percent, Date, DateTime, Time, Lookup, MasterDetail, AutoNumber.
    #[serde(
        default,
        rename = "type",
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ty: Option<String>,
    /// Label (defaults to the name).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub label: Option<String>,
    /// Maximum length of text fields.
    #[serde(
        default,
        deserialize_with = "lenient_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub length: Option<u32>,
    /// Total digits of number fields.
    #[serde(
        default,
        deserialize_with = "lenient_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub precision: Option<u32>,
    /// Decimal digits of number fields.
    #[serde(
        default,
        deserialize_with = "lenient_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub scale: Option<u32>,
    /// A value is required.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub required: Option<bool>,
    /// Values are unique.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub unique: Option<bool>,
    /// Usable as an upsert key.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<bool>,
    /// Uniqueness is case-sensitive.
    #[serde(
        default,
        deserialize_with = "lenient_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub case_sensitive: Option<bool>,
    /// Default value (`false`/`true` for checkboxes, a quoted string or number otherwise).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_value: Option<String>,
    /// Target object of Lookup and MasterDetail fields.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub reference_to: Option<String>,
    /// Child relationship name on the target (`Invoices` → `Invoices__r`).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub relationship_name: Option<String>,
    /// Child relationship label.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub relationship_label: Option<String>,
    /// `SetNull` (default), `Restrict` or `Cascade` for lookups.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub delete_constraint: Option<String>,
    /// Picklist values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_set: Option<ValueSet>,
    /// AutoNumber display format.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub display_format: Option<String>,
    /// AutoNumber first value.
    #[serde(
        default,
        deserialize_with = "lenient_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub starting_number: Option<u32>,
    /// Help text.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub inline_help_text: Option<String>,
    /// Description (kept, not used).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::FieldIntegrityException, msg)
}

/// Splits a Tooling field `FullName` (`Object__c.Field__c`) into object and field names.
pub fn split_field_full_name(full: &str) -> Result<(&str, &str), ApiError> {
    full.split_once('.')
        .filter(|(o, f)| !o.is_empty() && !f.is_empty() && !f.contains('.'))
        .ok_or_else(|| {
            bad(format!(
                "Invalid FullName '{full}': expected Object.Field__c"
            ))
        })
}

/// Checks a custom API name with the given suffix and returns its stem.
pub fn check_custom_name<'a>(name: &'a str, suffix: &str, what: &str) -> Result<&'a str, ApiError> {
    let stem = name
        .strip_suffix(suffix)
        .ok_or_else(|| bad(format!("The {what} name '{name}' must end with {suffix}")))?;
    if !is_valid_custom_stem(stem) {
        return Err(bad(format!(
            "The {what} name '{name}' can only contain underscores and alphanumeric characters. It must be unique, begin with a letter, not include spaces, not end with an underscore, and not contain two consecutive underscores."
        )));
    }
    Ok(stem)
}

impl CustomFieldSpec {
    /// Builds the field definition. `field_name` is the bare field name (`External_Id__c`).
    pub fn to_field(&self, field_name: &str) -> Result<FieldDef, ApiError> {
        check_custom_name(field_name, "__c", "field")?;
        let ty_name = self
            .ty
            .as_deref()
            .ok_or_else(|| bad(format!("Field {field_name}: type is required")))?;
        let label = self
            .label
            .clone()
            .unwrap_or_else(|| field_name.trim_end_matches("__c").replace('_', " "));
        let ty = match ty_name.to_ascii_lowercase().as_str() {
            "text" => FieldType::String,
            "textarea" => FieldType::TextArea,
            "longtextarea" | "html" => FieldType::LongTextArea,
            "email" => FieldType::Email,
            "phone" => FieldType::Phone,
            "url" => FieldType::Url,
            "picklist" => FieldType::Picklist,
            "multiselectpicklist" => FieldType::MultiPicklist,
            "checkbox" => FieldType::Boolean,
            "number" => FieldType::Double,
            "currency" => FieldType::Currency,
            "percent" => FieldType::Percent,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            "time" => FieldType::Time,
            "lookup" | "masterdetail" => FieldType::Reference,
            "autonumber" => FieldType::String,
            other => {
                return Err(bad(format!(
                    "Field {field_name}: unsupported type '{other}'"
                )))
            }
        };
        let mut f = FieldDef::new(field_name, &label, ty);
        f.custom = true;
        f.inline_help = self.inline_help_text.clone();
        let is_auto = ty_name.eq_ignore_ascii_case("autonumber");
        match ty {
            FieldType::String => {
                if is_auto {
                    let format = self.display_format.clone().unwrap_or_else(|| "{0}".into());
                    if !format.contains('{') {
                        return Err(bad(format!(
                            "Field {field_name}: displayFormat needs a {{0}} placeholder"
                        )));
                    }
                    f.access = Access::Derived;
                    f.derived = Some(Derived::AutoNumber {
                        format,
                        start: self.starting_number.unwrap_or(1) as u64,
                    });
                    f.length = 30;
                } else {
                    let len = self.length.ok_or_else(|| {
                        bad(format!("Field {field_name}: length is required for Text"))
                    })?;
                    if !(1..=255).contains(&len) {
                        return Err(bad(format!(
                            "Field {field_name}: length must be between 1 and 255"
                        )));
                    }
                    f.length = len;
                }
            }
            FieldType::LongTextArea => {
                let len = self.length.unwrap_or(32768);
                if !(256..=131072).contains(&len) {
                    return Err(bad(format!(
                        "Field {field_name}: length must be between 256 and 131072"
                    )));
                }
                f.length = len;
            }
            FieldType::Double | FieldType::Currency | FieldType::Percent => {
                let precision = self.precision.unwrap_or(18);
                let scale = self
                    .scale
                    .unwrap_or(if ty == FieldType::Currency { 2 } else { 0 });
                if !(1..=18).contains(&precision) || scale > precision {
                    return Err(bad(format!("Field {field_name}: precision must be 1-18 and scale at most the precision")));
                }
                f.precision = precision;
                f.scale = scale;
            }
            FieldType::Reference => {
                let target = self
                    .reference_to
                    .clone()
                    .ok_or_else(|| bad(format!("Field {field_name}: referenceTo is required")))?;
                let child = self.relationship_name.clone().ok_or_else(|| {
                    bad(format!("Field {field_name}: relationshipName is required"))
                })?;
                if !is_valid_custom_stem(&child) {
                    return Err(bad(format!(
                        "Field {field_name}: invalid relationshipName '{child}'"
                    )));
                }
                f.reference_to = Some(target);
                f.relationship_name = Some(format!("{}__r", field_name.trim_end_matches("__c")));
                f.child_relationship_name = Some(format!("{child}__r"));
                if ty_name.eq_ignore_ascii_case("masterdetail") {
                    f.master_detail = true;
                    f.required = true;
                    f.access = Access::CreateOnly;
                    f.delete_rule = DeleteRule::Cascade;
                    f.permissionable = false;
                } else {
                    f.delete_rule = match self.delete_constraint.as_deref().unwrap_or("SetNull") {
                        c if c.eq_ignore_ascii_case("setnull") => DeleteRule::SetNull,
                        c if c.eq_ignore_ascii_case("restrict") => DeleteRule::Restrict,
                        c if c.eq_ignore_ascii_case("cascade") => DeleteRule::Cascade,
                        other => {
                            return Err(bad(format!(
                                "Field {field_name}: unknown deleteConstraint '{other}'"
                            )))
                        }
                    };
                }
            }
            FieldType::Picklist | FieldType::MultiPicklist => {
                let vs = self.value_set.clone().unwrap_or_default();
                let values = vs.value_set_definition.map(|d| d.value).unwrap_or_default();
                if values.is_empty() {
                    return Err(bad(format!(
                        "Field {field_name}: a picklist needs valueSet values"
                    )));
                }
                for v in values {
                    let value = v.full_name.ok_or_else(|| {
                        bad(format!(
                            "Field {field_name}: picklist value without fullName"
                        ))
                    })?;
                    let default = v.default.unwrap_or(false);
                    if default && ty == FieldType::Picklist {
                        f.default = Some(DefaultValue::Text(value.clone()));
                    }
                    f.picklist.push(PicklistValue {
                        label: v.label.unwrap_or_else(|| value.clone()),
                        value,
                        default,
                        active: true,
                    });
                }
                f.restricted_picklist = vs.restricted.unwrap_or(false);
            }
            _ => {}
        }
        if ty != FieldType::Reference {
            f.required = self.required.unwrap_or(false);
        }
        f.unique = self.unique.unwrap_or(false);
        f.external_id = self.external_id.unwrap_or(false);
        f.case_sensitive = self.case_sensitive.unwrap_or(false);
        if (f.unique || f.external_id)
            && !matches!(ty, FieldType::String | FieldType::Email | FieldType::Double)
        {
            return Err(bad(format!("Field {field_name}: only Text, Email and Number fields can be unique or external IDs")));
        }
        if f.required {
            f.permissionable = false;
        }
        if let Some(d) = &self.default_value {
            let d = d.trim();
            f.default = Some(match ty {
                FieldType::Boolean => DefaultValue::Bool(d.eq_ignore_ascii_case("true")),
                FieldType::Double | FieldType::Currency | FieldType::Percent | FieldType::Int => {
                    DefaultValue::Number(d.parse().map_err(|_| {
                        bad(format!("Field {field_name}: defaultValue must be a number"))
                    })?)
                }
                _ => DefaultValue::Text(d.trim_matches(|c| c == '"' || c == '\'').to_string()),
            });
        }
        Ok(f)
    }
}

impl CustomObjectSpec {
    /// The kind implied by the name suffix.
    pub fn kind(&self) -> Result<ObjectKind, ApiError> {
        if self.full_name.ends_with("__c") {
            Ok(ObjectKind::Custom)
        } else if self.full_name.ends_with("__e") {
            Ok(ObjectKind::PlatformEvent)
        } else {
            Err(bad(format!(
                "The object name '{}' must end with __c (or __e for a platform event)",
                self.full_name
            )))
        }
    }

    /// Builds the object definition without its declared fields (add them with
    /// [`CustomFieldSpec::to_field`]); `prefix` is the key prefix to give it.
    pub fn to_object(&self, prefix: KeyPrefix) -> Result<ObjectDef, ApiError> {
        let kind = self.kind()?;
        let suffix = if kind == ObjectKind::Custom {
            "__c"
        } else {
            "__e"
        };
        let stem = check_custom_name(&self.full_name, suffix, "object")?;
        let label = self.label.clone().unwrap_or_else(|| stem.replace('_', " "));
        let plural = self
            .plural_label
            .clone()
            .unwrap_or_else(|| format!("{label}s"));
        if kind == ObjectKind::PlatformEvent {
            let after_commit = match self.publish_behavior.as_deref().map(str::trim) {
                None | Some("") => false,
                Some(b) if b.eq_ignore_ascii_case("PublishImmediately") => false,
                Some(b) if b.eq_ignore_ascii_case("PublishAfterCommit") => true,
                Some(other) => {
                    return Err(bad(format!(
                        "publishBehavior must be PublishImmediately or PublishAfterCommit, not '{other}'"
                    )))
                }
            };
            let mut o = ObjectDef::new(
                &self.full_name,
                &label,
                &plural,
                prefix,
                kind,
                crate::standard::event_fields(),
            );
            o.caps = crate::schema::Capabilities {
                createable: true,
                updateable: false,
                deletable: false,
                undeletable: false,
                queryable: false,
            };
            o.publish_after_commit = after_commit;
            o.description = self.description.clone();
            return Ok(o);
        }
        let nf = self.name_field.clone().unwrap_or_default();
        let mut name = FieldDef::new(
            "Name",
            nf.label.as_deref().unwrap_or(&format!("{label} Name")),
            FieldType::String,
        );
        name.name_field = true;
        name.custom = false;
        name.permissionable = false;
        match nf.ty.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("autonumber") => {
                name.access = Access::Derived;
                name.length = 30;
                name.derived = Some(Derived::AutoNumber {
                    format: nf.display_format.clone().unwrap_or_else(|| "{0}".into()),
                    start: nf.starting_number.unwrap_or(1) as u64,
                });
            }
            None => {
                name.length = 80;
            }
            Some(t) if t.eq_ignore_ascii_case("text") => {
                name.length = 80;
            }
            Some(other) => {
                return Err(bad(format!(
                    "nameField type must be Text or AutoNumber, not '{other}'"
                )))
            }
        }
        let mut o = object_with_system_fields(
            &self.full_name,
            &label,
            &plural,
            prefix.as_str(),
            ObjectKind::Custom,
            true,
            vec![name],
        );
        o.description = self.description.clone();
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tooling_field_json_is_accepted() {
        let spec: CustomFieldSpec = serde_json::from_value(serde_json::json!({
            "label": "External Id", "type": "Text", "length": "64", "externalId": true, "unique": "true"
        }))
        .unwrap();
        let f = spec.to_field("External_Id__c").unwrap();
        assert_eq!(f.length, 64);
        assert!(f.external_id && f.unique && f.custom);
    }

    #[test]
    fn lookup_names_relationships() {
        let spec: CustomFieldSpec = serde_json::from_value(serde_json::json!({
            "type": "Lookup", "referenceTo": "Account", "relationshipName": "Invoices"
        }))
        .unwrap();
        let f = spec.to_field("Account__c").unwrap();
        assert_eq!(f.relationship_name.as_deref(), Some("Account__r"));
        assert_eq!(f.child_relationship_name.as_deref(), Some("Invoices__r"));
    }

    #[test]
    fn bad_specs_are_refused() {
        let text_without_length: CustomFieldSpec =
            serde_json::from_value(serde_json::json!({"type": "Text"})).unwrap();
        assert!(text_without_length.to_field("A__c").is_err());
        let ok: CustomFieldSpec =
            serde_json::from_value(serde_json::json!({"type": "Checkbox"})).unwrap();
        assert!(ok.to_field("Bad Name__c").is_err());
        assert!(ok.to_field("Double__Under__c").is_err());
        assert!(ok.to_field("NoSuffix").is_err());
        let obj = CustomObjectSpec {
            full_name: "Thing".into(),
            ..Default::default()
        };
        assert!(obj.to_object(KeyPrefix::custom(0)).is_err());
    }

    #[test]
    fn custom_object_gets_system_fields() {
        let obj = CustomObjectSpec {
            full_name: "Invoice__c".into(),
            label: Some("Invoice".into()),
            ..Default::default()
        };
        let o = obj.to_object(KeyPrefix::custom(0)).unwrap();
        for f in [
            "Id",
            "Name",
            "OwnerId",
            "IsDeleted",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ] {
            assert!(o.field(f).is_some(), "{f}");
        }
        assert_eq!(o.label_plural, "Invoices");
    }
}

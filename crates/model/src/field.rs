//! Field types and field definitions: what a field stores, how it is described, who may write it.

use crate::KeyPrefix;

/// The data type of a field, in Salesforce's describe vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// The record id (`id`).
    Id,
    /// A lookup or master-detail reference to another record (`reference`).
    Reference,
    /// Single-line text (`string`).
    String,
    /// Text area up to 255 characters (`textarea`).
    TextArea,
    /// Long text area (`textarea`, plain, up to 131,072 characters).
    LongTextArea,
    /// Email address (`email`).
    Email,
    /// Phone number (`phone`).
    Phone,
    /// URL (`url`).
    Url,
    /// Single-select picklist (`picklist`).
    Picklist,
    /// Multi-select picklist, values joined by `;` (`multipicklist`).
    MultiPicklist,
    /// Checkbox (`boolean`).
    Boolean,
    /// Whole number (`int`).
    Int,
    /// Decimal number (`double`).
    Double,
    /// Money amount (`currency`).
    Currency,
    /// Percentage (`percent`).
    Percent,
    /// Calendar date (`date`).
    Date,
    /// Instant in UTC (`datetime`).
    DateTime,
    /// Time of day (`time`).
    Time,
}

/// How a column stores a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// 64-bit integer: ids and references (the sequence number), booleans (0/1), ints,
    /// date-times (milliseconds since the Unix epoch, UTC), times (milliseconds since midnight).
    Integer,
    /// Double-precision float: double, currency, percent.
    Real,
    /// Text: strings, picklists, dates (`YYYY-MM-DD`).
    Text,
}

impl FieldType {
    /// The describe `type` value.
    pub fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::TextArea | FieldType::LongTextArea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist => "picklist",
            FieldType::MultiPicklist => "multipicklist",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Time => "time",
        }
    }

    /// The describe `soapType` value.
    pub fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double | FieldType::Currency | FieldType::Percent => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            FieldType::Time => "xsd:time",
            _ => "xsd:string",
        }
    }

    /// How values of this type are stored.
    pub fn storage(self) -> Storage {
        match self {
            FieldType::Id | FieldType::Reference | FieldType::Boolean | FieldType::Int => {
                Storage::Integer
            }
            FieldType::DateTime | FieldType::Time => Storage::Integer,
            FieldType::Double | FieldType::Currency | FieldType::Percent => Storage::Real,
            _ => Storage::Text,
        }
    }

    /// Text-like types compare case-insensitively and accept LIKE.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::TextArea
                | FieldType::LongTextArea
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
                | FieldType::Picklist
                | FieldType::MultiPicklist
        )
    }

    /// Numeric types accept SUM and AVG.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent
        )
    }

    /// Types that may not be used in WHERE, ORDER BY or GROUP BY (long text areas).
    pub fn is_filterable(self) -> bool {
        !matches!(self, FieldType::LongTextArea)
    }

    /// The Metadata/Tooling API type name used to create a custom field of this type.
    pub fn metadata_name(self) -> &'static str {
        match self {
            FieldType::Id => "Id",
            FieldType::Reference => "Lookup",
            FieldType::String => "Text",
            FieldType::TextArea => "TextArea",
            FieldType::LongTextArea => "LongTextArea",
            FieldType::Email => "Email",
            FieldType::Phone => "Phone",
            FieldType::Url => "Url",
            FieldType::Picklist => "Picklist",
            FieldType::MultiPicklist => "MultiselectPicklist",
            FieldType::Boolean => "Checkbox",
            FieldType::Int | FieldType::Double => "Number",
            FieldType::Currency => "Currency",
            FieldType::Percent => "Percent",
            FieldType::Date => "Date",
            FieldType::DateTime => "DateTime",
            FieldType::Time => "Time",
        }
    }
}

/// Who sets a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Callers may set it on create and update.
    ReadWrite,
    /// Callers may set it on create only.
    CreateOnly,
    /// Set by the system (audit fields, ids); read-only to callers.
    System,
    /// Computed from other fields on every write; read-only to callers.
    Derived,
}

/// How a derived field is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Derived {
    /// `FirstName LastName` (Contact, Lead and User `Name`).
    FullName,
    /// An auto-number such as `00001024` or `INV-{0000}` from the record's sequence.
    AutoNumber {
        /// Display format with one `{0…}` placeholder.
        format: String,
        /// Offset added to the record sequence number.
        start: u64,
    },
    /// True when the source picklist holds one of the listed values (Opportunity.IsClosed).
    PicklistIn {
        /// The field whose value decides.
        source: String,
        /// Values that make the flag true.
        values: Vec<String>,
    },
}

/// What happens to children when a referenced parent is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRule {
    /// Clear the reference (lookups).
    SetNull,
    /// Delete the children with the parent (master-detail).
    Cascade,
    /// Refuse to delete the parent while children exist.
    Restrict,
}

/// One picklist entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PicklistValue {
    /// Stored value.
    pub value: String,
    /// Display label.
    pub label: String,
    /// Selected by default on create.
    pub default: bool,
    /// Offered for new records.
    pub active: bool,
}

/// A default applied on create when the caller omits the field.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultValue {
    /// A boolean default (checkboxes default to false).
    Bool(bool),
    /// A text default.
    Text(String),
    /// A numeric default.
    Number(f64),
    /// The creating user's id (OwnerId).
    CurrentUser,
}

/// A field of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    /// API name with canonical casing (`AccountId`, `External_Id__c`).
    pub name: String,
    /// Display label.
    pub label: String,
    /// Data type.
    pub ty: FieldType,
    /// True for custom (`__c`) fields.
    pub custom: bool,
    /// A value is required on create (describe `nillable: false`).
    pub required: bool,
    /// Values are unique among live records.
    pub unique: bool,
    /// Usable as an upsert key.
    pub external_id: bool,
    /// Unique/equality checks are case-sensitive.
    pub case_sensitive: bool,
    /// Maximum length for text types.
    pub length: u32,
    /// Total digits for numbers.
    pub precision: u32,
    /// Digits after the decimal point for numbers.
    pub scale: u32,
    /// Picklist entries.
    pub picklist: Vec<PicklistValue>,
    /// Only listed picklist values are accepted.
    pub restricted_picklist: bool,
    /// Default applied on create.
    pub default: Option<DefaultValue>,
    /// Target object of a reference.
    pub reference_to: Option<String>,
    /// Name used in dot paths from this object (`Account`, `Owner`, `Parent__r`).
    pub relationship_name: Option<String>,
    /// Name of the child relationship on the target object (`Contacts`, `Invoices__r`).
    pub child_relationship_name: Option<String>,
    /// What deleting the parent does to this record.
    pub delete_rule: DeleteRule,
    /// True for master-detail references.
    pub master_detail: bool,
    /// Who sets the value.
    pub access: Access,
    /// How a derived value is computed.
    pub derived: Option<Derived>,
    /// The object's name field.
    pub name_field: bool,
    /// Field-level security can hide or lock it (false for ids, audit fields and required fields).
    pub permissionable: bool,
    /// Help text shown next to the field.
    pub inline_help: Option<String>,
    /// Key prefix of the target object, filled in when the schema is built.
    pub reference_prefix: Option<KeyPrefix>,
}

impl FieldDef {
    /// A new read-write, nillable field of `ty` with default sizes for the type.
    pub fn new(name: &str, label: &str, ty: FieldType) -> FieldDef {
        let (length, precision, scale) = match ty {
            FieldType::String | FieldType::Email | FieldType::Url => (255, 0, 0),
            FieldType::Phone => (40, 0, 0),
            FieldType::TextArea => (255, 0, 0),
            FieldType::LongTextArea => (32000, 0, 0),
            FieldType::Picklist => (255, 0, 0),
            FieldType::MultiPicklist => (4099, 0, 0),
            FieldType::Id | FieldType::Reference => (18, 0, 0),
            FieldType::Int => (0, 9, 0),
            FieldType::Double => (0, 18, 0),
            FieldType::Currency => (0, 18, 2),
            FieldType::Percent => (0, 3, 0),
            _ => (0, 0, 0),
        };
        FieldDef {
            name: name.to_string(),
            label: label.to_string(),
            ty,
            custom: name.ends_with("__c"),
            required: false,
            unique: false,
            external_id: false,
            case_sensitive: false,
            length,
            precision,
            scale,
            picklist: Vec::new(),
            restricted_picklist: false,
            default: if ty == FieldType::Boolean {
                Some(DefaultValue::Bool(false))
            } else {
                None
            },
            reference_to: None,
            relationship_name: None,
            child_relationship_name: None,
            delete_rule: DeleteRule::SetNull,
            master_detail: false,
            access: Access::ReadWrite,
            derived: None,
            name_field: false,
            permissionable: true,
            inline_help: None,
            reference_prefix: None,
        }
    }

    /// Callers may set this field on create.
    pub fn createable(&self) -> bool {
        matches!(self.access, Access::ReadWrite | Access::CreateOnly)
    }

    /// Callers may set this field on update.
    pub fn updateable(&self) -> bool {
        matches!(self.access, Access::ReadWrite)
    }

    /// Describe `nillable`: null is a legal stored value.
    pub fn nillable(&self) -> bool {
        !self.required && self.ty != FieldType::Boolean && self.ty != FieldType::Id
    }

    /// The field gets an index: ids, references, unique and external-id fields, the name field.
    pub fn indexed(&self) -> bool {
        self.ty == FieldType::Reference || self.unique || self.external_id || self.name_field
    }

    /// Describe `idLookup`: usable as an upsert key.
    pub fn id_lookup(&self) -> bool {
        self.ty == FieldType::Id || self.external_id
    }

    /// SQL column name (identifiers are `[A-Za-z0-9_]`, so the API name is safe to quote).
    pub fn column(&self) -> &str {
        &self.name
    }
}

/// Checks an API name: a letter, then letters, digits and single underscores, no trailing `_`.
pub fn is_valid_api_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 80 || !b[0].is_ascii_alphabetic() {
        return false;
    }
    b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Checks a custom name's stem (before `__c`): letters, digits, single underscores, starts with a
/// letter, does not end with `_`, no `__` inside.
pub fn is_valid_custom_stem(stem: &str) -> bool {
    is_valid_api_name(stem) && !stem.ends_with('_') && !stem.contains("__") && stem.len() <= 40
}

//! Conflux's shared vocabulary: record ids, org metadata (objects, fields, types), record values and
//! the Salesforce error-code table. No I/O and no wire formats beyond value formatting.

mod error;
mod field;
mod id;
mod schema;
pub mod spec;
pub mod standard;
pub mod value;
pub mod version;

pub use error::{ApiError, ApiResult, ErrorCode};
pub use field::{
    is_valid_api_name, is_valid_custom_stem, Access, DefaultValue, DeleteRule, Derived, FieldDef,
    FieldType, PicklistValue, Storage,
};
pub use id::{Id, KeyPrefix, MalformedId, OrgMarker, MAX_SEQ};
pub use schema::{writable, Capabilities, ChildRelationship, ObjectDef, ObjectKind, Schema};
pub use value::Value;
pub use version::ApiVersion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_schema_builds_with_relationships() {
        let s = Schema::build(standard::standard_objects(), 1).unwrap();
        let account = s.object("account").unwrap();
        assert_eq!(account.name, "Account");
        assert!(account.child_relationship("Contacts").is_some());
        assert!(account.child_relationship("opportunities").is_some());
        let contact = s.object("Contact").unwrap();
        assert_eq!(contact.relationship("account").unwrap().name, "AccountId");
        assert_eq!(
            contact
                .relationship("Owner")
                .unwrap()
                .reference_to
                .as_deref(),
            Some("User")
        );
        assert_eq!(
            s.object_by_prefix(KeyPrefix::parse("003").unwrap())
                .unwrap()
                .name,
            "Contact"
        );
        assert_eq!(s.next_custom_prefix().as_str(), "a00");
    }
}

//! Objects and the schema: an immutable snapshot of the org's metadata, swapped whole on change.

use std::collections::HashMap;
use std::sync::Arc;

use crate::field::{Access, FieldDef, FieldType};
use crate::{ApiError, ErrorCode, KeyPrefix};

/// What kind of object this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A standard object shipped with the org.
    Standard,
    /// A custom object (`__c`).
    Custom,
    /// A platform event (`__e`); published, never stored as records.
    PlatformEvent,
}

/// What callers may do with an object at all (before permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Records can be created.
    pub createable: bool,
    /// Records can be updated.
    pub updateable: bool,
    /// Records can be deleted.
    pub deletable: bool,
    /// Deleted records can be restored.
    pub undeletable: bool,
    /// Records can be queried.
    pub queryable: bool,
}

impl Capabilities {
    /// Everything allowed.
    pub const ALL: Capabilities = Capabilities {
        createable: true,
        updateable: true,
        deletable: true,
        undeletable: true,
        queryable: true,
    };
    /// Query only.
    pub const READ_ONLY: Capabilities = Capabilities {
        createable: false,
        updateable: false,
        deletable: false,
        undeletable: false,
        queryable: true,
    };
}

/// A child relationship: records of `child_object` point at this object through `field`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRelationship {
    /// The child object's API name.
    pub child_object: String,
    /// The reference field on the child.
    pub field: String,
    /// Name used in subqueries (`Contacts`); `None` for unnamed relationships such as `CreatedById`.
    pub relationship_name: Option<String>,
    /// Deleting the parent deletes the children.
    pub cascade_delete: bool,
    /// Deleting the parent is refused while children exist.
    pub restricted_delete: bool,
}

/// An object (sObject type) and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDef {
    /// API name with canonical casing.
    pub name: String,
    /// Singular label.
    pub label: String,
    /// Plural label.
    pub label_plural: String,
    /// Id key prefix.
    pub key_prefix: KeyPrefix,
    /// Standard, custom or platform event.
    pub kind: ObjectKind,
    /// What callers may do with it.
    pub caps: Capabilities,
    /// Fields in describe order.
    pub fields: Vec<FieldDef>,
    /// Child relationships (computed when the schema is built).
    pub children: Vec<ChildRelationship>,
    /// Description shown in describe.
    pub description: Option<String>,
    /// Platform events: published only when the publishing transaction commits
    /// (`PublishAfterCommit`) rather than at once (`PublishImmediately`, the default).
    pub publish_after_commit: bool,
    /// Selected for Change Data Capture: its record changes publish change events.
    pub change_events: bool,
    by_name: HashMap<String, usize>,
    by_relationship: HashMap<String, usize>,
}

impl ObjectDef {
    /// A new object with the given fields.
    pub fn new(
        name: &str,
        label: &str,
        label_plural: &str,
        key_prefix: KeyPrefix,
        kind: ObjectKind,
        fields: Vec<FieldDef>,
    ) -> ObjectDef {
        let mut o = ObjectDef {
            name: name.to_string(),
            label: label.to_string(),
            label_plural: label_plural.to_string(),
            key_prefix,
            kind,
            caps: Capabilities::ALL,
            fields,
            children: Vec::new(),
            description: None,
            publish_after_commit: false,
            change_events: false,
            by_name: HashMap::new(),
            by_relationship: HashMap::new(),
        };
        o.reindex();
        o
    }

    /// The name of its change events: `AccountChangeEvent`, `Invoice__ChangeEvent` for
    /// `Invoice__c`.
    pub fn change_event_name(&self) -> String {
        match self.name.strip_suffix("__c") {
            Some(base) => format!("{base}__ChangeEvent"),
            None => format!("{}ChangeEvent", self.name),
        }
    }

    /// Whether its records may be selected for change events (stored, non-event objects).
    pub fn may_have_change_events(&self) -> bool {
        self.kind != ObjectKind::PlatformEvent
    }

    fn reindex(&mut self) {
        self.by_name = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
        self.by_relationship = self
            .fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.relationship_name
                    .as_ref()
                    .map(|r| (r.to_ascii_lowercase(), i))
            })
            .collect();
    }

    /// True for custom objects.
    pub fn custom(&self) -> bool {
        self.kind == ObjectKind::Custom
    }

    /// The SQL table holding this object's records.
    pub fn table(&self) -> String {
        format!("sobj_{}", self.name)
    }

    /// A field by name, case-insensitively.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.field_index(name).map(|i| &self.fields[i])
    }

    /// A field's position by name, case-insensitively.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// The reference field whose relationship name is `rel` (`Account` → `AccountId`).
    pub fn relationship(&self, rel: &str) -> Option<&FieldDef> {
        self.by_relationship
            .get(&rel.to_ascii_lowercase())
            .map(|&i| &self.fields[i])
    }

    /// A child relationship by its name, case-insensitively.
    pub fn child_relationship(&self, name: &str) -> Option<&ChildRelationship> {
        self.children.iter().find(|c| {
            c.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }

    /// The object's name field (`Name`, `CaseNumber`, `OrderNumber`).
    pub fn name_field(&self) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name_field)
    }

    /// True when records have an owner.
    pub fn has_owner(&self) -> bool {
        self.by_name.contains_key("ownerid")
    }

    /// Adds a field (used when building and when a custom field is created).
    pub fn push_field(&mut self, f: FieldDef) -> Result<(), ApiError> {
        if self.field(&f.name).is_some() {
            return Err(ApiError::new(
                ErrorCode::DuplicateDeveloperName,
                format!(
                    "There is already a field named {} on {}.",
                    f.name, self.name
                ),
            ));
        }
        if let Some(rel) = &f.relationship_name {
            if self.relationship(rel).is_some() {
                return Err(ApiError::new(
                    ErrorCode::DuplicateDeveloperName,
                    format!(
                        "There is already a relationship named {rel} on {}.",
                        self.name
                    ),
                ));
            }
        }
        self.fields.push(f);
        self.reindex();
        Ok(())
    }
}

/// The org's metadata at one moment. Cheap to share (`Arc`), never mutated in place.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    objects: Vec<Arc<ObjectDef>>,
    by_name: HashMap<String, usize>,
    by_prefix: HashMap<KeyPrefix, usize>,
    /// Bumped on every change; lets caches and `If-Modified-Since` notice changes.
    pub generation: u64,
}

impl Schema {
    /// Builds a schema: checks references and computes child relationships.
    pub fn build(mut objects: Vec<ObjectDef>, generation: u64) -> Result<Schema, ApiError> {
        let names: HashMap<String, usize> = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.to_ascii_lowercase(), i))
            .collect();
        if names.len() != objects.len() {
            return Err(ApiError::new(
                ErrorCode::DuplicateDeveloperName,
                "duplicate object name",
            ));
        }
        let mut children: Vec<Vec<ChildRelationship>> = vec![Vec::new(); objects.len()];
        let prefixes: Vec<KeyPrefix> = objects.iter().map(|o| o.key_prefix).collect();
        let canonical: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
        for o in objects.iter_mut() {
            for f in o.fields.iter_mut() {
                if f.ty != FieldType::Reference {
                    continue;
                }
                let target = f.reference_to.clone().unwrap_or_default();
                let Some(&ti) = names.get(&target.to_ascii_lowercase()) else {
                    return Err(ApiError::new(
                        ErrorCode::InvalidCrossReferenceKey,
                        format!(
                            "Field {}.{} refers to unknown object {target}",
                            o.name, f.name
                        ),
                    ));
                };
                f.reference_to = Some(canonical[ti].clone());
                f.reference_prefix = Some(prefixes[ti]);
                children[ti].push(ChildRelationship {
                    child_object: o.name.clone(),
                    field: f.name.clone(),
                    relationship_name: f.child_relationship_name.clone(),
                    cascade_delete: f.delete_rule == crate::DeleteRule::Cascade,
                    restricted_delete: f.delete_rule == crate::DeleteRule::Restrict,
                });
            }
        }
        for (o, ch) in objects.iter_mut().zip(children) {
            o.children = ch;
        }
        let by_prefix = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.key_prefix, i))
            .collect();
        Ok(Schema {
            objects: objects.into_iter().map(Arc::new).collect(),
            by_name: names,
            by_prefix,
            generation,
        })
    }

    /// An object by API name, case-insensitively.
    pub fn object(&self, name: &str) -> Option<&Arc<ObjectDef>> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.objects[i])
    }

    /// The object whose change events are named `entity` (`AccountChangeEvent`), spelled
    /// exactly.
    pub fn object_of_change_event(&self, entity: &str) -> Option<&Arc<ObjectDef>> {
        let name = match entity.strip_suffix("__ChangeEvent") {
            Some(base) => format!("{base}__c"),
            None => entity.strip_suffix("ChangeEvent")?.to_string(),
        };
        self.object(&name)
            .filter(|o| o.may_have_change_events() && o.change_event_name() == entity)
    }

    /// The object whose ids start with `prefix`.
    pub fn object_by_prefix(&self, prefix: KeyPrefix) -> Option<&Arc<ObjectDef>> {
        self.by_prefix.get(&prefix).map(|&i| &self.objects[i])
    }

    /// All objects, in definition order.
    pub fn objects(&self) -> impl Iterator<Item = &Arc<ObjectDef>> {
        self.objects.iter()
    }

    /// The object definitions, cloned, for building a changed schema.
    pub fn to_defs(&self) -> Vec<ObjectDef> {
        self.objects.iter().map(|o| (**o).clone()).collect()
    }

    /// The next free custom-object key prefix.
    pub fn next_custom_prefix(&self) -> KeyPrefix {
        (0..)
            .map(KeyPrefix::custom)
            .find(|p| !self.by_prefix.contains_key(p))
            .expect("prefix space is large")
    }

    /// The next free platform-event key prefix.
    pub fn next_event_prefix(&self) -> KeyPrefix {
        (0..)
            .map(KeyPrefix::event)
            .find(|p| !self.by_prefix.contains_key(p))
            .expect("prefix space is large")
    }
}

/// Whether the caller may write the field at all (before field-level security).
pub fn writable(f: &FieldDef, creating: bool) -> bool {
    match f.access {
        Access::ReadWrite => true,
        Access::CreateOnly => creating,
        Access::System | Access::Derived => false,
    }
}

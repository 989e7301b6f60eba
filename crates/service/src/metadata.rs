//! Metadata changes: custom objects and fields through the Tooling API and from declarative files,
//! taking effect immediately (they are DDL in the store; no restart).
//!
//! File format (YAML, the Tooling API's Metadata vocabulary): `<dir>/objects/<ApiName>.yaml`, one
//! file per object. A custom object file holds the CustomObject metadata plus a `fields:` list of
//! CustomField metadata (each with `fullName: Field__c`); a standard object file (e.g.
//! `Account.yaml`) holds only `fields:`. Connected apps live in `<dir>/connectedApps/<name>.yaml`.
//! Change Data Capture selections live in `<dir>/platformEventChannelMembers/<name>.yaml`
//! (`eventChannel: ChangeEvents`, `selectedEntity: AccountChangeEvent`).
//! Applying is idempotent: existing objects and fields are left as they are.

use std::path::Path;

use model::spec::{split_field_full_name, CustomFieldSpec, CustomObjectSpec};
use model::{ApiError, ApiResult, ErrorCode, FieldType, Id, KeyPrefix, ObjectKind};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::auth::Principal;
use crate::Org;

fn spec_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::JsonParserError, format!("Invalid Metadata: {e}"))
}

fn require_customize(p: &Principal) -> ApiResult<()> {
    if p.perms.customize_application {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InsufficientAccess,
            "insufficient access rights: Customize Application is required",
        ))
    }
}

/// A connected app declared in a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectedAppFile {
    /// Display name (defaults to the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// Consumer key.
    pub client_id: String,
    /// Consumer secret (plain; hashed when stored).
    pub client_secret: String,
    /// PEM certificate for the JWT bearer flow, inline.
    #[serde(default)]
    pub certificate: Option<String>,
    /// PEM certificate for the JWT bearer flow, as a path relative to the file.
    #[serde(default)]
    pub certificate_file: Option<String>,
    /// Username client-credentials tokens act as.
    #[serde(default)]
    pub run_as: Option<String>,
    /// OAuth callback URLs.
    #[serde(default)]
    pub callback_urls: Vec<String>,
    /// Scopes (`api refresh_token`).
    #[serde(default)]
    pub scopes: Option<String>,
}

/// A change event selection declared in a file
/// (`<dir>/platformEventChannelMembers/<Name>.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelMemberFile {
    /// `ChangeEvents`.
    pub event_channel: String,
    /// `AccountChangeEvent`, `Invoice__ChangeEvent`.
    pub selected_entity: String,
}

/// Key prefix of `PlatformEventChannelMember` ids.
pub const MEMBER_PREFIX: KeyPrefix = KeyPrefix(*b"0v8");

/// What applying a metadata folder did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Objects created.
    pub objects: Vec<String>,
    /// Fields created (`Object.Field`).
    pub fields: Vec<String>,
    /// Connected apps created or updated.
    pub apps: Vec<String>,
    /// Items left unchanged because they already exist with another definition.
    pub skipped: Vec<String>,
    /// Entities selected for change events (`AccountChangeEvent`).
    pub members: Vec<String>,
}

impl Org {
    /// When the org's metadata last changed (ms since the epoch): the first start, or the last
    /// custom object or field created since.
    pub fn metadata_changed_ms(&self) -> i64 {
        let read = |k: &str| {
            self.store
                .read(|tx| tx.setting(k))
                .ok()
                .flatten()
                .and_then(|v| v.parse::<i64>().ok())
        };
        read(METADATA_CHANGED)
            .or_else(|| read(crate::bootstrap::BOOTSTRAPPED))
            .unwrap_or(0)
    }

    /// Creates a custom object (`POST …/tooling/sobjects/CustomObject`). Returns its `01I…` id.
    pub async fn create_custom_object(
        &self,
        p: &Principal,
        full_name: &str,
        metadata: &Json,
    ) -> ApiResult<Id> {
        require_customize(p)?;
        let mut spec: CustomObjectSpec =
            serde_json::from_value(metadata.clone()).map_err(spec_error)?;
        spec.full_name = full_name.trim().to_string();
        let fields = std::mem::take(&mut spec.fields);
        self.apply_object(spec, fields).await
    }

    async fn apply_object(
        &self,
        spec: CustomObjectSpec,
        fields: Vec<CustomFieldSpec>,
    ) -> ApiResult<Id> {
        spec.kind()?;
        let name = spec.full_name.clone();
        let json = serde_json::to_string(&spec).map_err(spec_error)?;
        let marker = self.store.marker();
        let generation = self
            .store
            .write(move |tx| {
                let schema = tx.schema().clone();
                if schema.object(&spec.full_name).is_some() {
                    return Err(ApiError::new(
                        ErrorCode::DuplicateDeveloperName,
                        format!("There is already an object named {}.", spec.full_name),
                    ));
                }
                let def = spec.to_object(schema.next_custom_prefix())?;
                tx.create_object(&def, &json)?;
                tx.set_setting(METADATA_CHANGED, &model::value::now_millis().to_string())?;
                for f in &fields {
                    add_field_tx(tx, &spec.full_name, f)?;
                }
                Ok(tx.schema().generation)
            })
            .await?;
        self.invalidate_auth();
        tracing::info!(object = %name, "custom object created");
        Ok(Id::new(KeyPrefix(*b"01I"), marker, generation))
    }

    /// Creates a custom field (`POST …/tooling/sobjects/CustomField`, `FullName` = `Object.Field__c`).
    /// Returns its `00N…` id.
    pub async fn create_custom_field(
        &self,
        p: &Principal,
        full_name: &str,
        metadata: &Json,
    ) -> ApiResult<Id> {
        require_customize(p)?;
        let (object, field) = split_field_full_name(full_name.trim())?;
        let mut spec: CustomFieldSpec =
            serde_json::from_value(metadata.clone()).map_err(spec_error)?;
        spec.full_name = field.to_string();
        let object = object.to_string();
        let marker = self.store.marker();
        let generation = self
            .store
            .write(move |tx| {
                add_field_tx(tx, &object, &spec)?;
                Ok(tx.schema().generation)
            })
            .await?;
        self.invalidate_auth();
        Ok(Id::new(KeyPrefix(*b"00N"), marker, generation))
    }

    /// Applies a metadata folder (see the module docs). Idempotent.
    pub async fn apply_metadata_dir(&self, dir: &Path) -> Result<Applied, String> {
        let mut applied = Applied::default();
        let objects_dir = dir.join("objects");
        if objects_dir.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&objects_dir)
                .map_err(|e| format!("{}: {e}", objects_dir.display()))?
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            // Objects first (in name order), so lookups between them resolve.
            let mut pending_fields = Vec::new();
            for path in entries
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let mut spec: CustomObjectSpec =
                    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                spec.full_name = stem.clone();
                let fields = std::mem::take(&mut spec.fields);
                let exists = self.schema().object(&stem).is_some();
                if !exists {
                    if !stem.ends_with("__c") && !stem.ends_with("__e") {
                        return Err(format!("{}: {stem} is not a standard object; custom object files must be named Name__c.yaml (platform events Name__e.yaml)", path.display()));
                    }
                    self.apply_object(spec, Vec::new())
                        .await
                        .map_err(|e| format!("{}: {}", path.display(), e.message))?;
                    applied.objects.push(stem.clone());
                }
                pending_fields.push((path.clone(), stem, fields));
            }
            for (path, object, fields) in pending_fields {
                for f in fields {
                    let name = f
                        .full_name
                        .rsplit('.')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    if name.is_empty() {
                        return Err(format!("{}: a field has no fullName", path.display()));
                    }
                    let existing = self
                        .schema()
                        .object(&object)
                        .and_then(|o| o.field(&name).cloned());
                    if existing.is_some() {
                        continue;
                    }
                    let mut spec = f.clone();
                    spec.full_name = name.clone();
                    let object2 = object.clone();
                    self.store
                        .write(move |tx| add_field_tx(tx, &object2, &spec))
                        .await
                        .map_err(|e| format!("{}: field {name}: {}", path.display(), e.message))?;
                    applied.fields.push(format!("{object}.{name}"));
                }
            }
        }
        let apps_dir = dir.join("connectedApps");
        if apps_dir.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&apps_dir)
                .map_err(|e| format!("{}: {e}", apps_dir.display()))?
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            for path in entries
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let app: ConnectedAppFile =
                    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("app")
                    .to_string();
                let cert = match (&app.certificate, &app.certificate_file) {
                    (Some(c), _) => Some(c.clone()),
                    (None, Some(f)) => {
                        let p = path.parent().unwrap_or(Path::new(".")).join(f);
                        Some(std::fs::read_to_string(&p).map_err(|e| {
                            format!("{}: certificateFile {}: {e}", path.display(), p.display())
                        })?)
                    }
                    (None, None) => None,
                };
                let run_as = match &app.run_as {
                    Some(u) => Some(
                        self.user_by_username(u)
                            .ok()
                            .flatten()
                            .ok_or_else(|| {
                                format!("{}: runAs user {u} does not exist", path.display())
                            })?
                            .seq,
                    ),
                    None => None,
                };
                self.register_app(
                    store::AppRow {
                        client_id: app.client_id.clone(),
                        name: app.name.clone().unwrap_or(stem),
                        secret_hash: String::new(),
                        cert_pem: cert,
                        run_as_user: run_as,
                        callback_urls: app.callback_urls.clone(),
                        scopes: app
                            .scopes
                            .clone()
                            .unwrap_or_else(|| "api refresh_token".into()),
                    },
                    &app.client_secret,
                )
                .await
                .map_err(|e| format!("{}: {}", path.display(), e.message))?;
                applied.apps.push(app.client_id);
            }
        }
        let members_dir = dir.join("platformEventChannelMembers");
        if members_dir.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&members_dir)
                .map_err(|e| format!("{}: {e}", members_dir.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            entries.sort();
            for path in entries {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let m: ChannelMemberFile =
                    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                let o = self
                    .change_event_object(&m.event_channel, &m.selected_entity)
                    .map_err(|e| format!("{}: {}", path.display(), e.message))?;
                if o.change_events {
                    continue;
                }
                let name = o.name.clone();
                self.store
                    .write(move |tx| Ok(tx.set_change_events(&name, true)?))
                    .await
                    .map_err(|e| format!("{}: {}", path.display(), e.message))?;
                applied.members.push(m.selected_entity);
            }
        }
        Ok(applied)
    }

    /// The object whose change events `entity` names, on channel `channel` (only the standard
    /// `ChangeEvents` channel exists here).
    fn change_event_object(
        &self,
        channel: &str,
        entity: &str,
    ) -> ApiResult<std::sync::Arc<model::ObjectDef>> {
        if channel != "ChangeEvents" {
            return Err(ApiError::with_fields(
                ErrorCode::InvalidInput,
                format!("Unknown event channel {channel}: custom channels are not supported, use ChangeEvents"),
                vec!["EventChannel".into()],
            ));
        }
        self.schema()
            .object_of_change_event(entity)
            .cloned()
            .ok_or_else(|| {
                ApiError::with_fields(
                    ErrorCode::InvalidInput,
                    format!("{entity} is not a change event of an object of this org (AccountChangeEvent, Invoice__ChangeEvent for Invoice__c)"),
                    vec!["SelectedEntity".into()],
                )
            })
    }

    /// Selects an object for Change Data Capture (`POST …/tooling/sobjects/PlatformEventChannelMember`
    /// with `eventChannel: ChangeEvents` and `selectedEntity: AccountChangeEvent`). Returns the
    /// member's `0v8…` id (the existing one when already selected).
    pub async fn select_change_events(
        &self,
        p: &Principal,
        channel: &str,
        entity: &str,
    ) -> ApiResult<Id> {
        require_customize(p)?;
        let o = self.change_event_object(channel, entity)?;
        let name = o.name.clone();
        let seq = self
            .store
            .write(move |tx| Ok(tx.set_change_events(&name, true)?))
            .await?;
        tracing::info!(object = %o.name, "selected for change events");
        Ok(Id::new(MEMBER_PREFIX, self.store.marker(), seq))
    }

    /// The change event selections: (member id, selected entity).
    pub fn change_event_members(&self) -> ApiResult<Vec<(Id, String)>> {
        let schema = self.schema();
        let marker = self.store.marker();
        Ok(self
            .store
            .read(|tx| tx.change_event_members())?
            .into_iter()
            .filter_map(|(seq, object)| {
                let o = schema.object(&object)?;
                Some((Id::new(MEMBER_PREFIX, marker, seq), o.change_event_name()))
            })
            .collect())
    }

    /// The change event selection with member id `id`: (member id, selected entity).
    pub fn change_event_member(&self, id: &str) -> ApiResult<(Id, String)> {
        let wanted = Id::parse(id).map_err(|_| ApiError::not_found())?;
        self.change_event_members()?
            .into_iter()
            .find(|(m, _)| *m == wanted)
            .ok_or_else(ApiError::not_found)
    }

    /// Ends a change event selection by its member id (`DELETE …/PlatformEventChannelMember/{id}`).
    pub async fn deselect_change_events(&self, p: &Principal, id: &str) -> ApiResult<()> {
        require_customize(p)?;
        let (_, entity) = self.change_event_member(id)?;
        let o = self.change_event_object("ChangeEvents", &entity)?;
        let name = o.name.clone();
        self.store
            .write(move |tx| Ok(tx.set_change_events(&name, false)?))
            .await?;
        tracing::info!(object = %o.name, "no longer selected for change events");
        Ok(())
    }

    /// Creates or replaces a connected app, hashing its secret.
    pub async fn register_app(&self, mut app: store::AppRow, secret: &str) -> ApiResult<()> {
        let s = secret.to_string();
        app.secret_hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&s))
            .await
            .map_err(|_| ApiError::internal())?;
        self.store.write(move |tx| Ok(tx.upsert_app(&app)?)).await
    }
}

fn add_field_tx(
    tx: &mut dyn store::WriteTx,
    object: &str,
    spec: &CustomFieldSpec,
) -> ApiResult<()> {
    let schema = tx.schema().clone();
    let o = schema.object(object).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidType,
            format!("sObject type '{object}' is not supported."),
        )
    })?;
    let name = spec.full_name.rsplit('.').next().unwrap_or_default();
    let f = spec.to_field(name)?;
    if o.kind == ObjectKind::PlatformEvent
        && !matches!(
            f.ty,
            FieldType::Boolean
                | FieldType::Date
                | FieldType::DateTime
                | FieldType::Double
                | FieldType::Int
                | FieldType::String
                | FieldType::TextArea
                | FieldType::LongTextArea
        )
    {
        return Err(ApiError::new(
            ErrorCode::FieldIntegrityException,
            format!(
                "{}: a platform event field can be a Checkbox, Date, Date/Time, Number, Text or Text Area (Long), not {:?}",
                f.name, f.ty
            ),
        ));
    }
    if o.field(&f.name).is_some() {
        return Err(ApiError::new(
            ErrorCode::DuplicateDeveloperName,
            format!("There is already a field named {} on {}.", f.name, o.name),
        ));
    }
    if let Some(target) = &f.reference_to {
        let t = schema.object(target).ok_or_else(|| {
            ApiError::new(
                ErrorCode::FieldIntegrityException,
                format!("referenceTo: unknown object {target}"),
            )
        })?;
        if t.kind == ObjectKind::PlatformEvent {
            return Err(ApiError::new(
                ErrorCode::FieldIntegrityException,
                "a lookup cannot point at a platform event",
            ));
        }
        if let Some(child) = &f.child_relationship_name {
            if t.child_relationship(child).is_some() {
                return Err(ApiError::new(
                    ErrorCode::DuplicateDeveloperName,
                    format!(
                        "There is already a child relationship named {child} on {}.",
                        t.name
                    ),
                ));
            }
        }
    }
    let mut stored = spec.clone();
    stored.full_name = f.name.clone();
    let json = serde_json::to_string(&stored).map_err(spec_error)?;
    tx.add_field(&o.name, &f, &json)?;
    tx.set_setting(METADATA_CHANGED, &model::value::now_millis().to_string())?;
    Ok(())
}

/// Setting holding when metadata last changed (ms), for describe's `If-Modified-Since`.
pub const METADATA_CHANGED: &str = "metadata_changed_ms";

/// Checks a definition document put at `…/{name}` through the admin API (a flow, a sync job): it
/// is a JSON object (`what` and `shape` name the kind and its fields in the error), and its
/// `name`, when it has one, is the URL's; a missing `name` is filled in from the URL.
pub fn name_definition(
    doc: &mut serde_json::Value,
    name: &str,
    what: &str,
    shape: &str,
) -> ApiResult<()> {
    let serde_json::Value::Object(m) = doc else {
        return Err(ApiError::new(
            ErrorCode::JsonParserError,
            format!("a {what} is a JSON object: {shape}"),
        ));
    };
    match m.get("name") {
        None => {
            m.insert("name".into(), serde_json::Value::from(name));
            Ok(())
        }
        Some(serde_json::Value::String(n)) if n == name => Ok(()),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidInput,
            format!("the body names the {what} {other}, the URL {name}"),
        )),
    }
}

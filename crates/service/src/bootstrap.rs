//! First start: create the org's Organization row, the built-in profiles with their permission
//! sets, the admin user and a connected app, all in one transaction.

use model::standard::{BUSINESS_OBJECTS, PROFILE_ADMIN, PROFILE_READ_ONLY, PROFILE_STANDARD};
use model::value::now_millis;
use model::{ApiError, ApiResult, Id, KeyPrefix, ObjectDef, Schema, Value};
use store::{AppRow, WriteTx};

use crate::auth::{hash_password, random_token};
use crate::Org;

/// What the operator supplied (environment variables); missing values are generated.
#[derive(Debug, Clone, Default)]
pub struct BootstrapConfig {
    /// `CONFLUX_ADMIN_USERNAME`.
    pub admin_username: Option<String>,
    /// `CONFLUX_ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
    /// `CONFLUX_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `CONFLUX_CLIENT_SECRET`.
    pub client_secret: Option<String>,
    /// PEM certificate to register on the connected app for the JWT bearer flow.
    pub client_cert_pem: Option<String>,
    /// The org's name.
    pub org_name: Option<String>,
}

/// The result of [`ensure`].
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    /// True on the very first start.
    pub created: bool,
    /// The admin's username.
    pub admin_username: String,
    /// The admin's password, when it was generated now (print it once).
    pub generated_password: Option<String>,
    /// The connected app's consumer key.
    pub client_id: String,
    /// The consumer secret, when it was generated now (print it once).
    pub generated_secret: Option<String>,
}

/// Setting holding when the org was created (ms since the epoch).
pub const BOOTSTRAPPED: &str = "bootstrapped_at";

fn generated_password() -> String {
    // Letters and digits, always satisfying the default password policy.
    format!("{}{}", random_token(14), rand::random::<u16>() % 90 + 10)
}

/// Creates the org on first start; on later starts reports the existing admin and app.
pub async fn ensure(org: &Org, cfg: BootstrapConfig) -> ApiResult<Bootstrapped> {
    let done = org.store.read(|tx| tx.setting(BOOTSTRAPPED))?;
    if done.is_some() {
        let admin = org.user_info(1)?.ok_or_else(|| {
            ApiError::new(
                model::ErrorCode::UnknownException,
                "the admin user is missing",
            )
        })?;
        let app = org.store.read(|tx| tx.apps())?.into_iter().next();
        return Ok(Bootstrapped {
            created: false,
            admin_username: admin.username.clone(),
            generated_password: None,
            client_id: app.map(|a| a.client_id).unwrap_or_default(),
            generated_secret: None,
        });
    }
    let username = cfg
        .admin_username
        .clone()
        .unwrap_or_else(|| "admin@conflux.local".to_string());
    let (password, generated_password) = match &cfg.admin_password {
        Some(p) => (p.clone(), None),
        None => {
            let p = generated_password();
            (p.clone(), Some(p))
        }
    };
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("3MVG9{}", random_token(80)));
    let (secret, generated_secret) = match &cfg.client_secret {
        Some(s) => (s.clone(), None),
        None => {
            let s = random_token(64);
            (s.clone(), Some(s))
        }
    };
    let (pw, sec) = (password.clone(), secret.clone());
    let (pw_hash, secret_hash) =
        tokio::task::spawn_blocking(move || (hash_password(&pw), hash_password(&sec)))
            .await
            .map_err(|_| ApiError::internal())?;
    let org_name = cfg
        .org_name
        .clone()
        .unwrap_or_else(|| "Conflux".to_string());
    let (un, cid, cert) = (
        username.clone(),
        client_id.clone(),
        cfg.client_cert_pem.clone(),
    );
    org.store
        .write(move |tx| {
            let now = now_millis();
            let schema = tx.schema().clone();
            let marker = tx.marker();
            let admin_id = Id::new(KeyPrefix(*b"005"), marker, 1);
            let b = Builder {
                schema: &schema,
                now,
                admin: admin_id,
            };
            let profile = b.obj("Profile");
            let mut profile_ids = Vec::new();
            for (name, desc) in [
                (
                    PROFILE_ADMIN,
                    "Full access to everything, including metadata and users.",
                ),
                (
                    PROFILE_STANDARD,
                    "Create, read, edit and delete the standard business objects.",
                ),
                (PROFILE_READ_ONLY, "Read the standard business objects."),
            ] {
                let seq = b.insert(
                    tx,
                    &profile,
                    &[
                        ("Name", Value::Text(name.into())),
                        ("UserType", Value::Text("Standard".into())),
                        ("Description", Value::Text(desc.into())),
                    ],
                )?;
                profile_ids.push(Id::new(profile.key_prefix, marker, seq));
            }
            let user = b.obj("User");
            let email = if username_is_email(&un) {
                un.clone()
            } else {
                "admin@example.com".to_string()
            };
            let alias: String = un
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(8)
                .collect();
            let seq = b.insert(
                tx,
                &user,
                &[
                    ("Username", Value::Text(un.clone())),
                    ("FirstName", Value::Text("Conflux".into())),
                    ("LastName", Value::Text("Admin".into())),
                    ("Name", Value::Text("Conflux Admin".into())),
                    ("Email", Value::Text(email)),
                    (
                        "Alias",
                        Value::Text(if alias.is_empty() {
                            "admin".into()
                        } else {
                            alias
                        }),
                    ),
                    ("IsActive", Value::Bool(true)),
                    ("ProfileId", Value::Id(profile_ids[0])),
                    ("TimeZoneSidKey", Value::Text("America/Los_Angeles".into())),
                    ("LocaleSidKey", Value::Text("en_US".into())),
                    ("EmailEncodingKey", Value::Text("UTF-8".into())),
                    ("LanguageLocaleKey", Value::Text("en_US".into())),
                    ("UserType", Value::Text("Standard".into())),
                ],
            )?;
            debug_assert_eq!(seq, 1, "the admin is the first user");
            tx.set_password_hash(seq, &pw_hash)?;
            let ps = b.obj("PermissionSet");
            let op = b.obj("ObjectPermissions");
            let fp = b.obj("FieldPermissions");
            for (k, profile_id) in profile_ids.iter().enumerate() {
                let admin = k == 0;
                let label = ["System Administrator", "Standard User", "Read Only"][k];
                let api_name = [
                    "X00e_SystemAdministrator",
                    "X00e_StandardUser",
                    "X00e_ReadOnly",
                ][k];
                let set = b.insert(
                    tx,
                    &ps,
                    &[
                        ("Name", Value::Text(api_name.into())),
                        ("Label", Value::Text(label.into())),
                        ("IsOwnedByProfile", Value::Bool(true)),
                        ("ProfileId", Value::Id(*profile_id)),
                        ("PermissionsModifyAllData", Value::Bool(admin)),
                        ("PermissionsViewAllData", Value::Bool(admin)),
                        ("PermissionsApiEnabled", Value::Bool(true)),
                        ("PermissionsCustomizeApplication", Value::Bool(admin)),
                        ("PermissionsManageUsers", Value::Bool(admin)),
                    ],
                )?;
                if admin {
                    continue;
                }
                let write = k == 1;
                let set_id = Value::Id(Id::new(ps.key_prefix, marker, set));
                let mut grants: Vec<(&str, bool)> =
                    BUSINESS_OBJECTS.iter().map(|o| (*o, write)).collect();
                grants.extend([("User", false), ("Profile", false)]);
                for (object, edit) in grants {
                    b.insert(
                        tx,
                        &op,
                        &[
                            ("ParentId", set_id.clone()),
                            ("SobjectType", Value::Text(object.into())),
                            ("PermissionsRead", Value::Bool(true)),
                            ("PermissionsCreate", Value::Bool(edit)),
                            ("PermissionsEdit", Value::Bool(edit)),
                            ("PermissionsDelete", Value::Bool(edit)),
                        ],
                    )?;
                    let o = b.obj(object);
                    for f in o.fields.iter().filter(|f| f.permissionable) {
                        b.insert(
                            tx,
                            &fp,
                            &[
                                ("ParentId", set_id.clone()),
                                ("SobjectType", Value::Text(object.into())),
                                ("Field", Value::Text(format!("{object}.{}", f.name))),
                                ("PermissionsRead", Value::Bool(true)),
                                ("PermissionsEdit", Value::Bool(edit && f.updateable())),
                            ],
                        )?;
                    }
                }
            }
            let organization = b.obj("Organization");
            b.insert(
                tx,
                &organization,
                &[
                    ("Name", Value::Text(org_name)),
                    ("IsSandbox", Value::Bool(false)),
                    ("OrganizationType", Value::Text("Enterprise Edition".into())),
                    ("InstanceName", Value::Text("CFX1".into())),
                    ("DefaultLocaleSidKey", Value::Text("en_US".into())),
                    ("TimeZoneSidKey", Value::Text("America/Los_Angeles".into())),
                    ("LanguageLocaleKey", Value::Text("en_US".into())),
                ],
            )?;
            tx.upsert_app(&AppRow {
                client_id: cid.clone(),
                name: "Conflux".into(),
                secret_hash,
                cert_pem: cert,
                run_as_user: Some(1),
                callback_urls: vec!["http://localhost:1717/OauthRedirect".into()],
                scopes: "api web refresh_token".into(),
            })?;
            tx.set_setting(BOOTSTRAPPED, &now.to_string())?;
            Ok(())
        })
        .await?;
    org.invalidate_auth();
    Ok(Bootstrapped {
        created: true,
        admin_username: username,
        generated_password,
        client_id,
        generated_secret,
    })
}

fn username_is_email(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
}

/// Inserts setup rows directly (bypassing object capabilities), with audit fields.
struct Builder<'a> {
    schema: &'a Schema,
    now: i64,
    admin: Id,
}

impl Builder<'_> {
    fn obj(&self, name: &str) -> std::sync::Arc<ObjectDef> {
        self.schema.object(name).expect("standard object").clone()
    }

    fn insert(
        &self,
        tx: &mut dyn WriteTx,
        o: &ObjectDef,
        values: &[(&str, Value)],
    ) -> ApiResult<u64> {
        let mut out: Vec<(usize, Value)> = values
            .iter()
            .map(|(n, v)| (o.field_index(n).expect("standard field"), v.clone()))
            .collect();
        for (n, v) in [
            ("CreatedDate", Value::DateTime(self.now)),
            ("LastModifiedDate", Value::DateTime(self.now)),
            ("SystemModstamp", Value::DateTime(self.now)),
            ("CreatedById", Value::Id(self.admin)),
            ("LastModifiedById", Value::Id(self.admin)),
            ("OwnerId", Value::Id(self.admin)),
        ] {
            if let Some(i) = o.field_index(n) {
                out.push((i, v));
            }
        }
        Ok(tx.insert(o, &out)?)
    }
}

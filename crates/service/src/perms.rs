//! Permissions: object CRUD and field-level security, computed from the records of the standard
//! setup objects (Profile, PermissionSet, PermissionSetAssignment, ObjectPermissions,
//! FieldPermissions) exactly as an admin manages them through the API.
//!
//! A user's effective permissions are the union of the permission set owned by their profile and
//! every permission set assigned to them. `PermissionsModifyAllData` grants everything, including
//! every field. Fields that are not permissionable (ids, audit fields, required fields) follow their
//! object's read permission. Record-level sharing is not modelled: whoever can read an object can
//! read all of its records.

use std::collections::HashMap;
use std::sync::Arc;

use model::{ApiResult, FieldDef, ObjectDef, Value};
use store::ReadTx;

use crate::users::UserInfo;
use crate::Org;

/// Object-level permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectPerms {
    /// Read records.
    pub read: bool,
    /// Create records.
    pub create: bool,
    /// Edit records.
    pub edit: bool,
    /// Delete records.
    pub delete: bool,
    /// Read all records regardless of sharing.
    pub view_all: bool,
    /// Edit and delete all records regardless of sharing.
    pub modify_all: bool,
}

/// A user's effective permissions.
#[derive(Debug, Clone, Default)]
pub struct Perms {
    /// Modify All Data: everything.
    pub modify_all_data: bool,
    /// View All Data: read every object.
    pub view_all_data: bool,
    /// May use the API.
    pub api_enabled: bool,
    /// May change metadata (Tooling API).
    pub customize_application: bool,
    /// May manage users and permissions.
    pub manage_users: bool,
    objects: HashMap<String, ObjectPerms>,
    fields: HashMap<String, (bool, bool)>,
}

impl Perms {
    /// Everything allowed (used for the system itself).
    pub fn all() -> Perms {
        Perms {
            modify_all_data: true,
            view_all_data: true,
            api_enabled: true,
            customize_application: true,
            manage_users: true,
            ..Perms::default()
        }
    }

    /// Object permissions for `o`.
    pub fn object(&self, o: &ObjectDef) -> ObjectPerms {
        if self.modify_all_data {
            return ObjectPerms {
                read: true,
                create: true,
                edit: true,
                delete: true,
                view_all: true,
                modify_all: true,
            };
        }
        let mut p = self
            .objects
            .get(&o.name.to_ascii_lowercase())
            .copied()
            .unwrap_or_default();
        if self.view_all_data {
            p.read = true;
            p.view_all = true;
        }
        if is_auth_object(o) {
            // Users, profiles and permission records decide what everyone may do: changing them
            // takes Manage Users, whatever object permissions say (else "edit User" would let a
            // user move themselves to the System Administrator profile).
            p.create = self.manage_users;
            p.edit = self.manage_users;
            p.delete = self.manage_users;
            p.modify_all = self.manage_users;
            p.read |= self.manage_users;
        }
        p
    }

    /// May use the API at all ("API Enabled"; Modify All Data implies it so that an admin cannot
    /// lock everyone out of the API).
    pub fn may_use_api(&self) -> bool {
        self.api_enabled || self.modify_all_data
    }

    /// May read field `f` of `o`.
    pub fn field_readable(&self, o: &ObjectDef, f: &FieldDef) -> bool {
        if !self.object(o).read {
            return false;
        }
        if self.modify_all_data || !f.permissionable || self.manages(o) {
            return true;
        }
        self.fields.get(&field_key(o, f)).is_some_and(|(r, _)| *r)
    }

    /// Manage Users gives full control of users, profiles and permission records.
    fn manages(&self, o: &ObjectDef) -> bool {
        self.manage_users && is_auth_object(o)
    }

    /// May write field `f` of `o` (object edit/create is checked separately).
    pub fn field_editable(&self, o: &ObjectDef, f: &FieldDef) -> bool {
        if self.modify_all_data || !f.permissionable || self.manages(o) {
            return true;
        }
        self.fields.get(&field_key(o, f)).is_some_and(|(_, e)| *e)
    }
}

fn is_auth_object(o: &ObjectDef) -> bool {
    AUTH_OBJECTS.iter().any(|n| o.name.eq_ignore_ascii_case(n))
}

fn field_key(o: &ObjectDef, f: &FieldDef) -> String {
    format!("{}.{}", o.name, f.name).to_ascii_lowercase()
}

fn bool_at(values: &[Value], i: usize) -> bool {
    matches!(values.get(i), Some(Value::Bool(true)))
}

/// Reads the effective permissions of `user` from the setup objects.
pub fn load_perms(tx: &dyn ReadTx, user: &UserInfo) -> ApiResult<Perms> {
    let schema = tx.schema().clone();
    let marker = tx.marker();
    let ps = schema.object("PermissionSet").expect("standard").clone();
    let psa = schema
        .object("PermissionSetAssignment")
        .expect("standard")
        .clone();
    let op = schema
        .object("ObjectPermissions")
        .expect("standard")
        .clone();
    let fp = schema.object("FieldPermissions").expect("standard").clone();
    let idx = |o: &ObjectDef, n: &str| o.field_index(n).expect("standard field");

    let mut sets: Vec<u64> = Vec::new();
    if let Some(profile) = user.profile_seq {
        let profile_id = model::Id::new(
            schema.object("Profile").expect("standard").key_prefix,
            marker,
            profile,
        );
        sets.extend(tx.find_by_field(
            &ps,
            idx(&ps, "ProfileId"),
            &Value::Id(profile_id),
            false,
            10,
        )?);
    }
    let assignments = tx.find_by_field(
        &psa,
        idx(&psa, "AssigneeId"),
        &Value::Id(user.id),
        false,
        1000,
    )?;
    let ps_id_pos = idx(&psa, "PermissionSetId");
    for a in assignments {
        if let Some(row) = tx.get(&psa, a, &[ps_id_pos])? {
            if let Value::Id(id) = &row.values[0] {
                if let Some(s) = id.seq_in(marker) {
                    sets.push(s);
                }
            }
        }
    }
    sets.sort_unstable();
    sets.dedup();

    let mut perms = Perms::default();
    let sys = [
        "PermissionsModifyAllData",
        "PermissionsViewAllData",
        "PermissionsApiEnabled",
        "PermissionsCustomizeApplication",
        "PermissionsManageUsers",
    ];
    let sys_pos: Vec<usize> = sys.iter().map(|n| idx(&ps, n)).collect();
    let op_fields = [
        "SobjectType",
        "PermissionsRead",
        "PermissionsCreate",
        "PermissionsEdit",
        "PermissionsDelete",
        "PermissionsViewAllRecords",
        "PermissionsModifyAllRecords",
    ];
    let op_pos: Vec<usize> = op_fields.iter().map(|n| idx(&op, n)).collect();
    let fp_pos: Vec<usize> = ["Field", "PermissionsRead", "PermissionsEdit"]
        .iter()
        .map(|n| idx(&fp, n))
        .collect();
    for set in sets {
        let Some(row) = tx.get(&ps, set, &sys_pos)? else {
            continue;
        };
        if row.deleted {
            continue;
        }
        perms.modify_all_data |= bool_at(&row.values, 0);
        perms.view_all_data |= bool_at(&row.values, 1);
        perms.api_enabled |= bool_at(&row.values, 2);
        perms.customize_application |= bool_at(&row.values, 3);
        perms.manage_users |= bool_at(&row.values, 4);
        let set_id = Value::Id(model::Id::new(ps.key_prefix, marker, set));
        for o in tx.find_by_field(&op, idx(&op, "ParentId"), &set_id, false, 100_000)? {
            let Some(r) = tx.get(&op, o, &op_pos)? else {
                continue;
            };
            let Value::Text(name) = &r.values[0] else {
                continue;
            };
            let e = perms.objects.entry(name.to_ascii_lowercase()).or_default();
            e.read |= bool_at(&r.values, 1);
            e.create |= bool_at(&r.values, 2);
            e.edit |= bool_at(&r.values, 3);
            e.delete |= bool_at(&r.values, 4);
            e.view_all |= bool_at(&r.values, 5);
            e.modify_all |= bool_at(&r.values, 6);
        }
        for f in tx.find_by_field(&fp, idx(&fp, "ParentId"), &set_id, false, 1_000_000)? {
            let Some(r) = tx.get(&fp, f, &fp_pos)? else {
                continue;
            };
            let Value::Text(name) = &r.values[0] else {
                continue;
            };
            let e = perms.fields.entry(name.to_ascii_lowercase()).or_default();
            e.0 |= bool_at(&r.values, 1) || bool_at(&r.values, 2);
            e.1 |= bool_at(&r.values, 2);
        }
    }
    Ok(perms)
}

impl Org {
    /// Effective permissions of a user, cached until permission data changes.
    pub fn perms_for(&self, user: &UserInfo) -> ApiResult<Arc<Perms>> {
        let generation = self.auth_generation();
        if let Some((g, p)) = self.perms.read().get(&user.seq) {
            if *g == generation {
                return Ok(p.clone());
            }
        }
        let p = Arc::new(self.store.read(|tx| load_perms(tx, user))?);
        let mut cache = self.perms.write();
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(user.seq, (generation, p.clone()));
        Ok(p)
    }
}

/// Objects whose changes invalidate cached users and permissions.
pub const AUTH_OBJECTS: &[&str] = &[
    "User",
    "Profile",
    "PermissionSet",
    "PermissionSetAssignment",
    "ObjectPermissions",
    "FieldPermissions",
];
impl soql::Access for Perms {
    fn object_readable(&self, o: &ObjectDef) -> bool {
        self.object(o).read
    }
    fn field_readable(&self, o: &ObjectDef, f: &FieldDef) -> bool {
        Perms::field_readable(self, o, f)
    }
}

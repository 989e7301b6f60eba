//! Users as the auth layer needs them: looked up by username or row, cached until a user,
//! profile or permission record changes.

use std::sync::Arc;

use model::{ApiResult, Id, ObjectDef, Value};

use crate::Org;

/// What authentication and permissions need to know about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    /// Row sequence.
    pub seq: u64,
    /// Id.
    pub id: Id,
    /// Username.
    pub username: String,
    /// Full name.
    pub name: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Profile row sequence.
    pub profile_seq: Option<u64>,
    /// Active users may log in.
    pub active: bool,
    /// Time zone (`America/Los_Angeles`).
    pub time_zone: String,
    /// Locale (`en_US`).
    pub locale: String,
    /// Language (`en_US`).
    pub language: String,
}

const FIELDS: &[&str] = &[
    "Id",
    "Username",
    "Name",
    "FirstName",
    "LastName",
    "Email",
    "ProfileId",
    "IsActive",
    "TimeZoneSidKey",
    "LocaleSidKey",
    "LanguageLocaleKey",
];

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        _ => None,
    }
}

fn decode(marker: model::OrgMarker, seq: u64, values: &[Value]) -> UserInfo {
    let id = match &values[0] {
        Value::Id(i) => *i,
        _ => Id::new(model::KeyPrefix(*b"005"), marker, seq),
    };
    UserInfo {
        seq,
        id,
        username: text(&values[1]).unwrap_or_default(),
        name: text(&values[2]).unwrap_or_default(),
        first_name: text(&values[3]),
        last_name: text(&values[4]).unwrap_or_default(),
        email: text(&values[5]).unwrap_or_default(),
        profile_seq: match &values[6] {
            Value::Id(i) => i.seq_in(marker),
            _ => None,
        },
        active: matches!(values[7], Value::Bool(true)),
        time_zone: text(&values[8]).unwrap_or_else(|| "America/Los_Angeles".into()),
        locale: text(&values[9]).unwrap_or_else(|| "en_US".into()),
        language: text(&values[10]).unwrap_or_else(|| "en_US".into()),
    }
}

fn positions(user: &ObjectDef) -> Vec<usize> {
    FIELDS
        .iter()
        .map(|f| user.field_index(f).expect("standard User field"))
        .collect()
}

impl Org {
    /// A user by row, from cache or store.
    pub fn user_info(&self, seq: u64) -> ApiResult<Option<Arc<UserInfo>>> {
        let generation = self.auth_generation();
        if let Some((g, u)) = self.users.read().get(&seq) {
            if *g == generation {
                return Ok(Some(u.clone()));
            }
        }
        let schema = self.store.schema();
        let user = schema.object("User").expect("User is standard").clone();
        let pos = positions(&user);
        let marker = self.store.marker();
        let row = self.store.read(|tx| tx.get(&user, seq, &pos))?;
        let info = row
            .filter(|r| !r.deleted)
            .map(|r| Arc::new(decode(marker, seq, &r.values)));
        if let Some(i) = &info {
            let mut users = self.users.write();
            if users.len() > 100_000 {
                users.clear();
            }
            users.insert(seq, (generation, i.clone()));
        }
        Ok(info)
    }

    /// A user by username, case-insensitively.
    pub fn user_by_username(&self, username: &str) -> ApiResult<Option<Arc<UserInfo>>> {
        let schema = self.store.schema();
        let user = schema.object("User").expect("User is standard").clone();
        let un = user.field_index("Username").expect("standard field");
        let seqs = self.store.read(|tx| {
            tx.find_by_field(
                &user,
                un,
                &Value::Text(username.trim().to_string()),
                false,
                1,
            )
        })?;
        match seqs.first() {
            Some(&seq) => self.user_info(seq),
            None => Ok(None),
        }
    }
}

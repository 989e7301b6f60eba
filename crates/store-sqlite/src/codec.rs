//! Converting field values to and from their column encodings.

use model::{FieldDef, FieldType, Id, KeyPrefix, ObjectDef, OrgMarker, Value};
use rusqlite::types::{Value as Sql, ValueRef};

/// Encodes a value for a column of field `f`. Ids from another org cannot be stored.
pub fn encode(f: &FieldDef, v: &Value, marker: OrgMarker) -> Result<Sql, String> {
    Ok(match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Int(i) => Sql::Integer(*i),
        Value::Double(d) => Sql::Real(*d),
        Value::Text(s) => Sql::Text(s.clone()),
        Value::Date(d) => Sql::Text(model::value::format_date(*d)),
        Value::DateTime(ms) => Sql::Integer(*ms),
        Value::Time(ms) => Sql::Integer(*ms as i64),
        Value::Id(id) => {
            let seq = id
                .seq_in(marker)
                .ok_or_else(|| format!("id {id} of field {} is not from this org", f.name))?;
            Sql::Integer(seq as i64)
        }
    })
}

/// Decodes a column value of field `f` of object `o`.
pub fn decode(o: &ObjectDef, f: &FieldDef, v: ValueRef<'_>, marker: OrgMarker) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => match f.ty {
            FieldType::Id => Value::Id(Id::new(o.key_prefix, marker, i as u64)),
            FieldType::Reference => {
                let prefix = f.reference_prefix.unwrap_or(KeyPrefix(*b"000"));
                Value::Id(Id::new(prefix, marker, i as u64))
            }
            FieldType::Boolean => Value::Bool(i != 0),
            FieldType::DateTime => Value::DateTime(i),
            FieldType::Time => Value::Time(i as u32),
            FieldType::Double | FieldType::Currency | FieldType::Percent => Value::Double(i as f64),
            _ => Value::Int(i),
        },
        ValueRef::Real(d) => match f.ty {
            FieldType::Int => Value::Int(d as i64),
            _ => Value::Double(d),
        },
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            match f.ty {
                FieldType::Date => model::value::parse_date(&s)
                    .map(Value::Date)
                    .unwrap_or(Value::Null),
                _ => Value::Text(s.into_owned()),
            }
        }
        ValueRef::Blob(_) => Value::Null,
    }
}

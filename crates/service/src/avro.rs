//! Avro for events: the record schemas of platform events and change events (as the REST
//! `eventSchema` resources and the Pub/Sub API serve them), the binary encoding of stored events
//! for Pub/Sub subscribers, and the decoding of events Pub/Sub publishers send.
//!
//! A [`Layout`] is one event type's schema: its JSON text, its id, and the field list the
//! encoder walks. Stored events keep their payload as the Streaming API's JSON; the encoder
//! turns that JSON into Avro binary directly (it is on the path of every delivered event), and
//! the tests check its output with the `apache-avro` crate, which also decodes what publishers
//! send (untrusted input).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use model::value::{format_date, format_datetime_z, parse_date, parse_datetime};
use model::{FieldType, ObjectDef, ObjectKind, Schema};
use parking_lot::RwLock;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};

/// The symbols of a change event's `changeType`, in schema order.
pub const CHANGE_TYPES: [&str; 10] = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
    "SNAPSHOT",
];

/// How a field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Boolean,
    Long,
    Double,
    String,
    /// JSON `YYYY-MM-DD`, Avro epoch milliseconds.
    Date,
    /// JSON ISO 8601, Avro epoch milliseconds.
    DateTime,
}

impl Ty {
    fn of(t: FieldType) -> Ty {
        match t {
            FieldType::Boolean => Ty::Boolean,
            FieldType::Int => Ty::Long,
            FieldType::Double | FieldType::Currency | FieldType::Percent => Ty::Double,
            FieldType::Date => Ty::Date,
            FieldType::DateTime => Ty::DateTime,
            _ => Ty::String,
        }
    }

    fn avro(self) -> &'static str {
        match self {
            Ty::Boolean => "boolean",
            Ty::Long | Ty::Date | Ty::DateTime => "long",
            Ty::Double => "double",
            Ty::String => "string",
        }
    }
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: Ty,
    nullable: bool,
}

/// One event type's Avro record: schema id, schema JSON and the encoder's field list.
#[derive(Debug)]
pub struct Layout {
    /// The schema id (also the schema's `uuid`).
    pub schema_id: String,
    /// The schema as JSON text.
    pub json: String,
    /// The schema parsed, for decoding published payloads.
    pub parsed: apache_avro::Schema,
    /// The event type (platform event) or the changed object (change event).
    pub object: Arc<ObjectDef>,
    /// Whether this is a change event's layout (field 0 is `ChangeEventHeader`).
    pub change: bool,
    fields: Vec<Field>,
}

/// Fields change events leave out of the body (the id is in the header).
pub(crate) fn reported_in_changes(name: &str) -> bool {
    !matches!(name, "Id" | "IsDeleted" | "SystemModstamp")
}

impl Layout {
    /// The layout of platform event type `o`: `CreatedDate` (epoch ms) and `CreatedById`, then
    /// every custom field as a nullable union with a null default.
    pub fn platform_event(o: &Arc<ObjectDef>) -> Layout {
        let mut fields = vec![
            Field {
                name: "CreatedDate".into(),
                ty: Ty::DateTime,
                nullable: false,
            },
            Field {
                name: "CreatedById".into(),
                ty: Ty::String,
                nullable: false,
            },
        ];
        fields.extend(o.fields.iter().filter(|f| f.custom).map(|f| Field {
            name: f.name.clone(),
            ty: Ty::of(f.ty),
            nullable: true,
        }));
        let schema_id = crate::events::schema_id(o);
        let mut json_fields = vec![
            json!({"name": "CreatedDate", "type": "long", "doc": "CreatedDate:DateTime"}),
            json!({"name": "CreatedById", "type": "string", "doc": "CreatedBy:EntityId"}),
        ];
        json_fields.extend(
            fields[2..]
                .iter()
                .map(|f| json!({"name": f.name, "type": ["null", f.ty.avro()], "default": null})),
        );
        let doc = json!({
            "name": o.name,
            "namespace": "com.sforce.eventbus",
            "type": "record",
            "fields": json_fields,
            "uuid": schema_id,
        });
        Layout::new(o, false, schema_id, doc, fields)
    }

    /// The layout of `o`'s change events (`AccountChangeEvent`): `ChangeEventHeader`, then every
    /// field a change event can report, each a nullable union, in the object's field order (the
    /// order the `changedFields`/`nulledFields` bitmaps index, the header being field 0).
    pub fn change_event(o: &Arc<ObjectDef>) -> Layout {
        let mut fields = vec![Field {
            name: "ChangeEventHeader".into(),
            ty: Ty::String,
            nullable: false,
        }];
        fields.extend(
            o.fields
                .iter()
                .filter(|f| reported_in_changes(&f.name))
                .map(|f| Field {
                    name: f.name.clone(),
                    ty: Ty::of(f.ty),
                    nullable: true,
                }),
        );
        let schema_id = crate::changes::schema_id(o);
        let strings = json!({"type": "array", "items": "string"});
        let header = json!({
            "name": "ChangeEventHeader",
            "type": {
                "type": "record",
                "name": "ChangeEventHeader",
                "namespace": "com.sforce.eventbus",
                "fields": [
                    {"name": "entityName", "type": "string"},
                    {"name": "recordIds", "type": strings},
                    {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "namespace": "com.sforce.eventbus", "symbols": CHANGE_TYPES}},
                    {"name": "changeOrigin", "type": "string"},
                    {"name": "transactionKey", "type": "string"},
                    {"name": "sequenceNumber", "type": "int"},
                    {"name": "commitTimestamp", "type": "long"},
                    {"name": "commitNumber", "type": "long"},
                    {"name": "commitUser", "type": "string"},
                    {"name": "nulledFields", "type": strings},
                    {"name": "diffFields", "type": strings},
                    {"name": "changedFields", "type": strings},
                ]
            }
        });
        let mut json_fields = vec![header];
        json_fields.extend(
            fields[1..]
                .iter()
                .map(|f| json!({"name": f.name, "type": ["null", f.ty.avro()], "default": null})),
        );
        let doc = json!({
            "name": o.change_event_name(),
            "namespace": "com.sforce.eventbus",
            "type": "record",
            "fields": json_fields,
            "uuid": schema_id,
        });
        Layout::new(o, true, schema_id, doc, fields)
    }

    fn new(
        o: &Arc<ObjectDef>,
        change: bool,
        schema_id: String,
        doc: Json,
        fields: Vec<Field>,
    ) -> Layout {
        let json = doc.to_string();
        let parsed =
            apache_avro::Schema::parse_str(&json).expect("generated event schemas are valid Avro");
        Layout {
            schema_id,
            json,
            parsed,
            object: o.clone(),
            change,
            fields,
        }
    }

    /// Encodes a stored event's payload (the Streaming API's JSON) as Avro binary. `created_ms`
    /// stands in for a missing `CreatedDate`. Values that do not fit their field are written as
    /// null (nullable fields) or as the type's zero value.
    pub fn encode(&self, payload: &str, created_ms: i64) -> Vec<u8> {
        // The payload's members, each left as raw JSON text until its field is written (this is
        // on the path of every delivered event; building a whole JSON tree was most of it).
        let body: BTreeMap<&str, &RawValue> = serde_json::from_str(payload).unwrap_or_default();
        let value = |name: &str| -> Option<Json> {
            body.get(name)
                .filter(|raw| raw.get() != "null")
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
        };
        let mut out = Vec::with_capacity(payload.len());
        for (k, f) in self.fields.iter().enumerate() {
            if k == 0 && self.change {
                let header: Map<String, Json> = body
                    .get("ChangeEventHeader")
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
                    .unwrap_or_default();
                let nulled = |name: &str| body.get(name).is_some_and(|raw| raw.get() == "null");
                self.encode_header(&header, nulled, &mut out);
                continue;
            }
            let v = value(&f.name);
            if f.nullable {
                match v.filter(|v| fits(f.ty, v)) {
                    None => out.push(0), // union branch 0: null
                    Some(v) => {
                        out.push(2); // union branch 1 (zig-zag 1)
                        write_value(f.ty, &v, &mut out);
                    }
                }
            } else if f.name == "CreatedDate" && v.is_none() {
                write_long(created_ms, &mut out);
            } else {
                write_value(f.ty, v.as_ref().unwrap_or(&Json::Null), &mut out);
            }
        }
        out
    }

    fn encode_header(
        &self,
        h: &Map<String, Json>,
        nulled: impl Fn(&str) -> bool,
        out: &mut Vec<u8>,
    ) {
        let s = |k: &str| h.get(k).and_then(Json::as_str).unwrap_or("");
        let n = |k: &str| h.get(k).and_then(Json::as_i64).unwrap_or(0);
        write_str(s("entityName"), out);
        let ids: Vec<&str> = h
            .get("recordIds")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        write_strings(&ids, out);
        let kind = CHANGE_TYPES
            .iter()
            .position(|t| *t == s("changeType"))
            .unwrap_or(0);
        write_long(kind as i64, out);
        write_str(s("changeOrigin"), out);
        write_str(s("transactionKey"), out);
        write_long(n("sequenceNumber"), out);
        write_long(n("commitTimestamp"), out);
        write_long(n("commitNumber"), out);
        write_str(s("commitUser"), out);
        let changed: Vec<&str> = h
            .get("changedFields")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let nulled: Vec<&str> = changed.iter().copied().filter(|f| nulled(f)).collect();
        write_strings(&self.bitmap(&nulled), out);
        write_strings::<&str>(&[], out);
        write_strings(&self.bitmap(&changed), out);
    }

    /// The bitmap form of a list of field names: `["0x…"]` with bit *i* set for top-level field
    /// *i* (the header is field 0), uppercase hex, whole bytes; `[]` when there is none.
    pub fn bitmap(&self, names: &[&str]) -> Vec<String> {
        let mut bits: Vec<u8> = Vec::new();
        for name in names {
            if let Some(i) = self.fields.iter().position(|f| f.name == *name) {
                if bits.len() <= i / 8 {
                    bits.resize(i / 8 + 1, 0);
                }
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        if bits.is_empty() {
            return Vec::new();
        }
        let mut hex = String::from("0x");
        for b in bits.iter().rev() {
            hex.push_str(&format!("{b:02X}"));
        }
        vec![hex]
    }

    /// The field names a bitmap names (the inverse of [`Layout::bitmap`]).
    pub fn names_of(&self, bitmap: &[String]) -> Vec<String> {
        let Some(hex) = bitmap.first().and_then(|s| s.strip_prefix("0x")) else {
            return Vec::new();
        };
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|k| u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).ok())
            .collect();
        let mut names = Vec::new();
        for (k, byte) in bytes.iter().rev().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    if let Some(f) = self.fields.get(k * 8 + bit) {
                        names.push(f.name.clone());
                    }
                }
            }
        }
        names
    }

    /// Decodes a published payload into the REST JSON body of the event (custom fields only:
    /// `CreatedDate` and `CreatedById` are the server's to set). Fails with a message for
    /// payloads that do not match the schema.
    pub fn decode(&self, payload: &[u8]) -> Result<Map<String, Json>, String> {
        use apache_avro::types::Value as A;
        let mut reader = payload;
        let value = apache_avro::from_avro_datum(&self.parsed, &mut reader, None)
            .map_err(|e| format!("the payload does not match schema {}: {e}", self.schema_id))?;
        if !reader.is_empty() {
            return Err(format!(
                "the payload has {} bytes after the record of schema {}",
                reader.len(),
                self.schema_id
            ));
        }
        let A::Record(fields) = value else {
            return Err("the payload is not a record".into());
        };
        let mut body = Map::new();
        for ((name, v), f) in fields.into_iter().zip(&self.fields) {
            if !f.nullable {
                continue;
            }
            let v = match v {
                A::Union(_, inner) => *inner,
                v => v,
            };
            let j = match (f.ty, v) {
                (_, A::Null) => Json::Null,
                (Ty::Boolean, A::Boolean(b)) => Json::Bool(b),
                (Ty::Long, A::Long(n)) => Json::from(n),
                (Ty::Long, A::Int(n)) => Json::from(n),
                (Ty::Double, A::Double(d)) => serde_json::Number::from_f64(d)
                    .map(Json::Number)
                    .unwrap_or(Json::Null),
                (Ty::Double, A::Float(d)) => serde_json::Number::from_f64(d as f64)
                    .map(Json::Number)
                    .unwrap_or(Json::Null),
                (Ty::String, A::String(s)) => Json::String(s),
                (Ty::Date, A::Long(ms)) => chrono::DateTime::from_timestamp_millis(ms)
                    .map(|d| Json::String(format_date(d.date_naive())))
                    .unwrap_or(Json::Null),
                (Ty::DateTime, A::Long(ms)) => Json::String(format_datetime_z(ms)),
                (_, other) => {
                    return Err(format!("field {name} holds an unexpected value {other:?}"));
                }
            };
            body.insert(name, j);
        }
        Ok(body)
    }
}

/// Whether JSON value `v` can be written as `ty`.
fn fits(ty: Ty, v: &Json) -> bool {
    match ty {
        Ty::Boolean => v.is_boolean(),
        Ty::Long => v.is_i64() || v.as_f64().is_some_and(|d| d.fract() == 0.0),
        Ty::Double => v.is_number(),
        Ty::String => v.is_string(),
        Ty::Date => v.as_str().and_then(parse_date).is_some(),
        Ty::DateTime => v.as_str().and_then(parse_datetime).is_some() || v.is_i64(),
    }
}

fn write_value(ty: Ty, v: &Json, out: &mut Vec<u8>) {
    match ty {
        Ty::Boolean => out.push(u8::from(v.as_bool().unwrap_or(false))),
        Ty::Long => write_long(
            v.as_i64()
                .or_else(|| v.as_f64().map(|d| d as i64))
                .unwrap_or(0),
            out,
        ),
        Ty::Double => out.extend_from_slice(&v.as_f64().unwrap_or(0.0).to_le_bytes()),
        Ty::String => write_str(v.as_str().unwrap_or(""), out),
        Ty::Date => {
            let ms = v
                .as_str()
                .and_then(parse_date)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or(0, |d| d.and_utc().timestamp_millis());
            write_long(ms, out)
        }
        Ty::DateTime => write_long(
            v.as_str()
                .and_then(parse_datetime)
                .or_else(|| v.as_i64())
                .unwrap_or(0),
            out,
        ),
    }
}

/// Avro `long`/`int`: zig-zag, then variable-length base 128.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    write_long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// An Avro array of strings: one block with every item, then the end marker.
fn write_strings<S: AsRef<str>>(items: &[S], out: &mut Vec<u8>) {
    if !items.is_empty() {
        write_long(items.len() as i64, out);
        for s in items {
            write_str(s.as_ref(), out);
        }
    }
    out.push(0);
}

/// The layouts of an org's event types, built on demand for the current schema.
#[derive(Debug, Default)]
pub struct Layouts {
    /// Schema generation the cache was built for, and layouts by stream name.
    by_stream: RwLock<(u64, HashMap<String, Arc<Layout>>)>,
}

impl Layouts {
    /// The layout of events of `stream` (a platform event type or `<Entity>ChangeEvent`) in
    /// `schema`, if the stream exists.
    pub fn of_stream(&self, schema: &Schema, stream: &str) -> Option<Arc<Layout>> {
        {
            let cache = self.by_stream.read();
            if cache.0 == schema.generation {
                if let Some(l) = cache.1.get(stream) {
                    return Some(l.clone());
                }
            }
        }
        let layout = if let Some(o) = schema
            .object(stream)
            .filter(|o| o.kind == ObjectKind::PlatformEvent && o.name == stream)
        {
            Arc::new(Layout::platform_event(o))
        } else {
            Arc::new(Layout::change_event(schema.object_of_change_event(stream)?))
        };
        let mut cache = self.by_stream.write();
        if cache.0 != schema.generation {
            *cache = (schema.generation, HashMap::new());
        }
        cache.1.insert(stream.to_string(), layout.clone());
        Some(layout)
    }

    /// The layout whose schema id is `id`, among the current event types and change events.
    pub fn of_schema_id(&self, schema: &Schema, id: &str) -> Option<Arc<Layout>> {
        for o in schema.objects() {
            let stream = if o.kind == ObjectKind::PlatformEvent {
                if crate::events::schema_id(o) != id {
                    continue;
                }
                o.name.clone()
            } else if o.change_events {
                if crate::changes::schema_id(o) != id {
                    continue;
                }
                o.change_event_name()
            } else {
                continue;
            };
            return self.of_stream(schema, &stream);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value as A;
    use model::FieldDef;

    fn object(kind: ObjectKind, name: &str, fields: &[(&str, FieldType)]) -> Arc<ObjectDef> {
        let fields = fields
            .iter()
            .map(|(n, t)| {
                let mut f = FieldDef::new(n, n, *t);
                f.custom = n.ends_with("__c");
                f
            })
            .collect();
        Arc::new(ObjectDef::new(
            name,
            name,
            name,
            model::KeyPrefix(*b"a01"),
            kind,
            fields,
        ))
    }

    fn decode(layout: &Layout, bytes: &[u8]) -> Vec<(String, A)> {
        let mut r = bytes;
        let v = apache_avro::from_avro_datum(&layout.parsed, &mut r, None).unwrap();
        assert!(r.is_empty(), "trailing bytes");
        match v {
            A::Record(f) => f,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn platform_events_encode_as_apache_avro_reads_them_and_decode_back() {
        let o = object(
            ObjectKind::PlatformEvent,
            "Low_Ink__e",
            &[
                ("Printer_Model__c", FieldType::String),
                ("Ink__c", FieldType::Double),
                ("Copies__c", FieldType::Int),
                ("Urgent__c", FieldType::Boolean),
                ("Due__c", FieldType::Date),
                ("At__c", FieldType::DateTime),
            ],
        );
        let l = Layout::platform_event(&o);
        let payload = r#"{"CreatedDate":"2026-12-02T10:00:00.000Z","CreatedById":"005000000000001AAA","Printer_Model__c":"XZO-5","Ink__c":0.25,"Copies__c":3,"Urgent__c":true,"Due__c":"2026-12-24","At__c":"2026-12-02T11:30:00.000Z"}"#;
        let bytes = l.encode(payload, 0);
        let f = decode(&l, &bytes);
        assert_eq!(f[0], ("CreatedDate".into(), A::Long(1_796_205_600_000)));
        assert_eq!(
            f[1],
            ("CreatedById".into(), A::String("005000000000001AAA".into()))
        );
        assert_eq!(f[2].1, A::Union(1, Box::new(A::String("XZO-5".into()))));
        assert_eq!(f[3].1, A::Union(1, Box::new(A::Double(0.25))));
        assert_eq!(f[4].1, A::Union(1, Box::new(A::Long(3))));
        assert_eq!(f[5].1, A::Union(1, Box::new(A::Boolean(true))));
        assert_eq!(f[6].1, A::Union(1, Box::new(A::Long(1_798_070_400_000))));
        assert_eq!(f[7].1, A::Union(1, Box::new(A::Long(1_796_211_000_000))));
        // Missing and null fields are the null branch; a missing CreatedDate is the stored time.
        let f = decode(&l, &l.encode(r#"{"CreatedById":"005","Ink__c":null}"#, 42));
        assert_eq!(f[0].1, A::Long(42));
        assert!(f[2..]
            .iter()
            .all(|(_, v)| *v == A::Union(0, Box::new(A::Null))));
        // What a publisher sends decodes into the REST body the event is published from.
        let body = l.decode(&bytes).unwrap();
        assert_eq!(body["Printer_Model__c"], "XZO-5");
        assert_eq!(body["Copies__c"], 3);
        assert_eq!(body["Due__c"], "2026-12-24");
        assert_eq!(body["At__c"], "2026-12-02T11:30:00.000Z");
        assert!(!body.contains_key("CreatedDate"));
        // Garbage and trailing bytes are refused.
        assert!(l.decode(&[0xff, 0xff, 0xff]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(l.decode(&long).unwrap_err().contains("after the record"));
    }

    #[test]
    fn change_events_carry_the_header_and_bitmaps() {
        let o = object(
            ObjectKind::Custom,
            "Invoice__c",
            &[
                ("Id", FieldType::Id),
                ("Name", FieldType::String),
                ("LastModifiedDate", FieldType::DateTime),
                ("Amount__c", FieldType::Double),
                ("Note__c", FieldType::String),
            ],
        );
        let l = Layout::change_event(&o);
        assert_eq!(l.parsed.name().unwrap().name, "Invoice__ChangeEvent");
        let payload = r#"{"Amount__c":12.5,"Note__c":null,"LastModifiedDate":"2026-12-02T10:00:00.000Z","ChangeEventHeader":{"entityName":"Invoice__c","recordIds":["a01000000000001AAA"],"changeType":"UPDATE","changedFields":["Amount__c","Note__c","LastModifiedDate"],"changeOrigin":"com/salesforce/api/rest/59.0","transactionKey":"t-1","sequenceNumber":2,"commitTimestamp":1764669600000,"commitNumber":7,"commitUser":"005000000000001AAA"}}"#;
        let f = decode(&l, &l.encode(payload, 0));
        let A::Record(h) = &f[0].1 else {
            panic!("header is a record")
        };
        let get = |k: &str| h.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("changeType"), A::Enum(1, "UPDATE".into()));
        assert_eq!(get("sequenceNumber"), A::Int(2));
        assert_eq!(get("commitNumber"), A::Long(7));
        assert_eq!(
            get("recordIds"),
            A::Array(vec![A::String("a01000000000001AAA".into())])
        );
        // Fields: header 0, Name 1, LastModifiedDate 2, Amount__c 3, Note__c 4.
        assert_eq!(
            get("changedFields"),
            A::Array(vec![A::String("0x1C".into())])
        );
        assert_eq!(
            get("nulledFields"),
            A::Array(vec![A::String("0x10".into())])
        );
        assert_eq!(get("diffFields"), A::Array(vec![]));
        assert_eq!(
            l.names_of(&["0x1C".to_string()]),
            ["LastModifiedDate", "Amount__c", "Note__c"]
        );
        assert_eq!(f[3].1, A::Union(1, Box::new(A::Double(12.5))));
        assert_eq!(f[4].1, A::Union(0, Box::new(A::Null)));
    }

    #[test]
    fn bitmaps_are_uppercase_whole_bytes() {
        let mut fields: Vec<(String, FieldType)> = (0..30)
            .map(|k| (format!("F{k}__c"), FieldType::String))
            .collect();
        fields.insert(0, ("Id".into(), FieldType::Id));
        let refs: Vec<(&str, FieldType)> = fields.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        let l = Layout::change_event(&object(ObjectKind::Custom, "Wide__c", &refs));
        // F10__c is field 11, F21__c field 22: Salesforce's Industry/LastModifiedDate example.
        assert_eq!(l.bitmap(&["F10__c", "F21__c"]), ["0x400800"]);
        assert_eq!(l.bitmap(&["F0__c"]), ["0x02"]);
        assert!(l.bitmap(&[]).is_empty());
    }
}

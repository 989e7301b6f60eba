//! REST JSON output written straight to bytes: record values, records and query pages serialize
//! without building `serde_json::Value` trees first (that was a tenth of a GET by id's CPU).

use model::{Id, ObjectDef, OrgMarker, Value};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use service::query::QueryPage;
use service::records::Record;
use soql::plan::{Column, Plan, PlanKind};
use store::{Cell, QueryRow};

/// A field value in REST JSON: dates and times in Salesforce's formats, ids in 18 characters,
/// non-finite numbers as null.
pub struct ValueJson<'a>(pub &'a Value);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Double(d) if d.is_finite() => s.serialize_f64(*d),
            Value::Double(_) => s.serialize_none(),
            Value::Text(t) => s.serialize_str(t),
            Value::Date(d) => s.serialize_str(&model::value::format_date(*d)),
            Value::DateTime(ms) => s.serialize_str(&model::value::format_datetime(*ms)),
            Value::Time(ms) => s.serialize_str(&model::value::format_time(*ms)),
            Value::Id(id) => s.serialize_str(&id.to_18()),
        }
    }
}

/// `{"type": T, "url": "/services/data/vNN.N/sobjects/T/ID"}` (no `url` without an id).
struct Attributes<'a> {
    prefix: &'a str,
    object: &'a str,
    id: Option<Id>,
}

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(if self.id.is_some() { 2 } else { 1 }))?;
        m.serialize_entry("type", self.object)?;
        if let Some(id) = &self.id {
            let mut url = String::with_capacity(self.prefix.len() + self.object.len() + 30);
            url.push_str(self.prefix);
            url.push_str("/sobjects/");
            url.push_str(self.object);
            url.push('/');
            url.push_str(&id.to_18());
            m.serialize_entry("url", &url)?;
        }
        m.end()
    }
}

/// A record read by id: `attributes`, then its fields in order.
pub struct RecordJson<'a> {
    /// `/services/data/vNN.N`.
    pub prefix: &'a str,
    /// The record.
    pub record: &'a Record,
}

impl Serialize for RecordJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.record;
        let mut m = s.serialize_map(Some(r.fields.len() + 1))?;
        m.serialize_entry(
            "attributes",
            &Attributes {
                prefix: self.prefix,
                object: &r.object.name,
                id: Some(r.id),
            },
        )?;
        for (i, v) in &r.fields {
            m.serialize_entry(&r.object.fields[*i].name, &ValueJson(v))?;
        }
        m.end()
    }
}

/// A query result page (`totalSize`, `done`, `nextRecordsUrl`, `records`).
pub struct PageJson<'a> {
    /// `/services/data/vNN.N`.
    pub prefix: &'a str,
    /// The org marker (row sequences become ids).
    pub marker: OrgMarker,
    /// The page.
    pub page: &'a QueryPage,
}

impl Serialize for PageJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let page = self.page;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("totalSize", &page.total_size)?;
        m.serialize_entry("done", &page.done)?;
        if let Some(l) = &page.next_locator {
            m.serialize_entry("nextRecordsUrl", &format!("{}/query/{l}", self.prefix))?;
        }
        m.serialize_entry(
            "records",
            &Rows {
                prefix: self.prefix,
                marker: self.marker,
                plan: &page.plan,
                rows: &page.rows,
            },
        )?;
        m.end()
    }
}

struct Rows<'a> {
    prefix: &'a str,
    marker: OrgMarker,
    plan: &'a Plan,
    rows: &'a [QueryRow],
}

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for row in self.rows {
            match self.plan.kind {
                PlanKind::Aggregate => seq.serialize_element(&AggregateJson {
                    plan: self.plan,
                    row,
                })?,
                _ => seq.serialize_element(&RowJson {
                    prefix: self.prefix,
                    marker: self.marker,
                    object: &self.plan.object,
                    columns: &self.plan.columns,
                    row,
                })?,
            }
        }
        seq.end()
    }
}

/// One record of a query result, with nested parents and child query results.
struct RowJson<'a> {
    prefix: &'a str,
    marker: OrgMarker,
    object: &'a ObjectDef,
    columns: &'a [Column],
    row: &'a QueryRow,
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.columns.len() + 1))?;
        let id = Id::new(self.object.key_prefix, self.marker, self.row.seq);
        m.serialize_entry(
            "attributes",
            &Attributes {
                prefix: self.prefix,
                object: &self.object.name,
                id: Some(id),
            },
        )?;
        for (col, cell) in self.columns.iter().zip(&self.row.cells) {
            match (col, cell) {
                (_, Cell::Value(v)) => m.serialize_entry(col.key(), &ValueJson(v))?,
                (
                    Column::Parent {
                        object, columns, ..
                    },
                    Cell::Parent(Some(parent)),
                ) => m.serialize_entry(
                    col.key(),
                    &RowJson {
                        prefix: self.prefix,
                        marker: self.marker,
                        object,
                        columns,
                        row: parent,
                    },
                )?,
                (Column::Children { plan, .. }, Cell::Children(kids)) if !kids.is_empty() => m
                    .serialize_entry(
                        col.key(),
                        &ChildrenJson {
                            prefix: self.prefix,
                            marker: self.marker,
                            plan,
                            kids,
                        },
                    )?,
                _ => m.serialize_entry(col.key(), &Option::<()>::None)?,
            }
        }
        m.end()
    }
}

/// A child subquery's result nested in its parent record.
struct ChildrenJson<'a> {
    prefix: &'a str,
    marker: OrgMarker,
    plan: &'a Plan,
    kids: &'a [QueryRow],
}

impl Serialize for ChildrenJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("totalSize", &self.kids.len())?;
        m.serialize_entry("done", &true)?;
        m.serialize_entry(
            "records",
            &Rows {
                prefix: self.prefix,
                marker: self.marker,
                plan: self.plan,
                rows: self.kids,
            },
        )?;
        m.end()
    }
}

/// An `AggregateResult` row.
struct AggregateJson<'a> {
    plan: &'a Plan,
    row: &'a QueryRow,
}

impl Serialize for AggregateJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.plan.columns.len() + 1))?;
        m.serialize_entry(
            "attributes",
            &Attributes {
                prefix: "",
                object: "AggregateResult",
                id: None,
            },
        )?;
        for (col, cell) in self.plan.columns.iter().zip(&self.row.cells) {
            match cell {
                Cell::Value(v) => m.serialize_entry(col.key(), &ValueJson(v))?,
                _ => m.serialize_entry(col.key(), &Option::<()>::None)?,
            }
        }
        m.end()
    }
}

//! This org as a source: an object's records in `(SystemModstamp, Id)` order after a compound
//! cursor, through SOQL as the user who runs the job (so their field permissions apply), with
//! the same overlap window as the database sources.

use std::sync::Arc;

use model::value::format_datetime_z;
use model::{ObjectDef, Value};
use serde_json::Value as Json;
use service::{Org, Principal};
use store::Cell;

use crate::postgres::Row;
use crate::Cursor;

/// An open org source.
pub struct Source {
    org: Arc<Org>,
    p: Principal,
    object: Arc<ObjectDef>,
    /// The fields selected (readable by the user), by index.
    fields: Vec<usize>,
    stamp: usize,
    overlap_ms: i64,
}

impl Source {
    /// Checks the object and what the user may read of it.
    pub fn open(
        org: Arc<Org>,
        p: Principal,
        object: &str,
        overlap_secs: u64,
    ) -> Result<Source, String> {
        let schema = org.schema();
        let o = schema
            .object(object)
            .cloned()
            .ok_or_else(|| format!("there is no object {object}"))?;
        let fields: Vec<usize> = (0..o.fields.len())
            .filter(|i| p.perms.field_readable(&o, &o.fields[*i]))
            .collect();
        let stamp = o
            .field_index("SystemModstamp")
            .filter(|i| fields.contains(i))
            .ok_or_else(|| format!("{object} has no readable SystemModstamp to follow"))?;
        Ok(Source {
            org,
            p,
            object: o,
            fields,
            stamp,
            overlap_ms: overlap_secs as i64 * 1000,
        })
    }

    /// Up to `limit` records after `after` (see the PostgreSQL source).
    pub fn page(
        &self,
        after: Option<&Cursor>,
        rewind: bool,
        limit: usize,
    ) -> Result<Vec<Row>, String> {
        let o = &self.object;
        let names: Vec<&str> = self
            .fields
            .iter()
            .map(|i| o.fields[*i].name.as_str())
            .collect();
        let mut soql = format!("SELECT {} FROM {}", names.join(", "), o.name);
        match after {
            None => {}
            Some(at) => {
                let ms = model::value::parse_datetime(&at.value)
                    .ok_or_else(|| format!("the cursor {} is not a date-time", at.value))?;
                if rewind && self.overlap_ms > 0 {
                    soql.push_str(&format!(
                        " WHERE SystemModstamp >= {}",
                        format_datetime_z(ms - self.overlap_ms)
                    ));
                } else {
                    let v = format_datetime_z(ms);
                    let id = at.key.replace(['\\', '\''], "");
                    soql.push_str(&format!(
                        " WHERE SystemModstamp > {v} OR (SystemModstamp = {v} AND Id > '{id}')"
                    ));
                }
            }
        }
        soql.push_str(&format!(" ORDER BY SystemModstamp, Id LIMIT {limit}"));
        self.rows(&soql, limit)
    }

    /// The records whose `field` holds one of `values` (as JSON objects by field name).
    pub fn by_values(&self, field: &str, values: &[String]) -> Result<Vec<Json>, String> {
        let mut out = Vec::new();
        for chunk in values.chunks(200) {
            let list: Vec<String> = chunk
                .iter()
                .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
                .collect();
            let names: Vec<&str> = self
                .fields
                .iter()
                .map(|i| self.object.fields[*i].name.as_str())
                .collect();
            let soql = format!(
                "SELECT {} FROM {} WHERE {field} IN ({})",
                names.join(", "),
                self.object.name,
                list.join(", ")
            );
            out.extend(self.rows(&soql, 2_000)?.into_iter().map(|r| r.data));
        }
        Ok(out)
    }

    /// The values of `field` of the records `ids` (with `deleted`, also of those in the
    /// recycle bin).
    pub fn values_of(
        &self,
        field: &str,
        ids: &[String],
        deleted: bool,
    ) -> Result<Vec<Json>, String> {
        let mut out = Vec::new();
        for chunk in ids.chunks(200) {
            let list: Vec<String> = chunk
                .iter()
                .map(|v| format!("'{}'", v.replace(['\\', '\''], "")))
                .collect();
            let soql = format!(
                "SELECT Id, {field} FROM {} WHERE Id IN ({})",
                self.object.name,
                list.join(", ")
            );
            let page = self
                .org
                .query(&self.p, &soql, deleted, chunk.len().max(1))
                .map_err(|e| format!("reading {}: {}", self.object.name, e.message))?;
            for r in &page.rows {
                if let Some(Cell::Value(v)) = r.cells.get(1) {
                    out.push(v.to_json());
                }
            }
        }
        Ok(out)
    }

    /// Every value of `field` (paged through query locators).
    pub fn all_values(&self, field: &str) -> Result<Vec<Json>, String> {
        Ok(self
            .all_tuples(&[field.to_string()])?
            .into_iter()
            .filter_map(|mut t| t.pop())
            .collect())
    }

    /// The values of `fields` of every record (paged through query locators).
    pub fn all_tuples(&self, fields: &[String]) -> Result<Vec<Vec<Json>>, String> {
        let o = &self.object;
        let mut page = self
            .org
            .query(
                &self.p,
                &format!("SELECT {} FROM {}", fields.join(", "), o.name),
                false,
                2_000,
            )
            .map_err(|e| format!("reading {}: {}", o.name, e.message))?;
        let mut out = Vec::new();
        loop {
            for r in &page.rows {
                out.push(
                    r.cells
                        .iter()
                        .map(|c| match c {
                            Cell::Value(v) => v.to_json(),
                            _ => Json::Null,
                        })
                        .collect(),
                );
            }
            match page.next_locator.clone() {
                Some(l) => {
                    page = self
                        .org
                        .query_more(&self.p, &l)
                        .map_err(|e| format!("reading {}: {}", o.name, e.message))?
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Runs a query selecting this source's fields; its rows with their positions.
    fn rows(&self, soql: &str, limit: usize) -> Result<Vec<Row>, String> {
        let o = &self.object;
        let page = self
            .org
            .query(&self.p, soql, false, limit.max(1))
            .map_err(|e| format!("reading {}: {}", o.name, e.message))?;
        let id_of = |seq: u64| model::Id::new(o.key_prefix, self.org.store().marker(), seq).to_18();
        page.rows
            .iter()
            .map(|r| {
                let values: Vec<&Value> = r
                    .cells
                    .iter()
                    .map(|c| match c {
                        Cell::Value(v) => v,
                        _ => &Value::Null,
                    })
                    .collect();
                let json = service::triggers::record_json(
                    o,
                    self.fields.iter().copied().zip(values.iter().copied()),
                );
                let stamp = match values.get(
                    self.fields
                        .iter()
                        .position(|i| *i == self.stamp)
                        .unwrap_or(0),
                ) {
                    Some(Value::DateTime(ms)) => format_datetime_z(*ms),
                    _ => return Err(format!("a {} record has no SystemModstamp", o.name)),
                };
                Ok(Row {
                    data: Json::Object(json),
                    at: Cursor {
                        value: stamp,
                        key: id_of(r.seq),
                    },
                })
            })
            .collect()
    }
}

//! Bulk API 1.0 batch data: reading a batch's records from CSV, JSON or XML into the rows an
//! [`IngestPlan`](super::IngestPlan) takes, and writing query results as CSV, JSON or XML.
//!
//! Records of JSON and XML batches need not name the same fields: the header is every field
//! any record names (first mention first), and a record that does not name a field leaves it
//! alone, like an empty CSV cell. `null` (JSON), `xsi:nil="true"` and `<fieldsToNull>` (XML)
//! and `#N/A` (CSV) set a field to null. A nested object (`{"Account": {"Ext__c": "A1"}}`,
//! `<Account><Ext__c>A1</Ext__c></Account>`) sets a reference by the parent's external id,
//! like a CSV column `Account.Ext__c`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use model::{ApiError, Id, OrgMarker, Value};
use quick_xml::escape::escape;
use quick_xml::events::Event;
use serde_json::Value as Json;
use soql::plan::{Column, Plan};
use store::{Cell as QCell, QueryRow, Store};

use super::csv::{split_fields, strip_bom, Dialect, RowReader};
use super::Cell;
use crate::xml::{local_name, reference_char};

/// The XML namespace of Bulk API 1.0 documents.
pub const NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";

/// Records in one batch at most (Salesforce's limit).
pub const MAX_BATCH_RECORDS: usize = 10_000;

/// A batch's data format (the job's `contentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `CSV`.
    Csv,
    /// `JSON`.
    Json,
    /// `XML`.
    Xml,
}

impl Format {
    /// Parses a job's `contentType`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "CSV" => Some(Format::Csv),
            "JSON" => Some(Format::Json),
            "XML" => Some(Format::Xml),
            _ => None,
        }
    }

    /// The `contentType` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
            Format::Xml => "XML",
        }
    }

    /// The HTTP `Content-Type` of data in this format (exact: clients compare it literally).
    pub fn mime(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Json => "application/json",
            Format::Xml => "application/xml",
        }
    }
}

/// One cell as read from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedCell {
    /// Not given: left alone.
    Empty,
    /// Set to null.
    Null,
    /// A value.
    Text(String),
}

impl OwnedCell {
    /// The cell as an ingest plan takes it.
    pub fn as_cell(&self) -> Cell<'_> {
        match self {
            OwnedCell::Empty => Cell::Empty,
            OwnedCell::Null => Cell::Null,
            OwnedCell::Text(s) => Cell::from_csv(s),
        }
    }
}

/// A batch's records: column names and one row of cells per record (in header order).
#[derive(Debug, Default, PartialEq)]
pub struct Records {
    /// Column names.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<OwnedCell>>,
}

impl Records {
    fn column(&mut self, name: &str) -> usize {
        if let Some(k) = self
            .header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
        {
            return k;
        }
        self.header.push(name.to_string());
        self.header.len() - 1
    }

    fn push(&mut self, cells: Vec<(String, OwnedCell)>) -> Result<(), String> {
        if self.rows.len() >= MAX_BATCH_RECORDS {
            return Err(too_many());
        }
        let mut row = Vec::new();
        for (name, cell) in cells {
            let k = self.column(&name);
            if row.len() <= k {
                row.resize(k + 1, OwnedCell::Empty);
            }
            row[k] = cell;
        }
        self.rows.push(row);
        Ok(())
    }

    /// Pads every row to the header's width.
    fn finish(mut self) -> Records {
        let n = self.header.len();
        for r in &mut self.rows {
            r.resize(n, OwnedCell::Empty);
        }
        self
    }
}

fn too_many() -> String {
    format!("ClientInputError : Exceeded max size limit of {MAX_BATCH_RECORDS} records in a batch")
}

/// Reads a batch's records. `Err` is the batch's state message.
pub fn read_records(format: Format, data: &[u8]) -> Result<Records, String> {
    match format {
        Format::Csv => read_csv(data),
        Format::Json => read_json(data),
        Format::Xml => read_xml(data),
    }
}

fn read_csv(data: &[u8]) -> Result<Records, String> {
    let data = strip_bom(data);
    let crlf = data
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i > 0 && data[i - 1] == b'\r');
    let d = Dialect {
        delimiter: b',',
        crlf,
    };
    let mut reader = RowReader::new(data, 0, d);
    let header: Vec<String> = {
        let Some((_, head)) = reader
            .next_row()
            .map_err(|e| format!("ClientInputError : {e}"))?
        else {
            return Err("InvalidBatch : The batch has no header row".into());
        };
        let mut names = Vec::new();
        split_fields(head, b',', &mut names);
        names.iter().map(|f| f.trim().to_string()).collect()
    };
    if header.iter().all(|h| h.is_empty()) {
        return Err("InvalidBatch : The batch has no header row".into());
    }
    let mut rows = Vec::new();
    while let Some((_, row)) = reader
        .next_row()
        .map_err(|e| format!("ClientInputError : {e}"))?
    {
        if row.is_empty() {
            continue;
        }
        if rows.len() >= MAX_BATCH_RECORDS {
            return Err(too_many());
        }
        let mut fields = Vec::new();
        split_fields(row, b',', &mut fields);
        if fields.len() > header.len() {
            return Err(format!(
                "InvalidBatch : Record {} has {} values but the header names {} columns",
                rows.len() + 1,
                fields.len(),
                header.len()
            ));
        }
        let mut cells: Vec<OwnedCell> = fields
            .iter()
            .map(|f| match f.as_ref() {
                "" => OwnedCell::Empty,
                "#N/A" => OwnedCell::Null,
                s => OwnedCell::Text(s.to_string()),
            })
            .collect();
        cells.resize(header.len(), OwnedCell::Empty);
        rows.push(cells);
    }
    Ok(Records { header, rows })
}

fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn read_json(data: &[u8]) -> Result<Records, String> {
    let data = strip_bom(data);
    let parsed: Json = serde_json::from_slice(data)
        .map_err(|e| format!("InvalidBatch : Failed to parse the JSON batch: {e}"))?;
    let Json::Array(items) = parsed else {
        return Err("InvalidBatch : A JSON batch is an array of records".into());
    };
    let mut out = Records::default();
    for (n, item) in items.iter().enumerate() {
        let Json::Object(fields) = item else {
            return Err(format!(
                "InvalidBatch : Record {} is not a JSON object",
                n + 1
            ));
        };
        let mut cells = Vec::new();
        for (name, v) in fields {
            if name == "attributes" {
                continue;
            }
            match v {
                Json::Null => cells.push((name.clone(), OwnedCell::Null)),
                Json::Object(parent) => {
                    for (pk, pv) in parent {
                        if pk == "attributes" {
                            continue;
                        }
                        let text = json_text(pv).ok_or_else(|| {
                            format!(
                                "InvalidBatch : Record {}: {name}.{pk} must be a value",
                                n + 1
                            )
                        })?;
                        cells.push((format!("{name}.{pk}"), OwnedCell::Text(text)));
                    }
                }
                Json::Array(_) => {
                    return Err(format!(
                        "InvalidBatch : Record {}: field {name} cannot be an array",
                        n + 1
                    ))
                }
                other => {
                    let text = json_text(other).unwrap_or_default();
                    let cell = if text.is_empty() {
                        OwnedCell::Empty
                    } else {
                        OwnedCell::Text(text)
                    };
                    cells.push((name.clone(), cell));
                }
            }
        }
        out.push(cells)?;
    }
    Ok(out.finish())
}

fn is_nil(e: &quick_xml::events::BytesStart<'_>) -> bool {
    e.attributes()
        .flatten()
        .any(|a| local_name(a.key.as_ref()) == "nil" && matches!(&*a.value, b"true" | b"1"))
}

fn read_xml(data: &[u8]) -> Result<Records, String> {
    let bad =
        |e: &dyn std::fmt::Display| format!("InvalidBatch : Failed to parse the XML batch: {e}");
    let mut r = quick_xml::Reader::from_reader(strip_bom(data));
    let mut out = Records::default();
    // Element names from the root down, and the text of the innermost one.
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut cells: Vec<(String, OwnedCell)> = Vec::new();
    let mut nil = false;
    let mut saw_root = false;
    let mut buf = Vec::new();
    loop {
        let ev = r.read_event_into(&mut buf).map_err(|e| bad(&e))?;
        match ev {
            Event::Start(e) => {
                let name = local_name(e.name().as_ref());
                if path.is_empty() {
                    if name != "sObjects" {
                        return Err(format!(
                            "InvalidBatch : The root element of an XML batch is sObjects, not {name}"
                        ));
                    }
                    saw_root = true;
                } else if path.len() == 1 && name != "sObject" {
                    return Err(format!(
                        "InvalidBatch : Unexpected element {name} in sObjects"
                    ));
                }
                nil = is_nil(&e);
                text.clear();
                path.push(name);
                if path.len() > 8 {
                    return Err(bad(&"elements nest too deeply"));
                }
            }
            Event::Empty(e) => {
                let name = local_name(e.name().as_ref());
                match path.len() {
                    0 => return Err("InvalidBatch : The XML batch has no records".into()),
                    1 if name == "sObject" => out.push(Vec::new())?,
                    2 => cells.push((
                        name,
                        if is_nil(&e) {
                            OwnedCell::Null
                        } else {
                            OwnedCell::Empty
                        },
                    )),
                    _ => {}
                }
            }
            Event::Text(t) => {
                text.push_str(&t.decode().map_err(|e| bad(&e))?);
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(g) => text.push(reference_char(&g).map_err(|m| bad(&m))?),
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err(bad(&"unbalanced end tag"));
                };
                match path.len() {
                    // </sObject>
                    1 => out.push(std::mem::take(&mut cells))?,
                    // A field of the record.
                    2 => {
                        if name == "fieldsToNull" {
                            cells.push((text.trim().to_string(), OwnedCell::Null));
                        } else if nil {
                            cells.push((name, OwnedCell::Null));
                        } else if !text.is_empty() {
                            cells.push((name, OwnedCell::Text(std::mem::take(&mut text))));
                        } else if !cells
                            .iter()
                            .any(|(n, _)| n.starts_with(&format!("{name}.")))
                        {
                            cells.push((name, OwnedCell::Empty));
                        }
                    }
                    // A field of a parent reference: <Account><Ext__c>A1</Ext__c></Account>.
                    3 => {
                        let parent = path[2].clone();
                        if !text.is_empty() {
                            cells.push((
                                format!("{parent}.{name}"),
                                OwnedCell::Text(std::mem::take(&mut text)),
                            ));
                        }
                    }
                    _ => {}
                }
                nil = false;
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root || !path.is_empty() {
        return Err(bad(&"the document is incomplete"));
    }
    Ok(out.finish())
}

/// Rows read from the store per page while writing query results.
const READ_PAGE: usize = 2_000;

/// Writes a query's results to `path` as JSON or XML records (CSV results are written by the
/// Bulk API 2.0 writer). Returns the number of records, or `None` when `keep_going` stopped it.
/// JSON dates and date-times are milliseconds since the epoch, as Bulk API 1.0 writes them.
pub fn write_query_results(
    store: &dyn Store,
    plan: &Plan,
    format: Format,
    version: u32,
    path: &Path,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Option<u64>, ApiError> {
    let io_err = |e: io::Error| {
        tracing::error!(error = %e, "writing bulk query results failed");
        ApiError::internal()
    };
    let marker = store.marker();
    let file = File::create(path).map_err(io_err)?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    let seqs = store.read(|tx| tx.query_ids(plan))?;
    match format {
        Format::Json => w.write_all(b"[").map_err(io_err)?,
        _ => w
            .write_all(
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><queryResult xmlns=\"{NS}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
                )
                .as_bytes(),
            )
            .map_err(io_err)?,
    }
    let mut rows = 0u64;
    let mut out = String::new();
    for page in seqs.chunks(READ_PAGE) {
        if !keep_going() {
            return Ok(None);
        }
        let got = store.read(|tx| tx.query_rows(plan, page))?;
        for r in &got {
            out.clear();
            match format {
                Format::Json => {
                    if rows > 0 {
                        out.push(',');
                    }
                    let rec = json_record(&plan.object, &plan.columns, r, marker, version);
                    out.push_str(&rec.to_string());
                }
                _ => {
                    out.push_str("<records xsi:type=\"sObject\">");
                    xml_record(&plan.object, &plan.columns, r, &mut out);
                    out.push_str("</records>");
                }
            }
            w.write_all(out.as_bytes()).map_err(io_err)?;
            rows += 1;
        }
    }
    match format {
        Format::Json => w.write_all(b"]").map_err(io_err)?,
        _ => w.write_all(b"</queryResult>").map_err(io_err)?,
    }
    let file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    Ok(Some(rows))
}

fn json_value(v: &Value) -> Json {
    match v {
        Value::DateTime(ms) => Json::from(*ms),
        Value::Date(d) => Json::from(
            d.and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis())
                .unwrap_or_default(),
        ),
        other => other.to_json(),
    }
}

fn json_record(
    o: &model::ObjectDef,
    columns: &[Column],
    r: &QueryRow,
    marker: OrgMarker,
    version: u32,
) -> Json {
    let id = Id::new(o.key_prefix, marker, r.seq);
    let mut m = serde_json::Map::new();
    m.insert(
        "attributes".into(),
        serde_json::json!({
            "type": o.name,
            "url": format!("/services/data/v{version}.0/sobjects/{}/{}", o.name, id.to_18()),
        }),
    );
    for (c, cell) in columns.iter().zip(&r.cells) {
        match (c, cell) {
            (
                Column::Parent {
                    key,
                    object,
                    columns,
                    ..
                },
                QCell::Parent(p),
            ) => {
                let v = match p {
                    Some(p) => json_record(object, columns, p, marker, version),
                    None => Json::Null,
                };
                m.insert(key.clone(), v);
            }
            (Column::Children { .. }, _) => {}
            (c, QCell::Value(v)) => {
                m.insert(c.key().to_string(), json_value(v));
            }
            (c, _) => {
                m.insert(c.key().to_string(), Json::Null);
            }
        }
    }
    Json::Object(m)
}

fn xml_record(o: &model::ObjectDef, columns: &[Column], r: &QueryRow, out: &mut String) {
    out.push_str("<type>");
    out.push_str(&escape(o.name.as_str()));
    out.push_str("</type>");
    for (c, cell) in columns.iter().zip(&r.cells) {
        let key = c.key();
        match (c, cell) {
            (
                Column::Parent {
                    object, columns, ..
                },
                QCell::Parent(Some(p)),
            ) => {
                out.push_str(&format!("<{key} xsi:type=\"sObject\">"));
                xml_record(object, columns, p, out);
                out.push_str(&format!("</{key}>"));
            }
            (Column::Children { .. }, _) => {}
            (_, QCell::Value(v)) if !v.is_null() => {
                out.push_str(&format!("<{key}>{}</{key}>", escape(v.to_text().as_str())));
            }
            _ => out.push_str(&format!("<{key} xsi:nil=\"true\"/>")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(r: &Records) -> Vec<Vec<String>> {
        r.rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| match c {
                        OwnedCell::Empty => "<empty>".to_string(),
                        OwnedCell::Null => "<null>".to_string(),
                        OwnedCell::Text(s) => s.clone(),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn csv_batches_take_either_line_ending_and_na_nulls() {
        for data in [
            &b"Name,Phone\r\n\"a, b\",#N/A\r\nc,\r\n"[..],
            b"\xEF\xBB\xBFName,Phone\n\"a, b\",#N/A\nc,\n",
        ] {
            let r = read_records(Format::Csv, data).unwrap();
            assert_eq!(r.header, ["Name", "Phone"]);
            assert_eq!(texts(&r), [["a, b", "<null>"], ["c", "<empty>"]]);
        }
        assert!(read_records(Format::Csv, b"Name\na,b\n").is_err());
        assert!(read_records(Format::Csv, b"").is_err());
    }

    #[test]
    fn json_batches_union_their_fields_and_nest_parents() {
        let r = read_records(
            Format::Json,
            br#"[{"Name":"a","NumberOfEmployees":3},{"Phone":null,"Parent":{"Ext__c":"P1"},"IsActive":true}]"#,
        )
        .unwrap();
        assert_eq!(
            r.header,
            [
                "Name",
                "NumberOfEmployees",
                "Phone",
                "Parent.Ext__c",
                "IsActive"
            ]
        );
        assert_eq!(
            texts(&r),
            [
                vec!["a", "3", "<empty>", "<empty>", "<empty>"],
                vec!["<empty>", "<empty>", "<null>", "P1", "true"]
            ]
        );
        for bad in [&b"{}"[..], b"[1]", b"[{\"A\":[1]}]", b"[{"] {
            assert!(read_records(Format::Json, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xml_batches_read_nils_fields_to_null_and_parents() {
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<sObjects xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <sObject><Name>a &amp; b</Name><Phone xsi:nil="true"/><fieldsToNull>Title</fieldsToNull></sObject>
  <sObject><Name><![CDATA[<c>]]></Name><Account><Ext__c>A1</Ext__c></Account></sObject>
</sObjects>"#
        );
        let r = read_records(Format::Xml, doc.as_bytes()).unwrap();
        assert_eq!(r.header, ["Name", "Phone", "Title", "Account.Ext__c"]);
        assert_eq!(
            texts(&r),
            [
                vec!["a & b", "<null>", "<null>", "<empty>"],
                vec!["<c>", "<empty>", "<empty>", "A1"]
            ]
        );
        for bad in [
            &b"<records/>"[..],
            b"<sObjects><sObject><Name>x</sObject>",
            b"<sObjects>",
        ] {
            assert!(read_records(Format::Xml, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batches_over_the_record_limit_fail() {
        let mut csv = b"Name\n".to_vec();
        for i in 0..=MAX_BATCH_RECORDS {
            csv.extend_from_slice(format!("n{i}\n").as_bytes());
        }
        assert!(read_records(Format::Csv, &csv)
            .unwrap_err()
            .contains("10000"));
    }
}

//! CSV and JSON-lines files. As a source, a file is read as an append-only log: the cursor is
//! the number of data rows already read, so each run reads the rows appended since (after
//! `reset`, all of them). As a target, rows are appended (CSV with a header when the file is
//! new) and flushed to disk before the cursor moves; a crash between the two appends the batch
//! again, so a file target is at least once.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use serde_json::{Map, Value as Json};

use crate::postgres::Row;
use crate::targets::Outcome;
use crate::{Cursor, Record};

/// `csv` or `jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row; every value is text (empty is null).
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// From a job file's `format` (default: by the file's extension).
    pub fn parse(format: Option<&str>, path: &str) -> Result<Format, String> {
        match format.unwrap_or_else(|| {
            if path.ends_with(".csv") {
                "csv"
            } else {
                "jsonl"
            }
        }) {
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" | "json-lines" => Ok(Format::JsonLines),
            other => Err(format!("format {other:?} is not csv or jsonl")),
        }
    }
}

/// Reads up to `limit` data rows after row number `after` (1-based numbers; the key is the
/// number too).
pub fn page(
    path: &str,
    format: Format,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<Vec<Row>, String> {
    let skip: u64 = match after {
        Some(c) => c
            .value
            .parse()
            .map_err(|_| format!("the cursor {} is not a row number", c.value))?,
        None => 0,
    };
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut out = Vec::new();
    let at = |n: u64| Cursor {
        value: n.to_string(),
        key: format!("{n:012}"),
    };
    match format {
        Format::JsonLines => {
            let mut n = 0u64;
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|e| format!("reading {path}: {e}"))?;
                if line.trim().is_empty() {
                    continue;
                }
                n += 1;
                if n <= skip {
                    continue;
                }
                let data: Json = serde_json::from_str(&line)
                    .map_err(|e| format!("{path}, row {n}: not JSON: {e}"))?;
                out.push(Row { data, at: at(n) });
                if out.len() == limit {
                    break;
                }
            }
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(file);
            let header: Vec<String> = r
                .headers()
                .map_err(|e| format!("reading {path}: {e}"))?
                .iter()
                .map(str::to_string)
                .collect();
            for (i, rec) in r.records().enumerate() {
                let n = i as u64 + 1;
                let rec = rec.map_err(|e| format!("{path}, row {n}: {e}"))?;
                if n <= skip {
                    continue;
                }
                let data: Map<String, Json> = header
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| {
                        (
                            h.clone(),
                            if v.is_empty() {
                                Json::Null
                            } else {
                                Json::String(v.to_string())
                            },
                        )
                    })
                    .collect();
                out.push(Row {
                    data: Json::Object(data),
                    at: at(n),
                });
                if out.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Appends rows to a file (creating it, with a CSV header of `columns`).
pub fn append(
    path: &str,
    format: Format,
    columns: &[String],
    rows: &[&Record],
) -> Result<Vec<Outcome>, String> {
    let p = PathBuf::from(path);
    // The files folder (and any folder the path names in it) is made on first use.
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let new = std::fs::metadata(&p).map(|m| m.len() == 0).unwrap_or(true);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut buf = Vec::new();
    match format {
        Format::JsonLines => {
            for r in rows {
                serde_json::to_writer(&mut buf, r).map_err(|e| e.to_string())?;
                buf.push(b'\n');
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut buf);
            if new {
                w.write_record(columns).map_err(|e| e.to_string())?;
            }
            for r in rows {
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| match r.get(c) {
                        None | Some(Json::Null) => String::new(),
                        Some(Json::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    })
                    .collect();
                w.write_record(&values).map_err(|e| e.to_string())?;
            }
            w.flush().map_err(|e| e.to_string())?;
        }
    }
    f.write_all(&buf)
        .and_then(|()| f.sync_data())
        .map_err(|e| format!("writing {path}: {e}"))?;
    Ok(rows.iter().map(|_| Ok(())).collect())
}

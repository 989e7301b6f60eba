//! The MySQL / MariaDB source: the same `(cursor, key)` paging and overlap window as the
//! PostgreSQL source, over the binary protocol so values keep their types.

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row as MyRow, Value};
use serde_json::{Map, Value as Json};
use tokio::sync::Mutex;

use crate::postgres::Row;
use crate::Cursor;

/// An open MySQL / MariaDB source.
pub struct Source {
    conn: Mutex<Conn>,
    table: String,
    cursor: String,
    key: String,
    timed: bool,
    overlap_secs: u64,
}

/// `name` as a quoted identifier (`db.table` → `` `db`.`table` ``).
pub(crate) fn quote(name: &str) -> String {
    name.split('.')
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

impl Source {
    /// Connects (`mysql://user:password@host:port/database`) and checks the columns.
    pub async fn open(
        url: &str,
        table: &str,
        cursor: &str,
        key: &str,
        overlap_secs: u64,
    ) -> Result<Source, String> {
        let opts = Opts::from_url(url).map_err(|e| format!("the source url: {e}"))?;
        let mut conn = Conn::new(opts).await.map_err(|e| {
            format!("cannot connect to MySQL/MariaDB ({e}); is it running at that address?")
        })?;
        let qtable = quote(table);
        let cols: Vec<MyRow> = conn
            .query(format!("SHOW COLUMNS FROM {qtable}"))
            .await
            .map_err(|e| format!("cannot read the table {table}: {e}"))?;
        let ty_of = |name: &str| -> Option<String> {
            cols.iter().find_map(|r| {
                let field: String = r.get(0)?;
                let ty: String = r.get(1)?;
                (field == name).then_some(ty)
            })
        };
        let cursor_ty =
            ty_of(cursor).ok_or_else(|| format!("the table {table} has no column {cursor}"))?;
        ty_of(key).ok_or_else(|| format!("the table {table} has no column {key}"))?;
        let t = cursor_ty.to_ascii_lowercase();
        Ok(Source {
            conn: Mutex::new(conn),
            table: qtable,
            cursor: quote(cursor),
            key: quote(key),
            timed: t.starts_with("datetime") || t.starts_with("timestamp") || t == "date",
            overlap_secs,
        })
    }

    /// Up to `limit` rows after `after` in `(cursor, key)` order (see the PostgreSQL source).
    pub async fn page(
        &self,
        after: Option<&Cursor>,
        rewind: bool,
        limit: usize,
    ) -> Result<Vec<Row>, String> {
        let (c, k, t) = (&self.cursor, &self.key, &self.table);
        let select =
            format!("SELECT s.*, CAST(s.{c} AS CHAR) AS `__cursor`, CAST(s.{k} AS CHAR) AS `__key` FROM {t} s");
        let order = format!("ORDER BY s.{c}, s.{k} LIMIT {limit}");
        let mut conn = self.conn.lock().await;
        let rows: Vec<MyRow> = match after {
            None => {
                conn.exec(format!("{select} WHERE s.{c} IS NOT NULL {order}"), ())
                    .await
            }
            Some(at) if rewind && self.timed && self.overlap_secs > 0 => {
                conn.exec(
                    format!(
                        "{select} WHERE s.{c} >= CAST(? AS DATETIME(6)) - INTERVAL ? SECOND {order}"
                    ),
                    (at.value.clone(), self.overlap_secs),
                )
                .await
            }
            Some(at) => {
                conn.exec(
                    format!("{select} WHERE s.{c} > ? OR (s.{c} = ? AND s.{k} > ?) {order}"),
                    (at.value.clone(), at.value.clone(), at.key.clone()),
                )
                .await
            }
        }
        .map_err(|e| format!("reading {}: {e}", self.table))?;
        rows.into_iter().map(to_row).collect()
    }
}

fn to_row(mut r: MyRow) -> Result<Row, String> {
    let cols = r.columns();
    let n = cols.len();
    let mut data = Map::new();
    let mut cursor = String::new();
    let mut key = String::new();
    for i in 0..n {
        let col = &cols[i];
        let name = col.name_str().to_string();
        let v: Value = r.take(i).unwrap_or(Value::NULL);
        let j = to_json(v, col.column_type());
        match name.as_str() {
            "__cursor" => cursor = j.as_str().map(str::to_string).unwrap_or_default(),
            "__key" => key = j.as_str().map(str::to_string).unwrap_or_default(),
            _ => {
                data.insert(name, j);
            }
        }
    }
    Ok(Row {
        data: Json::Object(data),
        at: Cursor { value: cursor, key },
    })
}

fn to_json(v: Value, ty: ColumnType) -> Json {
    match v {
        Value::NULL => Json::Null,
        Value::Int(i) => Json::from(i),
        Value::UInt(u) => Json::from(u),
        Value::Float(f) => {
            serde_json::Number::from_f64(f64::from(f)).map_or(Json::Null, Json::Number)
        }
        Value::Double(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        Value::Bytes(b) => {
            let s = String::from_utf8_lossy(&b).into_owned();
            match ty {
                ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::String(s), Json::Number),
                _ => Json::String(s),
            }
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            if ty == ColumnType::MYSQL_TYPE_DATE {
                Json::String(format!("{y:04}-{mo:02}-{d:02}"))
            } else {
                Json::String(format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                    us / 1000
                ))
            }
        }
        Value::Time(neg, d, h, mi, s, _) => Json::String(format!(
            "{}{:02}:{mi:02}:{s:02}",
            if neg { "-" } else { "" },
            d * 24 + u32::from(h)
        )),
    }
}

//! The PostgreSQL source: reads a table in `(cursor, key)` order after a compound cursor, so
//! rows sharing a cursor value are never skipped, re-reading an overlap window before the
//! committed cursor so rows committed late with an older value are not missed either.

use serde_json::Value as Json;
use tokio_postgres::{Client, NoTls};

use crate::Cursor;

/// One source row: its JSON form and its position.
#[derive(Debug, Clone)]
pub struct Row {
    /// The row (`to_jsonb`).
    pub data: Json,
    /// Where it sits in read order.
    pub at: Cursor,
}

/// An open PostgreSQL source.
pub struct Source {
    client: Client,
    /// `"schema"."table"`, quoted.
    table: String,
    cursor: String,
    key: String,
    /// The SQL types of the cursor and key columns (for casting the stored cursor back).
    types: (String, String),
    overlap_secs: u64,
}

/// `name` as a quoted SQL identifier (`schema.table` → `"schema"."table"`).
pub(crate) fn quote(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

impl Source {
    /// Connects and reads the types of the cursor and key columns.
    pub async fn open(
        url: &str,
        table: &str,
        cursor: &str,
        key: &str,
        overlap_secs: u64,
    ) -> Result<Source, String> {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(|e| {
            format!("cannot connect to PostgreSQL ({e}); is it running at that address?")
        })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        let qtable = quote(table);
        let mut types = Vec::new();
        for col in [cursor, key] {
            let row = client
                .query_opt(
                    "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                     WHERE a.attrelid = $1::text::regclass AND a.attname = $2 AND NOT a.attisdropped",
                    &[&qtable, &col],
                )
                .await
                .map_err(|e| format!("cannot read the table {table}: {e}"))?
                .ok_or_else(|| format!("the table {table} has no column {col}"))?;
            types.push(row.get::<_, String>(0));
        }
        Ok(Source {
            client,
            table: qtable,
            cursor: quote(cursor),
            key: quote(key),
            types: (types[0].clone(), types[1].clone()),
            overlap_secs,
        })
    }

    /// Whether the cursor column is a point in time (the overlap window applies).
    fn timed(&self) -> bool {
        self.types.0.starts_with("timestamp") || self.types.0 == "date"
    }

    /// Up to `limit` rows after `after` in `(cursor, key)` order. With `rewind`, the rows of
    /// the overlap window before `after`'s cursor value are read again.
    pub async fn page(
        &self,
        after: Option<&Cursor>,
        rewind: bool,
        limit: usize,
    ) -> Result<Vec<Row>, String> {
        let (c, k, t) = (&self.cursor, &self.key, &self.table);
        let (tc, tk) = (&self.types.0, &self.types.1);
        let select = format!("SELECT to_jsonb(s)::text, s.{c}::text, s.{k}::text FROM {t} s");
        let order = format!("ORDER BY s.{c}, s.{k} LIMIT {limit}");
        let rows = match after {
            None => self
                .client
                .query(&format!("{select} WHERE s.{c} IS NOT NULL {order}"), &[])
                .await,
            Some(at) if rewind && self.timed() && self.overlap_secs > 0 => {
                let secs = self.overlap_secs as f64;
                self.client
                    .query(
                        &format!(
                            "{select} WHERE s.{c} >= ($1::text)::{tc} - make_interval(secs => $2) {order}"
                        ),
                        &[&at.value, &secs],
                    )
                    .await
            }
            Some(at) => {
                self.client
                    .query(
                        &format!(
                            "{select} WHERE (s.{c}, s.{k}) > (($1::text)::{tc}, ($2::text)::{tk}) {order}"
                        ),
                        &[&at.value, &at.key],
                    )
                    .await
            }
        }
        .map_err(|e| format!("reading {}: {e}", self.table))?;
        rows.iter()
            .map(|r| {
                let text: String = r.get(0);
                Ok(Row {
                    data: serde_json::from_str(&text).map_err(|e| e.to_string())?,
                    at: Cursor {
                        value: r.get(1),
                        key: r.get(2),
                    },
                })
            })
            .collect()
    }

    /// The rows whose key is one of `keys`.
    pub async fn by_keys(&self, keys: &[String]) -> Result<Vec<Row>, String> {
        let (c, k, t) = (&self.cursor, &self.key, &self.table);
        let tk = &self.types.1;
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT to_jsonb(s)::text, s.{c}::text, s.{k}::text FROM {t} s \
                     WHERE s.{k} = ANY(($1::text[])::{tk}[])"
                ),
                &[&keys],
            )
            .await
            .map_err(|e| format!("reading {}: {e}", self.table))?;
        rows.iter()
            .map(|r| {
                let text: String = r.get(0);
                Ok(Row {
                    data: serde_json::from_str(&text).map_err(|e| e.to_string())?,
                    at: Cursor {
                        value: r.get::<_, Option<String>>(1).unwrap_or_default(),
                        key: r.get(2),
                    },
                })
            })
            .collect()
    }
}

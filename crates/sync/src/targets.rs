//! Database targets: rows upserted by key into a PostgreSQL or MySQL/MariaDB table, one
//! transaction per batch, each row in a savepoint so a refused row fails alone. Upserts make a
//! batch written again (after a crash between the target's commit and the cursor's) harmless.

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;
use tokio::sync::Mutex;

/// A row's outcome: written, or refused with the database's reason.
pub type Outcome = Result<(), String>;

use crate::json_text as text;

/// Runs one statement in a savepoint of `tx`: its row count, or the database's reason with the
/// statement undone (the transaction goes on). `Err` only when the savepoint itself fails.
async fn in_savepoint(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Result<u64, String>, String> {
    let pg = |e: tokio_postgres::Error| format!("PostgreSQL: {e}");
    tx.batch_execute("SAVEPOINT row").await.map_err(pg)?;
    match tx.execute(sql, params).await {
        Ok(n) => {
            tx.batch_execute("RELEASE SAVEPOINT row")
                .await
                .map_err(pg)?;
            Ok(Ok(n))
        }
        Err(e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT row")
                .await
                .map_err(pg)?;
            Ok(Err(e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string())))
        }
    }
}

/// An open PostgreSQL target.
pub struct Postgres {
    client: Mutex<tokio_postgres::Client>,
    table: String,
    key: String,
    /// Column → SQL type.
    types: std::collections::HashMap<String, String>,
}

impl Postgres {
    /// Connects and reads the table's column types.
    pub async fn open(url: &str, table: &str, key: &str) -> Result<Postgres, String> {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                format!("cannot connect to PostgreSQL ({e}); is it running at that address?")
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let qtable = crate::postgres::quote(table);
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                &[&qtable],
            )
            .await
            .map_err(|e| format!("cannot read the table {table}: {e}"))?;
        let types: std::collections::HashMap<String, String> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if !types.contains_key(key) {
            return Err(format!("the table {table} has no column {key}"));
        }
        Ok(Postgres {
            client: Mutex::new(client),
            table: qtable,
            key: key.to_string(),
            types,
        })
    }

    /// Every key in the table, as text.
    pub async fn keys(&self) -> Result<Vec<String>, String> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                &format!(
                    "SELECT {}::text FROM {} WHERE {} IS NOT NULL",
                    crate::postgres::quote(&self.key),
                    self.table,
                    crate::postgres::quote(&self.key)
                ),
                &[],
            )
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Upserts the rows in one transaction.
    pub async fn write(
        &self,
        rows: &[&serde_json::Map<String, Json>],
    ) -> Result<Vec<Outcome>, String> {
        self.apply(rows, false).await
    }

    /// Deletes the rows with these keys, in one transaction; one outcome per key.
    pub async fn delete(&self, keys: &[String]) -> Result<Vec<Outcome>, String> {
        let mut client = self.client.lock().await;
        let tx = client
            .transaction()
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        let sql = format!(
            "DELETE FROM {} WHERE {} = ($1::text)::{}",
            self.table,
            crate::postgres::quote(&self.key),
            self.types[&self.key]
        );
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(in_savepoint(&tx, &sql, &[k]).await?.map(|_| ()));
        }
        tx.commit()
            .await
            .map_err(|e| format!("PostgreSQL commit: {e}"))?;
        Ok(out)
    }

    /// The values of `columns` of every row, as text (null when null).
    pub async fn tuples(&self, columns: &[String]) -> Result<Vec<Vec<Json>>, String> {
        let client = self.client.lock().await;
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("{}::text", crate::postgres::quote(c)))
            .collect();
        let rows = client
            .query(
                &format!("SELECT {} FROM {}", list.join(", "), self.table),
                &[],
            )
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..columns.len())
                    .map(|i| {
                        r.get::<_, Option<String>>(i)
                            .map_or(Json::Null, Json::String)
                    })
                    .collect()
            })
            .collect())
    }

    /// Updates the columns each row names of the existing row with its key, in one
    /// transaction (a row no longer there is refused).
    pub async fn update(
        &self,
        rows: &[&serde_json::Map<String, Json>],
    ) -> Result<Vec<Outcome>, String> {
        self.apply(rows, true).await
    }

    async fn apply(
        &self,
        rows: &[&serde_json::Map<String, Json>],
        update: bool,
    ) -> Result<Vec<Outcome>, String> {
        let mut client = self.client.lock().await;
        let tx = client
            .transaction()
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let cols: Vec<&String> = row.keys().collect();
            if let Some(c) = cols.iter().find(|c| !self.types.contains_key(c.as_str())) {
                out.push(Err(format!("the table {} has no column {c}", self.table)));
                continue;
            }
            let values: Vec<Option<String>> = cols.iter().map(|c| text(&row[c.as_str()])).collect();
            let cast = |i: usize, c: &str| format!("(${}::text)::{}", i + 1, self.types[c]);
            let sql = if update {
                let Some(k) = cols.iter().position(|c| **c == self.key) else {
                    out.push(Err(format!("the row has no {}", self.key)));
                    continue;
                };
                format!(
                    "UPDATE {t} SET {sets} WHERE {key} = {kv}",
                    t = self.table,
                    sets = cols
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != k)
                        .map(|(i, c)| format!("{} = {}", crate::postgres::quote(c), cast(i, c)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    key = crate::postgres::quote(&self.key),
                    kv = cast(k, &self.key),
                )
            } else {
                format!(
                    "INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) DO UPDATE SET {sets}",
                    t = self.table,
                    cols = cols
                        .iter()
                        .map(|c| crate::postgres::quote(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    vals = cols
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("(${}::text)::{}", i + 1, self.types[c.as_str()]))
                        .collect::<Vec<_>>()
                        .join(", "),
                    key = crate::postgres::quote(&self.key),
                    sets = cols
                        .iter()
                        .map(|c| format!("{q} = EXCLUDED.{q}", q = crate::postgres::quote(c)))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            };
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            out.push(match in_savepoint(&tx, &sql, &params).await? {
                Ok(0) if update => Err("the row is no longer in the table".into()),
                Ok(_) => Ok(()),
                Err(m) => Err(m),
            });
        }
        tx.commit()
            .await
            .map_err(|e| format!("PostgreSQL commit: {e}"))?;
        Ok(out)
    }
}

/// An open MySQL/MariaDB target.
pub struct Mysql {
    conn: Mutex<mysql_async::Conn>,
    table: String,
    columns: Vec<String>,
    key: String,
}

impl Mysql {
    /// Connects and reads the table's columns.
    pub async fn open(url: &str, table: &str, key: &str) -> Result<Mysql, String> {
        let opts = mysql_async::Opts::from_url(url).map_err(|e| format!("the target url: {e}"))?;
        let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| {
            format!("cannot connect to MySQL/MariaDB ({e}); is it running at that address?")
        })?;
        let qtable = crate::mysql::quote(table);
        let cols: Vec<mysql_async::Row> =
            conn.query(format!("SHOW COLUMNS FROM {qtable}"))
                .await
                .map_err(|e| format!("cannot read the table {table}: {e}"))?;
        let columns: Vec<String> = cols.iter().filter_map(|r| r.get::<String, _>(0)).collect();
        if !columns.iter().any(|c| c == key) {
            return Err(format!("the table {table} has no column {key}"));
        }
        Ok(Mysql {
            conn: Mutex::new(conn),
            table: qtable,
            columns,
            key: key.to_string(),
        })
    }

    /// The values of `columns` of every row, as text (null when null).
    pub async fn tuples(&self, columns: &[String]) -> Result<Vec<Vec<Json>>, String> {
        let mut conn = self.conn.lock().await;
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST({} AS CHAR)", crate::mysql::quote(c)))
            .collect();
        let rows: Vec<mysql_async::Row> = conn
            .query(format!("SELECT {} FROM {}", list.join(", "), self.table))
            .await
            .map_err(|e| format!("MySQL: {e}"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (0..columns.len())
                    .map(|i| {
                        r.get::<Option<String>, _>(i)
                            .flatten()
                            .map_or(Json::Null, Json::String)
                    })
                    .collect()
            })
            .collect())
    }

    /// Every key in the table, as text.
    pub async fn keys(&self) -> Result<Vec<String>, String> {
        let mut conn = self.conn.lock().await;
        let k = crate::mysql::quote(&self.key);
        conn.query::<String, _>(format!(
            "SELECT CAST({k} AS CHAR) FROM {} WHERE {k} IS NOT NULL",
            self.table
        ))
        .await
        .map_err(|e| format!("MySQL: {e}"))
    }

    /// Upserts the rows in one transaction (`ON DUPLICATE KEY UPDATE`).
    pub async fn write(
        &self,
        rows: &[&serde_json::Map<String, Json>],
    ) -> Result<Vec<Outcome>, String> {
        let mut conn = self.conn.lock().await;
        let my = |e: mysql_async::Error| format!("MySQL: {e}");
        conn.query_drop("START TRANSACTION").await.map_err(my)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let cols: Vec<&String> = row.keys().collect();
            if let Some(c) = cols.iter().find(|c| !self.columns.contains(c)) {
                out.push(Err(format!("the table {} has no column {c}", self.table)));
                continue;
            }
            let values: Vec<mysql_async::Value> = cols
                .iter()
                .map(|c| match text(&row[c.as_str()]) {
                    Some(s) => mysql_async::Value::from(s),
                    None => mysql_async::Value::NULL,
                })
                .collect();
            let sql = format!(
                "INSERT INTO {t} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {sets}",
                t = self.table,
                cols = cols
                    .iter()
                    .map(|c| crate::mysql::quote(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                marks = vec!["?"; cols.len()].join(", "),
                sets = cols
                    .iter()
                    .map(|c| format!("{q} = VALUES({q})", q = crate::mysql::quote(c)))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            conn.query_drop("SAVEPOINT row").await.map_err(my)?;
            match conn.exec_drop(sql, values).await {
                Ok(()) => {
                    conn.query_drop("RELEASE SAVEPOINT row").await.map_err(my)?;
                    out.push(Ok(()));
                }
                Err(mysql_async::Error::Server(e)) => {
                    conn.query_drop("ROLLBACK TO SAVEPOINT row")
                        .await
                        .map_err(my)?;
                    out.push(Err(e.message));
                }
                Err(e) => return Err(my(e)),
            }
        }
        conn.query_drop("COMMIT").await.map_err(my)?;
        Ok(out)
    }
}

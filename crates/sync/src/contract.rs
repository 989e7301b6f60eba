//! The contract test every connector passes: rows written through its [`Target`] are read back
//! through its [`Source`] exactly once across pages of any size, in strictly increasing
//! position; reading on from the last cursor finds exactly what was written since; a key written
//! again replaces its row (upserting connectors) or is appended (logs); a refused row fails
//! alone. `crates/conflux/tests/it/contract.rs` runs it against every connector kind on real
//! systems (PostgreSQL, MariaDB, this org, a second Conflux, files, an HTTP JSON API).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::connector::{Source, Target};
use crate::postgres::Row;
use crate::{Cursor, Record};

/// Makes the record to write for `(key, name, tick)`.
pub type MakeRecord = Box<dyn Fn(&str, &str, u32) -> Record + Send + Sync>;
/// Reads `(key, name)` back from a source row.
pub type ReadBack = Box<dyn Fn(&Row) -> (String, String) + Send + Sync>;

/// A connector set up on an empty dataset.
pub struct Fixture {
    /// What it is (for messages).
    pub name: String,
    /// Reads the dataset.
    pub source: Box<dyn Source>,
    /// Writes it.
    pub target: Box<dyn Target>,
    /// The record to write for `(key, name, tick)`: rows with the same tick share a cursor
    /// value where the writer chooses it, a higher tick is later.
    pub record: MakeRecord,
    /// The `(key, name)` of a row read back.
    pub read: ReadBack,
    /// A key written again replaces its row (false: rows are appended, as to a log).
    pub upserts: bool,
    /// A record the target refuses, if the connector can refuse one.
    pub refused: Option<Record>,
}

/// Whether `a` sorts before `b` in read order (cursor value, then key; numbers, instants or
/// text).
fn before(a: &Cursor, b: &Cursor) -> bool {
    crate::http::compare(&a.value, &b.value).then_with(|| crate::http::compare(&a.key, &b.key))
        == Ordering::Less
}

/// Every row after `after`, in pages of `size`, checking that positions strictly increase.
async fn read_all(
    f: &Fixture,
    after: Option<&Cursor>,
    size: usize,
) -> Result<(Vec<(String, String)>, Option<Cursor>), String> {
    let mut at = after.cloned();
    let mut out = Vec::new();
    loop {
        let page = f.source.page(at.as_ref(), false, size).await?;
        if page.len() > size {
            return Err(format!("a page of {size} held {} rows", page.len()));
        }
        for r in &page {
            if let Some(prev) = &at {
                if !before(prev, &r.at) {
                    return Err(format!("row {:?} does not come after {prev:?}", r.at));
                }
            }
            out.push((f.read)(r));
            at = Some(r.at.clone());
        }
        if page.len() < size {
            return Ok((out, at));
        }
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Runs the contract against `f`; the first broken rule.
pub async fn check(f: &Fixture) -> Result<(), String> {
    let n = &f.name;
    let (empty, _) = read_all(f, None, 10).await?;
    ensure(empty.is_empty(), || {
        format!("{n}: the dataset is not empty: {empty:?}")
    })?;

    // 23 rows, five to a cursor value: ties cross page boundaries.
    let first: Vec<Record> = (0..23)
        .map(|i| (f.record)(&format!("k{i:02}"), "first", i / 5))
        .collect();
    let refs: Vec<&Record> = first.iter().collect();
    let outcomes = f.target.write(&refs).await?;
    ensure(outcomes.len() == 23, || {
        format!("{n}: {} outcomes for 23 rows", outcomes.len())
    })?;
    if let Some(e) = outcomes.iter().find_map(|o| o.as_ref().err()) {
        return Err(format!("{n}: a good row was refused: {e}"));
    }
    for size in [4, 5, 23, 100] {
        let (rows, _) = read_all(f, None, size).await?;
        let keys: BTreeSet<&String> = rows.iter().map(|(k, _)| k).collect();
        ensure(rows.len() == 23 && keys.len() == 23, || {
            format!(
                "{n}: pages of {size} read {} rows ({} keys), not 23",
                rows.len(),
                keys.len()
            )
        })?;
        ensure(rows.iter().all(|(_, v)| v == "first"), || {
            format!("{n}: names changed: {rows:?}")
        })?;
    }
    let (_, last) = read_all(f, None, 4).await?;
    let (more, _) = read_all(f, last.as_ref(), 4).await?;
    ensure(more.is_empty(), || {
        format!("{n}: read again after the last cursor: {more:?}")
    })?;

    // A key written again, a new key and (where it can) a refused row, in one batch.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut second = vec![
        (f.record)("k05", "second", 10),
        (f.record)("k30", "new", 10),
    ];
    if let Some(bad) = &f.refused {
        second.push(bad.clone());
    }
    let refs: Vec<&Record> = second.iter().collect();
    let outcomes = f.target.write(&refs).await?;
    ensure(outcomes.len() == second.len(), || {
        format!("{n}: {} outcomes for {} rows", outcomes.len(), second.len())
    })?;
    ensure(outcomes[0].is_ok() && outcomes[1].is_ok(), || {
        format!("{n}: good rows refused: {outcomes:?}")
    })?;
    if f.refused.is_some() {
        ensure(outcomes[2].is_err(), || {
            format!("{n}: the bad row was accepted")
        })?;
    }
    let (since, _) = read_all(f, last.as_ref(), 4).await?;
    let got: BTreeMap<String, String> = since.iter().cloned().collect();
    let want: BTreeMap<String, String> = [("k05", "second"), ("k30", "new")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ensure(got == want && since.len() == 2, || {
        format!("{n}: after the cursor: {since:?}, not k05 and k30")
    })?;

    // Everything again: replaced, or appended.
    let (all, _) = read_all(f, None, 7).await?;
    if f.upserts {
        let by_key: BTreeMap<&String, &String> = all.iter().map(|(k, v)| (k, v)).collect();
        ensure(all.len() == 24 && by_key.len() == 24, || {
            format!("{n}: {} rows after an upsert, not 24: {all:?}", all.len())
        })?;
        ensure(by_key[&"k05".to_string()] == "second", || {
            format!("{n}: k05 was not replaced")
        })?;
    } else {
        ensure(all.len() == 25, || {
            format!("{n}: {} rows in the log, not 25", all.len())
        })?;
    }
    // Targets that cannot list their keys (files, HTTP APIs) answer None.
    if let Some(keys) = f.target.keys().await? {
        let keys: BTreeSet<String> = keys.into_iter().collect();
        let want: BTreeSet<String> = (0..23)
            .map(|i| format!("k{i:02}"))
            .chain(["k30".to_string()])
            .collect();
        ensure(keys == want, || {
            format!("{n}: the target's keys are {keys:?}")
        })?;
    }
    Ok(())
}

//! An HTTP JSON API as a source or a target. As a source, the API's pages are followed (a jq
//! expression finds each response's records, another the next page's URL) from the committed
//! cursor's value, given in a query parameter when the API filters by it; the records are put in
//! `(cursor, key)` order and served from there, so ties and a changing page layout never skip or
//! repeat a record. As a target, each row is sent as a JSON body to a URL made from the row's
//! columns (`/customers/{id}`), a 2xx answer meaning written.

use std::cmp::Ordering;
use std::sync::Arc;

use automation::credentials::Credential;
use automation::jq::Expr;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::Value as Json;
use service::automation::BoxFuture;

use crate::connector::{Source, Target};
use crate::postgres::Row;
use crate::targets::Outcome;
use crate::{Cursor, Record};

/// At most this many pages are followed in one read (a loop in `next` ends there).
const MAX_PAGES: usize = 10_000;

/// Orders two cursor values: as numbers when both are, as instants when both are (in any of
/// the text forms [`crate::instant`] reads), else as text.
pub fn compare(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    if let (Some(x), Some(y)) = (crate::instant(a), crate::instant(b)) {
        return x.cmp(&y);
    }
    a.cmp(b)
}

fn position(r: &Cursor, at: &Cursor) -> Ordering {
    compare(&r.value, &at.value).then_with(|| compare(&r.key, &at.key))
}

use crate::json_text as text;

/// The rows of a read made all at once (an API's pages, a Bulk query job), put in order and
/// handed out page by page: a read continues while each page asks for the position of the last
/// row handed out, any other position starts a new read.
#[derive(Default)]
pub struct Held(Mutex<Option<(Arc<Vec<Row>>, Cursor)>>);

impl Held {
    /// The held rows and where to continue in them, when `after` continues the held read.
    pub fn resume(&self, after: Option<&Cursor>, rewind: bool) -> Option<(Arc<Vec<Row>>, usize)> {
        let (all, served) = self.0.lock().take()?;
        let at = after.filter(|at| !rewind && served == **at)?;
        let start = all.partition_point(|r| position(&r.at, at) != Ordering::Greater);
        Some((all, start))
    }

    /// Up to `limit` rows of `all` from `start`; keeps the read for the next page unless this
    /// one was its last.
    pub fn serve(&self, all: Arc<Vec<Row>>, start: usize, limit: usize) -> Vec<Row> {
        let page: Vec<Row> = all.iter().skip(start).take(limit).cloned().collect();
        if let Some(last) = page.last().filter(|_| page.len() == limit) {
            *self.0.lock() = Some((all.clone(), last.at.clone()));
        }
        page
    }
}

/// An HTTP JSON API source.
pub struct HttpSource {
    cred: Arc<Credential>,
    url: String,
    records: Option<Expr>,
    next: Option<Expr>,
    since: Option<String>,
    cursor: Expr,
    key: Expr,
    overlap_secs: u64,
    /// The records of the current read.
    read: Held,
}

/// How an HTTP source is read.
pub struct HttpSourceDef<'a> {
    /// Where the first page is (absolute, or a path after the credential's URL).
    pub url: &'a str,
    /// jq finding a response's records (default: the response when it is an array, else its
    /// `records`, `data` or `items`).
    pub records: Option<&'a str>,
    /// jq finding the next page's URL in a response (none: one page).
    pub next: Option<&'a str>,
    /// The query parameter given the cursor value to read from.
    pub since: Option<&'a str>,
    /// jq giving a record's cursor value.
    pub cursor: &'a str,
    /// jq giving a record's key.
    pub key: &'a str,
    /// The overlap window, seconds.
    pub overlap_secs: u64,
}

/// Whether `url` is an absolute `http://` or `https://` URL (scheme in any case).
pub(crate) fn is_absolute(url: &str) -> bool {
    ["http://", "https://"].iter().any(|p| {
        url.len() > p.len()
            && url
                .get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p))
    })
}

/// The full URL of `url`: itself when absolute, else after the credential's base URL.
fn full_url(cred: &Credential, url: &str) -> String {
    if is_absolute(url) {
        url.to_string()
    } else {
        format!(
            "{}/{}",
            cred.url.trim_end_matches('/'),
            url.trim_start_matches('/')
        )
    }
}

/// The next page's URL: `link` resolved against the page that gave it (as a browser would:
/// `/items?page=2` keeps the page's scheme and host, `?page=2` its path too).
fn next_page(page: &str, link: &str) -> String {
    reqwest::Url::parse(page)
        .and_then(|p| p.join(link))
        .map_or_else(|_| link.to_string(), String::from)
}

impl HttpSource {
    /// Compiles the expressions.
    pub fn new(cred: Arc<Credential>, def: HttpSourceDef<'_>) -> Result<HttpSource, String> {
        let compile = |what: &str, e: &str| {
            Expr::compile(e).map_err(|m| format!("the source's {what} expression: {m}"))
        };
        Ok(HttpSource {
            url: full_url(&cred, def.url),
            cred,
            records: def.records.map(|e| compile("records", e)).transpose()?,
            next: def.next.map(|e| compile("next", e)).transpose()?,
            since: def.since.map(str::to_string),
            cursor: compile("cursor", def.cursor)?,
            key: compile("key", def.key)?,
            overlap_secs: def.overlap_secs,
            read: Held::default(),
        })
    }

    /// Every record from `from` on (the cursor value the API is asked for), in order.
    async fn fetch(&self, from: Option<&str>) -> Result<Vec<Row>, String> {
        let mut url = self.url.clone();
        if let (Some(param), Some(v)) = (&self.since, from) {
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!(
                "{url}{sep}{}={}",
                automation::external::encode_segment(param),
                automation::external::encode_segment(v)
            );
        }
        let mut rows = Vec::new();
        for _ in 0..MAX_PAGES {
            let (status, body) = crate::remote::send(&self.cred, Method::GET, &url, None).await?;
            if !status.is_success() {
                return Err(format!(
                    "GET {url} answered HTTP {}: {}",
                    status.as_u16(),
                    body.chars().take(500).collect::<String>()
                ));
            }
            let doc: Json =
                serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
            let records = match &self.records {
                Some(e) => e.first(&doc, &Json::Null)?,
                None => match &doc {
                    Json::Array(_) => doc.clone(),
                    _ => ["records", "data", "items"]
                        .iter()
                        .find_map(|k| doc.get(*k).filter(|v| v.is_array()).cloned())
                        .unwrap_or(Json::Null),
                },
            };
            let Json::Array(records) = records else {
                return Err(format!(
                    "GET {url}: no array of records in the answer (set `records` to a jq expression that finds it)"
                ));
            };
            for r in records {
                let c = text(&self.cursor.first(&r, &Json::Null)?)
                    .ok_or_else(|| format!("a record from {url} has no cursor value: {r}"))?;
                let k = text(&self.key.first(&r, &Json::Null)?)
                    .ok_or_else(|| format!("a record from {url} has no key: {r}"))?;
                rows.push(Row {
                    data: r,
                    at: Cursor { value: c, key: k },
                });
            }
            let next = match &self.next {
                Some(e) => text(&e.first(&doc, &Json::Null)?),
                None => None,
            };
            match next {
                Some(n) if !n.is_empty() => url = next_page(&url, &n),
                _ => {
                    rows.sort_by(|a, b| position(&a.at, &b.at));
                    return Ok(rows);
                }
            }
        }
        Err(format!(
            "{} kept answering a next page after {MAX_PAGES} pages",
            self.url
        ))
    }
}

impl Source for HttpSource {
    fn page<'a>(
        &'a self,
        after: Option<&'a Cursor>,
        rewind: bool,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let (all, start) = match self.read.resume(after, rewind) {
                Some(held) => held,
                None => {
                    // A new read: from the cursor, less the overlap window when rewinding a
                    // point-in-time cursor (other cursors have no window: strictly after).
                    let window = after.and_then(|at| {
                        let ms = model::value::parse_datetime(&at.value)?;
                        (rewind && self.overlap_secs > 0).then(|| {
                            model::value::format_datetime_z(ms - self.overlap_secs as i64 * 1000)
                        })
                    });
                    let from = window.clone().or_else(|| after.map(|at| at.value.clone()));
                    let mut rows = self.fetch(from.as_deref()).await?;
                    match (after, &window) {
                        (Some(_), Some(w)) => {
                            rows.retain(|r| compare(&r.at.value, w) != Ordering::Less)
                        }
                        (Some(at), None) => {
                            rows.retain(|r| position(&r.at, at) == Ordering::Greater)
                        }
                        (None, _) => {}
                    }
                    (Arc::new(rows), 0)
                }
            };
            Ok(self.read.serve(all, start, limit))
        })
    }
}

/// An HTTP JSON API target.
pub struct HttpTarget {
    cred: Arc<Credential>,
    url: String,
    method: Method,
    parallelism: usize,
}

impl HttpTarget {
    /// Rows go to `url` (with `{column}` replaced by the row's value) by `method`, up to
    /// `parallelism` requests at once.
    pub fn new(
        cred: Arc<Credential>,
        url: &str,
        method: &str,
        parallelism: usize,
    ) -> Result<HttpTarget, String> {
        let method = match method.to_ascii_uppercase().as_str() {
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            other => return Err(format!("method {other:?} is not POST, PUT or PATCH")),
        };
        Ok(HttpTarget {
            url: full_url(&cred, url),
            cred,
            method,
            parallelism: parallelism.max(1),
        })
    }

    /// Sends one row; its outcome (`Err` only when the request could not be made).
    async fn send(&self, r: &Record) -> Result<Outcome, String> {
        let url = match self.url_for(r) {
            Ok(u) => u,
            Err(m) => return Ok(Err(m)),
        };
        let body = Json::Object(r.clone());
        let (status, text) =
            crate::remote::send(&self.cred, self.method.clone(), &url, Some(&body)).await?;
        Ok(if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "HTTP {}: {}",
                status.as_u16(),
                text.chars().take(500).collect::<String>()
            ))
        })
    }

    fn url_for(&self, row: &Record) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = self.url.as_str();
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let end = rest[i..]
                .find('}')
                .ok_or_else(|| format!("the URL {} has an unclosed {{", self.url))?;
            let column = &rest[i + 1..i + end];
            let v = row
                .get(column)
                .and_then(text)
                .ok_or_else(|| format!("the URL needs {column}, which the row does not have"))?;
            out.push_str(&automation::external::encode_segment(&v));
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl Target for HttpTarget {
    fn write<'a>(&'a self, rows: &'a [&'a Record]) -> BoxFuture<'a, Result<Vec<Outcome>, String>> {
        use futures::{StreamExt, TryStreamExt};
        let mut sends = Vec::with_capacity(rows.len());
        for r in rows {
            sends.push(self.send(r));
        }
        Box::pin(
            futures::stream::iter(sends)
                .buffered(self.parallelism)
                .try_collect(),
        )
    }

    fn keys(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, String>> {
        Box::pin(async { Ok(None) })
    }
}

#[cfg(test)]
mod tests {
    use super::{compare, next_page};
    use std::cmp::Ordering;

    #[test]
    fn cursor_values_compare_as_numbers_instants_or_text() {
        assert_eq!(compare("9", "10"), Ordering::Less);
        // PostgreSQL's text form against Salesforce's, one second apart.
        assert_eq!(
            compare("2024-01-02 03:04:06+00", "2024-01-02T03:04:05.000Z"),
            Ordering::Greater
        );
        assert_eq!(
            compare("2024-01-02 03:04:05", "2024-01-02T03:04:05.000+0000"),
            Ordering::Equal
        );
        assert_eq!(compare("b", "a"), Ordering::Greater);
    }

    #[test]
    fn next_page_links_resolve_against_the_page_that_gave_them() {
        let page = "http://api.example.com/v2/items?since=0";
        for (link, want) in [
            ("/v2/items?page=2", "http://api.example.com/v2/items?page=2"),
            (
                "?since=0&page=3",
                "http://api.example.com/v2/items?since=0&page=3",
            ),
            ("more?page=4", "http://api.example.com/v2/more?page=4"),
            ("https://other.example.com/x", "https://other.example.com/x"),
        ] {
            assert_eq!(next_page(page, link), want, "{link}");
        }
    }
}

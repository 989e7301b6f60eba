//! Test harness: start a server (fresh data directory), log in, and make JSON requests.

use std::path::{Path, PathBuf};

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
pub use test_support::{Server, CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME};

/// The API version the tests use.
pub const V: &str = "v59.0";

/// A running org and an admin session on it.
pub struct Org {
    /// The server process.
    pub srv: Server,
    /// An HTTP client.
    pub http: Client,
    /// The admin's access token.
    pub token: String,
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_conflux"))
}

/// A fresh data directory.
pub fn data_dir(what: &str) -> PathBuf {
    test_support::scratch_dir(what)
        .expect("temp dir")
        .join("data")
}

/// An HTTP client that never uses a proxy.
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

impl Org {
    /// Starts a server on a fresh data directory and logs in as the admin.
    pub fn start(what: &str) -> Org {
        Org::start_in(&data_dir(what), &[], &[])
    }

    /// Starts a server on `data` with extra environment and `serve` arguments.
    pub fn start_in(data: &Path, env: &[(&str, &str)], args: &[&str]) -> Org {
        let srv = Server::start_with(&bin(), data, env, args).expect("server starts");
        let http = client();
        let token = login(&http, &srv.http, USERNAME, PASSWORD).expect("admin login");
        Org { srv, http, token }
    }

    /// The HTTP base URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.srv.http, path)
    }

    /// `/services/data/v59.0` + `rest`.
    pub fn data(&self, rest: &str) -> String {
        self.url(&format!("/services/data/{V}{rest}"))
    }

    /// A request with the admin token; returns the status and the JSON body (Null when empty).
    pub fn call(&self, method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, url, body)
    }

    /// A request with another token.
    pub fn call_as(
        &self,
        token: &str,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a record and returns its id.
    pub fn create(&self, object: &str, body: Value) -> String {
        let (s, b) = self.call(
            Method::POST,
            &self.data(&format!("/sobjects/{object}")),
            Some(body),
        );
        assert_eq!(s, 201, "create {object}: {b}");
        b["id"].as_str().expect("id").to_string()
    }

    /// Sends `records` as one all-or-none sObject Collection (`POST` creates, `PATCH` updates)
    /// and returns the per-record results (asserting 200).
    pub fn collection(&self, method: Method, records: Vec<Value>) -> Value {
        let (s, b) = self.call(
            method,
            &self.data("/composite/sobjects"),
            Some(json!({"allOrNone": true, "records": records})),
        );
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Runs a query and returns the body (asserting 200).
    pub fn query(&self, soql: &str) -> Value {
        let url =
            reqwest::Url::parse_with_params(&self.data("/query"), &[("q", soql)]).expect("url");
        let (s, b) = self.call(Method::GET, url.as_str(), None);
        assert_eq!(s, 200, "query {soql}: {b}");
        b
    }

    /// `totalSize` of a COUNT() query.
    pub fn count(&self, soql: &str) -> u64 {
        self.query(soql)["totalSize"].as_u64().expect("totalSize")
    }
}

/// OAuth password grant; returns the access token or the error body.
pub fn login(http: &Client, base: &str, username: &str, password: &str) -> Result<String, Value> {
    let resp = http
        .post(format!("{base}/services/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("username", username),
            ("password", password),
        ])
        .send()
        .expect("token request");
    let body: Value = resp.json().unwrap_or(json!(null));
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or(body)
}

// ---------------------------------------------------------------------------------------------
// Helpers for hostile.rs and records.rs (raw requests, error-shape assertions, Tooling).
// ---------------------------------------------------------------------------------------------

/// A response with its headers and raw text.
pub struct Raw {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as text (lossy).
    pub text: String,
}

impl Raw {
    /// The body as JSON (Null when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Asserts a Salesforce REST error: `status`, `Content-Type: application/json;charset=UTF-8`,
/// and a JSON array whose first item has a string `message` and `errorCode` == `code`.
/// Returns the message.
#[track_caller]
pub fn assert_sf_error(r: &Raw, status: u16, code: &str) -> String {
    assert_eq!(
        r.status, status,
        "expected {status} {code}, got: {}",
        r.text
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8"),
        "content type of a {status} {code}: {}",
        r.text
    );
    let body = r.json();
    let items = body
        .as_array()
        .unwrap_or_else(|| panic!("error body is not a JSON array: {}", r.text));
    assert!(!items.is_empty(), "empty error array");
    for it in items {
        assert!(it["message"].is_string(), "no message: {}", r.text);
        assert!(it["errorCode"].is_string(), "no errorCode: {}", r.text);
    }
    assert_eq!(items[0]["errorCode"], code, "error code: {}", r.text);
    items[0]["message"].as_str().unwrap_or_default().to_string()
}

impl Org {
    /// Any request with the admin token, extra headers and a raw body.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Raw {
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Raw {
            status,
            headers,
            text,
        }
    }

    /// A JSON request (`Content-Type: application/json`) with a raw body.
    pub fn send_body(&self, method: Method, url: &str, body: impl Into<Vec<u8>>) -> Raw {
        self.send(
            method,
            url,
            &[("Content-Type", "application/json")],
            Some(body.into()),
        )
    }

    /// `/services/data/{version}{rest}` for another API version (`v45.0`).
    pub fn data_at(&self, version: &str, rest: &str) -> String {
        self.url(&format!("/services/data/{version}{rest}"))
    }

    /// The URL of `GET /{resource}?q=soql` (`resource` is `query` or `queryAll`).
    pub fn query_url(&self, resource: &str, soql: &str) -> String {
        reqwest::Url::parse_with_params(&self.data(&format!("/{resource}")), &[("q", soql)])
            .expect("url")
            .to_string()
    }

    /// Runs a query and returns the raw response (no status assertion).
    pub fn query_raw(&self, soql: &str) -> Raw {
        self.send(Method::GET, &self.query_url("query", soql), &[], None)
    }

    /// Runs a queryAll and returns the body (asserting 200).
    pub fn query_all(&self, soql: &str) -> Value {
        let (s, b) = self.call(Method::GET, &self.query_url("queryAll", soql), None);
        assert_eq!(s, 200, "queryAll {soql}: {b}");
        b
    }

    /// `POST /tooling/sobjects/{kind}` with `{"FullName", "Metadata"}`.
    pub fn tooling(&self, kind: &str, full_name: &str, metadata: Value) -> (u16, Value) {
        self.call(
            Method::POST,
            &self.data(&format!("/tooling/sobjects/{kind}")),
            Some(json!({"FullName": full_name, "Metadata": metadata})),
        )
    }

    /// Reads one record (asserting 200).
    pub fn get(&self, object: &str, id: &str) -> Value {
        let (s, b) = self.call(
            Method::GET,
            &self.data(&format!("/sobjects/{object}/{id}")),
            None,
        );
        assert_eq!(s, 200, "get {object}/{id}: {b}");
        b
    }
}

/// Sends `request` as-is over a new TCP connection to `base` (`http://host:port`) and returns the
/// status, the headers (names lower-cased) and the body. For requests an HTTP client library would
/// normalise (`..` segments, raw bytes in the path).
pub fn raw_http(base: &str, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    // The server may answer and close before reading everything (oversized requests).
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut body = buf[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = eol + 2;
            out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        body = out;
    }
    (status, headers, body)
}

/// [`raw_http`] as a [`Raw`] response.
pub fn raw_send(base: &str, request: &[u8]) -> Raw {
    let (status, headers, body) = raw_http(base, request);
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(&v),
        ) {
            map.append(k, v);
        }
    }
    Raw {
        status,
        headers: map,
        text: String::from_utf8_lossy(&body).into_owned(),
    }
}

// ------------------------------- end of hostile.rs / records.rs helpers -------------------------

//! The web console's server side: its page and assets at `/` (embedded in the binary, no build
//! step), login and logout with the org's users (the session in an `HttpOnly`, `SameSite=Strict`
//! cookie, every API call also carrying the session's CSRF token), and a stream of changes to the
//! records on screen. Everything else the console shows it reads through the REST API as the
//! logged-in user, so object and field permissions apply exactly as they do to any client.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};

use crate::body::read_limited;
use crate::error::json;
use crate::AppState;

/// The session cookie.
pub const COOKIE: &str = "conflux_session";
/// The header (or `csrf` query parameter) the CSRF token travels in.
pub const CSRF_HEADER: &str = "x-conflux-csrf";

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// The CSRF token of a session: derived from the session's secret token, which pages on other
/// sites can neither read (the cookie is `HttpOnly`) nor send (`SameSite=Strict`).
pub fn csrf_for(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("conflux-console-csrf:{token}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The session of a console request: the cookie's, when the request also carries its CSRF token
/// (header, or `csrf` for what cannot set headers, like `EventSource`).
pub fn session(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let token = cookie_token(headers)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            url::form_urlencoded::parse(query?.as_bytes())
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.into_owned())
        })?;
    (sent == csrf_for(&token)).then_some(token)
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the console.
pub async fn index() -> Response {
    let mut r = asset(INDEX, "text/html; charset=utf-8");
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

/// `GET /console/app.js`.
pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /console/app.css`.
pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

fn session_cookie(token: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("a token is a valid header value")
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &json!({"error": message}))
}

/// `POST /console/login` with `{username, password}` (JSON or a form): the session cookie, and
/// the user and CSRF token the page needs.
pub async fn login(State(state): State<AppState>, req: Request) -> Response {
    let ip = crate::client_ip(&req);
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body = match read_limited(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "The request is too large."),
    };
    let (username, password) = if form {
        let mut u = String::new();
        let mut p = String::new();
        for (k, v) in url::form_urlencoded::parse(&body) {
            match &*k {
                "username" => u = v.into_owned(),
                "password" => p = v.into_owned(),
                _ => {}
            }
        }
        (u, p)
    } else {
        let v: Json = serde_json::from_slice(&body).unwrap_or_default();
        (
            v["username"].as_str().unwrap_or_default().to_string(),
            v["password"].as_str().unwrap_or_default().to_string(),
        )
    };
    if username.is_empty() || password.is_empty() {
        return error(StatusCode::BAD_REQUEST, "Enter your username and password.");
    }
    match state.org.soap_login(&username, &password, &ip).await {
        Ok(login) => {
            let mut r = json(
                StatusCode::OK,
                &json!({"username": login.username, "userId": login.user_id.to_18(),
                        "csrf": csrf_for(&login.token)}),
            );
            r.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&login.token, login.timeout_secs),
            );
            r
        }
        Err(service::AuthError::RateExceeded) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many login attempts. Try again later.",
        ),
        Err(_) => error(
            StatusCode::UNAUTHORIZED,
            "Please check your username and password.",
        ),
    }
}

/// `GET /console/session`: who is logged in, with the CSRF token (the cookie alone suffices:
/// a page on another site cannot read the answer).
pub async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = cookie_token(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "Not logged in.");
    };
    match state.org.authenticate(&token) {
        Ok(p) => json(
            StatusCode::OK,
            &json!({"username": p.username, "userId": p.user_id.to_18(),
                    "csrf": csrf_for(&token)}),
        ),
        Err(_) => error(
            StatusCode::UNAUTHORIZED,
            "Your session has ended. Log in again.",
        ),
    }
}

/// `POST /console/logout` (with the CSRF token): ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = session(&headers, None) else {
        return error(
            StatusCode::FORBIDDEN,
            "The request lacks the console's CSRF token.",
        );
    };
    state.org.logout(&token).await;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    r
}

/// `GET /console/watch?object=Account&id=…&csrf=…`: server-sent events, one `change` event
/// (`{id, modstamp, by}`) whenever the record's `SystemModstamp` moves, read as the user. The
/// stream wakes on every event the bus commits and at least twice a second.
pub async fn watch(State(state): State<AppState>, req: Request) -> Response {
    let query = req.uri().query().map(str::to_string);
    let Some(token) = session(req.headers(), query.as_deref()) else {
        return error(StatusCode::UNAUTHORIZED, "Log in to the console first.");
    };
    let p = match state.org.authenticate(&token) {
        Ok(p) => p,
        Err(_) => return error(StatusCode::UNAUTHORIZED, "Your session has ended."),
    };
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let (Some(object), Some(id)) = (params.get("object"), params.get("id")) else {
        return error(StatusCode::BAD_REQUEST, "watch needs object and id.");
    };
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid(object) || !valid(id) {
        return error(StatusCode::BAD_REQUEST, "object and id are names and ids.");
    }
    let soql =
        format!("SELECT Id, SystemModstamp, LastModifiedBy.Name FROM {object} WHERE Id = '{id}'");
    let org = state.org.clone();
    let read = move |p: &service::Principal| -> Option<(String, String)> {
        let page = org.query(p, &soql, false, 1).ok()?;
        let row = page.rows.first()?;
        let cell = |i: usize| match row.cells.get(i) {
            Some(store::Cell::Value(v)) => Some(v.to_json()),
            _ => None,
        };
        let stamp = cell(1).map(|v| v.to_string()).unwrap_or_default();
        let by = match row.cells.get(2) {
            Some(store::Cell::Parent(Some(parent))) => match parent.cells.first() {
                Some(store::Cell::Value(v)) => v.to_json().as_str().unwrap_or_default().to_string(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        Some((stamp, by))
    };
    let Some(first) = read(&p) else {
        return error(StatusCode::NOT_FOUND, "There is no such record.");
    };
    let org = state.org.clone();
    let id = id.clone();
    let stream = futures::stream::unfold((first, org.events().tip(), p), move |(last, tip, p)| {
        let (org, read, id, token) = (org.clone(), read.clone(), id.clone(), token.clone());
        async move {
            let mut tip = tip;
            loop {
                org.events().wait(tip, Duration::from_millis(400)).await;
                tip = org.events().tip();
                if org.authenticate(&token).is_err() {
                    return None;
                }
                let now = read(&p)?;
                if now != last {
                    let data = json!({"id": id, "modstamp": now.0, "by": now.1});
                    let ev = Event::default().event("change").data(data.to_string());
                    return Some((Ok::<_, std::convert::Infallible>(ev), (now, tip, p)));
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

//! The HTTP surfaces of the org: OAuth 2.0 (`/services/oauth2/*`), the identity URL (`/id/…`),
//! SOAP login/logout/undelete (`/services/Soap/u|c/NN.N`), REST (`/services/data/…`), Bulk API
//! 1.0 (`/services/async/…`) and the Streaming API (`/cometd/NN.N`). Wire
//! formats are decided here and nowhere else; every use case goes through [`service::Org`].

#![recursion_limit = "256"]

mod body;
mod bulk1;
mod bulk2;
mod cometd;
mod console;
mod error;
mod oauth;
mod rest;
pub use rest::admin::METRICS_INTERVAL_SECS;
mod soap;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, Uri};
use axum::routing::{any, get, post};
use axum::Router;
use service::Org;

pub use cometd::Streaming;
pub use error::{api_error, api_errors};

/// Which listener a request arrived on, so URLs we hand out use the same scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

/// The client's address, inserted by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Shared state of the HTTP surfaces.
#[derive(Clone)]
pub struct AppState {
    /// The org.
    pub org: Arc<Org>,
    /// A fixed public base URL (`https://conflux.example.com`), when the operator set one; else the
    /// base URL is derived from each request's scheme and `Host`.
    pub public_url: Option<String>,
    /// The Streaming API's connected clients.
    pub streaming: Arc<Streaming>,
}

impl AppState {
    /// `scheme://host[:port]` for links in responses (never a trailing slash).
    pub fn base_url(&self, headers: &HeaderMap, scheme: Scheme) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| valid_host(h))
            .unwrap_or("localhost");
        let s = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{s}://{host}")
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// The scheme a request arrived with (set by the listener; plain HTTP if absent).
pub fn scheme_of(req: &Request) -> Scheme {
    req.extensions()
        .get::<Scheme>()
        .copied()
        .unwrap_or(Scheme::Http)
}

/// The client address of a request, as text.
pub fn client_ip(req: &Request) -> String {
    req.extensions()
        .get::<ClientAddr>()
        .map(|a| a.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Collapses repeated slashes and drops a trailing slash, so `…/sobjects/Account/` and
/// `…//sobjects/Account` route like `…/sobjects/Account`.
pub fn normalize_path(mut req: Request) -> Request {
    let uri = req.uri();
    let path = uri.path();
    if path.len() > 1 && (path.ends_with('/') || path.contains("//")) {
        let mut clean = String::with_capacity(path.len());
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            clean.push('/');
            clean.push_str(seg);
        }
        if clean.is_empty() {
            clean.push('/');
        }
        if let Some(q) = uri.query() {
            clean.push('?');
            clean.push_str(q);
        }
        if let Ok(new) = clean.parse::<Uri>() {
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = new.into_parts().path_and_query;
            if let Ok(u) = Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    }
    req
}

/// The router of every HTTP surface. Wrap it with [`normalize_path`] before routing.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/services/oauth2/token", post(oauth::token))
        .route("/services/oauth2/revoke", any(oauth::revoke))
        .route(
            "/services/oauth2/authorize",
            get(oauth::authorize_page).post(oauth::authorize_submit),
        )
        .route("/services/oauth2/userinfo", get(oauth::userinfo))
        .route(
            "/id/{org}/{user}",
            get(oauth::identity).post(oauth::identity),
        )
        .route("/services/Soap/{kind}/{version}", post(soap::endpoint))
        .route(
            "/services/Soap/{kind}/{version}/{org}",
            post(soap::endpoint),
        )
        .route("/services/async/{*rest}", any(bulk1::dispatch))
        .route("/cometd/{version}", any(cometd::endpoint))
        .route("/cometd/{version}/{*rest}", any(cometd::endpoint))
        .route("/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route("/console/app.css", get(console::app_css))
        .route("/console/login", post(console::login))
        .route("/console/session", get(console::whoami))
        .route("/console/logout", post(console::logout))
        .route("/console/watch", get(console::watch))
        .route("/services/data", any(rest::versions))
        .route("/services/data/{*rest}", any(rest::dispatch))
        .fallback(rest::not_found)
        .with_state(state)
}

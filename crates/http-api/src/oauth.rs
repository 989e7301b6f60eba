//! OAuth 2.0 endpoints (`/services/oauth2/token|revoke|authorize|userinfo`) and the identity URL
//! (`/id/{org}/{user}`), in Salesforce's wire shapes.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use hmac::Mac;
use serde_json::json;
use service::auth::{AuthorizeRequest, TokenGrant};
use service::{AuthError, Login};

use crate::body::read_limited;
use crate::error::{api_error, json};
use crate::{client_ip, scheme_of, AppState};

/// Largest form body accepted on the OAuth endpoints.
const FORM_LIMIT: usize = 64 * 1024;

fn oauth_error(e: &AuthError) -> Response {
    let (error, description) = e.oauth();
    let status = match e {
        AuthError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Form parameters from the query string and an urlencoded body (the body wins).
async fn params(req: Request) -> Result<(HeaderMap, HashMap<String, String>), Response> {
    let (parts, body) = req.into_parts();
    let mut out: HashMap<String, String> = HashMap::new();
    if let Some(q) = parts.uri.query() {
        out.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let bytes = read_limited(body, FORM_LIMIT)
        .await
        .map_err(|e| api_error(&e))?;
    out.extend(url::form_urlencoded::parse(&bytes).into_owned());
    Ok((parts.headers, out))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

/// The token response body.
fn token_body(
    state: &AppState,
    base: &str,
    login: &Login,
    secret: Option<&str>,
) -> serde_json::Value {
    let org = state.org.org_id().to_18();
    let id_url = format!("{base}/id/{org}/{}", login.user_id.to_18());
    let issued_at = login.issued_at_ms.to_string();
    let mut body = serde_json::Map::new();
    body.insert("access_token".into(), login.token.clone().into());
    if let Some(rt) = &login.refresh_token {
        body.insert("refresh_token".into(), rt.clone().into());
    }
    body.insert("instance_url".into(), base.into());
    body.insert("id".into(), id_url.clone().into());
    body.insert("token_type".into(), "Bearer".into());
    body.insert("issued_at".into(), issued_at.clone().into());
    if let Some(secret) = secret {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(id_url.as_bytes());
        mac.update(issued_at.as_bytes());
        body.insert(
            "signature".into(),
            base64::engine::general_purpose::STANDARD
                .encode(mac.finalize().into_bytes())
                .into(),
        );
    }
    body.insert("scope".into(), login.scope.clone().into());
    serde_json::Value::Object(body)
}

fn audiences(state: &AppState, headers: &HeaderMap) -> Vec<String> {
    vec![
        state.base_url(headers, crate::Scheme::Http),
        state.base_url(headers, crate::Scheme::Https),
    ]
}

/// `POST /services/oauth2/token`.
pub async fn token(State(state): State<AppState>, req: Request) -> Response {
    let scheme = scheme_of(&req);
    let ip = client_ip(&req);
    let (headers, p) = match params(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let base = state.base_url(&headers, scheme);
    let get = |k: &str| p.get(k).cloned().filter(|v| !v.is_empty());
    let basic = basic_credentials(&headers);
    let (client_id, client_secret) = match (&basic, get("client_id")) {
        (Some((id, secret)), _) => (Some(id.clone()), Some(secret.clone())),
        (None, id) => (id, get("client_secret")),
    };
    let missing =
        |what: &str| oauth_error(&AuthError::InvalidRequest(format!("{what} is required")));
    let grant = match get("grant_type").as_deref() {
        Some("password") => {
            let (Some(client_id), Some(username), Some(password)) = (
                client_id.clone(),
                get("username"),
                p.get("password").cloned(),
            ) else {
                return missing("client_id, username and password");
            };
            TokenGrant::Password {
                client_id,
                client_secret: client_secret.clone(),
                username,
                password,
            }
        }
        Some("client_credentials") => {
            let (Some(client_id), Some(client_secret)) = (client_id.clone(), client_secret.clone())
            else {
                return oauth_error(&AuthError::InvalidClient);
            };
            TokenGrant::ClientCredentials {
                client_id,
                client_secret,
            }
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let Some(assertion) = get("assertion") else {
                return missing("assertion");
            };
            TokenGrant::JwtBearer { assertion }
        }
        Some("refresh_token") => {
            let Some(refresh_token) = get("refresh_token") else {
                return missing("refresh_token");
            };
            TokenGrant::RefreshToken {
                refresh_token,
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            }
        }
        Some("authorization_code") => {
            let (Some(code), Some(client_id), Some(redirect_uri)) =
                (get("code"), client_id.clone(), get("redirect_uri"))
            else {
                return missing("code, client_id and redirect_uri");
            };
            TokenGrant::AuthorizationCode {
                code,
                client_id,
                client_secret: client_secret.clone(),
                redirect_uri,
                code_verifier: get("code_verifier"),
            }
        }
        None => return oauth_error(&AuthError::UnsupportedGrantType),
        Some(_) => return oauth_error(&AuthError::UnsupportedGrantType),
    };
    match state
        .org
        .token(grant, &ip, &audiences(&state, &headers))
        .await
    {
        Ok(login) => json(
            StatusCode::OK,
            &token_body(&state, &base, &login, client_secret.as_deref()),
        ),
        Err(e) => oauth_error(&e),
    }
}

/// `POST|GET /services/oauth2/revoke` with `token=…`.
pub async fn revoke(State(state): State<AppState>, req: Request) -> Response {
    let (_, p) = match params(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(token) = p.get("token").filter(|t| !t.is_empty()) else {
        return json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "unsupported_token_type", "error_description": "this token type is not supported"}),
        );
    };
    if state.org.revoke(token).await {
        StatusCode::OK.into_response()
    } else {
        json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_token", "error_description": "invalid token"}),
        )
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn login_page(p: &HashMap<String, String>, error: Option<&str>) -> Response {
    let hidden: String = [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
        "scope",
    ]
    .iter()
    .filter_map(|k| {
        p.get(*k).map(|v| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(v)
            )
        })
    })
    .collect();
    let err = error
        .map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Log in to Conflux</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}}label{{display:block;margin-top:1rem}}input[type=text],input[type=password]{{width:100%;padding:.5rem;font-size:1rem}}button{{margin-top:1.5rem;padding:.6rem 1.2rem;font-size:1rem;background:#0b5cab;color:#fff;border:0;border-radius:4px}}.error{{color:#a4161a}}</style></head>\
<body><h1>Log in to Conflux</h1>{err}<form method=\"post\" action=\"/services/oauth2/authorize\">{hidden}\
<label for=\"username\">Username</label><input id=\"username\" type=\"text\" name=\"username\" autocomplete=\"username\" required>\
<label for=\"password\">Password</label><input id=\"password\" type=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Log in</button></form></body></html>"
    );
    let mut r = Html(html).into_response();
    r.headers_mut()
        .insert("X-Frame-Options", HeaderValue::from_static("DENY"));
    r
}

fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut target = uri.to_string();
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    target.push(if target.contains('?') { '&' } else { '?' });
    target.push_str(&ser.finish());
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// `GET /services/oauth2/authorize`: the login page of the authorization-code flow.
pub async fn authorize_page(State(state): State<AppState>, req: Request) -> Response {
    let (_, p) = match params(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(app) = p.get("client_id").and_then(|c| state.org.app(c)) else {
        return oauth_error(&AuthError::InvalidClientId);
    };
    let redirect = p.get("redirect_uri").cloned().unwrap_or_default();
    if state.org.check_redirect(&app, &redirect).is_err() {
        return oauth_error(&AuthError::RedirectMismatch);
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        let st = p.get("state").cloned().unwrap_or_default();
        return redirect_with(
            &redirect,
            &[
                ("error", "unsupported_response_type"),
                ("error_description", "response type not supported"),
                ("state", &st),
            ],
        );
    }
    login_page(&p, None)
}

/// `POST /services/oauth2/authorize`: checks the credentials and redirects with a code.
pub async fn authorize_submit(State(state): State<AppState>, req: Request) -> Response {
    let ip = client_ip(&req);
    let (_, p) = match params(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let request = AuthorizeRequest {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        username: get("username"),
        password: get("password"),
        code_challenge: p.get("code_challenge").cloned().filter(|s| !s.is_empty()),
        code_challenge_method: p
            .get("code_challenge_method")
            .cloned()
            .filter(|s| !s.is_empty()),
    };
    let redirect = request.redirect_uri.clone();
    match state.org.authorize(request, &ip).await {
        Ok(code) => redirect_with(&redirect, &[("code", &code), ("state", &get("state"))]),
        Err(e @ (AuthError::InvalidClientId | AuthError::RedirectMismatch)) => oauth_error(&e),
        Err(AuthError::RateExceeded) => {
            login_page(&p, Some("Too many login attempts. Try again later."))
        }
        Err(_) => login_page(&p, Some("Please check your username and password.")),
    }
}

fn bearer(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(t) = crate::rest::token_from_headers(headers) {
        return Some(t);
    }
    let q = query?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "oauth_token")
        .map(|(_, v)| v.into_owned())
}

/// `GET /services/oauth2/userinfo`.
pub async fn userinfo(State(state): State<AppState>, req: Request) -> Response {
    let scheme = scheme_of(&req);
    let base = state.base_url(req.headers(), scheme);
    let Some(token) = bearer(req.headers(), req.uri().query()) else {
        return json(StatusCode::FORBIDDEN, &json!("Bad_OAuth_Token"));
    };
    let Ok(p) = state.org.authenticate(&token) else {
        return json(StatusCode::FORBIDDEN, &json!("Bad_OAuth_Token"));
    };
    let Ok(Some(u)) = state.org.user_info(p.user_seq) else {
        return json(StatusCode::FORBIDDEN, &json!("Bad_OAuth_Token"));
    };
    let org = state.org.org_id().to_18();
    json(
        StatusCode::OK,
        &json!({
            "sub": format!("{base}/id/{org}/{}", u.id.to_18()),
            "user_id": u.id.to_18(),
            "organization_id": org,
            "preferred_username": u.username,
            "nickname": u.username,
            "name": u.name,
            "email": u.email,
            "email_verified": true,
            "given_name": u.first_name,
            "family_name": u.last_name,
            "zoneinfo": u.time_zone,
            "locale": u.locale,
            "language": u.language,
            "active": u.active,
            "user_type": "STANDARD",
        }),
    )
}

/// `GET /id/{org}/{user}`: the identity service (jsforce `identity()` calls it with `?oauth_token=`).
pub async fn identity(State(state): State<AppState>, req: Request) -> Response {
    let scheme = scheme_of(&req);
    let base = state.base_url(req.headers(), scheme);
    let path: Vec<String> = req.uri().path().split('/').map(str::to_string).collect();
    let Some(token) = bearer(req.headers(), req.uri().query()) else {
        return json(StatusCode::FORBIDDEN, &json!("Bad_OAuth_Token"));
    };
    let p = match state.org.authenticate(&token) {
        Ok(p) => p,
        Err(_) => return json(StatusCode::FORBIDDEN, &json!("Bad_OAuth_Token")),
    };
    let (org_seg, user_seg) = (
        path.get(2).cloned().unwrap_or_default(),
        path.get(3).cloned().unwrap_or_default(),
    );
    let same = |a: &str, b: model::Id| model::Id::parse(a).is_ok_and(|x| x == b);
    if !same(&org_seg, state.org.org_id()) || !same(&user_seg, p.user_id) {
        return json(StatusCode::FORBIDDEN, &json!("Bad_Id"));
    }
    let Ok(Some(u)) = state.org.user_info(p.user_seq) else {
        return json(StatusCode::FORBIDDEN, &json!("Bad_Id"));
    };
    let org = state.org.org_id().to_18();
    let org15 = state.org.org_id().as_str().to_string();
    let v = model::ApiVersion::LATEST.number();
    json(
        StatusCode::OK,
        &json!({
            "id": format!("{base}/id/{org}/{}", u.id.to_18()),
            "asserted_user": true,
            "user_id": u.id.to_18(),
            "organization_id": org,
            "username": u.username,
            "nick_name": u.username.split('@').next().unwrap_or(&u.username),
            "display_name": u.name,
            "email": u.email,
            "email_verified": true,
            "first_name": u.first_name,
            "last_name": u.last_name,
            "timezone": u.time_zone,
            "photos": {"picture": format!("{base}/img/userprofile/default_profile_200_v2.png"), "thumbnail": format!("{base}/img/userprofile/default_profile_45_v2.png")},
            "status": {"created_date": null, "body": null},
            "urls": {
                "enterprise": format!("{base}/services/Soap/c/{{version}}/{org15}"),
                "metadata": format!("{base}/services/Soap/m/{{version}}/{org15}"),
                "partner": format!("{base}/services/Soap/u/{{version}}/{org15}"),
                "rest": format!("{base}/services/data/v{{version}}/"),
                "sobjects": format!("{base}/services/data/v{{version}}/sobjects/"),
                "search": format!("{base}/services/data/v{{version}}/search/"),
                "query": format!("{base}/services/data/v{{version}}/query/"),
                "recent": format!("{base}/services/data/v{{version}}/recent/"),
                "tooling_rest": format!("{base}/services/data/v{{version}}/tooling/"),
                "profile": format!("{base}/{}", u.id.to_18()),
                "custom_domain": base,
            },
            "active": u.active,
            "user_type": "STANDARD",
            "language": u.language,
            "locale": u.locale,
            "utcOffset": 0,
            "last_modified_date": null,
            "is_app_installed": true,
            "api_version": v,
        }),
    )
}

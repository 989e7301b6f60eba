//! Authentication and permissions against the real binary: OAuth grants (password, client
//! credentials, JWT bearer, authorization code + PKCE, refresh, revoke), SOAP login/logout, session
//! expiry and restarts, login lockout, and the profile / permission-set model (object access and
//! field-level security on every read and write path), managed through REST as in Salesforce.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::Mac;
use reqwest::blocking::Client;
use reqwest::{Method, Url};
use serde_json::{json, Value};

use crate::harness::{data_dir, Org, CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME};

// ------------------------------------------------------------------------------------ helpers

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// The exact 401 body of an invalid or expired session.
fn invalid_session_body() -> Value {
    json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
}

fn assert_invalid_session(org: &Org, token: &str, what: &str) {
    let (s, b) = org.call_as(token, GET, &org.data("/sobjects/Account"), None);
    assert_eq!(s, 401, "{what}: {b}");
    assert_eq!(b, invalid_session_body(), "{what}");
}

fn assert_session_works(org: &Org, token: &str, what: &str) {
    let (s, b) = org.call_as(token, GET, &org.data("/sobjects/Account"), None);
    assert_eq!(s, 200, "{what}: {b}");
}

/// The `errorCode` of a REST error array.
fn code(b: &Value) -> &str {
    b[0]["errorCode"].as_str().unwrap_or("")
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// An HTTP client that does not follow redirects (the authorize step redirects to the app).
fn no_redirect_client() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

/// POSTs a form to `/services/oauth2/token`, optionally with HTTP Basic client credentials.
fn token_form(org: &Org, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = org.http.post(org.url("/services/oauth2/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().expect("token request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn password_grant(org: &Org, username: &str, password: &str) -> (u16, Value) {
    token_form(
        org,
        &[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("username", username),
            ("password", password),
        ],
        None,
    )
}

/// Asserts an OAuth error response: HTTP 400 with `error` (and a textual `error_description`).
fn assert_oauth_error(r: &(u16, Value), error: &str, what: &str) {
    let (s, b) = r;
    assert_eq!(*s, 400, "{what}: {b}");
    assert_eq!(b["error"], error, "{what}: {b}");
    assert!(b["error_description"].is_string(), "{what}: {b}");
    assert!(b.get("access_token").is_none(), "{what}: {b}");
}

fn login_as(org: &Org, username: &str, password: &str) -> String {
    crate::harness::login(&org.http, &org.srv.http, username, password)
        .unwrap_or_else(|e| panic!("login as {username}: {e}"))
}

/// Runs a query with `token`; returns the status and body.
fn query_as(org: &Org, token: &str, soql: &str) -> (u16, Value) {
    let url = Url::parse_with_params(&org.data("/query"), &[("q", soql)]).expect("url");
    org.call_as(token, GET, url.as_str(), None)
}

fn query_all_as(org: &Org, token: &str, soql: &str) -> (u16, Value) {
    let url = Url::parse_with_params(&org.data("/queryAll"), &[("q", soql)]).expect("url");
    org.call_as(token, GET, url.as_str(), None)
}

/// The 18-character id of the first record of an admin query.
fn first_id(org: &Org, soql: &str) -> String {
    let b = org.query(soql);
    b["records"][0]["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no record for {soql}: {b}"))
        .to_string()
}

fn profile_id(org: &Org, name: &str) -> String {
    first_id(
        org,
        &format!("SELECT Id FROM Profile WHERE Name = '{name}'"),
    )
}

/// Creates an active user with the named profile and sets its password; returns its id.
fn create_user(org: &Org, username: &str, profile: &str, password: &str) -> String {
    let alias: String = username
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    let id = org.create(
        "User",
        json!({
            "Username": username,
            "FirstName": "Test",
            "LastName": "User",
            "Email": "tester@example.com",
            "Alias": alias,
            "ProfileId": profile_id(org, profile),
        }),
    );
    let (s, b) = org.call(
        POST,
        &org.data(&format!("/sobjects/User/{id}/password")),
        Some(json!({"NewPassword": password})),
    );
    assert_eq!(s, 204, "set password of {username}: {b}");
    id
}

/// Creates a custom field through the Tooling API as the admin.
fn create_field(org: &Org, full_name: &str, metadata: Value) {
    let (s, b) = org.call(
        POST,
        &org.data("/tooling/sobjects/CustomField"),
        Some(json!({"FullName": full_name, "Metadata": metadata})),
    );
    assert_eq!(s, 201, "create field {full_name}: {b}");
}

/// The field names of an object's describe as seen by `token`.
fn described_fields(org: &Org, token: &str, object: &str) -> Vec<String> {
    let (s, b) = org.call_as(
        token,
        GET,
        &org.data(&format!("/sobjects/{object}/describe")),
        None,
    );
    assert_eq!(s, 200, "describe {object}: {b}");
    b["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The object names of the global describe as seen by `token`.
fn described_objects(org: &Org, token: &str) -> Vec<String> {
    let (s, b) = org.call_as(token, GET, &org.data("/sobjects"), None);
    assert_eq!(s, 200, "describe global: {b}");
    b["sobjects"]
        .as_array()
        .expect("sobjects")
        .iter()
        .map(|o| o["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ----------------------------------------------------------------------------- SOAP helpers

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// simple-salesforce's login envelope (prefixed elements, CallOptions, optional LoginScopeHeader).
fn simple_salesforce_login(username: &str, password: &str, org_scope: Option<&str>) -> String {
    let scope = org_scope
        .map(|o| {
            format!("<urn:LoginScopeHeader><urn:organizationId>{o}</urn:organizationId></urn:LoginScopeHeader>")
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope
        xmlns:xsd="http://www.w3.org/2001/XMLSchema"
        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:urn="urn:partner.soap.sforce.com">
    <env:Header>
        <urn:CallOptions>
            <urn:client>simple-salesforce</urn:client>
            <urn:defaultNamespace>sf</urn:defaultNamespace>
        </urn:CallOptions>
        {scope}
    </env:Header>
    <env:Body>
        <n1:login xmlns:n1="urn:partner.soap.sforce.com">
            <n1:username>{u}</n1:username>
            <n1:password>{p}</n1:password>
        </n1:login>
    </env:Body>
</env:Envelope>"#,
        u = xml_escape(username),
        p = xml_escape(password),
    )
}

/// jsforce's login envelope (default namespace on `login`).
fn jsforce_login(username: &str, password: &str) -> String {
    format!(
        r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header/><se:Body><login xmlns="urn:partner.soap.sforce.com"><username>{}</username><password>{}</password></login></se:Body></se:Envelope>"#,
        xml_escape(username),
        xml_escape(password)
    )
}

/// jsforce's logout envelope.
fn jsforce_logout(session: &str) -> String {
    format!(
        r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header><SessionHeader xmlns="urn:partner.soap.sforce.com"><sessionId>{}</sessionId></SessionHeader></se:Header><se:Body><logout xmlns="urn:partner.soap.sforce.com"/></se:Body></se:Envelope>"#,
        xml_escape(session)
    )
}

/// POSTs a SOAP envelope to `/services/Soap/{path}`; returns status, content type and body.
fn soap(org: &Org, path: &str, envelope: &str) -> (u16, String, String) {
    let resp = org
        .http
        .post(org.url(&format!("/services/Soap/{path}")))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "login")
        .body(envelope.to_string())
        .send()
        .expect("soap request");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, resp.text().unwrap_or_default())
}

/// The text of the first `<name>…</name>` element (exact, unprefixed tag, as jsforce's regexes).
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].to_string())
}

/// SOAP login; returns the session id (panics on a fault).
fn soap_login(org: &Org, username: &str, password: &str) -> String {
    let (s, _, body) = soap(org, "u/59.0", &jsforce_login(username, password));
    assert_eq!(s, 200, "SOAP login as {username}: {body}");
    tag(&body, "sessionId").expect("sessionId")
}

fn assert_login_fault(r: &(u16, String, String), what: &str) {
    let (s, ct, body) = r;
    assert_eq!(*s, 500, "{what}: {body}");
    assert!(ct.starts_with("text/xml"), "{what}: content type {ct}");
    assert!(
        body.contains("<faultcode>sf:INVALID_LOGIN</faultcode>"),
        "{what}: {body}"
    );
    assert!(
        body.contains("<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"),
        "{what}: {body}"
    );
    assert!(
        body.contains("<faultstring>INVALID_LOGIN: "),
        "{what}: {body}"
    );
    assert!(!body.contains("<sessionId>"), "{what}: {body}");
}

// ------------------------------------------------------------------------------ JWT helpers

fn rs256(key: &rsa::RsaPrivateKey, header: &Value, claims: &Value) -> String {
    use rsa::signature::{SignatureEncoding, Signer};
    let signed = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let sig = key.sign(signed.as_bytes());
    format!("{signed}.{}", b64url(&sig.to_bytes()))
}

fn jwt_grant(org: &Org, assertion: &str) -> (u16, Value) {
    token_form(
        org,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ],
        None,
    )
}

// ---------------------------------------------------------------- authorization-code helpers

const REDIRECT: &str = "http://127.0.0.1:53682/callback";
const VERIFIER: &str = "conflux-pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

fn challenge(verifier: &str) -> String {
    use sha2::Digest;
    b64url(&sha2::Sha256::digest(verifier.as_bytes()))
}

/// POSTs the login form of the authorize step; returns the status, the Location header and the
/// body.
fn authorize_submit(
    org: &Org,
    redirect_uri: &str,
    username: &str,
    password: &str,
) -> (u16, Option<String>, String) {
    let challenge = challenge(VERIFIER);
    let resp = no_redirect_client()
        .post(org.url("/services/oauth2/authorize"))
        .form(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", redirect_uri),
            ("state", "st-42/x y"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .expect("authorize");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, location, resp.text().unwrap_or_default())
}

/// Runs the authorize step and returns the code (asserting the redirect and the state).
fn authorization_code(org: &Org, username: &str, password: &str) -> String {
    let (s, loc, body) = authorize_submit(org, REDIRECT, username, password);
    assert_eq!(s, 302, "authorize: {body}");
    let loc = loc.expect("Location");
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let url = Url::parse(&loc).expect("redirect URL");
    let get = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(get("state").as_deref(), Some("st-42/x y"), "{loc}");
    get("code").expect("code")
}

fn exchange_code(org: &Org, code: &str, verifier: &str, redirect_uri: &str) -> (u16, Value) {
    token_form(
        org,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", CLIENT_ID),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
        None,
    )
}

fn refresh_grant(org: &Org, refresh_token: &str) -> (u16, Value) {
    token_form(
        org,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ],
        None,
    )
}

fn revoke(org: &Org, token: &str) -> u16 {
    org.http
        .post(org.url("/services/oauth2/revoke"))
        .form(&[("token", token)])
        .send()
        .expect("revoke")
        .status()
        .as_u16()
}

// ================================================================================== OAuth

#[test]
fn oauth_password_grant_response_shape() {
    let org = Org::start("auth-pw-shape");
    let (s, b) = password_grant(&org, USERNAME, PASSWORD);
    assert_eq!(s, 200, "{b}");

    // instance_url is exactly scheme://host:port.
    assert_eq!(b["instance_url"], org.srv.http.as_str(), "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert!(b.get("refresh_token").is_none(), "no refresh token: {b}");

    // id: {instance}/id/{org18}/{user18}.
    let id = b["id"].as_str().expect("id").to_string();
    assert!(id.starts_with(&format!("{}/id/", org.srv.http)), "{id}");
    let segs: Vec<&str> = id.rsplit('/').take(2).collect();
    let (user18, org18) = (segs[0], segs[1]);
    assert!(org18.starts_with("00D") && org18.len() == 18, "{id}");
    assert!(user18.starts_with("005") && user18.len() == 18, "{id}");

    // An opaque 00D…!… token, never JWT-shaped.
    let token = b["access_token"].as_str().expect("access_token");
    assert!(
        token.starts_with(&format!("{}!", &org18[..15])),
        "token {token} should start with the 15-char org id and '!'"
    );
    assert_ne!(
        token.split('.').count(),
        3,
        "the token must not look like a JWT"
    );

    // issued_at is a string of digits (ms); signature = base64(HMAC-SHA256(secret, id + issued_at)).
    let issued_at = b["issued_at"].as_str().expect("issued_at is a string");
    assert!(issued_at.parse::<i64>().expect("digits") > 1_600_000_000_000);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    assert_eq!(
        b["signature"],
        STANDARD.encode(mac.finalize().into_bytes()),
        "{b}"
    );

    // The token works on REST, and the identity URL answers with ?oauth_token= and with Bearer.
    assert_session_works(&org, token, "fresh token");
    let with_param =
        Url::parse_with_params(&id, &[("oauth_token", token), ("format", "json")]).expect("url");
    let resp = org.http.get(with_param).send().expect("identity");
    assert_eq!(resp.status().as_u16(), 200);
    let ident: Value = resp.json().expect("json");
    assert_eq!(ident["user_id"], user18);
    assert_eq!(ident["organization_id"], org18);
    assert_eq!(ident["username"], USERNAME);
    assert_eq!(ident["id"], id.as_str());
    let (s, ident) = org.call_as(token, GET, &id, None);
    assert_eq!(s, 200, "{ident}");
    assert_eq!(ident["user_id"], user18);
    // Without a token, or with a bad one, the identity URL is refused.
    let resp = org.http.get(&id).send().expect("identity");
    assert_eq!(resp.status().as_u16(), 403);
    let (s, _) = org.call_as("00Dbogus!token", GET, &id, None);
    assert_eq!(s, 403);
    // userinfo agrees.
    let (s, ui) = org.call_as(token, GET, &org.url("/services/oauth2/userinfo"), None);
    assert_eq!(s, 200, "{ui}");
    assert_eq!(ui["user_id"], user18);
    assert_eq!(ui["organization_id"], org18);
    assert_eq!(ui["preferred_username"], USERNAME);

    // Usernames are case-insensitive.
    let (s, b) = password_grant(&org, &USERNAME.to_uppercase(), PASSWORD);
    assert_eq!(s, 200, "{b}");
    assert!(b["id"].as_str().unwrap().ends_with(user18));

    // Over HTTPS the URLs handed out are HTTPS ones.
    let ca = std::fs::read(&org.srv.ca).expect("CA certificate");
    let tls = Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
        .build()
        .expect("client");
    let resp = tls
        .post(format!("{}/services/oauth2/token", org.srv.https))
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("username", USERNAME),
            ("password", PASSWORD),
        ])
        .send()
        .expect("token over HTTPS");
    assert_eq!(resp.status().as_u16(), 200);
    let b: Value = resp.json().unwrap();
    assert_eq!(b["instance_url"], org.srv.https.as_str(), "{b}");
    assert!(
        b["id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/id/", org.srv.https)),
        "{b}"
    );
}

#[test]
fn oauth_token_endpoint_errors() {
    let org = Org::start("auth-pw-errors");
    let grant = |pairs: &[(&str, &str)]| token_form(&org, pairs, None);

    // Wrong password and unknown user: the same answer.
    let r = password_grant(&org, USERNAME, "Wrong-passw0rd");
    assert_oauth_error(&r, "invalid_grant", "wrong password");
    assert_eq!(r.1["error_description"], "authentication failure");
    let r = password_grant(&org, "nobody@nowhere.example", PASSWORD);
    assert_oauth_error(&r, "invalid_grant", "unknown user");
    assert_eq!(r.1["error_description"], "authentication failure");

    // Unknown client id; wrong or missing secret.
    let r = grant(&[
        ("grant_type", "password"),
        ("client_id", "3MVG9unknown"),
        ("client_secret", CLIENT_SECRET),
        ("username", USERNAME),
        ("password", PASSWORD),
    ]);
    assert_oauth_error(&r, "invalid_client_id", "unknown client id");
    assert_eq!(r.1["error_description"], "client identifier invalid");
    let r = grant(&[
        ("grant_type", "password"),
        ("client_id", CLIENT_ID),
        ("client_secret", "wrong-secret"),
        ("username", USERNAME),
        ("password", PASSWORD),
    ]);
    assert_oauth_error(&r, "invalid_client", "wrong secret");
    assert_eq!(r.1["error_description"], "invalid client credentials");
    let r = grant(&[
        ("grant_type", "password"),
        ("client_id", CLIENT_ID),
        ("username", USERNAME),
        ("password", PASSWORD),
    ]);
    assert_oauth_error(
        &r,
        "invalid_client",
        "password grant without a client secret",
    );

    // Missing parameters never yield a token.
    for (what, pairs) in [
        (
            "no username",
            vec![
                ("grant_type", "password"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("password", PASSWORD),
            ],
        ),
        (
            "no password",
            vec![
                ("grant_type", "password"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("username", USERNAME),
            ],
        ),
        (
            "empty password",
            vec![
                ("grant_type", "password"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("username", USERNAME),
                ("password", ""),
            ],
        ),
        (
            "no client id",
            vec![
                ("grant_type", "password"),
                ("client_secret", CLIENT_SECRET),
                ("username", USERNAME),
                ("password", PASSWORD),
            ],
        ),
        (
            "no assertion",
            vec![("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")],
        ),
        (
            "no refresh token",
            vec![("grant_type", "refresh_token"), ("client_id", CLIENT_ID)],
        ),
        (
            "no code",
            vec![
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT),
            ],
        ),
    ] {
        let (s, b) = grant(&pairs);
        assert_eq!(s, 400, "{what}: {b}");
        assert!(b["error"].is_string(), "{what}: {b}");
        assert!(b.get("access_token").is_none(), "{what}: {b}");
    }

    // Unsupported or missing grant type.
    let r = grant(&[
        ("grant_type", "urn:example:magic"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ]);
    assert_oauth_error(&r, "unsupported_grant_type", "unknown grant type");
    assert_eq!(r.1["error_description"], "grant type not supported");
    let r = grant(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
    assert_oauth_error(&r, "unsupported_grant_type", "no grant type");

    // Invalid and missing tokens on REST: the exact 401 body clients parse.
    assert_invalid_session(&org, "00Dbogus!token", "made-up token");
    assert_invalid_session(&org, "", "empty token");
    let resp = org
        .http
        .get(org.data("/sobjects/Account"))
        .send()
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.json::<Value>().unwrap(), invalid_session_body());
}

#[test]
fn client_credentials_and_revoke() {
    let org = Org::start("auth-cc");
    let admin_id = first_id(
        &org,
        &format!("SELECT Id FROM User WHERE Username = '{USERNAME}'"),
    );

    // Client id/secret in HTTP Basic (simple-salesforce) and in the form body (aiosalesforce).
    let basic = token_form(
        &org,
        &[("grant_type", "client_credentials")],
        Some((CLIENT_ID, CLIENT_SECRET)),
    );
    let body = token_form(
        &org,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ],
        None,
    );
    for (what, (s, b)) in [("basic", &basic), ("body", &body)] {
        assert_eq!(*s, 200, "{what}: {b}");
        assert_eq!(b["instance_url"], org.srv.http.as_str(), "{what}");
        assert!(
            b["id"].as_str().unwrap().ends_with(&format!("/{admin_id}")),
            "{what}: runs as the admin: {b}"
        );
        assert!(b.get("refresh_token").is_none(), "{what}: {b}");
        let token = b["access_token"].as_str().unwrap();
        let (s, me) = query_as(
            &org,
            token,
            &format!("SELECT Id FROM User WHERE Id = '{admin_id}'"),
        );
        assert_eq!(s, 200, "{what}: {me}");
        assert_eq!(me["totalSize"], 1);
    }
    assert_ne!(basic.1["access_token"], body.1["access_token"]);

    // Wrong or missing secrets, unknown ids.
    let r = token_form(
        &org,
        &[("grant_type", "client_credentials")],
        Some((CLIENT_ID, "wrong")),
    );
    assert_oauth_error(&r, "invalid_client", "basic with a wrong secret");
    let r = token_form(
        &org,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
        ],
        None,
    );
    assert_oauth_error(&r, "invalid_client", "no secret");
    let r = token_form(
        &org,
        &[("grant_type", "client_credentials")],
        Some(("3MVG9unknown", CLIENT_SECRET)),
    );
    assert_oauth_error(&r, "invalid_client_id", "unknown client");

    // Revoking an access token ends it; the other one keeps working.
    let token = basic.1["access_token"].as_str().unwrap();
    let other = body.1["access_token"].as_str().unwrap();
    assert_eq!(revoke(&org, token), 200);
    assert_invalid_session(&org, token, "revoked token");
    assert_session_works(&org, other, "another session");
    // The identity URL refuses it too.
    let id = basic.1["id"].as_str().unwrap();
    let (s, _) = org.call_as(token, GET, id, None);
    assert_eq!(s, 403);
    // Revoking it again, or revoking nonsense: 400 invalid_token; no token: 400.
    let resp = org
        .http
        .post(org.url("/services/oauth2/revoke"))
        .form(&[("token", token)])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().unwrap()["error"], "invalid_token");
    let resp = org
        .http
        .post(org.url("/services/oauth2/revoke"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // The blind GET variant works as well.
    let url =
        Url::parse_with_params(&org.url("/services/oauth2/revoke"), &[("token", other)]).unwrap();
    assert_eq!(org.http.get(url).send().unwrap().status().as_u16(), 200);
    assert_invalid_session(&org, other, "revoked with GET");
}

#[test]
fn jwt_bearer_grant() {
    let keys = test_support::scratch_dir("auth-jwt-keys").expect("dir");
    let (key_path, cert_path) = test_support::jwt_key_pair(&keys).expect("key pair");
    let cert = cert_path.display().to_string();
    let org = Org::start_in(
        &data_dir("auth-jwt"),
        &[("CONFLUX_CLIENT_CERT_FILE", cert.as_str())],
        &[],
    );
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&key_path).unwrap())
        .expect("key");
    let other_key = {
        let dir = test_support::scratch_dir("auth-jwt-other").expect("dir");
        let (k, _) = test_support::jwt_key_pair(&dir).expect("other key");
        rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(k).unwrap()).unwrap()
    };
    let admin_id = first_id(
        &org,
        &format!("SELECT Id FROM User WHERE Username = '{USERNAME}'"),
    );
    let header = json!({"alg": "RS256"});
    let claims = |exp: Value| json!({"iss": CLIENT_ID, "sub": USERNAME, "aud": "https://login.salesforce.com", "exp": exp});
    let soon = now_secs() + 300;

    // exp as a string (simple-salesforce, Salesforce's example) and as a number.
    for exp in [json!(soon.to_string()), json!(soon)] {
        let (s, b) = jwt_grant(&org, &rs256(&key, &header, &claims(exp.clone())));
        assert_eq!(s, 200, "exp {exp}: {b}");
        assert_eq!(b["instance_url"], org.srv.http.as_str());
        assert!(b["id"].as_str().unwrap().ends_with(&admin_id), "{b}");
        let token = b["access_token"].as_str().unwrap();
        assert_ne!(token.split('.').count(), 3);
        assert_session_works(&org, token, "JWT session");
    }
    // The server's own URL and test.salesforce.com are valid audiences too; so is an array.
    for aud in [
        json!(org.srv.http),
        json!("https://test.salesforce.com"),
        json!(["https://elsewhere.example", "https://login.salesforce.com"]),
    ] {
        let mut c = claims(json!(soon));
        c["aud"] = aud.clone();
        let (s, b) = jwt_grant(&org, &rs256(&key, &header, &c));
        assert_eq!(s, 200, "aud {aud}: {b}");
    }

    let refused = |what: &str, assertion: String, error: &str| {
        let r = jwt_grant(&org, &assertion);
        assert_oauth_error(&r, error, what);
    };
    refused(
        "signed with another key",
        rs256(&other_key, &header, &claims(json!(soon))),
        "invalid_grant",
    );
    refused(
        "expired",
        rs256(&key, &header, &claims(json!(now_secs() - 3600))),
        "invalid_grant",
    );
    let mut c = claims(json!(soon));
    c["aud"] = json!("https://evil.example.com");
    refused("wrong aud", rs256(&key, &header, &c), "invalid_grant");
    let mut c = claims(json!(soon));
    c.as_object_mut().unwrap().remove("aud");
    refused("no aud", rs256(&key, &header, &c), "invalid_grant");
    let mut c = claims(json!(soon));
    c["iss"] = json!("3MVG9unknown");
    refused("unknown iss", rs256(&key, &header, &c), "invalid_client_id");
    let mut c = claims(json!(soon));
    c["sub"] = json!("nobody@nowhere.example");
    refused("unknown sub", rs256(&key, &header, &c), "invalid_grant");
    let mut c = claims(json!(soon));
    c.as_object_mut().unwrap().remove("exp");
    refused("no exp", rs256(&key, &header, &c), "invalid_grant");

    // alg none and HS256 (keyed with the consumer secret) are refused.
    let unsigned = format!(
        "{}.{}.",
        b64url(json!({"alg": "none"}).to_string().as_bytes()),
        b64url(claims(json!(soon)).to_string().as_bytes())
    );
    refused("alg none", unsigned, "invalid_grant");
    let hs_signed = format!(
        "{}.{}",
        b64url(json!({"alg": "HS256", "typ": "JWT"}).to_string().as_bytes()),
        b64url(claims(json!(soon)).to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).unwrap();
    mac.update(hs_signed.as_bytes());
    let hs = format!("{hs_signed}.{}", b64url(&mac.finalize().into_bytes()));
    refused("alg HS256", hs, "invalid_grant");
    // A valid signature over other claims: swap the payload of a good assertion.
    let good = rs256(&key, &header, &claims(json!(soon)));
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged_claims = claims(json!(soon));
    forged_claims["sub"] = json!("someone.else@example.com");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url(forged_claims.to_string().as_bytes()),
        parts[2]
    );
    refused("payload swapped", forged, "invalid_grant");
    refused("garbage", "not-a-jwt".to_string(), "invalid_grant");
}

#[test]
fn authorization_code_with_pkce_refresh_and_revoke() {
    let org = Org::start("auth-code");
    let http = no_redirect_client();

    // The authorize page is a login form that carries the request through.
    let url = Url::parse_with_params(
        &org.url("/services/oauth2/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("state", "st-42/x y"),
            ("code_challenge", challenge(VERIFIER).as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let resp = http.get(url).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    let page = resp.text().unwrap();
    assert!(
        page.contains("<form") && page.contains("name=\"password\""),
        "{page}"
    );
    assert!(
        page.contains(&challenge(VERIFIER)),
        "the challenge is carried: {page}"
    );

    // Wrong credentials: the form again, no redirect, no code.
    let (s, loc, body) = authorize_submit(&org, REDIRECT, USERNAME, "Wrong-passw0rd");
    assert_eq!(s, 200, "{body}");
    assert!(loc.is_none());
    assert!(body.contains("<form"));

    // Code → tokens (public client: PKCE, no secret).
    let code = authorization_code(&org, USERNAME, PASSWORD);
    let (s, b) = exchange_code(&org, &code, VERIFIER, REDIRECT);
    assert_eq!(s, 200, "{b}");
    let access = b["access_token"].as_str().unwrap().to_string();
    let refresh = b["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    assert_eq!(b["instance_url"], org.srv.http.as_str());
    assert_session_works(&org, &access, "code-flow token");
    // Codes are single-use.
    let r = exchange_code(&org, &code, VERIFIER, REDIRECT);
    assert_oauth_error(&r, "invalid_grant", "code reused");

    // A wrong verifier, a missing verifier or another redirect URI fail (and burn the code).
    let code = authorization_code(&org, USERNAME, PASSWORD);
    let r = exchange_code(
        &org,
        &code,
        "another-verifier-0123456789-abcdefghijklmnopqrs",
        REDIRECT,
    );
    assert_oauth_error(&r, "invalid_grant", "wrong verifier");
    let r = exchange_code(&org, &code, VERIFIER, REDIRECT);
    assert_oauth_error(&r, "invalid_grant", "code after a failed exchange");
    let code = authorization_code(&org, USERNAME, PASSWORD);
    let r = token_form(
        &org,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
        ],
        None,
    );
    assert_oauth_error(&r, "invalid_grant", "no verifier");
    let code = authorization_code(&org, USERNAME, PASSWORD);
    let r = exchange_code(&org, &code, VERIFIER, "http://127.0.0.1:53682/other");
    assert_oauth_error(&r, "invalid_grant", "other redirect URI");
    let r = exchange_code(&org, "aPrxmadeupcode", VERIFIER, REDIRECT);
    assert_oauth_error(&r, "invalid_grant", "made-up code");

    // The registered callback works; non-loopback unregistered redirect URIs are refused, also
    // when they only look like loopback ones.
    let (s, loc, body) = authorize_submit(
        &org,
        "http://localhost:1717/OauthRedirect",
        USERNAME,
        PASSWORD,
    );
    assert_eq!(s, 302, "{body}");
    assert!(loc
        .unwrap()
        .starts_with("http://localhost:1717/OauthRedirect?code="));
    for bad in [
        "https://evil.example.com/callback",
        "http://evil.example.com/",
        "http://localhost.evil.example.com/cb",
        "http://localhost:1717@evil.example.com/cb",
        "http://127.0.0.1:80@evil.example.com/",
        "http://localhost@evil.example.com/",
        "http://127.0.0.1.nip.io/cb",
        "javascript:alert(1)//http://localhost/",
    ] {
        let page = Url::parse_with_params(
            &org.url("/services/oauth2/authorize"),
            &[
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", bad),
            ],
        )
        .unwrap();
        let resp = http.get(page).send().unwrap();
        assert_eq!(resp.status().as_u16(), 400, "GET authorize with {bad}");
        assert!(resp.headers().get("location").is_none(), "{bad}");
        assert_eq!(
            resp.json::<Value>().unwrap()["error"],
            "redirect_uri_mismatch",
            "{bad}"
        );
        let (s, loc, body) = authorize_submit(&org, bad, USERNAME, PASSWORD);
        assert_eq!(s, 400, "POST authorize with {bad}: {body}");
        assert!(loc.is_none(), "{bad}: redirected to {loc:?}");
    }
    // An unknown client id is refused on the page.
    let page = Url::parse_with_params(
        &org.url("/services/oauth2/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", "3MVG9unknown"),
            ("redirect_uri", REDIRECT),
        ],
    )
    .unwrap();
    let resp = http.get(page).send().unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().unwrap()["error"], "invalid_client_id");

    // Refresh: a new working access token, no new refresh token.
    let (s, b) = refresh_grant(&org, &refresh);
    assert_eq!(s, 200, "{b}");
    let refreshed = b["access_token"].as_str().unwrap().to_string();
    assert_ne!(refreshed, access);
    assert!(b.get("refresh_token").is_none(), "{b}");
    assert_eq!(b["instance_url"], org.srv.http.as_str());
    assert_session_works(&org, &refreshed, "refreshed token");
    // With the wrong client id or secret it is refused.
    let r = token_form(
        &org,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "3MVG9unknown"),
        ],
        None,
    );
    assert_eq!(r.0, 400, "{}", r.1);
    let r = token_form(
        &org,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
        ],
        None,
    );
    assert_oauth_error(&r, "invalid_client", "refresh with a wrong secret");

    // Revoking the refresh token stops the refresh grant.
    assert_eq!(revoke(&org, &refresh), 200);
    let r = refresh_grant(&org, &refresh);
    assert_oauth_error(&r, "invalid_grant", "revoked refresh token");
    assert_eq!(r.1["error_description"], "expired access/refresh token");
}

// =================================================================================== SOAP

#[test]
fn soap_login_logout_and_faults() {
    let org = Org::start("auth-soap");
    let admin_id = first_id(
        &org,
        &format!("SELECT Id FROM User WHERE Username = '{USERNAME}'"),
    );

    // simple-salesforce's envelope.
    let (s, ct, body) = soap(
        &org,
        "u/59.0",
        &simple_salesforce_login(USERNAME, PASSWORD, None),
    );
    assert_eq!(s, 200, "{body}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    let session = tag(&body, "sessionId").expect("unprefixed <sessionId>");
    let server_url = tag(&body, "serverUrl").expect("unprefixed <serverUrl>");
    let user_id = tag(&body, "userId").expect("<userId>");
    let org18 = tag(&body, "organizationId").expect("<organizationId>");
    assert_eq!(tag(&body, "passwordExpired").as_deref(), Some("false"));
    assert_eq!(user_id, admin_id);
    assert!(org18.starts_with("00D") && org18.len() == 18, "{org18}");
    assert!(
        session.starts_with(&format!("{}!", &org18[..15])),
        "{session}"
    );
    assert_eq!(
        server_url,
        format!("{}/services/Soap/u/59.0/{}", org.srv.http, &org18[..15])
    );
    let host = Url::parse(&server_url)
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();
    assert!(!host.contains("-api"), "{host}");
    assert_session_works(&org, &session, "SOAP session on REST");

    // jsforce's envelope, the enterprise endpoint and an older version.
    for path in ["u/50.0", "c/59.0", "u/31.0"] {
        let (s, _, body) = soap(&org, path, &jsforce_login(USERNAME, PASSWORD));
        assert_eq!(s, 200, "{path}: {body}");
        let sid = tag(&body, "sessionId").expect("sessionId");
        assert_session_works(&org, &sid, path);
    }

    // Bad password, unknown user: INVALID_LOGIN faults.
    let r = soap(
        &org,
        "u/59.0",
        &simple_salesforce_login(USERNAME, "Wrong-passw0rd", None),
    );
    assert_login_fault(&r, "bad password");
    let r = soap(
        &org,
        "u/59.0",
        &jsforce_login("nobody@nowhere.example", PASSWORD),
    );
    assert_login_fault(&r, "unknown user");

    // LoginScopeHeader: the org id (15 or 18 characters) is accepted, another one is not.
    for scope in [org18.as_str(), &org18[..15]] {
        let (s, _, body) = soap(
            &org,
            "u/59.0",
            &simple_salesforce_login(USERNAME, PASSWORD, Some(scope)),
        );
        assert_eq!(s, 200, "scope {scope}: {body}");
    }
    let r = soap(
        &org,
        "u/59.0",
        &simple_salesforce_login(USERNAME, PASSWORD, Some("00D000000000001AAA")),
    );
    assert_login_fault(&r, "wrong organizationId");

    // logout with a SessionHeader ends the session; a second logout is an INVALID_SESSION_ID fault.
    let (s, _, body) = soap(&org, "u/59.0", &jsforce_logout(&session));
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("<logoutResponse"), "{body}");
    assert_invalid_session(&org, &session, "after SOAP logout");
    let (s, _, body) = soap(&org, "u/59.0", &jsforce_logout(&session));
    assert_eq!(s, 500, "{body}");
    assert!(
        body.contains("<faultcode>sf:INVALID_SESSION_ID</faultcode>"),
        "{body}"
    );

    // DTDs are refused (XXE, entity expansion): no session comes out.
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY u "{USERNAME}"><!ENTITY f SYSTEM "file:///etc/passwd">]><se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Body><login xmlns="urn:partner.soap.sforce.com"><username>&u;</username><password>{PASSWORD}&f;</password></login></se:Body></se:Envelope>"#
    );
    let (s, _, body) = soap(&org, "u/59.0", &xxe);
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("<faultcode>"), "{body}");
    assert!(
        !body.contains("<sessionId>") && !body.contains("root:"),
        "{body}"
    );
    let lol = format!(
        r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Body><login xmlns="urn:partner.soap.sforce.com"><username>&c;</username><password>{PASSWORD}</password></login></se:Body></se:Envelope>"#
    );
    let (s, _, body) = soap(&org, "u/59.0", &lol);
    assert_eq!(s, 500, "{body}");
    assert!(
        !body.contains("aaaaaaaaaa"),
        "entities must not be expanded"
    );
    // An undeclared entity is refused as well.
    let (s, _, body) = soap(
        &org,
        "u/59.0",
        &jsforce_login(USERNAME, PASSWORD).replace("</password>", "&f;</password>"),
    );
    assert_eq!(s, 500, "{body}");
    assert!(!body.contains("<sessionId>"));

    // Usernames and passwords with XML-escaped characters.
    let odd_user = "o'brien&co<x>@example.com";
    let odd_password = "Pa&ss<w0rd>\"'";
    let odd_id = create_user(&org, odd_user, "Standard User", odd_password);
    for envelope in [
        simple_salesforce_login(odd_user, odd_password, None),
        jsforce_login(odd_user, odd_password),
        // Numeric character references for the same characters.
        jsforce_login("x", "y")
            .replace(
                "<username>x</username>",
                "<username>o&#39;brien&#x26;co&#60;x&#x3E;@example.com</username>",
            )
            .replace(
                "<password>y</password>",
                "<password>Pa&#38;ss&lt;w0rd&gt;&#34;&apos;</password>",
            ),
    ] {
        let (s, _, body) = soap(&org, "u/59.0", &envelope);
        assert_eq!(s, 200, "{envelope}\n{body}");
        assert_eq!(tag(&body, "userId").as_deref(), Some(odd_id.as_str()));
        assert!(
            body.contains("<userName>o&apos;brien&amp;co&lt;x&gt;@example.com</userName>")
                || body.contains("<userName>o'brien&amp;co&lt;x&gt;@example.com</userName>"),
            "the username comes back escaped: {body}"
        );
    }
    // The same credentials work through OAuth.
    let (s, b) = password_grant(&org, odd_user, odd_password);
    assert_eq!(s, 200, "{b}");
    // And the unescaped password text is not the password.
    let r = soap(
        &org,
        "u/59.0",
        &jsforce_login(odd_user, "Pa&amp;ss&lt;w0rd&gt;\"'"),
    );
    assert_login_fault(&r, "double-escaped password");
}

// =============================================================================== sessions

#[test]
fn idle_sessions_expire() {
    let org = Org::start_in(&data_dir("auth-idle"), &[], &["--session-timeout", "1"]);
    // A fresh session works (retry: a loaded machine may take a second between login and use).
    let mut fresh = None;
    for _ in 0..5 {
        let token = login_as(&org, USERNAME, PASSWORD);
        let (s, _) = org.call_as(&token, GET, &org.data("/sobjects/Account"), None);
        if s == 200 {
            fresh = Some(token);
            break;
        }
    }
    let token = fresh.expect("a fresh session works at least once");
    let soap_session = soap_login(&org, USERNAME, PASSWORD);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_invalid_session(&org, &token, "idle OAuth session");
    assert_invalid_session(&org, &soap_session, "idle SOAP session");
    // Still expired on the next use, and on the identity URL.
    assert_invalid_session(&org, &token, "expired session used again");
    let (s, _) = org.call_as(&token, GET, &org.url("/services/oauth2/userinfo"), None);
    assert_eq!(s, 403);
    // SOAP reports the session length it was configured with.
    let (_, _, body) = soap(&org, "u/59.0", &jsforce_login(USERNAME, PASSWORD));
    assert_eq!(tag(&body, "sessionSecondsValid").as_deref(), Some("1"));
}

#[test]
fn sessions_survive_restart() {
    let data = data_dir("auth-restart");
    let org = Org::start_in(&data, &[], &[]);
    let kept = login_as(&org, USERNAME, PASSWORD);
    let revoked = login_as(&org, USERNAME, PASSWORD);
    let soap_session = soap_login(&org, USERNAME, PASSWORD);
    let std_id = create_user(
        &org,
        "restart.user@example.com",
        "Standard User",
        "Restart-passw0rd",
    );
    let std_token = login_as(&org, "restart.user@example.com", "Restart-passw0rd");
    let account = org.create("Account", json!({"Name": "before restart"}));
    assert_eq!(revoke(&org, &revoked), 200);
    let Org { srv, .. } = org;
    srv.stop().expect("clean stop");

    let org = Org::start_in(&data, &[], &[]);
    for (what, t) in [
        ("OAuth", &kept),
        ("SOAP", &soap_session),
        ("standard user", &std_token),
    ] {
        let (s, b) = org.call_as(
            t,
            GET,
            &org.data(&format!("/sobjects/Account/{account}")),
            None,
        );
        assert_eq!(s, 200, "{what} session after restart: {b}");
        assert_eq!(b["Name"], "before restart");
    }
    assert_invalid_session(&org, &revoked, "revoked before the restart");
    // The restarted server still knows who the standard user is and what they may do.
    let (s, b) = query_as(
        &org,
        &std_token,
        "SELECT Id FROM User WHERE Username = 'restart.user@example.com'",
    );
    assert_eq!((s, &b["records"][0]["Id"]), (200, &json!(std_id)), "{b}");
    let (s, b) = org.call_as(
        &std_token,
        POST,
        &org.data("/tooling/sobjects/CustomObject"),
        Some(json!({"FullName": "Nope__c", "Metadata": {"label": "Nope", "pluralLabel": "Nopes"}})),
    );
    assert_eq!(s, 403, "{b}");
}

// ============================================================================== lockout

#[test]
fn repeated_failures_lock_the_user_out() {
    let org = Org::start_in(
        &data_dir("auth-lockout"),
        &[("CONFLUX_LOCKOUT_ATTEMPTS", "3")],
        &[],
    );
    let victim = "victim@example.com";
    let victim_pw = "Victim-passw0rd";
    let bystander = "bystander@example.com";
    let bystander_pw = "Bystander-passw0rd";
    create_user(&org, victim, "Standard User", victim_pw);
    create_user(&org, bystander, "Standard User", bystander_pw);
    // A session opened before the lockout.
    let before = login_as(&org, victim, victim_pw);

    // Failures spread over both surfaces count together.
    let r = password_grant(&org, victim, "Wrong-passw0rd1");
    assert_oauth_error(&r, "invalid_grant", "failure 1");
    let r = soap(&org, "u/59.0", &jsforce_login(victim, "Wrong-passw0rd2"));
    assert_login_fault(&r, "failure 2");
    let r = password_grant(&org, &victim.to_uppercase(), "Wrong-passw0rd3");
    assert_oauth_error(&r, "invalid_grant", "failure 3");

    // Now the right password is refused too, on every surface and spelling of the username.
    let r = password_grant(&org, victim, victim_pw);
    assert_oauth_error(&r, "invalid_grant", "locked out (OAuth)");
    assert_eq!(r.1["error_description"], "authentication failure");
    let r = soap(&org, "u/59.0", &jsforce_login(victim, victim_pw));
    assert_login_fault(&r, "locked out (SOAP)");
    for spelling in [
        victim.to_uppercase(),
        format!(" {victim}"),
        format!("{victim} "),
        format!("\t{victim}\n"),
    ] {
        let r = password_grant(&org, &spelling, victim_pw);
        assert_oauth_error(&r, "invalid_grant", &format!("locked out as {spelling:?}"));
        let r = soap(&org, "u/59.0", &jsforce_login(&spelling, victim_pw));
        assert_login_fault(&r, &format!("locked out (SOAP) as {spelling:?}"));
    }
    let (s, loc, _) = authorize_submit(&org, REDIRECT, victim, victim_pw);
    assert!(s != 302 && loc.is_none(), "authorize while locked out");

    // Other users are not affected.
    let (s, b) = password_grant(&org, bystander, bystander_pw);
    assert_eq!(s, 200, "{b}");
    soap_login(&org, bystander, bystander_pw);
    login_as(&org, USERNAME, PASSWORD);
    // A session opened before the lockout is not a login: it keeps working.
    assert_session_works(&org, &before, "session from before the lockout");
}

// ===================================================================== users and permissions

#[test]
fn standard_user_crud_and_no_escalation() {
    let org = Org::start("auth-standard");
    let user = "std.user@example.com";
    let pw = "Standard-passw0rd";
    let user_id = create_user(&org, user, "Standard User", pw);
    let admin_id = first_id(
        &org,
        &format!("SELECT Id FROM User WHERE Username = '{USERNAME}'"),
    );
    let admin_profile = profile_id(&org, "System Administrator");
    let (s, b) = password_grant(&org, user, pw);
    assert_eq!(s, 200, "{b}");
    assert!(b["id"].as_str().unwrap().ends_with(&user_id));
    let tok = b["access_token"].as_str().unwrap().to_string();
    let soap_tok = soap_login(&org, user, pw);

    // CRUD on Account.
    for t in [&tok, &soap_tok] {
        let (s, b) = org.call_as(
            t,
            POST,
            &org.data("/sobjects/Account"),
            Some(json!({"Name": "Mine", "Phone": "555"})),
        );
        assert_eq!(s, 201, "{b}");
        let id = b["id"].as_str().unwrap().to_string();
        let url = org.data(&format!("/sobjects/Account/{id}"));
        let (s, b) = org.call_as(t, GET, &url, None);
        assert_eq!((s, &b["Phone"]), (200, &json!("555")), "{b}");
        let (s, b) = org.call_as(t, PATCH, &url, Some(json!({"Phone": "556"})));
        assert_eq!(s, 204, "{b}");
        let (s, b) = query_as(
            &org,
            t,
            &format!("SELECT Phone, CreatedBy.Username FROM Account WHERE Id = '{id}'"),
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["records"][0]["Phone"], "556");
        assert_eq!(b["records"][0]["CreatedBy"]["Username"], user);
        let (s, b) = org.call_as(t, DELETE, &url, None);
        assert_eq!(s, 204, "{b}");
    }

    // The Tooling API is refused and changes nothing.
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/tooling/sobjects/CustomObject"),
        Some(json!({"FullName": "Evil__c", "Metadata": {"label": "Evil", "pluralLabel": "Evils"}})),
    );
    assert_eq!(s, 403, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_ACCESS");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/tooling/sobjects/CustomField"),
        Some(json!({"FullName": "Account.Evil__c", "Metadata": {"type": "Text", "length": 10}})),
    );
    assert_eq!(s, 403, "{b}");
    let (s, _) = org.call(GET, &org.data("/sobjects/Evil__c/describe"), None);
    assert_eq!(s, 404);
    assert!(!described_fields(&org, &org.token, "Account").contains(&"Evil__c".to_string()));

    // No way up: own profile, permission sets and assignments, other users' passwords.
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/User/{user_id}")),
        Some(json!({"ProfileId": admin_profile})),
    );
    assert_eq!(s, 400, "{b}");
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/User/{user_id}")),
        Some(json!({"Title": "Boss"})),
    );
    assert_eq!(s, 400, "{b}");
    let admin_set = first_id(
        &org,
        &format!("SELECT Id FROM PermissionSet WHERE ProfileId = '{admin_profile}'"),
    );
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/PermissionSetAssignment"),
        Some(json!({"AssigneeId": user_id, "PermissionSetId": admin_set})),
    );
    assert!(s == 400 || s == 404, "{s} {b}");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/PermissionSet"),
        Some(json!({"Name": "Mine", "Label": "Mine", "PermissionsModifyAllData": true})),
    );
    assert!(s == 400 || s == 404, "{s} {b}");
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/PermissionSet/{admin_set}")),
        Some(json!({"Description": "x"})),
    );
    assert!(s == 400 || s == 404, "{s} {b}");
    let (s, b) = query_as(&org, &tok, "SELECT Id FROM PermissionSet");
    assert_eq!((s, code(&b)), (400, "INVALID_TYPE"), "{b}");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data(&format!("/sobjects/User/{admin_id}/password")),
        Some(json!({"NewPassword": "Hijacked-passw0rd"})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_ACCESS_OR_READONLY");
    let (s, b) = org.call_as(&tok, POST, &org.data("/sobjects/User"), Some(json!({"Username": "sock@example.com", "LastName": "Sock", "Email": "s@example.com", "Alias": "sock", "ProfileId": admin_profile})));
    assert_eq!(s, 400, "{b}");
    login_as(&org, USERNAME, PASSWORD);
    assert_eq!(org.count("SELECT COUNT() FROM PermissionSetAssignment"), 0);
    assert_eq!(
        org.count("SELECT COUNT() FROM User WHERE Username = 'sock@example.com'"),
        0
    );
    assert_eq!(
        org.count(&format!(
            "SELECT COUNT() FROM User WHERE Id = '{user_id}' AND ProfileId = '{admin_profile}'"
        )),
        0
    );
    // Still a standard user after all that.
    let (s, _) = org.call_as(
        &tok,
        POST,
        &org.data("/tooling/sobjects/CustomObject"),
        Some(json!({"FullName": "Evil__c", "Metadata": {"label": "Evil", "pluralLabel": "Evils"}})),
    );
    assert_eq!(s, 403);

    // The identity URL of someone else is refused; one's own works.
    let org18 = first_id(&org, "SELECT Id FROM Organization");
    let (s, _) = org.call_as(
        &tok,
        GET,
        &org.url(&format!("/id/{org18}/{admin_id}")),
        None,
    );
    assert_eq!(s, 403);
    let (s, b) = org.call_as(&tok, GET, &org.url(&format!("/id/{org18}/{user_id}")), None);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["username"], user);

    // Moving the user to another profile takes effect on the open session.
    let (s, b) = org.call(
        PATCH,
        &org.data(&format!("/sobjects/User/{user_id}")),
        Some(json!({"ProfileId": profile_id(&org, "Read Only")})),
    );
    assert_eq!(s, 204, "{b}");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/Account"),
        Some(json!({"Name": "After the move"})),
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INSUFFICIENT_ACCESS_OR_READONLY"),
        "{b}"
    );
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name = 'After the move'"),
        0
    );
}

#[test]
fn read_only_user_cannot_write() {
    let org = Org::start("auth-readonly");
    let account = org.create("Account", json!({"Name": "Visible", "Phone": "1"}));
    let user = "reader@example.com";
    create_user(&org, user, "Read Only", "Reader-passw0rd");
    let tok = login_as(&org, user, "Reader-passw0rd");
    let url = org.data(&format!("/sobjects/Account/{account}"));

    let (s, b) = org.call_as(&tok, GET, &url, None);
    assert_eq!((s, &b["Phone"]), (200, &json!("1")), "{b}");
    let (s, b) = query_as(&org, &tok, "SELECT Name, Phone FROM Account");
    assert_eq!((s, &b["totalSize"]), (200, &json!(1)), "{b}");
    let (s, b) = org.call_as(&tok, GET, &org.data("/sobjects/Account/describe"), None);
    assert_eq!(s, 200);
    assert_eq!(b["createable"], false);
    assert_eq!(b["updateable"], false);
    assert_eq!(b["deletable"], false);

    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/Account"),
        Some(json!({"Name": "Nope"})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_ACCESS_OR_READONLY", "{b}");
    let (s, b) = org.call_as(&tok, PATCH, &url, Some(json!({"Name": "Changed"})));
    assert_eq!(s, 400, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_ACCESS_OR_READONLY", "{b}");
    let (s, b) = org.call_as(&tok, PATCH, &url, Some(json!({"Phone": "2"})));
    assert_eq!(s, 400, "{b}");
    let (s, b) = org.call_as(&tok, DELETE, &url, None);
    assert_eq!(s, 400, "{b}");
    assert_eq!(code(&b), "INSUFFICIENT_ACCESS_OR_READONLY", "{b}");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/Contact"),
        Some(json!({"LastName": "Nope", "AccountId": account})),
    );
    assert_eq!(s, 400, "{b}");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/tooling/sobjects/CustomField"),
        Some(json!({"FullName": "Account.Nope__c", "Metadata": {"type": "Text", "length": 10}})),
    );
    assert_eq!(s, 403, "{b}");

    // Nothing was written.
    assert_eq!(org.count("SELECT COUNT() FROM Account"), 1);
    assert_eq!(org.count("SELECT COUNT() FROM Contact"), 0);
    let b = org.query(&format!(
        "SELECT Name, Phone, IsDeleted FROM Account WHERE Id = '{account}'"
    ));
    assert_eq!(b["records"][0]["Name"], "Visible");
    assert_eq!(b["records"][0]["Phone"], "1");
}

/// Every way a Standard User could see or use `Account.Secret__c` and `Contact.Secret__c` fails
/// as if the field did not exist, and nothing is written.
fn assert_secret_hidden(org: &Org, tok: &str, account: &str, what: &str) {
    let url = org.data(&format!("/sobjects/Account/{account}"));
    let (s, b) = org.call_as(tok, GET, &url, None);
    assert_eq!(s, 200, "{what}: {b}");
    assert!(b.get("Name").is_some(), "{what}: {b}");
    assert!(
        b.get("Secret__c").is_none(),
        "{what}: GET record shows it: {b}"
    );
    assert!(!b.to_string().contains("s3cr3t"), "{what}: {b}");
    let (s, b) = org.call_as(tok, GET, &format!("{url}?fields=Name,Secret__c"), None);
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_FIELD"),
        "{what}: ?fields=: {b}"
    );
    let (s, b) = org.call_as(tok, GET, &format!("{url}?fields=secret__c"), None);
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_FIELD"),
        "{what}: ?fields= lower case: {b}"
    );
    for object in ["Account", "Contact"] {
        assert!(
            !described_fields(org, tok, object).contains(&"Secret__c".to_string()),
            "{what}: describe {object}"
        );
    }

    // SOQL: every clause, relationship direction and aggregate.
    let (s, b) = query_as(org, tok, "SELECT Id, Secret__c FROM Account");
    assert_eq!((s, code(&b)), (400, "INVALID_FIELD"), "{what}: {b}");
    let msg = b[0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("ERROR at Row:1:Column:") && msg.contains('^'),
        "{what}: caret: {msg}"
    );
    assert!(
        msg.contains("No such column 'Secret__c' on entity 'Account'"),
        "{what}: {msg}"
    );
    for q in [
        "SELECT secret__c FROM Account",
        "SELECT Id FROM Account WHERE Secret__c = 's3cr3t-a'",
        "SELECT Id FROM Account WHERE Secret__c LIKE 's%'",
        "SELECT COUNT() FROM Account WHERE Secret__c != null",
        "SELECT Id FROM Account WHERE Name != null OR Secret__c = 'x'",
        "SELECT Id FROM Account ORDER BY Secret__c",
        "SELECT Secret__c, COUNT(Id) FROM Account GROUP BY Secret__c",
        "SELECT MAX(Secret__c) FROM Account",
        "SELECT COUNT(Secret__c) FROM Account",
        "SELECT COUNT_DISTINCT(Secret__c) FROM Account",
        "SELECT Account.Secret__c FROM Contact",
        "SELECT Id FROM Contact WHERE Account.Secret__c = 's3cr3t-a'",
        "SELECT Id FROM Contact ORDER BY Account.Secret__c",
        "SELECT c.Account.Secret__c FROM Contact c",
        "SELECT Id, (SELECT Secret__c FROM Contacts) FROM Account",
        "SELECT Id, (SELECT Id FROM Contacts WHERE Secret__c = 's3cr3t-c') FROM Account",
        "SELECT Id, (SELECT Id FROM Contacts ORDER BY Secret__c) FROM Account",
        "SELECT Id, (SELECT Account.Secret__c FROM Contacts) FROM Account",
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE Secret__c = 's3cr3t-c')",
        "SELECT Id FROM Account WHERE Secret__c IN (SELECT LastName FROM Contact)",
        "SELECT Id FROM Contact WHERE AccountId IN (SELECT Id FROM Account WHERE Secret__c = 's3cr3t-a')",
    ] {
        let (s, b) = query_as(org, tok, q);
        assert_eq!(s, 400, "{what}: {q}: {b}");
        assert!(
            ["INVALID_FIELD", "MALFORMED_QUERY", "INVALID_TYPE"].contains(&code(&b)),
            "{what}: {q}: {b}"
        );
        let (s, b) = query_all_as(org, tok, q);
        assert_eq!(s, 400, "{what}: queryAll {q}: {b}");
    }
    for q in [
        "SELECT FIELDS(ALL) FROM Account LIMIT 200",
        "SELECT FIELDS(CUSTOM) FROM Account LIMIT 200",
        "SELECT FIELDS(STANDARD) FROM Account",
        "SELECT FIELDS(ALL), (SELECT FIELDS(ALL) FROM Contacts LIMIT 200) FROM Account LIMIT 200",
        "SELECT FIELDS(ALL) FROM Contact LIMIT 200",
    ] {
        let (s, b) = query_as(org, tok, q);
        assert_eq!(s, 200, "{what}: {q}: {b}");
        assert!(b["totalSize"].as_u64().unwrap() >= 1, "{what}: {q}: {b}");
        let text = b.to_string();
        assert!(
            !text.contains("Secret__c") && !text.contains("s3cr3t"),
            "{what}: {q}: {b}"
        );
    }

    // Lookups by the hidden external id, writes naming it.
    let (s, b) = org.call_as(
        tok,
        GET,
        &org.data("/sobjects/Account/Secret__c/s3cr3t-a"),
        None,
    );
    assert!(
        s == 404 || s == 400,
        "{what}: GET by hidden external id: {s} {b}"
    );
    assert!(!b.to_string().contains(account), "{what}: {b}");
    let (s, b) = org.call_as(
        tok,
        PATCH,
        &org.data("/sobjects/Account/Secret__c/s3cr3t-a"),
        Some(json!({"Name": "via upsert"})),
    );
    assert!(
        s == 404 || s == 400,
        "{what}: upsert by hidden external id: {s} {b}"
    );
    let (s, b) = org.call_as(
        tok,
        PATCH,
        &org.data("/sobjects/Account/Secret__c/new-value"),
        Some(json!({"Name": "upsert-created"})),
    );
    assert!(
        s == 404 || s == 400,
        "{what}: upsert-create by hidden external id: {s} {b}"
    );
    let (s, b) = org.call_as(
        tok,
        POST,
        &org.data("/sobjects/Account"),
        Some(json!({"Name": "planted", "Secret__c": "x"})),
    );
    assert_eq!((s, code(&b)), (400, "INVALID_FIELD"), "{what}: create: {b}");
    let (s, b) = org.call_as(tok, PATCH, &url, Some(json!({"Secret__c": "overwritten"})));
    assert_eq!((s, code(&b)), (400, "INVALID_FIELD"), "{what}: update: {b}");
    let (s, b) = org.call_as(
        tok,
        POST,
        &org.data("/sobjects/Contact"),
        Some(json!({"LastName": "probe", "Account": {"Secret__c": "s3cr3t-a"}})),
    );
    assert_eq!(s, 400, "{what}: parent by hidden external id: {b}");
    let (s, b) = org.call_as(
        tok,
        POST,
        &org.data("/sobjects/Contact"),
        Some(json!({"LastName": "probe2", "Secret__c": "x"})),
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_FIELD"),
        "{what}: contact create: {b}"
    );
}

#[test]
fn field_level_security_on_every_path() {
    let org = Org::start("auth-fls");
    create_field(
        &org,
        "Account.Secret__c",
        json!({"type": "Text", "length": 50, "externalId": true, "label": "Secret"}),
    );
    create_field(
        &org,
        "Contact.Secret__c",
        json!({"type": "Text", "length": 50, "label": "Secret"}),
    );
    let account = org.create("Account", json!({"Name": "Acme", "Secret__c": "s3cr3t-a"}));
    org.create(
        "Contact",
        json!({"LastName": "Doe", "AccountId": account, "Secret__c": "s3cr3t-c"}),
    );
    let user = "fls.user@example.com";
    create_user(&org, user, "Standard User", "Fls-passw0rd1");
    let tok = login_as(&org, user, "Fls-passw0rd1");
    let counts = |org: &Org| {
        (
            org.count("SELECT COUNT() FROM Account"),
            org.count("SELECT COUNT() FROM Contact"),
            org.count("SELECT COUNT() FROM Account WHERE Secret__c = 's3cr3t-a'"),
        )
    };
    let before = counts(&org);

    // A new custom field is invisible to a Standard User until granted.
    assert_secret_hidden(&org, &tok, &account, "never granted");
    assert_eq!(counts(&org), before, "nothing was written");

    // Grant read (no edit) on the profile's permission set: visible everywhere, same session.
    let profile = profile_id(&org, "Standard User");
    let set = first_id(
        &org,
        &format!("SELECT Id FROM PermissionSet WHERE ProfileId = '{profile}'"),
    );
    let fp = org.create(
        "FieldPermissions",
        json!({"ParentId": set, "SobjectType": "Account", "Field": "Account.Secret__c", "PermissionsRead": true, "PermissionsEdit": false}),
    );
    let url = org.data(&format!("/sobjects/Account/{account}"));
    let (s, b) = org.call_as(&tok, GET, &url, None);
    assert_eq!((s, &b["Secret__c"]), (200, &json!("s3cr3t-a")), "{b}");
    let (s, b) = org.call_as(&tok, GET, &format!("{url}?fields=Secret__c"), None);
    assert_eq!((s, &b["Secret__c"]), (200, &json!("s3cr3t-a")), "{b}");
    for q in [
        "SELECT Secret__c FROM Account WHERE Secret__c = 's3cr3t-a'",
        "SELECT Account.Secret__c FROM Contact",
        "SELECT FIELDS(CUSTOM) FROM Account LIMIT 200",
    ] {
        let (s, b) = query_as(&org, &tok, q);
        assert_eq!(s, 200, "{q}: {b}");
        assert!(b.to_string().contains("s3cr3t-a"), "{q}: {b}");
    }
    let (s, b) = org.call_as(&tok, GET, &org.data("/sobjects/Account/describe"), None);
    assert_eq!(s, 200);
    let f = b["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Secret__c")
        .expect("described");
    assert_eq!(
        (f["updateable"].clone(), f["createable"].clone()),
        (json!(false), json!(false))
    );
    let (s, b) = org.call_as(
        &tok,
        GET,
        &org.data("/sobjects/Account/Secret__c/s3cr3t-a"),
        None,
    );
    assert_eq!(s, 200, "{b}");
    // Read-only: writing it is INVALID_FIELD_FOR_INSERT_UPDATE.
    let (s, b) = org.call_as(&tok, PATCH, &url, Some(json!({"Secret__c": "changed"})));
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        "{b}"
    );
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/Account"),
        Some(json!({"Name": "n", "Secret__c": "x"})),
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        "{b}"
    );
    assert_eq!(counts(&org), before, "nothing was written");

    // Grant edit: writes go through.
    let (s, b) = org.call(
        PATCH,
        &org.data(&format!("/sobjects/FieldPermissions/{fp}")),
        Some(json!({"PermissionsEdit": true})),
    );
    assert_eq!(s, 204, "{b}");
    let (s, b) = org.call_as(&tok, PATCH, &url, Some(json!({"Secret__c": "s3cr3t-a"})));
    assert_eq!(s, 204, "{b}");
    let (s, b) = org.call_as(&tok, PATCH, &url, Some(json!({"Secret__c": "s3cr3t-a2"})));
    assert_eq!(s, 204, "{b}");
    let (s, b) = org.call_as(&tok, PATCH, &url, Some(json!({"Secret__c": "s3cr3t-a"})));
    assert_eq!(s, 204, "{b}");

    // Remove the grant: hidden on every path again, still without logging in again.
    let (s, b) = org.call(
        DELETE,
        &org.data(&format!("/sobjects/FieldPermissions/{fp}")),
        None,
    );
    assert_eq!(s, 204, "{b}");
    assert_secret_hidden(&org, &tok, &account, "grant deleted");
    assert_eq!(counts(&org), before, "nothing was written");

    // A grant through an assigned permission set, then unassigned.
    let extra = org.create(
        "PermissionSet",
        json!({"Name": "Secret_Readers", "Label": "Secret Readers"}),
    );
    org.create("FieldPermissions", json!({"ParentId": extra, "SobjectType": "Account", "Field": "Account.Secret__c", "PermissionsRead": true, "PermissionsEdit": false}));
    let user_id = first_id(
        &org,
        &format!("SELECT Id FROM User WHERE Username = '{user}'"),
    );
    assert_secret_hidden(&org, &tok, &account, "granted in an unassigned set");
    let assignment = org.create(
        "PermissionSetAssignment",
        json!({"AssigneeId": user_id, "PermissionSetId": extra}),
    );
    let (s, b) = org.call_as(&tok, GET, &url, None);
    assert_eq!((s, &b["Secret__c"]), (200, &json!("s3cr3t-a")), "{b}");
    let (s, b) = org.call(
        DELETE,
        &org.data(&format!("/sobjects/PermissionSetAssignment/{assignment}")),
        None,
    );
    assert_eq!(s, 204, "{b}");
    assert_secret_hidden(&org, &tok, &account, "set unassigned");
    // Deleting the whole set (cascading to its grants) also takes effect at once.
    org.create(
        "PermissionSetAssignment",
        json!({"AssigneeId": user_id, "PermissionSetId": extra}),
    );
    let (s, b) = org.call_as(&tok, GET, &url, None);
    assert_eq!((s, &b["Secret__c"]), (200, &json!("s3cr3t-a")), "{b}");
    let (s, b) = org.call(
        DELETE,
        &org.data(&format!("/sobjects/PermissionSet/{extra}")),
        None,
    );
    assert_eq!(s, 204, "{b}");
    assert_secret_hidden(&org, &tok, &account, "set deleted");
    assert_eq!(counts(&org), before, "nothing was written");
}

#[test]
fn custom_object_invisible_until_granted() {
    let org = Org::start("auth-custom-object");
    let (s, b) = org.call(
        POST,
        &org.data("/tooling/sobjects/CustomObject"),
        Some(json!({"FullName": "Foo__c", "Metadata": {"label": "Foo", "pluralLabel": "Foos", "nameField": {"type": "Text", "label": "Foo Name"}}})),
    );
    assert_eq!(s, 201, "{b}");
    create_field(
        &org,
        "Foo__c.Note__c",
        json!({"type": "Text", "length": 40}),
    );
    create_field(
        &org,
        "Foo__c.Account__c",
        json!({"type": "Lookup", "referenceTo": "Account", "relationshipName": "Foos"}),
    );
    create_field(
        &org,
        "Account.Foo__c",
        json!({"type": "Lookup", "referenceTo": "Foo__c", "relationshipName": "Accounts"}),
    );
    let account = org.create("Account", json!({"Name": "Parent"}));
    let foo = org.create(
        "Foo__c",
        json!({"Name": "first", "Note__c": "hidden note", "Account__c": account}),
    );
    let (s, b) = org.call(
        PATCH,
        &org.data(&format!("/sobjects/Account/{account}")),
        Some(json!({"Foo__c": foo})),
    );
    assert_eq!(s, 204, "{b}");

    let user = "foo.user@example.com";
    let user_id = create_user(&org, user, "Standard User", "Foo-passw0rd1");
    let tok = login_as(&org, user, "Foo-passw0rd1");
    let admin_count = |org: &Org| org.count("SELECT COUNT() FROM Foo__c");

    let assert_invisible = |what: &str| {
        assert!(
            !described_objects(&org, &tok).contains(&"Foo__c".to_string()),
            "{what}: describe global"
        );
        for path in [
            "/sobjects/Foo__c",
            "/sobjects/Foo__c/describe",
            &format!("/sobjects/Foo__c/{foo}"),
            "/sobjects/foo__C",
        ] {
            let (s, b) = org.call_as(&tok, GET, &org.data(path), None);
            assert_eq!((s, code(&b)), (404, "NOT_FOUND"), "{what}: {path}: {b}");
        }
        let (s, b) = org.call_as(
            &tok,
            POST,
            &org.data("/sobjects/Foo__c"),
            Some(json!({"Name": "sneaky"})),
        );
        assert_eq!(s, 404, "{what}: create: {b}");
        let (s, b) = org.call_as(
            &tok,
            PATCH,
            &org.data(&format!("/sobjects/Foo__c/{foo}")),
            Some(json!({"Name": "sneaky"})),
        );
        assert_eq!(s, 404, "{what}: update: {b}");
        let (s, b) = org.call_as(
            &tok,
            DELETE,
            &org.data(&format!("/sobjects/Foo__c/{foo}")),
            None,
        );
        assert_eq!(s, 404, "{what}: delete: {b}");
        for q in [
            "SELECT Id FROM Foo__c",
            "SELECT COUNT() FROM foo__c",
            "SELECT Id, (SELECT Id FROM Foos__r) FROM Account",
        ] {
            let (s, b) = query_as(&org, &tok, q);
            assert_eq!((s, code(&b)), (400, "INVALID_TYPE"), "{what}: {q}: {b}");
            let msg = b[0]["message"].as_str().unwrap_or_default();
            assert!(msg.contains('^'), "{what}: {q}: caret: {msg}");
        }
        let (s, b) = org.call_as(&tok, GET, &org.data("/sobjects/Account/describe"), None);
        assert_eq!(s, 200);
        assert!(
            !b["childRelationships"].to_string().contains("Foo__c"),
            "{what}: child relationships: {b}"
        );
    };
    assert_invisible("not granted");

    // Reading the lookup field on Account does not open the object behind it.
    let profile = profile_id(&org, "Standard User");
    let std_set = first_id(
        &org,
        &format!("SELECT Id FROM PermissionSet WHERE ProfileId = '{profile}'"),
    );
    org.create("FieldPermissions", json!({"ParentId": std_set, "SobjectType": "Account", "Field": "Account.Foo__c", "PermissionsRead": true}));
    let (s, b) = query_as(&org, &tok, "SELECT Foo__c FROM Account");
    assert_eq!((s, &b["records"][0]["Foo__c"]), (200, &json!(foo)), "{b}");
    for q in [
        "SELECT Foo__r.Name FROM Account",
        "SELECT Id FROM Account WHERE Foo__r.Name = 'first'",
    ] {
        let (s, b) = query_as(&org, &tok, q);
        assert_eq!((s, code(&b)), (400, "INVALID_FIELD"), "{q}: {b}");
    }
    assert_invisible("lookup readable");

    // A permission set granting read/create/edit, not yet assigned: still invisible.
    let set = org.create(
        "PermissionSet",
        json!({"Name": "Foo_Access", "Label": "Foo Access"}),
    );
    org.create("ObjectPermissions", json!({"ParentId": set, "SobjectType": "Foo__c", "PermissionsRead": true, "PermissionsCreate": true, "PermissionsEdit": true, "PermissionsDelete": false}));
    assert_invisible("granted in an unassigned set");
    let before = admin_count(&org);
    let assignment = org.create(
        "PermissionSetAssignment",
        json!({"AssigneeId": user_id, "PermissionSetId": set}),
    );

    // Visible now, same session; Note__c (no field permission) stays hidden.
    assert!(described_objects(&org, &tok).contains(&"Foo__c".to_string()));
    let (s, b) = org.call_as(
        &tok,
        GET,
        &org.data(&format!("/sobjects/Foo__c/{foo}")),
        None,
    );
    assert_eq!((s, &b["Name"]), (200, &json!("first")), "{b}");
    assert!(b.get("Note__c").is_none(), "{b}");
    let (s, b) = query_as(
        &org,
        &tok,
        "SELECT Id, Name, (SELECT Id FROM Accounts__r) FROM Foo__c",
    );
    assert_eq!((s, &b["totalSize"]), (200, &json!(1)), "{b}");
    let (s, b) = query_as(&org, &tok, "SELECT Foo__r.Name FROM Account");
    assert_eq!(
        (s, &b["records"][0]["Foo__r"]["Name"]),
        (200, &json!("first")),
        "{b}"
    );
    let (s, b) = query_as(&org, &tok, "SELECT Note__c FROM Foo__c");
    assert_eq!((s, code(&b)), (400, "INVALID_FIELD"), "{b}");
    assert!(!described_fields(&org, &tok, "Foo__c").contains(&"Note__c".to_string()));
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/Foo__c"),
        Some(json!({"Name": "second", "Note__c": "x"})),
    );
    assert_eq!((s, code(&b)), (400, "INVALID_FIELD"), "{b}");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/Foo__c"),
        Some(json!({"Name": "second"})),
    );
    assert_eq!(s, 201, "{b}");
    let second = b["id"].as_str().unwrap().to_string();
    let (s, b) = org.call_as(
        &tok,
        DELETE,
        &org.data(&format!("/sobjects/Foo__c/{second}")),
        None,
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INSUFFICIENT_ACCESS_OR_READONLY"),
        "no delete permission: {b}"
    );
    assert_eq!(admin_count(&org), before + 1);

    // Field permission: read only, then edit.
    let fp = org.create("FieldPermissions", json!({"ParentId": set, "SobjectType": "Foo__c", "Field": "Foo__c.Note__c", "PermissionsRead": true, "PermissionsEdit": false}));
    let (s, b) = org.call_as(
        &tok,
        GET,
        &org.data(&format!("/sobjects/Foo__c/{foo}")),
        None,
    );
    assert_eq!((s, &b["Note__c"]), (200, &json!("hidden note")), "{b}");
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/Foo__c/{foo}")),
        Some(json!({"Note__c": "mine"})),
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        "{b}"
    );
    let (s, b) = org.call(
        PATCH,
        &org.data(&format!("/sobjects/FieldPermissions/{fp}")),
        Some(json!({"PermissionsEdit": true})),
    );
    assert_eq!(s, 204, "{b}");
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/Foo__c/{foo}")),
        Some(json!({"Note__c": "mine"})),
    );
    assert_eq!(s, 204, "{b}");
    let b = org.query(&format!("SELECT Note__c FROM Foo__c WHERE Id = '{foo}'"));
    assert_eq!(b["records"][0]["Note__c"], "mine");

    // Unassigned: invisible again.
    let (s, b) = org.call(
        DELETE,
        &org.data(&format!("/sobjects/PermissionSetAssignment/{assignment}")),
        None,
    );
    assert_eq!(s, 204, "{b}");
    assert_invisible("unassigned");
    assert_eq!(admin_count(&org), before + 1);
}

#[test]
fn deactivated_users_lose_sessions_and_logins() {
    let org = Org::start("auth-deactivate");
    let user = "leaver@example.com";
    let pw = "Leaver-passw0rd1";
    let user_id = create_user(&org, user, "Standard User", pw);
    let oauth = login_as(&org, user, pw);
    let soap_session = soap_login(&org, user, pw);
    let code = authorization_code(&org, user, pw);
    let (s, b) = exchange_code(&org, &code, VERIFIER, REDIRECT);
    assert_eq!(s, 200, "{b}");
    let refresh = b["refresh_token"].as_str().unwrap().to_string();
    let coded = b["access_token"].as_str().unwrap().to_string();
    for t in [&oauth, &soap_session, &coded] {
        assert_session_works(&org, t, "before deactivation");
    }

    let user_url = org.data(&format!("/sobjects/User/{user_id}"));
    let (s, b) = org.call(PATCH, &user_url, Some(json!({"IsActive": false})));
    assert_eq!(s, 204, "{b}");
    for (what, t) in [
        ("OAuth", &oauth),
        ("SOAP", &soap_session),
        ("code flow", &coded),
    ] {
        assert_invalid_session(&org, t, &format!("{what} session of a deactivated user"));
    }
    let (s, _, body) = soap(&org, "u/59.0", &jsforce_logout(&soap_session));
    assert_eq!(s, 500, "{body}");
    let r = refresh_grant(&org, &refresh);
    assert_oauth_error(&r, "invalid_grant", "refresh for a deactivated user");
    let r = password_grant(&org, user, pw);
    assert_oauth_error(&r, "invalid_grant", "password login of a deactivated user");
    assert_eq!(r.1["error_description"], "authentication failure");
    let r = soap(&org, "u/59.0", &jsforce_login(user, pw));
    assert_login_fault(&r, "SOAP login of a deactivated user");
    let (s, loc, _) = authorize_submit(&org, REDIRECT, user, pw);
    assert!(s != 302 && loc.is_none(), "authorize as a deactivated user");

    // Reactivation allows new logins but does not revive the old sessions and tokens.
    let (s, b) = org.call(PATCH, &user_url, Some(json!({"IsActive": true})));
    assert_eq!(s, 204, "{b}");
    for (what, t) in [
        ("OAuth", &oauth),
        ("SOAP", &soap_session),
        ("code flow", &coded),
    ] {
        assert_invalid_session(&org, t, &format!("{what} session after reactivation"));
    }
    let r = refresh_grant(&org, &refresh);
    assert_oauth_error(&r, "invalid_grant", "refresh token after reactivation");
    let fresh = login_as(&org, user, pw);
    assert_session_works(&org, &fresh, "new login after reactivation");
}

#[test]
fn api_enabled_and_manage_users_are_enforced() {
    let org = Org::start("auth-system-perms");
    let user = "helper@example.com";
    let pw = "Helper-passw0rd1";
    let user_id = create_user(&org, user, "Standard User", pw);
    let tok = login_as(&org, user, pw);
    let admin_profile = profile_id(&org, "System Administrator");
    let std_profile = profile_id(&org, "Standard User");
    let std_set = first_id(
        &org,
        &format!("SELECT Id FROM PermissionSet WHERE ProfileId = '{std_profile}'"),
    );
    let admin_set = first_id(
        &org,
        &format!("SELECT Id FROM PermissionSet WHERE ProfileId = '{admin_profile}'"),
    );

    // Object permissions on the setup objects do not let a user without Manage Users change them.
    let helper = org.create(
        "PermissionSet",
        json!({"Name": "User_Maintainers", "Label": "User Maintainers"}),
    );
    for object in [
        "User",
        "PermissionSetAssignment",
        "PermissionSet",
        "ObjectPermissions",
    ] {
        org.create(
            "ObjectPermissions",
            json!({"ParentId": helper, "SobjectType": object, "PermissionsRead": true, "PermissionsCreate": true, "PermissionsEdit": true, "PermissionsDelete": true}),
        );
    }
    org.create(
        "PermissionSetAssignment",
        json!({"AssigneeId": user_id, "PermissionSetId": helper}),
    );
    let (s, b) = query_as(&org, &tok, "SELECT Id, Name FROM PermissionSet");
    assert_eq!(s, 200, "reading is granted: {b}");
    let me = org.data(&format!("/sobjects/User/{user_id}"));
    let (s, b) = org.call_as(&tok, PATCH, &me, Some(json!({"ProfileId": admin_profile})));
    assert_eq!(
        (s, code(&b)),
        (400, "INSUFFICIENT_ACCESS_OR_READONLY"),
        "{b}"
    );
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/PermissionSetAssignment"),
        Some(json!({"AssigneeId": user_id, "PermissionSetId": admin_set})),
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INSUFFICIENT_ACCESS_OR_READONLY"),
        "{b}"
    );
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/PermissionSet/{helper}")),
        Some(json!({"PermissionsModifyAllData": true})),
    );
    assert_eq!(s, 400, "{b}");
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/PermissionSet/{helper}")),
        Some(json!({"Label": "Renamed"})),
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INSUFFICIENT_ACCESS_OR_READONLY"),
        "{b}"
    );
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data("/sobjects/ObjectPermissions"),
        Some(json!({"ParentId": helper, "SobjectType": "Opportunity"})),
    );
    assert_eq!(
        (s, code(&b)),
        (400, "INSUFFICIENT_ACCESS_OR_READONLY"),
        "{b}"
    );
    let (s, b) = org.call_as(&tok, GET, &org.data("/sobjects/User/describe"), None);
    assert_eq!(
        (s, &b["updateable"], &b["createable"]),
        (200, &json!(false), &json!(false))
    );
    assert_eq!(
        org.count(&format!(
            "SELECT COUNT() FROM User WHERE Id = '{user_id}' AND ProfileId = '{std_profile}'"
        )),
        1
    );
    assert_eq!(
        org.count(&format!(
            "SELECT COUNT() FROM PermissionSet WHERE Id = '{helper}' AND PermissionsModifyAllData = true"
        )),
        0
    );

    // With Manage Users the same user may manage users (and so set a colleague's password).
    let (s, b) = org.call(
        PATCH,
        &org.data(&format!("/sobjects/PermissionSet/{helper}")),
        Some(json!({"PermissionsManageUsers": true})),
    );
    assert_eq!(s, 204, "{b}");
    let colleague = create_user(
        &org,
        "colleague@example.com",
        "Standard User",
        "Colleague-passw0rd1",
    );
    let (s, b) = org.call_as(
        &tok,
        PATCH,
        &org.data(&format!("/sobjects/User/{colleague}")),
        Some(json!({"Title": "Engineer"})),
    );
    assert_eq!(s, 204, "{b}");
    let (s, b) = org.call_as(
        &tok,
        POST,
        &org.data(&format!("/sobjects/User/{colleague}/password")),
        Some(json!({"NewPassword": "Reset-passw0rd2"})),
    );
    assert_eq!(s, 204, "{b}");
    login_as(&org, "colleague@example.com", "Reset-passw0rd2");

    // "API Enabled" off on the profile: REST and SOAP refuse the user, at once.
    let (s, b) = org.call(
        PATCH,
        &org.data(&format!("/sobjects/PermissionSet/{std_set}")),
        Some(json!({"PermissionsApiEnabled": false})),
    );
    assert_eq!(s, 204, "{b}");
    let (s, b) = org.call_as(&tok, GET, &org.data("/sobjects/Account"), None);
    assert_eq!((s, code(&b)), (403, "API_DISABLED_FOR_ORG"), "{b}");
    let (s, _, body) = soap(&org, "u/59.0", &jsforce_login(user, pw));
    assert_eq!(s, 500, "{body}");
    assert!(
        body.contains("<faultcode>sf:API_CURRENTLY_DISABLED</faultcode>")
            && body.contains("<sf:exceptionCode>API_CURRENTLY_DISABLED</sf:exceptionCode>"),
        "{body}"
    );
    // The admin is not affected; another permission set can grant it back.
    assert_session_works(&org, &org.token, "admin");
    let (s, b) = org.call(
        PATCH,
        &org.data(&format!("/sobjects/PermissionSet/{helper}")),
        Some(json!({"PermissionsApiEnabled": true})),
    );
    assert_eq!(s, 204, "{b}");
    assert_session_works(&org, &tok, "API Enabled through a permission set");
    soap_login(&org, user, pw);
}

// ----------------------------------------------------------------------------- regressions

/// A query cursor opened while a field was readable must not keep serving it after the
/// permission is removed: the next page compiles the query again and refuses the field.
#[test]
fn query_pages_follow_permission_changes() {
    let org = Org::start("auth-cursor-perms");
    create_field(
        &org,
        "Account.Secret__c",
        json!({"type": "Text", "length": 20, "label": "Secret"}),
    );
    let user = "cursor.user@example.com";
    create_user(&org, user, "Standard User", "Cursor-passw0rd1");
    let profile = profile_id(&org, "Standard User");
    let set = first_id(
        &org,
        &format!("SELECT Id FROM PermissionSet WHERE ProfileId = '{profile}'"),
    );
    let fp = org.create(
        "FieldPermissions",
        json!({"ParentId": set, "SobjectType": "Account", "Field": "Account.Secret__c", "PermissionsRead": true}),
    );
    for i in 0..210 {
        org.create(
            "Account",
            json!({"Name": format!("cursor-{i}"), "Secret__c": "hidden-value"}),
        );
    }
    let tok = login_as(&org, user, "Cursor-passw0rd1");
    let url = Url::parse_with_params(
        &org.data("/query"),
        &[(
            "q",
            "SELECT Id, Secret__c FROM Account WHERE Name LIKE 'cursor-%'",
        )],
    )
    .unwrap();
    let resp = org
        .http
        .get(url)
        .bearer_auth(&tok)
        .header("Sforce-Query-Options", "batchSize=200")
        .send()
        .unwrap();
    let first: Value = resp.json().unwrap();
    assert_eq!(first["done"], json!(false), "{first}");
    let next = first["nextRecordsUrl"]
        .as_str()
        .expect("nextRecordsUrl")
        .to_string();

    let (s, _) = org.call(
        Method::DELETE,
        &org.data(&format!("/sobjects/FieldPermissions/{fp}")),
        None,
    );
    assert_eq!(s, 204);
    let (s, b) = org.call_as(&tok, GET, &org.url(&next), None);
    assert_eq!(
        s, 400,
        "the next page must not serve a field the user can no longer read: {b}"
    );
    assert_eq!(code(&b), "INVALID_FIELD", "{b}");
    assert!(!b.to_string().contains("hidden-value"));
}

/// Revoking a refresh token also revokes the access tokens issued from it and with it.
#[test]
fn revoking_a_refresh_token_revokes_its_access_tokens() {
    let org = Org::start("auth-refresh-revoke");
    let code = authorization_code(&org, USERNAME, PASSWORD);
    let (s, b) = exchange_code(&org, &code, VERIFIER, REDIRECT);
    assert_eq!(s, 200, "code exchange: {b}");
    let access = b["access_token"].as_str().unwrap().to_string();
    let refresh = b["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let (s, b) = refresh_grant(&org, &refresh);
    assert_eq!(s, 200, "{b}");
    let refreshed = b["access_token"].as_str().unwrap().to_string();
    assert_session_works(&org, &access, "issued with the refresh token");
    assert_session_works(&org, &refreshed, "issued from the refresh token");
    assert_eq!(revoke(&org, &refresh), 200);
    assert_invalid_session(&org, &access, "issued with the revoked refresh token");
    assert_invalid_session(&org, &refreshed, "issued from the revoked refresh token");
    assert_session_works(&org, &org.token, "unrelated sessions are untouched");
}

/// Deactivating a user ends their sessions at once, so reactivating them does not bring old
/// tokens back.
#[test]
fn deactivation_ends_sessions_even_after_reactivation() {
    let org = Org::start("auth-deactivate");
    let user = "deact.user@example.com";
    let id = create_user(&org, user, "Standard User", "Deact-passw0rd1");
    let tok = login_as(&org, user, "Deact-passw0rd1");
    assert_session_works(&org, &tok, "before deactivation");
    let url = org.data(&format!("/sobjects/User/{id}"));
    assert_eq!(
        org.call(PATCH, &url, Some(json!({"IsActive": false}))).0,
        204
    );
    assert_eq!(
        org.call(PATCH, &url, Some(json!({"IsActive": true}))).0,
        204
    );
    assert_invalid_session(&org, &tok, "a session from before the deactivation");
    let fresh = login_as(&org, user, "Deact-passw0rd1");
    assert_session_works(&org, &fresh, "a new login after reactivation");
}

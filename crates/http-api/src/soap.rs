//! The SOAP API endpoint (`/services/Soap/u|c/NN.N[/orgId]`): `login`, `logout` and `undelete`.
//!
//! Requests are read namespace-agnostically (clients use any prefixes and namespace spellings);
//! responses use the exact element names clients match with regexes: unprefixed `sessionId`,
//! `serverUrl`, … in the partner namespace, and faults with unprefixed `faultcode`/`faultstring` and
//! `sf:`-prefixed detail elements.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quick_xml::escape::escape;
use quick_xml::events::Event;
use service::xml::{local_name, reference_char};
use service::AuthError;

use crate::body::read_limited;
use crate::{client_ip, scheme_of, AppState};

/// Largest SOAP request accepted.
const SOAP_LIMIT: usize = 1024 * 1024;
/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 32;

/// A parsed SOAP request: the operation and the text of every element, by local-name path.
#[derive(Debug, Default)]
pub struct SoapRequest {
    /// Local name of the first element in the body (`login`).
    pub operation: String,
    /// `(path, text)` pairs, e.g. `("Header/SessionHeader/sessionId", "00D…")`.
    pub values: Vec<(String, String)>,
}

impl SoapRequest {
    /// The first value whose path ends with `suffix`.
    pub fn get(&self, suffix: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(p, _)| p.ends_with(suffix))
            .map(|(_, v)| v.as_str())
    }

    /// Every value whose path ends with `suffix`.
    pub fn all(&self, suffix: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses a SOAP envelope. Refuses DTDs, deep nesting and anything that is not an envelope.
pub fn parse(xml: &[u8]) -> Result<SoapRequest, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut out = SoapRequest::default();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let name = local_name(e.name().as_ref());
                if stack.len() == 2 && stack[1] == "Body" && out.operation.is_empty() {
                    out.operation = name.clone();
                }
                stack.push(name);
                text.clear();
                if stack.len() > MAX_DEPTH {
                    return Err("the request nests elements too deeply".into());
                }
            }
            Ok(Event::Empty(e)) => {
                let name = local_name(e.name().as_ref());
                if stack.len() == 2 && stack[1] == "Body" && out.operation.is_empty() {
                    out.operation = name;
                }
            }
            Ok(Event::End(_)) => {
                if stack.len() > 1 && !text.trim().is_empty() {
                    out.values
                        .push((stack[1..].join("/"), std::mem::take(&mut text)));
                }
                text.clear();
                stack.pop();
            }
            Ok(Event::Text(t)) => {
                text.push_str(&t.decode().map_err(|e| format!("bad text: {e}"))?);
            }
            Ok(Event::GeneralRef(r)) => text.push(reference_char(&r)?),
            Ok(Event::CData(t)) => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Ok(Event::DocType(_)) => return Err("DOCTYPE is not allowed".into()),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("malformed XML: {e}")),
        }
        buf.clear();
    }
    if out.operation.is_empty() {
        return Err("no SOAP Body operation found".into());
    }
    Ok(out)
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

/// A SOAP fault as Salesforce sends it (HTTP 500).
pub fn fault(code: &str, message: &str, fault_type: &str) -> Response {
    let m = escape(message);
    xml_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:sf=\"urn:fault.partner.soap.sforce.com\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {m}</faultstring><detail><sf:{fault_type} xsi:type=\"sf:{fault_type}\"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{m}</sf:exceptionMessage></sf:{fault_type}></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        ),
    )
}

fn envelope(body: &str) -> Response {
    xml_response(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns=\"urn:partner.soap.sforce.com\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
        ),
    )
}

/// `POST /services/Soap/{u|c}/{version}[/{org}]`.
pub async fn endpoint(State(state): State<AppState>, req: Request) -> Response {
    let scheme = scheme_of(&req);
    let ip = client_ip(&req);
    let base = state.base_url(req.headers(), scheme);
    let segs: Vec<String> = req.uri().path().split('/').map(str::to_string).collect();
    let kind = segs.get(3).cloned().unwrap_or_default();
    let version = match model::ApiVersion::parse(segs.get(4).map(String::as_str).unwrap_or("")) {
        Ok(v) => v,
        Err(_) => {
            return fault(
                "UNSUPPORTED_API_VERSION",
                "Invalid Api version specified on URL",
                "UnexpectedErrorFault",
            )
        }
    };
    if kind != "u" && kind != "c" {
        return fault(
            "INVALID_OPERATION",
            "Only the partner (u) and enterprise (c) SOAP endpoints are served",
            "UnexpectedErrorFault",
        );
    }
    let bytes = match read_limited(req.into_body(), SOAP_LIMIT).await {
        Ok(b) => b,
        Err(e) => return fault("INVALID_REQUEST", &e.message, "UnexpectedErrorFault"),
    };
    let soap = match parse(&bytes) {
        Ok(s) => s,
        Err(e) => {
            return fault(
                "INVALID_REQUEST",
                &format!("Could not parse the SOAP request: {e}"),
                "UnexpectedErrorFault",
            )
        }
    };
    match soap.operation.as_str() {
        "login" => login(&state, &base, version, &kind, &soap, &ip).await,
        "logout" => {
            let Some(token) = soap.get("SessionHeader/sessionId") else {
                return fault(
                    "INVALID_SESSION_ID",
                    "Invalid Session ID found in SessionHeader: Illegal Session",
                    "UnexpectedErrorFault",
                );
            };
            if state.org.authenticate(token).is_err() {
                return fault(
                    "INVALID_SESSION_ID",
                    "Invalid Session ID found in SessionHeader: Illegal Session",
                    "UnexpectedErrorFault",
                );
            }
            state.org.logout(token).await;
            envelope("<logoutResponse/>")
        }
        "undelete" => {
            let Some(mut p) = soap
                .get("SessionHeader/sessionId")
                .and_then(|t| state.org.authenticate(t).ok())
            else {
                return fault(
                    "INVALID_SESSION_ID",
                    "Invalid Session ID found in SessionHeader: Illegal Session",
                    "UnexpectedErrorFault",
                );
            };
            p.origin = service::Origin::new(
                "soap",
                version.number(),
                soap.get("CallOptions/client")
                    .map(|c| format!("client={c}"))
                    .as_deref(),
            );
            let ids: Vec<String> = soap
                .all("undelete/ids")
                .into_iter()
                .map(str::to_string)
                .collect();
            if ids.len() > 200 {
                return fault(
                    "EXCEEDED_ID_LIMIT",
                    "record limit reached. cannot submit more than 200 records into this call",
                    "InvalidIdFault",
                );
            }
            let mut body = String::from("<undeleteResponse>");
            for r in state.org.undelete(&p, ids).await {
                match r {
                    Ok(id) => body.push_str(&format!("<result><id>{}</id><success>true</success></result>", id.to_18())),
                    Err(e) => body.push_str(&format!(
                        "<result><errors><message>{}</message><statusCode>{}</statusCode></errors><id xsi:nil=\"true\"/><success>false</success></result>",
                        escape(&e.message),
                        e.code.as_str()
                    )),
                }
            }
            body.push_str("</undeleteResponse>");
            envelope(&body)
        }
        other => fault(
            "INVALID_OPERATION",
            &format!("The operation {other} is not supported by this server"),
            "UnexpectedErrorFault",
        ),
    }
}

async fn login(
    state: &AppState,
    base: &str,
    version: model::ApiVersion,
    kind: &str,
    soap: &SoapRequest,
    ip: &str,
) -> Response {
    let username = soap.get("login/username").unwrap_or_default().to_string();
    let password = soap.get("login/password").unwrap_or_default().to_string();
    if let Some(scope) = soap.get("LoginScopeHeader/organizationId") {
        if !model::Id::parse(scope).is_ok_and(|id| id == state.org.org_id()) {
            let (code, msg) = AuthError::InvalidLogin.soap();
            return fault(code, &msg, "LoginFault");
        }
    }
    let login = match state.org.soap_login(&username, &password, ip).await {
        Ok(l) => l,
        Err(e) => {
            let (code, msg) = e.soap();
            return fault(code, &msg, "LoginFault");
        }
    };
    let Ok(Some(u)) = state.org.user_info(
        login
            .user_id
            .seq_in(state.org.store().marker())
            .unwrap_or(0),
    ) else {
        return fault(
            "UNKNOWN_EXCEPTION",
            "the user vanished",
            "UnexpectedErrorFault",
        );
    };
    let org15 = state.org.org_id().as_str().to_string();
    let org18 = state.org.org_id().to_18();
    let v = version.number();
    let user_id = u.id.to_18();
    let e = |s: &str| escape(s).into_owned();
    let body = format!(
        "<loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{v}/{org15}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/{kind}/{v}/{org15}</serverUrl><sessionId>{sid}</sessionId><userId>{user_id}</userId><userInfo><accessibilityMode>false</accessibilityMode><chatterExternal>false</chatterExternal><currencySymbol>$</currencySymbol><orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit><orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><orgDefaultCurrencyLocale>en_US</orgDefaultCurrencyLocale><orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments><orgHasPersonAccounts>false</orgHasPersonAccounts><organizationId>{org18}</organizationId><organizationMultiCurrency>false</organizationMultiCurrency><organizationName>Conflux</organizationName><profileId xsi:nil=\"true\"/><roleId xsi:nil=\"true\"/><sessionSecondsValid>{secs}</sessionSecondsValid><userDefaultCurrencyIsoCode xsi:nil=\"true\"/><userEmail>{email}</userEmail><userFullName>{name}</userFullName><userId>{user_id}</userId><userLanguage>{lang}</userLanguage><userLocale>{locale}</userLocale><userName>{uname}</userName><userTimeZone>{tz}</userTimeZone><userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo></result></loginResponse>",
        sid = e(&login.token),
        secs = login.timeout_secs,
        email = e(&u.email),
        name = e(&u.name),
        lang = e(&u.language),
        locale = e(&u.locale),
        uname = e(&u.username),
        tz = e(&u.time_zone),
    );
    envelope(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_clients_login_envelope() {
        let ss = br#"<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com"><env:Header><urn:CallOptions><urn:client>simple-salesforce</urn:client><urn:defaultNamespace>sf</urn:defaultNamespace></urn:CallOptions></env:Header><env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>a&amp;b@x.com</n1:username><n1:password>p&lt;w</n1:password></n1:login></env:Body></env:Envelope>"#;
        let r = parse(ss).unwrap();
        assert_eq!(r.operation, "login");
        assert_eq!(r.get("login/username"), Some("a&b@x.com"));
        assert_eq!(r.get("login/password"), Some("p<w"));
        let js = br#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header/><se:Body><login xmlns="urn:partner.soap.sforce.com"><username>u</username><password>p</password></login></se:Body></se:Envelope>"#;
        let r = parse(js).unwrap();
        assert_eq!(
            (r.operation.as_str(), r.get("login/username")),
            ("login", Some("u"))
        );
        let logout = br#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header><SessionHeader xmlns="urn:partner.soap.sforce.com"><sessionId>00Dx!abc</sessionId></SessionHeader></se:Header><se:Body><logout xmlns="urn:partner.soap.sforce.com"/></se:Body></se:Envelope>"#;
        let r = parse(logout).unwrap();
        assert_eq!(r.operation, "logout");
        assert_eq!(r.get("SessionHeader/sessionId"), Some("00Dx!abc"));
    }

    #[test]
    fn refuses_hostile_xml() {
        assert!(parse(b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><Envelope><Body><login/></Body></Envelope>").is_err());
        let deep = format!("<Envelope><Body>{}</Body></Envelope>", "<a>".repeat(100));
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(b"not xml at all <").is_err());
        assert!(parse(b"<Envelope><Body></Body></Envelope>").is_err());
    }
}

//! External Services: an OpenAPI 3 document registered under a name, with the named credential
//! that reaches the service. Flows call its operations by `operationId`; the document says the
//! method, the path and which parameters are required, so a flow names values, not URLs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

/// The setting holding the registered services (name → `{credential, openapi}`).
pub const SETTING: &str = "external.services";

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// A `{name}` segment of the path.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
}

/// One parameter of an operation.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Where it goes.
    pub location: In,
    /// Whether a call must give it.
    pub required: bool,
    /// Its JSON Schema type (`string`, `integer`, `number`, `boolean`), when declared.
    pub ty: Option<String>,
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Its `operationId`.
    pub id: String,
    /// HTTP method.
    pub method: reqwest::Method,
    /// The path template (`/accounts/{region}`), after the server's base path.
    pub path: String,
    /// Its parameters.
    pub params: Vec<Param>,
    /// Whether it takes a body, and whether the body is required.
    pub body: Option<bool>,
    /// Its summary, for people.
    pub summary: Option<String>,
}

/// A registered service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// The named credential that reaches it (its URL is the service's base).
    pub credential: String,
    /// The path of the document's first server (`/v2`), put before every operation's path.
    pub base_path: String,
    /// Operations by `operationId`.
    pub operations: BTreeMap<String, Arc<Operation>>,
    /// The document as registered.
    pub doc: Json,
}

impl Service {
    /// How the API shows it.
    pub fn to_json(&self) -> Json {
        let ops: Vec<Json> = self
            .operations
            .values()
            .map(|o| {
                serde_json::json!({
                    "operationId": o.id,
                    "method": o.method.as_str(),
                    "path": format!("{}{}", self.base_path, o.path),
                    "summary": o.summary,
                    "parameters": o.params.iter().map(|p| serde_json::json!({
                        "name": p.name,
                        "in": match p.location { In::Path => "path", In::Query => "query", In::Header => "header" },
                        "required": p.required,
                        "type": p.ty,
                    })).collect::<Vec<_>>(),
                    "requestBody": o.body.map(|required| serde_json::json!({"required": required})),
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "credential": self.credential,
            "title": self.doc.pointer("/info/title"),
            "version": self.doc.pointer("/info/version"),
            "operations": ops,
        })
    }
}

/// Follows a local `$ref` (`#/components/parameters/Region`) once or more.
fn resolve<'a>(doc: &'a Json, mut v: &'a Json) -> Result<&'a Json, String> {
    for _ in 0..16 {
        let Some(r) = v.get("$ref").and_then(Json::as_str) else {
            return Ok(v);
        };
        let Some(ptr) = r.strip_prefix('#') else {
            return Err(format!(
                "$ref {r:?} points outside the document; only local references are supported"
            ));
        };
        v = doc
            .pointer(ptr)
            .ok_or_else(|| format!("$ref {r:?} points at nothing"))?;
    }
    Err("$ref chain too long (a loop?)".into())
}

fn params_of(doc: &Json, list: Option<&Json>, out: &mut Vec<Param>) -> Result<(), String> {
    let Some(list) = list else { return Ok(()) };
    let list = list
        .as_array()
        .ok_or("`parameters` is not a list".to_string())?;
    for p in list {
        let p = resolve(doc, p)?;
        let name = p
            .get("name")
            .and_then(Json::as_str)
            .ok_or("a parameter has no name")?
            .to_string();
        let location = match p.get("in").and_then(Json::as_str) {
            Some("path") => In::Path,
            Some("query") => In::Query,
            Some("header") => In::Header,
            Some("cookie") => {
                return Err(format!(
                    "parameter {name}: cookie parameters are not supported"
                ))
            }
            other => return Err(format!("parameter {name}: `in` is {other:?}")),
        };
        let ty = match p.get("schema") {
            Some(s) => resolve(doc, s)?
                .get("type")
                .and_then(Json::as_str)
                .map(str::to_string),
            None => None,
        };
        let required =
            location == In::Path || p.get("required").and_then(Json::as_bool).unwrap_or(false);
        // An operation's own parameter overrides the path item's of the same name and place.
        out.retain(|q| !(q.name == name && q.location == location));
        out.push(Param {
            name,
            location,
            required,
            ty,
        });
    }
    Ok(())
}

/// Reads an OpenAPI 3 document (as JSON) into a service reached through `credential`.
pub fn parse(name: &str, credential: &str, doc: Json) -> Result<Service, String> {
    let version = doc.get("openapi").and_then(Json::as_str).ok_or(
        "the document has no `openapi` version: External Services take OpenAPI 3 documents",
    )?;
    if !version.starts_with("3.") {
        return Err(format!(
            "the document is OpenAPI {version}; External Services take OpenAPI 3.x"
        ));
    }
    let base_path = doc
        .pointer("/servers/0/url")
        .and_then(Json::as_str)
        .map(|u| {
            // Only the path of the server's URL: the named credential says where the host is.
            let rest = u.split_once("://").map_or(u, |(_, r)| r);
            let path = if u.contains("://") {
                rest.find('/').map_or("", |i| &rest[i..])
            } else {
                rest
            };
            path.trim_end_matches('/').to_string()
        })
        .unwrap_or_default();
    let paths = doc
        .get("paths")
        .and_then(Json::as_object)
        .ok_or("the document has no `paths`")?;
    let mut operations = BTreeMap::new();
    for (path, item) in paths {
        if !path.starts_with('/') {
            return Err(format!("path {path:?} does not start with /"));
        }
        let item = resolve(&doc, item)?;
        let mut shared = Vec::new();
        params_of(&doc, item.get("parameters"), &mut shared)?;
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            let Some(op) = item.get(method) else { continue };
            let id = match op.get("operationId").and_then(Json::as_str) {
                Some(id) => id.to_string(),
                // Like Salesforce, name an unnamed operation after its method and path.
                None => {
                    let mut id = method.to_string();
                    for seg in path.split('/').filter(|s| !s.is_empty()) {
                        let seg: String =
                            seg.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                        let mut cs = seg.chars();
                        if let Some(f) = cs.next() {
                            id.push(f.to_ascii_uppercase());
                            id.extend(cs);
                        }
                    }
                    id
                }
            };
            let mut params = shared.clone();
            params_of(&doc, op.get("parameters"), &mut params)?;
            for seg in path.split('/') {
                if let Some(p) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if !params.iter().any(|q| q.location == In::Path && q.name == p) {
                        return Err(format!(
                            "operation {id}: the path names {{{p}}} but no path parameter declares it"
                        ));
                    }
                }
            }
            let body = match op.get("requestBody") {
                Some(b) => Some(
                    resolve(&doc, b)?
                        .get("required")
                        .and_then(Json::as_bool)
                        .unwrap_or(false),
                ),
                None => None,
            };
            let o = Operation {
                id: id.clone(),
                method: reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .expect("known methods"),
                path: path.clone(),
                params,
                body,
                summary: op.get("summary").and_then(Json::as_str).map(str::to_string),
            };
            if operations.insert(id.clone(), Arc::new(o)).is_some() {
                return Err(format!("two operations are named {id}"));
            }
        }
    }
    if operations.is_empty() {
        return Err("the document declares no operations".into());
    }
    Ok(Service {
        name: name.to_string(),
        credential: credential.to_string(),
        base_path,
        operations,
        doc,
    })
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A parameter value as text, checked against its declared type.
pub fn param_text(p: &Param, v: &Json) -> Result<String, String> {
    let wrong = |what: &str| format!("parameter {} must be {what}, not {v}", p.name);
    match (p.ty.as_deref(), v) {
        (Some("integer"), Json::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        (Some("integer"), _) => Err(wrong("an integer")),
        (Some("number"), Json::Number(n)) => Ok(n.to_string()),
        (Some("number"), _) => Err(wrong("a number")),
        (Some("boolean"), Json::Bool(b)) => Ok(b.to_string()),
        (Some("boolean"), _) => Err(wrong("true or false")),
        (_, Json::String(s)) => Ok(s.clone()),
        (_, Json::Number(n)) => Ok(n.to_string()),
        (_, Json::Bool(b)) => Ok(b.to_string()),
        (_, _) => Err(wrong("a string")),
    }
}

//! Salesforce-shaped REST responses: JSON bodies with `application/json;charset=UTF-8`, error
//! arrays `[{"message","errorCode","fields"}]`, and the status each error code implies.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use model::ApiError;

/// The JSON content type Salesforce sends.
pub const JSON: &str = "application/json;charset=UTF-8";

/// A JSON response with the given status.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

/// A JSON response serialized straight from `body` (no intermediate `serde_json::Value`).
pub fn json_of<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(JSON));
            r
        }
        Err(e) => api_error(&ApiError::new(
            model::ErrorCode::UnknownException,
            format!("could not serialize the response: {e}"),
        )),
    }
}

/// The JSON object of one error.
pub fn error_json(e: &ApiError) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("message".into(), e.message.clone().into());
    m.insert("errorCode".into(), e.code.as_str().into());
    if !e.fields.is_empty() {
        m.insert("fields".into(), e.fields.clone().into());
    }
    serde_json::Value::Object(m)
}

/// One error as a REST response, with the status of its code.
pub fn api_error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    if e.code == model::ErrorCode::UnknownException {
        tracing::error!(message = %e.message, "internal error answered");
    }
    json(status, &serde_json::Value::Array(vec![error_json(e)]))
}

/// Several errors in one REST response (status of the first).
pub fn api_errors(errors: &[ApiError]) -> Response {
    let status = errors.first().map(|e| e.http_status()).unwrap_or(400);
    json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &serde_json::Value::Array(errors.iter().map(error_json).collect()),
    )
}

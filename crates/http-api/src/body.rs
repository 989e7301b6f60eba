//! Reading request bodies with a size limit, and parsing JSON with Salesforce's parser errors.

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use model::{ApiError, ErrorCode};

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                ErrorCode::RequestEntityTooLarge,
                format!("The request body is larger than the maximum of {limit} bytes."),
            ))
        }
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidInput,
            "The request body could not be read.",
        )),
    }
}

/// Parses JSON, reporting errors as Salesforce does (`JSON_PARSER_ERROR … at [line:L, column:C]`).
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    // A UTF-8 byte order mark is not part of the document (Salesforce's parser skips it too).
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::new(
            ErrorCode::JsonParserError,
            "The request body is empty; a JSON body is required.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let what = e.to_string();
        let what = what.split(" at line").next().unwrap_or(&what).to_string();
        ApiError::new(
            ErrorCode::JsonParserError,
            format!("{what} at [line:{}, column:{}]", e.line(), e.column()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_errors_and_byte_order_marks() {
        assert!(parse_json(b"\xEF\xBB\xBF{\"Name\":\"x\"}").is_ok());
        for bad in [
            &b""[..],
            b"  \n",
            b"\xEF\xBB\xBF",
            b"{\"Name\":",
            b"{} x",
            b"{\"Name\":\"\xff\"}",
        ] {
            let e = parse_json(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::JsonParserError, "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            parse_json(deep.as_bytes()).unwrap_err().code,
            ErrorCode::JsonParserError
        );
    }
}

//! The Salesforce error-code table and the error values every surface turns into its own wire shape.
//!
//! A REST error body is a JSON array of `{message, errorCode, fields}`; per-record results (collections,
//! bulk) carry the same triple as `statusCode`. Each code has a default HTTP status here so that every
//! surface answers the same status for the same failure.

use std::fmt;

macro_rules! error_codes {
    ($( $variant:ident = $text:literal, $status:literal; )*) => {
        /// A Salesforce error code, as it appears in `errorCode` / `statusCode`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $variant, )* }

        impl ErrorCode {
            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $text, )* }
            }
            /// The HTTP status Salesforce answers for this code on a single-resource REST call.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }
            /// Looks a code up by its wire spelling.
            pub fn from_str_exact(s: &str) -> Option<ErrorCode> {
                match s { $( $text => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

error_codes! {
    InvalidSessionId = "INVALID_SESSION_ID", 401;
    NotFound = "NOT_FOUND", 404;
    EntityIsDeleted = "ENTITY_IS_DELETED", 404;
    MalformedQuery = "MALFORMED_QUERY", 400;
    InvalidField = "INVALID_FIELD", 400;
    InvalidType = "INVALID_TYPE", 400;
    MalformedId = "MALFORMED_ID", 400;
    RequiredFieldMissing = "REQUIRED_FIELD_MISSING", 400;
    DuplicateValue = "DUPLICATE_VALUE", 400;
    DuplicateExternalId = "DUPLICATE_EXTERNAL_ID", 400;
    InvalidCrossReferenceKey = "INVALID_CROSS_REFERENCE_KEY", 400;
    FieldIntegrityException = "FIELD_INTEGRITY_EXCEPTION", 400;
    StringTooLong = "STRING_TOO_LONG", 400;
    InvalidFieldForInsertUpdate = "INVALID_FIELD_FOR_INSERT_UPDATE", 400;
    InvalidTypeOnFieldInRecord = "INVALID_TYPE_ON_FIELD_IN_RECORD", 400;
    InvalidOrNullForRestrictedPicklist = "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", 400;
    InvalidEmailAddress = "INVALID_EMAIL_ADDRESS", 400;
    NumberOutsideValidRange = "NUMBER_OUTSIDE_VALID_RANGE", 400;
    JsonParserError = "JSON_PARSER_ERROR", 400;
    InvalidQueryLocator = "INVALID_QUERY_LOCATOR", 400;
    ExceededIdLimit = "EXCEEDED_ID_LIMIT", 400;
    LimitExceeded = "LIMIT_EXCEEDED", 400;
    InvalidQueryFilterOperator = "INVALID_QUERY_FILTER_OPERATOR", 400;
    InvalidReplicationDate = "INVALID_REPLICATION_DATE", 400;
    RequestLimitExceeded = "REQUEST_LIMIT_EXCEEDED", 403;
    ApiDisabledForOrg = "API_DISABLED_FOR_ORG", 403;
    InsufficientAccessOrReadonly = "INSUFFICIENT_ACCESS_OR_READONLY", 400;
    InsufficientAccess = "INSUFFICIENT_ACCESS", 403;
    InsufficientAccessOnCrossReferenceEntity = "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY", 400;
    CannotInsertUpdateActivateEntity = "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", 400;
    EntityIsLocked = "ENTITY_IS_LOCKED", 400;
    DeleteFailed = "DELETE_FAILED", 400;
    UndeleteFailed = "UNDELETE_FAILED", 400;
    ProcessingHalted = "PROCESSING_HALTED", 400;
    BatchProcessingHalted = "BATCH_PROCESSING_HALTED", 412;
    AllOrNoneOperationRolledBack = "ALL_OR_NONE_OPERATION_ROLLED_BACK", 400;
    MethodNotAllowed = "METHOD_NOT_ALLOWED", 405;
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE", 415;
    RequestEntityTooLarge = "REQUEST_ENTITY_TOO_LARGE", 413;
    UriTooLong = "URI_TOO_LONG", 414;
    NotModified = "NOT_MODIFIED", 304;
    PreconditionFailed = "PRECONDITION_FAILED", 412;
    ApiVersionGone = "GONE", 410;
    UnknownException = "UNKNOWN_EXCEPTION", 500;
    InvalidInput = "INVALID_INPUT", 400;
    InvalidOperation = "INVALID_OPERATION", 400;
    IllegalQueryParameterValue = "ILLEGAL_QUERY_PARAMETER_VALUE", 400;
    FieldNotUpdatable = "FIELD_NOT_UPDATABLE", 400;
    DuplicateDeveloperName = "DUPLICATE_DEVELOPER_NAME", 400;
    InvalidPassword = "INVALID_NEW_PASSWORD", 400;
    ServerUnavailable = "SERVER_UNAVAILABLE", 503;
    CannotExecuteFlowTrigger = "CANNOT_EXECUTE_FLOW_TRIGGER", 400;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error: a code, a human message and the fields it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The Salesforce error code.
    pub code: ErrorCode,
    /// The message, worded as Salesforce words it where that is known.
    pub message: String,
    /// Fields the error is about (may be empty).
    pub fields: Vec<String>,
}

impl ApiError {
    /// An error without fields.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// An error about some fields.
    pub fn with_fields(
        code: ErrorCode,
        message: impl Into<String>,
        fields: Vec<String>,
    ) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            fields,
        }
    }

    /// `NOT_FOUND` with Salesforce's standard wording.
    pub fn not_found() -> ApiError {
        ApiError::new(ErrorCode::NotFound, "The requested resource does not exist")
    }

    /// `INVALID_SESSION_ID` with Salesforce's standard wording.
    pub fn invalid_session() -> ApiError {
        ApiError::new(ErrorCode::InvalidSessionId, "Session expired or invalid")
    }

    /// `UNKNOWN_EXCEPTION` for internal failures; the detail is logged, not shown.
    pub fn internal() -> ApiError {
        ApiError::new(
            ErrorCode::UnknownException,
            "An unexpected error occurred. Please include this ErrorId if you contact support: conflux-internal",
        )
    }

    /// The HTTP status of this error on a single-resource call.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The Bulk/SOAP error text: `CODE:message:fields --`.
    pub fn bulk_text(&self) -> String {
        format!(
            "{}:{}:{} --",
            self.code.as_str(),
            self.message,
            self.fields.join(",")
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Shorthand for results carrying an API error.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_have_statuses() {
        assert_eq!(
            ErrorCode::from_str_exact("INVALID_SESSION_ID"),
            Some(ErrorCode::InvalidSessionId)
        );
        assert_eq!(ErrorCode::InvalidSessionId.http_status(), 401);
        assert_eq!(ErrorCode::RequestLimitExceeded.http_status(), 403);
        assert_eq!(ErrorCode::BatchProcessingHalted.http_status(), 412);
    }

    #[test]
    fn bulk_text_matches_salesforce_format() {
        let e = ApiError::with_fields(
            ErrorCode::RequiredFieldMissing,
            "Required fields are missing: [Name]",
            vec!["Name".into()],
        );
        assert_eq!(
            e.bulk_text(),
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
        );
    }
}

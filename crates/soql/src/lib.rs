//! SOQL: lexer, parser, AST, and resolution against org metadata into an executable plan. No I/O.
//!
//! Entry point: [`parse`] turns query text into an [`ast::Query`] or a [`ParseError`]
//! (`MALFORMED_QUERY`) whose [`ParseError::salesforce_message`] renders the Salesforce caret
//! diagram. [`caret_message`] renders the same diagram for errors found by later stages
//! (`INVALID_FIELD`, `INVALID_TYPE`), and [`datelit`] turns date literals into date ranges.
//! [`resolve()`] / [`compile()`] check a query against a [`model::Schema`] and the caller's
//! [`Access`], producing a [`plan::Plan`] that storage backends execute.
//!
//! Representation notes:
//! * Identifiers keep their original spelling ([`ast::Ident`]) and carry a byte [`Span`].
//! * String literals are decoded (`\n`, `\'`, `\uXXXX`, ...). `LIKE` patterns become
//!   [`ast::LikePattern`]: literal runs plus `%` / `_` wildcards, where an escaped `\%` / `\_`
//!   is literal text. `\%` / `\_` outside a `LIKE` pattern is `MALFORMED_QUERY`.
//! * Numbers: [`ast::ValueKind::Integer`] when the value fits `i64`, else
//!   [`ast::ValueKind::Decimal`] holding the text as written.
//! * Dates / date-times are validated and split into fields ([`ast::Date`], [`ast::DateTime`]).

pub mod ast;
pub mod datelit;
mod error;
mod lexer;
mod parser;
pub mod plan;
pub mod resolve;

#[cfg(test)]
mod resolve_tests;
#[cfg(test)]
mod tests;

pub use error::{caret_message, line_col, ErrorKind, ParseError, Span};
pub use parser::{MAX_DEPTH, MAX_QUERY_CHARS};
pub use resolve::{compile, resolve, Access, FullAccess, QueryError, ResolveOptions};

/// Parses one SOQL statement into its syntax tree.
///
/// Never panics; every syntax problem (including over-long input and excessive nesting) is a
/// [`ParseError`] with [`ErrorKind::MalformedQuery`] pointing at the offending token.
pub fn parse(soql: &str) -> Result<ast::Query, ParseError> {
    parser::parse(soql)
}

//! Source spans, parse errors and Salesforce-style caret diagrams (`ERROR at Row:r:Column:c`).

/// A half-open byte range `[start, end)` into the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// Builds a span from byte offsets.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// True when the span covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Category of a parse error; every syntax problem maps to Salesforce's `MALFORMED_QUERY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `MALFORMED_QUERY`.
    MalformedQuery,
}

impl ErrorKind {
    /// The Salesforce `errorCode` string.
    pub fn error_code(self) -> &'static str {
        match self {
            ErrorKind::MalformedQuery => "MALFORMED_QUERY",
        }
    }
}

/// A syntax error with the span of the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Always [`ErrorKind::MalformedQuery`] for now.
    pub kind: ErrorKind,
    /// The detail line, e.g. `unexpected token: 'FROMM'`.
    pub message: String,
    /// The offending token (an empty span one past the end for `<EOF>`).
    pub span: Span,
}

impl ParseError {
    /// A `MALFORMED_QUERY` error at `span`.
    pub fn malformed(message: impl Into<String>, span: Span) -> ParseError {
        ParseError {
            kind: ErrorKind::MalformedQuery,
            message: message.into(),
            span,
        }
    }

    /// The full Salesforce message: caret diagram of `soql` followed by the detail.
    pub fn salesforce_message(&self, soql: &str) -> String {
        caret_message(soql, self.span, &self.message)
    }
}

/// Largest byte offset `<= offset` that lies on a char boundary of `s`.
fn floor_boundary(s: &str, offset: usize) -> usize {
    let mut o = offset.min(s.len());
    while o > 0 && !s.is_char_boundary(o) {
        o -= 1;
    }
    o
}

/// 1-based `(row, column)` of byte `offset` in `soql`; the column counts chars.
///
/// Offsets past the end (e.g. `<EOF>` errors) or inside a multi-byte char are clamped.
pub fn line_col(soql: &str, offset: usize) -> (usize, usize) {
    let offset = floor_boundary(soql, offset);
    let before = &soql[..offset];
    let row = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = soql[line_start..offset].chars().count() + 1;
    (row, col)
}

/// Lines longer than this many chars are shown as a window around the error.
const MAX_LINE_CHARS: usize = 1000;
/// Chars shown before the error column when a line is windowed.
const WINDOW_BEFORE: usize = 400;

/// Salesforce caret diagram:
/// `"\n" + line + "\n" + spaces + "^\nERROR at Row:{row}:Column:{col}\n" + detail`.
///
/// Only the line containing `span.start` is shown. If that line is longer than 1,000
/// chars, a window of it around the error is shown instead (the caret points into the
/// window; `Row`/`Column` still give the true position).
pub fn caret_message(soql: &str, span: Span, detail: &str) -> String {
    let offset = floor_boundary(soql, span.start);
    let (row, col) = line_col(soql, offset);
    let line_start = soql[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = soql[offset..]
        .find('\n')
        .map(|i| offset + i)
        .unwrap_or(soql.len());
    let mut line = &soql[line_start..line_end];
    if let Some(stripped) = line.strip_suffix('\r') {
        line = stripped;
    }
    let line_chars = line.chars().count();
    let (shown, caret_col): (String, usize) = if line_chars > MAX_LINE_CHARS {
        let skip = (col - 1).saturating_sub(WINDOW_BEFORE);
        let shown: String = line.chars().skip(skip).take(MAX_LINE_CHARS).collect();
        (shown, col - skip)
    } else {
        (line.to_string(), col)
    };
    let mut out = String::with_capacity(shown.len() + detail.len() + caret_col + 48);
    out.push('\n');
    out.push_str(&shown);
    out.push('\n');
    for _ in 1..caret_col {
        out.push(' ');
    }
    out.push_str("^\nERROR at Row:");
    out.push_str(&row.to_string());
    out.push_str(":Column:");
    out.push_str(&col.to_string());
    out.push('\n');
    out.push_str(detail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_basics() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("abc", 3), (1, 4));
        assert_eq!(line_col("abc", 99), (1, 4));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\r\nbc", 4), (2, 2));
        // multi-byte chars count once; offsets inside a char are clamped back
        assert_eq!(line_col("é x", 3), (1, 3));
        assert_eq!(line_col("é x", 1), (1, 1));
    }

    #[test]
    fn caret_example_from_reference() {
        let q = "SELECT Idd FROM Account";
        let m = caret_message(
            q,
            Span::new(7, 10),
            "No such column 'Idd' on entity 'Account'.",
        );
        assert_eq!(
            m,
            "\nSELECT Idd FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Idd' on entity 'Account'."
        );
    }

    #[test]
    fn caret_multiline_shows_only_that_line() {
        let q = "SELECT Id\r\nFROM Account\nWHERE Nme = 'x'";
        let off = q.find("Nme").unwrap();
        let m = caret_message(q, Span::new(off, off + 3), "d");
        assert_eq!(m, "\nWHERE Nme = 'x'\n      ^\nERROR at Row:3:Column:7\nd");
        let off = q.find("Account").unwrap();
        let m = caret_message(q, Span::new(off, off + 7), "d");
        assert_eq!(m, "\nFROM Account\n     ^\nERROR at Row:2:Column:6\nd");
    }

    #[test]
    fn caret_at_eof() {
        let q = "SELECT Id FROM";
        let m = caret_message(q, Span::new(q.len(), q.len()), "unexpected token: <EOF>");
        assert_eq!(
            m,
            "\nSELECT Id FROM\n              ^\nERROR at Row:1:Column:15\nunexpected token: <EOF>"
        );
    }

    #[test]
    fn caret_long_line_is_windowed() {
        let q = format!(
            "SELECT Id FROM Account WHERE Name = '{}' AND",
            "x".repeat(5000)
        );
        let m = caret_message(&q, Span::new(q.len(), q.len()), "unexpected token: <EOF>");
        assert!(m.len() < 1200, "{}", m.len());
        assert!(m.contains(&format!("ERROR at Row:1:Column:{}", q.len() + 1)));
        let lines: Vec<&str> = m.split('\n').collect();
        // caret sits one past the last shown char
        assert_eq!(lines[2].len(), lines[1].chars().count() + 1);
        assert!(lines[1].ends_with("' AND"));
    }

    #[test]
    fn error_code() {
        let e = ParseError::malformed("x", Span::new(0, 1));
        assert_eq!(e.kind.error_code(), "MALFORMED_QUERY");
        assert_eq!(e.to_string(), "x");
    }
}

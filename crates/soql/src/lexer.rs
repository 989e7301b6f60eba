//! SOQL lexer: turns query text into tokens (identifiers, strings, numbers, dates, punctuation).
//!
//! Keywords are not distinguished from identifiers here (SOQL keywords are contextual and
//! case-insensitive); the parser looks at identifier text. String literals are decoded, dates
//! and date-times are validated and split into fields. The first lexical error ends the token
//! stream with a [`Tok::Error`] so the parser reports problems in source order.

use crate::ast::{Date, DateTime};
use crate::error::{ParseError, Span};

/// A decoded string literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StrLit {
    /// The decoded text (`\%` and `\_` decoded to `%` / `_`).
    pub value: String,
    /// Byte offsets in `value` of `%` / `_` chars that were escaped (`\%`, `\_`), with the
    /// span of the escape in the source. Such escapes are only legal in `LIKE` patterns.
    pub like_escapes: Vec<(usize, Span)>,
}

/// Token kinds. Identifier, number and currency text is read from the source via the span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// `[A-Za-z][A-Za-z0-9_]*` (also keywords).
    Ident,
    /// `'...'`.
    Str(StrLit),
    /// `[+-]?digits[.digits]`.
    Number,
    /// `YYYY-MM-DD`.
    Date(Date),
    /// `YYYY-MM-DDThh:mm:ss[.f+](Z|±hh:mm)`.
    DateTime(DateTime),
    /// A currency literal with a fractional part, e.g. `USD12.50` (`USD12` lexes as `Ident`).
    Currency,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `.`.
    Dot,
    /// `:`.
    Colon,
    /// `=`.
    Eq,
    /// `!=` or `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// End of input (empty span at `len`).
    Eof,
    /// A lexical error; always the last token.
    Error(ParseError),
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    /// What it is.
    pub kind: Tok,
    /// Where it is.
    pub span: Span,
}

/// Longest token text quoted in an error message before it is cut with `...`.
const MAX_QUOTED: usize = 80;

/// Renders token text for an `unexpected token: X` message.
pub(crate) fn quote_token(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_QUOTED).collect();
    if text.chars().nth(MAX_QUOTED).is_some() {
        shown.push_str("...");
    }
    if text.starts_with('\'') {
        shown
    } else {
        format!("'{shown}'")
    }
}

/// Tokenizes `src`. The result always ends with `Tok::Eof` or `Tok::Error`.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    let mut lx = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        out: Vec::new(),
    };
    lx.run();
    lx.out
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: Vec<Token>,
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'a> Lexer<'a> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn push(&mut self, kind: Tok, start: usize) {
        self.out.push(Token {
            kind,
            span: Span::new(start, self.pos),
        });
    }

    fn run(&mut self) {
        loop {
            while let Some(b) = self.peek(0) {
                if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            let start = self.pos;
            let Some(b) = self.peek(0) else {
                self.push(Tok::Eof, start);
                return;
            };
            let res = match b {
                b'(' => self.single(Tok::LParen),
                b')' => self.single(Tok::RParen),
                b',' => self.single(Tok::Comma),
                b'.' => self.single(Tok::Dot),
                b':' => self.single(Tok::Colon),
                b'=' => self.single(Tok::Eq),
                b'!' if self.peek(1) == Some(b'=') => self.double(Tok::Ne),
                b'<' if self.peek(1) == Some(b'=') => self.double(Tok::Le),
                b'<' if self.peek(1) == Some(b'>') => self.double(Tok::Ne),
                b'<' => self.single(Tok::Lt),
                b'>' if self.peek(1) == Some(b'=') => self.double(Tok::Ge),
                b'>' => self.single(Tok::Gt),
                b'\'' => self.string(),
                b'0'..=b'9' => self.number_or_date(),
                b'+' | b'-' if self.peek(1).is_some_and(|c| c.is_ascii_digit()) => {
                    self.pos += 1;
                    self.number(start)
                }
                b'A'..=b'Z' | b'a'..=b'z' => {
                    self.ident();
                    Ok(())
                }
                _ => Err(self.unexpected_char(start)),
            };
            if let Err(e) = res {
                let span = e.span;
                self.out.push(Token {
                    kind: Tok::Error(e),
                    span,
                });
                return;
            }
        }
    }

    fn single(&mut self, kind: Tok) -> Result<(), ParseError> {
        let start = self.pos;
        self.pos += 1;
        self.push(kind, start);
        Ok(())
    }

    fn double(&mut self, kind: Tok) -> Result<(), ParseError> {
        let start = self.pos;
        self.pos += 2;
        self.push(kind, start);
        Ok(())
    }

    fn unexpected_char(&self, start: usize) -> ParseError {
        let ch = self.src[start..].chars().next().unwrap_or('\u{fffd}');
        let span = Span::new(start, start + ch.len_utf8());
        ParseError::malformed(
            format!("unexpected token: {}", quote_token(&ch.to_string())),
            span,
        )
    }

    fn ident(&mut self) {
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_continue) {
            self.pos += 1;
        }
        let text = &self.bytes[start..self.pos];
        // `USD12.50`: three letters, digits, then a fraction -> a currency token.
        let currency_shape = text.len() > 3
            && text[..3].iter().all(u8::is_ascii_alphabetic)
            && text[3..].iter().all(u8::is_ascii_digit);
        if currency_shape
            && self.peek(0) == Some(b'.')
            && self.peek(1).is_some_and(|c| c.is_ascii_digit())
        {
            self.pos += 1;
            while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
            self.push(Tok::Currency, start);
        } else {
            self.push(Tok::Ident, start);
        }
    }

    fn digits(&mut self) -> usize {
        let s = self.pos;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - s
    }

    /// Rejects a literal that runs straight into identifier characters (`1e3`, `5abc`, `1.2.3`).
    fn check_trailing(&mut self, start: usize) -> Result<(), ParseError> {
        if self
            .peek(0)
            .is_some_and(|c| is_ident_continue(c) || c == b'.')
        {
            while self
                .peek(0)
                .is_some_and(|c| is_ident_continue(c) || c == b'.')
            {
                self.pos += 1;
            }
            let span = Span::new(start, self.pos);
            return Err(ParseError::malformed(
                format!(
                    "unexpected token: {}",
                    quote_token(&self.src[start..self.pos])
                ),
                span,
            ));
        }
        Ok(())
    }

    /// Number after an optional sign (already consumed); `start` includes the sign.
    fn number(&mut self, start: usize) -> Result<(), ParseError> {
        self.digits();
        if self.peek(0) == Some(b'.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            self.digits();
        }
        self.check_trailing(start)?;
        self.push(Tok::Number, start);
        Ok(())
    }

    fn two_digits_at(&self, at: usize) -> Option<u32> {
        let a = *self.bytes.get(at)?;
        let b = *self.bytes.get(at + 1)?;
        if a.is_ascii_digit() && b.is_ascii_digit() {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        } else {
            None
        }
    }

    fn number_or_date(&mut self) -> Result<(), ParseError> {
        let start = self.pos;
        let s = start;
        let b = self.bytes;
        let looks_like_date = b.len() >= s + 10
            && b[s..s + 4].iter().all(u8::is_ascii_digit)
            && b[s + 4] == b'-'
            && b[s + 5].is_ascii_digit()
            && b[s + 6].is_ascii_digit()
            && b[s + 7] == b'-'
            && b[s + 8].is_ascii_digit()
            && b[s + 9].is_ascii_digit();
        if !looks_like_date {
            return self.number(start);
        }
        let year = b[s..s + 4]
            .iter()
            .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'));
        let month = self.two_digits_at(s + 5).unwrap_or(0);
        let day = self.two_digits_at(s + 8).unwrap_or(0);
        self.pos = s + 10;
        let date = Date { year, month, day };
        if !valid_date(date) {
            self.check_trailing(start)?;
            return Err(ParseError::malformed(
                format!("invalid date: {}", &self.src[start..self.pos]),
                Span::new(start, self.pos),
            ));
        }
        if self.peek(0) != Some(b'T') {
            self.check_trailing(start)?;
            self.push(Tok::Date(date), start);
            return Ok(());
        }
        self.pos += 1;
        match self.time_part(date) {
            Some(dt) => {
                self.check_trailing(start)?;
                self.push(Tok::DateTime(dt), start);
                Ok(())
            }
            None => {
                // consume the rest of the malformed literal so the span covers it
                while self
                    .peek(0)
                    .is_some_and(|c| is_ident_continue(c) || matches!(c, b':' | b'.' | b'+' | b'-'))
                {
                    self.pos += 1;
                }
                Err(ParseError::malformed(
                    format!("invalid dateTime: {}", &self.src[start..self.pos]),
                    Span::new(start, self.pos),
                ))
            }
        }
    }

    /// Parses `hh:mm:ss[.f+](Z|±hh:mm)` after the `T`; `None` if malformed or out of range.
    fn time_part(&mut self, date: Date) -> Option<DateTime> {
        let hour = self.two_digits_at(self.pos)?;
        self.pos += 2;
        if self.peek(0)? != b':' {
            return None;
        }
        let minute = self.two_digits_at(self.pos + 1)?;
        self.pos += 3;
        if self.peek(0)? != b':' {
            return None;
        }
        let second = self.two_digits_at(self.pos + 1)?;
        self.pos += 3;
        let mut millis = 0u32;
        if self.peek(0) == Some(b'.') {
            self.pos += 1;
            let frac_start = self.pos;
            let n = self.digits();
            if n == 0 {
                return None;
            }
            // first three digits, right-padded: ".5" = 500 ms, ".123456" = 123 ms
            for i in 0..3 {
                let d = if i < n {
                    u32::from(self.bytes[frac_start + i] - b'0')
                } else {
                    0
                };
                millis = millis * 10 + d;
            }
        }
        let offset_minutes = match self.peek(0)? {
            b'Z' => {
                self.pos += 1;
                0
            }
            sign @ (b'+' | b'-') => {
                let oh = self.two_digits_at(self.pos + 1)?;
                if self.peek(3)? != b':' {
                    return None;
                }
                let om = self.two_digits_at(self.pos + 4)?;
                self.pos += 6;
                if oh > 23 || om > 59 {
                    return None;
                }
                let m = (oh * 60 + om) as i32;
                if sign == b'-' {
                    -m
                } else {
                    m
                }
            }
            _ => return None,
        };
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        Some(DateTime {
            date,
            hour,
            minute,
            second,
            millis,
            offset_minutes,
        })
    }

    fn string(&mut self) -> Result<(), ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        let mut like_escapes = Vec::new();
        loop {
            let Some(ch) = self.src[self.pos..].chars().next() else {
                return Err(ParseError::malformed(
                    "unterminated string literal",
                    Span::new(start, self.src.len()),
                ));
            };
            match ch {
                '\'' => {
                    self.pos += 1;
                    break;
                }
                '\\' => {
                    let esc_start = self.pos;
                    self.pos += 1;
                    let Some(e) = self.src[self.pos..].chars().next() else {
                        return Err(ParseError::malformed(
                            "unterminated string literal",
                            Span::new(start, self.src.len()),
                        ));
                    };
                    self.pos += e.len_utf8();
                    let decoded = match e {
                        'n' | 'N' => '\n',
                        'r' | 'R' => '\r',
                        't' | 'T' => '\t',
                        'b' | 'B' => '\u{8}',
                        'f' | 'F' => '\u{c}',
                        '"' => '"',
                        '\'' => '\'',
                        '\\' => '\\',
                        '%' | '_' => {
                            like_escapes.push((value.len(), Span::new(esc_start, self.pos)));
                            e
                        }
                        'u' => self.unicode_escape(esc_start)?,
                        _ => {
                            let span = Span::new(esc_start, self.pos);
                            return Err(ParseError::malformed(
                                format!(
                                    "invalid escape sequence '{}' in string literal",
                                    &self.src[esc_start..self.pos]
                                ),
                                span,
                            ));
                        }
                    };
                    value.push(decoded);
                }
                c => {
                    self.pos += c.len_utf8();
                    value.push(c);
                }
            }
        }
        self.push(
            Tok::Str(StrLit {
                value,
                like_escapes,
            }),
            start,
        );
        Ok(())
    }

    /// Reads the 4 hex digits of `\uXXXX` (the `\u` is consumed); pairs surrogates.
    fn unicode_escape(&mut self, esc_start: usize) -> Result<char, ParseError> {
        let first = self.hex4(esc_start)?;
        let code = if (0xD800..0xDC00).contains(&first) {
            // high surrogate: must be followed by \uDC00-\uDFFF
            if self.peek(0) == Some(b'\\') && self.peek(1) == Some(b'u') {
                self.pos += 2;
                let low = self.hex4(esc_start)?;
                if !(0xDC00..0xE000).contains(&low) {
                    return Err(self.bad_unicode(esc_start));
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            } else {
                return Err(self.bad_unicode(esc_start));
            }
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.bad_unicode(esc_start))
    }

    fn hex4(&mut self, esc_start: usize) -> Result<u32, ParseError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self.peek(0).and_then(|c| (c as char).to_digit(16));
            match d {
                Some(d) => {
                    v = v * 16 + d;
                    self.pos += 1;
                }
                None => return Err(self.bad_unicode(esc_start)),
            }
        }
        Ok(v)
    }

    fn bad_unicode(&self, esc_start: usize) -> ParseError {
        let mut end = self.pos.max(esc_start + 2).min(self.src.len());
        while end < self.src.len() && !self.src.is_char_boundary(end) {
            end += 1;
        }
        ParseError::malformed(
            format!(
                "invalid unicode escape sequence '{}' in string literal",
                &self.src[esc_start..end]
            ),
            Span::new(esc_start, end),
        )
    }
}

/// Days in `month` of `year` (proleptic Gregorian); 0 for an invalid month.
pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            if leap {
                29
            } else {
                28
            }
        }
        _ => 0,
    }
}

fn valid_date(d: Date) -> bool {
    (1..=12).contains(&d.month) && d.day >= 1 && d.day <= days_in_month(d.year, d.month)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        tokenize(src).into_iter().map(|t| t.kind).collect()
    }

    fn texts(src: &str) -> Vec<String> {
        tokenize(src)
            .into_iter()
            .map(|t| src[t.span.start..t.span.end].to_string())
            .collect()
    }

    fn err(src: &str) -> ParseError {
        match tokenize(src).pop().map(|t| t.kind) {
            Some(Tok::Error(e)) => e,
            other => panic!("expected lex error for {src:?}, got {other:?}"),
        }
    }

    fn string_value(src: &str) -> StrLit {
        match kinds(src).into_iter().next() {
            Some(Tok::Str(s)) => s,
            other => panic!("expected string for {src:?}, got {other:?}"),
        }
    }

    #[test]
    fn punctuation_and_operators() {
        assert_eq!(
            kinds("( ) , . : = != <> < <= > >="),
            vec![
                Tok::LParen,
                Tok::RParen,
                Tok::Comma,
                Tok::Dot,
                Tok::Colon,
                Tok::Eq,
                Tok::Ne,
                Tok::Ne,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn identifiers_and_paths() {
        assert_eq!(
            texts("Account.Foo__r.ns__Bar__c"),
            vec!["Account", ".", "Foo__r", ".", "ns__Bar__c", ""]
        );
        assert_eq!(texts("a1_b\n\tc"), vec!["a1_b", "c", ""]);
    }

    #[test]
    fn numbers() {
        assert_eq!(
            texts("1 -5 +2.5 10.25 007"),
            vec!["1", "-5", "+2.5", "10.25", "007", ""]
        );
        assert!(kinds("-5")[0] == Tok::Number);
        for bad in ["1e3", "5abc", "1.2.3", "5.", "12_000"] {
            let e = err(bad);
            assert!(
                e.message.starts_with("unexpected token:"),
                "{bad}: {}",
                e.message
            );
            assert_eq!(e.span.start, 0, "{bad}");
        }
    }

    #[test]
    fn eof_span_is_one_past_end() {
        let toks = tokenize("Id ");
        let last = toks.last().unwrap();
        assert_eq!(last.kind, Tok::Eof);
        assert_eq!(last.span, Span::new(3, 3));
    }

    #[test]
    fn dates_and_datetimes() {
        assert_eq!(
            kinds("2024-02-29")[0],
            Tok::Date(Date {
                year: 2024,
                month: 2,
                day: 29
            })
        );
        let d = Date {
            year: 1999,
            month: 1,
            day: 1,
        };
        let cases = [
            ("1999-01-01T23:01:01Z", 23, 1, 1, 0, 0),
            ("1999-01-01T23:01:01+01:00", 23, 1, 1, 0, 60),
            ("1999-01-01T23:01:01-08:00", 23, 1, 1, 0, -480),
            ("1999-01-01T00:00:00.5Z", 0, 0, 0, 500, 0),
            ("1999-01-01T00:00:00.123456+05:30", 0, 0, 0, 123, 330),
        ];
        for (src, hour, minute, second, millis, off) in cases {
            assert_eq!(
                kinds(src)[0],
                Tok::DateTime(DateTime {
                    date: d,
                    hour,
                    minute,
                    second,
                    millis,
                    offset_minutes: off
                }),
                "{src}"
            );
        }
    }

    #[test]
    fn bad_dates() {
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-01-00",
            "2024-01-01T24:00:00Z",
            "2024-01-01T10:60:00Z",
            "2024-01-01T10:00:60Z",
            "2024-01-01T10:00:00",
            "2024-01-01T10:00Z",
            "2024-01-01T10:00:00+0100",
            "2024-01-01T10:00:00.Z",
            "2024-01-01T10:00:00+24:00",
            "2024-01-01T10:00:00z",
            "2024-01-01X",
        ] {
            let e = err(bad);
            assert_eq!(e.span.start, 0, "{bad}: {e:?}");
        }
    }

    #[test]
    fn string_escapes() {
        let s = string_value(r#"'a\nb\N\r\R\t\T\b\B\f\F\"\'\\z'"#);
        assert_eq!(s.value, "a\nb\n\r\r\t\t\u{8}\u{8}\u{c}\u{c}\"'\\z");
        assert!(s.like_escapes.is_empty());
        assert_eq!(string_value(r"'\u00e9\u20AC'").value, "é€");
        assert_eq!(string_value(r"'\uD83D\uDE00'").value, "😀");
        assert_eq!(string_value("'héllo wörld'").value, "héllo wörld");
        assert_eq!(string_value("''").value, "");
        let s = string_value(r"'50\%\_x'");
        assert_eq!(s.value, "50%_x");
        assert_eq!(
            s.like_escapes.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(s.like_escapes[0].1, Span::new(3, 5));
    }

    #[test]
    fn string_errors() {
        let e = err("'abc");
        assert_eq!(e.span.start, 0);
        assert!(e.message.contains("unterminated"));
        let e = err(r"'abc\");
        assert!(e.message.contains("unterminated"));
        let e = err(r"'a\qb'");
        assert_eq!(e.span, Span::new(2, 4));
        assert!(e.message.contains(r"'\q'"), "{}", e.message);
        for bad in [
            r"'\u12'",
            r"'\uZZZZ'",
            r"'\u'",
            r"'\uD83D'",
            r"'\uD83Dx'",
            r"'\uDE00'",
            r"'\uD83D\u0041'",
            r"'\u12",
        ] {
            let e = err(bad);
            assert_eq!(e.span.start, 1, "{bad}");
            assert!(e.message.contains("unicode"), "{bad}: {}", e.message);
        }
        let e = err(r"'\é'");
        assert_eq!(e.span, Span::new(1, 4));
    }

    #[test]
    fn unexpected_characters() {
        for (src, shown) in [
            ("*", "'*'"),
            (";", "';'"),
            ("\"x\"", "'\"'"),
            ("€", "'€'"),
            ("_x", "'_'"),
            ("!", "'!'"),
            ("-", "'-'"),
        ] {
            let e = err(src);
            assert_eq!(e.message, format!("unexpected token: {shown}"), "{src}");
        }
    }

    #[test]
    fn currency_tokens() {
        assert_eq!(kinds("USD5000")[0], Tok::Ident);
        assert_eq!(kinds("USD5000.50")[0], Tok::Currency);
        assert_eq!(texts("USD5000.50"), vec!["USD5000.50", ""]);
        // a path whose first segment merely looks like a currency stays a path
        assert_eq!(texts("ABC1.Name"), vec!["ABC1", ".", "Name", ""]);
    }

    #[test]
    fn quote_token_truncates() {
        let long = "x".repeat(200);
        let q = quote_token(&long);
        assert!(q.len() < 100 && q.ends_with("...'"));
        assert_eq!(quote_token("'abc'"), "'abc'");
    }
}

//! CSV as Bulk API 2.0 speaks it: one of six column delimiters, `LF` or `CRLF` line endings,
//! `"` quoting with `""` as the escaped quote, values never trimmed. Rows are found by a
//! quote-aware scan over a bounded buffer, so files are read in constant memory and a row's byte
//! offsets can be remembered and found again (chunk cursors, result files).

use std::borrow::Cow;
use std::io::{self, Read};

/// Longest row accepted (Salesforce allows 400,000 characters per record; quoting and UTF-8 can
/// make that several times as many bytes).
pub const MAX_ROW_BYTES: usize = 4 * 1024 * 1024;

/// How a file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The column delimiter byte.
    pub delimiter: u8,
    /// Rows end with `\r\n` (else `\n`).
    pub crlf: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            delimiter: b',',
            crlf: false,
        }
    }
}

impl Dialect {
    /// The line ending as bytes.
    pub fn line_ending(&self) -> &'static [u8] {
        if self.crlf {
            b"\r\n"
        } else {
            b"\n"
        }
    }
}

/// Reads rows from a byte stream: each row's bytes (without its line ending) and where it lies.
pub struct RowReader<R> {
    inner: R,
    dialect: Dialect,
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    start: usize,
    /// End of valid data in `buf`.
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> RowReader<R> {
    /// Reads from `inner`, whose first byte is at file offset `offset`.
    pub fn new(inner: R, offset: u64, dialect: Dialect) -> RowReader<R> {
        RowReader {
            inner,
            dialect,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            offset,
            eof: false,
        }
    }

    /// The file offset of the next unread row.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_ROW_BYTES + 2 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a row is longer than {MAX_ROW_BYTES} bytes"),
                ));
            }
            let n = (self.buf.len() * 2).min(MAX_ROW_BYTES + 2);
            self.buf.resize(n, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.end += n;
        Ok(true)
    }

    /// The next row: its file offset and bytes. `None` at the end of the data.
    pub fn next_row(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        let mut scanned = 0usize;
        let mut quoted = false;
        loop {
            let data = &self.buf[self.start + scanned..self.end];
            let mut found = None;
            for (k, &b) in data.iter().enumerate() {
                if b == b'"' {
                    quoted = !quoted;
                } else if b == b'\n' && !quoted {
                    let at = scanned + k;
                    if !self.dialect.crlf {
                        found = Some((at, at + 1));
                        break;
                    }
                    if at > 0 && self.buf[self.start + at - 1] == b'\r' {
                        found = Some((at - 1, at + 1));
                        break;
                    }
                }
            }
            if let Some((row_end, next)) = found {
                let row_start = self.start;
                let offset = self.offset;
                self.start += next;
                self.offset += next as u64;
                return Ok(Some((offset, &self.buf[row_start..row_start + row_end])));
            }
            scanned = self.end - self.start;
            if scanned > MAX_ROW_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a row is longer than {MAX_ROW_BYTES} bytes"),
                ));
            }
            if !self.fill()? {
                // The last row has no line ending.
                let len = self.end - self.start;
                if len == 0 {
                    return Ok(None);
                }
                let row_start = self.start;
                let offset = self.offset;
                self.start = self.end;
                self.offset += len as u64;
                return Ok(Some((offset, &self.buf[row_start..row_start + len])));
            }
            // `fill` moved the unconsumed data to the front; `scanned` is relative to `start`.
        }
    }
}

/// Splits a row into its fields, unquoting them. Invalid UTF-8 is replaced, quotes in the
/// middle of an unquoted field are kept as they are.
pub fn split_fields<'a>(row: &'a [u8], delimiter: u8, out: &mut Vec<Cow<'a, str>>) {
    out.clear();
    let mut i = 0;
    loop {
        if row.get(i) == Some(&b'"') {
            // Quoted: up to the closing quote, `""` is one quote; anything after the closing
            // quote up to the delimiter is kept too.
            let mut owned: Option<Vec<u8>> = None;
            let mut j = i + 1;
            let content_start = j;
            let mut content_end = row.len();
            while j < row.len() {
                if row[j] == b'"' {
                    if row.get(j + 1) == Some(&b'"') {
                        let o = owned.get_or_insert_with(|| row[content_start..j].to_vec());
                        o.push(b'"');
                        j += 2;
                        continue;
                    }
                    content_end = j;
                    j += 1;
                    break;
                }
                if let Some(o) = owned.as_mut() {
                    o.push(row[j]);
                }
                j += 1;
            }
            if content_end == row.len() {
                j = row.len();
            }
            let tail_end = row[j..]
                .iter()
                .position(|&b| b == delimiter)
                .map(|p| j + p)
                .unwrap_or(row.len());
            let field: Cow<'a, [u8]> = match (owned, tail_end > j) {
                (None, false) => Cow::Borrowed(&row[content_start..content_end]),
                (Some(mut o), extra) => {
                    if extra {
                        o.extend_from_slice(&row[j..tail_end]);
                    }
                    Cow::Owned(o)
                }
                (None, true) => {
                    let mut o = row[content_start..content_end].to_vec();
                    o.extend_from_slice(&row[j..tail_end]);
                    Cow::Owned(o)
                }
            };
            out.push(utf8(field));
            if tail_end >= row.len() {
                return;
            }
            i = tail_end + 1;
        } else {
            let end = row[i..]
                .iter()
                .position(|&b| b == delimiter)
                .map(|p| i + p)
                .unwrap_or(row.len());
            out.push(utf8(Cow::Borrowed(&row[i..end])));
            if end >= row.len() {
                return;
            }
            i = end + 1;
        }
    }
}

fn utf8(b: Cow<'_, [u8]>) -> Cow<'_, str> {
    match b {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// Appends `s` as a quoted field (`"` doubled).
pub fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for part in s.split('"').enumerate() {
        if part.0 > 0 {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(part.1.as_bytes());
    }
    out.push(b'"');
}

/// Strips a UTF-8 byte order mark.
pub fn strip_bom(row: &[u8]) -> &[u8] {
    row.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[u8], d: Dialect) -> Vec<(u64, Vec<u8>)> {
        let mut r = RowReader::new(data, 0, d);
        let mut out = Vec::new();
        while let Some((o, row)) = r.next_row().unwrap() {
            out.push((o, row.to_vec()));
        }
        out
    }

    fn fields(row: &str, delim: u8) -> Vec<String> {
        let mut out = Vec::new();
        split_fields(row.as_bytes(), delim, &mut out);
        out.into_iter().map(|c| c.into_owned()).collect()
    }

    #[test]
    fn rows_respect_quotes_and_line_endings() {
        let lf = Dialect::default();
        let got = rows(b"a,b\n\"x\ny\",2\nlast", lf);
        assert_eq!(
            got,
            vec![
                (0, b"a,b".to_vec()),
                (4, b"\"x\ny\",2".to_vec()),
                (12, b"last".to_vec())
            ]
        );
        let crlf = Dialect {
            delimiter: b',',
            crlf: true,
        };
        let got = rows(b"a,b\r\nx\ny,2\r\n", crlf);
        assert_eq!(got, vec![(0, b"a,b".to_vec()), (5, b"x\ny,2".to_vec())]);
        assert!(rows(b"", lf).is_empty());
    }

    #[test]
    fn rows_longer_than_the_buffer_are_read_whole() {
        let long = "z".repeat(700_000);
        let data = format!("h\n{long}\nend\n");
        let got = rows(data.as_bytes(), Dialect::default());
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1.len(), 700_000);
        assert_eq!(got[2], (700_003, b"end".to_vec()));
    }

    #[test]
    fn fields_unquote() {
        assert_eq!(fields("a,b,,c", b','), ["a", "b", "", "c"]);
        assert_eq!(
            fields("\"a,b\",\"he said \"\"hi\"\"\",x", b','),
            ["a,b", "he said \"hi\"", "x"]
        );
        assert_eq!(fields("", b','), [""]);
        assert_eq!(fields("a|\"b|c\"|", b'|'), ["a", "b|c", ""]);
        assert_eq!(fields("\"ab\"c,d", b','), ["abc", "d"]);
        assert_eq!(fields("\"open", b','), ["open"]);
        assert_eq!(fields(" a ,b", b','), [" a ", "b"]);
    }

    #[test]
    fn quoting_round_trips() {
        let mut out = Vec::new();
        push_quoted(&mut out, "say \"x\", then");
        assert_eq!(out, b"\"say \"\"x\"\", then\"");
        assert_eq!(
            fields(std::str::from_utf8(&out).unwrap(), b','),
            ["say \"x\", then"]
        );
    }
}

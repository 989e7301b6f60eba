//! The delivery engine's HTTP/1.1 client: each sending worker keeps one connection to its
//! receiver (plain TCP, or rustls with the webpki roots) and writes a POST on it, then reads
//! the reply (parsed with `httparse`, bodies framed by length, chunks or end of stream) up to a
//! size limit. A delivery is one write and, usually, one read: no connection pool, no tasks or
//! channels between the caller and the socket, which makes it several times cheaper than a
//! general-purpose client. Several requests can go in one write, their replies read in order
//! (HTTP/1.1 pipelining), either trusted or as a probe that finds out whether the receiver
//! answers pipelined requests at all. It does what deliveries need and nothing else: no
//! redirects, proxies, cookies or compression.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A receiver's reply.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request of a batch: its own headers and body (URL and content type are the batch's).
pub(crate) struct Request<'a> {
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// How several requests written at once are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipelining {
    /// The receiver has answered pipelined requests before: they all go in one write and
    /// their replies are awaited up to the timeout.
    Trusted,
    /// Whether the receiver answers pipelined requests is being found out: they go in one
    /// write, but when a reply after the first does not start within a grace (a few times as
    /// long as the first took, at least [`PROBE_GRACE`]), the connection is dropped and the
    /// rest go one at a time on new ones, instead of waiting out the timeout.
    Probe,
}

/// The outcomes of a batch of requests.
pub(crate) struct Replies {
    /// One per request, in order.
    pub each: Vec<Result<Reply, String>>,
    /// What the batch showed about the receiver and pipelining: `Some(true)` when one
    /// connection answered every request of a probe written together, `Some(false)` when a
    /// receiver left requests written together unanswered (a probe's grace ran out, it closed
    /// the connection without saying so or sent garbage after a reply, or a trusted batch
    /// timed out after some replies), `None` when it showed nothing either way.
    pub pipelines: Option<bool>,
}

/// The shortest time a probe waits for the reply after the first.
const PROBE_GRACE: Duration = Duration::from_millis(200);

/// What requests are sent with, shared by every worker.
pub(crate) struct Sender {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_response: usize,
}

/// A kept-alive connection to one origin.
pub(crate) struct Connection {
    origin: String,
    stream: Stream,
    /// Bytes read and not used yet.
    buf: Vec<u8>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Where a URL's requests go.
struct Target<'a> {
    /// The URL up to the end of its host and port: requests to the same one share connections.
    origin: &'a str,
    tls: bool,
    host: &'a str,
    port: u16,
    authority: &'a str,
    path: &'a str,
}

/// How an exchange failed.
enum Broken {
    /// The connection was gone before any of the reply arrived: a request sent on a reused
    /// connection goes again on a new one.
    Stale(String),
    Failed(String),
    /// A probe's grace ran out after at least one reply: the receiver does not answer
    /// pipelined requests.
    Silent,
}

/// How long connecting may take at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes a reply's status line and headers may take.
const MAX_HEAD: usize = 64 * 1024;

impl Sender {
    /// Requests (connecting included) end after `timeout`; replies are read up to
    /// `max_response` bytes.
    pub fn new(timeout: Duration, max_response: usize) -> Sender {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Sender::trusting(roots, timeout, max_response)
    }

    /// The same, trusting the certificate authorities in `roots`.
    fn trusting(roots: rustls::RootCertStore, timeout: Duration, max_response: usize) -> Sender {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Sender {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            max_response,
        }
    }

    /// POSTs `body` to `url` with `headers`, on the connection in `slot` when it goes to the
    /// same origin (else on a new one, left in `slot` while the receiver keeps it alive).
    pub async fn post(
        &self,
        slot: &mut Option<Connection>,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, String> {
        let request = Request {
            headers: headers.to_vec(),
            body,
        };
        let request = std::slice::from_ref(&request);
        self.post_all(slot, url, content_type, request, Pipelining::Trusted)
            .await
            .each
            .pop()
            .expect("one outcome per request")
    }

    /// POSTs `requests` to `url` the same way, written together before the first reply is
    /// read (HTTP/1.1 pipelining, `how`): one outcome per request, in order. Requests left
    /// without a reply when the receiver closes the connection go again on a new one
    /// (deliveries are at least once; each carries its idempotency key). One timeout covers
    /// them all.
    pub async fn post_all(
        &self,
        slot: &mut Option<Connection>,
        url: &str,
        content_type: &str,
        requests: &[Request<'_>],
        how: Pipelining,
    ) -> Replies {
        let with_url = |e: String| {
            if e.contains(url) {
                e
            } else {
                format!("{e} ({url})")
            }
        };
        let mut outcomes: Vec<Option<Result<Reply, String>>> =
            (0..requests.len()).map(|_| None).collect();
        let target = match target(url) {
            Ok(t) => t,
            Err(e) => {
                return Replies {
                    each: outcomes.into_iter().map(|_| Err(e.clone())).collect(),
                    pipelines: None,
                }
            }
        };
        // The requests that could be written, back to back, and where each one ends.
        let each = 256 + requests.first().map_or(0, |r| r.body.len());
        let mut bytes = Vec::with_capacity(requests.len() * each);
        let mut ends = Vec::with_capacity(requests.len());
        let mut which = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            match request_into(&mut bytes, &target, content_type, &r.headers, r.body) {
                Ok(()) => {
                    ends.push(bytes.len());
                    which.push(i);
                }
                Err(e) => outcomes[i] = Some(Err(with_url(e))),
            }
        }
        let mut replies = Vec::with_capacity(ends.len());
        let mut pipelines = None;
        let rest = if ends.is_empty() {
            Ok(())
        } else {
            let how = if ends.len() > 1 { Some(how) } else { None };
            tokio::time::timeout(
                self.timeout,
                self.exchange(
                    slot,
                    &target,
                    &bytes,
                    &ends,
                    how,
                    &mut replies,
                    &mut pipelines,
                ),
            )
            .await
            .unwrap_or_else(|_| {
                *slot = None;
                if !replies.is_empty() {
                    // Some were answered and the rest never were.
                    pipelines = Some(false);
                }
                Err(format!(
                    "no reply from {url} within {} s",
                    self.timeout.as_secs_f64()
                ))
            })
        };
        let mut replies = replies.into_iter();
        for i in which {
            outcomes[i] = Some(match replies.next() {
                Some(r) => r.map_err(with_url),
                None => Err(with_url(
                    rest.clone().err().unwrap_or_else(|| "no reply".into()),
                )),
            });
        }
        Replies {
            each: outcomes
                .into_iter()
                .map(|o| o.expect("every request has an outcome"))
                .collect(),
            pipelines,
        }
    }

    /// Sends the requests in `bytes` (each ending at its offset in `ends`) and pushes their
    /// replies to `out` in order, on the connection in `slot` or new ones, pipelined as `how`
    /// says (`None`: a single request); what that showed goes to `pipelines`. The error is
    /// the one every request without a reply ends with.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        slot: &mut Option<Connection>,
        target: &Target<'_>,
        bytes: &[u8],
        ends: &[usize],
        how: Option<Pipelining>,
        out: &mut Vec<Result<Reply, String>>,
        pipelines: &mut Option<bool>,
    ) -> Result<(), String> {
        if slot.as_ref().is_some_and(|c| c.origin != target.origin) {
            *slot = None;
        }
        let mut probing = how == Some(Pipelining::Probe);
        // Requests per write: all of them, until a probe shows that the receiver leaves
        // pipelined requests unanswered (or does not show that it answers them).
        let mut depth = ends.len();
        while out.len() < ends.len() {
            let before = out.len();
            let start = before.checked_sub(1).map_or(0, |i| ends[i]);
            let stop = (before + depth).min(ends.len());
            let count = stop - before;
            let (mut conn, reused) = match slot.take() {
                Some(c) => (c, true),
                None => (self.connect(target).await?, false),
            };
            let grace = probing && count > 1;
            let result = conn
                .exchange(
                    &bytes[start..ends[stop - 1]],
                    count,
                    self.max_response,
                    out,
                    grace,
                )
                .await;
            let answered = out.len() - before;
            // The receiver said it closes the connection (its request limit, say): that shows
            // nothing about pipelining.
            let announced = matches!(result, Ok(false));
            match result {
                // All answered, and the connection can take more.
                Ok(true) => *slot = Some(conn),
                // The receiver ends the connection after its last reply: the rest go again.
                Ok(false) => {}
                // The connection was gone before a reply: on a reused connection (or one
                // that answered some), the unanswered requests go again on a new one.
                Err(Broken::Stale(e)) => {
                    if answered == 0 {
                        if !reused {
                            return Err(e);
                        }
                        // Nothing was learnt: a probe goes again as it was.
                        continue;
                    }
                }
                // This request failed; the connection cannot be trusted with the rest.
                Err(Broken::Failed(e)) => out.push(Err(e)),
                // The probe's grace ran out: the rest go one at a time.
                Err(Broken::Silent) => {}
            }
            if grace {
                probing = false;
                if answered == count {
                    *pipelines = Some(true);
                } else {
                    depth = 1;
                    if answered > 0 && !announced {
                        *pipelines = Some(false);
                    }
                }
            }
        }
        Ok(())
    }

    async fn connect(&self, target: &Target<'_>) -> Result<Connection, String> {
        // A receiver that does not even accept gets at most 10 s of the request's time.
        let within = self.timeout.min(CONNECT_TIMEOUT);
        let tcp = tokio::time::timeout(within, TcpStream::connect((target.host, target.port)))
            .await
            .map_err(|_| {
                format!(
                    "cannot connect to {}: no answer within {} s",
                    target.origin,
                    within.as_secs_f64()
                )
            })?
            .map_err(|e| format!("cannot connect to {}: {e}", target.origin))?;
        let _ = tcp.set_nodelay(true);
        let stream = if target.tls {
            let name = rustls::pki_types::ServerName::try_from(target.host.to_string())
                .map_err(|_| format!("{} is not a valid TLS server name", target.host))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {} failed: {e}", target.origin))?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        Ok(Connection {
            origin: target.origin.to_string(),
            stream,
            buf: Vec::with_capacity(4096),
        })
    }
}

impl Connection {
    /// Writes `requests` (`count` of them, back to back) and pushes their replies to `out` in
    /// order: whether the connection can take more requests after the last. With `grace`,
    /// the replies after the first must start within a few times as long as the first took
    /// ([`Broken::Silent`] if not).
    async fn exchange(
        &mut self,
        requests: &[u8],
        count: usize,
        max_response: usize,
        out: &mut Vec<Result<Reply, String>>,
        grace: bool,
    ) -> Result<bool, Broken> {
        self.buf.clear();
        let sent = tokio::time::Instant::now();
        if let Err(e) = self.write_all(requests).await {
            return Err(Broken::Stale(format!("sending the request failed: {e}")));
        }
        let mut answered = 0;
        let mut wait = None;
        while answered < count {
            let head = match wait {
                Some(wait) => tokio::time::timeout(wait, self.read_head())
                    .await
                    .map_err(|_| Broken::Silent)?,
                None => self.read_head().await,
            };
            let (status, keep, framing, head_len) = head?;
            self.buf.drain(..head_len);
            if (100..200).contains(&status) {
                // An interim reply (`100 Continue`): the real one follows.
                continue;
            }
            let body = self.read_body(framing, max_response).await?;
            out.push(Ok(Reply { status, body }));
            answered += 1;
            if grace && wait.is_none() {
                wait = Some(PROBE_GRACE.max(sent.elapsed() * 4));
            }
            if !keep || matches!(framing, Framing::UntilClose) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads until a whole reply head is buffered: (status, keep-alive, body framing, head
    /// length).
    async fn read_head(&mut self) -> Result<(u16, bool, Framing, usize), Broken> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut reply = httparse::Response::new(&mut headers);
            match reply.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = reply.code.unwrap_or(0);
                    let mut keep = reply.version == Some(1);
                    let mut framing =
                        if status == 204 || status == 304 || (100..200).contains(&status) {
                            Framing::Length(0)
                        } else {
                            Framing::UntilClose
                        };
                    for h in reply.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            if let Framing::UntilClose = framing {
                                let n = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                                    .ok_or_else(|| {
                                        Broken::Failed(
                                            "the reply has an invalid Content-Length".into(),
                                        )
                                    })?;
                                framing = Framing::Length(n);
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            if h.value
                                .split(|b| *b == b',')
                                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                            {
                                framing = Framing::Chunked;
                            }
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            let v = h.value.to_ascii_lowercase();
                            if v.windows(5).any(|w| w == b"close") {
                                keep = false;
                            } else if v.windows(10).any(|w| w == b"keep-alive") {
                                keep = true;
                            }
                        }
                    }
                    return Ok((status, keep, framing, len));
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(Broken::Failed(format!(
                            "the reply's head is larger than {MAX_HEAD} bytes"
                        )));
                    }
                    let first = self.buf.is_empty();
                    if self.fill().await? == 0 {
                        let what = "the receiver closed the connection";
                        return Err(if first {
                            Broken::Stale(format!("{what} without replying"))
                        } else {
                            Broken::Failed(format!("{what} in the middle of its reply"))
                        });
                    }
                }
                Err(e) => return Err(Broken::Failed(format!("the reply is not HTTP: {e}"))),
            }
        }
    }

    async fn read_body(&mut self, framing: Framing, max: usize) -> Result<Vec<u8>, Broken> {
        let too_large = || Broken::Failed(format!("the reply is larger than {max} bytes"));
        let cut = || {
            Broken::Failed("the receiver closed the connection in the middle of its reply".into())
        };
        match framing {
            Framing::Length(n) => {
                if n > max {
                    return Err(too_large());
                }
                while self.buf.len() < n {
                    if self.fill().await? == 0 {
                        return Err(cut());
                    }
                }
                Ok(self.buf.drain(..n).collect())
            }
            Framing::UntilClose => {
                while self.fill().await? > 0 {
                    if self.buf.len() > max {
                        return Err(too_large());
                    }
                }
                Ok(std::mem::take(&mut self.buf))
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                loop {
                    let (start, size) = loop {
                        match httparse::parse_chunk_size(&self.buf) {
                            Ok(httparse::Status::Complete((start, size))) => break (start, size),
                            Ok(httparse::Status::Partial) => {
                                if self.buf.len() > MAX_HEAD {
                                    return Err(Broken::Failed(
                                        "a chunk header is too long".into(),
                                    ));
                                }
                                if self.fill().await? == 0 {
                                    return Err(cut());
                                }
                            }
                            Err(_) => {
                                return Err(Broken::Failed(
                                    "the reply's chunks are malformed".into(),
                                ))
                            }
                        }
                    };
                    let size = usize::try_from(size).map_err(|_| too_large())?;
                    if size == 0 {
                        // Trailers (ignored) up to the empty line.
                        self.buf.drain(..start);
                        loop {
                            if let Some(end) = find(&self.buf, b"\r\n") {
                                let line_empty = end == 0;
                                self.buf.drain(..end + 2);
                                if line_empty {
                                    return Ok(body);
                                }
                            } else if self.buf.len() > MAX_HEAD || self.fill().await? == 0 {
                                return Err(cut());
                            }
                        }
                    }
                    if body.len() + size > max {
                        return Err(too_large());
                    }
                    while self.buf.len() < start + size + 2 {
                        if self.fill().await? == 0 {
                            return Err(cut());
                        }
                    }
                    body.extend_from_slice(&self.buf[start..start + size]);
                    if &self.buf[start + size..start + size + 2] != b"\r\n" {
                        return Err(Broken::Failed("the reply's chunks are malformed".into()));
                    }
                    self.buf.drain(..start + size + 2);
                }
            }
        }
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream.
    async fn fill(&mut self) -> Result<usize, Broken> {
        self.buf.reserve(8192);
        match &mut self.stream {
            Stream::Plain(s) => s.read_buf(&mut self.buf).await,
            Stream::Tls(s) => s.read_buf(&mut self.buf).await,
        }
        .map_err(|e| Broken::Failed(format!("reading the reply failed: {e}")))
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => write_flush(s, bytes).await,
            Stream::Tls(s) => write_flush(s.as_mut(), bytes).await,
        }
    }
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// How a reply's body ends.
#[derive(Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// A character allowed in a header name (RFC 9110 `tchar`).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends the request's bytes (head and body) to `out`; on an error, `out` is left as it was.
fn request_into(
    out: &mut Vec<u8>,
    target: &Target<'_>,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    let start = out.len();
    let written = write_request(out, target, content_type, headers, body);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn write_request(
    out: &mut Vec<u8>,
    target: &Target<'_>,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    out.extend_from_slice(b"POST ");
    // Characters outside ASCII travel percent-encoded (UTF-8), as browsers send them.
    for b in target.path.bytes() {
        if b >= 0x80 {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(target.authority.as_bytes());
    out.extend_from_slice(
        concat!("\r\nUser-Agent: Conflux/", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    for (k, v) in headers {
        // Nothing that could end a line early, or start another header.
        if k.is_empty() || !k.bytes().all(is_token) {
            return Err(format!("{k:?} is not a valid header name"));
        }
        if v.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(format!("the value of header {k} is not valid in HTTP"));
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    Ok(())
}

fn target(url: &str) -> Result<Target<'_>, String> {
    let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
        (false, r)
    } else if let Some(r) = strip_prefix_ci(url, "https://") {
        (true, r)
    } else {
        return Err(format!("{url} is not an http or https URL"));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let path = rest[end..].split('#').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url} has no valid host"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url} has an invalid port"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url} has no valid host"));
    }
    let path = if path.is_empty() { "/" } else { path };
    if path.starts_with('?') {
        return Err(format!("{url} needs a path before its query"));
    }
    if path
        .bytes()
        .chain(authority.bytes())
        .any(|b| b <= b' ' || b == 0x7f)
    {
        return Err(format!("{url} contains spaces or control characters"));
    }
    if !authority.is_ascii() {
        return Err(format!(
            "{url}: write a host name outside ASCII in its xn-- (punycode) form"
        ));
    }
    Ok(Target {
        origin: &url[..url.len() - rest.len() + end],
        tls,
        host,
        port,
        authority,
        path,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn urls_are_split_into_origin_host_and_path() {
        let t = target("http://127.0.0.1:8080/hook?x=1#frag").unwrap();
        assert_eq!(
            (t.origin, t.host, t.port, t.path, t.authority),
            (
                "http://127.0.0.1:8080",
                "127.0.0.1",
                8080,
                "/hook?x=1",
                "127.0.0.1:8080"
            )
        );
        let t = target("HTTPS://billing.example.com").unwrap();
        assert_eq!(
            (t.tls, t.port, t.path, t.authority),
            (true, 443, "/", "billing.example.com")
        );
        assert_eq!(t.origin, "HTTPS://billing.example.com");
        let t = target("http://[::1]:9/x").unwrap();
        assert_eq!((t.host, t.port, t.authority), ("::1", 9, "[::1]:9"));
        let t = target("http://[::1]/x").unwrap();
        assert_eq!((t.host, t.port), ("::1", 80));
        for bad in [
            "ftp://x/y",
            "not a url",
            "/relative",
            "http://",
            "http://h:99999/",
            "http://user@h/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://h?q",
            "ünïcode://x",
            "http://hé/",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    fn request_bytes(
        t: &Target<'_>,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let mut out = b"before".to_vec();
        let r = request_into(&mut out, t, content_type, headers, body);
        assert!(out.starts_with(b"before"));
        if r.is_err() {
            assert_eq!(out, b"before", "a refused request leaves nothing behind");
        }
        r.map(|()| out.split_off(6))
    }

    #[test]
    fn requests_refuse_headers_that_would_split_them() {
        let t = target("http://h/x").unwrap();
        let ok = request_bytes(&t, "application/json", &[("X-A", "1")], b"{}").unwrap();
        assert_eq!(
            String::from_utf8(ok).unwrap(),
            format!(
                "POST /x HTTP/1.1\r\nHost: h\r\nUser-Agent: Conflux/{}\r\nContent-Type: \
                 application/json\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n{{}}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(request_bytes(&t, "a/b", &[("X-A", "1\r\nX-B: 2")], b"").is_err());
        assert!(request_bytes(&t, "a/b", &[("X A", "1")], b"").is_err());
        assert!(request_bytes(&t, "a/b", &[("X:A", "1")], b"").is_err());
        assert!(request_bytes(&t, "a/b", &[("", "1")], b"").is_err());
        assert!(request_bytes(&t, "a/b", &[("X-A", "tab\tok")], b"").is_ok());
        let t = target("http://h/caf\u{e9}?q=\u{e9}").unwrap();
        let r = request_bytes(&t, "a/b", &[], b"").unwrap();
        assert!(r.starts_with(b"POST /caf%C3%A9?q=%C3%A9 HTTP/1.1\r\n"));
    }

    /// A receiver on loopback answering each connection's requests with `replies` in turn
    /// (raw bytes), then closing it.
    async fn receiver(replies: Vec<Vec<&'static [u8]>>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for conn in replies {
                let (mut s, _) = l.accept().await.unwrap();
                for reply in conn {
                    let mut buf = vec![0u8; 65536];
                    let mut got = Vec::new();
                    // Read one request (head and a Content-Length body).
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        got.extend_from_slice(&buf[..n]);
                        if let Some(end) = find(&got, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if got.len() >= end + 4 + len {
                                break;
                            }
                        }
                        if n == 0 {
                            return;
                        }
                    }
                    s.write_all(reply).await.unwrap();
                }
            }
        });
        format!("http://{addr}/hook")
    }

    #[tokio::test]
    async fn replies_are_read_by_length_chunks_or_end_of_stream_and_connections_kept() {
        let url = receiver(vec![
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.0 200 OK\r\n\r\nuntil close",
            ],
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"],
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"],
        ])
        .await;
        let sender = Sender::new(Duration::from_secs(5), 1000);
        let mut slot = None;
        let post = async |slot: &mut Option<Connection>| {
            sender
                .post(slot, &url, "application/json", &[], b"{}")
                .await
        };
        let r = post(&mut slot).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert!(slot.is_some(), "kept alive");
        let r = post(&mut slot).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"abcde"[..]));
        let r = post(&mut slot).await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        let r = post(&mut slot).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"until close"[..]));
        assert!(
            slot.is_none(),
            "a reply ending with the stream ends the connection"
        );
        let r = post(&mut slot).await.unwrap();
        assert_eq!(r.body, b"ok");
        assert!(slot.is_none(), "Connection: close is obeyed");
        let e = post(&mut slot).await.err().unwrap();
        assert!(e.contains("larger than 1000 bytes"), "{e}");
    }

    /// A keep-alive receiver that reads each connection's requests as they come (several per
    /// read when they are pipelined) and answers each with its `X-N` header as the body, in
    /// order. It answers nothing on a connection before `wait_for` requests arrived on it, and
    /// closes a connection after `per_conn` replies (`close_without_reply` on the first
    /// connection: it closes that one before replying at all). `bad` requests (by `X-N`) get
    /// a reply that is not HTTP. It counts connections.
    async fn pipelining_receiver(
        wait_for: usize,
        per_conn: usize,
        bad: &'static [&'static str],
        close_without_reply: bool,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let n_conn = counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    let mut pending: Vec<String> = Vec::new();
                    let mut answered = 0;
                    loop {
                        // Every complete request in the buffer.
                        loop {
                            let mut headers = [httparse::EMPTY_HEADER; 32];
                            let mut req = httparse::Request::new(&mut headers);
                            let Ok(httparse::Status::Complete(len)) = req.parse(&got) else {
                                break;
                            };
                            let header = |name: &str| {
                                req.headers
                                    .iter()
                                    .find(|h| h.name.eq_ignore_ascii_case(name))
                                    .map(|h| String::from_utf8_lossy(h.value).to_string())
                            };
                            let body: usize =
                                header("content-length").map_or(0, |v| v.parse().unwrap());
                            if got.len() < len + body {
                                break;
                            }
                            pending.push(header("x-n").unwrap_or_default());
                            got.drain(..len + body);
                        }
                        if close_without_reply && n_conn == 0 && !pending.is_empty() {
                            return;
                        }
                        if answered + pending.len() >= wait_for || answered > 0 {
                            for n in pending.drain(..) {
                                let reply = if bad.contains(&n.as_str()) {
                                    "garbage\r\n\r\n".to_string()
                                } else {
                                    format!(
                                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{n}",
                                        n.len()
                                    )
                                };
                                s.write_all(reply.as_bytes()).await.unwrap();
                                answered += 1;
                                if answered == per_conn || bad.contains(&n.as_str()) {
                                    return;
                                }
                            }
                        }
                        let k = s.read(&mut buf).await.unwrap_or(0);
                        if k == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..k]);
                    }
                });
            }
        });
        (format!("http://{addr}/hook"), conns)
    }

    async fn post_numbered(
        sender: &Sender,
        slot: &mut Option<Connection>,
        url: &str,
        n: usize,
    ) -> Vec<Result<Reply, String>> {
        post_numbered_as(sender, slot, url, n, Pipelining::Trusted)
            .await
            .each
    }

    async fn post_numbered_as(
        sender: &Sender,
        slot: &mut Option<Connection>,
        url: &str,
        n: usize,
        how: Pipelining,
    ) -> Replies {
        let numbers: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let requests: Vec<Request<'_>> = numbers
            .iter()
            .map(|i| Request {
                headers: vec![("X-N", i.as_str())],
                body: b"{}",
            })
            .collect();
        sender
            .post_all(slot, url, "application/json", &requests, how)
            .await
    }

    fn bodies(results: &[Result<Reply, String>]) -> Vec<String> {
        results
            .iter()
            .map(|r| match r {
                Ok(r) => String::from_utf8_lossy(&r.body).to_string(),
                Err(e) => format!("error: {e}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn pipelined_requests_go_in_one_write_and_each_gets_its_own_reply() {
        use std::sync::atomic::Ordering;
        // The receiver answers only once all 8 arrived: a client waiting for the first reply
        // before sending the second would time out here.
        let (url, conns) = pipelining_receiver(8, usize::MAX, &[], false).await;
        let sender = Sender::new(Duration::from_secs(5), 1000);
        let mut slot = None;
        let results = post_numbered(&sender, &mut slot, &url, 8).await;
        let want: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
        assert_eq!(bodies(&results), want);
        assert!(slot.is_some(), "the connection is kept");
        // The kept connection takes the next batch.
        let results = post_numbered(&sender, &mut slot, &url, 3).await;
        assert_eq!(bodies(&results), ["1", "2", "3"]);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn pipelined_requests_left_unanswered_go_again_on_a_new_connection() {
        use std::sync::atomic::Ordering;
        // The receiver ends each connection after 3 replies (as `keepalive_requests` does).
        let (url, conns) = pipelining_receiver(1, 3, &[], false).await;
        let sender = Sender::new(Duration::from_secs(5), 1000);
        let mut slot = None;
        let results = post_numbered(&sender, &mut slot, &url, 8).await;
        let want: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
        assert_eq!(bodies(&results), want);
        assert_eq!(conns.load(Ordering::SeqCst), 3, "3 + 3 + 2 replies");

        // A reply that is not HTTP fails its request alone; the rest go again.
        let (url, conns) = pipelining_receiver(1, usize::MAX, &["3"], false).await;
        let mut slot = None;
        let results = post_numbered(&sender, &mut slot, &url, 5).await;
        let got = bodies(&results);
        assert_eq!(got[..2], ["1", "2"]);
        assert!(
            got[2].contains("not HTTP") && got[2].contains("/hook"),
            "{}",
            got[2]
        );
        assert_eq!(got[3..], ["4", "5"]);
        assert_eq!(conns.load(Ordering::SeqCst), 2);

        // A new connection closed before any reply fails the batch instead of trying for ever.
        let (url, conns) = pipelining_receiver(1, usize::MAX, &[], true).await;
        let results = post_numbered(&sender, &mut None, &url, 4).await;
        for r in &results {
            let e = r.as_ref().err().expect("no reply");
            assert!(e.contains("closed the connection without replying"), "{e}");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);

        // A request that cannot be written fails alone.
        let (url, _) = pipelining_receiver(1, usize::MAX, &[], false).await;
        let requests = [
            Request {
                headers: vec![("X-N", "1")],
                body: b"{}",
            },
            Request {
                headers: vec![("X-N", "bad\r\nvalue")],
                body: b"{}",
            },
            Request {
                headers: vec![("X-N", "3")],
                body: b"{}",
            },
        ];
        let results = sender
            .post_all(
                &mut None,
                &url,
                "application/json",
                &requests,
                Pipelining::Trusted,
            )
            .await
            .each;
        let got = bodies(&results);
        assert_eq!((got[0].as_str(), got[2].as_str()), ("1", "3"));
        assert!(got[1].contains("not valid in HTTP"), "{}", got[1]);
    }

    /// A keep-alive receiver that does not handle pipelining: each read of a connection gets
    /// one reply (the body says which connection, from 1, and which reply on it), whatever
    /// else the read brought is dropped. It counts connections.
    async fn one_reply_per_read_receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let c = counted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    for r in 1.. {
                        if s.read(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let body = format!("{c}.{r}");
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/hook"), conns)
    }

    #[tokio::test]
    async fn a_probe_finds_out_whether_the_receiver_answers_pipelined_requests() {
        use std::sync::atomic::Ordering;
        // Long enough that a probe waiting for the timeout would fail its requests.
        let sender = Sender::new(Duration::from_secs(30), 1000);

        // A receiver that handles pipelining answers both requests on one connection.
        let (url, conns) = pipelining_receiver(2, usize::MAX, &[], false).await;
        let mut slot = None;
        let r = post_numbered_as(&sender, &mut slot, &url, 2, Pipelining::Probe).await;
        assert_eq!(bodies(&r.each), ["1", "2"]);
        assert_eq!(r.pipelines, Some(true));
        assert!(slot.is_some());
        assert_eq!(conns.load(Ordering::SeqCst), 1);

        // One that answers the first and drops the second: after the grace, the second goes
        // alone on a new connection and is answered there; the probe says "no".
        let (url, conns) = one_reply_per_read_receiver().await;
        let mut slot = None;
        let r = post_numbered_as(&sender, &mut slot, &url, 3, Pipelining::Probe).await;
        assert_eq!(bodies(&r.each), ["1.1", "2.1", "2.2"]);
        assert_eq!(r.pipelines, Some(false));
        assert_eq!(conns.load(Ordering::SeqCst), 2);
        // A single request shows nothing either way.
        let r = post_numbered_as(&sender, &mut slot, &url, 1, Pipelining::Probe).await;
        assert_eq!(bodies(&r.each), ["2.3"]);
        assert_eq!(r.pipelines, None);

        // One that closes the connection after the first reply without saying so.
        let (url, _) = pipelining_receiver(1, 1, &[], false).await;
        let r = post_numbered_as(&sender, &mut None, &url, 2, Pipelining::Probe).await;
        assert_eq!(bodies(&r.each), ["1", "2"]);
        assert_eq!(r.pipelines, Some(false));
        // One that says it closes (`Connection: close`, as at a per-connection request limit):
        // the rest go alone, and the probe shows nothing either way.
        let url = receiver(vec![
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na"],
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"],
        ])
        .await;
        let r = post_numbered_as(&sender, &mut None, &url, 2, Pipelining::Probe).await;
        assert_eq!(bodies(&r.each), ["a", "b"]);
        assert_eq!(r.pipelines, None);

        // One that answers the second with garbage: that request fails, the third goes alone.
        let (url, conns) = pipelining_receiver(1, usize::MAX, &["2"], false).await;
        let r = post_numbered_as(&sender, &mut None, &url, 3, Pipelining::Probe).await;
        let got = bodies(&r.each);
        assert_eq!((got[0].as_str(), got[2].as_str()), ("1", "3"));
        assert!(got[1].contains("not HTTP"), "{}", got[1]);
        assert_eq!(r.pipelines, Some(false));
        assert_eq!(conns.load(Ordering::SeqCst), 2);

        // A trusted batch that the receiver leaves unanswered times out, and says so.
        let quick = Sender::new(Duration::from_millis(500), 1000);
        let (url, _) = one_reply_per_read_receiver().await;
        let r = post_numbered_as(&quick, &mut None, &url, 2, Pipelining::Trusted).await;
        let got = bodies(&r.each);
        assert_eq!(got[0], "1.1");
        assert!(got[1].contains("no reply from"), "{}", got[1]);
        assert_eq!(r.pipelines, Some(false));
    }

    #[tokio::test]
    async fn https_receivers_are_reached_over_tls_and_unknown_authorities_refused() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    // Two requests on one connection, each answered with its own number.
                    for n in 1..=2 {
                        while !String::from_utf8_lossy(&got).contains("\r\n\r\n{}") {
                            let k = s.read(&mut buf).await.unwrap();
                            if k == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..k]);
                        }
                        got.clear();
                        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{n}");
                        s.write_all(reply.as_bytes()).await.unwrap();
                        s.flush().await.unwrap();
                    }
                });
            }
        });
        let url = format!("https://localhost:{port}/hook");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let sender = Sender::trusting(roots, Duration::from_secs(5), 1000);
        let mut slot = None;
        for n in ["1", "2"] {
            let r = sender
                .post(&mut slot, &url, "application/json", &[], b"{}")
                .await
                .unwrap();
            assert_eq!((r.status, r.body.as_slice()), (200, n.as_bytes()));
        }
        assert!(slot.is_some(), "the TLS connection is kept");
        // The public roots do not know this certificate.
        let public = Sender::new(Duration::from_secs(5), 1000);
        let e = public
            .post(&mut None, &url, "application/json", &[], b"{}")
            .await
            .err()
            .unwrap();
        assert!(
            e.contains("TLS handshake") && e.contains("localhost"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_connection_the_receiver_closed_is_replaced_and_silence_times_out() {
        // The first connection answers once and closes; the request sent on it again goes on
        // a new connection.
        let url = receiver(vec![
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"],
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"],
        ])
        .await;
        let sender = Sender::new(Duration::from_secs(5), 1000);
        let mut slot = None;
        let r = sender.post(&mut slot, &url, "a/b", &[], b"").await.unwrap();
        assert_eq!(r.body, b"a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = sender.post(&mut slot, &url, "a/b", &[], b"").await.unwrap();
        assert_eq!(r.body, b"b");

        // A receiver that accepts and never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", l.local_addr().unwrap());
        tokio::spawn(async move {
            let _kept = l.accept().await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let sender = Sender::new(Duration::from_millis(300), 1000);
        let e = sender
            .post(&mut slot, &url, "a/b", &[], b"")
            .await
            .err()
            .unwrap();
        assert!(e.contains("no reply from") && e.contains("/slow"), "{e}");
        assert!(slot.is_none());
        // Nobody listening.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = sender
            .post(
                &mut slot,
                &format!("http://127.0.0.1:{port}/"),
                "a/b",
                &[],
                b"",
            )
            .await
            .err()
            .unwrap();
        assert!(e.contains("cannot connect"), "{e}");
    }
}

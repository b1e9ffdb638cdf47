//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! It is deliberately small and literal: the request target is sent exactly as
//! given (no path cleaning, no re-encoding), so tests can send `//a/./b` or
//! `%2F` and see what the server does with them.
//!
//! 1. [`Conn`] keeps one keep-alive connection and sends requests one after the
//!    other; a body is read by `Content-Length`, by chunked framing or to the
//!    end of the connection, and never for `HEAD`, 1xx, 204 and 304.
//! 2. [`Watch`] sends one request and then reads its body incrementally, line by
//!    line, for `wait=true` long polls and `stream=true` watches, whose headers
//!    arrive long before their body.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::HttpError;

/// How long one read may block before the request counts as unanswered.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One request: method, target (sent verbatim) and an optional body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// `(Content-Type, bytes)` of the body, if any.
    pub body: Option<(String, String)>,
}

impl Request {
    /// A request without a body.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_string(),
            target: target.to_string(),
            body: None,
        }
    }

    /// A request whose body is an `application/x-www-form-urlencoded` form.
    pub fn form(method: &str, target: &str, form: &str) -> Request {
        Request::with_body(method, target, "application/x-www-form-urlencoded", form)
    }

    /// A request with a body of any content type.
    pub fn with_body(method: &str, target: &str, content_type: &str, body: &str) -> Request {
        Request {
            method: method.to_string(),
            target: target.to_string(),
            body: Some((content_type.to_string(), body.to_string())),
        }
    }

    /// `METHOD target [content-type: body]`, for reports.
    pub fn describe(&self) -> String {
        match &self.body {
            Some((ct, body)) => format!("{} {} [{ct}: {body}]", self.method, self.target),
            None => format!("{} {}", self.method, self.target),
        }
    }

    /// The request's form fields as etcd (Go's `ParseForm`) sees them: a
    /// form body (only for POST, PUT and PATCH) first, then the query string.
    /// Values are percent-decoded.
    pub fn form_fields(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        if let Some((ct, body)) = &self.body {
            let parses_body = matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
            if parses_body && ct == "application/x-www-form-urlencoded" {
                fields = parse_form(body);
            }
        }
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        fields.extend(parse_form(query));
        fields
    }

    fn write_to(&self, mut w: impl Write) -> io::Result<()> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: keel-kvdiff\r\n",
            self.method, self.target
        );
        if let Some((ct, body)) = &self.body {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        if let Some((_, body)) = &self.body {
            w.write_all(body.as_bytes())?;
        }
        w.flush()
    }
}

/// `a=1&b=x%20y` → `[("a","1"), ("b","x y")]`; `+` is a space.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response: status, headers in the order received, body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `X-Etcd-Index` as a number.
    pub fn etcd_index(&self) -> Option<u64> {
        self.header("X-Etcd-Index")?.parse().ok()
    }

    /// Status line, headers and body, for reports.
    pub fn describe(&self) -> String {
        let mut s = format!("{}", self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("\n    {k}: {v}"));
        }
        s.push_str(&format!("\n    body: {:?}", self.text()));
        s
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing(method: &str, status: u16, headers: &[(String, String)]) -> Framing {
    if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        return Framing::None;
    }
    if header(headers, "Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Framing::Chunked;
    }
    match header(headers, "Content-Length").and_then(|v| v.trim().parse().ok()) {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    }
}

/// Reads a status line and headers.
fn read_head(r: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a status line",
        ));
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the headers",
            ));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {l:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((status, headers))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads a body incrementally according to its framing.
struct BodyReader {
    framing: Framing,
    /// Bytes left in the current chunk (chunked) or in the body (length).
    left: usize,
    done: bool,
}

impl BodyReader {
    fn new(framing: Framing) -> BodyReader {
        let (left, done) = match framing {
            Framing::None => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::UntilClose => (0, false),
        };
        BodyReader {
            framing,
            left,
            done,
        }
    }

    /// Appends the next piece of body to `out`; returns false at the end.
    fn next(&mut self, r: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        match self.framing {
            Framing::None => Ok(false),
            Framing::Length(_) => {
                let got = copy_some(r, out, self.left)?;
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside the body",
                    ));
                }
                self.left -= got;
                self.done = self.left == 0;
                Ok(true)
            }
            Framing::UntilClose => {
                let got = copy_some(r, out, usize::MAX)?;
                self.done = got == 0;
                Ok(got > 0)
            }
            Framing::Chunked => {
                if self.left == 0 {
                    let mut line = String::new();
                    r.read_line(&mut line)?;
                    let size = line.trim().split(';').next().unwrap_or("");
                    let n = usize::from_str_radix(size, 16)
                        .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                    if n == 0 {
                        // Trailers, then the blank line that ends the body.
                        loop {
                            line.clear();
                            if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                                break;
                            }
                        }
                        self.done = true;
                        return Ok(false);
                    }
                    self.left = n;
                }
                let got = copy_some(r, out, self.left)?;
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunk",
                    ));
                }
                self.left -= got;
                if self.left == 0 {
                    let mut crlf = [0u8; 2];
                    r.read_exact(&mut crlf)?;
                }
                Ok(true)
            }
        }
    }
}

/// Copies what the reader has buffered (at most `max` bytes) into `out`.
fn copy_some(r: &mut impl BufRead, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let buf = r.fill_buf()?;
    let n = buf.len().min(max);
    out.extend_from_slice(&buf[..n]);
    r.consume(n);
    Ok(n)
}

/// A keep-alive connection to one server, (re)opened on demand.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    /// Bounds the connect and every read and write.
    timeout: Duration,
    /// Whether a request that fails on a reused connection is sent again.
    resend_stale: bool,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            timeout: READ_TIMEOUT,
            resend_stale: true,
        }
    }

    /// A connection for fault tests: `timeout` bounds the connect and each
    /// read and write, and a request is never sent twice. The resend of
    /// [`Conn::send`] assumes that a server which broke a reused connection
    /// never saw the request; under injected faults it may have applied it,
    /// and a write applied twice (or a compare-and-swap that fails on its
    /// own first application) is a history the client never made.
    pub fn once(addr: SocketAddr, timeout: Duration) -> Conn {
        Conn {
            addr,
            stream: None,
            timeout,
            resend_stale: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens the connection now if it is not open. A request sent after
    /// this succeeded reached the server's socket; one that fails here was
    /// never sent.
    pub fn ensure_connected(&mut self) -> Result<(), HttpError> {
        if self.stream.is_none() {
            let stream =
                connect(self.addr, self.timeout).map_err(|source| HttpError::Exchange {
                    addr: self.addr,
                    request: "connect".to_string(),
                    source,
                })?;
            self.stream = Some(BufReader::new(stream));
        }
        Ok(())
    }

    /// Sends `req` and reads the whole response. A connection the server
    /// closed while idle is reopened once (unless made by [`Conn::once`]).
    pub fn send(&mut self, req: &Request) -> Result<Response, HttpError> {
        let reused = self.stream.is_some();
        match self.try_send(req) {
            Err(e) if reused && self.resend_stale && is_stale(&e) => {
                self.stream = None;
                self.try_send(req)
            }
            r => r,
        }
        .map_err(|source| {
            self.stream = None;
            HttpError::Exchange {
                addr: self.addr,
                request: req.describe(),
                source,
            }
        })
    }

    fn try_send(&mut self, req: &Request) -> io::Result<Response> {
        if self.stream.is_none() {
            self.stream = Some(BufReader::new(connect(self.addr, self.timeout)?));
        }
        let r = self.stream.as_mut().expect("connected above");
        req.write_to(r.get_mut())?;
        let (status, headers) = read_head(r)?;
        let mut body = Vec::new();
        let fr = framing(&req.method, status, &headers);
        let mut reader = BodyReader::new(fr);
        while reader.next(r, &mut body)? {}
        let close = fr == Framing::UntilClose
            || header(&headers, "Connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if close {
            self.stream = None;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One request on a fresh connection.
pub fn send(addr: SocketAddr, req: &Request) -> Result<Response, HttpError> {
    Conn::new(addr).send(req)
}

/// A response whose body is read as it arrives: a `wait=true` long poll or a
/// `stream=true` watch.
pub struct Watch {
    reader: BufReader<TcpStream>,
    body: BodyReader,
    /// Body bytes received but not yet returned as a line.
    pending: Vec<u8>,
    /// Status and headers; the body is read with [`Watch::next_line`].
    pub head: Response,
}

impl Watch {
    /// Sends `req` on a new connection and waits for the status line and
    /// headers (etcd sends them as soon as the watcher is registered).
    pub fn open(addr: SocketAddr, req: &Request) -> Result<Watch, HttpError> {
        let exchange = |source| HttpError::Exchange {
            addr,
            request: req.describe(),
            source,
        };
        let stream = connect(addr, READ_TIMEOUT).map_err(exchange)?;
        let mut reader = BufReader::new(stream);
        req.write_to(reader.get_mut()).map_err(exchange)?;
        let (status, headers) = read_head(&mut reader).map_err(exchange)?;
        let body = BodyReader::new(framing(&req.method, status, &headers));
        Ok(Watch {
            reader,
            body,
            pending: Vec::new(),
            head: Response {
                status,
                headers,
                body: Vec::new(),
            },
        })
    }

    /// A handle that can [`Shutdown`] the connection from another thread,
    /// which ends a blocked read.
    pub fn shutdown_handle(&self) -> io::Result<TcpStream> {
        self.reader.get_ref().try_clone()
    }

    /// Sets how long one read may block.
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(t))
    }

    /// The next `\n`-terminated line of the body (without the `\n`), or the
    /// unterminated rest at the end, or `None` when the body is over.
    pub fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                return Ok(Some(line));
            }
            if !self.body.next(&mut self.reader, &mut self.pending)? {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(std::mem::take(&mut self.pending)));
            }
        }
    }

    /// Reads the rest of the body and returns the whole response.
    pub fn finish(mut self) -> io::Result<Response> {
        let mut body = std::mem::take(&mut self.pending);
        while self.body.next(&mut self.reader, &mut body)? {}
        let mut resp = self.head;
        resp.body = body;
        Ok(resp)
    }

    /// Closes the connection.
    pub fn close(self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(method: &str, raw: &str) -> Response {
        let mut r = Cursor::new(raw.as_bytes().to_vec());
        let (status, headers) = read_head(&mut r).unwrap();
        let mut body = Vec::new();
        let mut b = BodyReader::new(framing(method, status, &headers));
        while b.next(&mut r, &mut body).unwrap() {}
        Response {
            status,
            headers,
            body,
        }
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let r = read(
            "GET",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn content_length_bodies_stop_at_the_length() {
        let r = read(
            "GET",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nabXX",
        );
        assert_eq!((r.status, r.text().as_str()), (404, "ab"));
    }

    #[test]
    fn head_responses_have_no_body_whatever_their_length() {
        let r = read("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 84\r\n\r\n");
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length"), Some("84"));
    }

    #[test]
    fn forms_decode_plus_and_percent_and_keep_order() {
        let req = Request::form("PUT", "/v2/keys/a?value=q&ttl=5", "value=a+b%26c&x=%zz");
        assert_eq!(
            req.form_fields(),
            [
                ("value", "a b&c"),
                ("x", "%zz"),
                ("value", "q"),
                ("ttl", "5")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}

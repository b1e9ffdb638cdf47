//! Turns one server's response into a value comparable with another server's.
//!
//! What legitimately differs between two servers is rewritten; everything else
//! is kept and compared exactly:
//!
//! 1. Indexes: each server's store starts at its own index `S` (etcd's v2 store
//!    already holds cluster metadata). `X-Etcd-Index`, `modifiedIndex`,
//!    `createdIndex`, an error's `index`, the numbers in a 101 "Compare
//!    failed" cause's index group and in a 401 cause, and 20-digit POST
//!    in-order key names become `<i+D>` / `<k+D>` with `D` = value − `S`. Form
//!    errors (codes 200–299) carry index 0 whatever the store holds; theirs
//!    stay literal (for a body-less HEAD answer: a 400 with index 0).
//! 2. `expiration` timestamps become `<expiration>` (present or absent still
//!    counts).
//! 3. The server's own client and peer URLs become `<client-url>` and
//!    `<peer-url>`.
//! 4. `X-Raft-Index`, `X-Raft-Term` and `X-Etcd-Cluster-Id` count by presence
//!    only; `Content-Type`, `Location` and `Allow` are compared as sent; other
//!    headers (Date, Content-Length, framing, CORS) are not compared.
//! 5. Bodies: JSON is compared as parsed values, a `stream=true` body as its
//!    list of lines (each parsed as JSON when it is), anything else as text. In
//!    [`Mode::Shape`] JSON scalars are reduced to their type.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::http::{Request, Response};
use crate::script::Mode;

/// Headers compared as sent.
pub const EXACT_HEADERS: &[&str] = &["Content-Type", "Location", "Allow"];
/// Headers compared by presence only.
pub const PRESENCE_HEADERS: &[&str] = &["X-Raft-Index", "X-Raft-Term", "X-Etcd-Cluster-Id"];
/// Headers holding a store index, compared as a delta.
pub const INDEX_HEADERS: &[&str] = &["X-Etcd-Index"];

/// What the normaliser needs to know about one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// `X-Etcd-Index` of the server's first `GET /v2/keys/`.
    pub start: u64,
    pub client_url: String,
    pub peer_url: String,
}

/// A response with everything that legitimately differs rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Empty,
    Json(Value),
    /// The lines of a `stream=true` body.
    Lines(Vec<Value>),
    Text(String),
}

impl std::fmt::Display for Normalised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        for (k, v) in &self.headers {
            write!(f, " {k}={v}")?;
        }
        match &self.body {
            Body::Empty => write!(f, " <no body>"),
            Body::Json(v) => write!(f, " {v}"),
            Body::Lines(ls) => {
                for l in ls {
                    write!(f, "\n      {l}")?;
                }
                Ok(())
            }
            Body::Text(t) => write!(f, " {t:?}"),
        }
    }
}

/// Normalises `resp`, the answer to `req` (already expanded for this server).
pub fn normalise(req: &Request, resp: &Response, side: &Side, mode: Mode) -> Normalised {
    let fields = req.form_fields();
    let flag = |name: &str| fields.iter().any(|(k, v)| k == name && v == "true");
    // A watch's stream of events; its errors are single JSON bodies.
    let stream = flag("wait") && flag("stream") && resp.status == 200;
    let mut body = if resp.body.is_empty() {
        Body::Empty
    } else if stream {
        Body::Lines(
            resp.text()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.into())))
                .collect(),
        )
    } else {
        match resp.json() {
            Some(v) => Body::Json(v),
            None => Body::Text(resp.text()),
        }
    };
    // A form error (200–299, status 400) reports index 0, not the store's
    // index; a HEAD answer has no body to tell, so its status has to.
    let literal = match &body {
        Body::Json(v) => error_code(v).is_some_and(|c| (200..300).contains(&c)),
        _ => resp.status == 400 && resp.etcd_index() == Some(0),
    };
    match &mut body {
        Body::Json(v) => {
            json(v, req, side, literal);
            if mode == Mode::Shape {
                *v = shape(v);
            }
        }
        Body::Lines(ls) => ls.iter_mut().for_each(|v| json(v, req, side, false)),
        Body::Text(t) => *t = string(t, side),
        Body::Empty => {}
    }
    let mut headers = BTreeMap::new();
    for &name in EXACT_HEADERS {
        if let Some(v) = resp.header(name) {
            headers.insert(name.to_string(), string(v, side));
        }
    }
    for &name in PRESENCE_HEADERS {
        if resp.header(name).is_some() {
            headers.insert(name.to_string(), "<present>".into());
        }
    }
    for &name in INDEX_HEADERS {
        if let Some(v) = resp.header(name) {
            let v = match v.parse() {
                Ok(0) if literal => "0".to_string(),
                Ok(i) => delta("i", i, side.start),
                Err(_) => v.to_string(),
            };
            headers.insert(name.to_string(), v);
        }
    }
    Normalised {
        status: resp.status,
        headers,
        body,
    }
}

fn error_code(v: &Value) -> Option<u64> {
    v.get("errorCode")?.as_u64()
}

fn delta(kind: &str, value: u64, start: u64) -> String {
    format!("<{kind}{:+}>", value as i128 - start as i128)
}

fn json(v: &mut Value, req: &Request, side: &Side, literal: bool) {
    if let Some(code) = error_code(v) {
        let Value::Object(m) = v else { return };
        if let Some(Value::String(cause)) = m.get_mut("cause") {
            *cause = match code {
                101 => compare_cause(cause, req, side.start),
                401 => cleared_cause(cause, side.start),
                _ => cause.clone(),
            };
        }
        if !literal {
            if let Some(i) = m.get("index").and_then(Value::as_u64) {
                m.insert("index".into(), delta("i", i, side.start).into());
            }
        }
    }
    walk(v, side);
}

/// Rewrites node fields and strings everywhere below `v`.
fn walk(v: &mut Value, side: &Side) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x.as_u64()) {
                    ("modifiedIndex" | "createdIndex", Some(i)) => {
                        *x = delta("i", i, side.start).into()
                    }
                    ("expiration", _) => *x = "<expiration>".into(),
                    _ => walk(x, side),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, side)),
        Value::String(s) => *s = string(s, side),
        _ => {}
    }
}

/// Replaces the server's URLs and 20-digit in-order key names.
fn string(s: &str, side: &Side) -> String {
    let s = s
        .replace(&side.client_url, "<client-url>")
        .replace(&side.peer_url, "<peer-url>");
    let mut out = String::with_capacity(s.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        match digits.parse::<u64>() {
            Ok(i) if digits.len() == 20 => out.push_str(&delta("k", i, side.start)),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// etcd's 101 cause is `[prevValue != value]`, `[prevIndex != modifiedIndex]`
/// or both in that order; which single group it is depends on what failed, so
/// look at what the request asked for.
fn compare_cause(cause: &str, req: &Request, start: u64) -> String {
    let Some(inner) = cause.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else {
        return cause.to_string();
    };
    let groups: Vec<&str> = inner.split("] [").collect();
    let fields = req.form_fields();
    let first = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (prev_index, prev_value) = (first("prevIndex"), first("prevValue"));
    let is_index = |i: usize, g: &str| match groups.len() {
        2 => i == 1,
        _ => {
            let left = g.split(" != ").next();
            prev_index.is_some()
                && (prev_value.is_none() || (left == prev_index && left != prev_value))
        }
    };
    let shift = |s: &str| match s.parse() {
        Ok(n) => delta("i", n, start),
        Err(_) => s.to_string(),
    };
    let out: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| match g.split_once(" != ") {
            Some((a, b)) if is_index(i, g) => format!("[{} != {}]", shift(a), shift(b)),
            _ => format!("[{g}]"),
        })
        .collect();
    out.join(" ")
}

/// etcd's 401 cause: `the requested history has been cleared [oldest/asked]`.
fn cleared_cause(cause: &str, start: u64) -> String {
    let Some((text, rest)) = cause.rsplit_once('[') else {
        return cause.to_string();
    };
    let Some((a, b)) = rest.strip_suffix(']').and_then(|r| r.split_once('/')) else {
        return cause.to_string();
    };
    match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) => format!("{text}[{}/{}]", delta("i", a, start), delta("i", b, start)),
        _ => cause.to_string(),
    }
}

/// The value with every scalar replaced by its type's name.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Bool(_) => "<bool>".into(),
        Value::Number(_) => "<number>".into(),
        Value::String(_) => "<string>".into(),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), shape(x))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn side(start: u64) -> Side {
        Side {
            start,
            client_url: format!("http://127.0.0.1:{}", 1000 + start),
            peer_url: format!("http://127.0.0.1:{}", 2000 + start),
        }
    }

    fn resp(status: u16, index: u64, body: &str) -> Response {
        Response {
            status,
            headers: vec![
                ("X-Etcd-Index".into(), index.to_string()),
                ("Content-Type".into(), "application/json".into()),
                ("X-Raft-Term".into(), "2".into()),
                ("Date".into(), "now".into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    fn norm(req: &str, start: u64, r: Response) -> Normalised {
        normalise(&Request::new("PUT", req), &r, &side(start), Mode::Exact)
    }

    #[test]
    fn indexes_become_deltas_from_each_servers_start() {
        let a = norm(
            "/v2/keys/q",
            3,
            resp(
                201,
                7,
                r#"{"action":"create","node":{"key":"/q/00000000000000000007","modifiedIndex":7,"createdIndex":7,"expiration":"x","ttl":5}}"#,
            ),
        );
        let b = norm(
            "/v2/keys/q",
            10,
            resp(
                201,
                14,
                r#"{"action":"create","node":{"key":"/q/00000000000000000014","modifiedIndex":14,"createdIndex":14,"expiration":"y","ttl":5}}"#,
            ),
        );
        assert_eq!(a, b);
        assert_eq!(a.headers["X-Etcd-Index"], "<i+4>");
        assert_eq!(a.headers["X-Raft-Term"], "<present>");
        assert!(!a.headers.contains_key("Date"));
        assert_eq!(
            a.body,
            Body::Json(json!({"action":"create","node":{"key":"/q/<k+4>",
                "modifiedIndex":"<i+4>","createdIndex":"<i+4>","expiration":"<expiration>","ttl":5}}))
        );
    }

    #[test]
    fn form_errors_keep_index_zero() {
        let body = r#"{"errorCode":202,"message":"m","cause":"c","index":0}"#;
        let a = norm("/v2/keys/a?ttl=x", 3, resp(400, 0, body));
        assert_eq!(a.headers["X-Etcd-Index"], "0");
        assert_eq!(
            a.body,
            Body::Json(json!({"errorCode":202,"message":"m","cause":"c","index":0}))
        );
    }

    #[test]
    fn compare_failed_causes_shift_only_the_index_group() {
        let cause = |req: &str, body: &str, start| match norm(req, start, resp(412, 9, body)).body {
            Body::Json(v) => v["cause"].as_str().unwrap().to_string(),
            b => panic!("{b:?}"),
        };
        let body =
            r#"{"errorCode":101,"message":"Compare failed","cause":"[x != 2] [4 != 8]","index":9}"#;
        assert_eq!(
            cause("/k?prevValue=x&prevIndex=4", body, 3),
            "[x != 2] [<i+1> != <i+5>]"
        );
        let body = r#"{"errorCode":101,"message":"Compare failed","cause":"[4 != 8]","index":9}"#;
        assert_eq!(cause("/k?prevIndex=4", body, 3), "[<i+1> != <i+5>]");
        assert_eq!(cause("/k?prevValue=4", body, 3), "[4 != 8]");
        assert_eq!(
            cause("/k?prevValue=2&prevIndex=4", body, 3),
            "[<i+1> != <i+5>]"
        );
        assert_eq!(cause("/k?prevValue=4&prevIndex=5", body, 3), "[4 != 8]");
    }

    #[test]
    fn cleared_history_causes_shift_both_numbers() {
        assert_eq!(
            cleared_cause("the requested history has been cleared [17/5]", 3),
            "the requested history has been cleared [<i+14>/<i+2>]"
        );
    }

    #[test]
    fn urls_and_shapes() {
        let s = side(3);
        assert_eq!(
            string("http://127.0.0.1:1003 and http://127.0.0.1:2003", &s),
            "<client-url> and <peer-url>"
        );
        assert_eq!(
            shape(&json!({"a":[1,"x",true,null],"b":{}})),
            json!({"a":["<number>","<string>","<bool>",null],"b":{}})
        );
    }
}

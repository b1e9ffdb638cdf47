//! A differential script: the steps the runner replays on both servers.
//!
//! Targets and bodies are templates, expanded per server against its starting
//! index `S` (the `X-Etcd-Index` of its first `GET /v2/keys/`) and the last
//! nonzero `X-Etcd-Index` `L` that server sent in answer to a [`Step::Send`]
//! or [`Step::Burst`]:
//!
//! | template | expands to |
//! | --- | --- |
//! | `{i}`, `{i+N}`, `{i-N}` | `S`, `S+N`, `S-N` |
//! | `{p}`, `{p+N}`, `{p-N}` | `L`, `L+N`, `L-N` (e.g. `prevIndex={p}` right after a write) |
//! | `{k+N}`, `{q-N}` | the same as `i`, `p`, zero-padded to 20 digits (a POST in-order key name) |
//! | `{n}` | in a [`Step::Burst`], the write's number, 1..=count |
//!
//! Anything else in braces is left as it is.

use std::time::Duration;

use crate::http::Request;

/// How two responses are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Status, the compared headers and the normalised body must be equal.
    Exact,
    /// Status and headers as in `Exact`; a JSON body only needs the same keys
    /// and value types (values differ between servers: ids, times, counters).
    Shape,
}

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send a request to each server and compare the responses.
    Send { request: Request, mode: Mode },
    /// Start a request in the background on each server and wait until its
    /// headers arrive (etcd sends them once the watcher is registered).
    /// `events: None` reads a whole body (a `wait=true` long poll);
    /// `Some(n)` reads `n` lines and hangs up (a `stream=true` watch).
    Watch {
        name: String,
        request: Request,
        events: Option<usize>,
    },
    /// Wait for the background request `name` and compare what it got.
    Collect { name: String },
    /// Sleep once (both servers wait together), e.g. for TTL expiry.
    Sleep(Duration),
    /// Send `count` requests (`{n}` = 1..=count) to each server over one
    /// keep-alive connection; compare every status and the last response.
    Burst { count: usize, request: Request },
}

impl Step {
    pub fn send(request: Request) -> Step {
        Step::Send {
            request,
            mode: Mode::Exact,
        }
    }
    pub fn get(target: &str) -> Step {
        Step::method("GET", target)
    }
    pub fn head(target: &str) -> Step {
        Step::method("HEAD", target)
    }
    pub fn put(target: &str) -> Step {
        Step::method("PUT", target)
    }
    pub fn post(target: &str) -> Step {
        Step::method("POST", target)
    }
    pub fn delete(target: &str) -> Step {
        Step::method("DELETE", target)
    }
    /// Any method, no body.
    pub fn method(method: &str, target: &str) -> Step {
        Step::send(Request::new(method, target))
    }
    /// A request with an `application/x-www-form-urlencoded` body.
    pub fn form(method: &str, target: &str, form: &str) -> Step {
        Step::send(Request::form(method, target, form))
    }
    /// A GET compared by shape.
    pub fn shape(target: &str) -> Step {
        Step::Send {
            request: Request::new("GET", target),
            mode: Mode::Shape,
        }
    }
    /// A background `wait=true` long poll.
    pub fn watch(name: &str, target: &str) -> Step {
        Step::Watch {
            name: name.to_string(),
            request: Request::new("GET", target),
            events: None,
        }
    }
    /// A background `stream=true` watch that collects `events` events.
    pub fn stream(name: &str, target: &str, events: usize) -> Step {
        Step::Watch {
            name: name.to_string(),
            request: Request::new("GET", target),
            events: Some(events),
        }
    }
    pub fn collect(name: &str) -> Step {
        Step::Collect {
            name: name.to_string(),
        }
    }
    pub fn sleep_ms(ms: u64) -> Step {
        Step::Sleep(Duration::from_millis(ms))
    }
    pub fn burst(count: usize, method: &str, target: &str) -> Step {
        Step::Burst {
            count,
            request: Request::new(method, target),
        }
    }
}

/// The indexes templates are expanded against, for one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vars {
    /// The server's starting index.
    pub start: u64,
    /// The last nonzero `X-Etcd-Index` it sent.
    pub last: u64,
}

/// Expands `{i±N}`, `{p±N}`, `{k±N}` and `{q±N}`.
pub fn expand(template: &str, vars: Vars) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match after.find('}').and_then(|close| {
            let inner = &after[1..close];
            expand_one(inner, vars).map(|s| (s, close))
        }) {
            Some((s, close)) => {
                out.push_str(&s);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn expand_one(inner: &str, vars: Vars) -> Option<String> {
    let (kind, offset) = inner.split_at_checked(1)?;
    let offset: i64 = match offset {
        "" => 0,
        o if o.starts_with('+') => o[1..].parse().ok()?,
        o if o.starts_with('-') => -o[1..].parse::<i64>().ok()?,
        _ => return None,
    };
    let base = match kind {
        "i" | "k" => vars.start,
        "p" | "q" => vars.last,
        _ => return None,
    };
    let value = base.checked_add_signed(offset)?;
    match kind {
        "i" | "p" => Some(value.to_string()),
        _ => Some(format!("{value:020}")),
    }
}

/// Expands a request's target and body.
pub fn expand_request(req: &Request, vars: Vars) -> Request {
    Request {
        method: req.method.clone(),
        target: expand(&req.target, vars),
        body: req
            .body
            .as_ref()
            .map(|(ct, b)| (ct.clone(), expand(b, vars))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_and_key_names_expand_against_the_start() {
        let v = Vars { start: 3, last: 40 };
        assert_eq!(
            expand("/v2/keys/a?waitIndex={i+5}&prevIndex={i-1}&x={i}", v),
            "/v2/keys/a?waitIndex=8&prevIndex=2&x=3"
        );
        assert_eq!(expand("/q/{k+2}", v), "/q/00000000000000000005");
        assert_eq!(expand("{p}/{p-1}/{q+2}", v), "40/39/00000000000000000042");
    }

    #[test]
    fn other_braces_are_left_alone() {
        assert_eq!(
            expand(r#"{"value":"x"} {n} {i+x} {"#, Vars { start: 3, last: 3 }),
            r#"{"value":"x"} {n} {i+x} {"#
        );
    }
}

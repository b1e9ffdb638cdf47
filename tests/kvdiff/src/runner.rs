//! Replays a script on two servers in lockstep and compares each answer.
//!
//! 1. Read each server's starting index from its first `GET /v2/keys/`.
//! 2. For each step, expand the request for server A, send it, then for
//!    server B; normalise both answers against their own [`Side`] and compare.
//! 3. A background watch runs on a thread per server; the runner goes on once
//!    its headers arrived (or after [`HEADERS_WAIT`], for servers that send
//!    headers only with the event), and a later `Collect` step waits for it.
//! 4. Every difference becomes a [`Mismatch`] naming the step, the request and
//!    both responses; the run itself only fails when a server cannot be
//!    reached at all at the start.

use std::collections::HashMap;
use std::fmt;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::http::{Conn, Request, Response, Watch};
use crate::normalise::{normalise, Normalised, Side};
use crate::script::{expand_request, Mode, Step, Vars};
use crate::server::Server;

/// How long a step waits for a background watch's headers before going on.
pub const HEADERS_WAIT: Duration = Duration::from_millis(300);
/// How long a `stream=true` watch collects events, from its start.
pub const STREAM_WAIT: Duration = Duration::from_secs(3);
/// How long a `Collect` step waits for a watch's answer; longer than
/// [`STREAM_WAIT`] so that a short stream is reported with what it got.
pub const COLLECT_WAIT: Duration = Duration::from_secs(5);

/// One server as the runner sees it.
#[derive(Debug, Clone)]
pub struct Target {
    /// A label for reports, e.g. `etcd` or the binary's name.
    pub label: String,
    pub addr: SocketAddr,
    pub side: Side,
}

impl Target {
    /// Reads the server's starting index with a first `GET /v2/keys/`.
    pub fn of(server: &Server, label: &str) -> Result<Target, ServerError> {
        Ok(Target {
            label: label.to_string(),
            addr: server.addr(),
            side: Side {
                start: server.current_index()?,
                client_url: server.client_url(),
                peer_url: server.peer_url(),
            },
        })
    }
}

/// One difference between the two servers.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// 1-based step number in the script.
    pub step: usize,
    /// The request as sent to server A.
    pub request: String,
    pub a: Outcome,
    pub b: Outcome,
    /// Extra context, e.g. which write of a burst differed.
    pub note: String,
}

/// What one server answered (or why it did not).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub label: String,
    pub raw: Result<Response, String>,
    pub normalised: Option<Normalised>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.raw, &self.normalised) {
            (Ok(r), Some(n)) => write!(
                f,
                "{}: normalised {n}\n    raw {}",
                self.label,
                r.describe()
            ),
            (Ok(r), None) => write!(f, "{}: raw {}", self.label, r.describe()),
            (Err(e), _) => write!(f, "{}: no answer: {e}", self.label),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}: {}", self.step, self.request)?;
        if !self.note.is_empty() {
            write!(f, " ({})", self.note)?;
        }
        write!(f, "\n  {}\n  {}", self.a, self.b)
    }
}

/// The result of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// Responses compared (a burst counts once).
    pub compared: usize,
    /// Writes sent by bursts, per server.
    pub burst_writes: usize,
    pub mismatches: Vec<Mismatch>,
    /// Every compared step's request and server A's raw answer, for reading
    /// what the reference server does.
    pub transcript: String,
}

impl Report {
    /// `kvdiff: A vs B: N requests compared (W burst writes), M mismatches`.
    pub fn summary(&self, a: &str, b: &str) -> String {
        format!(
            "kvdiff: {a} vs {b}: {} requests compared ({} burst writes), {} mismatches",
            self.compared,
            self.burst_writes,
            self.mismatches.len()
        )
    }
}

/// A background request on one server.
struct Pending {
    request: Request,
    done: Receiver<Result<Response, String>>,
    conn: Receiver<TcpStream>,
}

/// Replays `script` on `a` and `b` (A is the reference) and compares.
pub fn run(script: &[Step], a: &Target, b: &Target) -> Report {
    let targets = [a, b];
    let mut conns = [Conn::new(a.addr), Conn::new(b.addr)];
    let mut pending: HashMap<String, [Pending; 2]> = HashMap::new();
    let mut vars = targets.map(|t| Vars {
        start: t.side.start,
        last: t.side.start,
    });
    let mut report = Report::default();
    for (i, step) in script.iter().enumerate() {
        let n = i + 1;
        match step {
            Step::Send { request, mode } => {
                let [ra, rb] = [0, 1].map(|s| {
                    let req = expand_request(request, vars[s]);
                    let raw = conns[s].send(&req).map_err(|e| e.to_string());
                    remember(&mut vars[s], &raw);
                    (req, raw)
                });
                compare(&mut report, n, targets, [ra, rb], *mode, "");
            }
            Step::Watch {
                name,
                request,
                events,
            } => {
                let started = [0, 1].map(|s| {
                    let req = expand_request(request, vars[s]);
                    start_watch(targets[s].addr, req, *events)
                });
                pending.insert(name.clone(), started);
            }
            Step::Collect { name } => {
                let Some(started) = pending.remove(name) else {
                    panic!("script step {n}: collect {name:?} without a watch of that name");
                };
                let got = started.map(|p| {
                    let raw = match p.done.recv_timeout(COLLECT_WAIT) {
                        Ok(r) => r,
                        Err(_) => {
                            if let Ok(c) = p.conn.try_recv() {
                                let _ = c.shutdown(Shutdown::Both);
                            }
                            Err(format!("no answer within {} s", COLLECT_WAIT.as_secs()))
                        }
                    };
                    (p.request, raw)
                });
                compare(&mut report, n, targets, got, Mode::Exact, "");
            }
            Step::Sleep(d) => thread::sleep(*d),
            Step::Burst { count, request } => {
                let mut results = [0, 1].map(|s| {
                    let mut conn = Conn::new(targets[s].addr);
                    (1..=*count)
                        .map(|w| {
                            let req = Request {
                                target: request.target.replace("{n}", &w.to_string()),
                                body: request
                                    .body
                                    .as_ref()
                                    .map(|(ct, b)| (ct.clone(), b.replace("{n}", &w.to_string()))),
                                method: request.method.clone(),
                            };
                            let req = expand_request(&req, vars[s]);
                            let raw = conn.send(&req).map_err(|e| e.to_string());
                            remember(&mut vars[s], &raw);
                            (req, raw)
                        })
                        .collect::<Vec<_>>()
                });
                report.burst_writes += count;
                let status =
                    |r: &(Request, Result<Response, String>)| r.1.as_ref().map(|r| r.status).ok();
                let differs = results[0]
                    .iter()
                    .zip(&results[1])
                    .position(|(x, y)| status(x) != status(y) || status(x).is_none());
                let [la, lb] = match differs {
                    Some(w) => [results[0].swap_remove(w), results[1].swap_remove(w)],
                    None => [
                        results[0].pop().expect("burst of at least one"),
                        results[1].pop().expect("burst of at least one"),
                    ],
                };
                let note = match differs {
                    Some(w) => format!("burst write {} of {count}", w + 1),
                    None => format!("last of a {count}-write burst"),
                };
                compare(&mut report, n, targets, [la, lb], Mode::Exact, &note);
            }
        }
    }
    for (_, started) in pending {
        for p in started {
            if let Ok(c) = p.conn.try_recv() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
    report
}

/// Keeps the last nonzero `X-Etcd-Index` for `{p}` templates.
fn remember(vars: &mut Vars, raw: &Result<Response, String>) {
    if let Some(i) = raw.as_ref().ok().and_then(Response::etcd_index) {
        if i != 0 {
            vars.last = i;
        }
    }
}

fn compare(
    report: &mut Report,
    step: usize,
    targets: [&Target; 2],
    got: [(Request, Result<Response, String>); 2],
    mode: Mode,
    note: &str,
) {
    report.compared += 1;
    let [(req_a, raw_a), (req_b, raw_b)] = got;
    report
        .transcript
        .push_str(&format!("#{step} {}\n", req_a.describe()));
    match &raw_a {
        Ok(r) => report.transcript.push_str(&format!("  {}\n", r.describe())),
        Err(e) => report.transcript.push_str(&format!("  no answer: {e}\n")),
    }
    let norm_a = raw_a
        .as_ref()
        .ok()
        .map(|r| normalise(&req_a, r, &targets[0].side, mode));
    let norm_b = raw_b
        .as_ref()
        .ok()
        .map(|r| normalise(&req_b, r, &targets[1].side, mode));
    // An unanswered request never matches, even when both are unanswered.
    if norm_a.is_none() || norm_a != norm_b {
        report.mismatches.push(Mismatch {
            step,
            request: req_a.describe(),
            a: Outcome {
                label: targets[0].label.clone(),
                raw: raw_a,
                normalised: norm_a,
            },
            b: Outcome {
                label: targets[1].label.clone(),
                raw: raw_b,
                normalised: norm_b,
            },
            note: note.to_string(),
        });
    }
}

/// Starts `req` on a thread; returns once its headers arrived or after
/// [`HEADERS_WAIT`].
fn start_watch(addr: SocketAddr, req: Request, events: Option<usize>) -> Pending {
    let (done_tx, done) = mpsc::channel();
    let (conn_tx, conn) = mpsc::channel();
    let (head_tx, head) = mpsc::channel();
    let thread_req = req.clone();
    thread::spawn(move || {
        let result = (|| {
            let mut w = Watch::open(addr, &thread_req).map_err(|e| e.to_string())?;
            let _ = head_tx.send(());
            if let Ok(c) = w.shutdown_handle() {
                let _ = conn_tx.send(c);
            }
            match events {
                None => w.finish().map_err(|e| e.to_string()),
                Some(n) => {
                    let _ = w.set_read_timeout(STREAM_WAIT);
                    let mut lines = Vec::new();
                    let deadline = Instant::now() + STREAM_WAIT;
                    while lines.len() < n && Instant::now() < deadline {
                        match w.next_line() {
                            Ok(Some(l)) => lines.push(l),
                            Ok(None) | Err(_) => break,
                        }
                    }
                    let mut resp = w.head.clone();
                    w.close();
                    resp.body = lines.join(&b'\n');
                    Ok(resp)
                }
            }
        })();
        let _ = done_tx.send(result);
    });
    // Timed out or failed: go on; the Collect step reports what happened.
    let _ = head.recv_timeout(HEADERS_WAIT);
    Pending {
        request: req,
        done,
        conn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A fake server whose store starts at `start`: `GET /v2/keys/` answers
    /// the index; `PUT /v2/keys/k?value=V` answers V at `start + 1`, with
    /// the value rewritten by `answer`.
    fn fake(start: u64, answer: fn(&str) -> String) -> Target {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut w = conn;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let target = line.split(' ').nth(1).unwrap_or("").to_string();
                        while r.read_line(&mut line).unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n")
                        {
                        }
                        let (index, body) = match target.split_once("value=") {
                            Some((_, v)) => (
                                start + 1,
                                format!(
                                    r#"{{"action":"set","node":{{"key":"/k","value":"{}","modifiedIndex":{},"createdIndex":{}}}}}"#,
                                    answer(v),
                                    start + 1,
                                    start + 1
                                ),
                            ),
                            None => (start, r#"{"action":"get","node":{"dir":true}}"#.into()),
                        };
                        let _ = write!(
                            w,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Etcd-Index: {index}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        Target {
            label: format!("fake@{start}"),
            addr,
            side: Side {
                start,
                client_url: format!("http://{addr}"),
                peer_url: "http://127.0.0.1:1".into(),
            },
        }
    }

    fn script() -> Vec<Step> {
        vec![Step::get("/v2/keys/"), Step::put("/v2/keys/k?value=x")]
    }

    #[test]
    fn servers_differing_only_in_their_start_index_match() {
        let (a, b) = (fake(3, |v| v.into()), fake(40, |v| v.into()));
        let r = run(&script(), &a, &b);
        assert_eq!(
            (r.compared, r.mismatches.len()),
            (2, 0),
            "{:?}",
            r.mismatches
        );
    }

    #[test]
    fn a_different_value_is_reported_with_its_step_and_request() {
        let (a, b) = (fake(3, |v| v.into()), fake(3, |v| format!("{v}!")));
        let r = run(&script(), &a, &b);
        assert_eq!(r.mismatches.len(), 1);
        let m = r.mismatches[0].to_string();
        assert!(m.starts_with("step 2: PUT /v2/keys/k?value=x"), "{m}");
        assert!(m.contains(r#""value":"x!""#), "{m}");
    }
}

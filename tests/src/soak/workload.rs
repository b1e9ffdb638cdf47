//! The clients: random etcd v2 operations on [`KEYS`], recorded as
//! [`keel_lincheck::Op`]s.
//!
//! 1. A client picks a key and an operation (weights in [`WEIGHTS`]); every
//!    write carries a value no one wrote before (`cC.N`), and a compare
//!    uses the value this client last saw on the key, so that some succeed.
//! 2. It opens a connection to a random member first: when that fails, the
//!    request was never sent and nothing is recorded. Then it stamps the
//!    call, sends once (never twice: see [`Conn::once`]) and stamps the
//!    return.
//! 3. [`classify`] maps the answer: 200/201 → `Ok` or `Value`, errorCode 100
//!    → `NotFound`, 105 → `Exists`, 101 → `Failed`; no answer, a 5xx or
//!    errorCode 300/301 → unknown outcome. Anything else is an unexpected
//!    answer, which fails the run. An acknowledged write also yields its
//!    etcd index (`node.modifiedIndex`), key and action, for the watch
//!    checks.
//! 4. After an unknown outcome the client takes a new client id (the old
//!    one's operation may still be pending forever, and a client has one
//!    operation at a time) and moves to another member.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel_kvdiff::{Conn, Request, Response};
use keel_lincheck::{Input, Op, Output, WatchEvent};

use super::rng::Rng;
use super::{Clock, KEYS};

/// How long a request may take before its outcome counts as unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Relative weights of get, set, create, update, cas, delete, cad.
pub const WEIGHTS: [u64; 7] = [30, 15, 10, 10, 15, 10, 10];

/// What one client did.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub ops: Vec<Op>,
    /// Acknowledged writes: (etcd index, key, action).
    pub acked: Vec<WatchEvent>,
    /// Requests never sent (no connection to the member).
    pub not_sent: usize,
    /// Answers that fit no case of step 3, described.
    pub unexpected: Vec<String>,
}

/// What an answer says about the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered(Output, Option<WatchEvent>),
    Unknown,
    Unexpected(String),
}

/// The request for `input` on `key`.
pub fn request(key: &str, input: &Input) -> Request {
    let target = format!("/v2/keys{key}");
    let put = |query: String, value: &str| {
        Request::form(
            "PUT",
            &format!("{target}{query}"),
            &format!("value={value}"),
        )
    };
    match input {
        Input::Get => Request::new("GET", &target),
        Input::Set { value } => put(String::new(), value),
        Input::Create { value } => put("?prevExist=false".into(), value),
        Input::Update { value } => put("?prevExist=true".into(), value),
        Input::Cas { prev, value } => put(format!("?prevValue={prev}"), value),
        Input::Delete => Request::new("DELETE", &target),
        Input::Cad { prev } => Request::new("DELETE", &format!("{target}?prevValue={prev}")),
    }
}

/// The action etcd reports for a successful `input`.
pub fn action(input: &Input) -> &'static str {
    match input {
        Input::Get => "get",
        Input::Set { .. } => "set",
        Input::Create { .. } => "create",
        Input::Update { .. } => "update",
        Input::Cas { .. } => "compareAndSwap",
        Input::Delete => "delete",
        Input::Cad { .. } => "compareAndDelete",
    }
}

/// Step 3.
pub fn classify(key: &str, input: &Input, resp: &Response) -> Outcome {
    let odd = |why: &str| {
        Outcome::Unexpected(format!(
            "{input} on {key}: {why}: {} {}",
            resp.status,
            resp.text().trim()
        ))
    };
    if resp.status >= 500 {
        return Outcome::Unknown;
    }
    let Some(body) = resp.json() else {
        return odd("not JSON");
    };
    if matches!(resp.status, 200 | 201) {
        let node = &body["node"];
        if *input == Input::Get {
            return match node["value"].as_str() {
                Some(v) => Outcome::Answered(Output::Value(v.to_string()), None),
                None => odd("no value"),
            };
        }
        let (Some(index), Some(got_key), Some(got_action)) = (
            node["modifiedIndex"].as_u64(),
            node["key"].as_str(),
            body["action"].as_str(),
        ) else {
            return odd("no modifiedIndex, key or action");
        };
        if got_key != key || got_action != action(input) {
            return odd("another key or action");
        }
        let event = WatchEvent::new(index, got_key, got_action);
        return Outcome::Answered(Output::Ok, Some(event));
    }
    match body["errorCode"].as_u64() {
        Some(100) => Outcome::Answered(Output::NotFound, None),
        Some(101) => Outcome::Answered(Output::Failed, None),
        Some(105) => Outcome::Answered(Output::Exists, None),
        // Raft internal error, leader election: the write may still commit.
        Some(300 | 301) => Outcome::Unknown,
        _ => odd("unexpected answer"),
    }
}

/// Everything the client threads share.
pub struct Shared {
    pub clock: Clock,
    pub addrs: Vec<SocketAddr>,
    pub stop: AtomicBool,
}

/// Step 1: the next operation of a client that last saw `seen` on `key`.
fn next_input(rng: &mut Rng, value: String, seen: Option<&String>) -> Input {
    let prev = seen.cloned().unwrap_or_else(|| "none".to_string());
    match rng.weighted(&WEIGHTS) {
        0 => Input::Get,
        1 => Input::Set { value },
        2 => Input::Create { value },
        3 => Input::Update { value },
        4 => Input::Cas { prev, value },
        5 => Input::Delete,
        _ => Input::Cad { prev },
    }
}

/// What a client saw on `key` after `input` answered `output`.
fn remember(seen: &mut HashMap<&str, String>, key: &'static str, input: &Input, output: &Output) {
    match (input, output) {
        (_, Output::Value(v)) => {
            seen.insert(key, v.clone());
        }
        (
            Input::Set { value }
            | Input::Create { value }
            | Input::Update { value }
            | Input::Cas { value, .. },
            Output::Ok,
        ) => {
            seen.insert(key, value.clone());
        }
        (Input::Get | Input::Delete | Input::Cad { .. }, Output::Ok | Output::NotFound)
        | (Input::Update { .. } | Input::Cas { .. }, Output::NotFound) => {
            seen.remove(key);
        }
        _ => {}
    }
}

/// One client thread, until `shared.stop`; `thread` numbers it.
pub fn client(thread: u64, mut rng: Rng, shared: &Shared) -> ClientLog {
    let mut log = ClientLog::default();
    let mut seen: HashMap<&str, String> = HashMap::new();
    let mut generation = 0u64;
    let mut member = rng.index(shared.addrs.len());
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    let switch = |rng: &mut Rng, member: usize| {
        (member + 1 + rng.index(shared.addrs.len() - 1)) % shared.addrs.len()
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let c = conn.get_or_insert_with(|| Conn::once(shared.addrs[member], REQUEST_TIMEOUT));
        if c.ensure_connected().is_err() {
            log.not_sent += 1;
            conn = None;
            member = switch(&mut rng, member);
            std::thread::sleep(rng.millis(20, 100));
            continue;
        }
        let key = KEYS[rng.index(KEYS.len())];
        seq += 1;
        let input = next_input(&mut rng, format!("c{thread}.{seq}"), seen.get(key));
        let client = thread * 1_000_000 + generation;
        let call = shared.clock.ns();
        let answer = c.send(&request(key, &input));
        let ret = shared.clock.ns();
        let outcome = match &answer {
            Ok(resp) => classify(key, &input, resp),
            Err(_) => Outcome::Unknown,
        };
        match outcome {
            Outcome::Answered(output, event) => {
                remember(&mut seen, key, &input, &output);
                log.acked.extend(event);
                log.ops
                    .push(Op::returned(client, key, call, ret, input, output));
            }
            Outcome::Unknown | Outcome::Unexpected(_) => {
                if let Outcome::Unexpected(why) = outcome {
                    log.unexpected.push(why);
                }
                log.ops.push(Op::unknown(client, key, call, input));
                generation += 1;
                seen.remove(key);
                conn = None;
                member = switch(&mut rng, member);
                std::thread::sleep(rng.millis(10, 100));
            }
        }
    }
    log
}

/// A quorum read of `key` for the end of a run, on each member in turn
/// until one answers: the answered op, or the unknown ones. `client` is the
/// id to record it under.
pub fn final_read(shared: &Shared, key: &str, client: u64, log: &mut ClientLog) -> bool {
    for attempt in 0..(4 * shared.addrs.len()) {
        let mut conn = Conn::once(shared.addrs[attempt % shared.addrs.len()], REQUEST_TIMEOUT);
        if conn.ensure_connected().is_err() {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        let call = shared.clock.ns();
        let answer = conn.send(&request(key, &Input::Get));
        let ret = shared.clock.ns();
        match answer.map(|r| classify(key, &Input::Get, &r)) {
            Ok(Outcome::Answered(output, _)) => {
                log.ops
                    .push(Op::returned(client, key, call, ret, Input::Get, output));
                return true;
            }
            Ok(Outcome::Unexpected(why)) => log.unexpected.push(why),
            Ok(Outcome::Unknown) | Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn set(v: &str) -> Input {
        Input::Set {
            value: v.to_string(),
        }
    }

    #[test]
    fn answers_map_to_outputs() {
        let k = "/soak/k0";
        let got = classify(
            k,
            &Input::Get,
            &resp(
                200,
                r#"{"action":"get","node":{"key":"/soak/k0","value":"c1.2","modifiedIndex":7}}"#,
            ),
        );
        assert_eq!(got, Outcome::Answered(Output::Value("c1.2".into()), None));
        let got = classify(
            k,
            &set("c1.3"),
            &resp(
                201,
                r#"{"action":"set","node":{"key":"/soak/k0","value":"c1.3","modifiedIndex":8}}"#,
            ),
        );
        assert_eq!(
            got,
            Outcome::Answered(Output::Ok, Some(WatchEvent::new(8, k, "set")))
        );
        let cas = Input::Cas {
            prev: "a".into(),
            value: "b".into(),
        };
        let failed = resp(
            412,
            r#"{"errorCode":101,"message":"Compare failed","index":9}"#,
        );
        assert_eq!(
            classify(k, &cas, &failed),
            Outcome::Answered(Output::Failed, None)
        );
        let exists = resp(412, r#"{"errorCode":105,"message":"Key already exists"}"#);
        let create = Input::Create { value: "x".into() };
        assert_eq!(
            classify(k, &create, &exists),
            Outcome::Answered(Output::Exists, None)
        );
        let missing = resp(404, r#"{"errorCode":100,"message":"Key not found"}"#);
        assert_eq!(
            classify(k, &Input::Delete, &missing),
            Outcome::Answered(Output::NotFound, None)
        );
        let internal = resp(500, r#"{"errorCode":300,"message":"Raft Internal Error"}"#);
        assert_eq!(classify(k, &set("y"), &internal), Outcome::Unknown);
        assert_eq!(classify(k, &set("y"), &resp(503, "busy")), Outcome::Unknown);
        let form = resp(400, r#"{"errorCode":209,"message":"Invalid field"}"#);
        assert!(matches!(
            classify(k, &set("y"), &form),
            Outcome::Unexpected(_)
        ));
        // A success for another action is not what was asked.
        let other = resp(
            200,
            r#"{"action":"update","node":{"key":"/soak/k0","modifiedIndex":8}}"#,
        );
        assert!(matches!(
            classify(k, &set("y"), &other),
            Outcome::Unexpected(_)
        ));
    }

    #[test]
    fn requests_carry_the_preconditions() {
        let r = request(
            "/soak/k1",
            &Input::Cas {
                prev: "c1.1".into(),
                value: "c2.5".into(),
            },
        );
        assert_eq!(r.method, "PUT");
        assert_eq!(r.target, "/v2/keys/soak/k1?prevValue=c1.1");
        assert_eq!(r.form_fields()[0], ("value".into(), "c2.5".into()));
        let r = request(
            "/soak/k1",
            &Input::Cad {
                prev: "c1.1".into(),
            },
        );
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("DELETE", "/v2/keys/soak/k1?prevValue=c1.1")
        );
        let r = request("/soak/k1", &Input::Create { value: "v".into() });
        assert_eq!(r.target, "/v2/keys/soak/k1?prevExist=false");
    }
}

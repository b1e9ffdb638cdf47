//! Differential test: the same v2 requests against a real etcd (3.4/3.5 with
//! `--enable-v2`) and against [`Store`], comparing status and JSON after
//! normalising what legitimately differs (expiration timestamps).
//!
//! Steps: start etcd on free ports; read its starting index (its v2 store
//! already holds cluster metadata) and advance the store to the same index with
//! writes to a hidden key; replay each request on both sides; compare.
//! It spawns etcd and sleeps through a TTL (about 9 s); it runs in
//! `make check` and skips with a message when etcd is not installed.

use keel_testkit::free_port;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_kv::json::{error_json, event_json};
use keel_kv::{parse_index, parse_ttl, SetOptions, Store};
use serde_json::Value;

struct Etcd(Child);
impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, X-Etcd-Index, body).
fn http(port: u16, method: &str, target: &str) -> std::io::Result<(u16, u64, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let index = header("X-Etcd-Index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = if header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, index, body.trim_end().to_string()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The request as the store sees it: etcd's v2http form handling in miniature.
fn store_request(s: &mut Store, method: &str, target: &str, now: u64) -> (u16, String) {
    let path = target.strip_prefix("/v2/keys").unwrap();
    let (key, query) = path.split_once('?').unwrap_or((path, ""));
    let form: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let f = |k: &str| form.get(k).copied().unwrap_or("");
    let flag = |k: &str| f(k) == "true";
    let result: Result<_, Option<keel_kv::EtcdError>> = (|| match method {
        "GET" if flag("wait") => {
            let wait = parse_index(f("waitIndex"), "waitIndex")?.unwrap_or(0);
            // A watch with nothing to report waits; etcd's side times out.
            s.watch(key, flag("recursive"), wait)?.ok_or(None)
        }
        "GET" => Ok(s.get(key, flag("recursive"), flag("sorted"), now)?),
        "PUT" => {
            let opts = SetOptions {
                value: f("value").to_string(),
                dir: flag("dir"),
                ttl: parse_ttl(f("ttl"))?,
                prev_exist: form.get("prevExist").map(|v| *v == "true"),
                prev_value: form.get("prevValue").map(|v| v.to_string()),
                prev_index: parse_index(f("prevIndex"), "prevIndex")?,
                refresh: flag("refresh"),
            };
            Ok(s.set(key, &opts, now)?)
        }
        "POST" => Ok(s.create_in_order(key, f("value"), flag("dir"), parse_ttl(f("ttl"))?, now)?),
        "DELETE" => Ok(s.delete(
            key,
            flag("dir"),
            flag("recursive"),
            form.get("prevValue").copied(),
            parse_index(f("prevIndex"), "prevIndex")?,
            now,
        )?),
        _ => unreachable!(),
    })();
    match result {
        // etcd answers every watch with 200, whatever the event.
        Ok(e) if flag("wait") => (200, event_json(&e)),
        Ok(e) => (e.http_status(), event_json(&e)),
        Err(Some(e)) => (e.code.http_status(), error_json(&e)),
        Err(None) => (0, "\"<timed out: etcd waits>\"".into()),
    }
}

/// Expiration instants differ (etcd's clock vs. ours, ns vs. ms): blank them.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("expiration") {
                m.insert("expiration".into(), Value::String("<t>".into()));
            }
            m.values_mut().for_each(normalise);
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

const STEPS: &[(&str, &str)] = &[
    ("GET", "/v2/keys/missing"),
    ("PUT", "/v2/keys/a?value=1"),
    ("PUT", "/v2/keys/a?value=2"),
    ("GET", "/v2/keys/a"),
    ("PUT", "/v2/keys/a?value=3&prevExist=false"),
    ("PUT", "/v2/keys/b?value=1&prevExist=false"),
    ("PUT", "/v2/keys/c?value=1&prevExist=true"),
    ("PUT", "/v2/keys/b?value=2&prevExist=true"),
    ("PUT", "/v2/keys/b?value=3&prevValue=x"),
    ("PUT", "/v2/keys/b?value=3&prevValue=2"),
    ("PUT", "/v2/keys/b?value=4&prevIndex=1"),
    ("PUT", "/v2/keys/b?value=4&prevIndex=1&prevValue=zz"),
    ("PUT", "/v2/keys/d?dir=true"),
    ("PUT", "/v2/keys/d/e/f?value=x"),
    ("GET", "/v2/keys/d"),
    ("GET", "/v2/keys/d?recursive=true"),
    ("PUT", "/v2/keys/d?value=1"),
    ("PUT", "/v2/keys/a/x?value=1"),
    ("GET", "/v2/keys/a/x/y"),
    ("GET", "/v2/keys/nope/deeper"),
    ("DELETE", "/v2/keys/d"),
    ("DELETE", "/v2/keys/d?dir=true"),
    ("DELETE", "/v2/keys/a?prevValue=zz"),
    ("DELETE", "/v2/keys/a?prevValue=2"),
    ("DELETE", "/v2/keys/a"),
    ("POST", "/v2/keys/q?value=j1"),
    ("POST", "/v2/keys/q?value=j2"),
    ("GET", "/v2/keys/q?recursive=true&sorted=true"),
    ("PUT", "/v2/keys/?value=1"),
    ("DELETE", "/v2/keys/?recursive=true"),
    ("DELETE", "/v2/keys/d?recursive=true"),
    ("PUT", "/v2/keys/_h?value=1"),
    ("PUT", "/v2/keys/t?value=1&ttl=100"),
    ("PUT", "/v2/keys/t?ttl=50&refresh=true&prevExist=true"),
    ("PUT", "/v2/keys/t?value=1&ttl=abc"),
    ("PUT", "/v2/keys/t?value=1&prevIndex=x"),
    ("GET", "/v2/keys/?recursive=true&sorted=true"),
    ("GET", "/v2/keys/b?wait=true&waitIndex=1"),
    ("GET", "/v2/keys/?wait=true&recursive=true&waitIndex=12"),
    ("GET", "/v2/keys/d/e/f?wait=true&waitIndex=9"),
    ("GET", "/v2/keys/t?wait=true&waitIndex=14"),
    ("PUT", "/v2/keys/x?value=1&ttl=1"),
    ("SLEEP", ""),
    ("GET", "/v2/keys/x"),
    ("GET", "/v2/keys/x?wait=true&waitIndex=18"),
    ("GET", "/v2/keys/x?wait=true&waitIndex=19"),
    ("PUT", "/v2/keys/b?value=9&prevIndex=8&prevExist=true"),
    ("PUT", "/v2/keys/q?value=1&prevValue=j1"),
    ("PUT", "/v2/keys/q?dir=true&prevExist=true&ttl=30"),
    ("PUT", "/v2/keys/q?prevExist=true&value=v"),
    ("POST", "/v2/keys/b?value=1"),
    ("PUT", "/v2/keys/nope?ttl=5&refresh=true"),
    ("PUT", "/v2/keys/b?ttl=5&refresh=true"),
    ("PUT", "/v2/keys/b?value=1&ttl=5&refresh=true"),
    ("PUT", "/v2/keys/b?refresh=true"),
    ("DELETE", "/v2/keys/b?prevIndex=3"),
    ("DELETE", "/v2/keys/q?prevValue=x&recursive=true"),
    ("DELETE", "/v2/keys/b?dir=true"),
    // Unclean paths (`//`, `.`, `..`) never reach etcd's store: Go's ServeMux
    // answers them with a 301 to the clean path, which is what `normalize_key`
    // computes; the server layer will have to redirect the same way.
    ("PUT", "/v2/keys/e?dir=true&prevExist=false"),
    ("PUT", "/v2/keys/e?dir=true&prevExist=false"),
    ("GET", "/v2/keys/e"),
];

#[test]
fn same_answers_as_etcd() {
    if !keel_testkit::need_command("etcd", "etcd-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let _etcd = Etcd(
        Command::new("etcd")
            .args(["--enable-v2", "--name", "kvdiff", "--data-dir"])
            .arg(dir.path())
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("kvdiff={p}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // etcd answers client requests before its leader has written the cluster
    // version into the v2 store (one more index); `/version` reports
    // `etcdcluster: not_decided` until that write is applied, so the starting
    // index is read only after it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _, body)) = http(client, "GET", "/version") {
            if !body.contains("not_decided") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not decide its cluster version"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = loop {
        if let Ok((200, index, _)) = http(client, "GET", "/v2/keys/") {
            break index;
        }
        assert!(Instant::now() < deadline, "etcd did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Line the store's index up with etcd's (hidden key: never listed).
    let mut store = Store::new();
    let mut now = 1_700_000_000_000;
    for _ in 0..base {
        store
            .set(
                "/_pad",
                &SetOptions {
                    value: "p".into(),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
    }
    let rebase = |t: &str| {
        t.replace("waitIndex=", &format!("waitIndex=+{base}+"))
            .replace("prevIndex=1", &format!("prevIndex={}", base + 1))
    };
    let (mut same, mut diff) = (0, Vec::new());
    for (method, target) in STEPS {
        if *method == "SLEEP" {
            std::thread::sleep(Duration::from_millis(2_500));
            now += 2_500;
            store.expire(now);
            continue;
        }
        let mut target = rebase(target);
        if let Some((head, rest)) = target.split_once("waitIndex=+") {
            let (b, rest) = rest.split_once('+').unwrap();
            let n: u64 = rest.parse().unwrap();
            target = format!("{head}waitIndex={}", b.parse::<u64>().unwrap() + n);
        }
        let (es, _, ebody) =
            http(client, method, &target).unwrap_or((0, 0, "<timed out: etcd waits>".into()));
        let (ss, sbody) = store_request(&mut store, method, &target, now);
        let mut ev: Value = serde_json::from_str(&ebody).unwrap_or(Value::String(ebody.clone()));
        let mut sv: Value = serde_json::from_str(&sbody).unwrap();
        normalise(&mut ev);
        normalise(&mut sv);
        if es == ss && ev == sv {
            same += 1;
        } else {
            diff.push(format!(
                "{method} {target}\n  etcd  {es} {ebody}\n  store {ss} {sbody}"
            ));
        }
    }
    println!("{same} of {} requests matched", same + diff.len());
    for d in &diff {
        println!("{d}");
    }
    assert!(diff.is_empty(), "{} requests differ from etcd", diff.len());
}

//! Debian's etcdctl (API v2) against the server, as a user runs it: exact
//! output lines and exit codes.
//!
//! The server is keel-etcd (this package's binary, or the one named by
//! `KEEL_ETCD_BIN`); with `KVDIFF_SELF=1` it is Debian's etcd.
//! Expected lines are templates: `{i+N}` is the server's starting index + N
//! (each write below adds one), `{k+N}` the same as a 20-digit in-order key,
//! `<id>` the member id from `/v2/members`, `<client-url>` and `<peer-url>` the
//! server's URLs. It skips with a message when etcd or etcdctl is missing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use keel_kvdiff::http::{self, Request};
use keel_kvdiff::script::Vars;
use keel_kvdiff::server::{ETCDCTL_BIN, ETCD_BIN};
use keel_kvdiff::{expand, Server};

/// One etcdctl run and what the user must see.
struct Case {
    args: &'static [&'static str],
    code: i32,
    stdout: &'static [&'static str],
    stderr: &'static [&'static str],
}

const fn case(
    args: &'static [&'static str],
    code: i32,
    stdout: &'static [&'static str],
    stderr: &'static [&'static str],
) -> Case {
    Case {
        args,
        code,
        stdout,
        stderr,
    }
}

/// Runs before the watches; the comment on each write is its index.
const CASES: &[Case] = &[
    case(
        &["get", "/missing"],
        4,
        &[],
        &["Error:  100: Key not found (/missing) [{i}]"],
    ),
    case(&["mk", "/m1", "v1"], 0, &["v1"], &[]), // i+1
    case(
        &["mk", "/m1", "v2"],
        4,
        &[],
        &["Error:  105: Key already exists (/m1) [{i+1}]"],
    ),
    case(&["set", "/m1", "v3"], 0, &["v3"], &[]), // i+2
    case(&["get", "/m1"], 0, &["v3"], &[]),
    case(&["update", "/m1", "v4"], 0, &["v4"], &[]), // i+3
    case(
        &["update", "/nope", "x"],
        4,
        &[],
        &["Error:  100: Key not found (/nope) [{i+3}]"],
    ),
    case(&["mkdir", "/dd"], 0, &[], &[]), // i+4
    case(
        &["mkdir", "/dd"],
        4,
        &[],
        &["Error:  105: Key already exists (/dd) [{i+4}]"],
    ),
    case(&["set", "/dd/k", "x"], 0, &["x"], &[]), // i+5
    case(
        &["rmdir", "/dd"],
        4,
        &[],
        &["Error:  108: Directory not empty (/dd) [{i+5}]"],
    ),
    case(
        &["rm", "/dd"],
        4,
        &[],
        &["Error:  102: Not a file (/dd) [{i+5}]"],
    ),
    case(&["get", "/dd"], 1, &[], &["/dd: is a directory"]),
    case(
        &["ls", "--recursive", "--sort", "/"],
        0,
        &["/dd", "/dd/k", "/m1"],
        &[],
    ),
    case(&["ls", "--sort", "-p", "/"], 0, &["/dd/", "/m1"], &[]),
    case(&["ls", "--recursive", "/dd"], 0, &["/dd/k"], &[]),
    case(
        &["ls", "/missing"],
        4,
        &[],
        &["Error:  100: Key not found (/missing) [{i+5}]"],
    ),
    case(&["rm", "--recursive", "/dd"], 0, &[], &[]), // i+6
    case(&["mkdir", "/empty"], 0, &[], &[]),          // i+7
    case(&["rmdir", "/empty"], 0, &[], &[]),          // i+8
    // rmdir deletes a key with dir=true, which etcd allows on a value.
    case(&["rmdir", "/m1"], 0, &["PrevNode.Value: v4"], &[]), // i+9
    case(&["set", "--ttl", "100", "/tt", "x"], 0, &["x"], &[]), // i+10
    case(&["get", "/tt"], 0, &["x"], &[]),
    case(&["mk", "--in-order", "/queue", "job1"], 0, &["job1"], &[]), // i+11
    case(&["mk", "--in-order", "/queue", "job2"], 0, &["job2"], &[]), // i+12
    case(
        &["ls", "--sort", "/queue"],
        0,
        &["/queue/{k+11}", "/queue/{k+12}"],
        &[],
    ),
    case(&["set", "/m2", "v"], 0, &["v"], &[]), // i+13
    case(
        &["-o", "extended", "get", "/m2"],
        0,
        &[
            "Key: /m2",
            "Created-Index: {i+13}",
            "Modified-Index: {i+13}",
            "TTL: 0",
            "Index: {i+13}",
            "",
            "v",
        ],
        &[],
    ),
    case(
        &["-o", "json", "get", "/m2"],
        0,
        &[
            r#"{"action":"get","node":{"key":"/m2","value":"v","nodes":null,"createdIndex":{i+13},"modifiedIndex":{i+13}},"prevNode":null}"#,
        ],
        &[],
    ),
    case(&["get", "--quorum", "/m2"], 0, &["v"], &[]),
    case(
        &["set", "--swap-with-value", "wrong", "/m2", "x"],
        4,
        &[],
        &["Error:  101: Compare failed ([wrong != v]) [{i+13}]"],
    ),
    case(
        &["set", "--swap-with-index", "{i+12}", "/m2", "x"],
        4,
        &[],
        &["Error:  101: Compare failed ([{i+12} != {i+13}]) [{i+13}]"],
    ),
    case(
        &["set", "--swap-with-value", "v", "/m2", "w"],
        0,
        &["w"],
        &[],
    ), // i+14
    case(
        &["set", "--swap-with-index", "{i+14}", "/m2", "y"],
        0,
        &["y"],
        &[],
    ), // i+15
    case(&["set", "/sp", "hello world ✓"], 0, &["hello world ✓"], &[]), // i+16
    case(&["get", "/sp"], 0, &["hello world ✓"], &[]),
    case(
        &["rm", "--with-value", "nope", "/sp"],
        4,
        &[],
        &["Error:  101: Compare failed ([nope != hello world ✓]) [{i+16}]"],
    ),
    case(&["rm", "/sp"], 0, &["PrevNode.Value: hello world ✓"], &[]), // i+17
    case(
        &["rm", "/sp"],
        4,
        &[],
        &["Error:  100: Key not found (/sp) [{i+17}]"],
    ),
    case(&["setdir", "/sd"], 0, &[], &[]), // i+18
    case(&["updatedir", "--ttl", "100", "/sd"], 0, &[], &[]), // i+19
    case(&["rm", "--dir", "/sd"], 0, &[], &[]), // i+20
    case(
        &["member", "list"],
        0,
        &["<id>: name=kvdiff peerURLs=<peer-url> clientURLs=<client-url> isLeader=true"],
        &[],
    ),
    case(
        &["cluster-health"],
        0,
        &[
            "member <id> is healthy: got healthy result from <client-url>",
            "cluster is healthy",
        ],
        &[],
    ),
];

struct Ctl {
    server: Server,
    vars: Vars,
    id: String,
}

impl Ctl {
    fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(ETCDCTL_BIN);
        c.env("ETCDCTL_API", "2")
            .arg("--endpoints")
            .arg(self.server.client_url())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn args(&self, args: &[&str]) -> Vec<String> {
        args.iter().map(|a| expand(a, self.vars)).collect()
    }

    fn lines(&self, expected: &[&str]) -> Vec<String> {
        expected
            .iter()
            .map(|l| {
                expand(l, self.vars)
                    .replace("<id>", &self.id)
                    .replace("<client-url>", &self.server.client_url())
                    .replace("<peer-url>", &self.server.peer_url())
            })
            .collect()
    }

    /// Checks one finished run; returns a description of what differs.
    fn check(
        &self,
        what: &str,
        out: &Output,
        code: i32,
        stdout: &[&str],
        stderr: &[&str],
    ) -> Option<String> {
        let got_out: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        let got_err: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(String::from)
            .collect();
        let got_code = out.status.code().unwrap_or(-1);
        let (want_out, want_err) = (self.lines(stdout), self.lines(stderr));
        (got_code != code || got_out != want_out || got_err != want_err).then(|| {
            format!(
                "etcdctl {what}\n  exit   {got_code} (want {code})\n  stdout {got_out:?}\n  want   {want_out:?}\n  stderr {got_err:?}\n  want   {want_err:?}"
            )
        })
    }

    fn run(&self, c: &Case) -> Option<String> {
        let args = self.args(c.args);
        let out = self.command(&args).output().expect("run etcdctl");
        self.check(&args.join(" "), &out, c.code, c.stdout, c.stderr)
    }

    /// Starts `etcdctl watch …` and waits until the server has the watcher
    /// (etcd counts them in /v2/stats/store; a server without that count
    /// gets a fixed second).
    fn start_watch(&self, args: &[&str]) -> (String, Child) {
        let args = self.args(args);
        let child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn etcdctl watch");
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && self.watchers() < 1 {
            thread::sleep(Duration::from_millis(20));
        }
        (args.join(" "), child)
    }

    fn watchers(&self) -> u64 {
        http::send(self.server.addr(), &Request::new("GET", "/v2/stats/store"))
            .ok()
            .and_then(|r| r.json())
            .and_then(|v| v["watchers"].as_u64())
            .unwrap_or(0)
    }

    /// Waits (bounded) for a watch to exit and checks what it printed.
    fn finish_watch(&self, (what, mut child): (String, Child), stdout: &[&str]) -> Option<String> {
        // Past the deadline it is killed: its exit status then fails the
        // check below, with what it printed.
        let status = match keel_testkit::exited_within(&mut child, Duration::from_secs(5)) {
            Some(s) => s,
            None => {
                let _ = child.kill();
                child.wait().expect("reap etcdctl")
            }
        };
        let (mut o, mut e) = (Vec::new(), Vec::new());
        child.stdout.take().map(|mut s| s.read_to_end(&mut o));
        child.stderr.take().map(|mut s| s.read_to_end(&mut e));
        let out = Output {
            status,
            stdout: o,
            stderr: e,
        };
        self.check(&what, &out, 0, stdout, &[])
    }
}

fn member_id(server: &Server) -> String {
    let r =
        http::send(server.addr(), &Request::new("GET", "/v2/members")).expect("GET /v2/members");
    r.json().expect("members JSON")["members"][0]["id"]
        .as_str()
        .expect("a member id")
        .to_string()
}

#[test]
fn etcdctl_v2_sees_what_it_sees_on_etcd() {
    let other = keel_under_test();
    let bin = other.clone().unwrap_or_else(|| PathBuf::from(ETCD_BIN));
    for (need, package) in [
        (Path::new(ETCDCTL_BIN), "etcd-client"),
        (&bin, "etcd-server"),
    ] {
        if !need.is_file() {
            keel_testkit::skip(format!(
                "{} is not installed (Debian package {package})",
                need.display()
            ));
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = Server::command(&bin, tmp.path())
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let start = server.current_index().unwrap_or_else(|e| panic!("{e}"));
    let ctl = Ctl {
        id: member_id(&server),
        vars: Vars { start, last: start },
        server,
    };

    let mut failures: Vec<String> = CASES.iter().filter_map(|c| ctl.run(c)).collect();

    // Watches: each is started, then completed by a set (index in comments).
    let w = ctl.start_watch(&["watch", "/wk"]);
    failures.extend(ctl.run(&case(&["set", "/wk", "hello"], 0, &["hello"], &[]))); // i+21
    failures.extend(ctl.finish_watch(w, &["hello"]));

    let w = ctl.start_watch(&["watch", "--recursive", "/wd"]);
    failures.extend(ctl.run(&case(&["set", "/wd/x", "hi"], 0, &["hi"], &[]))); // i+22
    failures.extend(ctl.finish_watch(w, &["[set] /wd/x", "hi"]));

    let w = ctl.start_watch(&["-o", "extended", "watch", "/wk"]);
    failures.extend(ctl.run(&case(&["set", "/wk", "hello2"], 0, &["hello2"], &[]))); // i+23
    failures.extend(ctl.finish_watch(
        w,
        &[
            "Key: /wk",
            "Created-Index: {i+23}",
            "Modified-Index: {i+23}",
            "PrevNode.Value: hello",
            "TTL: 0",
            "Index: {i+22}",
            "",
            "hello2",
        ],
    ));

    // --after-index N waits from N+1: the event is already in the history.
    let w = ctl.start_watch(&["watch", "--after-index", "{i+20}", "/wk"]);
    failures.extend(ctl.finish_watch(w, &["hello"]));

    println!(
        "etcdctl against {}: {} runs checked, {} failures",
        bin.display(),
        CASES.len() + 7,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// keel-etcd, unless `KVDIFF_SELF=1` asks for etcd against itself.
fn keel_under_test() -> Option<PathBuf> {
    keel_kvdiff::keel_under_test(env!("CARGO_BIN_EXE_keel-etcd"))
}

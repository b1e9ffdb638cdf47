//! keel-etcd started the way scripts written for etcd start it (python-etcd's
//! test suite, etcd 2 era docs): Go's single-dash flags, `-flag=value`,
//! a flag given twice (the last wins) and a deprecated etcd 0.4 flag. The
//! member serves on the port of the last value, and not on the first; an
//! unknown flag stops it with a message naming the flag.

use keel_testkit::{free_port, until};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use keel_kvdiff::http::{send, Request, Response};

const BIN: &str = env!("CARGO_BIN_EXE_keel-etcd");

#[test]
fn go_style_flags_and_the_last_of_a_repeated_one_are_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, last, peer) = (free_port(), free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let log = tmp.path().join("member.log");
    let mut child = Command::new(BIN)
        .args(["-name", "go"])
        .arg(format!("-data-dir={}", tmp.path().join("data").display()))
        .args(["-listen-client-urls", &url(first)])
        .arg(format!("--listen-client-urls={}", url(last)))
        .args(["-addr", &format!("127.0.0.1:{last}")])
        .args(["-listen-peer-urls", &url(peer)])
        .arg(format!("-initial-advertise-peer-urls={}", url(peer)))
        .args(["-initial-cluster", &format!("go={}", url(peer))])
        .args(["-initial-cluster-state", "new"])
        .args(["-client-cert-auth=false", "-enable-v2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("keel-etcd");
    let addr: SocketAddr = ([127, 0, 0, 1], last).into();
    let version = until("serving on the last port", 20, || {
        let r = send(addr, &Request::new("GET", "/version")).ok()?;
        (r.status == 200).then_some(r)
    });
    assert!(version.text().contains("etcdserver"), "{}", version.text());
    let put: Response = send(addr, &Request::form("PUT", "/v2/keys/k", "value=v")).unwrap();
    assert_eq!(put.status, 201, "{}", put.text());
    let got = send(addr, &Request::new("GET", "/v2/keys/k")).unwrap();
    assert_eq!(got.json().unwrap()["node"]["value"], "v");
    // -addr (etcd 0.4) is advertise-client-urls.
    let machines = send(addr, &Request::new("GET", "/v2/machines")).unwrap();
    assert_eq!(machines.text(), url(last));
    assert!(
        TcpStream::connect(("127.0.0.1", first)).is_err(),
        "the first --listen-client-urls was replaced"
    );
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(
            "keel-etcd: -addr is deprecated: taken as advertise-client-urls (as http://ADDRESS); use --advertise-client-urls instead"
        ),
        "{log}"
    );
}

#[test]
fn an_unknown_flag_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(tmp.path())
        .args(["-name", "x", "-heartbeat-interval", "100"])
        .stdin(Stdio::null())
        .output()
        .expect("keel-etcd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown flag -heartbeat-interval"),
        "stderr: {err}"
    );
    assert!(!tmp.path().join("default.etcd").exists(), "nothing started");
}

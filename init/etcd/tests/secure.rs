//! What a keel-etcd member opens, and to whom, seen with curl: a lone
//! member opens no peer port until a second member is added; the CORS
//! header is sent only as `--cors` says; a client port beyond loopback
//! without client-cert-auth is warned about; membership changes need a
//! client certificate, or a loopback caller on plain http. Every refusal
//! has its control: the same request allowed where it should be.

use keel_testkit::{free_port, until};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use keel_tls::testpki::TestPki;

const BIN: &str = env!("CARGO_BIN_EXE_keel-etcd");

/// A lone member on loopback ports, with `extra` flags.
struct Member {
    client: u16,
    peer: u16,
    log: PathBuf,
    child: Child,
    scheme: &'static str,
}

impl Member {
    fn start(root: &Path, name: &str, client_host: &str, extra: &[&str]) -> Member {
        let (client, peer) = (free_port(), free_port());
        let scheme = if extra.contains(&"--cert-file") {
            "https"
        } else {
            "http"
        };
        let log = root.join(format!("{name}.log"));
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(BIN)
            .args(["--name", name])
            .arg("--data-dir")
            .arg(root.join(name))
            .args([
                "--listen-client-urls",
                &format!("{scheme}://{client_host}:{client}"),
                "--advertise-client-urls",
                &format!("{scheme}://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("keel-etcd");
        let m = Member {
            client,
            peer,
            log,
            child,
            scheme,
        };
        until("the client port to answer", 20, || {
            TcpStream::connect(("127.0.0.1", client)).ok().map(|_| ())
        });
        m
    }

    fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.client)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn peer_open(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.peer)).is_ok()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer as curl saw it: status, lower-cased header lines, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -i` with `args`; the CA and a client certificate when given.
fn curl(pki: Option<&TestPki>, cert: bool, args: &[&str]) -> Answer {
    let mut c = Command::new("curl");
    c.args(["-sS", "-i", "--max-time", "10"]);
    if let Some(pki) = pki {
        c.arg("--cacert").arg(&pki.ca);
        if cert {
            c.arg("--cert")
                .arg(&pki.client_cert)
                .arg("--key")
                .arg(&pki.client_key);
        }
    }
    let out = c.args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "curl {args:?}: no answer: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn add_member(m: &Member, pki: Option<&TestPki>, cert: bool, peer: u16) -> Answer {
    curl(
        pki,
        cert,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!(r#"{{"peerURLs":["http://127.0.0.1:{peer}"]}}"#),
            &m.url("/v2/members"),
        ],
    )
}

#[test]
fn cors_headers_only_as_configured_and_open_ports_are_warned_about() {
    if !keel_testkit::need_command("curl", "curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let plain = Member::start(tmp.path(), "plain", "127.0.0.1", &[]);
    let listed = Member::start(
        tmp.path(),
        "listed",
        "127.0.0.1",
        &["--cors", "https://a.example,https://b.example"],
    );
    let any = Member::start(tmp.path(), "any", "0.0.0.0", &["--cors", "*"]);
    let get = |m: &Member, origin: &str| {
        let a = curl(
            None,
            false,
            &["-H", &format!("Origin: {origin}"), &m.url("/v2/keys/")],
        );
        assert_eq!(a.status, 200, "{}", a.body);
        a.header("access-control-allow-origin").map(str::to_string)
    };
    // No `cors`: no header for any page.
    assert_eq!(get(&plain, "https://a.example"), None);
    // Listed origins get themselves back; others nothing.
    assert_eq!(
        get(&listed, "https://b.example").as_deref(),
        Some("https://b.example")
    );
    assert_eq!(get(&listed, "https://evil.example"), None);
    // `*`: as etcd's default.
    assert_eq!(get(&any, "https://evil.example").as_deref(), Some("*"));

    // The member on 0.0.0.0 warns, once; those on loopback do not.
    let warning = format!(
        "warning: kv: client port 0.0.0.0:{} listens beyond loopback without client-cert-auth",
        any.client
    );
    until("the warning in the log", 10, || {
        any.log().contains(&warning).then_some(())
    });
    assert_eq!(any.log().matches("warning:").count(), 1, "{}", any.log());
    assert!(!plain.log().contains("warning"), "{}", plain.log());

    // Lone members opened no peer port (their client port answers: the
    // control).
    assert!(!plain.peer_open() && !listed.peer_open() && !any.peer_open());
}

#[test]
fn membership_changes_need_a_certificate_or_a_loopback_caller() {
    if !keel_testkit::need_command("curl", "curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(tmp.path(), &["127.0.0.1"]).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let (cert, key, ca) = (p(&pki.server_cert), p(&pki.server_key), p(&pki.ca));

    // Plain http from loopback: allowed. The lone member's peer port opens
    // once the second member is in.
    let plain = Member::start(tmp.path(), "plain", "127.0.0.1", &[]);
    assert!(!plain.peer_open(), "a lone member has no peer port");
    let added = add_member(&plain, None, false, free_port());
    assert_eq!(added.status, 201, "{}", added.body);
    until("the peer port to open", 10, || {
        plain.peer_open().then_some(())
    });
    until("the peer warning in the log", 10, || {
        plain
            .log()
            .contains(&format!(
                "warning: kv: peer port 127.0.0.1:{} has no TLS",
                plain.peer
            ))
            .then_some(())
    });
    // A removal passes the check too: it fails only for want of the member.
    let removed = curl(
        None,
        false,
        &["-X", "DELETE", &plain.url("/v2/members/1234")],
    );
    assert_eq!(removed.status, 404, "{}", removed.body);

    // TLS without client-cert-auth: no certificate, so no change, even from
    // loopback; reads still work.
    let tls = Member::start(
        tmp.path(),
        "tls",
        "127.0.0.1",
        &["--cert-file", &cert, "--key-file", &key],
    );
    let refused = add_member(&tls, Some(&pki), false, free_port());
    assert_eq!(refused.status, 403, "{}", refused.body);
    let v: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(
        v["message"],
        "membership changes need a client certificate (https with client-cert-auth) or a caller on loopback"
    );
    let refused = curl(
        Some(&pki),
        false,
        &["-X", "DELETE", &tls.url("/v2/members/1234")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    let list = curl(Some(&pki), false, &[&tls.url("/v2/members")]);
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(!tls.peer_open(), "nothing was added");

    // TLS with client-cert-auth: the CA's client certificate may.
    let auth = Member::start(
        tmp.path(),
        "auth",
        "127.0.0.1",
        &[
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
        ],
    );
    let added = add_member(&auth, Some(&pki), true, free_port());
    assert_eq!(added.status, 201, "{}", added.body);
}

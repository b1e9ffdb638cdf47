//! The API over TLS with client certificates, on a real loopback port with
//! the test PKI, served by `serve_tcp` on one single-threaded runtime as in
//! PID 1: keel's client and curl with the CA's client certificate get
//! answers; no certificate, a certificate from another CA and plain HTTP
//! get none; a client that never says a word holds up nobody.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::Method;
use keel_api::{Accepted, Client, ClientError, Endpoint, Status};
use keel_tls::testpki::TestPki;
use keel_tls::{ClientFiles, ServerFiles, TlsAcceptor};

struct Server {
    addr: SocketAddr,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

/// A TLS server requiring client certificates, on its own thread (with
/// the test PKI).
fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(dir.path(), &["127.0.0.1", "localhost"]).unwrap();
    let config = keel_tls::server_config(&ServerFiles {
        cert: ("api.cert_file", pki.server_cert.clone()),
        key: ("api.key_file", pki.server_key.clone()),
        client_ca: Some(("api.client_ca_file", pki.ca.clone())),
    })
    .unwrap();
    let addr = keel_api::fake::spawn_tcp(TlsAcceptor::from(config)).unwrap();
    Server {
        addr,
        pki,
        _dir: dir,
    }
}

impl Server {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// A client with the CA and, when given, a certificate and key.
    fn client(&self, identity: Option<(&Path, &Path)>) -> Client {
        let mut c = Client::new(Endpoint::parse(&self.url()).unwrap())
            .with_tls(&ClientFiles {
                ca: ("cacert", self.pki.ca.clone()),
                identity: identity
                    .map(|(c, k)| (("cert", c.to_path_buf()), ("key", k.to_path_buf()))),
            })
            .unwrap();
        c.timeout = Duration::from_secs(5);
        c
    }

    fn good(&self) -> Client {
        self.client(Some((&self.pki.client_cert, &self.pki.client_key)))
    }

    fn status(&self, c: &Client) -> Result<Status, ClientError> {
        c.call_blocking(Method::GET, "/v1/status")
    }

    /// The CA's client is answered (the server's loop is alive).
    fn assert_serves(&self) {
        let s = self.status(&self.good()).unwrap();
        assert_eq!(s.hostname, "fake");
    }
}

#[test]
fn the_cas_client_is_answered() {
    let srv = server();
    srv.assert_serves();
    let a: Accepted = srv
        .good()
        .call_blocking(Method::POST, "/v1/reboot")
        .unwrap();
    assert_eq!(a.action, "reboot");
    // By name: the certificate names localhost too.
    let mut c = srv.good();
    c.endpoint = Endpoint::parse(&format!("https://localhost:{}", srv.addr.port())).unwrap();
    assert_eq!(srv.status(&c).unwrap().hostname, "fake");
}

#[test]
fn no_certificate_or_another_cas_is_refused() {
    let srv = server();
    let e = srv.status(&srv.client(None)).unwrap_err().to_string();
    assert!(e.contains("fatal alert: CertificateRequired"), "{e}");
    let rogue = srv.client(Some((&srv.pki.rogue_cert, &srv.pki.rogue_key)));
    let e = srv.status(&rogue).unwrap_err().to_string();
    assert!(e.contains("fatal alert: UnknownCA"), "{e}");
    srv.assert_serves();
}

#[test]
fn plain_http_to_the_tls_port_gets_no_answer() {
    let srv = server();
    let mut plain = Client::new(Endpoint::Tcp(srv.addr));
    plain.timeout = Duration::from_secs(5);
    let e = srv.status(&plain).unwrap_err();
    assert!(matches!(e, ClientError::Http { .. }), "{e}");
    // An https endpoint without a CA is refused by the client itself.
    let mut no_ca = Client::new(Endpoint::parse(&srv.url()).unwrap());
    no_ca.timeout = Duration::from_secs(5);
    let e = srv.status(&no_ca).unwrap_err();
    assert!(matches!(e, ClientError::NoCa { .. }), "{e}");
    srv.assert_serves();
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_by_the_client() {
    let srv = server();
    let mut c = Client::new(Endpoint::parse(&srv.url()).unwrap())
        .with_tls(&ClientFiles {
            ca: ("cacert", srv.pki.rogue_cert.clone()),
            identity: Some((
                ("cert", srv.pki.client_cert.clone()),
                ("key", srv.pki.client_key.clone()),
            )),
        })
        .unwrap();
    c.timeout = Duration::from_secs(5);
    let e = srv.status(&c).unwrap_err();
    assert!(matches!(e, ClientError::Handshake { .. }), "{e}");
    // Files that are not there are named with their setting.
    let e = Client::new(Endpoint::parse(&srv.url()).unwrap())
        .with_tls(&ClientFiles {
            ca: ("--cacert", srv.pki.ca.with_extension("missing")),
            identity: None,
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--cacert ") && e.contains("ca.missing"),
        "{e}"
    );
}

#[test]
fn silent_clients_hold_up_nobody() {
    let srv = server();
    // Connections that never start a handshake, and one that stops
    // half-way through a record.
    let silent: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    let mut half = TcpStream::connect(srv.addr).unwrap();
    std::io::Write::write_all(&mut half, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let t = Instant::now();
    srv.assert_serves();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The server gives up on them at the handshake deadline.
    let mut s = &silent[0];
    s.set_read_timeout(Some(keel_tls::HANDSHAKE_TIMEOUT + Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let t = Instant::now();
    let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
    assert!(
        closed && t.elapsed() < keel_tls::HANDSHAKE_TIMEOUT + Duration::from_secs(2),
        "still open after {:?}",
        t.elapsed()
    );
    srv.assert_serves();
}

fn curl(args: &[&str]) -> Option<(bool, String, String)> {
    match Command::new("curl").args(args).output() {
        Ok(o) => Some((
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("run curl: {e}"),
    }
}

#[test]
fn curl_with_the_cas_client_certificate() {
    let srv = server();
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let (ca, cert, key) = (
        p(&srv.pki.ca),
        p(&srv.pki.client_cert),
        p(&srv.pki.client_key),
    );
    let url = format!("{}/v1/status", srv.url());
    let common = ["-sS", "--max-time", "10", "--cacert", ca.as_str()];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = common.to_vec();
        a.extend_from_slice(extra);
        curl(&a)
    };
    let Some((ok, out, err)) = with(&["--cert", &cert, "--key", &key, "--fail", &url]) else {
        keel_testkit::skip("curl is not installed (Debian package curl)");
        return;
    };
    assert!(ok, "curl with the client certificate: {err}");
    let s: Status = serde_json::from_str(&out).unwrap();
    assert_eq!(s.hostname, "fake");

    let (ok, out, err) = with(&["--fail", &url]).unwrap();
    assert!(!ok && out.is_empty(), "curl without a certificate: {out}");
    eprintln!("without a certificate, curl says: {err}");
    let (rc, rk) = (p(&srv.pki.rogue_cert), p(&srv.pki.rogue_key));
    let (ok, out, _) = with(&["--cert", &rc, "--key", &rk, "--fail", &url]).unwrap();
    assert!(
        !ok && out.is_empty(),
        "curl with the rogue certificate: {out}"
    );
    let plain = format!("http://127.0.0.1:{}/v1/status", srv.addr.port());
    let (ok, out, _) = with(&["--fail", &plain]).unwrap();
    assert!(!ok && out.is_empty(), "curl over plain http: {out}");
    srv.assert_serves();
}

/// One raw request through curl with `cert`; returns (HTTP status, body).
fn curl_status(srv: &Server, cert: (&Path, &Path), extra: &[&str], path: &str) -> (u16, String) {
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let (ca, c, k) = (p(&srv.pki.ca), p(cert.0), p(cert.1));
    let url = format!("{}{path}", srv.url());
    let mut a = vec![
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &ca,
        "--cert",
        &c,
        "--key",
        &k,
        "-w",
        "\n%{http_code}",
    ];
    a.extend_from_slice(extra);
    a.push(&url);
    let (ok, out, err) = curl(&a).expect("curl");
    assert!(ok, "curl {a:?}: {err}");
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

#[test]
fn the_reader_role_reads_and_may_change_nothing() {
    let srv = server();
    let reader = srv.client(Some((&srv.pki.reader_cert, &srv.pki.reader_key)));
    assert_eq!(srv.status(&reader).unwrap().hostname, "fake");
    for path in ["/v1/reboot", "/v1/poweroff", "/v1/containers/web/stop"] {
        let (st, body) = reader
            .request_blocking(Method::POST, path, Vec::new())
            .unwrap();
        assert_eq!(st.as_u16(), 403, "{path}: {body:?}");
        let e: keel_api::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(e.error, "forbidden");
        assert!(
            e.message.contains("keel:reader") && e.message.contains("needs keel:admin"),
            "{}",
            e.message
        );
    }
    let (st, _) = reader
        .request_blocking(
            Method::POST,
            "/v1/config?dry_run=1",
            b"#cloud-config\n".to_vec(),
        )
        .unwrap();
    assert_eq!(st.as_u16(), 403);
    // The control: the admin certificate does the same POSTs.
    let a: Accepted = srv
        .good()
        .call_blocking(Method::POST, "/v1/reboot")
        .unwrap();
    assert_eq!(a.action, "reboot");
    let (st, _) = srv
        .good()
        .request_blocking(
            Method::POST,
            "/v1/config?dry_run=1",
            b"#cloud-config\n".to_vec(),
        )
        .unwrap();
    assert_eq!(st.as_u16(), 200);
}

#[test]
fn a_certificate_without_a_role_may_do_nothing() {
    let srv = server();
    let nobody = srv.client(Some((&srv.pki.norole_cert, &srv.pki.norole_key)));
    let (st, body) = nobody
        .request_blocking(Method::GET, "/v1/status", Vec::new())
        .unwrap();
    assert_eq!(st.as_u16(), 403);
    let e: keel_api::ErrorBody = serde_json::from_slice(&body).unwrap();
    assert!(e.message.contains("names no keel role"), "{}", e.message);
    srv.assert_serves();
}

#[test]
fn browsers_cannot_drive_the_api() {
    let srv = server();
    if !keel_testkit::need_command("curl", "curl") {
        return;
    }
    let admin = (srv.pki.client_cert.as_path(), srv.pki.client_key.as_path());
    // An Origin header: refused, whatever the method.
    let (st, body) = curl_status(
        &srv,
        admin,
        &["-X", "POST", "-H", "Origin: https://evil.example"],
        "/v1/reboot",
    );
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("origin_refused"), "{body}");
    let (st, _) = curl_status(
        &srv,
        admin,
        &["-H", "Origin: https://evil.example"],
        "/v1/status",
    );
    assert_eq!(st, 403);
    // A body a form could send (text/plain, form-urlencoded): 415.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let (st, body) = curl_status(
            &srv,
            admin,
            &[
                "-H",
                &format!("Content-Type: {ct}"),
                "--data-binary",
                "#cloud-config\n",
            ],
            "/v1/config?dry_run=1",
        );
        assert_eq!(st, 415, "{ct}: {body}");
        assert!(body.contains("unsupported_media_type"), "{body}");
    }
    let (st, _) = curl_status(
        &srv,
        admin,
        &["-H", "Content-Type: text/plain", "--data-binary", "{}"],
        "/v1/reboot",
    );
    assert_eq!(st, 415);
    // Nothing happened: the fake node's first reboot request is still
    // accepted (it refuses the second).
    let a: Accepted = srv
        .good()
        .call_blocking(Method::POST, "/v1/reboot")
        .unwrap();
    assert_eq!(a.action, "reboot");
    // The control: the same config with its own type is answered.
    let (st, body) = curl_status(
        &srv,
        admin,
        &[
            "-H",
            "Content-Type: application/yaml",
            "--data-binary",
            "#cloud-config\n",
        ],
        "/v1/config?dry_run=1",
    );
    assert_eq!(st, 200, "{body}");
}

/// Over TCP, `POST /v1/config` asks the node to keep its `api:` (a config
/// without one would close this very port at the next boot) unless the
/// caller says `?close_api=1`; the node's answer is keel's (see
/// keel's config tests), the fake echoes what it was asked.
#[test]
fn a_config_over_tcp_must_keep_the_api_unless_told_otherwise() {
    let srv = server();
    let ask = |path: &str| {
        let (st, body) = srv
            .good()
            .request_blocking(Method::POST, path, b"#cloud-config\n".to_vec())
            .unwrap();
        assert_eq!(st.as_u16(), 200, "{path}");
        let a: keel_api::ConfigApplied = serde_json::from_slice(&body).unwrap();
        a.changed
    };
    assert_eq!(ask("/v1/config"), ["keep_api=true"]);
    assert_eq!(ask("/v1/config?dry_run=1"), ["keep_api=true"]);
    assert_eq!(ask("/v1/config?close_api=1"), ["keep_api=false"]);
    assert_eq!(
        ask("/v1/config?dry_run=1&close_api=true"),
        ["keep_api=false"]
    );
}

//! VM tests of the management API over TLS. The cloud-config's
//! `write_files` puts the test PKI's PEM files under /etc/keel and `api:`
//! points at them; from the host, through the forwarded port, curl and
//! keelctl with the CA's client certificate get /v1/status over https, and
//! without one (or over plain http) get nothing. Files that cannot be used
//! leave the TCP port closed while the node and its unix socket stay up.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use keel_tls::testpki::TestPki;
use keel_vmtests::{release_bin, Scratch, Vm, VmConfig};

/// `write_files` entries for the server's files, plus `api:`; `key` is
/// the file written as the server's key.
fn config(pki: &TestPki, key: &Path) -> String {
    let file = |path: &str, src: &Path, mode: &str| {
        let pem = std::fs::read_to_string(src).unwrap();
        let body: String = pem.lines().map(|l| format!("      {l}\n")).collect();
        format!("  - path: {path}\n    permissions: {mode}\n    content: |\n{body}")
    };
    format!(
        "#cloud-config\nhostname: tls-node\nwrite_files:\n{}{}{}api:\n  cert_file: /etc/keel/api.pem\n  key_file: /etc/keel/api-key.pem\n  client_ca_file: /etc/keel/ca.pem\n",
        file("/etc/keel/api.pem", &pki.server_cert, "0644"),
        file("/etc/keel/api-key.pem", key, "0600"),
        file("/etc/keel/ca.pem", &pki.ca, "0644"),
    )
}

/// Boot the test image with `config`; `keel.run` reads the API's unix
/// socket once ready.
fn boot(s: &Scratch, name: &str, config: &str) -> Vm {
    let file = s.path("user-data");
    std::fs::write(&file, config).unwrap();
    let mut cfg = VmConfig::new(name);
    cfg.cloud_config(&file);
    cfg.append = "keel.run=/usr/lib/keel/test-helper,unix-get,/run/keel/api.sock,/v1/config".into();
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    vm.assert_kernel_alive();
    vm
}

/// Run curl; (success, stdout, stderr).
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl (Debian: apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn https_with_a_client_certificate_through_the_forward() {
    let sc = Scratch::new("api-tls");
    let pki = keel_tls::testpki::generate(&sc.0, &["127.0.0.1", "localhost", "10.0.2.15"]).unwrap();
    let mut vm = boot(&sc, "api-tls", &config(&pki, &pki.server_key));
    vm.wait_for(
        "test-helper: unix-get /v1/config: HTTP/1.1 200 OK",
        Duration::from_secs(30),
    );
    let c = vm.console();
    assert!(
        c.contains("api: tcp port 9420 serves https to clients with a certificate signed by /etc/keel/ca.pem (roles keel:admin, keel:reader); /run/keel/api.sock (root only) too"),
        "{c}"
    );
    let (ca, cert, key) = (s(&pki.ca), s(&pki.client_cert), s(&pki.client_key));
    let url = format!("https://127.0.0.1:{}/v1/status", vm.api_port);

    // curl with the CA's client certificate: the status.
    let (ok, out, err) = curl(&[
        "--fail", "--cacert", &ca, "--cert", &cert, "--key", &key, &url,
    ]);
    assert!(
        ok,
        "curl with the client certificate: {err}\n{}",
        vm.console()
    );
    let st: keel_api::Status = serde_json::from_str(&out).unwrap();
    assert_eq!(st.hostname, "tls-node");

    // keelctl, the same way.
    let endpoint = format!("https://127.0.0.1:{}", vm.api_port);
    let out = Command::new(release_bin("keelctl"))
        .args([
            "--endpoint",
            &endpoint,
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
        ])
        .args(["status", "--json"])
        .env_remove("KEEL_ENDPOINT")
        .output()
        .expect("run keelctl (built by make images)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: keel_api::Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st.hostname, "tls-node");

    // No client certificate, one from another CA, plain http: nothing.
    let (ok, out, err) = curl(&["--fail", "--cacert", &ca, &url]);
    assert!(!ok && out.is_empty(), "curl without a certificate: {out}");
    assert!(err.contains("certificate required"), "{err}");
    let (rc, rk) = (s(&pki.rogue_cert), s(&pki.rogue_key));
    let (ok, out, _) = curl(&["--fail", "--cacert", &ca, "--cert", &rc, "--key", &rk, &url]);
    assert!(
        !ok && out.is_empty(),
        "curl with the rogue certificate: {out}"
    );
    let plain = format!("http://127.0.0.1:{}/v1/status", vm.api_port);
    let (ok, out, _) = curl(&["--fail", &plain]);
    assert!(!ok && out.is_empty(), "curl over plain http: {out}");

    // The read-only certificate: GET works, a POST gets 403 naming the
    // role, and nothing happens.
    let (rc, rk) = (s(&pki.reader_cert), s(&pki.reader_key));
    let reader = ["--cacert", &ca, "--cert", &rc, "--key", &rk];
    let (ok, out, err) = curl(&[&reader[..], &["--fail", &url]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("tls-node"), "{out}");
    let reboot = format!("https://127.0.0.1:{}/v1/reboot", vm.api_port);
    let code = |extra: &[&str]| {
        let (ok, out, err) = curl(&[extra, &["-w", "\n%{http_code}"]].concat());
        assert!(ok, "{err}");
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let (st, body) = code(&[&reader[..], &["-X", "POST", &reboot]].concat());
    assert_eq!(st, "403", "{body}");
    assert!(
        body.contains("keel:reader") && body.contains("needs keel:admin"),
        "{body}"
    );

    // No browser page can drive it: an Origin header gets 403, a form's
    // body type 415, even with the admin certificate; and nothing happens.
    let admin = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    let (st, body) = code(
        &[
            &admin[..],
            &["-X", "POST", "-H", "Origin: http://evil.example", &reboot],
        ]
        .concat(),
    );
    assert_eq!(st, "403", "{body}");
    let config = format!("https://127.0.0.1:{}/v1/config", vm.api_port);
    let (st, body) = code(
        &[
            &admin[..],
            &[
                "-H",
                "Content-Type: text/plain",
                "--data-binary",
                "#cloud-config\nhostname: csrf\n",
                &config,
            ],
        ]
        .concat(),
    );
    assert_eq!(st, "415", "{body}");
    assert_eq!(vm.status_with(&pki).hostname, "tls-node", "nothing applied");
    assert_eq!(
        vm.status_with(&pki).state,
        keel_api::NodeState::Ready,
        "no reboot"
    );

    // After all that the port still serves.
    let (ok, _, err) = curl(&[
        "--fail", "--cacert", &ca, "--cert", &cert, "--key", &key, &url,
    ]);
    assert!(ok, "{err}");
    vm.assert_no_fatal();
}

trait StatusWith {
    fn status_with(&self, pki: &TestPki) -> keel_api::Status;
}

impl StatusWith for Vm {
    /// The status through the forward with `pki`'s admin certificate.
    fn status_with(&self, pki: &TestPki) -> keel_api::Status {
        keel_api::Client::new(keel_api::Endpoint::Https {
            addr: ([127, 0, 0, 1], self.api_port).into(),
            host: "127.0.0.1".into(),
        })
        .with_tls(&keel_api::ClientFiles {
            ca: ("ca", pki.ca.clone()),
            identity: Some((
                ("cert", pki.client_cert.clone()),
                ("key", pki.client_key.clone()),
            )),
        })
        .unwrap()
        .call_blocking(hyper::Method::GET, "/v1/status")
        .unwrap()
    }
}

/// Without `api:` the TCP port is closed: from the host the forward gets
/// no answer, with or without certificates, while the unix socket serves.
/// The control: the same request to a node given the harness's `api:`.
#[test]
fn a_default_node_keeps_its_tcp_port_closed() {
    let mut cfg = VmConfig::new("api-default");
    cfg.api = false;
    cfg.append =
        "keel.run=/usr/lib/keel/test-helper,unix-json,/run/keel/api.sock,/v1/status".into();
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    let st: keel_api::Status = vm.unix_json("/v1/status");
    assert_eq!(st.api.tcp_port, None);
    assert_eq!(
        st.api.note,
        "tcp port 9420 closed: no api: in the cloud-config; /run/keel/api.sock (root only) serves the API"
    );
    assert!(
        vm.console()
            .contains("api: tcp port 9420 closed: no api: in the cloud-config"),
        "{}",
        vm.console()
    );
    let pki = keel_vmtests::test_pki();
    let p = |n: &str| s(&pki.file(n));
    let (ca, cert, key) = (p("ca.pem"), p("admin.pem"), p("admin-key.pem"));
    let try_both = |port: u16| {
        let https = format!("https://127.0.0.1:{port}/v1/status");
        let plain = format!("http://127.0.0.1:{port}/v1/status");
        (
            curl(&[
                "--fail", "--cacert", &ca, "--cert", &cert, "--key", &key, &https,
            ]),
            curl(&["--fail", &plain]),
        )
    };
    let ((ok, out, _), (pok, pout, _)) = try_both(vm.api_port);
    assert!(!ok && out.is_empty(), "https to a closed port: {out}");
    assert!(!pok && pout.is_empty(), "http to a closed port: {pout}");
    // A raw connection: the forward closes it without a byte.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", vm.api_port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = std::io::Write::write_all(&mut raw, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw, &mut buf);
    assert!(buf.is_empty(), "{:?}", String::from_utf8_lossy(&buf));
    vm.assert_no_fatal();
    drop(vm);

    let mut with = Vm::start(VmConfig::new("api-default-control"));
    with.wait_ready();
    let ((ok, out, err), (pok, _, _)) = try_both(with.api_port);
    assert!(ok, "the control: {err}");
    assert!(out.contains("\"hostname\""), "{out}");
    assert!(!pok, "plain http is never served");
}

#[test]
fn files_that_cannot_be_used_close_the_tcp_port_not_the_node() {
    let sc = Scratch::new("api-tls-bad");
    let pki = keel_tls::testpki::generate(&sc.0, &["127.0.0.1"]).unwrap();
    // The client's key in place of the server's: it does not fit.
    let mut vm = boot(&sc, "api-tls-bad", &config(&pki, &pki.client_key));
    vm.wait_for(
        "test-helper: unix-get /v1/config: HTTP/1.1 200 OK",
        Duration::from_secs(30),
    );
    let c = vm.console();
    assert!(
        c.contains("api.key_file: /etc/keel/api-key.pem does not fit /etc/keel/api.pem"),
        "{c}"
    );
    assert!(
        c.contains("api: tcp port 9420 closed: api.key_file: ")
            && c.contains("/run/keel/api.sock (root only) serves the API"),
        "{c}"
    );
    let (ca, cert, key) = (s(&pki.ca), s(&pki.client_cert), s(&pki.client_key));
    let url = format!("https://127.0.0.1:{}/v1/status", vm.api_port);
    let (ok, out, err) = curl(&[
        "--fail", "--cacert", &ca, "--cert", &cert, "--key", &key, &url,
    ]);
    assert!(!ok && out.is_empty(), "https: {out}{err}");
    let plain = format!("http://127.0.0.1:{}/v1/status", vm.api_port);
    let (ok, out, err) = curl(&["--fail", &plain]);
    assert!(
        !ok && out.is_empty(),
        "plain http must not be served: {out}{err}"
    );
    vm.assert_no_fatal();
}

/// What `make run` boots: the demo config with the development PKI's
/// `api:` (scripts/demo-config.sh, as the Makefile runs it). keelctl with
/// nothing but the client config `make run` installs (the README's lines,
/// with the endpoint moved to this test's forward) and curl with the admin
/// certificate are answered; the read-only certificate reads and is
/// refused a reboot; no certificate, another CA's, or plain HTTP get
/// nothing.
#[test]
fn the_demo_node_answers_its_development_pki_only() {
    let sc = Scratch::new("api-demo");
    let pki = sc.path("pki");
    let demo = sc.path("demo-config.yaml");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run a script");
        assert!(out.status.success(), "{cmd:?}: {out:?}");
    };
    run(
        Command::new(keel_vmtests::root().join("scripts/demo-config.sh"))
            .arg(release_bin("keelctl"))
            .arg(&pki)
            .arg(keel_vmtests::root().join("initramfs/demo-config.yaml"))
            .arg(&demo),
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&demo).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the demo config holds a key");
    // The client config where `make run` installs it.
    let xdg = sc.path("xdg");
    std::fs::create_dir_all(xdg.join("keel")).unwrap();
    std::fs::copy(pki.join("keelconfig"), xdg.join("keel/config")).unwrap();

    let mut cfg = VmConfig::new("api-demo");
    cfg.cloud_config(&demo);
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    let endpoint = vm.endpoint();
    let keelctl = |args: &[&str]| {
        let out = Command::new(release_bin("keelctl"))
            .args(args)
            .env("XDG_CONFIG_HOME", &xdg)
            .env("KEEL_ENDPOINT", &endpoint)
            .env_remove("KEELCONFIG")
            .env_remove("KEEL_CACERT")
            .env_remove("KEEL_CERT")
            .env_remove("KEEL_KEY")
            .output()
            .expect("run keelctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = keelctl(&["status"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("node       keel-demo"), "{out}");
    assert!(
        out.contains("api        tcp port 9420 serves https") && out.contains("days left)"),
        "{out}"
    );
    let dry = sc.path("my.yaml");
    std::fs::write(
        &dry,
        std::fs::read_to_string(&demo)
            .unwrap()
            .replace("hostname: keel-demo", "hostname: other"),
    )
    .unwrap();
    for args in [
        &["ps"][..],
        &["logs", "web"],
        &["config", "show"],
        &["config", "apply", "--dry-run", &s(&dry)],
    ] {
        let (ok, out, err) = keelctl(args);
        assert!(ok, "keelctl {args:?}: {out}{err}");
    }

    let f = |n: &str| s(&pki.join(n));
    let url = format!("{endpoint}/v1/status");
    let (ok, out, err) = curl(&[
        "--fail",
        "--cacert",
        &f("ca.pem"),
        "--cert",
        &f("admin.pem"),
        "--key",
        &f("admin-key.pem"),
        &url,
    ]);
    assert!(ok && out.contains("keel-demo"), "{err}");
    let reader = [
        "--cacert",
        &f("ca.pem"),
        "--cert",
        &f("reader.pem"),
        "--key",
        &f("reader-key.pem"),
    ];
    let (ok, out, err) = curl(&[&reader[..], &["--fail", &url]].concat());
    assert!(ok && out.contains("keel-demo"), "{err}");
    let (ok, out, _) = curl(
        &[
            &reader[..],
            &[
                "-X",
                "POST",
                "-w",
                "%{http_code}",
                &format!("{endpoint}/v1/reboot"),
            ],
        ]
        .concat(),
    );
    assert!(ok && out.ends_with("403"), "{out}");

    let (ok, out, err) = curl(&["--fail", "--cacert", &f("ca.pem"), &url]);
    assert!(
        !ok && out.is_empty() && err.contains("certificate required"),
        "{out}{err}"
    );
    let other = sc.path("other");
    run(Command::new(release_bin("keelctl"))
        .args(["gen", "pki", "--no-kv", "--node", "x=127.0.0.1", "--out"])
        .arg(&other));
    let o = |n: &str| s(&other.join(n));
    let (ok, out, _) = curl(&[
        "--fail",
        "--cacert",
        &f("ca.pem"),
        "--cert",
        &o("admin.pem"),
        "--key",
        &o("admin-key.pem"),
        &url,
    ]);
    assert!(!ok && out.is_empty(), "another CA's certificate: {out}");
    let (ok, out, _) = curl(&[
        "--fail",
        &format!("http://127.0.0.1:{}/v1/status", vm.api_port),
    ]);
    assert!(!ok && out.is_empty(), "plain http: {out}");
    assert_eq!(
        vm.status_with_files(&pki).state,
        keel_api::NodeState::Ready,
        "not rebooted"
    );
    vm.assert_no_fatal();
}

trait StatusWithFiles {
    fn status_with_files(&self, pki: &Path) -> keel_api::Status;
}

impl StatusWithFiles for Vm {
    fn status_with_files(&self, pki: &Path) -> keel_api::Status {
        keel_api::Client::new(keel_api::Endpoint::Https {
            addr: ([127, 0, 0, 1], self.api_port).into(),
            host: "127.0.0.1".into(),
        })
        .with_tls(&keel_api::ClientFiles {
            ca: ("ca", pki.join("ca.pem")),
            identity: Some((
                ("cert", pki.join("admin.pem")),
                ("key", pki.join("admin-key.pem")),
            )),
        })
        .unwrap()
        .call_blocking(hyper::Method::GET, "/v1/status")
        .unwrap()
    }
}

/// The API's cap through qemu's forward (set to 8 with
/// `keel.api.connections`: the forward carries about two new connections a
/// second under TCG): 8 idle connections fill the port, 12 more are closed
/// and the console says so once, and `GET /v1/status` over the unix socket
/// (its own pool) still answers. The full-size cap (1,024 plus 1,000) is
/// tested on the host's loopback (init/api/tests/load.rs).
#[test]
fn a_full_tcp_port_leaves_the_unix_socket_in_reach() {
    let cap = 8;
    let mut cfg = VmConfig::new("api-flood");
    cfg.append = format!(
        "keel.api.connections={cap} keel.run=/usr/lib/keel/test-helper,sleep,20,+,unix-json,/run/keel/api.sock,/v1/status"
    );
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    let held: Vec<_> = (0..cap + 12)
        .map(|i| {
            std::net::TcpStream::connect(("127.0.0.1", vm.api_port))
                .unwrap_or_else(|e| panic!("connect {i} through the forward: {e}"))
        })
        .collect();
    vm.wait_for(
        &format!("closed: {cap} are open, the most it serves at once"),
        Duration::from_secs(30),
    );
    let st: keel_api::Status = vm.unix_json("/v1/status");
    assert_eq!(st.state, keel_api::NodeState::Ready);
    drop(held);
    // The control: once they are gone the port serves again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match vm
            .client()
            .call_blocking::<keel_api::Status>(hyper::Method::GET, "/v1/status")
        {
            Ok(s) => {
                assert_eq!(s.state, keel_api::NodeState::Ready);
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    vm.assert_no_fatal();
}

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
        c.contains("api: listening on tcp port 9420 (https; clients need a certificate signed by /etc/keel/ca.pem) and /run/keel/api.sock"),
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

    // After all that the port still serves.
    let (ok, _, err) = curl(&[
        "--fail", "--cacert", &ca, "--cert", &cert, "--key", &key, &url,
    ]);
    assert!(ok, "{err}");
    vm.assert_no_fatal();
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
        c.contains("api: api.key_file: /etc/keel/api-key.pem does not fit /etc/keel/api.pem"),
        "{c}"
    );
    assert!(c.contains("tcp port 9420 stays closed"), "{c}");
    assert!(
        c.contains("api: listening on /run/keel/api.sock only"),
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

//! The keelctl binary against a TLS server that requires client
//! certificates (a fake node on loopback, the test PKI): the options and
//! their environment variables, and errors that name the option and file.

use std::process::Command;

use keel_tls::testpki::TestPki;
use keel_tls::{ServerFiles, TlsAcceptor};

/// A server, its https URL and the PKI (in `dir`).
fn server(dir: &std::path::Path) -> (String, TestPki) {
    let pki = keel_tls::testpki::generate(dir, &["127.0.0.1"]).unwrap();
    let config = keel_tls::server_config(&ServerFiles {
        cert: ("api.cert_file", pki.server_cert.clone()),
        key: ("api.key_file", pki.server_key.clone()),
        client_ca: Some(("api.client_ca_file", pki.ca.clone())),
    })
    .unwrap();
    let addr = keel_api::fake::spawn_tcp(Some(TlsAcceptor::from(config))).unwrap();
    (format!("https://127.0.0.1:{}", addr.port()), pki)
}

/// Run keelctl with `args` and `env` only (none of the caller's KEEL_*).
fn keelctl(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelctl"));
    for v in ["KEEL_ENDPOINT", "KEEL_CACERT", "KEEL_CERT", "KEEL_KEY"] {
        cmd.env_remove(v);
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run keelctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn keelctl_over_https_with_a_client_certificate() {
    let t = tempfile::tempdir().unwrap();
    let (url, pki) = server(t.path());
    let (ca, cert, key) = (s(&pki.ca), s(&pki.client_cert), s(&pki.client_key));

    let (ok, out, err) = keelctl(
        &[
            "--endpoint",
            &url,
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "status",
            "--json",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let st: keel_api::Status = serde_json::from_str(&out).unwrap();
    assert_eq!(st.hostname, "fake");

    // The same from the environment.
    let (ok, out, err) = keelctl(
        &["reboot"],
        &[
            ("KEEL_ENDPOINT", &url),
            ("KEEL_CACERT", &ca),
            ("KEEL_CERT", &cert),
            ("KEEL_KEY", &key),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "orderly reboot started");

    // No client certificate: the server refuses.
    let (ok, _, err) = keelctl(&["--endpoint", &url, "--cacert", &ca, "status"], &[]);
    assert!(!ok && err.contains("CertificateRequired"), "{err}");
    // One from another CA: refused too.
    let (rc, rk) = (s(&pki.rogue_cert), s(&pki.rogue_key));
    let (ok, _, err) = keelctl(
        &[
            "--endpoint",
            &url,
            "--cacert",
            &ca,
            "--cert",
            &rc,
            "--key",
            &rk,
            "status",
        ],
        &[],
    );
    assert!(!ok && err.contains("UnknownCA"), "{err}");
}

#[test]
fn errors_name_the_option_and_the_file() {
    let t = tempfile::tempdir().unwrap();
    let (url, pki) = server(t.path());
    let (ca, cert, key) = (s(&pki.ca), s(&pki.client_cert), s(&pki.client_key));
    let missing = s(&t.path().join("missing.pem"));

    let (ok, _, err) = keelctl(&["--endpoint", &url, "status"], &[]);
    assert!(!ok, "{err}");
    assert!(
        err.starts_with(&format!("keelctl: {url}: an https endpoint needs --cacert")),
        "{err}"
    );

    let (ok, _, err) = keelctl(&["--endpoint", &url, "--cacert", &missing, "status"], &[]);
    assert!(!ok, "{err}");
    assert!(
        err.starts_with(&format!("keelctl: --cacert {missing}: ")),
        "{err}"
    );

    let (ok, _, err) = keelctl(
        &[
            "--endpoint",
            &url,
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &missing,
            "status",
        ],
        &[],
    );
    assert!(
        !ok && err.starts_with(&format!("keelctl: --key {missing}: ")),
        "{err}"
    );

    // A key that is not the certificate's.
    let (ok, _, err) = keelctl(
        &[
            "--endpoint",
            &url,
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &s(&pki.server_key),
            "status",
        ],
        &[],
    );
    assert!(
        !ok && err.starts_with("keelctl: --key: ") && err.contains("does not fit"),
        "{err}"
    );

    let (ok, _, err) = keelctl(
        &[
            "--endpoint",
            &url,
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "status",
        ],
        &[],
    );
    assert!(!ok && err.contains("--cert needs --key"), "{err}");
    let (ok, _, err) = keelctl(
        &["status"],
        &[
            ("KEEL_ENDPOINT", &url),
            ("KEEL_CACERT", &ca),
            ("KEEL_KEY", &key),
        ],
    );
    assert!(!ok && err.contains("--key needs --cert"), "{err}");
}

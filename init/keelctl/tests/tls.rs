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
    let addr = keel_api::fake::spawn_tcp(TlsAcceptor::from(config)).unwrap();
    (format!("https://127.0.0.1:{}", addr.port()), pki)
}

/// Run keelctl with `args` and `env` only (none of the caller's KEEL_*).
fn keelctl(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keelctl"));
    for v in [
        "KEEL_ENDPOINT",
        "KEEL_CACERT",
        "KEEL_CERT",
        "KEEL_KEY",
        "KEELCONFIG",
        "XDG_CONFIG_HOME",
    ] {
        cmd.env_remove(v);
    }
    // Never the caller's own client config.
    cmd.env("HOME", "/nonexistent/keelctl-test-home");
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

/// A server with the certificate `keelctl gen pki` made for node `n1`.
fn gen_server(dir: &std::path::Path) -> String {
    let (ok, out, err) = keelctl(
        &[
            "gen",
            "pki",
            "--out",
            &s(dir),
            "--node",
            "n1=127.0.0.1",
            "--no-kv",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("created    a new CA"), "{out}");
    let n = dir.join("nodes/n1");
    let config = keel_tls::server_config(&ServerFiles {
        cert: ("api.cert_file", n.join("api.pem")),
        key: ("api.key_file", n.join("api-key.pem")),
        client_ca: Some(("api.client_ca_file", dir.join("ca.pem"))),
    })
    .unwrap();
    let addr = keel_api::fake::spawn_tcp(TlsAcceptor::from(config)).unwrap();
    format!("https://127.0.0.1:{}", addr.port())
}

#[test]
fn the_client_config_from_gen_pki_is_all_keelctl_needs() {
    let t = tempfile::tempdir().unwrap();
    let url = gen_server(t.path());
    let kc = t.path().join("keelconfig");
    // The config names port 9420; the flag overrides only the endpoint.
    let (ok, out, err) = keelctl(&["--config", &s(&kc), "--endpoint", &url, "status"], &[]);
    assert!(ok, "{err}");
    assert!(out.starts_with("node       fake"), "{out}");
    // KEELCONFIG, and the default path under XDG_CONFIG_HOME.
    let (ok, _, err) = keelctl(
        &["status"],
        &[("KEELCONFIG", &s(&kc)), ("KEEL_ENDPOINT", &url)],
    );
    assert!(ok, "{err}");
    let xdg = t.path().join("xdg");
    std::fs::create_dir_all(xdg.join("keel")).unwrap();
    std::fs::copy(&kc, xdg.join("keel/config")).unwrap();
    let (ok, out, err) = keelctl(
        &["reboot"],
        &[("XDG_CONFIG_HOME", &s(&xdg)), ("KEEL_ENDPOINT", &url)],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "orderly reboot started");

    // The read-only certificate: reads, and is refused a change with its
    // role named.
    let reader = [
        "--config",
        &s(&kc),
        "--endpoint",
        &url,
        "--cert",
        &s(&t.path().join("reader.pem")),
        "--key",
        &s(&t.path().join("reader-key.pem")),
    ];
    let (ok, _, err) = keelctl(&[&reader[..], &["status"]].concat(), &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = keelctl(&[&reader[..], &["poweroff"]].concat(), &[]);
    assert!(
        !ok && err.contains("403") && err.contains("keel:reader"),
        "{err}"
    );

    // No client config and no endpoint: the error says what to do.
    let (ok, _, err) = keelctl(&["status"], &[]);
    assert!(
        !ok && err.contains("no endpoint") && err.contains("keelctl gen pki"),
        "{err}"
    );
    // A named config that is not there is an error naming it.
    let (ok, _, err) = keelctl(&["--config", "/nonexistent/kc", "status"], &[]);
    assert!(!ok && err.contains("/nonexistent/kc"), "{err}");
}

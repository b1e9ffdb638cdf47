//! VM tests of the cluster store: a booted node serves etcd's v2 API on
//! port 2379, Debian's `etcdctl` (API v2) and curl work against it through
//! qemu's port forward, and what was written survives a reboot from disk;
//! with `coreos.etcd2`'s TLS keys and certificates from `write_files`, the
//! port speaks TLS and wants a client certificate. A node whose config
//! does not open the client port beyond loopback keeps its KV to itself:
//! the host gets no answer, a process on the node does.

use std::process::Command;
use std::time::{Duration, Instant};

use keel_vmtests::{free_port, Scratch, Variant, Vm, VmConfig};

const EXIT: Duration = Duration::from_secs(60);

fn etcdctl(port: u16, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .arg("--endpoints")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(args)
        .output()
        .expect("etcdctl (Debian package etcd-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "10"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the member answers `/health` with a leader.
fn wait_healthy(vm: &Vm, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = curl(&[&format!("http://127.0.0.1:{port}/health")]);
        if h.contains("\"health\":\"true\"") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kv not healthy after 60 s: {h:?}\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn boot(name: &str, disk: Option<&std::path::Path>, user_data: &std::path::Path, port: u16) -> Vm {
    let mut cfg = VmConfig::new(name);
    if let Some(d) = disk {
        cfg.variant = Variant::Disk;
        cfg.disk = Some(d.to_path_buf());
    }
    cfg.cloud_config(user_data);
    cfg.hostfwd = vec![format!("tcp:127.0.0.1:{port}-:2379")];
    let mut vm = Vm::start(cfg);
    vm.wait_ready();
    wait_healthy(&vm, port);
    vm
}

#[test]
fn etcdctl_and_curl_use_the_nodes_kv_and_it_survives_a_reboot() {
    let s = Scratch::new("kv-node");
    let disk = s.path("disk.img");
    std::fs::copy(keel_vmtests::build_dir().join("disk.img"), &disk)
        .expect("build/disk.img (make disk)");
    // The client port is opened to the host (the default is 127.0.0.1
    // only), and the member advertises the forwarded address, as an
    // operator behind NAT would configure it: etcdctl syncs to the
    // advertised URLs.
    let port = free_port();
    let user_data = s.path("user-data");
    std::fs::write(
        &user_data,
        format!(
            "#cloud-config\nhostname: kv-node\ncoreos:\n  etcd2:\n    listen-client-urls: http://0.0.0.0:2379\n    advertise-client-urls: http://127.0.0.1:{port}\n"
        ),
    )
    .unwrap();
    let vm = boot("kv-node-1", Some(&disk), &user_data, port);

    // Open beyond loopback without client certificates: the status says so
    // in one line, and a caller from outside (qemu's 10.0.2.2) may read and
    // write but not change the membership.
    let kv = vm.status().kv.expect("the kv part of the status");
    assert_eq!(kv.client, ["0.0.0.0:2379"]);
    assert!(
        kv.peer.is_empty(),
        "a lone member opens no peer port: {kv:?}"
    );
    assert_eq!(
        kv.warnings,
        ["kv: client port 0.0.0.0:2379 listens beyond loopback without client-cert-auth: whoever reaches it can read and write the store"]
    );
    let (ok, out, err) = vm.keelctl(&["status"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("warning    kv: client port 0.0.0.0:2379 listens beyond loopback"),
        "{out}"
    );
    let refused = curl(&[
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"peerURLs":["http://10.0.2.2:2380"]}"#,
        &format!("http://127.0.0.1:{port}/v2/members"),
    ]);
    assert!(
        refused.ends_with("\n403") && refused.contains("need a client certificate"),
        "{refused}"
    );
    let (ok, out, err) = etcdctl(port, &["member", "list"]);
    assert!(
        ok && !out.contains("10.0.2.2:2380"),
        "nothing was added: {out}{err}"
    );

    // The member is named after the host and is its own leader.
    let (ok, out, err) = etcdctl(port, &["member", "list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("name=kv-node") && out.contains("isLeader=true"),
        "{out}"
    );
    let (ok, out, err) = etcdctl(port, &["cluster-health"]);
    assert!(ok && out.contains("cluster is healthy"), "{out}{err}");

    // etcdctl's everyday verbs, as a user types them.
    assert_eq!(
        etcdctl(port, &["mk", "/app/greeting", "hello"]).1,
        "hello\n"
    );
    let (ok, _, err) = etcdctl(port, &["mk", "/app/greeting", "again"]);
    assert!(!ok && err.contains("105: Key already exists"), "{err}");
    assert_eq!(etcdctl(port, &["set", "/app/count", "1"]).1, "1\n");
    assert_eq!(etcdctl(port, &["update", "/app/count", "2"]).1, "2\n");
    assert!(etcdctl(port, &["mkdir", "/app/empty"]).0);
    assert_eq!(
        etcdctl(port, &["ls", "--recursive", "--sort", "/app"]).1,
        "/app/count\n/app/empty\n/app/greeting\n"
    );
    assert!(etcdctl(port, &["rmdir", "/app/empty"]).0);
    let (ok, _, err) = etcdctl(port, &["get", "/app/missing"]);
    assert!(
        !ok && err.contains("100: Key not found (/app/missing)"),
        "{err}"
    );

    // A watch sees the next write. It watches after the store's index as
    // it is now, so it sees the write wherever its request lands relative
    // to the PUT: no sleep to guess when etcdctl is listening.
    let head = curl(&[
        "-D",
        "-",
        &format!("http://127.0.0.1:{port}/v2/keys/app/count"),
    ]);
    let index: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-etcd-index:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-Etcd-Index in {head:?}"));
    let watcher = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .args([
            "--endpoints",
            &format!("http://127.0.0.1:{port}"),
            "watch",
            "--after-index",
            &index.to_string(),
            "/app/count",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl (Debian package etcd-client)");
    let body = curl(&[
        "-X",
        "PUT",
        &format!("http://127.0.0.1:{port}/v2/keys/app/count"),
        "-d",
        "value=3",
    ]);
    assert!(body.contains("\"value\":\"3\""), "{body}");
    let out = keel_testkit::output_within(watcher, Duration::from_secs(30), "etcdctl watch");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");

    // Power off and boot again from the same disk: the data is on STATE.
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    let mut vm = vm;
    vm.wait_exit(EXIT);
    let vm = boot("kv-node-2", Some(&disk), &user_data, port);
    assert_eq!(etcdctl(port, &["get", "/app/greeting"]).1, "hello\n");
    assert_eq!(etcdctl(port, &["get", "/app/count"]).1, "3\n");
    vm.assert_no_fatal();
}

/// `write_files` entries carrying PEM files, as an operator writes them.
fn pem_files(files: &[(&str, &std::path::Path, &str)]) -> String {
    let mut out = String::from("write_files:\n");
    for (path, src, perm) in files {
        out += &format!("  - path: {path}\n    permissions: '{perm}'\n    content: |\n");
        for line in std::fs::read_to_string(src).unwrap().lines() {
            out += &format!("      {line}\n");
        }
    }
    out
}

#[test]
fn the_kv_speaks_tls_with_client_certificates_from_cloud_config() {
    let s = Scratch::new("kv-tls");
    let pki = keel_tls::testpki::generate(&s.path(""), &["127.0.0.1"]).unwrap();
    let port = free_port();
    let user_data = s.path("user-data");
    let config = format!(
        "#cloud-config\nhostname: kv-tls\n{}coreos:\n  etcd2:\n    listen-client-urls: https://0.0.0.0:2379\n    advertise-client-urls: https://127.0.0.1:{port}\n    cert-file: /etc/keel/etcd.pem\n    key-file: /etc/keel/etcd-key.pem\n    trusted-ca-file: /etc/keel/ca.pem\n    client-cert-auth: true\n",
        pem_files(&[
            ("/etc/keel/etcd.pem", &pki.server_cert, "0644"),
            ("/etc/keel/etcd-key.pem", &pki.server_key, "0600"),
            ("/etc/keel/ca.pem", &pki.ca, "0644"),
        ])
    );
    std::fs::write(&user_data, config).unwrap();
    let mut cfg = VmConfig::new("kv-tls");
    cfg.cloud_config(&user_data);
    cfg.hostfwd = vec![format!("tcp:127.0.0.1:{port}-:2379")];
    let mut vm = Vm::start(cfg);
    vm.wait_ready();

    let url = format!("https://127.0.0.1:{port}");
    let ca = pki.ca.to_str().unwrap();
    let (cert, key) = (
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let tls = ["--cacert", ca, "--cert", cert, "--key", key];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = curl(&[&tls[..], &[&format!("{url}/health")]].concat());
        if h.contains("\"health\":\"true\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kv not healthy over TLS after 60 s: {h:?}\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // etcdctl with the client certificate: the everyday verbs work and the
    // member advertises its https URL.
    let ctl = |with_cert: bool, args: &[&str]| {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "2")
            .args(["--endpoints", &url, "--ca-file", ca]);
        if with_cert {
            c.args(["--cert-file", cert, "--key-file", key]);
        }
        let o = c.args(args).output().expect("etcdctl");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (ok, out) = ctl(true, &["mk", "/secure/k", "v1"]);
    assert!(ok && out == "v1\n", "{out}");
    let (ok, out) = ctl(true, &["get", "/secure/k"]);
    assert!(ok && out == "v1\n", "{out}");
    let (ok, out) = ctl(true, &["member", "list"]);
    assert!(ok && out.contains(&format!("clientURLs={url}")), "{out}");
    // Open beyond loopback, but only to the CA's clients: no warning.
    let kv = vm.status().kv.expect("the kv part of the status");
    assert!(kv.warnings.is_empty(), "{kv:?}");

    // Without a certificate, or over plain http: nothing.
    let (ok, out) = ctl(false, &["get", "/secure/k"]);
    assert!(!ok && !out.contains("v1\n"), "{out}");
    let body = curl(&["--cacert", ca, &format!("{url}/v2/keys/secure/k")]);
    assert!(!body.contains("v1"), "{body}");
    let body = curl(&[&format!("http://127.0.0.1:{port}/v2/keys/secure/k")]);
    assert!(!body.contains("v1"), "{body}");

    // A membership change with the client certificate is allowed from
    // outside (the control of kv-node's 403). The new member never runs;
    // it stays a learner, and the lone member opens its peer port.
    let (ok, out) = ctl(true, &["member", "add", "extra", "http://10.0.2.2:2380"]);
    assert!(ok && out.contains("Added member named extra"), "{out}");
    vm.assert_no_fatal();
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    vm.wait_exit(EXIT);
}

/// A node whose config says nothing of `listen-client-urls`: its KV
/// listens on 127.0.0.1 only, as etcd's does. The host, through the
/// forward, gets no answer; a process on the node (a host-network
/// container) writes and reads.
#[test]
fn a_default_node_keeps_its_kv_to_itself() {
    let s = Scratch::new("kv-default");
    let port = free_port();
    let user_data = s.path("user-data");
    std::fs::write(
        &user_data,
        r#"#cloud-config
hostname: kv-default
containers:
  - name: probe
    image: busybox
    network: host
    command: ["/bin/sh", "-c"]
    args: ["until wget -q -O - --post-data value=inside http://127.0.0.1:2379/v2/keys/probe; do sleep 1; done; echo; echo probe-done; sleep 100000"]
"#,
    )
    .unwrap();
    let mut cfg = VmConfig::new("kv-default");
    cfg.cloud_config(&user_data);
    cfg.hostfwd = vec![format!("tcp:127.0.0.1:{port}-:2379")];
    let mut vm = Vm::start(cfg);
    vm.wait_ready();

    // On the node: the write goes through.
    let deadline = Instant::now() + Duration::from_secs(90);
    let logs = loop {
        let (ok, out, err) = vm.keelctl(&["logs", "probe"]);
        assert!(ok, "keelctl logs probe: {err}");
        if out.contains("probe-done") {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "probe: no write after 90 s:\n{out}\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        logs.contains(r#""action":"create""#) && logs.contains(r#""value":"inside""#),
        "{logs}"
    );
    let kv = vm.status().kv.expect("the kv part of the status");
    assert_eq!(kv.client, ["127.0.0.1:2379"]);
    assert!(kv.peer.is_empty() && kv.warnings.is_empty(), "{kv:?}");

    // From the host: no HTTP answer at all (qemu takes the connection, the
    // node refuses it and qemu closes it).
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/v2/keys/probe"))
        .output()
        .expect("curl");
    assert!(!out.status.success(), "curl got an answer: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
    vm.assert_no_fatal();
    let (ok, _, err) = vm.keelctl(&["poweroff"]);
    assert!(ok, "{err}");
    vm.wait_exit(EXIT);
}

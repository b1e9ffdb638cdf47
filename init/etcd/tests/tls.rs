//! keel-etcd with TLS on its client and peer ports, exercised with the
//! tools an operator uses: curl, and Debian's etcdctl (v2) with its
//! `--ca-file/--cert-file/--key-file`. Client-certificate authentication
//! lets the CA's clients in and refuses the rest; three members whose peer
//! URLs are https form a cluster, and a write through a follower (forwarded
//! to the leader over the peer TLS connection) is read back everywhere.

use keel_testkit::{free_port, until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use keel_tls::testpki::TestPki;

const BIN: &str = env!("CARGO_BIN_EXE_keel-etcd");

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn new(root: &Path, name: &str) -> Member {
        Member {
            name: name.into(),
            client: free_port(),
            peer: free_port(),
            dir: root.join(name),
            child: None,
        }
    }

    fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client)
    }

    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer)
    }

    fn start(&mut self, pki: &TestPki, cluster: &str) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let p = |p: &Path| p.to_str().unwrap().to_string();
        let child = Command::new(BIN)
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--advertise-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", cluster])
            .args(["--initial-cluster-token", "tls-test"])
            .args(["--cert-file", &p(&pki.server_cert)])
            .args(["--key-file", &p(&pki.server_key)])
            .args(["--trusted-ca-file", &p(&pki.ca)])
            .arg("--client-cert-auth")
            .args(["--peer-cert-file", &p(&pki.server_cert)])
            .args(["--peer-key-file", &p(&pki.server_key)])
            .args(["--peer-trusted-ca-file", &p(&pki.ca)])
            .arg("--peer-client-cert-auth")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("keel-etcd");
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// curl with the CA and, when given, a client certificate.
fn curl(pki: &TestPki, cert: Option<(&Path, &Path)>, args: &[&str]) -> Output {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "5", "--cacert"]).arg(&pki.ca);
    if let Some((cert, key)) = cert {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    c.args(args).output().expect("curl")
}

fn etcdctl(pki: &TestPki, m: &Member, cert: bool, args: &[&str]) -> Output {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "2")
        .args(["--endpoints", &m.client_url(), "--ca-file"])
        .arg(&pki.ca);
    if cert {
        c.arg("--cert-file")
            .arg(&pki.client_cert)
            .arg("--key-file")
            .arg(&pki.client_key);
    }
    c.args(args).output().expect("etcdctl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn tls_clients_and_peers() {
    if !keel_testkit::need_command("curl", "curl") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let pki = keel_tls::testpki::generate(t.path(), &["127.0.0.1"]).unwrap();
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let mut ms: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::new(t.path(), n))
        .collect();
    let cluster = ms
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut ms {
        m.start(&pki, &cluster);
    }

    // A leader is elected over the TLS peer connections.
    let url = |m: &Member, path: &str| format!("{}{path}", m.client_url());
    let leader = until("a leader", 30, || {
        ms.iter().position(|m| {
            let o = curl(&pki, client, &[&url(m, "/v2/stats/self")]);
            String::from_utf8_lossy(&o.stdout).contains("StateLeader")
        })
    });
    let follower = (leader + 1) % 3;

    // A write through a follower is forwarded to the leader over TLS and
    // read back (linearizably) on every member.
    let o = curl(
        &pki,
        client,
        &[
            "-X",
            "PUT",
            "-d",
            "value=secret",
            &url(&ms[follower], "/v2/keys/tls/k"),
        ],
    );
    let body = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        body.contains("\"action\":\"set\""),
        "{body}{}",
        ms[follower].log()
    );
    for m in &ms {
        let o = curl(&pki, client, &[&url(m, "/v2/keys/tls/k")]);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("\"value\":\"secret\""),
            "{}: {}",
            m.name,
            text(&o)
        );
    }

    // No client certificate, or one from another CA: the handshake fails
    // and nothing is read.
    let o = curl(&pki, None, &[&url(&ms[0], "/v2/keys/tls/k")]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("secret"));
    let rogue = Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path()));
    let o = curl(&pki, rogue, &[&url(&ms[0], "/v2/keys/tls/k")]);
    assert!(!o.status.success(), "{}", text(&o));
    // Plain http to the TLS port gets no answer from the store.
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{}/v2/keys/tls/k", ms[0].client))
        .output()
        .unwrap();
    assert!(
        !o.status.success() || !text(&o).contains("secret"),
        "{}",
        text(&o)
    );
    // The peer port wants a member certificate too.
    let o = curl(
        &pki,
        None,
        &[
            "-X",
            "POST",
            "-d",
            "{}",
            &format!("{}/raft/vote", ms[0].peer_url()),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));

    // Debian's etcdctl (v2) with the certificate works; without it fails.
    if have("etcdctl") {
        let m = &ms[follower];
        let o = etcdctl(&pki, m, true, &["mk", "/tls/made", "by-etcdctl"]);
        assert!(o.status.success(), "{}", text(&o));
        let o = etcdctl(&pki, m, true, &["get", "/tls/made"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "by-etcdctl",
            "{}",
            text(&o)
        );
        let o = etcdctl(&pki, m, true, &["ls", "--recursive", "/tls"]);
        let listed = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            listed.contains("/tls/k") && listed.contains("/tls/made"),
            "{listed}"
        );
        // Each member publishes its name and client URLs through the log
        // once it runs; on a loaded machine the last may still be on its way.
        let members = until("three started members in member list", 10, || {
            let o = etcdctl(&pki, m, true, &["member", "list"]);
            let members = text(&o);
            (o.status.success() && members.matches("isLeader").count() == 3).then_some(members)
        });
        assert!(members.matches("isLeader").count() == 3, "{members}");
        assert!(members.contains(&ms[leader].client_url()), "{members}");
        let o = etcdctl(&pki, m, false, &["get", "/tls/made"]);
        assert!(!o.status.success(), "{}", text(&o));
    } else {
        keel_testkit::skip(
            "the etcdctl part: etcdctl is not installed (Debian package etcd-client)",
        );
    }
}

#[test]
fn a_missing_certificate_fails_the_start_naming_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .arg("--data-dir")
        .arg(t.path().join("d"))
        .args([
            "--listen-client-urls",
            &format!("https://127.0.0.1:{}", free_port()),
        ])
        .args([
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .args([
            "--cert-file",
            "/nonexistent/c.pem",
            "--key-file",
            "/nonexistent/k.pem",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = text(&o);
    assert!(e.contains("cert-file /nonexistent/c.pem"), "{e}");

    let o = Command::new(BIN)
        .arg("--data-dir")
        .arg(t.path().join("d2"))
        .args(["--listen-client-urls", "https://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("https URLs need cert-file and key-file"),
        "{}",
        text(&o)
    );
}

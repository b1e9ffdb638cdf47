//! keel-etcd members as processes on loopback: a three-member cluster that
//! survives its leader's death and a full restart from disk, and runtime
//! membership (add, update, remove) through `/v2/members` and etcdctl.

use keel_testkit::{free_port, until};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_kvdiff::http::{send, Request, Response};

const BIN: &str = env!("CARGO_BIN_EXE_keel-etcd");

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

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.client).into()
    }

    fn start(&mut self, cluster: &str, state: &str) {
        self.spawn(&[
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            "cluster-test",
        ]);
    }

    fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new(BIN)
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", self.client),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", self.client),
                "--listen-peer-urls",
                &self.peer_url(),
                "--initial-advertise-peer-urls",
                &self.peer_url(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("keel-etcd");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn get(&self, target: &str) -> Option<Response> {
        send(self.addr(), &Request::new("GET", target)).ok()
    }

    fn put(&self, key: &str, value: &str) -> Option<Response> {
        send(
            self.addr(),
            &Request::form("PUT", &format!("/v2/keys{key}"), &format!("value={value}")),
        )
        .ok()
    }

    fn state(&self) -> Option<String> {
        let v = self.get("/v2/stats/self")?.json()?;
        Some(v["state"].as_str()?.to_string())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cluster_of(members: &[&Member]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

fn leader(ms: &[Member]) -> usize {
    until("one leader", 20, || {
        let leaders: Vec<usize> = (0..ms.len())
            .filter(|i| ms[*i].child.is_some() && ms[*i].state().as_deref() == Some("StateLeader"))
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    })
}

fn value(m: &Member, key: &str) -> Option<String> {
    let v = m.get(&format!("/v2/keys{key}"))?.json()?;
    Some(v["node"]["value"].as_str()?.to_string())
}

#[test]
fn three_members_survive_the_leaders_death_and_a_full_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ms: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::new(tmp.path(), n))
        .collect();
    let cluster = cluster_of(&ms.iter().collect::<Vec<_>>());
    for m in &mut ms {
        m.start(&cluster, "new");
    }
    let l = leader(&ms);
    // Written through a follower (forwarded), read back everywhere.
    let f = (l + 1) % 3;
    let r = until("a write", 10, || ms[f].put("/k", "one"));
    assert_eq!(r.status, 201, "{}", r.describe());
    for m in &ms {
        assert_eq!(value(m, "/k").as_deref(), Some("one"));
    }
    // Each member publishes its name through the log once it runs (as
    // etcd's do): all three are there within a moment.
    until("every member's name published", 10, || {
        let members = ms[0].get("/v2/members")?.json()?;
        let mut names: Vec<String> = members["members"]
            .as_array()?
            .iter()
            .map(|m| m["name"].as_str().unwrap_or("").to_string())
            .collect();
        names.sort();
        (names == ["a", "b", "c"]).then_some(())
    });

    // The leader dies: the two others elect one and take writes.
    ms[l].kill();
    let survivor = (l + 1) % 3;
    until("a write after the leader died", 20, || {
        ms[survivor].put("/k", "two").filter(|r| r.status == 200)
    });
    let l2 = leader(&ms);
    assert_ne!(l2, l);

    // Everyone stops; started again from disk, the data is there.
    for m in &mut ms {
        m.kill();
    }
    for m in &mut ms {
        m.start(&cluster, "new");
    }
    leader(&ms);
    for m in &ms {
        let v = until("the value after a restart", 20, || value(m, "/k"));
        assert_eq!(v, "two");
    }

    // What a member keeps is its own: directories 0700, files 0600.
    fn private(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(p).unwrap();
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
        if meta.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                private(&e.path());
            }
        }
    }
    private(&ms[0].dir.join("member"));
}

/// A follower that was down catches up over more log than one append may
/// carry (net.rs's APPEND_BYTES, 8 MiB; a peer takes at most 16 MiB): the
/// leader sends it in parts.
#[test]
fn a_follower_catches_up_over_appends_larger_than_a_peer_takes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ms: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::new(tmp.path(), n))
        .collect();
    let cluster = cluster_of(&ms.iter().collect::<Vec<_>>());
    for m in &mut ms {
        m.start(&cluster, "new");
    }
    let l = leader(&ms);
    let f = (l + 1) % 3;
    ms[f].kill();
    // 24 writes of 1 MiB each: one entry each, 24 MiB the follower lacks.
    let value = "x".repeat(1 << 20);
    for i in 0..24 {
        let r = send(
            ms[l].addr(),
            &Request::form(
                "PUT",
                &format!("/v2/keys/big/{i}"),
                &format!("value={value}"),
            ),
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.describe());
    }
    ms[f].start(&cluster, "new");
    let v = until("the follower to catch up", 60, || {
        let r = ms[f].get("/v2/keys/big/23?quorum=false")?;
        (r.status == 200).then(|| r.json())?
    });
    assert_eq!(v["node"]["value"].as_str().map(str::len), Some(1 << 20));
    // No member refused an append ("refused a peer's /raft/append: 413
    // Payload Too Large"; a bare "413" would match a port number).
    for m in &ms {
        let log = std::fs::read_to_string(m.dir.with_extension("log")).unwrap();
        assert!(!log.contains("Payload Too Large"), "{log}");
    }
}

/// Past the quota one member finds, the whole cluster refuses writes that
/// add data (the NOSPACE alarm is an entry of the log): through every
/// member, with etcd's cause naming the quota; reads and deletes go on, and
/// the alarm stays after the deletes (until disarmed) and over a restart.
#[test]
fn past_the_quota_every_member_refuses_writes_and_reads_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ms: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::new(tmp.path(), n))
        .collect();
    let cluster = cluster_of(&ms.iter().collect::<Vec<_>>());
    for m in &mut ms {
        m.spawn(&[
            "--initial-cluster",
            &cluster,
            "--initial-cluster-token",
            "quota-test",
            "--quota-backend-bytes",
            "65536",
        ]);
    }
    let l = leader(&ms);
    let f = (l + 1) % 3;
    let other = (l + 2) % 3;
    // Control: below the quota writes go in, through a follower too.
    let value = "x".repeat(4096);
    let mut written = 0;
    let refused = loop {
        let r = ms[f].put(&format!("/fill/{written}"), &value).unwrap();
        if r.status != 201 {
            break r;
        }
        written += 1;
        assert!(
            written < 40,
            "64 KiB of quota took {written} writes of 4 KiB"
        );
    };
    assert!(
        written >= 10,
        "refused after {written} writes: {}",
        refused.describe()
    );
    let v = refused.json().unwrap();
    assert_eq!(refused.status, 500, "{}", refused.describe());
    assert_eq!(v["errorCode"], 300, "{}", refused.describe());
    let cause = v["cause"].as_str().unwrap().to_string();
    assert!(
        cause.starts_with("etcdserver: mvcc: database space exceeded")
            && cause.contains("quota-backend-bytes is 65536"),
        "{cause}"
    );
    // Every member refuses, even a small write, once it has the alarm.
    for (i, m) in ms.iter().enumerate() {
        let r = until(&format!("member {i} refusing"), 10, || {
            let r = m.put("/small", "1")?;
            (r.status == 500).then_some(r)
        });
        let cause = r.json().unwrap()["cause"].as_str().unwrap().to_string();
        assert!(cause.contains("database space exceeded"), "{cause}");
    }
    // Reads go on everywhere, linearizable ones too.
    for m in &ms {
        let r = m.get("/v2/keys/fill/0?quorum=true").unwrap();
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    // Deletes go on; the alarm stays until it is disarmed.
    for i in 0..written {
        let r = send(
            ms[other].addr(),
            &Request::new("DELETE", &format!("/v2/keys/fill/{i}")),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    let r = ms[l].put("/small", "1").unwrap();
    assert_eq!(r.status, 500, "{}", r.describe());
    // A restarted member still knows it (from its log).
    ms[other].kill();
    ms[other].spawn(&[
        "--initial-cluster",
        &cluster,
        "--initial-cluster-token",
        "quota-test",
        "--quota-backend-bytes",
        "65536",
    ]);
    let r = until("the restarted member answering", 20, || {
        let r = ms[other].put("/small", "1")?;
        (r.status == 500).then_some(r)
    });
    assert!(
        r.json().unwrap()["cause"]
            .as_str()
            .unwrap()
            .contains("database space exceeded"),
        "{}",
        r.describe()
    );
}

/// A member started alone that grew into a cluster keeps its lone config:
/// restarted, it finds two members in its log, opens its peer port at once
/// (the other must reach it), and the two go on.
#[test]
fn a_grown_member_restarted_with_its_lone_config_opens_its_peer_port() {
    if !keel_testkit::need_command("etcdctl", "etcd-client") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Member::new(tmp.path(), "a");
    let cluster_a = cluster_of(&[&a]);
    a.start(&cluster_a, "new");
    until("a leader", 20, || {
        (a.state()? == "StateLeader").then_some(())
    });
    let start_line = |m: &Member| {
        until("the start line", 20, || {
            let l = std::fs::read_to_string(m.dir.with_extension("log")).ok()?;
            l.lines()
                .find(|l| l.contains("serving clients"))
                .map(str::to_string)
        })
    };
    assert!(
        start_line(&a).ends_with("peers on []"),
        "{}",
        start_line(&a)
    );
    let mut b = Member::new(tmp.path(), "b");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .args(["--endpoints", &format!("http://127.0.0.1:{}", a.client)])
        .args(["member", "add", "b", &b.peer_url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    b.start(&cluster_of(&[&a, &b]), "existing");
    a.put("/before", "x").unwrap();
    until("b to catch up", 20, || {
        let r = b.get("/v2/keys/before?quorum=false")?;
        (r.status == 200).then_some(())
    });

    a.kill();
    a.start(&cluster_a, "new");
    let line = start_line(&a);
    assert!(
        line.ends_with(&format!("peers on [127.0.0.1:{}]", a.peer)),
        "{line}"
    );
    until("a write through the restarted a", 20, || {
        a.put("/restarted", "z").filter(|r| r.status == 201)
    });
    until("b to see it", 20, || {
        let r = b.get("/v2/keys/restarted?quorum=false")?;
        (r.status == 200).then_some(())
    });
}

/// Found by `make soak`: a leader killed and started again before the
/// others elected a new one resumed leadership in its old term, without the
/// commit index, and answered reads from a state machine that lagged the
/// writes it had acknowledged. The first read it answers must see the last
/// acknowledged write.
#[test]
fn a_leader_restarted_at_once_does_not_answer_stale_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ms: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::new(tmp.path(), n))
        .collect();
    let cluster = cluster_of(&ms.iter().collect::<Vec<_>>());
    for m in &mut ms {
        m.start(&cluster, "new");
    }
    for round in 0..3 {
        let l = leader(&ms);
        let mut last = String::new();
        for i in 0..50 {
            last = format!("v{round}.{i}");
            let r = until("a write", 10, || ms[l].put("/stale", &last));
            assert!(r.status == 200 || r.status == 201, "{}", r.describe());
        }
        ms[l].kill();
        ms[l].start(&cluster, "new");
        // The first answer the restarted member gives (after its ports are
        // up) holds the last acknowledged value.
        let v = until("an answer from the restarted member", 20, || {
            let r = ms[l].get("/v2/keys/stale")?;
            (r.status == 200 || r.status == 404).then(|| r.json())?
        });
        assert_eq!(
            v["node"]["value"].as_str(),
            Some(last.as_str()),
            "round {round}: {v}"
        );
    }
}

#[test]
fn members_are_added_updated_and_removed_at_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Member::new(tmp.path(), "a");
    let cluster_a = cluster_of(&[&a]);
    a.start(&cluster_a, "new");
    until("a leader", 20, || {
        (a.state()? == "StateLeader").then_some(())
    });
    a.put("/before", "x").unwrap();
    // A lone member opens no peer port; it opens once b is added (below).
    let peer_open = |m: &Member| std::net::TcpStream::connect(("127.0.0.1", m.peer)).is_ok();
    assert!(!peer_open(&a), "a lone member has no peer port");

    // etcdctl member add, as an operator would, then start the new member
    // with initial-cluster-state existing.
    let mut b = Member::new(tmp.path(), "b");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .args(["--endpoints", &format!("http://127.0.0.1:{}", a.client)])
        .args(["member", "add", "b", &b.peer_url()])
        .output();
    let Ok(out) = out else {
        keel_testkit::skip("etcdctl is not installed (Debian package etcd-client)");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Added member named b"), "{text}");
    until("a's peer port to open", 10, || peer_open(&a).then_some(()));
    b.start(&cluster_of(&[&a, &b]), "existing");
    // b catches up with what was written before it joined.
    let v = until("b to catch up", 20, || {
        let r = b.get("/v2/keys/before?quorum=false")?;
        (r.status == 200).then(|| r.json())?
    });
    assert_eq!(v["node"]["value"], "x");
    let b_id = until("b in the member list", 20, || {
        let v = a.get("/v2/members")?.json()?;
        v["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == "b")
            .and_then(|m| m["id"].as_str().map(str::to_string))
    });

    // PUT /v2/members/<id> changes its peer URLs; b moves there (it keeps
    // its id) and the change, which needs b's vote at its new address,
    // completes.
    let new_peer = free_port();
    let body = format!("{{\"peerURLs\":[\"http://127.0.0.1:{new_peer}\"]}}");
    let (addr, target, put_body) = (a.addr(), format!("/v2/members/{b_id}"), body.clone());
    let update = std::thread::spawn(move || {
        send(
            addr,
            &Request::with_body("PUT", &target, "application/json", &put_body),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    b.kill();
    b.peer = new_peer;
    b.start(&cluster_of(&[&a, &b]), "existing");
    let r = update.join().unwrap().unwrap();
    assert_eq!(r.status, 204, "{}", r.describe());
    let id_again = until("b back in the member list", 20, || {
        let v = a.get("/v2/members")?.json()?;
        v["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == "b")
            .and_then(|m| m["id"].as_str().map(str::to_string))
    });
    assert_eq!(id_again, b_id);
    let v = a.get("/v2/members").unwrap().json().unwrap();
    let bm = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == b_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(bm["peerURLs"][0], format!("http://127.0.0.1:{new_peer}"));
    // Unknown ids and wrong bodies are refused with etcd's statuses.
    let r = send(
        a.addr(),
        &Request::with_body("PUT", "/v2/members/abc", "application/json", &body),
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.describe());
    let r = send(
        a.addr(),
        &Request::with_body("POST", "/v2/members", "text/plain", &body),
    )
    .unwrap();
    assert_eq!(r.status, 415, "{}", r.describe());

    // DELETE removes it.
    let r = send(
        a.addr(),
        &Request::new("DELETE", &format!("/v2/members/{b_id}")),
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.describe());
    let v = a.get("/v2/members").unwrap().json().unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 1);
    // The cluster is a lone member again and takes writes.
    let r = until("a write after the removal", 20, || {
        a.put("/after", "y").filter(|r| r.status == 201)
    });
    assert_eq!(r.status, 201);
}

#[test]
fn a_cluster_forms_through_a_discovery_url() {
    let tmp = tempfile::tempdir().unwrap();
    // The discovery service: a lone keel-etcd, as etcd's public service is
    // an etcd.
    let mut d = Member::new(tmp.path(), "disco");
    let lone = cluster_of(&[&d]);
    d.start(&lone, "new");
    until("the discovery service", 20, || {
        (d.state()? == "StateLeader").then_some(())
    });
    let url = format!("http://127.0.0.1:{}/v2/keys/_etcd/registry/t1", d.client);

    // No size yet: a member refuses to start and says why.
    let mut early = Member::new(tmp.path(), "early");
    early.spawn(&["--discovery", &url]);
    let status = keel_testkit::exit_within(
        early.child.as_mut().expect("spawned"),
        Duration::from_secs(30),
        "a member with no cluster size",
    );
    assert!(!status.success());
    let log = std::fs::read_to_string(early.dir.with_extension("log")).unwrap();
    assert!(log.contains("no cluster size"), "{log}");
    early.child = None;

    let r = d.put("/_etcd/registry/t1/_config/size", "3").unwrap();
    assert_eq!(r.status, 201);
    let mut ms: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::new(tmp.path(), n))
        .collect();
    for m in &mut ms {
        m.spawn(&["--discovery", &url]);
    }
    leader(&ms);
    for m in &ms {
        let v = until("three named members", 20, || {
            let v = m.get("/v2/members")?.json()?;
            let mut names: Vec<String> = v["members"]
                .as_array()?
                .iter()
                .map(|m| m["name"].as_str().unwrap_or("").to_string())
                .collect();
            names.sort();
            (names == ["a", "b", "c"]).then_some(names)
        });
        assert_eq!(v.len(), 3);
    }
    let r = until("a write", 10, || {
        ms[0].put("/k", "v").filter(|r| r.status == 201)
    });
    assert_eq!(r.status, 201);

    // A fourth member finds the cluster full.
    let mut late = Member::new(tmp.path(), "late");
    late.spawn(&["--discovery", &url]);
    let status = keel_testkit::exit_within(
        late.child.as_mut().expect("spawned"),
        Duration::from_secs(30),
        "a member of a full cluster",
    );
    assert!(!status.success());
    let log = std::fs::read_to_string(late.dir.with_extension("log")).unwrap();
    assert!(log.contains("the cluster is full"), "{log}");
    late.child = None;

    // A member restarted after discovery starts from its log.
    ms[1].kill();
    ms[1].spawn(&["--discovery", &url]);
    let v = until("the restarted member to serve", 20, || {
        let r = ms[1].get("/v2/keys/k")?;
        (r.status == 200).then(|| r.json())?
    });
    assert_eq!(v["node"]["value"], "v");
}

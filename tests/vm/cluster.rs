//! VM test of a cluster: three nodes, each with its own disk, a user-mode
//! NIC for the host (API, forwarded client port) and a second NIC on an L2
//! segment they share (qemu's multicast socket netdev). Their cloud-configs
//! give each a static address on that segment and make them one etcd
//! cluster (`coreos.etcd2`). The test looks at them as an operator would,
//! through each member's forwarded client port: the members, the leader,
//! a write read back through the others; then it kills the leader's VM,
//! sees the two left elect a new leader and keep the data and take writes,
//! and boots the lost node again from its disk to see it catch up. Last,
//! it fills the store past its quota (64 KiB here) through one member and
//! sees every member refuse writes while reads go on, until the alarm is
//! disarmed with keelctl through another member.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use keel_kvdiff::http::{self, Request};
use keel_vmtests::{build_dir, free_port, Scratch, Variant, Vm, VmConfig};
use serde_json::Value;

/// How long the cluster may take to form, or to elect a new leader, or a
/// restarted member to catch up (three TCG VMs share two cores).
const DEADLINE: Duration = Duration::from_secs(90);
const NAMES: [&str; 3] = ["n1", "n2", "n3"];

/// One node: its disk and config (kept to boot it again), the host port
/// forwarded to its client port 2379, and its VM while it runs.
struct Node {
    name: &'static str,
    disk: PathBuf,
    user_data: PathBuf,
    port: u16,
    /// The VMs booted for this node so far; the last one is current.
    vms: Vec<Vm>,
}

/// The address of node `i` (0-based) on the cluster's segment.
fn lan_ip(i: usize) -> String {
    format!("10.99.0.{}", i + 1)
}

fn user_data(i: usize, token: &str) -> String {
    let cluster: Vec<String> = (0..NAMES.len())
        .map(|j| format!("{}=http://{}:2380", NAMES[j], lan_ip(j)))
        .collect();
    // With a .network unit in the config, keel.ip= no longer applies: the
    // user-mode NIC gets the address the launcher would have given it.
    format!(
        "#cloud-config
hostname: {name}
coreos:
  units:
    - name: 10-host.network
      content: |
        [Match]
        Name=eth0
        [Network]
        Address=10.0.2.15/24
        Gateway=10.0.2.2
    - name: 20-cluster.network
      content: |
        [Match]
        Name=eth1
        [Network]
        Address={ip}/24
  etcd2:
    name: {name}
    initial-cluster: {cluster}
    initial-cluster-state: new
    initial-cluster-token: {token}
    listen-peer-urls: http://{ip}:2380
    initial-advertise-peer-urls: http://{ip}:2380
    listen-client-urls: http://0.0.0.0:2379
    advertise-client-urls: http://{ip}:2379
    quota-backend-bytes: 65536
",
        name = NAMES[i],
        ip = lan_ip(i),
        cluster = cluster.join(","),
    )
}

impl Node {
    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn vm(&mut self) -> &mut Vm {
        self.vms.last_mut().expect("the node was booted")
    }

    /// Start a VM for the node on segment `lan` (not waiting for it).
    fn boot(&mut self, lan: &str, i: usize) {
        let mut cfg = VmConfig::new(&format!("cluster-{}-{}", self.name, self.vms.len() + 1));
        cfg.variant = Variant::Disk;
        cfg.disk = Some(self.disk.clone());
        cfg.cloud_config(&self.user_data);
        cfg.lan_nic(lan, &format!("52:54:00:99:00:{:02x}", i + 1));
        cfg.hostfwd = vec![format!("tcp:127.0.0.1:{}-:2379", self.port)];
        self.vms.push(Vm::start(cfg));
    }

    /// One request to the member; the status and the body as JSON.
    fn call(&self, req: &Request) -> Result<(u16, Value), String> {
        let r = http::send(self.addr(), req)
            .map_err(|e| format!("{}: {}: {e}", self.name, req.describe()))?;
        let json = r
            .json()
            .ok_or_else(|| format!("{}: {}: not JSON: {}", self.name, req.describe(), r.text()))?;
        Ok((r.status, json))
    }

    fn get(&self, target: &str) -> Result<Value, String> {
        match self.call(&Request::new("GET", target))? {
            (200, v) => Ok(v),
            (st, v) => Err(format!("{}: GET {target}: {st} {v}", self.name)),
        }
    }

    /// The member's names in `/v2/members`, sorted.
    fn members(&self) -> Result<Vec<String>, String> {
        let v = self.get("/v2/members")?;
        let mut names: Vec<String> = v["members"]
            .as_array()
            .ok_or_else(|| format!("{}: /v2/members: {v}", self.name))?
            .iter()
            .map(|m| m["name"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// `/v2/stats/self`: (its id, its state, the leader it knows).
    fn stats(&self) -> Result<(String, String, String), String> {
        let v = self.get("/v2/stats/self")?;
        let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
        Ok((s(&v["id"]), s(&v["state"]), s(&v["leaderInfo"]["leader"])))
    }

    fn put(&self, key: &str, value: &str) -> Result<(), String> {
        let req = Request::form("PUT", &format!("/v2/keys{key}"), &format!("value={value}"));
        match self.call(&req)? {
            (200 | 201, v) if v["node"]["value"] == value => Ok(()),
            (st, v) => Err(format!("{}: PUT {key}={value}: {st} {v}", self.name)),
        }
    }

    /// A linearizable (quorum) read of `key`'s value.
    fn quorum_get(&self, key: &str) -> Result<String, String> {
        let v = self.get(&format!("/v2/keys{key}?quorum=true"))?;
        Ok(v["node"]["value"].as_str().unwrap_or_default().to_string())
    }

    /// Debian's etcdctl (API v2) against this member only: `--no-sync`,
    /// since the advertised client URLs are on the cluster's segment,
    /// which the host cannot reach; timeouts above its defaults (2 s, 5 s)
    /// for TCG.
    fn etcdctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "2")
            .args(["--no-sync", "--timeout", "10s", "--total-timeout", "20s"])
            .arg("--endpoints")
            .arg(format!("http://{}", self.addr()))
            .args(args)
            .output()
            .expect("etcdctl (Debian package etcd-client)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Poll `f` every 250 ms until it gives a value; panics with its last
/// error after `DEADLINE`. Returns the value and how long it took.
fn wait<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return (v, start.elapsed()),
            Err(e) if start.elapsed() >= DEADLINE => {
                panic!("{what}: not after {DEADLINE:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The leader the members in `live` agree on: exactly one says
/// StateLeader and every one names it in `leaderInfo`. Returns its index.
fn agreed_leader(nodes: &[Node], live: &[usize]) -> Result<usize, String> {
    let mut seen = Vec::new();
    for &i in live {
        seen.push((i, nodes[i].stats()?));
    }
    let leaders: Vec<&(usize, (String, String, String))> = seen
        .iter()
        .filter(|(_, (_, state, _))| state == "StateLeader")
        .collect();
    let [(leader, (id, _, _))] = leaders[..] else {
        return Err(format!("not exactly one leader: {seen:?}"));
    };
    if seen.iter().any(|(_, (_, _, l))| l != id) {
        return Err(format!("members disagree on the leader: {seen:?}"));
    }
    Ok(*leader)
}

#[test]
fn three_vms_form_a_cluster_from_cloud_config_and_survive_losing_the_leader() {
    let t0 = Instant::now();
    let s = Scratch::new("cluster");
    let lan = format!("230.0.0.1:{}", free_port());
    let token = format!("keel-vmtest-{}", std::process::id());
    let mut nodes: Vec<Node> = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let disk = s.path(&format!("{name}.img"));
            std::fs::copy(build_dir().join("disk.img"), &disk).expect("build/disk.img (make disk)");
            let user_data = s.path(&format!("{name}.yaml"));
            std::fs::write(&user_data, self::user_data(i, &token)).unwrap();
            Node {
                name,
                disk,
                user_data,
                port: free_port(),
                vms: Vec::new(),
            }
        })
        .collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.boot(&lan, i);
    }
    for n in &mut nodes {
        n.vm().wait_ready();
    }
    let all = [0, 1, 2];

    // Each member lists the three, by the names the configs gave them.
    for n in &nodes {
        wait(&format!("{}: three members", n.name), || {
            match n.members()? {
                names if names == NAMES => Ok(()),
                names => Err(format!("{names:?}")),
            }
        });
    }
    // One leader, and all three know it.
    let (leader, formed) = wait("one leader all agree on", || agreed_leader(&nodes, &all));
    eprintln!(
        "cluster: {} leads, {formed:?} after ready, {:?} since the start",
        NAMES[leader],
        t0.elapsed()
    );
    let (ok, out, err) = nodes[0].etcdctl(&["member", "list"]);
    assert!(ok, "etcdctl member list: {err}");
    for (i, name) in NAMES.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("name={name} ")))
            .unwrap_or_else(|| panic!("no {name} in etcdctl member list:\n{out}"));
        assert!(
            line.contains(&format!("peerURLs=http://{}:2380", lan_ip(i)))
                && line.contains(&format!("isLeader={}", i == leader)),
            "{line}"
        );
    }

    // Each member of the cluster opened its peer port on its LAN address,
    // and the status says that it and the client port are open without
    // authentication (a lone node opens no peer port: tests/vm/kv.rs).
    for (i, n) in nodes.iter_mut().enumerate() {
        let kv = n.vm().status().kv.expect("the kv part of the status");
        assert_eq!(kv.peer, [format!("{}:2380", lan_ip(i))], "{kv:?}");
        assert_eq!(kv.warnings.len(), 2, "{kv:?}");
        assert!(
            kv.warnings[0].starts_with("kv: client port 0.0.0.0:2379 listens beyond loopback")
                && kv.warnings[1]
                    .starts_with(&format!("kv: peer port {}:2380 has no TLS", lan_ip(i))),
            "{kv:?}"
        );
    }

    // A write through a follower (which forwards it to the leader) is read,
    // linearizably, through every member.
    let follower = (leader + 1) % 3;
    if let Err(e) = nodes[follower].put("/cluster/greeting", "hello") {
        panic!("{e}");
    }
    for n in &nodes {
        assert_eq!(n.quorum_get("/cluster/greeting").as_deref(), Ok("hello"));
        let (ok, out, err) = n.etcdctl(&["get", "/cluster/greeting"]);
        assert!(
            ok && out == "hello\n",
            "{}: etcdctl get: {out}{err}",
            n.name
        );
    }

    // The leader's VM is lost (qemu killed: no shutdown in the guest).
    let lost_at = Instant::now();
    nodes[leader].vm().kill();
    let survivors: Vec<usize> = all.into_iter().filter(|&i| i != leader).collect();
    let (new_leader, elected) = wait("a new leader among the two left", || {
        agreed_leader(&nodes, &survivors)
    });
    eprintln!(
        "cluster: {} lost, {} leads {elected:?} later",
        NAMES[leader], NAMES[new_leader]
    );
    // Writes go on through either survivor; the earlier data is still there.
    for &i in &survivors {
        let n = &nodes[i];
        wait(&format!("{}: a write after the loss", n.name), || {
            n.put(&format!("/cluster/after-{}", n.name), "written")
        });
        assert_eq!(n.quorum_get("/cluster/greeting").as_deref(), Ok("hello"));
    }
    let (ok, out, err) = nodes[survivors[0]].etcdctl(&["set", "/cluster/count", "2"]);
    assert!(ok && out == "2\n", "etcdctl set: {out}{err}");
    assert_eq!(
        nodes[survivors[1]].quorum_get("/cluster/count").as_deref(),
        Ok("2")
    );
    for &i in &survivors {
        let h = nodes[i].get("/health").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h["health"], "true", "{}: /health: {h}", nodes[i].name);
    }

    // The lost node boots again from its disk and catches up: it follows
    // the new leader and serves what was written while it was away.
    nodes[leader].boot(&lan, leader);
    nodes[leader].vm().wait_ready();
    let n = &nodes[leader];
    wait(&format!("{}: caught up", n.name), || {
        let v = n.quorum_get(&format!("/cluster/after-{}", NAMES[survivors[0]]))?;
        if v == "written" {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });
    assert_eq!(n.quorum_get("/cluster/count").as_deref(), Ok("2"));
    assert_eq!(n.quorum_get("/cluster/greeting").as_deref(), Ok("hello"));
    // It came back as itself (its identity and log are on its disk), not
    // as a fourth member.
    assert_eq!(n.members().as_deref(), Ok(&NAMES.map(String::from)[..]));
    wait("the three agree on a leader again", || {
        agreed_leader(&nodes, &all)
    });
    eprintln!(
        "cluster: {} back in {:?}; {:?} in all",
        NAMES[leader],
        lost_at.elapsed(),
        t0.elapsed()
    );

    // Past the quota, through one member: etcd's error, and the NOSPACE
    // alarm goes through Raft to every member.
    let x = (leader + 1) % 3;
    let value = "x".repeat(4096);
    let mut filled = 0;
    let cause = loop {
        let req = Request::form(
            "PUT",
            &format!("/v2/keys/fill/{filled}"),
            &format!("value={value}"),
        );
        let (st, v) = nodes[x].call(&req).unwrap_or_else(|e| panic!("{e}"));
        if st != 201 {
            assert_eq!((st, &v["errorCode"]), (500, &Value::from(300)), "{v}");
            break v["cause"].as_str().unwrap_or_default().to_string();
        }
        filled += 1;
        assert!(filled < 40, "64 KiB of quota took {filled} writes of 4 KiB");
    };
    assert!(filled >= 10, "refused after {filled} writes: {cause}");
    assert!(
        cause.starts_with("etcdserver: mvcc: database space exceeded")
            && cause.contains("quota-backend-bytes is 65536"),
        "{cause}"
    );
    for n in &nodes {
        wait(&format!("{}: refusing a small write", n.name), || {
            match n.put("/cluster/small", "1") {
                Err(e) if e.contains("database space exceeded") => Ok(()),
                Err(e) => Err(e),
                Ok(()) => Err(format!("{}: took a write past the quota", n.name)),
            }
        });
        // Reads go on.
        assert_eq!(n.quorum_get("/cluster/greeting").as_deref(), Ok("hello"));
    }
    let y = (x + 1) % 3;
    let (ok, out, err) = nodes[y].vm().keelctl(&["kv", "alarm", "list"]);
    assert!(ok, "keelctl kv alarm list: {out}{err}");
    assert!(
        out.contains("NOSPACE") && out.contains(" quota ") && out.contains(NAMES[x]),
        "{out}"
    );
    let (ok, out, err) = nodes[y].vm().keelctl(&["status"]);
    assert!(
        ok && out.contains("ALARM      kv NOSPACE"),
        "keelctl status: {out}{err}"
    );
    // Deletes go on; the alarm stays until it is disarmed.
    for i in 0..filled {
        let (st, v) = nodes[y]
            .call(&Request::new("DELETE", &format!("/v2/keys/fill/{i}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(st, 200, "{v}");
    }
    let e = nodes[x].put("/cluster/small", "1").unwrap_err();
    assert!(e.contains("database space exceeded"), "{e}");
    // A read-only certificate may list the alarms, not disarm them.
    let pki = keel_vmtests::test_pki();
    let reader = |sub: &str| {
        Command::new(keel_vmtests::release_bin("keelctl"))
            .args(["--endpoint", &nodes[y].vms.last().unwrap().endpoint()])
            .arg("--cacert")
            .arg(pki.file("ca.pem"))
            .arg("--cert")
            .arg(pki.file("reader.pem"))
            .arg("--key")
            .arg(pki.file("reader-key.pem"))
            .args(["kv", "alarm", sub])
            .output()
            .expect("keelctl")
    };
    let list = reader("list");
    assert!(list.status.success(), "{list:?}");
    let refused = reader("disarm");
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && text.contains("403"),
        "{refused:?}"
    );
    let (ok, out, err) = nodes[y].vm().keelctl(&["kv", "alarm", "disarm"]);
    assert!(
        ok && out.contains("disarmed 1 alarm(s)"),
        "keelctl kv alarm disarm: {out}{err}"
    );
    for n in &nodes {
        wait(&format!("{}: a write after the disarm", n.name), || {
            n.put(&format!("/cluster/disarmed-{}", n.name), "written")
        });
    }
    let (ok, out, err) = nodes[x].vm().keelctl(&["kv", "alarm", "list"]);
    assert!(
        ok && out.contains("no alarms"),
        "keelctl kv alarm list: {out}{err}"
    );

    for vm in nodes.iter().flat_map(|n| &n.vms) {
        vm.assert_no_fatal();
    }
}

//! Privileged: the whole bridge in scratch network namespaces.
//!
//! A "node" namespace (created here, never the host's own) holds keel0 and
//! keel's table; a "container" is `unshare -n sleep` started from it; an
//! "outside" namespace on a veth plays another host. `ip`, `nsenter` and
//! `nft -j` are the oracles; connections carry the peer address the server
//! saw, so NAT is checked by what a server observes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command};
use std::time::Duration;

use keel_sys::netns::{self, NetNs};
use serde_json::Value;

use super::*;

struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn inode(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

/// A process in a network namespace of its own, started from this thread's.
fn container() -> Sleeper {
    let c = Command::new("unshare")
        .args(["-n", "sleep", "300"])
        .spawn()
        .expect("start unshare -n sleep");
    let pid = c.id();
    let s = Sleeper(c);
    let mine = inode("/proc/thread-self/ns/net");
    for _ in 0..200 {
        if inode(&format!("/proc/{pid}/ns/net")) != mine {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("unshare -n did not leave the namespace");
}

fn run(cmd: &[&str]) -> String {
    let o = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn json(cmd: &[&str]) -> Value {
    serde_json::from_str(&run(cmd)).unwrap()
}

/// A TCP server answering each of `n` connections with the peer address
/// it saw, then closing.
fn serve(l: TcpListener, n: usize) {
    std::thread::spawn(move || {
        for c in l.incoming().take(n) {
            let Ok(mut c) = c else { continue };
            let peer = c
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let _ = c.write_all(peer.as_bytes());
        }
    });
}

/// Whether a connection to `to` from this thread's namespace times out
/// (a dropped SYN), as opposed to being answered (accepted or refused).
fn dropped(to: &str) -> bool {
    let a: SocketAddr = to.parse().unwrap();
    match TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
        Err(e) => e.kind() == std::io::ErrorKind::TimedOut,
        Ok(_) => false,
    }
}

/// Connect to `to` from this thread's namespace; what the server said.
fn ask(to: &str) -> String {
    let a: SocketAddr = to.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn port(h: u16, c: u16, proto: &str) -> Port {
    Port::try_from(format!("{h}:{c}/{proto}").as_str()).unwrap()
}

/// Whether `v` holds `want` somewhere (objects match on the keys of `want`).
fn holds(v: &Value, want: &Value) -> bool {
    let here = match (v, want) {
        (Value::Object(a), Value::Object(b)) => b
            .iter()
            .all(|(k, wv)| a.get(k).is_some_and(|av| av == wv || holds(av, wv))),
        _ => v == want,
    };
    here || match v {
        Value::Object(m) => m.values().any(|x| holds(x, want)),
        Value::Array(a) => a.iter().any(|x| holds(x, want)),
        _ => false,
    }
}

fn rules_of<'a>(table: &'a Value, chain: &str) -> Vec<&'a Value> {
    table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r["chain"] == chain)
        .map(|r| &r["expr"])
        .collect()
}

/// Root and the oracles (util-linux, iproute2, nftables); skips without.
fn tools() -> bool {
    keel_testkit::need_root()
        && [
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("ip", "iproute2"),
            ("nft", "nftables"),
        ]
        .iter()
        .all(|(t, p)| keel_testkit::need_command(t, p))
}

#[test]
fn privileged_bridge_end_to_end() {
    if !tools() {
        return;
    }
    // As root, keel's own namespace code must work: an error fails the test.
    let node = netns::create().expect("create the node's network namespace");
    let outside = netns::create().expect("create the outside network namespace");
    let state = tempfile::tempdir().unwrap();
    netns::run_in(node.as_fd(), || in_node(outside.as_fd(), state.path())).unwrap();
}

fn in_node(outside: std::os::fd::BorrowedFd<'_>, state: &Path) {
    // The other host: 198.51.100.2 on a link to the node's 198.51.100.1, with
    // no route back to the bridge's subnet.
    let mut r = Rtnl::open().unwrap();
    r.link_up("lo").unwrap();
    r.create_veth("out0", "eth0", NetNs::Fd(outside)).unwrap();
    r.add_address("out0", "198.51.100.1".parse().unwrap(), 24)
        .unwrap();
    r.link_up("out0").unwrap();
    let mut o = Rtnl::open_in(NetNs::Fd(outside)).unwrap();
    o.link_up("lo").unwrap();
    o.add_address("eth0", "198.51.100.2".parse().unwrap(), 24)
        .unwrap();
    o.link_up("eth0").unwrap();

    // The node's "KV": a port on every address of the node, the door of
    // `node_port: kv`.
    let kv = TcpListener::bind("0.0.0.0:0").unwrap();
    let kv_port = kv.local_addr().unwrap().port();
    serve(kv, 3);
    let config = BridgeConfig {
        kv_port: Some(kv_port),
        ..BridgeConfig::default()
    };
    let mut b = Bridge::setup(config.clone(), Path::new("/proc"), state).unwrap();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let sleeper = container();
    let pid = sleeper.0.id() as i32;
    let p = b.prepare("web", "web", "nameserver 127.0.0.53\n").unwrap();
    assert_eq!(p.ip, Ipv4Addr::new(10, 88, 0, 2));
    assert_eq!(p.resolv_conf, "nameserver 1.1.1.1\nnameserver 8.8.8.8\n");
    let a = b
        .attach(
            "web",
            NetNs::Pid(pid),
            &[port(8080, 80, "tcp"), port(5353, 53, "udp")],
            None,
        )
        .unwrap();
    assert_eq!(
        (a.ip, a.gateway, a.prefix),
        (p.ip, Ipv4Addr::new(10, 88, 0, 1), 16)
    );

    // Inside: eth0 with its address, up, and the default route.
    let t = pid.to_string();
    let addrs = json(&[
        "nsenter", "-t", &t, "-n", "ip", "-j", "addr", "show", "eth0",
    ]);
    assert!(
        holds(
            &addrs,
            &serde_json::json!({"ifname": "eth0", "operstate": "UP"})
        ) || holds(
            &addrs,
            &serde_json::json!({"ifname": "eth0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]})
        ),
        "{addrs}"
    );
    assert!(
        holds(
            &addrs,
            &serde_json::json!({"local": "10.88.0.2", "prefixlen": 16})
        ),
        "{addrs}"
    );
    let routes = json(&["nsenter", "-t", &t, "-n", "ip", "-j", "route"]);
    assert!(
        holds(
            &routes,
            &serde_json::json!({"dst": "default", "gateway": "10.88.0.1", "dev": "eth0"})
        ),
        "{routes}"
    );
    // Outside: the host end on keel0.
    let link = json(&["ip", "-j", "link", "show", &a.host_veth]);
    assert!(
        holds(&link, &serde_json::json!({"master": "keel0"})),
        "{link}"
    );

    // The table, read back by nft.
    let table = json(&["nft", "-j", "list", "table", "ip", "keel"]);
    for (chain, hook, prio) in [
        ("prerouting", "prerouting", -100),
        ("output", "output", -100),
        ("postrouting", "postrouting", 100),
    ] {
        assert!(
            holds(
                &table,
                &serde_json::json!({"chain": {"name": chain, "type": "nat", "hook": hook, "prio": prio}})
            ),
            "{chain}: {table}"
        );
    }
    let post = rules_of(&table, "postrouting");
    let masq = serde_json::json!({"masquerade": null});
    let subnet = serde_json::json!({"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}});
    let not_keel0 = serde_json::json!({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "keel0"}});
    assert!(
        post.iter()
            .any(|r| holds(r, &subnet) && holds(r, &not_keel0) && holds(r, &masq)),
        "ip saddr 10.88.0.0/16 oifname != keel0 masquerade: {post:?}"
    );
    for chain in ["prerouting", "output"] {
        let rules = rules_of(&table, chain);
        let tcp = serde_json::json!({"match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}});
        let to = serde_json::json!({"dnat": {"addr": "10.88.0.2", "port": 80}});
        let udp = serde_json::json!({"match": {"left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5353}});
        let to53 = serde_json::json!({"dnat": {"addr": "10.88.0.2", "port": 53}});
        assert!(
            rules.iter().any(|r| holds(r, &tcp) && holds(r, &to)),
            "{chain}: {rules:?}"
        );
        assert!(
            rules.iter().any(|r| holds(r, &udp) && holds(r, &to53)),
            "{chain}: {rules:?}"
        );
    }

    // The guard, read back by nft: an inet filter on the input hook.
    let guard = json(&["nft", "-j", "list", "table", "inet", "keel_guard"]);
    assert!(
        holds(
            &guard,
            &serde_json::json!({"chain": {"name": "input", "type": "filter", "hook": "input", "prio": 0}})
        ),
        "{guard}"
    );
    let input = rules_of(&guard, "input");
    let from_keel0 =
        serde_json::json!({"match": {"left": {"meta": {"key": "iifname"}}, "right": "keel0"}});
    assert!(
        input
            .last()
            .is_some_and(|r| holds(r, &serde_json::json!({"drop": null})) && holds(r, &from_keel0)),
        "iifname keel0 drop, last: {input:?}"
    );

    // The container reaches none of the node's ports, on the bridge's
    // address nor on another of the node's: its SYN is dropped (a refusal
    // would show the port is there). Control: from the node itself, the
    // same ports answer on both.
    let at_node = TcpListener::bind("0.0.0.0:0").unwrap();
    let node_port = at_node.local_addr().unwrap().port();
    serve(at_node, 2);
    for addr in ["10.88.0.1", "198.51.100.1"] {
        for p in [node_port, kv_port] {
            let to = format!("{addr}:{p}");
            assert!(
                netns::run_in_ns(NetNs::Pid(pid), || dropped(&to)).unwrap(),
                "the container reached {to}"
            );
        }
    }
    for addr in ["10.88.0.1", "198.51.100.1"] {
        // Answered, from one of the node's own addresses.
        let peer = ask(&format!("{addr}:{node_port}"));
        assert!(peer == "10.88.0.1" || peer == "198.51.100.1", "{peer}");
    }

    // A server on port 80 of the container, reached through 8080 of the node.
    let web = netns::run_in_ns(NetNs::Pid(pid), || TcpListener::bind("0.0.0.0:80"))
        .unwrap()
        .unwrap();
    serve(web, 3);
    // From the node itself (the output chain).
    assert_eq!(ask("10.88.0.1:8080"), "10.88.0.1");
    // From another host (prerouting): its address is kept.
    let seen = netns::run_in(outside, || ask("198.51.100.1:8080")).unwrap();
    assert_eq!(seen, "198.51.100.2", "DNAT preserves the client's address");
    // From the container to the node's published port: hairpin, through the node.
    let seen = netns::run_in_ns(NetNs::Pid(pid), || ask("10.88.0.1:8080")).unwrap();
    assert_eq!(seen, "10.88.0.1", "hairpin connections are masqueraded");

    // Out of the node: masqueraded behind the node's outside address.
    let far = netns::run_in(outside, || TcpListener::bind("0.0.0.0:9000"))
        .unwrap()
        .unwrap();
    serve(far, 1);
    let seen = netns::run_in_ns(NetNs::Pid(pid), || ask("198.51.100.2:9000")).unwrap();
    assert_eq!(seen, "198.51.100.1", "outbound traffic is masqueraded");

    // A second container cannot take the same node port, and gets the next address.
    let other = container();
    let e = b
        .attach(
            "db",
            NetNs::Pid(other.0.id() as i32),
            &[port(8080, 81, "tcp")],
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("web publishes it already"), "{e}");
    assert!(
        Command::new("ip")
            .args(["link", "show", &host_veth("db")])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0),
        "a refused attach leaves no veth"
    );
    // With `node_port: kv` it reaches the KV's port, on any address of the
    // node, and no other port; the first container still reaches neither.
    let db_pid = other.0.id() as i32;
    let db = b
        .attach("db", NetNs::Pid(db_pid), &[], Some(NodePort::Kv))
        .unwrap();
    assert_eq!(db.ip, Ipv4Addr::new(10, 88, 0, 3));
    assert_eq!(
        db.door,
        Some(Door {
            ip: db.ip,
            port: kv_port
        })
    );
    for addr in ["10.88.0.1", "198.51.100.1"] {
        let seen = netns::run_in_ns(NetNs::Pid(db_pid), || ask(&format!("{addr}:{kv_port}")));
        assert_eq!(seen.unwrap(), "10.88.0.3");
    }
    let to = format!("10.88.0.1:{node_port}");
    assert!(netns::run_in_ns(NetNs::Pid(db_pid), || dropped(&to)).unwrap());
    let to = format!("10.88.0.1:{kv_port}");
    assert!(netns::run_in_ns(NetNs::Pid(pid), || dropped(&to)).unwrap());
    // A node without a KV has no door to give.
    let mut no_kv = b.config().clone();
    no_kv.kv_port = None;
    let e = Bridge {
        config: no_kv,
        leases: state.join("bridge.json"),
        ipam: Ipam::load(&state.join("bridge.json"), b.config().subnet).unwrap(),
        ports: BTreeMap::new(),
        doors: BTreeMap::new(),
    }
    .door("x", db.ip, Some(NodePort::Kv))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("node_port kv") && e.contains("KV does not run"),
        "{e}"
    );

    // Detach: the veth and the rules go, the address is free again.
    b.detach("web").unwrap();
    let gone = Command::new("ip")
        .args(["link", "show", &a.host_veth])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the host end is deleted");
    assert!(run(&["nsenter", "-t", &t, "-n", "ip", "-j", "link"]).contains("\"lo\""));
    assert!(!run(&["nsenter", "-t", &t, "-n", "ip", "-j", "link"]).contains("eth0"));
    assert_eq!(b.address("web"), None);
    let table = json(&["nft", "-j", "list", "table", "ip", "keel"]);
    assert!(rules_of(&table, "prerouting").is_empty(), "{table}");
    assert_eq!(rules_of(&table, "postrouting").len(), 2);
    let guard = json(&["nft", "-j", "list", "table", "inet", "keel_guard"]);
    assert_eq!(
        rules_of(&guard, "input").len(),
        3,
        "db's door stays: {guard}"
    );
    let leases = std::fs::read_to_string(state.join("bridge.json")).unwrap();
    assert!(!leases.contains("web") && leases.contains("db"), "{leases}");
    b.detach("web").unwrap();

    // A container that died before its detach: its pair went with its namespace.
    drop(other);
    std::thread::sleep(Duration::from_millis(100));
    b.detach("db").unwrap();
    let guard = json(&["nft", "-j", "list", "table", "inet", "keel_guard"]);
    assert_eq!(
        rules_of(&guard, "input").len(),
        2,
        "db's door is closed: {guard}"
    );

    // Setting up again (keel restarted) takes over the bridge and the leases.
    let b2 = Bridge::setup(config, Path::new("/proc"), state).unwrap();
    assert_eq!(b2.address("db"), None);
    drop(sleeper);
}

//! VM test of keel's DHCP client against a real server with short leases:
//! busybox's udhcpd in a network namespace the test makes, on a tap there
//! that socat joins to the VM's second NIC (qemu's dgram netdev on a unix
//! socket). The launcher's user-mode NIC (eth0) keeps the API reachable
//! through the forwarded port. One boot, 10 s leases (T1 5 s, T2 8.75 s),
//! and each step is the control of the next:
//!
//! 1. the first lease: the address on eth1, the default route and the name
//!    server beside the link's static ones, the lease and its times in
//!    `GET /v1/network`;
//! 2. renew: at T1 the client asks the server by unicast (the namespace's
//!    nftables counters), keeps the address, and the lease's expiry moves on;
//! 3. rebind: with unicast to the server dropped, the renewal goes
//!    unanswered and at T2 a broadcast gets the ACK; the address stays;
//! 4. lost: with no server, at expiry (not before) the address, the route
//!    and the name server go; the static ones stay;
//! 5. changed: the server back with another address for the node's MAC: the
//!    new address comes, and the old one is never there with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_api::NetworkStatus;
use keel_vmtests::{Scratch, Vm, VmConfig};

const NIC_MAC: &str = "52:54:00:77:00:02";
const SERVER: &str = "10.77.0.1";
const FIRST: &str = "10.77.0.50/24";
const SECOND: &str = "10.77.0.60/24";
/// eth1's static address and name server, from its `.network` unit: a
/// lease comes and goes beside them.
const STATIC: &str = "10.78.0.2/24";
const STATIC_DNS: &str = "10.78.0.53";
const LEASE_S: u64 = 10;
/// Between two looks at the node.
const POLL: Duration = Duration::from_millis(250);

/// The server's side: a network namespace with the tap (socat relays its
/// frames to and from the VM's NIC), nftables counters of what reaches the
/// server, and udhcpd while it runs. Dropping it ends both and removes the
/// namespace.
struct Lan {
    ns: String,
    dir: PathBuf,
    relay: Option<Child>,
    server: Option<Child>,
    /// Server runs so far, each with its own log.
    runs: usize,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait for `what` until `deadline` (polling): `what` returns the value.
fn wait<T>(timeout: Duration, about: &str, mut what: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({timeout:?}) waiting for {about}"
        );
        std::thread::sleep(POLL);
    }
}

impl Lan {
    /// The namespace and the relay; the VM's side of the relay is
    /// `qemu_sock`, bound by qemu once it starts.
    fn new(dir: &Path, qemu_sock: &Path) -> Lan {
        let ns = format!("kdhcp-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &ns]));
        let mut lan = Lan {
            ns,
            dir: dir.to_path_buf(),
            relay: None,
            server: None,
            runs: 0,
        };
        // No IPv6 on the tap: the namespace sends nothing until the server
        // answers the VM (socat ends on a send to a socket not yet bound).
        lan.exec(&[
            "sh",
            "-c",
            "for f in /proc/sys/net/ipv6/conf/default/disable_ipv6 /proc/sys/net/ipv6/conf/all/disable_ipv6; \
             do [ ! -e $f ] || echo 1 > $f; done",
        ]);
        run(Command::new("ip").args(["-n", &lan.ns, "link", "set", "lo", "up"]));
        let relay_sock = dir.join("relay.sock");
        let log = std::fs::File::create(dir.join("socat.log")).expect("create socat.log");
        let relay = Command::new("ip")
            .args(["netns", "exec", &lan.ns, "socat"])
            .arg(format!(
                "UNIX-SENDTO:{},bind={}",
                qemu_sock.display(),
                relay_sock.display()
            ))
            .arg(format!(
                "TUN:{SERVER}/24,tun-type=tap,tun-name=kdh0,iff-no-pi,iff-up"
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup socat.log"))
            .stderr(log)
            .spawn()
            .expect("start socat");
        lan.relay = Some(relay);
        wait(Duration::from_secs(10), "socat's tap and socket", || {
            let up = Command::new("ip")
                .args(["-n", &lan.ns, "-br", "addr", "show", "kdh0"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(SERVER));
            (up && relay_sock.exists()).then_some(())
        });
        // Counters of the DHCP requests that reach the server, by
        // destination: its address (a renewal) or the broadcast (discover,
        // rebind).
        let rules = dir.join("counters.nft");
        std::fs::write(
            &rules,
            format!(
                "table inet kd {{
  counter unicast {{ }}
  counter broadcast {{ }}
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {SERVER} udp dport 67 counter name \"unicast\"
    ip daddr 255.255.255.255 udp dport 67 counter name \"broadcast\"
  }}
}}
"
            ),
        )
        .expect("write counters.nft");
        lan.exec(&["nft", "-f", &rules.to_string_lossy()]);
        lan
    }

    fn exec(&self, args: &[&str]) -> String {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args))
    }

    /// Start udhcpd, giving the node's MAC `address` for `LEASE_S` seconds.
    fn serve(&mut self, address: &str) {
        assert!(self.server.is_none(), "udhcpd runs already");
        self.runs += 1;
        let ip = address.split('/').next().unwrap_or(address);
        let conf = self.dir.join(format!("udhcpd-{}.conf", self.runs));
        let leases = self.dir.join(format!("leases-{}", self.runs));
        std::fs::write(&leases, "").expect("create the lease file");
        std::fs::write(
            &conf,
            format!(
                "interface kdh0
start 10.77.0.100
end 10.77.0.120
max_leases 21
lease_file {leases}
pidfile {pid}
static_lease {NIC_MAC} {ip}
option subnet 255.255.255.0
option router {SERVER}
option dns {SERVER}
option lease {LEASE_S}
",
                leases = leases.display(),
                pid = self.dir.join(format!("udhcpd-{}.pid", self.runs)).display(),
            ),
        )
        .expect("write udhcpd.conf");
        let log = std::fs::File::create(self.log(self.runs)).expect("create udhcpd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "/bin/busybox", "udhcpd", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup udhcpd log"))
            .stderr(log)
            .spawn()
            .expect("start udhcpd");
        self.server = Some(child);
        wait(Duration::from_secs(10), "udhcpd to start", || {
            std::fs::read_to_string(self.log(self.runs))
                .ok()
                .filter(|t| t.contains("started"))
                .map(|_| ())
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self, run: usize) -> PathBuf {
        self.dir.join(format!("udhcpd-{run}.log"))
    }

    /// Everything the server runs logged.
    fn logs(&self) -> String {
        (1..=self.runs)
            .map(|r| std::fs::read_to_string(self.log(r)).unwrap_or_default())
            .collect()
    }

    /// ACKs the server sent so far.
    fn acks(&self) -> usize {
        self.logs().matches("sending ACK to").count()
    }

    /// Drop what is sent to the server's address: renewals go unanswered,
    /// broadcasts still reach it.
    fn drop_unicast(&self) {
        self.exec(&[
            "nft", "add", "rule", "inet", "kd", "input", "ip", "daddr", SERVER, "udp", "dport",
            "67", "drop",
        ]);
    }

    /// (unicast, broadcast) requests that reached the server's namespace.
    fn counters(&self) -> (u64, u64) {
        let json = self.exec(&["nft", "-j", "list", "counters", "table", "inet", "kd"]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("nft -j output");
        let count = |name: &str| {
            v["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["counter"]["name"] == name)
                .and_then(|o| o["counter"]["packets"].as_u64())
                .unwrap_or_else(|| panic!("no counter {name} in {json}"))
        };
        (count("unicast"), count("broadcast"))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut r) = self.relay.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        if std::thread::panicking() {
            eprintln!("udhcpd logs:\n{}", self.logs());
            eprintln!(
                "socat: {}",
                std::fs::read_to_string(self.dir.join("socat.log")).unwrap_or_default()
            );
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// What one look at the node shows of eth1 and the lease.
struct Look {
    net: NetworkStatus,
    eth1: Vec<String>,
    /// The node's uptime right after, in ms.
    uptime_ms: u64,
}

impl Look {
    fn take(vm: &Vm) -> Look {
        let net = vm.network();
        let uptime_ms = vm.status().uptime_ms as u64;
        let eth1 = net
            .links
            .iter()
            .find(|l| l.name == "eth1")
            .map(|l| l.addresses.clone())
            .unwrap_or_else(|| panic!("no eth1: {net:?}"));
        let look = Look {
            net,
            eth1,
            uptime_ms,
        };
        // What holds at every look: the static settings stay, the old and
        // the new address are never on the link together.
        assert!(
            look.has(STATIC),
            "eth1 lost its static address: {:?}",
            look.eth1
        );
        assert!(
            look.net.dns.iter().any(|d| d == STATIC_DNS),
            "the static name server is gone: {:?}",
            look.net.dns
        );
        assert!(
            !(look.has(FIRST) && look.has(SECOND)),
            "eth1 has the old and the new address: {:?}",
            look.eth1
        );
        look
    }

    fn has(&self, addr: &str) -> bool {
        self.eth1.iter().any(|a| a == addr)
    }

    fn lease(&self) -> Option<&keel_api::DhcpLease> {
        self.net.dhcp.as_ref()
    }

    fn acked(&self) -> u64 {
        self.lease().and_then(|l| l.acked_ms).unwrap_or(0)
    }

    fn default_route(&self) -> bool {
        self.net.routes.iter().any(|r| {
            r.destination == "0.0.0.0/0"
                && r.gateway.as_deref() == Some(SERVER)
                && r.dev.as_deref() == Some("eth1")
        })
    }

    fn lease_dns(&self) -> usize {
        self.net.dns.iter().filter(|d| *d == SERVER).count()
    }
}

/// Look until `done` says so (returning its value) or `timeout` passes;
/// `each` checks every look on the way.
fn watch<T>(
    vm: &Vm,
    timeout: Duration,
    about: &str,
    mut each: impl FnMut(&Look),
    mut done: impl FnMut(&Look) -> Option<T>,
) -> (T, Look) {
    let deadline = Instant::now() + timeout;
    loop {
        let look = Look::take(vm);
        each(&look);
        if let Some(v) = done(&look) {
            return (v, look);
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({timeout:?}) waiting for {about}; eth1 {:?}, lease {:?}, routes {:?}, dns {:?}",
            look.eth1,
            look.lease(),
            look.net.routes,
            look.net.dns
        );
        std::thread::sleep(POLL);
    }
}

/// How long from now until the node's uptime reaches `at_ms`, plus `slack`.
fn until(look: &Look, at_ms: u64, slack: Duration) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(look.uptime_ms)) + slack
}

fn user_data() -> String {
    // With .network units, keel.ip= no longer applies: eth0 gets the
    // launcher's address, and no gateway, so that the default route is the
    // lease's.
    format!(
        "#cloud-config
coreos:
  units:
    - name: 10-host.network
      content: |
        [Match]
        Name=eth0
        [Network]
        Address=10.0.2.15/24
    - name: 20-lan.network
      content: |
        [Match]
        Name=eth1
        [Network]
        Address={STATIC}
        DNS={STATIC_DNS}
        DHCP=yes
"
    )
}

#[test]
fn dhcp_renews_rebinds_and_drops_a_lost_or_changed_lease() {
    if !keel_testkit::need_root() {
        return;
    }
    if !Path::new("/dev/net/tun").exists() {
        keel_testkit::skip("no /dev/net/tun");
        return;
    }
    if !keel_testkit::need_command("socat", "socat")
        || !keel_testkit::need_command("nft", "nftables")
        || !keel_testkit::need_command("ip", "iproute2")
    {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        keel_testkit::skip("/bin/busybox missing (Debian package busybox-static)");
        return;
    }
    let s = Scratch::new("dhcp");
    let qemu_sock = s.path("qemu.sock");
    let mut lan = Lan::new(&s.0, &qemu_sock);
    lan.serve(FIRST);
    let config = s.path("user-data");
    std::fs::write(&config, user_data()).expect("write user-data");
    let mut cfg = VmConfig::new("dhcp-lease");
    cfg.cloud_config(&config);
    cfg.dgram_nic(&qemu_sock, &s.path("relay.sock"), NIC_MAC);
    let mut vm = Vm::start(cfg);
    let t0 = Instant::now();
    vm.wait_ready();
    eprintln!("dhcp: ready after {:.1?}", t0.elapsed());

    // 1. The first lease.
    let step = Instant::now();
    let (_, l1) = watch(
        &vm,
        Duration::from_secs(60),
        "the first lease",
        |_| {},
        |l| {
            (l.has(FIRST)
                && l.lease().is_some_and(|d| d.address == FIRST)
                && l.default_route()
                && l.lease_dns() == 1)
                .then_some(())
        },
    );
    let d1 = l1.lease().cloned().expect("a lease");
    assert_eq!(d1.link, "eth1");
    assert_eq!(d1.server.as_deref(), Some(SERVER), "{d1:?}");
    assert_eq!(d1.router.as_deref(), Some(SERVER), "{d1:?}");
    assert_eq!(d1.lease_s, Some(LEASE_S), "{d1:?}");
    let (acked, renew, rebind, expires) = (
        d1.acked_ms.expect("acked_ms"),
        d1.renew_ms.expect("renew_ms"),
        d1.rebind_ms.expect("rebind_ms"),
        d1.expires_ms.expect("expires_ms"),
    );
    assert!(
        acked < renew && renew < rebind && rebind < expires && expires - acked == LEASE_S * 1000,
        "{d1:?}"
    );
    assert!(
        acked <= l1.uptime_ms && l1.uptime_ms < expires,
        "{d1:?} at {}",
        l1.uptime_ms
    );
    let c1 = lan.counters();
    let acks1 = lan.acks();
    eprintln!("dhcp: 1 first lease {FIRST} in {:.1?}", step.elapsed());

    // 2. Renew: at T1, unicast to the server; the same address, the expiry
    // later.
    let step = Instant::now();
    let (_, l2) = watch(
        &vm,
        until(&l1, renew, Duration::from_secs(15)),
        "a renewal (the lease acked again)",
        |l| {
            assert!(
                l.has(FIRST),
                "the address went during the renewal: {:?}",
                l.eth1
            )
        },
        |l| (l.acked() > acked).then_some(()),
    );
    let d2 = l2.lease().cloned().expect("a lease");
    assert_eq!(d2.address, FIRST);
    assert!(
        d2.expires_ms > d1.expires_ms,
        "expiry did not move on: {d1:?} -> {d2:?}"
    );
    let acked2 = l2.acked();
    assert!(
        acked2 + 100 >= renew && acked2 < rebind,
        "renewed at {acked2}, not between T1 {renew} and T2 {rebind}"
    );
    let c2 = lan.counters();
    assert!(
        c2.0 > c1.0,
        "no unicast request reached the server: {c1:?} -> {c2:?}"
    );
    assert_eq!(
        c2.1, c1.1,
        "a broadcast during the renewal: {c1:?} -> {c2:?}"
    );
    assert!(lan.acks() > acks1, "the server logged no new ACK");
    eprintln!("dhcp: 2 renewed in {:.1?}", step.elapsed());

    // 3. Rebind: unicast to the server dropped; at T2 a broadcast.
    let step = Instant::now();
    lan.drop_unicast();
    let c2 = lan.counters();
    let rebind2 = d2.rebind_ms.expect("rebind_ms");
    let (_, l3) = watch(
        &vm,
        until(&l2, rebind2, Duration::from_secs(15)),
        "a rebind (the lease acked again after T2)",
        |l| {
            assert!(
                l.has(FIRST),
                "the address went before the rebind: {:?}",
                l.eth1
            )
        },
        |l| (l.acked() > acked2).then_some(()),
    );
    let d3 = l3.lease().cloned().expect("a lease");
    assert_eq!(d3.address, FIRST);
    assert!(d3.expires_ms > d2.expires_ms, "{d2:?} -> {d3:?}");
    let acked3 = l3.acked();
    assert!(
        acked3 + 100 >= rebind2,
        "acked at {acked3}, before T2 {rebind2}: not a rebind"
    );
    let c3 = lan.counters();
    assert!(
        c3.0 > c2.0,
        "no renewal tried before the rebind: {c2:?} -> {c3:?}"
    );
    assert!(c3.1 > c2.1, "no broadcast rebind: {c2:?} -> {c3:?}");
    eprintln!("dhcp: 3 rebound in {:.1?}", step.elapsed());

    // 4. Lost: no server; at expiry (not before) the lease's address,
    // route and name server go.
    let step = Instant::now();
    lan.stop();
    let expires3 = d3.expires_ms.expect("expires_ms");
    watch(
        &vm,
        until(&l3, expires3, Duration::from_secs(15)),
        "the lost lease's address to go",
        |l| {
            if l.uptime_ms + 300 < expires3 {
                assert!(
                    l.has(FIRST) && l.lease().is_some(),
                    "the lease went at {} before its expiry {expires3}: {:?}",
                    l.uptime_ms,
                    l.eth1
                );
            }
        },
        |l| (!l.has(FIRST)).then_some(()),
    );
    // What went with it (at once, or within a few looks).
    watch(
        &vm,
        Duration::from_secs(5),
        "the route, name server and lease to go with the address",
        |l| assert!(!l.has(FIRST), "the address came back: {:?}", l.eth1),
        |l| (l.lease().is_none() && !l.default_route() && l.lease_dns() == 0).then_some(()),
    );
    assert!(
        vm.console().contains(&format!(
            "eth1: DHCP lease of {FIRST} router {SERVER} lost: address removed"
        )),
        "no lost-lease line on the console"
    );
    eprintln!("dhcp: 4 lost in {:.1?}", step.elapsed());

    // 5. Changed: the server back with another address for the node.
    let step = Instant::now();
    lan.serve(SECOND);
    let (_, l5) = watch(
        &vm,
        Duration::from_secs(40),
        "the changed lease",
        |l| assert!(!l.has(FIRST), "the old address came back: {:?}", l.eth1),
        |l| {
            (l.has(SECOND)
                && l.lease().is_some_and(|d| d.address == SECOND)
                && l.default_route()
                && l.lease_dns() == 1)
                .then_some(())
        },
    );
    let d5 = l5.lease().cloned().expect("a lease");
    assert_eq!(
        d5.first_lease_ms, d1.first_lease_ms,
        "first_lease_ms is the first lease's"
    );
    // A few more looks: the old address stays gone.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        let l = Look::take(&vm);
        assert!(l.has(SECOND) && !l.has(FIRST), "{:?}", l.eth1);
        std::thread::sleep(POLL);
    }
    let (ok, out, err) = vm.keelctl(&["network"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "dhcp       eth1 {SECOND} router {SERVER} dns {SERVER}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("lease      {LEASE_S} s from {SERVER}: acked at")),
        "{out}"
    );
    eprintln!("dhcp: 5 changed to {SECOND} in {:.1?}", step.elapsed());
    eprintln!(
        "dhcp: whole test {:.1?} after qemu started",
        vm.started.elapsed()
    );
    vm.assert_kernel_alive();
    vm.assert_no_fatal();
}

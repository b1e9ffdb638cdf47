//! Human-readable renderings of API answers.

use std::fmt::Write;

use keel_api::{NodeMode, Status};

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// `keelctl status` as a table.
/// A byte count for people: B, KiB or MiB.
fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..0x10_0000 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The API's doors, and how long its certificate has left (by this
/// machine's clock).
fn api(o: &mut String, a: &keel_api::ApiStatus, now: i64) {
    if a.note.is_empty() {
        return;
    }
    let _ = writeln!(o, "api        {}", a.note);
    if let (Some(t), Some(unix)) = (&a.cert_not_after, a.cert_not_after_unix) {
        let days = (unix - now).div_euclid(86_400);
        let when = if unix <= now {
            "EXPIRED".to_string()
        } else {
            format!("{days} days left")
        };
        let _ = writeln!(
            o,
            "api cert   {} valid until {t} ({when})",
            a.cert_subject.as_deref().unwrap_or("(no CN)")
        );
    }
}

/// The node's mode for the first line, and what explains it, for the
/// lines right under it.
fn mode(s: &Status) -> (String, Vec<String>) {
    match s.mode {
        NodeMode::Normal => (serde_json_state(s), Vec::new()),
        NodeMode::Maintenance => (
            "MAINTENANCE: the config has errors, nothing of it was applied".into(),
            s.config.errors.clone(),
        ),
        NodeMode::Rescue => {
            let mut why: Vec<String> = s
                .root
                .refused
                .iter()
                .map(|r| format!("slot {} refused: {}", r.slot, r.reason))
                .collect();
            if why.is_empty() {
                why.push("no OS slot found (no keel disk, no diskless slot)".into());
            }
            (
                "RESCUE: no OS slot could be trusted, running from the initramfs".into(),
                why,
            )
        }
    }
}

pub fn status(s: &Status) -> String {
    let mut o = String::new();
    let (mode, why) = mode(s);
    let _ = writeln!(
        o,
        "node       {} (keel {}), {mode}, up {:.1} s",
        s.hostname,
        s.version,
        s.uptime_ms / 1000.0
    );
    for w in why {
        let _ = writeln!(o, "  {w}");
    }
    let _ = writeln!(
        o,
        "memory     {} used of {}, keel RSS {}",
        mib(s.memory.used_kb),
        mib(s.memory.total_kb),
        mib(s.memory.pid1_rss_kb)
    );
    let _ = writeln!(
        o,
        "processes  {} running, {} zombies, {} reaped since boot",
        s.processes.total, s.processes.zombies, s.processes.reaped
    );
    let ready = match s.boot.pid1_to_ready_ms() {
        Some(ms) => format!("ready {ms:.1} ms after keel started"),
        None => "not ready yet".to_string(),
    };
    let _ = writeln!(
        o,
        "boot       keel started {:.1} ms after the kernel, {ready}",
        s.boot.pid1_start_ms
    );
    root(&mut o, &s.root);
    kernel(&mut o, &s.kernel);
    let _ = writeln!(o, "config     {}", config_source(&s.config));
    kv(&mut o, s.kv.as_ref());
    api(&mut o, &s.api, now_unix());
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<32} {:>10} {:>12}  RESULT",
        "PHASE / TASK", "START ms", "DURATION ms"
    );
    for p in &s.boot.phases {
        let _ = writeln!(
            o,
            "{:<32} {:>10.1} {:>12.3}",
            p.name, p.start_ms, p.duration_ms
        );
        for t in &p.tasks {
            let result = match &t.error {
                None => "ok".to_string(),
                Some(e) => format!("error: {e}"),
            };
            let _ = writeln!(
                o,
                "  {:<30} {:>10.1} {:>12.3}  {result}",
                t.name, t.start_ms, t.duration_ms
            );
        }
    }
    o
}

/// The kernel line: its lockdown level and the CPU mitigations; a line
/// per vulnerability the kernel could not mitigate.
fn kernel(o: &mut String, k: &keel_api::KernelStatus) {
    if k.lockdown.is_empty() {
        return;
    }
    let mitigated = k
        .cpu
        .iter()
        .filter(|v| v.state.starts_with("Mitigation"))
        .count();
    let vulnerable: Vec<&keel_api::CpuVulnerability> = k.vulnerable().collect();
    let _ = writeln!(
        o,
        "kernel     lockdown {}, cpu: {} mitigated, {} not affected, {} vulnerable",
        k.lockdown,
        mitigated,
        k.cpu.iter().filter(|v| v.state == "Not affected").count(),
        vulnerable.len()
    );
    for v in vulnerable {
        let _ = writeln!(o, "VULNERABLE cpu {}: {}", v.name, v.state);
    }
    if !k.cmdline.is_empty() {
        let _ = writeln!(o, "cmdline    {}", k.cmdline.join(" "));
    }
}

/// The KV line: where the member listens, and a line per warning.
fn kv(o: &mut String, kv: Option<&keel_api::KvStatus>) {
    let Some(kv) = kv else {
        let _ = writeln!(o, "kv         not running");
        return;
    };
    let peer = if kv.peer.is_empty() {
        "peer port closed (lone member)".to_string()
    } else {
        format!("peers on {}", kv.peer.join(", "))
    };
    let _ = writeln!(
        o,
        "kv         member {} ({}), clients on {}, {peer}",
        kv.name,
        kv.id,
        kv.client.join(", ")
    );
    if kv.quota_bytes > 0 {
        let _ = writeln!(
            o,
            "kv store   {} of its {} quota ({}%)",
            bytes(kv.store_bytes),
            bytes(kv.quota_bytes),
            kv.store_bytes.saturating_mul(100) / kv.quota_bytes
        );
    }
    for a in &kv.alarms {
        let _ = writeln!(
            o,
            "ALARM      kv {}: {}: writes that add data are refused on every member",
            a.alarm, a.message
        );
    }
    for w in &kv.warnings {
        let _ = writeln!(o, "warning    {w}");
    }
}

/// `keelctl kv alarm list` (or, with `disarmed`, what `disarm` cleared).
pub fn alarms(alarms: &[keel_api::KvAlarm], disarmed: bool) -> String {
    let mut o = String::new();
    if alarms.is_empty() {
        let _ = writeln!(
            o,
            "{}",
            if disarmed {
                "no alarm was raised; nothing to disarm"
            } else {
                "no alarms: the store takes writes"
            }
        );
        return o;
    }
    let _ = writeln!(
        o,
        "{:<8} {:<18} {:<10} {:<7} MESSAGE",
        "ALARM", "MEMBER ID", "MEMBER", "REASON"
    );
    for a in alarms {
        let _ = writeln!(
            o,
            "{:<8} {:<18} {:<10} {:<7} {}",
            a.alarm,
            a.member_id,
            if a.member.is_empty() { "-" } else { &a.member },
            a.reason,
            a.message
        );
    }
    if disarmed {
        let _ = writeln!(
            o,
            "disarmed {} alarm(s): writes are taken again (one whose cause remains is raised again)",
            alarms.len()
        );
    }
    o
}

/// The root lines: where the OS came from and how it was verified.
fn root(o: &mut String, r: &keel_api::RootStatus) {
    if r.mode.is_empty() {
        return;
    }
    let what = match (&r.slot, &r.version) {
        (Some(slot), Some(v)) => format!(
            "slot {slot}, keel {v} ({}) build {}",
            r.channel.as_deref().unwrap_or("?"),
            r.build_id.as_deref().unwrap_or("?")
        ),
        _ => "no trusted slot".to_string(),
    };
    let _ = writeln!(o, "root:      {} {what}, verity {}", r.mode, r.verity);
    if let Some(c) = &r.content_check {
        let ms = c.micros as f64 / 1000.0;
        let _ = writeln!(
            o,
            "           full check: {} bytes in {ms:.1} ms ({:.0} MiB/s)",
            c.bytes,
            c.bytes as f64 / 1048576.0 / (ms / 1000.0).max(1e-9)
        );
    }
    if !r.slots.is_empty() {
        let slots: Vec<String> = r
            .slots
            .iter()
            .map(|s| {
                format!(
                    "{} priority {} tries {}{}",
                    s.name,
                    s.priority,
                    s.tries,
                    if s.successful { " successful" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(o, "slots      {}", slots.join("; "));
    }
    for f in &r.refused {
        let _ = writeln!(o, "refused    slot {}: {}", f.slot, f.reason);
    }
    if let Some(st) = &r.state {
        let grown = st
            .grown_from_bytes
            .map(|b| format!(", grown from {} MiB this boot", b >> 20))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "state      {} ({}) on /var/lib/keel, {} MiB{grown}",
            st.source,
            st.fstype,
            st.size_bytes >> 20
        );
    }
}

/// Where the config came from (with how far it was verified, for a URL)
/// and whether the node is in maintenance mode.
pub fn config_source(c: &keel_api::ConfigStatus) -> String {
    format!(
        "{}{}",
        c.source.as_deref().unwrap_or("none (defaults)"),
        if c.maintenance {
            ", MAINTENANCE MODE: nothing applied"
        } else {
            ""
        }
    )
}

/// `keelctl network` as a table.
pub fn network(n: &keel_api::NetworkStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "configured by {}", n.source);
    let _ = writeln!(
        o,
        "{:<10} {:<10} {:<18} {:>6}  ADDRESSES",
        "LINK", "STATE", "MAC", "MTU"
    );
    for l in &n.links {
        let state = if l.up { l.operstate.as_str() } else { "down" };
        let _ = writeln!(
            o,
            "{:<10} {:<10} {:<18} {:>6}  {}",
            l.name,
            state,
            l.mac.as_deref().unwrap_or("-"),
            l.mtu,
            l.addresses.join(" ")
        );
    }
    let _ = writeln!(o, "\n{:<24} {:<18} DEV", "ROUTE", "GATEWAY");
    for r in &n.routes {
        let dst = if r.destination == "0.0.0.0/0" || r.destination == "::/0" {
            "default"
        } else {
            r.destination.as_str()
        };
        let _ = writeln!(
            o,
            "{:<24} {:<18} {}",
            dst,
            r.gateway.as_deref().unwrap_or("-"),
            r.dev.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(
        o,
        "\ndns        {}",
        if n.dns.is_empty() {
            "-".to_string()
        } else {
            n.dns.join(" ")
        }
    );
    if let Some(d) = &n.dhcp {
        let _ = writeln!(
            o,
            "dhcp       {} {} router {} dns {} (first lease {:.1} ms after link up)",
            d.link,
            d.address,
            d.router.as_deref().unwrap_or("-"),
            if d.dns.is_empty() {
                "-".to_string()
            } else {
                d.dns.join(" ")
            },
            d.first_lease_ms
        );
        if let (Some(l), Some(acked), Some(renew), Some(rebind), Some(expires)) =
            (d.lease_s, d.acked_ms, d.renew_ms, d.rebind_ms, d.expires_ms)
        {
            let s = |ms: u64| format!("{:.1} s", ms as f64 / 1e3);
            let _ = writeln!(
                o,
                "lease      {l} s from {}: acked at {}, renew at {}, rebind at {}, expires at {} (since boot)",
                d.server.as_deref().unwrap_or("-"),
                s(acked),
                s(renew),
                s(rebind),
                s(expires)
            );
        }
    }
    o
}

fn ms_human(ms: u64) -> String {
    match ms {
        m if m < 1000 => format!("{m}ms"),
        m if m < 60_000 => format!("{}s", m / 1000),
        m if m < 3_600_000 => format!("{}m{}s", m / 60_000, m / 1000 % 60),
        m => format!("{}h{}m", m / 3_600_000, m / 60_000 % 60),
    }
}

/// `keelctl ps`.
pub fn containers(cs: &[keel_api::ContainerStatus]) -> String {
    let mut o = format!(
        "{:<16} {:<10} {:>7} {:>8} {:>8} {:>9}  {:<24} {}\n",
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "IMAGE", "LAST"
    );
    for c in cs {
        let state = match (c.state.as_str(), c.restart_in_ms) {
            ("backoff", Some(ms)) => format!("backoff {}", ms_human(ms)),
            (s, _) => s.to_string(),
        };
        let mut last = match (&c.error, &c.last_exit) {
            (Some(e), _) => e.clone(),
            (None, Some(x)) => x.clone(),
            _ => String::new(),
        };
        if let Some(a) = &c.address {
            last = if last.is_empty() {
                format!("ip {a}")
            } else {
                format!("ip {a}; {last}")
            };
        }
        o += &format!(
            "{:<16} {:<10} {:>7} {:>8} {:>8} {:>9}  {:<24} {}\n",
            c.name,
            state,
            c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            c.uptime_ms.map(ms_human).unwrap_or_else(|| "-".into()),
            c.restarts,
            if c.pid.is_some() {
                mib(c.stats.memory_bytes / 1024)
            } else {
                "-".into()
            },
            c.image,
            last
        );
    }
    if cs.is_empty() {
        o += "(no containers)\n";
    }
    o
}

/// `keelctl stats`.
pub fn stats(cs: &[keel_api::ContainerStatus]) -> String {
    let mut o = format!(
        "{:<16} {:>10} {:>9} {:>9} {:>6} {:>6} {:>5} {:>9} {:>9}\n",
        "NAME", "CPU", "MEMORY", "LIMIT", "PIDS", "MAX", "OOM", "READ", "WRITTEN"
    );
    for c in cs {
        let s = &c.stats;
        o += &format!(
            "{:<16} {:>9.2}s {:>9} {:>9} {:>6} {:>6} {:>5} {:>9} {:>9}\n",
            c.name,
            s.cpu_usec as f64 / 1e6,
            mib(s.memory_bytes / 1024),
            s.memory_max
                .map(|m| mib(m / 1024))
                .unwrap_or_else(|| "max".into()),
            s.pids,
            s.pids_max
                .map(|m| m.to_string())
                .unwrap_or_else(|| "max".into()),
            s.oom_kills,
            mib(s.io_rbytes / 1024),
            mib(s.io_wbytes / 1024)
        );
    }
    o
}

fn serde_json_state(s: &Status) -> String {
    serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::types::{PhaseRecord, TaskRecord, Timeline};
    use keel_api::{Memory, NodeState, Processes};

    #[test]
    fn network_shows_the_lease_and_its_times() {
        let mut lease = keel_api::DhcpLease {
            link: "eth1".into(),
            address: "10.77.0.50/24".into(),
            router: Some("10.77.0.1".into()),
            dns: vec!["10.77.0.1".into()],
            first_lease_ms: 12.5,
            server: Some("10.77.0.1".into()),
            lease_s: Some(10),
            acked_ms: Some(12_000),
            renew_ms: Some(17_000),
            rebind_ms: Some(20_750),
            expires_ms: Some(22_000),
        };
        let n = keel_api::NetworkStatus {
            source: "config (20-lan.network)".into(),
            dhcp: Some(lease.clone()),
            ..Default::default()
        };
        let out = network(&n);
        assert!(
            out.contains("dhcp       eth1 10.77.0.50/24 router 10.77.0.1 dns 10.77.0.1 (first lease 12.5 ms after link up)"),
            "{out}"
        );
        assert!(
            out.contains("lease      10 s from 10.77.0.1: acked at 12.0 s, renew at 17.0 s, rebind at 20.8 s, expires at 22.0 s (since boot)"),
            "{out}"
        );
        // A node that does not say (an older keel) shows no times.
        lease.acked_ms = None;
        let out = network(&keel_api::NetworkStatus {
            dhcp: Some(lease),
            ..Default::default()
        });
        assert!(
            out.contains("dhcp       eth1") && !out.contains("lease      "),
            "{out}"
        );
    }

    #[test]
    fn table_shows_timeline_and_errors() {
        let s = Status {
            version: "0.1.0".into(),
            hostname: "keel".into(),
            state: NodeState::Ready,
            mode: Default::default(),
            uptime_ms: 2500.0,
            boot: Timeline {
                pid1_start_ms: 480.0,
                ready_ms: Some(492.5),
                phases: vec![PhaseRecord {
                    name: "early".into(),
                    start_ms: 480.1,
                    duration_ms: 1.5,
                    tasks: vec![
                        TaskRecord {
                            name: "MountEarly".into(),
                            start_ms: 480.1,
                            duration_ms: 1.0,
                            error: None,
                        },
                        TaskRecord {
                            name: "ReadCmdline".into(),
                            start_ms: 481.1,
                            duration_ms: 0.5,
                            error: Some("bad".into()),
                        },
                    ],
                }],
            },
            memory: Memory {
                total_kb: 61440,
                available_kb: 40960,
                used_kb: 20480,
                pid1_rss_kb: 2048,
            },
            processes: Processes {
                total: 1,
                zombies: 0,
                reaped: 10000,
            },
            root: Default::default(),
            config: Default::default(),
            kv: None,
            api: Default::default(),
            kernel: Default::default(),
        };
        let t = status(&s);
        assert!(t.contains("keel (keel 0.1.0), ready, up 2.5 s"), "{t}");
        assert!(
            t.contains("20.0 MiB used of 60.0 MiB, keel RSS 2.0 MiB"),
            "{t}"
        );
        assert!(t.contains("10000 reaped"), "{t}");
        assert!(t.contains("ready 12.5 ms after keel started"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.trim_start().starts_with("MountEarly") && l.ends_with("ok")),
            "{t}"
        );
        assert!(t.contains("error: bad"), "{t}");
        assert!(t.contains("kv         not running"), "{t}");
        assert!(t.contains("config     none (defaults)\n"), "{t}");
        let mut s = s;
        s.config.source = Some("url http://10.0.2.2/u (plain http, unverified)".into());
        let t = status(&s);
        assert!(
            t.contains("config     url http://10.0.2.2/u (plain http, unverified)\n"),
            "{t}"
        );
        s.config.maintenance = true;
        assert!(status(&s).contains("unverified), MAINTENANCE MODE"), "{t}");
        // The first line names the mode; the reasons follow right under it.
        s.mode = NodeMode::Maintenance;
        s.config.errors = vec!["3:9: containers[0].image: \"\" is empty".into()];
        let t = status(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("keel (keel 0.1.0), MAINTENANCE: the config has errors"),
            "{t}"
        );
        assert_eq!(lines[1], "  3:9: containers[0].image: \"\" is empty", "{t}");
        s.mode = NodeMode::Rescue;
        s.root.refused = vec![keel_api::RefusedSlot {
            slot: "A".into(),
            reason: "dm-verity: root hash mismatch".into(),
        }];
        let t = status(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].contains("RESCUE: no OS slot could be trusted"),
            "{t}"
        );
        assert_eq!(
            lines[1], "  slot A refused: dm-verity: root hash mismatch",
            "{t}"
        );
        s.mode = NodeMode::Normal;
        assert!(
            status(&s).lines().next().unwrap().contains(", ready, up"),
            "{t}"
        );
    }

    #[test]
    fn kernel_line_and_what_is_not_mitigated() {
        let v = |name: &str, state: &str| keel_api::CpuVulnerability {
            name: name.into(),
            state: state.into(),
        };
        let mut k = keel_api::KernelStatus {
            lockdown: "integrity".into(),
            cpu: vec![
                v("l1tf", "Not affected"),
                v(
                    "mds",
                    "Vulnerable: Clear CPU buffers attempted, no microcode",
                ),
                v("meltdown", "Mitigation: PTI"),
            ],
            cmdline: vec!["quiet".into(), "page_alloc.shuffle=1".into()],
        };
        let mut o = String::new();
        kernel(&mut o, &k);
        assert_eq!(
            o,
            "kernel     lockdown integrity, cpu: 1 mitigated, 1 not affected, 1 vulnerable\n\
             VULNERABLE cpu mds: Vulnerable: Clear CPU buffers attempted, no microcode\n\
             cmdline    quiet page_alloc.shuffle=1\n"
        );
        // An older node says nothing of its kernel: no line.
        k.lockdown.clear();
        let mut o = String::new();
        kernel(&mut o, &k);
        assert_eq!(o, "");
    }

    #[test]
    fn kv_line_and_its_warnings() {
        let mut o = String::new();
        kv(
            &mut o,
            Some(&keel_api::KvStatus {
                name: "n1".into(),
                id: "8e9e05c52164694d".into(),
                client: vec!["0.0.0.0:2379".into()],
                peer: vec![],
                warnings: vec!["kv: client port 0.0.0.0:2379 listens beyond loopback".into()],
                alarms: vec![],
                store_bytes: 70_000,
                quota_bytes: 65_536,
            }),
        );
        assert_eq!(
            o,
            "kv         member n1 (8e9e05c52164694d), clients on 0.0.0.0:2379, peer port closed (lone member)\n\
             kv store   68.4 KiB of its 64.0 KiB quota (106%)\n\
             warning    kv: client port 0.0.0.0:2379 listens beyond loopback\n"
        );
    }

    #[test]
    fn alarms_list_and_disarm() {
        assert_eq!(alarms(&[], false), "no alarms: the store takes writes\n");
        let a = keel_api::KvAlarm {
            alarm: "NOSPACE".into(),
            member_id: "8e9e05c52164694d".into(),
            member: "n1".into(),
            reason: "quota".into(),
            message: "NOSPACE raised by member 8e9e05c52164694d: the store holds 70000 bytes, its quota-backend-bytes is 65536".into(),
            raised_unix: 1,
        };
        let t = alarms(std::slice::from_ref(&a), true);
        assert!(t.starts_with("ALARM    MEMBER ID          MEMBER     REASON  MESSAGE\nNOSPACE  8e9e05c52164694d   n1         quota   NOSPACE raised"), "{t}");
        assert!(t.ends_with("disarmed 1 alarm(s): writes are taken again (one whose cause remains is raised again)\n"), "{t}");
        let mut o = String::new();
        kv(
            &mut o,
            Some(&keel_api::KvStatus {
                alarms: vec![a],
                ..Default::default()
            }),
        );
        assert!(
            o.contains("ALARM      kv NOSPACE: NOSPACE raised by member"),
            "{o}"
        );
    }
}

#[cfg(test)]
mod api_tests {
    #[test]
    fn the_api_lines_say_what_serves_and_when_the_certificate_ends() {
        let mut o = String::new();
        let a = keel_api::ApiStatus {
            tcp_port: Some(9420),
            note: "tcp port 9420 serves https".into(),
            socket: "/run/keel/api.sock".into(),
            cert_subject: Some("n1".into()),
            cert_not_after: Some("2027-12-07T00:00:00Z".into()),
            cert_not_after_unix: Some(1_000 * 86_400 + 10),
        };
        super::api(&mut o, &a, 900 * 86_400);
        assert_eq!(
            o,
            "api        tcp port 9420 serves https\napi cert   n1 valid until 2027-12-07T00:00:00Z (100 days left)\n"
        );
        let mut o = String::new();
        super::api(&mut o, &a, 1_001 * 86_400);
        assert!(o.contains("(EXPIRED)"), "{o}");
    }
}

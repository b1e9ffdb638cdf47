//! The pure parts of the DHCP client: what a lease changes in the kernel
//! when it is taken, changed or lost, the lease's times, and
//! `/etc/resolv.conf` with the lease's name servers in or out.

use std::net::Ipv4Addr;
use std::time::Duration;

/// What a lease gives the node: the address, the default route, the name
/// servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

/// One change to the node's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Remove the default route via this router.
    DelRoute(Ipv4Addr),
    DelAddress(Ipv4Addr, u8),
    AddAddress(Ipv4Addr, u8),
    /// Add the default route via this router.
    AddRoute(Ipv4Addr),
    /// Take these name servers out of `/etc/resolv.conf`, put these in.
    Dns {
        drop: Vec<Ipv4Addr>,
        add: Vec<Ipv4Addr>,
    },
}

/// The steps from the binding the node holds to the next one (`None`: the
/// lease is lost). A renewal that changes nothing changes nothing. What
/// goes is removed before what comes is added, so that the old and the new
/// address are never on the link together; the old default route is
/// removed before its address, since the kernel drops the routes through a
/// link whose last address goes (a later removal would find none). A new
/// address gets its route again for the same reason.
pub fn plan(held: Option<&Binding>, next: Option<&Binding>) -> Vec<Step> {
    let mut steps = Vec::new();
    if held == next {
        return steps;
    }
    let moved = match (held, next) {
        (Some(h), Some(n)) => (h.address, h.prefix) != (n.address, n.prefix),
        _ => true,
    };
    let old_router = held.and_then(|h| h.router);
    let new_router = next.and_then(|n| n.router);
    if let Some(r) = old_router {
        if moved || new_router != Some(r) {
            steps.push(Step::DelRoute(r));
        }
    }
    if let (true, Some(h)) = (moved, held) {
        steps.push(Step::DelAddress(h.address, h.prefix));
    }
    if let (true, Some(n)) = (moved, next) {
        steps.push(Step::AddAddress(n.address, n.prefix));
    }
    if let Some(r) = new_router {
        if moved || old_router != Some(r) {
            steps.push(Step::AddRoute(r));
        }
    }
    let old_dns = held.map(|h| h.dns.clone()).unwrap_or_default();
    let new_dns = next.map(|n| n.dns.clone()).unwrap_or_default();
    if old_dns != new_dns {
        steps.push(Step::Dns {
            drop: old_dns,
            add: new_dns,
        });
    }
    steps
}

/// A lease's times, from the ACK that gave or renewed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// The node's uptime when the ACK was taken.
    pub acked: Duration,
    /// The lease time granted.
    pub lease: Duration,
    /// T1, after `acked`: the client renews with its server (unicast).
    pub renew: Duration,
    /// T2, after `acked`: the client rebinds with any server (broadcast).
    pub rebind: Duration,
}

/// smoltcp's lease time when the server names none.
const DEFAULT_LEASE: Duration = Duration::from_secs(120);

impl Times {
    /// The times smoltcp's client keeps for an ACK taken at `acked` with
    /// the options lease time, T1 and T2 (seconds): the same rule (RFC
    /// 2131: T1 half the lease, T2 seven eighths; with only T1, T2 three
    /// quarters of the way from T1 to the end; with only T2, T1 the smaller
    /// of half the lease and T2), with none of the subtractions wrapping.
    pub fn from_ack(
        acked: Duration,
        lease: Option<u32>,
        t1: Option<u32>,
        t2: Option<u32>,
    ) -> Times {
        let secs = |s: u32| Duration::from_secs(s.into());
        let lease = lease.map(secs).unwrap_or(DEFAULT_LEASE);
        let (renew, rebind) = match (t1.map(secs), t2.map(secs)) {
            (Some(t1), Some(t2)) => (t1, t2),
            (None, None) => (lease / 2, lease * 7 / 8),
            (Some(t1), None) => (t1, t1 + lease.saturating_sub(t1) * 3 / 4),
            (None, Some(t2)) => ((lease / 2).min(t2), t2),
        };
        Times {
            acked,
            lease,
            renew,
            rebind,
        }
    }

    pub fn expires(&self) -> Duration {
        self.acked + self.lease
    }
}

/// `/etc/resolv.conf` with the `nameserver` lines of `drop` taken out and
/// lines for `add` appended (those not there already); every other line
/// (a static unit's servers, `search`) stays as it was.
pub fn resolv_conf(current: &str, drop: &[Ipv4Addr], add: &[Ipv4Addr]) -> String {
    let server = |line: &str| {
        let mut w = line.split_whitespace();
        match (w.next(), w.next().map(str::parse::<Ipv4Addr>)) {
            (Some("nameserver"), Some(Ok(a))) => Some(a),
            _ => None,
        }
    };
    let mut out = String::new();
    let mut have = Vec::new();
    for line in current.lines() {
        match server(line) {
            Some(a) if drop.contains(&a) => continue,
            Some(a) => have.push(a),
            None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    for a in add {
        if !have.contains(a) {
            have.push(*a);
            out.push_str(&format!("nameserver {a}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn binding(a: &str, router: Option<&str>, dns: &[&str]) -> Binding {
        Binding {
            address: ip(a),
            prefix: 24,
            router: router.map(ip),
            dns: dns.iter().map(|d| ip(d)).collect(),
        }
    }

    #[test]
    fn a_first_lease_adds_address_route_and_dns() {
        let b = binding("10.0.0.5", Some("10.0.0.1"), &["10.0.0.1"]);
        assert_eq!(
            plan(None, Some(&b)),
            vec![
                Step::AddAddress(ip("10.0.0.5"), 24),
                Step::AddRoute(ip("10.0.0.1")),
                Step::Dns {
                    drop: vec![],
                    add: vec![ip("10.0.0.1")]
                },
            ]
        );
        assert_eq!(
            plan(None, Some(&binding("10.0.0.5", None, &[]))),
            vec![Step::AddAddress(ip("10.0.0.5"), 24)]
        );
    }

    #[test]
    fn a_renewal_that_changes_nothing_does_nothing() {
        let b = binding("10.0.0.5", Some("10.0.0.1"), &["10.0.0.1"]);
        assert_eq!(plan(Some(&b), Some(&b.clone())), vec![]);
        assert_eq!(plan(None, None), vec![]);
    }

    #[test]
    fn a_lost_lease_takes_away_what_it_gave_route_first() {
        let b = binding("10.0.0.5", Some("10.0.0.1"), &["10.0.0.53"]);
        assert_eq!(
            plan(Some(&b), None),
            vec![
                Step::DelRoute(ip("10.0.0.1")),
                Step::DelAddress(ip("10.0.0.5"), 24),
                Step::Dns {
                    drop: vec![ip("10.0.0.53")],
                    add: vec![]
                },
            ]
        );
    }

    #[test]
    fn a_changed_address_goes_before_the_new_one_comes() {
        let old = binding("10.0.0.5", Some("10.0.0.1"), &["10.0.0.1"]);
        let new = binding("10.0.0.6", Some("10.0.0.1"), &["10.0.0.1"]);
        let steps = plan(Some(&old), Some(&new));
        assert_eq!(
            steps,
            vec![
                Step::DelRoute(ip("10.0.0.1")),
                Step::DelAddress(ip("10.0.0.5"), 24),
                Step::AddAddress(ip("10.0.0.6"), 24),
                Step::AddRoute(ip("10.0.0.1")),
            ]
        );
        // Only the prefix changed: the address is given again.
        let wider = Binding {
            prefix: 16,
            ..old.clone()
        };
        assert!(plan(Some(&old), Some(&wider)).contains(&Step::DelAddress(ip("10.0.0.5"), 24)));
        assert!(plan(Some(&old), Some(&wider)).contains(&Step::AddAddress(ip("10.0.0.5"), 16)));
    }

    #[test]
    fn a_changed_router_or_dns_alone_touches_only_that() {
        let old = binding("10.0.0.5", Some("10.0.0.1"), &["10.0.0.1"]);
        assert_eq!(
            plan(
                Some(&old),
                Some(&binding("10.0.0.5", Some("10.0.0.2"), &["10.0.0.1"]))
            ),
            vec![
                Step::DelRoute(ip("10.0.0.1")),
                Step::AddRoute(ip("10.0.0.2"))
            ]
        );
        assert_eq!(
            plan(Some(&old), Some(&binding("10.0.0.5", None, &["10.0.0.1"]))),
            vec![Step::DelRoute(ip("10.0.0.1"))]
        );
        assert_eq!(
            plan(Some(&binding("10.0.0.5", None, &["10.0.0.1"])), Some(&old)),
            vec![Step::AddRoute(ip("10.0.0.1"))]
        );
        assert_eq!(
            plan(
                Some(&old),
                Some(&binding("10.0.0.5", Some("10.0.0.1"), &["9.9.9.9"]))
            ),
            vec![Step::Dns {
                drop: vec![ip("10.0.0.1")],
                add: vec![ip("9.9.9.9")]
            }]
        );
    }

    #[test]
    fn no_plan_leaves_two_addresses_or_a_stale_route() {
        // Every pair of a few bindings: replaying the steps on a model of
        // the link ends in exactly the next binding's state, and no step
        // leaves both addresses on the link.
        let all = [
            None,
            Some(binding("10.0.0.5", Some("10.0.0.1"), &["10.0.0.1"])),
            Some(binding("10.0.0.5", None, &[])),
            Some(binding("10.0.0.6", Some("10.0.0.1"), &["10.0.0.2"])),
            Some(binding("10.0.0.6", Some("10.0.0.9"), &["10.0.0.1"])),
        ];
        for held in &all {
            for next in &all {
                let mut addrs: Vec<Ipv4Addr> = held.iter().map(|h| h.address).collect();
                let mut routes: Vec<Ipv4Addr> = held.iter().filter_map(|h| h.router).collect();
                let mut dns: Vec<Ipv4Addr> = held.iter().flat_map(|h| h.dns.clone()).collect();
                for s in plan(held.as_ref(), next.as_ref()) {
                    match s {
                        Step::DelRoute(r) => {
                            assert!(routes.contains(&r), "{held:?} -> {next:?}: {r} not there");
                            routes.retain(|x| *x != r);
                        }
                        Step::DelAddress(a, _) => {
                            addrs.retain(|x| *x != a);
                            // The kernel drops the link's routes with its last address.
                            assert!(routes.is_empty(), "{held:?} -> {next:?}: route left");
                        }
                        Step::AddAddress(a, _) => addrs.push(a),
                        Step::AddRoute(r) => routes.push(r),
                        Step::Dns { drop, add } => {
                            dns.retain(|d| !drop.contains(d));
                            dns.extend(add);
                        }
                    }
                    assert!(addrs.len() <= 1, "{held:?} -> {next:?}: {addrs:?}");
                }
                assert_eq!(addrs, next.iter().map(|n| n.address).collect::<Vec<_>>());
                assert_eq!(
                    routes,
                    next.iter().filter_map(|n| n.router).collect::<Vec<_>>()
                );
                assert_eq!(
                    dns,
                    next.iter().flat_map(|n| n.dns.clone()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn times_follow_rfc_2131_as_smoltcp_does() {
        let at = Duration::from_secs(100);
        let t = Times::from_ack(at, Some(10), None, None);
        assert_eq!(
            (t.lease, t.renew, t.rebind),
            (
                Duration::from_secs(10),
                Duration::from_secs(5),
                Duration::from_millis(8750)
            )
        );
        assert_eq!(t.expires(), Duration::from_secs(110));
        let t = Times::from_ack(at, Some(100), Some(20), Some(40));
        assert_eq!(
            (t.renew, t.rebind),
            (Duration::from_secs(20), Duration::from_secs(40))
        );
        let t = Times::from_ack(at, Some(100), Some(20), None);
        assert_eq!(
            (t.renew, t.rebind),
            (Duration::from_secs(20), Duration::from_secs(80))
        );
        let t = Times::from_ack(at, Some(100), None, Some(30));
        assert_eq!(
            (t.renew, t.rebind),
            (Duration::from_secs(30), Duration::from_secs(30))
        );
        let t = Times::from_ack(at, None, None, None);
        assert_eq!(t.lease, Duration::from_secs(120));
        // A T1 past the lease does not wrap.
        let t = Times::from_ack(at, Some(10), Some(20), None);
        assert_eq!(
            (t.renew, t.rebind),
            (Duration::from_secs(20), Duration::from_secs(20))
        );
    }

    #[test]
    fn resolv_conf_swaps_only_the_lease_servers() {
        let static_ = "nameserver 10.0.2.3\nsearch example\n";
        let with = resolv_conf(static_, &[], &[ip("10.77.0.1")]);
        assert_eq!(
            with,
            "nameserver 10.0.2.3\nsearch example\nnameserver 10.77.0.1\n"
        );
        assert_eq!(resolv_conf(&with, &[ip("10.77.0.1")], &[]), static_);
        assert_eq!(
            resolv_conf(&with, &[ip("10.77.0.1")], &[ip("10.77.0.2")]),
            "nameserver 10.0.2.3\nsearch example\nnameserver 10.77.0.2\n"
        );
        // A server already there is not written twice.
        assert_eq!(resolv_conf(static_, &[], &[ip("10.0.2.3")]), static_);
        assert_eq!(resolv_conf("", &[], &[]), "");
    }
}

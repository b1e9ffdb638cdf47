//! The DHCPv4 client: smoltcp's DHCP socket over keel's filtered AF_PACKET
//! socket (`keel_sys::packet`), leases applied to the kernel through
//! rtnetlink. It runs on its own thread for the life of the node:
//!
//! 1. smoltcp discovers a server, requests, and reports the ACK; keel adds
//!    the address, the default route and the name servers (`plan`), and
//!    hands the first lease to the boot;
//! 2. at T1 smoltcp renews with that server (unicast), at T2 it rebinds
//!    with any (broadcast); every ACK is reported (smoltcp copies each
//!    received packet into a buffer keel gives it, which makes it report
//!    an unchanged lease too), so the lease's times that the API shows move
//!    on; a renewal that changes nothing changes nothing in the kernel;
//! 3. an ACK with another address, router or name servers replaces what
//!    changed, the old address removed before the new one is added;
//! 4. at expiry with no ACK (or on a NAK) smoltcp drops the lease: keel
//!    removes its route, address and name servers, and smoltcp discovers
//!    again.

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_boot::{info, warn};
use keel_sys::packet::DhcpSocket;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{DhcpMessageType, DhcpRepr, EthernetAddress, IpCidr};

mod plan;

use plan::{plan, Step};
pub use plan::{Binding, Times};

struct PacketDevice {
    sock: DhcpSocket,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a DhcpSocket);

impl RxToken for Rx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        let _ = self.0.send(&b);
        r
    }
}

impl Device for PacketDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let mut buf = vec![0u8; 1600];
        let n = self.sock.recv(&mut buf)?;
        buf.truncate(n);
        Some((Rx(buf), Tx(&self.sock)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&self.sock))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// A lease as the node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub binding: Binding,
    /// The server that gave it (its identifier).
    pub server: Ipv4Addr,
    /// From the last ACK; `None` when its packet could not be read.
    pub times: Option<Times>,
    /// From the link coming up to the first lease applied.
    pub after: Duration,
}

/// What `/v1/network` shows about DHCP.
pub type Shared = Arc<Mutex<Option<(String, Lease)>>>;

fn mac(link: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{link}/address")).ok()?;
    let v: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    v.try_into().ok()
}

fn v4(a: smoltcp::wire::Ipv4Address) -> Ipv4Addr {
    Ipv4Addr::from(a.octets())
}

/// The lease in an ACK smoltcp reports, taken at uptime `now`. Its times
/// come from the packet, when the buffer holds the ACK for this address.
fn lease_of(cfg: &dhcpv4::Config, now: Duration, after: Duration) -> Lease {
    let binding = Binding {
        address: v4(cfg.address.address()),
        prefix: cfg.address.prefix_len(),
        router: cfg.router.map(v4),
        dns: cfg.dns_servers.iter().copied().map(v4).collect(),
    };
    let times = cfg
        .packet
        .as_ref()
        .and_then(|p| DhcpRepr::parse(p).ok())
        .filter(|r| r.message_type == DhcpMessageType::Ack && r.your_ip == cfg.address.address())
        .map(|r| Times::from_ack(now, r.lease_duration, r.renew_duration, r.rebind_duration));
    Lease {
        binding,
        server: v4(cfg.server.identifier),
        times,
        after,
    }
}

/// Whether a failed removal found nothing to remove: the kernel already
/// dropped it (a route goes with its link's last address).
fn already_gone(e: &keel_sys::SysError) -> bool {
    matches!(
        e,
        keel_sys::SysError::Netlink {
            source: nix::Error::ESRCH | nix::Error::EADDRNOTAVAIL,
            ..
        }
    )
}

/// Carry out `steps` on `link`: every step is tried; what failed is
/// logged, and the first failure to add is returned.
fn carry_out(link: &str, steps: &[Step]) -> Result<(), keel_sys::SysError> {
    let any = Ipv4Addr::UNSPECIFIED.into();
    let mut rtnl = keel_sys::netlink::Rtnl::open()?;
    let mut failed = None;
    for step in steps {
        let done = match step {
            Step::DelRoute(r) => rtnl.del_route(link, any, 0, Some((*r).into())),
            Step::DelAddress(a, p) => rtnl.del_address(link, (*a).into(), *p),
            Step::AddAddress(a, p) => rtnl.add_address(link, (*a).into(), *p),
            Step::AddRoute(r) => rtnl.add_route(link, any, 0, Some((*r).into())),
            Step::Dns { drop, add } => {
                let path = "/etc/resolv.conf";
                let now = std::fs::read_to_string(path).unwrap_or_default();
                if let Err(e) = std::fs::write(path, plan::resolv_conf(&now, drop, add)) {
                    warn!("dhcp: {path}: {e}");
                }
                Ok(())
            }
        };
        match done {
            Ok(()) => {}
            Err(e) if matches!(step, Step::DelRoute(_) | Step::DelAddress(..)) => {
                if !already_gone(&e) {
                    warn!("{link}: DHCP: {e}");
                }
            }
            Err(e) => {
                warn!("{link}: DHCP: {e}");
                failed.get_or_insert(e);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Bring `link` up and run the client on a thread. Returns when the first
/// lease is applied or `wait` passed (the client goes on trying).
pub fn start(link: &str, shared: Shared, wait: Duration) -> Result<Option<Lease>, String> {
    let index = keel_sys::netlink::index(link).map_err(|e| e.to_string())?;
    let hw = mac(link).ok_or_else(|| format!("{link}: no MAC address"))?;
    let sock = DhcpSocket::open(index).map_err(|e| e.to_string())?;
    keel_sys::netlink::Rtnl::open()
        .and_then(|mut r| r.link_up(link))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let name = link.to_string();
    std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || run(name, PacketDevice { sock }, hw, started, tx, shared))
        .map_err(|e| e.to_string())?;
    Ok(rx.recv_timeout(wait).ok())
}

fn describe(b: &Binding) -> String {
    format!(
        "{}/{} router {}",
        b.address,
        b.prefix,
        b.router
            .map(|r| r.to_string())
            .unwrap_or_else(|| "none".into())
    )
}

fn run(
    link: String,
    mut dev: PacketDevice,
    hw: [u8; 6],
    started: Instant,
    first: mpsc::Sender<Lease>,
    shared: Shared,
) {
    let t0 = Instant::now();
    let now = || smoltcp::time::Instant::from_micros(t0.elapsed().as_micros() as i64);
    let config = Config::new(EthernetAddress(hw).into());
    let mut iface = Interface::new(config, &mut dev, now());
    // Each received DHCP packet is copied here (the largest fits a frame).
    let mut received = vec![0u8; 1500];
    let mut socket = dhcpv4::Socket::new();
    socket.set_receive_packet_buffer(&mut received);
    let mut sockets = SocketSet::new(vec![]);
    let handle = sockets.add(socket);
    let mut held: Option<Lease> = None;
    // From link up to the first lease: kept for the life of the client.
    let mut first_after: Option<Duration> = None;
    loop {
        iface.poll(now(), &mut dev, &mut sockets);
        let event = match sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            Some(dhcpv4::Event::Configured(cfg)) => {
                let after = *first_after.get_or_insert_with(|| started.elapsed());
                Some(Some(lease_of(&cfg, crate::clock(), after)))
            }
            // smoltcp reports this once at start too, with no lease held.
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            None => None,
        };
        if let Some(next) = event {
            let steps = plan(
                held.as_ref().map(|h| &h.binding),
                next.as_ref().map(|n| &n.binding),
            );
            let applied = carry_out(&link, &steps);
            match (&held, &next) {
                (Some(h), None) => warn!(
                    "{link}: DHCP lease of {} lost: address removed",
                    describe(&h.binding)
                ),
                (Some(h), Some(n)) if steps.is_empty() => info!(
                    "{link}: DHCP lease of {}/{} renewed by {} for {} s",
                    n.binding.address,
                    n.binding.prefix,
                    n.server,
                    n.times.map_or(0, |t| t.lease.as_secs())
                ),
                (Some(h), Some(n)) => info!(
                    "{link}: DHCP lease changed from {} to {}",
                    describe(&h.binding),
                    describe(&n.binding)
                ),
                (None, Some(n)) => info!(
                    "{link}: DHCP lease {} ({:.1} ms after link up)",
                    describe(&n.binding),
                    n.after.as_secs_f64() * 1e3
                ),
                (None, None) => {}
            }
            // smoltcp sends the renewals from the address, through the
            // router when the server is not on the link.
            iface.update_ip_addrs(|a| {
                a.clear();
                if let Some(n) = &next {
                    let cidr = smoltcp::wire::Ipv4Cidr::new(n.binding.address, n.binding.prefix);
                    let _ = a.push(IpCidr::Ipv4(cidr));
                }
            });
            iface.routes_mut().remove_default_ipv4_route();
            if let Some(r) = next.as_ref().and_then(|n| n.binding.router) {
                let _ = iface.routes_mut().add_default_ipv4_route(r);
            }
            if let Err(e) = &applied {
                warn!("{link}: DHCP lease not fully applied: {e}");
            }
            if let Ok(mut s) = shared.lock() {
                *s = next.clone().map(|n| (link.clone(), n));
            }
            if let (Some(n), Ok(())) = (&next, &applied) {
                let _ = first.send(n.clone());
            }
            held = next;
        }
        let delay = iface
            .poll_delay(now(), &sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        dev.sock.wait(delay);
    }
}

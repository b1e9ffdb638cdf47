//! The DHCPv4 client: smoltcp's DHCP socket over keel's filtered AF_PACKET
//! socket (`keel_sys::packet`), leases applied to the kernel through
//! rtnetlink. It runs on its own thread for the life of the node: the first
//! lease is handed to the boot, renewals and rebinds go on afterwards.

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_boot::{info, warn};
use keel_sys::packet::DhcpSocket;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{EthernetAddress, IpCidr};

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

/// A lease as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
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

fn apply(link: &str, cfg: &dhcpv4::Config, started: Instant) -> Result<Lease, keel_sys::SysError> {
    let address = Ipv4Addr::from(cfg.address.address().octets());
    let prefix = cfg.address.prefix_len();
    let router = cfg.router.map(|r| Ipv4Addr::from(r.octets()));
    let dns: Vec<Ipv4Addr> = cfg
        .dns_servers
        .iter()
        .map(|d| Ipv4Addr::from(d.octets()))
        .collect();
    let mut rtnl = keel_sys::netlink::Rtnl::open()?;
    rtnl.add_address(link, address.into(), prefix)?;
    if let Some(r) = router {
        rtnl.add_route(link, Ipv4Addr::UNSPECIFIED.into(), 0, Some(r.into()))?;
    }
    if !dns.is_empty() {
        let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
            warn!("dhcp: /etc/resolv.conf: {e}");
        }
    }
    Ok(Lease {
        address,
        prefix,
        router,
        dns,
        after: started.elapsed(),
    })
}

/// Remove an address the client applied earlier.
fn forget(link: &str, addr: Ipv4Addr, prefix: u8) {
    if let Err(e) =
        keel_sys::netlink::Rtnl::open().and_then(|mut r| r.del_address(link, addr.into(), prefix))
    {
        warn!("{link}: {e}");
    }
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
    let mut sockets = SocketSet::new(vec![]);
    let handle = sockets.add(dhcpv4::Socket::new());
    loop {
        iface.poll(now(), &mut dev, &mut sockets);
        let event = sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            Some(dhcpv4::Event::Configured(cfg)) => {
                iface.update_ip_addrs(|a| {
                    a.clear();
                    let _ = a.push(IpCidr::Ipv4(cfg.address));
                });
                // A renewal that changed the address: the old one goes.
                let old = shared
                    .lock()
                    .ok()
                    .and_then(|s| s.as_ref().map(|(_, l)| (l.address, l.prefix)));
                if let Some((a, p)) = old {
                    if (a, p)
                        != (
                            Ipv4Addr::from(cfg.address.address().octets()),
                            cfg.address.prefix_len(),
                        )
                    {
                        forget(&link, a, p);
                    }
                }
                match apply(&link, &cfg, started) {
                    Ok(lease) => {
                        info!(
                            "{link}: DHCP lease {}/{} router {} ({:.1} ms after link up)",
                            lease.address,
                            lease.prefix,
                            lease
                                .router
                                .map(|r| r.to_string())
                                .unwrap_or_else(|| "none".into()),
                            lease.after.as_secs_f64() * 1e3
                        );
                        if let Ok(mut s) = shared.lock() {
                            *s = Some((link.clone(), lease.clone()));
                        }
                        let _ = first.send(lease);
                    }
                    Err(e) => warn!("{link}: DHCP lease not applied: {e}"),
                }
            }
            Some(dhcpv4::Event::Deconfigured) => {
                // smoltcp reports this once at start too, with no lease held.
                let held = shared
                    .lock()
                    .ok()
                    .and_then(|s| s.as_ref().map(|(_, l)| (l.address, l.prefix)));
                if let Some((a, p)) = held {
                    warn!("{link}: DHCP lease of {a}/{p} lost: address removed");
                    forget(&link, a, p);
                }
                iface.update_ip_addrs(|a| a.clear());
                if let Ok(mut s) = shared.lock() {
                    *s = None;
                }
            }
            None => {}
        }
        let delay = iface
            .poll_delay(now(), &sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        dev.sock.wait(delay);
    }
}

//! rtnetlink: links (up, bridges, veth pairs, masters, names), addresses,
//! routes, through one NETLINK_ROUTE socket.
//!
//! Each change is one request with NLM_F_ACK; the kernel's answer (an
//! NLMSG_ERROR whose error is 0 on success) is read before the next, so a
//! failure names the request that failed. Messages are built as bytes by the
//! pure functions below (tested against the layouts of
//! `include/uapi/linux/rtnetlink.h`); the socket calls go through nix.
//!
//! A socket works in the network namespace it was opened in:
//! [`Rtnl::open_in`] opens one inside another namespace (a container's), and
//! links are found by name through the socket (a dump), never through the
//! caller's own namespace.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use crate::netns::NetNs;
use crate::SysError;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_GETADDR: u16 = 22;
const RTM_GETROUTE: u16 = 26;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 0x3;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_PROTINFO: u16 = 12;
const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 1;

fn family(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

pub(crate) fn attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// An attribute whose data is the attributes `inner` writes.
pub(crate) fn nest(out: &mut Vec<u8>, ty: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&ty.to_ne_bytes());
    inner(out);
    let len = (out.len() - start) as u16;
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

/// A NUL-terminated string attribute (link names, kinds).
pub(crate) fn attr_str(out: &mut Vec<u8>, ty: u16, s: &str) {
    let mut d = s.as_bytes().to_vec();
    d.push(0);
    attr(out, ty, &d);
}

/// `struct ifinfomsg`: family, type, index, flags and the change mask.
fn ifinfo(out: &mut Vec<u8>, index: u32, flags: u32, change: u32) {
    out.push(libc::AF_UNSPEC as u8);
    out.push(0);
    out.extend_from_slice(&0u16.to_ne_bytes()); // type
    out.extend_from_slice(&(index as i32).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&change.to_ne_bytes());
}

/// A whole netlink message: header, then `payload`.
pub fn message(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    message_flags(ty, flags | NLM_F_ACK, seq, payload)
}

/// A whole netlink request with exactly `flags` (plus NLM_F_REQUEST): for
/// messages the kernel must not acknowledge (nfnetlink's batch markers).
pub(crate) fn message_flags(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + payload.len());
    m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// RTM_NEWLINK payload that sets IFF_UP on link `index`.
pub fn link_up_payload(index: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    ifinfo(&mut p, index, IFF_UP, IFF_UP);
    p
}

/// RTM_NEWLINK payload that creates a link `name` of kind `kind`
/// (`bridge`, `dummy`: kinds without data of their own).
pub fn new_link_payload(name: &str, kind: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(48);
    ifinfo(&mut p, 0, 0, 0);
    attr_str(&mut p, IFLA_IFNAME, name);
    nest(&mut p, IFLA_LINKINFO, |p| attr_str(p, IFLA_INFO_KIND, kind));
    p
}

/// RTM_NEWLINK payload that creates a veth pair: `name` here, `peer` in the
/// namespace `peer_ns` (the peer is created there directly, so its name
/// need only be free in that namespace: `eth0` for a container).
pub fn veth_payload(name: &str, peer: &str, peer_ns: NetNs<'_>) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    ifinfo(&mut p, 0, 0, 0);
    attr_str(&mut p, IFLA_IFNAME, name);
    nest(&mut p, IFLA_LINKINFO, |p| {
        attr_str(p, IFLA_INFO_KIND, "veth");
        nest(p, IFLA_INFO_DATA, |p| {
            // The peer's data is a whole ifinfomsg followed by its attributes.
            nest(p, VETH_INFO_PEER, |p| {
                ifinfo(p, 0, 0, 0);
                attr_str(p, IFLA_IFNAME, peer);
                match peer_ns {
                    NetNs::Pid(pid) => attr(p, IFLA_NET_NS_PID, &(pid as u32).to_ne_bytes()),
                    NetNs::Fd(fd) => attr(p, IFLA_NET_NS_FD, &fd.as_raw_fd().to_ne_bytes()),
                }
            })
        })
    });
    p
}

/// RTM_NEWLINK payload that makes `master` (a bridge) the master of link
/// `index`; `master` 0 releases it.
pub fn master_payload(index: u32, master: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(24);
    ifinfo(&mut p, index, 0, 0);
    attr(&mut p, IFLA_MASTER, &master.to_ne_bytes());
    p
}

/// RTM_SETLINK payload (family AF_BRIDGE: the bridge's own handler, which
/// reads IFLA_PROTINFO; RTM_NEWLINK would ignore it) that turns hairpin
/// mode on or off for the bridge port `index`.
pub fn hairpin_payload(index: u32, on: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(28);
    ifinfo(&mut p, index, 0, 0);
    p[0] = libc::AF_BRIDGE as u8;
    nest(&mut p, IFLA_PROTINFO | 0x8000, |p| {
        attr(p, IFLA_BRPORT_MODE, &[on as u8])
    });
    p
}

/// RTM_NEWLINK payload that renames link `index` (the link must be down).
pub fn rename_payload(index: u32, name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(36);
    ifinfo(&mut p, index, 0, 0);
    attr_str(&mut p, IFLA_IFNAME, name);
    p
}

/// RTM_DELLINK payload for link `index`.
pub fn del_link_payload(index: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    ifinfo(&mut p, index, 0, 0);
    p
}

/// RTM_NEWADDR payload: `addr/prefix` on link `index`.
pub fn addr_payload(index: u32, addr: IpAddr, prefix: u8) -> Vec<u8> {
    let mut p = vec![family(&addr), prefix, 0, RT_SCOPE_UNIVERSE];
    p.extend_from_slice(&index.to_ne_bytes());
    attr(&mut p, IFA_LOCAL, &octets(&addr));
    attr(&mut p, IFA_ADDRESS, &octets(&addr));
    p
}

/// RTM_NEWROUTE payload: `dst/prefix` through `gateway` (or on-link
/// without one) out of link `index`, in the main table.
pub fn route_payload(index: u32, dst: IpAddr, prefix: u8, gateway: Option<IpAddr>) -> Vec<u8> {
    let scope = if gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let mut p = vec![
        family(&dst),
        prefix,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        scope,
        RTN_UNICAST,
    ];
    p.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    if prefix > 0 {
        attr(&mut p, RTA_DST, &octets(&dst));
    }
    if let Some(gw) = gateway {
        attr(&mut p, RTA_GATEWAY, &octets(&gw));
    }
    attr(&mut p, RTA_OIF, &index.to_ne_bytes());
    p
}

/// The errno of an ACK for `seq`: `Some(0)` success, `Some(e)` failure,
/// `None` when `buf` holds no ACK for it.
pub fn ack_errno(buf: &[u8], seq: u32) -> Option<i32> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().ok()?);
        if len < 16 || at + len > buf.len() {
            return None;
        }
        if ty == NLMSG_ERROR && s == seq && len >= 20 {
            let e = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().ok()?);
            return Some(-e);
        }
        at += (len + 3) & !3;
    }
    None
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// IF_OPER_UP, or IF_OPER_UNKNOWN (the driver reports no carrier).
    pub running: bool,
    /// RFC 2863 operational state (IFLA_OPERSTATE), 0-6.
    pub operstate: u8,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
}

/// An address on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
}

/// A route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

/// The attributes after a fixed header of `fixed` bytes in one message
/// payload: `(type, data)`.
fn attrs(payload: &[u8], fixed: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = fixed;
    while at + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[at], payload[at + 1]]) as usize;
        let ty = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]) & 0x3fff;
        if len < 4 || at + len > payload.len() {
            break;
        }
        out.push((ty, &payload[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

fn ip(fam: u8, data: &[u8]) -> Option<IpAddr> {
    match (fam as i32, data.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
        (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
        _ => None,
    }
}

/// Parse a link message payload (ifinfomsg + attributes).
pub fn parse_link(p: &[u8]) -> Option<LinkInfo> {
    if p.len() < 16 {
        return None;
    }
    let index = i32::from_ne_bytes(p[4..8].try_into().ok()?) as u32;
    let flags = u32::from_ne_bytes(p[8..12].try_into().ok()?);
    let mut l = LinkInfo {
        index,
        name: String::new(),
        up: flags & IFF_UP != 0,
        running: false,
        operstate: 0,
        mac: None,
        mtu: 0,
    };
    for (ty, d) in attrs(p, 16) {
        match ty {
            IFLA_IFNAME => {
                l.name =
                    String::from_utf8_lossy(d.split(|&b| b == 0).next().unwrap_or(d)).into_owned()
            }
            IFLA_MTU if d.len() == 4 => l.mtu = u32::from_ne_bytes(d.try_into().ok()?),
            IFLA_ADDRESS if d.len() == 6 => l.mac = d.try_into().ok(),
            // IF_OPER_UP, or IF_OPER_UNKNOWN: drivers that report no carrier
            // (virtio-net without the status feature, lo) run when up.
            IFLA_OPERSTATE if d.len() == 1 => {
                l.operstate = d[0];
                l.running = d[0] == 6 || d[0] == 0;
            }
            _ => {}
        }
    }
    Some(l)
}

/// Parse an address message payload (ifaddrmsg + attributes).
pub fn parse_addr(p: &[u8]) -> Option<AddrInfo> {
    if p.len() < 8 {
        return None;
    }
    let (fam, prefix) = (p[0], p[1]);
    let index = u32::from_ne_bytes(p[4..8].try_into().ok()?);
    let a = attrs(p, 8);
    let pick = |t| {
        a.iter()
            .find(|(ty, _)| *ty == t)
            .and_then(|(_, d)| ip(fam, d))
    };
    let addr = pick(IFA_LOCAL).or_else(|| pick(IFA_ADDRESS))?;
    Some(AddrInfo {
        index,
        addr,
        prefix,
    })
}

/// Parse a route message payload (rtmsg + attributes); main table only.
pub fn parse_route(p: &[u8]) -> Option<RouteInfo> {
    if p.len() < 12 || p[4] != RT_TABLE_MAIN {
        return None;
    }
    let (fam, prefix) = (p[0], p[1]);
    let a = attrs(p, 12);
    let pick = |t| a.iter().find(|(ty, _)| *ty == t).map(|(_, d)| *d);
    let dst = pick(RTA_DST)
        .and_then(|d| ip(fam, d))
        .unwrap_or(if fam as i32 == libc::AF_INET6 {
            IpAddr::from([0u8; 16])
        } else {
            IpAddr::from([0u8; 4])
        });
    Some(RouteInfo {
        dst,
        prefix,
        gateway: pick(RTA_GATEWAY).and_then(|d| ip(fam, d)),
        oif: pick(RTA_OIF).and_then(|d| Some(u32::from_ne_bytes(d.try_into().ok()?))),
    })
}

/// Split a receive buffer into `(type, payload)` messages.
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if len < 16 || at + len > buf.len() {
            break;
        }
        out.push((ty, &buf[at + 16..at + len]));
        at += (len + 3) & !3;
    }
    out
}

/// A NETLINK_ROUTE socket.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

fn err(op: &'static str, target: &str) -> impl FnOnce(nix::Error) -> SysError {
    let target = target.to_string();
    move |source| SysError::Netlink { op, target, source }
}

/// A bound netlink socket of `proto`; `what` and `bind_what` name it in
/// errors.
pub(crate) fn open_socket(
    proto: SockProtocol,
    what: &'static str,
    bind_what: &'static str,
) -> Result<OwnedFd, SysError> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        proto,
    )
    .map_err(|source| SysError::Socket { what, source })?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|source| SysError::Socket {
        what: bind_what,
        source,
    })?;
    Ok(fd)
}

impl Rtnl {
    pub fn open() -> Result<Rtnl, SysError> {
        let fd = open_socket(SockProtocol::NetlinkRoute, "rtnetlink", "rtnetlink bind")?;
        Ok(Rtnl { fd, seq: 1 })
    }

    /// A socket inside the network namespace `ns`: opened by a thread that
    /// entered it (see [`crate::netns`]); it works there after that thread
    /// is gone.
    pub fn open_in(ns: NetNs<'_>) -> Result<Rtnl, SysError> {
        crate::netns::run_in_ns(ns, Rtnl::open)?
    }

    fn request(
        &mut self,
        ty: u16,
        flags: u16,
        payload: &[u8],
        op: &'static str,
        target: &str,
    ) -> Result<(), SysError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = message(ty, flags, self.seq, payload);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty()).map_err(err(op, target))?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n =
                recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(err(op, target))?;
            match ack_errno(&buf[..n], self.seq) {
                Some(0) => return Ok(()),
                Some(e) => return Err(err(op, target)(nix::Error::from_raw(e))),
                None => continue,
            }
        }
    }

    /// Set link `name` up.
    pub fn link_up(&mut self, name: &str) -> Result<(), SysError> {
        let index = self.find(name)?;
        self.request(RTM_NEWLINK, 0, &link_up_payload(index), "link up", name)
    }

    /// The index of link `name` in this socket's namespace.
    pub fn find(&mut self, name: &str) -> Result<u32, SysError> {
        self.links()?
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.index)
            .ok_or_else(|| SysError::Netlink {
                op: "find link",
                target: name.to_string(),
                source: nix::Error::ENODEV,
            })
    }

    /// Create a bridge `name`; fails with EEXIST when a link has that name.
    pub fn create_bridge(&mut self, name: &str) -> Result<(), SysError> {
        self.create_link(name, "bridge")
    }

    /// Create a link `name` of a kind without data of its own (`bridge`,
    /// `dummy`); fails with EEXIST when a link has that name.
    pub fn create_link(&mut self, name: &str, kind: &str) -> Result<(), SysError> {
        self.request(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            &new_link_payload(name, kind),
            "create link",
            &format!("{name} ({kind})"),
        )
    }

    /// Create a veth pair: `name` in this namespace, `peer` created directly
    /// in `peer_ns`. Both ends are down.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_ns: NetNs<'_>,
    ) -> Result<(), SysError> {
        self.request(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            &veth_payload(name, peer, peer_ns),
            "create veth pair",
            &format!("{name} (peer {peer} in the namespace {peer_ns})"),
        )
    }

    /// Attach link `name` to the bridge `master`.
    pub fn set_master(&mut self, name: &str, master: &str) -> Result<(), SysError> {
        let index = self.find(name)?;
        let m = self.find(master)?;
        self.request(
            RTM_NEWLINK,
            0,
            &master_payload(index, m),
            "set master",
            &format!("{name} to {master}"),
        )
    }

    /// Let the bridge send frames back out of port `name`, the port they
    /// came in on: with bridge netfilter (`br_netfilter`), a container's
    /// connection to a published port of the node that lands on the same
    /// container is forwarded at layer 2, back through its own port.
    pub fn set_hairpin(&mut self, name: &str, on: bool) -> Result<(), SysError> {
        let index = self.find(name)?;
        self.request(
            RTM_SETLINK,
            0,
            &hairpin_payload(index, on),
            "set hairpin mode",
            name,
        )
    }

    /// Rename link `name` (down) to `new`.
    pub fn rename(&mut self, name: &str, new: &str) -> Result<(), SysError> {
        let index = self.find(name)?;
        self.request(
            RTM_NEWLINK,
            0,
            &rename_payload(index, new),
            "rename link",
            &format!("{name} to {new}"),
        )
    }

    /// Delete link `name` (for a veth, both ends go).
    pub fn delete_link(&mut self, name: &str) -> Result<(), SysError> {
        let index = self.find(name)?;
        self.request(
            RTM_DELLINK,
            0,
            &del_link_payload(index),
            "delete link",
            name,
        )
    }

    /// Add (or replace) `addr/prefix` on `name`.
    pub fn add_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), SysError> {
        let index = self.find(name)?;
        let target = format!("{name} {addr}/{prefix}");
        self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_REPLACE,
            &addr_payload(index, addr, prefix),
            "add address",
            &target,
        )
    }

    /// Remove `addr/prefix` from `name`.
    pub fn del_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), SysError> {
        let index = self.find(name)?;
        let target = format!("{name} {addr}/{prefix}");
        self.request(
            RTM_DELADDR,
            0,
            &addr_payload(index, addr, prefix),
            "remove address",
            &target,
        )
    }

    /// Add (or replace) a route to `dst/prefix` via `gateway` out of `name`.
    pub fn add_route(
        &mut self,
        name: &str,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
    ) -> Result<(), SysError> {
        let r = (name, dst, prefix, gateway);
        self.route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, r, "add route")
    }

    /// Remove the route to `dst/prefix` via `gateway` out of `name` (as
    /// [`Rtnl::add_route`] made it); a route with another gateway or out of
    /// another link stays. ESRCH when there is no such route.
    pub fn del_route(
        &mut self,
        name: &str,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
    ) -> Result<(), SysError> {
        let r = (name, dst, prefix, gateway);
        self.route(RTM_DELROUTE, 0, r, "remove route")
    }

    /// One route request: `(link, dst, prefix, gateway)` as the message
    /// `ty` with `flags`; errors name `op` and the route.
    fn route(
        &mut self,
        ty: u16,
        flags: u16,
        (name, dst, prefix, gateway): (&str, IpAddr, u8, Option<IpAddr>),
        op: &'static str,
    ) -> Result<(), SysError> {
        let index = self.find(name)?;
        let target = match gateway {
            Some(g) => format!("{dst}/{prefix} via {g} dev {name}"),
            None => format!("{dst}/{prefix} dev {name}"),
        };
        self.request(
            ty,
            flags,
            &route_payload(index, dst, prefix, gateway),
            op,
            &target,
        )
    }
}

impl Rtnl {
    /// Run a dump request and collect the payloads of its answers.
    fn dump(
        &mut self,
        ty: u16,
        payload: &[u8],
        what: &'static str,
    ) -> Result<Vec<Vec<u8>>, SysError> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = message(ty, NLM_F_DUMP, self.seq, payload);
        // A dump is not ACKed per message: clear NLM_F_ACK.
        let flags = u16::from_ne_bytes([msg[6], msg[7]]) & !NLM_F_ACK;
        msg[6..8].copy_from_slice(&flags.to_ne_bytes());
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty()).map_err(err("dump", what))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(err("dump", what))?;
            if n == 0 {
                return Ok(out);
            }
            for (t, p) in messages(&buf[..n]) {
                match t {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let e = p
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        if e != 0 {
                            return Err(err("dump", what)(nix::Error::from_raw(-e)));
                        }
                    }
                    _ => out.push(p.to_vec()),
                }
            }
        }
    }

    /// A dump whose request carries a zeroed `fixed`-byte header, each
    /// answer parsed by `parse` (answers it cannot parse are skipped).
    fn dump_as<T>(
        &mut self,
        ty: u16,
        fixed: usize,
        what: &'static str,
        parse: fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, SysError> {
        Ok(self
            .dump(ty, &vec![0u8; fixed], what)?
            .iter()
            .filter_map(|m| parse(m))
            .collect())
    }

    pub fn links(&mut self) -> Result<Vec<LinkInfo>, SysError> {
        self.dump_as(RTM_GETLINK, 16, "links", parse_link)
    }

    pub fn addresses(&mut self) -> Result<Vec<AddrInfo>, SysError> {
        self.dump_as(RTM_GETADDR, 8, "addresses", parse_addr)
    }

    pub fn routes(&mut self) -> Result<Vec<RouteInfo>, SysError> {
        self.dump_as(RTM_GETROUTE, 12, "routes", parse_route)
    }
}

/// The index of link `name` in the calling thread's namespace.
pub fn index(name: &str) -> Result<u32, SysError> {
    nix::net::if_::if_nametoindex(name).map_err(|source| SysError::Netlink {
        op: "find link",
        target: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let m = message(RTM_NEWLINK, 0, 7, &link_up_payload(3));
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(
            u16::from_ne_bytes(m[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 3);
        let a = addr_payload(2, "10.0.2.15".parse().unwrap(), 24);
        assert_eq!(a.len(), 8 + 8 + 8);
        assert_eq!(&a[..4], &[libc::AF_INET as u8, 24, 0, 0]);
        assert_eq!(&a[12..16], &[10, 0, 2, 15]);
        let r = route_payload(
            2,
            "0.0.0.0".parse().unwrap(),
            0,
            Some("10.0.2.2".parse().unwrap()),
        );
        assert_eq!(r.len(), 12 + 8 + 8, "no RTA_DST for the default route");
        assert_eq!(r[4], RT_TABLE_MAIN);
        let r6 = route_payload(2, "fd00::".parse().unwrap(), 64, None);
        assert_eq!(r6.len(), 12 + 20 + 8);
        assert_eq!(r6[6], RT_SCOPE_LINK);
    }

    #[test]
    fn veth_layout() {
        let p = veth_payload("vk1", "eth0", NetNs::Pid(42));
        // ifinfomsg, IFLA_IFNAME "vk1", then IFLA_LINKINFO.
        assert_eq!(&p[16..24], &[8, 0, 3, 0, b'v', b'k', b'1', 0]);
        let info = &p[24..];
        assert_eq!(u16::from_ne_bytes([info[2], info[3]]), IFLA_LINKINFO);
        assert_eq!(u16::from_ne_bytes([info[0], info[1]]) as usize, info.len());
        // The peer's namespace pid closes the nesting.
        assert!(p.ends_with(&[8, 0, IFLA_NET_NS_PID as u8, 0, 42, 0, 0, 0]));
        let b = new_link_payload("keel0", "bridge");
        assert!(b.ends_with(&[16, 0, 18, 0, 11, 0, 1, 0, b'b', b'r', b'i', b'd', b'g', b'e', 0, 0]));
    }

    #[test]
    fn privileged_bridge_and_veth_in_scratch_namespaces() {
        if !keel_testkit::need_root() {
            return;
        }
        use std::os::fd::AsFd;
        // As root, keel's own namespace code must work: an error fails.
        let host = crate::netns::create().expect("create the host namespace");
        let peer = crate::netns::create().expect("create the peer namespace");
        let mut r = Rtnl::open_in(NetNs::Fd(host.as_fd())).unwrap();
        let mut p = Rtnl::open_in(NetNs::Fd(peer.as_fd())).unwrap();
        r.create_bridge("br-t").unwrap();
        let e = r.create_bridge("br-t").unwrap_err();
        assert!(
            matches!(
                e,
                SysError::Netlink {
                    source: nix::Error::EEXIST,
                    ..
                }
            ),
            "{e}"
        );
        r.create_veth("vt-host", "vt-peer", NetNs::Fd(peer.as_fd()))
            .unwrap();
        r.set_master("vt-host", "br-t").unwrap();
        p.rename("vt-peer", "eth0").unwrap();
        p.link_up("eth0").unwrap();
        p.add_address("eth0", "10.1.0.2".parse().unwrap(), 24)
            .unwrap();
        // A default route removed by its gateway: another one's removal
        // fails with ESRCH and leaves it.
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let gw: IpAddr = "10.1.0.1".parse().unwrap();
        let default = |p: &mut Rtnl| {
            p.routes()
                .unwrap()
                .into_iter()
                .any(|r| r.prefix == 0 && r.gateway == Some(gw))
        };
        p.add_route("eth0", any, 0, Some(gw)).unwrap();
        assert!(default(&mut p));
        let e = p
            .del_route("eth0", any, 0, Some("10.1.0.9".parse().unwrap()))
            .unwrap_err();
        assert!(
            matches!(
                e,
                SysError::Netlink {
                    source: nix::Error::ESRCH,
                    ..
                }
            ),
            "{e}"
        );
        assert!(default(&mut p));
        p.del_route("eth0", any, 0, Some(gw)).unwrap();
        assert!(!default(&mut p));
        assert!(p.links().unwrap().iter().any(|l| l.name == "eth0" && l.up));
        assert!(!r
            .links()
            .unwrap()
            .iter()
            .any(|l| l.name == "eth0" || l.name == "vt-peer"));
        r.delete_link("vt-host").unwrap();
        assert!(p.find("eth0").is_err(), "deleting one end removes the pair");
        r.delete_link("br-t").unwrap();
    }

    #[test]
    fn acks() {
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[8..12].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(ack_errno(&ack, 9), Some(0));
        ack[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack, 9), Some(17));
        assert_eq!(ack_errno(&ack, 8), None);
        assert_eq!(ack_errno(&ack[..10], 9), None);
    }

    #[test]
    fn privileged_loopback_up() {
        if !keel_testkit::need_root() {
            return;
        }
        // lo is up on any host already: setting it up again must be accepted.
        let mut r = Rtnl::open().unwrap();
        r.link_up("lo").unwrap();
        assert!(r.link_up("nonexistent0").is_err());
        let links = r.links().unwrap();
        let lo = links
            .iter()
            .find(|l| l.name == "lo")
            .expect("lo in the dump");
        assert!(lo.up);
        // An address added and removed again on lo.
        let test: IpAddr = "127.9.9.9".parse().unwrap();
        r.add_address("lo", test, 32).unwrap();
        assert!(r.addresses().unwrap().iter().any(|a| a.addr == test));
        r.del_address("lo", test, 32).unwrap();
        assert!(!r.addresses().unwrap().iter().any(|a| a.addr == test));
        let addrs = r.addresses().unwrap();
        assert!(
            addrs.iter().any(|a| a.index == lo.index
                && a.addr == IpAddr::from([127, 0, 0, 1])
                && a.prefix == 8),
            "{addrs:?}"
        );
        let _ = r.routes().unwrap();
    }
}

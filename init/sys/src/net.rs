//! Minimal IPv4 interface configuration through the classic socket ioctls:
//! bring a link up, give it an address, add a default route.
//!
//! The rtnetlink-based network stack (DHCP, routes, DNS) replaces this when the
//! network subsystem lands; these calls are what the skeleton needs to put the
//! management API on the wire.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::SysError;

fn inet_socket() -> Result<OwnedFd, SysError> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|source| SysError::Socket {
        what: "interface ioctls",
        source,
    })
}

fn ifreq(name: &str) -> Result<libc::ifreq, SysError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(SysError::IfName(name.to_string()));
    }
    // SAFETY: ifreq is a plain C struct (name array + union of PODs); all-zero is
    // a valid value for every member.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) on Linux and
    // sockaddr is the generic view the ioctls take.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl(
    fd: &OwnedFd,
    req: libc::Ioctl,
    arg: *mut libc::c_void,
    op: &'static str,
    ifname: &str,
) -> Result<(), SysError> {
    // SAFETY: `arg` points to a live ifreq/rtentry owned by the caller for the
    // duration of the call, of the type the request expects.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) };
    if rc < 0 {
        return Err(SysError::NetIoctl {
            op,
            ifname: ifname.to_string(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Set the link `name` administratively up.
pub fn link_up(name: &str) -> Result<(), SysError> {
    let fd = inet_socket()?;
    let mut req = ifreq(name)?;
    ioctl(
        &fd,
        libc::SIOCGIFFLAGS,
        &mut req as *mut _ as *mut _,
        "get flags",
        name,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(
        &fd,
        libc::SIOCSIFFLAGS,
        &mut req as *mut _ as *mut _,
        "set up",
        name,
    )
}

/// Give `name` the IPv4 address `addr/prefix`.
pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), SysError> {
    let fd = inet_socket()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(addr);
    ioctl(
        &fd,
        libc::SIOCSIFADDR,
        &mut req as *mut _ as *mut _,
        "set address",
        name,
    )?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr_in(Ipv4Addr::from(mask));
    ioctl(
        &fd,
        libc::SIOCSIFNETMASK,
        &mut req as *mut _ as *mut _,
        "set netmask",
        name,
    )
}

/// Add a default IPv4 route through `gateway` on `name`.
pub fn add_default_route(name: &str, gateway: Ipv4Addr) -> Result<(), SysError> {
    let fd = inet_socket()?;
    // SAFETY: rtentry is a plain C struct; all-zero is a valid (empty) route.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    let mut dev: Vec<u8> = name.as_bytes().to_vec();
    dev.push(0);
    rt.rt_dev = dev.as_mut_ptr() as *mut libc::c_char;
    ioctl(
        &fd,
        libc::SIOCADDRT,
        &mut rt as *mut _ as *mut _,
        "add default route",
        name,
    )
}

//! A raw AF_PACKET socket on one link that sees only DHCP client traffic:
//! IPv4 UDP to port 68 and ARP (so that unicast renewals can resolve the
//! server), selected in the kernel by a classic BPF filter. The DHCP client
//! (smoltcp) runs over it without ever seeing the node's other traffic, so
//! it cannot answer (or reset) connections the kernel owns.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::SysError;

const ETH_P_ALL: u16 = 0x0003;

/// `arp or (udp dst port 68)` for IPv4 over Ethernet, unfragmented (see
/// the module doc): accept up to 256 KiB of the frame, or drop it.
const FILTER: [libc::sock_filter; 12] = [
    bpf(0x28, 0, 0, 12),      // 0 ldh [12]: ethertype
    bpf(0x15, 8, 0, 0x0806),  // 1 ARP: accept
    bpf(0x15, 0, 8, 0x0800),  // 2 IPv4, else drop
    bpf(0x30, 0, 0, 23),      // 3 ldb [23]: IP protocol
    bpf(0x15, 0, 6, 17),      // 4 UDP, else drop
    bpf(0x28, 0, 0, 20),      // 5 ldh [20]: flags + fragment offset
    bpf(0x45, 4, 0, 0x1fff),  // 6 a fragment: drop
    bpf(0xb1, 0, 0, 14),      // 7 ldxb 4*([14]&0xf): IP header length
    bpf(0x48, 0, 0, 16),      // 8 ldh [x+16]: UDP destination port
    bpf(0x15, 0, 1, 68),      // 9 port 68, else drop
    bpf(0x06, 0, 0, 0x40000), // 10 accept
    bpf(0x06, 0, 0, 0),       // 11 drop
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn err(op: &'static str) -> SysError {
    SysError::Socket {
        what: op,
        source: nix::Error::last(),
    }
}

/// The socket, bound to one link.
pub struct DhcpSocket {
    fd: OwnedFd,
}

impl DhcpSocket {
    /// Open the socket on link `index`, filter attached before binding so no
    /// other frame is ever queued.
    pub fn open(index: u32) -> Result<DhcpSocket, SysError> {
        // SAFETY: socket(2) with constant arguments; the result is checked
        // and owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if fd < 0 {
            return Err(err("packet socket"));
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let prog = libc::sock_fprog {
            len: FILTER.len() as u16,
            filter: FILTER.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: SO_ATTACH_FILTER copies the program the sock_fprog points
        // to (a static array) during the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog as *const libc::sock_fprog as *const libc::c_void,
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(err("packet socket filter"));
        }
        // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: bind(2) reads a sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(err("packet socket bind"));
        }
        Ok(DhcpSocket { fd })
    }

    /// Receive one frame into `buf`; `None` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        nix::sys::socket::recv(
            self.fd.as_raw_fd(),
            buf,
            nix::sys::socket::MsgFlags::empty(),
        )
        .ok()
    }

    /// Send one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> Result<(), SysError> {
        nix::sys::socket::send(
            self.fd.as_raw_fd(),
            frame,
            nix::sys::socket::MsgFlags::empty(),
        )
        .map(|_| ())
        .map_err(|source| SysError::Socket {
            what: "packet send",
            source,
        })
    }

    /// Wait until a frame arrives or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll(2) on one pollfd that lives for the call.
        let _ = unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

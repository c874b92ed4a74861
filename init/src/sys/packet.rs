//! Link-layer broadcasts through a packet socket: how a zone announces its address with
//! gratuitous ARP ([`crate::net::arp`]) before its confinement forbids packet sockets.

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike};

use super::{SysError, call};

/// Sends each of `payloads` as one frame of `ethertype` to the broadcast address on the
/// interface with index `ifindex`; the kernel adds the Ethernet header with the
/// interface's own MAC as the source.
pub fn broadcast(ifindex: u32, ethertype: u16, payloads: &[&[u8]]) -> Result<(), SysError> {
    // Protocol 0: the socket sends only, it receives nothing.
    let socket = nix::sys::socket::socket(AddressFamily::Packet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(call("socket(AF_PACKET, SOCK_DGRAM)"))?;
    let raw = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: i32::try_from(ifindex).map_err(|_| call("sockaddr_ll")(Errno::EINVAL))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(0);
    // SAFETY: `raw` is a fully initialised `sockaddr_ll` that lives for the whole call, and
    // `len` is its exact size, which is what `LinkAddr::from_raw` checks and copies.
    let to = unsafe { LinkAddr::from_raw(std::ptr::from_ref(&raw).cast(), Some(len)) }
        .ok_or_else(|| call("sockaddr_ll")(Errno::EINVAL))?;
    for payload in payloads {
        nix::sys::socket::sendto(socket.as_raw_fd(), payload, &to, MsgFlags::empty())
            .map_err(call("sendto(AF_PACKET)"))?;
    }
    Ok(())
}

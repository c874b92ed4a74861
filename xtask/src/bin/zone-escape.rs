//! `zone-escape`: the escape suite's attacker. The zones boot test copies it into a zone
//! and runs it there as the zone's root; it tries, one by one, what a personality (or
//! whoever broke into one) would do to take over the box, and prints one line per attempt,
//! `escape: NAME: refused (ERROR)` or `escape: NAME: SUCCEEDED (...)`. The test asserts
//! each refusal and checks the host afterwards. Never run it on a machine you care about.
//!
//! Usage: `zone-escape MAJOR:MINOR` (the pool disk's device numbers, as the host sees them).
//!
//! `zone-escape spoof OWN_IP HOST_MAC`, run in a zone granted `NET_RAW` and `NET_ADMIN`
//! (whose address is `OWN_IP` and whose NIC's host side has `HOST_MAC`), sends on its `eth0`
//! one frame it may send and several it must not get onto the wire, each addressed to
//! [`SPOOF_TARGET`] so that a capture of the link can tell them apart, and prints `spoof:
//! NAME: ...` lines; the test reads the capture.

use std::ffi::CString;
use std::io::Read;

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Prints the outcome of a raw call returning -1 on error.
fn report(name: &str, r: i64, success: impl FnOnce(i64) -> String) {
    if r < 0 {
        println!("escape: {name}: refused ({})", errno());
    } else {
        println!("escape: {name}: SUCCEEDED ({})", success(r));
    }
}

fn write_file(name: &str, path: &str, value: &str) {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Err(e) => println!("escape: {name}: refused ({e})"),
        Ok(mut f) => match std::io::Write::write_all(&mut f, value.as_bytes()) {
            Err(e) => println!("escape: {name}: refused ({e})"),
            Ok(()) => println!("escape: {name}: SUCCEEDED (wrote {value:?} to {path})"),
        },
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn main() {
    let device = std::env::args().nth(1).unwrap_or_default();
    if device == "spoof" {
        let args: Vec<String> = std::env::args().skip(2).collect();
        spoof(
            args.first().map_or("", String::as_str),
            args.get(1).map_or("", String::as_str),
        );
        println!("spoof: done");
        return;
    }
    sysctls();
    devices(&device);
    namespaces_and_mounts();
    privileges();
    ids();
    kernel_interfaces();
    network();
    println!("escape: done");
}

/// The kernel's settings: each would be global, for the host too.
fn sysctls() {
    write_file("core_pattern", "/proc/sys/kernel/core_pattern", "|/tmp/x zone-was-here");
    write_file("modprobe", "/proc/sys/kernel/modprobe", "/tmp/x");
    write_file("drop_caches", "/proc/sys/vm/drop_caches", "3");
    write_file("sysrq", "/proc/sysrq-trigger", "h");
    let mut kcore = Vec::new();
    let read = std::fs::File::open("/proc/kcore").and_then(|f| f.take(4096).read_to_end(&mut kcore));
    match read {
        Ok(0) => println!("escape: kcore: refused (masked, reads 0 bytes)"),
        Ok(n) => println!("escape: kcore: SUCCEEDED (read {n} bytes of kernel memory)"),
        Err(e) => println!("escape: kcore: refused ({e})"),
    }
}

/// A node for the pool disk, made and read.
fn devices(device: &str) {
    let (major, minor) = device
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .unwrap_or((0, 0));
    for (name, path) in [("mknod-tmp", "/tmp/pool-disk"), ("mknod-volume", "/srv/www/pool-disk")] {
        let at = cstr(path);
        // SAFETY: `at` is a valid NUL-terminated path for the duration of the call.
        let r = unsafe { libc::mknod(at.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(major, minor)) };
        report(&format!("{name} {major}:{minor}"), i64::from(r), |_| {
            let mut sector = vec![0u8; 512];
            let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut sector));
            let _ = std::fs::remove_file(path);
            match read {
                Ok(n) => format!("made {path} and read {n} bytes of the pool disk"),
                Err(e) => format!("made {path}; reading it: {e}"),
            }
        });
    }
}

/// New namespaces (a user namespace gives back every capability over them) and mounts.
fn namespaces_and_mounts() {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a raw clone without a new stack behaves like fork: the child returns 0 and
    // exits at once without touching anything shared.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    if r == 0 {
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    report("clone-newuser", r, |pid| {
        // SAFETY: waitpid on our own child with a null status pointer.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
        format!("child {pid} in a new user namespace")
    });
    for (name, flag) in [
        ("unshare-user", libc::CLONE_NEWUSER),
        ("unshare-mount", libc::CLONE_NEWNS),
        ("unshare-net", libc::CLONE_NEWNET),
    ] {
        // SAFETY: unshare takes flags only.
        report(name, i64::from(unsafe { libc::unshare(flag) }), |_| {
            "new namespace".into()
        });
    }
    let tmpfs = cstr("tmpfs");
    // SAFETY: fsopen takes a valid NUL-terminated filesystem name and flags.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, tmpfs.as_ptr(), 0) };
    report("fsopen", r, |fd| format!("fs context fd {fd}"));
    let (none, target) = (cstr("none"), cstr("/tmp"));
    // SAFETY: mount with valid NUL-terminated strings and no data.
    let r = unsafe { libc::mount(none.as_ptr(), target.as_ptr(), tmpfs.as_ptr(), 0, std::ptr::null()) };
    report("mount", i64::from(r), |_| "tmpfs mounted over /tmp".into());
    let ns = std::fs::File::open("/proc/1/ns/net").map(std::os::fd::IntoRawFd::into_raw_fd);
    let r = match ns {
        // SAFETY: setns on a namespace descriptor we just opened.
        Ok(fd) => i64::from(unsafe { libc::setns(fd, 0) }),
        Err(_) => -1,
    };
    report("setns", r, |_| "entered PID 1's network namespace".into());
}

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` (version 3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn cap_eff(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Capabilities: what the zone's processes hold, and raising one.
fn privileges() {
    println!("escape: capeff-self: {}", cap_eff("self"));
    println!("escape: capeff-pid1: {}", cap_eff("1"));
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two data structs for version 3; both pointers are valid.
    unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    let sys_admin = 1u32 << 21;
    data[0].effective |= sys_admin;
    data[0].permitted |= sys_admin;
    // SAFETY: capset reads the header and two data structs, valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    report("capset-sys-admin", r, |_| "CAP_SYS_ADMIN raised".into());
    let file = std::fs::File::open("/bin/sh").map(std::os::fd::IntoRawFd::into_raw_fd);
    let empty = cstr("");
    let r = match file {
        // SAFETY: finit_module with an open descriptor and an empty parameter string.
        Ok(fd) => unsafe { libc::syscall(libc::SYS_finit_module, fd, empty.as_ptr(), 0) },
        Err(_) => -1,
    };
    report("finit_module", r, |_| "module loaded".into());
    // SAFETY: ptrace attach to PID 1 of the zone; no pointers.
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) };
    report("ptrace-pid1", r, |_| "attached to PID 1".into());
}

/// The zone's user namespace: its root is an unprivileged host uid, and no id outside its
/// range can be taken or given.
fn ids() {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    println!(
        "escape: uid-map: {}",
        map.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    // SAFETY: setresuid takes three ids; this process keeps running as whoever it is after.
    let r = unsafe { libc::setresuid(70000, 70000, 70000) };
    report("setuid-outside-range", i64::from(r), |_| "became uid 70000".into());
    let path = cstr("/tmp/owned");
    let _ = std::fs::write("/tmp/owned", "");
    // SAFETY: chown with a valid NUL-terminated path.
    let r = unsafe { libc::chown(path.as_ptr(), 0, 70000) };
    report("chown-outside-range", i64::from(r), |_| {
        "gave /tmp/owned to gid 70000".into()
    });
    // What the zone writes on the pool, for the host to check its owner.
    let _ = std::fs::write("/srv/www/written-by-zone-root", "");
}

/// Kernel interfaces with a history of privilege escalations.
fn kernel_interfaces() {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup with a zeroed params struct of the kernel's size.
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) };
    report("io_uring", r, |fd| format!("ring fd {fd}"));
    // SAFETY: userfaultfd takes flags only.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, 0) };
    report("userfaultfd", r, |fd| format!("fd {fd}"));
    let mut attr = [0u8; 128];
    // SAFETY: bpf(BPF_MAP_CREATE) with a zeroed attribute buffer of the given size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), attr.len()) };
    report("bpf", r, |fd| format!("fd {fd}"));
}

/// A spoofed ARP reply: the gateway's address claimed with the zone's own MAC.
fn network() {
    let protocol = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    report("packet-socket", i64::from(fd), |_| {
        let mut frame = [0u8; 42];
        frame[..6].copy_from_slice(&[0xff; 6]);
        frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        frame[28..32].copy_from_slice(&[10, 0, 2, 2]);
        // SAFETY: send on our own socket from a buffer valid for its length.
        let sent = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
        format!("raw socket open; spoofed ARP reply send returned {sent}")
    });
}

/// The address every frame of `spoof` is sent to: nobody on the test's link has it.
const SPOOF_TARGET: [u8; 4] = [192, 168, 1, 77];
/// An address of someone else on the link (office's `printer`).
const SPOOF_VICTIM: [u8; 4] = [192, 168, 1, 5];
/// A MAC nobody gave the zone.
const MADE_UP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x77, 0x77];

fn parse_ip(text: &str) -> [u8; 4] {
    text.parse::<std::net::Ipv4Addr>()
        .map(|a| a.octets())
        .unwrap_or_default()
}

fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (byte, hex) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(hex, 16).unwrap_or(0);
    }
    mac
}

/// An `ifreq` for `eth0`, with `mac` as its hardware address.
fn ifreq(mac: Option<[u8; 6]>) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data: all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"eth0") {
        *dst = *src as libc::c_char;
    }
    if let Some(mac) = mac {
        // SAFETY: `sockaddr` is plain old data: all zeroes is a valid value.
        let mut address: libc::sockaddr = unsafe { std::mem::zeroed() };
        address.sa_family = libc::ARPHRD_ETHER;
        for (dst, src) in address.sa_data.iter_mut().zip(mac) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_hwaddr = address;
    }
    req
}

/// `eth0`'s MAC, read with `SIOCGIFHWADDR` on `fd`.
fn own_mac(fd: i32) -> [u8; 6] {
    let mut req = ifreq(None);
    // SAFETY: SIOCGIFHWADDR writes into the `ifreq` we own.
    unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &raw mut req) };
    // SAFETY: the kernel filled `ifru_hwaddr`, the union member SIOCGIFHWADDR answers in.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    std::array::from_fn(|i| data[i] as u8)
}

/// `SIOCSIFHWADDR` of `mac` on `eth0`; the raw result.
fn set_mac(fd: i32, mac: [u8; 6]) -> i64 {
    let req = ifreq(Some(mac));
    // SAFETY: SIOCSIFHWADDR reads the `ifreq` we own.
    i64::from(unsafe { libc::ioctl(fd, libc::SIOCSIFHWADDR, &raw const req) })
}

/// A broadcast ARP reply from `mac` saying `sender` is at `mac`, to [`SPOOF_TARGET`],
/// optionally inside an 802.1Q tag.
fn arp(mac: [u8; 6], sender: [u8; 4], vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    if let Some(id) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&SPOOF_TARGET);
    f
}

/// A UDP datagram to [`SPOOF_TARGET`] port 9 from `source`, sent from `mac`.
fn udp(mac: [u8; 6], source: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&source);
    f.extend_from_slice(&SPOOF_TARGET);
    f.extend_from_slice(&[0, 9, 0, 9, 0, 8, 0, 0]);
    f
}

/// Sends `frame` on `eth0` through the packet socket `fd`.
fn send(name: &str, fd: i32, index: i32, frame: &[u8]) {
    // SAFETY: `sockaddr_ll` is plain old data: all zeroes is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = index;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: `frame` and `to` are valid for the lengths given, for the whole call.
    let sent = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if sent < 0 {
        println!("spoof: {name}: refused ({})", errno());
    } else {
        println!("spoof: {name}: sent {sent} bytes");
    }
}

/// What a zone with `NET_RAW` and `NET_ADMIN` would send to impersonate others on its LAN.
fn spoof(own_ip: &str, host_mac: &str) {
    let (own_ip, host_mac) = (parse_ip(own_ip), parse_mac(host_mac));
    // SAFETY: socket takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        println!("spoof: packet-socket: refused ({})", errno());
        return;
    }
    let name = cstr("eth0");
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
    let mac = own_mac(fd);
    println!("spoof: own-mac: {}", mac.map(|b| format!("{b:02x}")).join(":"));
    send("arp-own", fd, index, &arp(mac, own_ip, None));
    send("arp-claiming-another", fd, index, &arp(mac, SPOOF_VICTIM, None));
    send("udp-from-another", fd, index, &udp(mac, SPOOF_VICTIM));
    send("vlan-tagged", fd, index, &arp(mac, own_ip, Some(5)));
    report("mac-of-the-host", set_mac(fd, host_mac), |_| {
        "took the host NIC's MAC".into()
    });
    let made_up = set_mac(fd, MADE_UP_MAC);
    report("mac-made-up", made_up, |_| "changed eth0's MAC".into());
    if made_up >= 0 {
        send("arp-from-made-up-mac", fd, index, &arp(MADE_UP_MAC, own_ip, None));
        report("mac-restored", set_mac(fd, mac), |_| "restored".into());
    }
}

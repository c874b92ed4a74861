//! `jail-escape PID`: the attacker of the VM personality boot test, never shipped on a
//! platform. Run as host root on the box, it becomes what a guest that took over
//! `ramkey-vmm` (process `PID`) would be — the VMM's mount, network, IPC and UTS namespaces,
//! its root, its uid and gid, no capabilities, `no_new_privs` — but without the VMM's
//! seccomp filter (the worst case: a hole in it), then tries what such an attacker would,
//! one line each: `jail: NAME: refused (ERROR)` or `jail: NAME: SUCCEEDED (...)`.

use std::ffi::CString;
use std::os::fd::AsRawFd;

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// One line for a raw call's result (-1: refused).
fn report(name: &str, r: i64) {
    if r < 0 {
        println!("jail: {name}: refused ({})", errno());
    } else {
        println!("jail: {name}: SUCCEEDED (returned {r})");
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn open(path: &str, flags: i32) -> i64 {
    let path = cstr(path);
    // SAFETY: `path` is a NUL-terminated string that outlives the call; the descriptor
    // returned (if any) is leaked on purpose, the process ends soon.
    i64::from(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o600) })
}

fn main() {
    let pid = std::env::args().nth(1).unwrap_or_default();
    if let Err(e) = become_the_vmm(&pid) {
        println!("jail: setup: failed: {e}");
        return;
    }
    let root: Vec<String> = std::fs::read_dir("/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut root = root;
    root.sort();
    println!("jail: root: {}", root.join(" "));
    report("read-usbkey-config", open("/usbkey/config.toml", libc::O_RDONLY));
    report("read-shadow", open("/etc/shadow", libc::O_RDONLY));
    report("write-image", open("/disk0", libc::O_RDWR));
    report("write-kernel", open("/kernel", libc::O_WRONLY));
    report("create-file", open("/planted", libc::O_WRONLY | libc::O_CREAT));
    let sda = cstr("/dev/sda");
    // SAFETY: a NUL-terminated path that outlives the call.
    report(
        "mknod-disk",
        i64::from(unsafe { libc::mknod(sda.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) }),
    );
    let (proc, fstype) = (cstr("/proc"), cstr("proc"));
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    report(
        "mount-proc",
        i64::from(unsafe { libc::mount(fstype.as_ptr(), proc.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) }),
    );
    // SAFETY: unshare takes flags only.
    report("unshare-user", i64::from(unsafe { libc::unshare(libc::CLONE_NEWUSER) }));
    let dev = cstr("/dev");
    // SAFETY: a NUL-terminated path that outlives the call.
    report("chroot", i64::from(unsafe { libc::chroot(dev.as_ptr()) }));
    // SAFETY: setuid takes an id only.
    report("setuid-root", i64::from(unsafe { libc::setuid(0) }));
    // SAFETY: kill with signal 0 only checks the permission.
    report("signal-pid1", i64::from(unsafe { libc::kill(1, 0) }));
    match std::fs::read_dir("/proc") {
        Ok(entries) => {
            let pids: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .collect();
            println!("jail: processes-seen: {} ({})", pids.len(), pids.join(" "));
        }
        Err(e) => println!("jail: processes-seen: none (/proc: {e})"),
    }
    let reached = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([10, 0, 2, 2], 80)),
        std::time::Duration::from_secs(3),
    );
    match reached {
        Ok(_) => println!("jail: network: SUCCEEDED (connected to 10.0.2.2:80)"),
        Err(e) => println!("jail: network: refused ({e})"),
    }
    println!("jail: done");
}

/// Joins process `pid`'s namespaces and root and takes its ids, dropping every privilege.
fn become_the_vmm(pid: &str) -> Result<(), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let id = |key: &str| -> Result<u32, String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
            .ok_or(format!("no {key} in /proc/{pid}/status"))
    };
    let (uid, gid) = (id("Uid:")?, id("Gid:")?);
    let root = std::fs::File::open(format!("/proc/{pid}/root")).map_err(|e| e.to_string())?;
    for (ns, flag) in [
        ("mnt", libc::CLONE_NEWNS),
        ("net", libc::CLONE_NEWNET),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
    ] {
        let file = std::fs::File::open(format!("/proc/{pid}/ns/{ns}")).map_err(|e| e.to_string())?;
        // SAFETY: a namespace descriptor this process holds open, and its kind.
        if unsafe { libc::setns(file.as_raw_fd(), flag) } < 0 {
            return Err(format!("setns {ns}: {}", errno()));
        }
    }
    let dot = cstr(".");
    // SAFETY: a directory descriptor this process holds open; a NUL-terminated path.
    if unsafe { libc::fchdir(root.as_raw_fd()) } < 0 || unsafe { libc::chroot(dot.as_ptr()) } < 0 {
        return Err(format!("into the VMM's root: {}", errno()));
    }
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; unknown ones fail harmlessly.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: setgroups with no groups, then setresgid/setresuid with plain ids: from root to
    // another uid, every capability goes; prctl(PR_SET_NO_NEW_PRIVS) takes flags only.
    let dropped = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setresgid(gid, gid, gid) == 0
            && libc::setresuid(uid, uid, uid) == 0
            && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    };
    if !dropped {
        return Err(format!("dropping privileges: {}", errno()));
    }
    println!("jail: setup: uid {uid} gid {gid}, the VMM's namespaces and root, no capabilities");
    Ok(())
}

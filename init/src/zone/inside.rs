//! The zone's PID 1: new namespaces, the root built and entered (moved over `/`, then
//! `chroot`), the zone's user namespace entered as its root, the address set, privileges
//! dropped, then the manifest's services under the platform's supervisor
//! and event loop. It returns (exits) when told to stop, after stopping its services.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::launch::NET_READY;
use super::{SETTINGS_FILE, ZoneError, ZoneSpec};
use crate::base::log::Level;
use crate::base::paths::Paths;
use crate::devices::modprobe::KernelLoader;
use crate::devices::power::PowerButtons;
use crate::net::renew::HeldLease;
use crate::runtime::control::ControlServer;
use crate::runtime::events::{EventLoop, SIGNALS};
use crate::runtime::services::Definitions;
use crate::runtime::supervise::Supervision;
use crate::supervisor::protocol::SystemInfo;
use crate::sys;

/// Capabilities the zone's processes keep (Docker's default set without `CAP_SYS_CHROOT`,
/// `CAP_MKNOD` and `CAP_NET_RAW`): enough for services that start as root and drop to their
/// own user; no device nodes, raw packets (ARP or DHCP spoofing on the LAN), module
/// loading, raw I/O, mounts, chroot, clock, reboot or administration of the host. An image
/// may ask for a few more that act on the zone's own namespaces (`NET_ADMIN`, `NET_RAW`).
const KEPT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// Runs the zone's PID 1; returns its exit status (0 after an orderly stop). `paths` are
/// the running system's (`/`): the host's until the zone enters its root, its own after.
pub fn run(
    paths: &Paths,
    spec: &ZoneSpec,
    base: u32,
    console: Option<fs::File>,
    to_parent: impl Into<std::os::fd::OwnedFd>,
    from_parent: impl Into<std::os::fd::OwnedFd>,
) -> i32 {
    let name = &spec.name;
    let started = sys::boottime();
    let setup = setup(paths, spec, base, to_parent.into(), from_parent.into());
    let (level, line) = match &setup {
        Ok(_) => (
            Level::Info,
            format!(
                "zone {name}: up in {} ms (root, network, confinement); starting its services",
                sys::boottime().saturating_sub(started).as_millis()
            ),
        ),
        Err(e) => (Level::Error, format!("zone {name}: not started: {e}")),
    };
    // To the zone's log, and to the console, where whoever watches the boot is.
    let text = crate::base::log::format_line(sys::boottime(), level, format_args!("{line}"));
    sys::write_console(text.as_bytes());
    if let Some(mut console) = console {
        let _ = console.write_all(text.as_bytes());
    }
    match setup {
        Ok(leases) => serve(paths, spec, leases),
        Err(_) => 1,
    }
}

/// Returns the zone's DHCP lease, if it took one, for renewal.
fn setup(
    paths: &Paths,
    spec: &ZoneSpec,
    base: u32,
    to_parent: std::os::fd::OwnedFd,
    from_parent: std::os::fd::OwnedFd,
) -> Result<Vec<HeldLease>, ZoneError> {
    let user = namespaces(paths, base)?;
    let mut byte = [0u8; 1];
    fs::File::from(to_parent)
        .write_all(b"u")
        .and_then(|()| fs::File::from(from_parent).read_exact(&mut byte))
        .map_err(ZoneError::Launcher)?;
    if byte[0] != NET_READY {
        return Err(ZoneError::NoInterface);
    }
    mount(None, paths.root(), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    let root = super::root::build(paths, spec, base)?;
    // From here on no process of the zone's cgroup opens or makes a device node but the
    // standard few.
    sys::devices::restrict(&spec.cgroup, sys::devices::STANDARD).map_err(|source| ZoneError::DeviceProgram {
        cgroup: spec.cgroup.clone(),
        source,
    })?;
    nix::unistd::sethostname(&spec.name).map_err(ZoneError::call("sethostname"))?;
    enter(paths, &root)?;
    become_zone_root(&user)?;
    let leases = super::network::configure(paths, spec)?;
    // The zone's PID 1 keeps, for itself, only what renewing a DHCP lease takes on top.
    let dhcp: &[u32] = if spec.ip.as_deref() == Some("dhcp") {
        &[CAP_NET_ADMIN, CAP_NET_RAW]
    } else {
        &[]
    };
    confine(paths, spec, dhcp)?;
    Ok(leases)
}

/// The zone's namespaces, for this process (the zone's PID 1, still host root): a user
/// namespace mapping the zone's ids `0..65536` to host ids `base..`, and network, UTS, IPC
/// and cgroup namespaces owned by it (so that the zone's root, and nobody else, may bind
/// its low ports and set its address); a mount namespace owned by the host's, in which
/// this process builds the root and the zone can never mount. Returns the user namespace,
/// entered last ([`become_zone_root`]).
///
/// A namespace belongs to the user namespace of the process that makes it, so a helper
/// child makes them all at once (`unshare(CLONE_NEWUSER | ...)`); this process writes its
/// id maps (as the host's root, which keeps `setgroups` allowed for the zone's services)
/// and joins the namespaces but the user one, where it keeps the host's privileges.
fn namespaces(paths: &Paths, base: u32) -> Result<std::os::fd::OwnedFd, ZoneError> {
    let (from_helper, to_self) = std::io::pipe().map_err(ZoneError::Pipe)?;
    // The helper waits on `held` until this process drops `hold`.
    let (held, hold) = std::io::pipe().map_err(ZoneError::Pipe)?;
    let Some(helper) = sys::confine::fork()? else {
        drop((from_helper, hold));
        let flags = CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWCGROUP;
        let code = match nix::sched::unshare(flags) {
            Ok(()) => {
                // Its pid in the host's /proc, which is still this process's: "self" there
                // names it by its pid in the host's PID namespace, not in the zone's.
                let pid = fs::read_link(paths.proc_of("self")).unwrap_or_default();
                let _ =
                    fs::File::from(std::os::fd::OwnedFd::from(to_self)).write_all(pid.as_os_str().as_encoded_bytes());
                // Held until the zone's PID 1 has joined what it made.
                let _ = fs::File::from(std::os::fd::OwnedFd::from(held)).read(&mut [0u8; 1]);
                0
            }
            Err(e) => {
                eprintln!("unshare(CLONE_NEWUSER | NEWNET | NEWUTS | NEWIPC | NEWCGROUP): {e}");
                1
            }
        };
        sys::confine::exit_child(code);
    };
    drop((to_self, held));
    let joined = join(paths, base, from_helper.into());
    drop(hold);
    let _ = nix::sys::wait::waitpid(helper, None);
    let user = joined?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(ZoneError::call("unshare(CLONE_NEWNS)"))?;
    Ok(user)
}

/// Writes the helper's id maps once it has made its namespaces (and sent its pid in the
/// host's /proc), and joins them but its user namespace, which it returns.
fn join(paths: &Paths, base: u32, made: std::os::fd::OwnedFd) -> Result<std::os::fd::OwnedFd, ZoneError> {
    let mut pid = String::new();
    let _ = fs::File::from(made).read_to_string(&mut pid);
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ZoneError::NoUserNamespace);
    }
    let proc = paths.proc_of(pid);
    let map = format!("0 {base} {}\n", ramkey_image::ids::RANGE);
    for file in ["uid_map", "gid_map"] {
        let path = proc.join(file);
        fs::write(&path, &map).map_err(ZoneError::file(&path))?;
    }
    let open = |kind: &str| -> Result<std::os::fd::OwnedFd, ZoneError> {
        let path = proc.join("ns").join(kind);
        fs::File::open(&path).map(Into::into).map_err(ZoneError::file(&path))
    };
    for (kind, flag) in [
        ("net", CloneFlags::CLONE_NEWNET),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ] {
        nix::sched::setns(open(kind)?, flag).map_err(|errno| ZoneError::JoinNamespace { kind, errno })?;
    }
    open("user")
}

/// Enters the zone's user namespace as its root (host uid and gid `base`): from here on
/// this process's capabilities act on the zone's own namespaces only, and any file of the
/// host's or of another zone's is a stranger's to it.
pub fn become_zone_root(user: &impl std::os::fd::AsFd) -> Result<(), ZoneError> {
    nix::sched::setns(user, CloneFlags::CLONE_NEWUSER).map_err(ZoneError::EnterUserNamespace)?;
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setgroups(&[root]).map_err(ZoneError::call("setgroups"))?;
    nix::unistd::setresgid(root, root, root).map_err(ZoneError::call("setresgid"))?;
    let root = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root).map_err(ZoneError::call("setresuid"))
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// The zone's confinement, for this process and all it starts: the capability bounding set
/// cut to `KEPT_CAPS` and the ones its image asks for, `no_new_privs`, this process's own
/// capabilities cut to the same plus `own_extra`, and the seccomp allow-list
/// ([`sys::seccomp`]).
pub fn confine(paths: &Paths, spec: &ZoneSpec, own_extra: &[u32]) -> Result<(), ZoneError> {
    let mut keep = KEPT_CAPS.to_vec();
    for name in &spec.capabilities {
        keep.push(ramkey_image::requirements::grantable_capability(name).map_err(ZoneError::Capability)?);
    }
    sys::confine::limit_bounding_set(&keep, &paths.cap_last_cap())?;
    sys::confine::set_no_new_privs()?;
    keep.extend_from_slice(own_extra);
    sys::confine::limit_own_caps(&keep)?;
    Ok(sys::seccomp::confine_zone()?)
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), ZoneError> {
    super::root::mount(source.map(Path::new), target, fstype, flags, data)
}

/// Makes `root` the zone's `/`. The platform runs from the initramfs, and `pivot_root(2)`
/// refuses to move that root (`EINVAL`), so the new root is moved over `/` and entered with
/// `chroot` (as `switch_root` does); what lies beneath is out of reach because the zone can
/// neither `chroot` again (no `CAP_SYS_CHROOT`, `chroot` denied) nor mount.
fn enter(paths: &Paths, root: &Path) -> Result<(), ZoneError> {
    chdir(root)?;
    mount(Some("."), paths.root(), None, MsFlags::MS_MOVE, None)?;
    nix::unistd::chroot(".").map_err(ZoneError::call("chroot"))?;
    chdir(paths.root())
}

fn chdir(path: &Path) -> Result<(), ZoneError> {
    nix::unistd::chdir(path).map_err(|errno| ZoneError::Chdir {
        path: path.to_path_buf(),
        errno,
    })
}

/// The manifest's services under the supervisor, and the lease's renewal, until told to stop.
pub fn serve(paths: &Paths, spec: &ZoneSpec, leases: Vec<HeldLease>) -> i32 {
    let name = &spec.name;
    let signals = match sys::signalfd(SIGNALS) {
        Ok(s) => s,
        Err(e) => {
            crate::error!("zone {name}: {e}");
            return 1;
        }
    };
    let defs = Definitions {
        specs: spec.services.clone(),
        ..Definitions::default()
    };
    let info = SystemInfo {
        platform: format!("zone {name}: {} {}", spec.image_name, spec.version),
        config_source: paths.root().join(SETTINGS_FILE).display().to_string(),
        config_error: None,
        pool: if spec.persistent { "on the pool" } else { "in RAM" }.to_string(),
        ..SystemInfo::default()
    };
    let services = match Supervision::start(defs, paths.root(), None, info) {
        Ok(s) => s,
        Err(e) => {
            crate::error!("zone {name}: services not started: {e}");
            return 1;
        }
    };
    let control = ControlServer::bind(Path::new(crate::runtime::control::SOCKET))
        .inspect_err(|e| crate::warn!("zone {name}: {e}"))
        .ok();
    let mut events = EventLoop {
        signals,
        uevents: None,
        buttons: PowerButtons::default(),
        modprobe: None,
        loader: Box::new(KernelLoader),
        dev_root: paths.dev(),
        sys_root: paths.sys(),
        services: Some(services),
        control,
        leases,
        judge: None,
    };
    match events.run() {
        Ok(request) => {
            crate::notice!("zone {name}: services stopped ({})", request.reason);
            0
        }
        Err(e) => {
            crate::error!("zone {name}: {e}");
            1
        }
    }
}

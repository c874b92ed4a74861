//! The zone's PID 1: new namespaces, the root built and entered (moved over `/`, then
//! `chroot`), the address set, privileges dropped, then the manifest's services under the platform's supervisor
//! and event loop. It returns (exits) when told to stop, after stopping its services.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::launch::NET_READY;
use super::{RUN_DIR, SETTINGS_FILE, ZoneSpec};
use crate::control::ControlServer;
use crate::events::{EventLoop, SIGNALS};
use crate::log::Level;
use crate::modprobe::KernelLoader;
use crate::net::renew::HeldLease;
use crate::power::PowerButtons;
use crate::services::Definitions;
use crate::supervise::Supervision;
use crate::supervisor::protocol::SystemInfo;
use crate::sys;

/// Capabilities the zone's processes keep (Docker's default set without `CAP_SYS_CHROOT`):
/// enough for services that start as root and drop to their own user; no module loading,
/// raw I/O, mounts, chroot, clock, reboot or administration of the host.
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
    13, // CAP_NET_RAW
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// System calls no appliance needs; they fail with `EPERM` in a zone.
const DENIED: &[i64] = &[
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_open_by_handle_at,
    libc::SYS_bpf,
    libc::SYS_setns,
    libc::SYS_unshare,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
    libc::SYS_syslog,
];

/// Runs the zone's PID 1; returns its exit status (0 after an orderly stop).
pub fn run(
    spec: &ZoneSpec,
    console: Option<fs::File>,
    to_parent: impl Into<std::os::fd::OwnedFd>,
    from_parent: impl Into<std::os::fd::OwnedFd>,
) -> i32 {
    let name = &spec.name;
    let started = sys::boottime();
    let setup = setup(spec, to_parent.into(), from_parent.into());
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
    let text = crate::log::format_line(sys::boottime(), level, format_args!("{line}"));
    sys::write_console(text.as_bytes());
    if let Some(mut console) = console {
        let _ = console.write_all(text.as_bytes());
    }
    match setup {
        Ok(leases) => serve(spec, leases),
        Err(_) => 1,
    }
}

/// Returns the zone's DHCP lease, if it took one, for renewal.
fn setup(
    spec: &ZoneSpec,
    to_parent: std::os::fd::OwnedFd,
    from_parent: std::os::fd::OwnedFd,
) -> Result<Vec<HeldLease>, String> {
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP;
    nix::sched::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    let mut byte = [0u8; 1];
    fs::File::from(to_parent)
        .write_all(b"u")
        .and_then(|()| fs::File::from(from_parent).read_exact(&mut byte))
        .map_err(|e| format!("talking to the launcher: {e}"))?;
    if byte[0] != NET_READY {
        return Err("its network interface could not be made (the line above says why)".into());
    }
    mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    let root = build_root(spec)?;
    nix::unistd::sethostname(&spec.name).map_err(|e| format!("sethostname: {e}"))?;
    enter(&root)?;
    let leases = super::network::configure(spec)?;
    confine(spec)?;
    Ok(leases)
}

/// The zone's confinement, for this process and all it starts: the capability bounding set
/// cut to `KEPT_CAPS` and the ones its image asks for, `no_new_privs`, and the seccomp
/// filter denying `DENIED`.
pub fn confine(spec: &ZoneSpec) -> Result<(), String> {
    let mut keep = KEPT_CAPS.to_vec();
    for name in &spec.capabilities {
        keep.push(ramkey_image::requirements::grantable_capability(name)?);
    }
    sys::confine::limit_bounding_set(&keep).map_err(|e| e.to_string())?;
    sys::confine::set_no_new_privs().map_err(|e| e.to_string())?;
    sys::confine::deny_syscalls(DENIED).map_err(|e| e.to_string())
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|e| {
        format!(
            "mount {} on {}: {e}",
            source.or(fstype).unwrap_or("-"),
            target.display()
        )
    })
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))
}

/// Loop device and squashfs, overlayfs with its writable layer, volumes, `/dev`, `/proc`,
/// `/sys`, `/tmp`, `/run` and the settings file; returns the new root.
fn build_root(spec: &ZoneSpec) -> Result<PathBuf, String> {
    let base = Path::new("/").join(RUN_DIR).join(&spec.name);
    let (lower, root) = (base.join("lower"), base.join("root"));
    let (upper, work) = (spec.state_dir.join("upper"), spec.state_dir.join("work"));
    for dir in [&lower, &root, &upper, &work] {
        mkdir(dir)?;
    }
    let image = fs::File::open(&spec.image).map_err(|e| format!("{}: {e}", spec.image.display()))?;
    let (device, held) = sys::confine::attach_loop(&image, spec.payload_size, Path::new("/dev"))
        .map_err(|e| format!("loop device for {}: {e}", spec.image.display()))?;
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    mount(Some(&device.to_string_lossy()), &lower, Some("squashfs"), ro, None)?;
    // The mount holds the device now; it is cleared when the zone's mounts go away.
    drop(held);
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(&options),
    )?;
    for (inside, volume) in &spec.volumes {
        let host = spec.state_dir.join("volumes").join(volume);
        let target = root.join(inside.trim_start_matches('/'));
        mkdir(&host)?;
        mkdir(&target)?;
        mount(Some(&host.to_string_lossy()), &target, None, MsFlags::MS_BIND, None)?;
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let at = |p: &str| root.join(p);
    mkdir(&at("proc"))?;
    mount(
        Some("proc"),
        &at("proc"),
        Some("proc"),
        nosuid | MsFlags::MS_NOEXEC,
        None,
    )?;
    mkdir(&at("sys"))?;
    mount(Some("sysfs"), &at("sys"), Some("sysfs"), ro | MsFlags::MS_NOEXEC, None)?;
    mount(
        Some("cgroup2"),
        &at("sys/fs/cgroup"),
        Some("cgroup2"),
        ro | MsFlags::MS_NOEXEC,
        None,
    )?;
    for (dir, mode) in [("tmp", "1777"), ("run", "0755")] {
        mkdir(&at(dir))?;
        mount(
            Some("tmpfs"),
            &at(dir),
            Some("tmpfs"),
            nosuid,
            Some(&format!("mode={mode}")),
        )?;
    }
    minimal_dev(&at("dev"))?;
    let settings = root.join(SETTINGS_FILE.trim_start_matches('/'));
    mkdir(settings.parent().unwrap_or(&root))?;
    fs::write(&settings, &spec.settings).map_err(|e| format!("{}: {e}", settings.display()))?;
    Ok(root)
}

/// A tmpfs `/dev` with the usual character devices bound from the host's, `pts`, `shm`.
fn minimal_dev(dev: &Path) -> Result<(), String> {
    mkdir(dev)?;
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755,size=1m"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        fs::write(&target, b"").map_err(|e| format!("{}: {e}", target.display()))?;
        let host = Path::new("/dev").join(node);
        mount(Some(&host.to_string_lossy()), &target, None, MsFlags::MS_BIND, None)?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(|e| format!("{}: {e}", dev.join(link).display()))?;
    }
    mkdir(&dev.join("pts"))?;
    let pts = "newinstance,ptmxmode=0666,mode=0620";
    mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(pts),
    )?;
    mkdir(&dev.join("shm"))?;
    mount(
        Some("tmpfs"),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
}

/// Makes `root` the zone's `/`. The platform runs from the initramfs, and `pivot_root(2)`
/// refuses to move that root (`EINVAL`), so the new root is moved over `/` and entered with
/// `chroot` (as `switch_root` does); what lies beneath is out of reach because the zone can
/// neither `chroot` again (no `CAP_SYS_CHROOT`, `chroot` denied) nor mount.
fn enter(root: &Path) -> Result<(), String> {
    nix::unistd::chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    mount(Some("."), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// The manifest's services under the supervisor, and the lease's renewal, until told to stop.
fn serve(spec: &ZoneSpec, leases: Vec<HeldLease>) -> i32 {
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
        config_source: SETTINGS_FILE.to_string(),
        config_error: None,
        pool: if spec.persistent { "on the pool" } else { "in RAM" }.to_string(),
    };
    let services = match Supervision::start(defs, Path::new("/"), None, info) {
        Ok(s) => s,
        Err(e) => {
            crate::error!("zone {name}: services not started: {e}");
            return 1;
        }
    };
    let control = ControlServer::bind(Path::new(crate::control::SOCKET))
        .inspect_err(|e| crate::warn!("zone {name}: {e}"))
        .ok();
    let mut events = EventLoop {
        signals,
        uevents: None,
        buttons: PowerButtons::default(),
        modprobe: None,
        loader: Box::new(KernelLoader),
        dev_root: PathBuf::from("/dev"),
        sys_root: PathBuf::from("/sys"),
        services: Some(services),
        control,
        leases,
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

//! The zone's root, built by its PID 1 (still host root, in the zone's fresh mount
//! namespace) before it enters it: the image's payload, its owners shifted into the zone's
//! id range ([`super::ids`]), read-only through a loop device,
//! the writable layer over it (reset when the image changed), the volumes, a masked `/proc`,
//! a read-only `/sys`, a `/dev` of the standard few nodes, `/tmp`, `/run` and the settings
//! file. Every mount target inside the zone is resolved beneath its root without following
//! symlinks ([`sys::beneath`]), every mount the zone can write to is `nodev,nosuid`.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{RUN_DIR, SETTINGS_FILE, ZoneSpec};
use crate::base::paths::Paths;
use crate::sys;
use crate::sys::beneath;

/// Where the writable layer notes the payload it was made over (in the zone's state
/// directory, beside `upper/`).
const ROOT_IMAGE: &str = "root-image";

/// `/proc` entries the zone reads as empty (runc's masked paths): kernel memory, keys,
/// timers and scheduler internals of the whole machine.
const MASKED: &[&str] = &[
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];

/// `/proc` entries the zone reads but cannot write (runc's read-only paths): the kernel's
/// settings (`sys`; its own network's settings, `sys/net`, stay writable), `sysrq-trigger`.
const READ_ONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// `/sys` entries masked inside the read-only `/sys`.
const SYS_MASKED: &[&str] = &["firmware", "devices/virtual/powercap"];

/// The standard device nodes bound from the host's `/dev` (the device program of
/// [`sys::devices`] allows these and nothing else).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

pub(super) fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|e| {
        format!(
            "mount {} on {}: {e}",
            source.map_or_else(|| fstype.unwrap_or("-").to_string(), |s| s.display().to_string()),
            target.display()
        )
    })
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))
}

/// A mount target inside the zone: the directory `inside` beneath `root`, made if missing,
/// never through a symlink. Mount on its [`beneath::fd_path`].
fn target(root: &Path, inside: &str) -> Result<OwnedFd, String> {
    beneath::make_dir(root, Path::new(inside)).map_err(|e| e.to_string())
}

/// The path of what is mounted on `at` now (the magic link of [`beneath::fd_path`] leads
/// to the directory beneath the mount).
fn mounted_on(at: &OwnedFd) -> Result<PathBuf, String> {
    let link = beneath::fd_path(at);
    fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))
}

/// Binds `source` on `target` with `flags` (a bind mount takes its flags only when
/// remounted).
fn bind(source: &Path, target: &Path, flags: MsFlags) -> Result<(), String> {
    mount(Some(source), target, None, MsFlags::MS_BIND, None)?;
    remount(target, flags)
}

/// Sets `flags` on the bind mount at `target` (its root: a path, not a descriptor of the
/// directory beneath it).
fn remount(target: &Path, flags: MsFlags) -> Result<(), String> {
    mount(None, target, None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags, None)
}

/// Builds the zone's root, its files owned by the zone's ids (host ids from `ids`, the
/// zone's base); returns where it is mounted. `paths` are the host's.
pub fn build(paths: &Paths, spec: &ZoneSpec, ids: u32) -> Result<PathBuf, String> {
    let run = paths.root().join(RUN_DIR).join(&spec.name);
    let (lower, root) = (run.join("lower"), run.join("root"));
    let (upper, work) = (spec.state_dir.join("upper"), spec.state_dir.join("work"));
    let volumes = spec.state_dir.join("volumes");
    reset_if_image_changed(spec)?;
    for dir in [&lower, &root, &upper, &work] {
        mkdir(dir)?;
    }
    super::ids::shift_trees(&spec.state_dir, &[&upper, &volumes], ids)?;
    super::ids::give(&upper, ids)?;
    let made = run.join("payload.made");
    let image = super::ids::payload(
        &spec.image,
        spec.payload_size,
        &spec.sha256,
        &spec.state_dir,
        ids,
        &made,
    )?;
    let (device, held) = sys::confine::attach_loop(&image, spec.payload_size, &paths.dev())
        .map_err(|e| format!("loop device for {}: {e}", spec.image.display()))?;
    let ro = MsFlags::MS_RDONLY | NOSUID_NODEV;
    mount(Some(&device), &lower, Some("squashfs"), ro, None)?;
    // The mount holds the device now; it is cleared when the zone's mounts go away.
    drop(held);
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some(Path::new("overlay")),
        &root,
        Some("overlay"),
        NOSUID_NODEV,
        Some(&options),
    )?;
    for (inside, volume) in &spec.volumes {
        let host = volumes.join(volume);
        mkdir(&host)?;
        super::ids::give(&host, ids)?;
        let at = target(&root, inside)?;
        mount(Some(&host), &beneath::fd_path(&at), None, MsFlags::MS_BIND, None)?;
        let bound = mounted_on(&at)?;
        remount(&bound, NOSUID_NODEV)?;
    }
    proc(paths, &root)?;
    let at = target(&root, "sys")?;
    mount(
        Some(Path::new("sysfs")),
        &beneath::fd_path(&at),
        Some("sysfs"),
        ro | MsFlags::MS_NOEXEC,
        None,
    )?;
    let sys = mounted_on(&at)?;
    let cgroup = sys.join("fs/cgroup");
    mount(
        Some(Path::new("cgroup2")),
        &cgroup,
        Some("cgroup2"),
        ro | MsFlags::MS_NOEXEC,
        None,
    )?;
    for masked in SYS_MASKED {
        mask(paths, &sys.join(masked))?;
    }
    for (dir, mode) in [("tmp", "1777"), ("run", "0755")] {
        let at = target(&root, dir)?;
        let data = format!("mode={mode},uid={ids},gid={ids}");
        mount(
            Some(Path::new("tmpfs")),
            &beneath::fd_path(&at),
            Some("tmpfs"),
            NOSUID_NODEV,
            Some(&data),
        )?;
    }
    minimal_dev(paths, &root)?;
    // In the fresh /run: nothing of the writable layer is on the way.
    let settings = root.join(SETTINGS_FILE);
    let dir = settings.parent().unwrap_or(&root);
    mkdir(dir)?;
    fs::write(&settings, &spec.settings).map_err(|e| format!("{}: {e}", settings.display()))?;
    super::ids::give(dir, ids)?;
    super::ids::give(&settings, ids)?;
    Ok(root)
}

/// Empties the writable layer when the zone's image is not the one it was made over (a
/// swap, a rollback, a boot fallback, a new image in the config): a file the zone changed
/// outside its volumes (`/usr/sbin/nginx`, `/etc/ld.so.preload`) must not shadow the new,
/// verified image. Kept when the config asks for a persistent root.
fn reset_if_image_changed(spec: &ZoneSpec) -> Result<(), String> {
    let record = spec.state_dir.join(ROOT_IMAGE);
    let made_over = fs::read_to_string(&record).unwrap_or_default();
    if made_over.trim() != spec.sha256 && !spec.persistent_root {
        for layer in ["upper", "work"] {
            let dir = spec.state_dir.join(layer);
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("resetting the writable root {}: {e}", dir.display())),
            }
        }
        if !made_over.is_empty() {
            crate::notice!(
                "zone {}: the image changed: writable root reset (only the volumes are kept)",
                spec.name
            );
        }
    }
    mkdir(&spec.state_dir)?;
    fs::write(&record, format!("{}\n", spec.sha256)).map_err(|e| format!("{}: {e}", record.display()))
}

/// A fresh `/proc` for the zone's PID namespace, with [`MASKED`] entries emptied and
/// [`READ_ONLY`] ones read-only, but for the zone's own network settings.
fn proc(paths: &Paths, root: &Path) -> Result<(), String> {
    let at = target(root, "proc")?;
    let proc = beneath::fd_path(&at);
    mount(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        NOSUID_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    // From here on, paths under the new /proc are the kernel's, not the zone's.
    let proc = mounted_on(&at)?;
    for masked in MASKED {
        mask(paths, &proc.join(masked))?;
    }
    for entry in READ_ONLY {
        let path = proc.join(entry);
        if path.exists() {
            bind(&path, &path, NOSUID_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY)?;
        }
    }
    let net = proc.join("sys/net");
    bind(&net, &net, NOSUID_NODEV | MsFlags::MS_NOEXEC)
}

/// Hides `path` (when it exists): `/dev/null` over a file, an empty read-only tmpfs over a
/// directory (`paths` are the host's).
fn mask(paths: &Paths, path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            NOSUID_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
            Some("size=0"),
        ),
        Ok(_) => mount(Some(&paths.dev().join("null")), path, None, MsFlags::MS_BIND, None),
        Err(_) => Ok(()),
    }
}

/// A tmpfs `/dev` with the [`DEVICES`] bound from the host's (under `paths`), `pts`, `shm`.
fn minimal_dev(paths: &Paths, root: &Path) -> Result<(), String> {
    let at = target(root, "dev")?;
    let dev = beneath::fd_path(&at);
    let data = "mode=0755,size=1m";
    mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        NOSUID_NODEV | MsFlags::MS_NOEXEC,
        Some(data),
    )?;
    let dev = mounted_on(&at)?;
    for node in DEVICES {
        let target = dev.join(node);
        fs::write(&target, b"").map_err(|e| format!("{}: {e}", target.display()))?;
        bind(
            &paths.dev().join(node),
            &target,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        )?;
    }
    // The links are read inside the zone: to its own /proc, at its root `/`.
    let fds = Paths::system().proc_of("self").join("fd");
    for (link, to) in [
        ("fd", fds.clone()),
        ("stdin", fds.join("0")),
        ("stdout", fds.join("1")),
        ("stderr", fds.join("2")),
        ("ptmx", PathBuf::from("pts/ptmx")),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(|e| format!("{}: {e}", dev.join(link).display()))?;
    }
    mkdir(&dev.join("pts"))?;
    let pts = "newinstance,ptmxmode=0666,mode=0620";
    mount(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(pts),
    )?;
    mkdir(&dev.join("shm"))?;
    mount(
        Some(Path::new("tmpfs")),
        &dev.join("shm"),
        Some("tmpfs"),
        NOSUID_NODEV,
        Some("mode=1777"),
    )
}

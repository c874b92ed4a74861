//! The zone's root filesystem as a plan: the mounts (and the few files and directories
//! between them) that [`super::root::build`] makes, in order, as data. [`plan`] says what
//! is mounted where with which flags, the unit tests read it, and [`super::root`] runs it.

use std::path::PathBuf;

use nix::mount::MsFlags;

use super::ZoneSpec;
use crate::base::paths::Paths;

/// `/proc` entries the zone reads as empty (runc's masked paths): kernel memory, keys,
/// timers and scheduler internals of the whole machine.
pub const MASKED: &[&str] = &[
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
pub const READ_ONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// `/sys` entries masked inside the read-only `/sys`.
pub const SYS_MASKED: &[&str] = &["firmware", "devices/virtual/powercap"];

/// The standard device nodes bound from the host's `/dev` (the device program of
/// [`crate::sys::devices`] allows these and nothing else).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const RO: MsFlags = MsFlags::MS_RDONLY.union(NOSUID_NODEV);

/// Where a step acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// A path of the host's (the payload's `lower`, the overlay's `root`).
    Host(PathBuf),
    /// A directory beneath the zone's root, made if missing and never reached through a
    /// symlink ([`crate::sys::beneath`]); mounted on through its descriptor.
    Beneath(String),
    /// `sub` (empty: itself) under what is mounted at the [`At::Beneath`] directory named
    /// first, by the kernel's path of it: the zone's own files there no longer matter.
    Mounted(String, &'static str),
}

/// One step of the zone's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `mount(2)`: `source` (a filesystem's name, a device, a directory to bind) on `at`.
    Mount {
        /// The source; `None` for none.
        source: Option<PathBuf>,
        /// The target.
        at: At,
        /// The filesystem type; `None` for a bind mount.
        fstype: Option<&'static str>,
        /// The flags.
        flags: MsFlags,
        /// The options.
        data: Option<String>,
    },
    /// Sets `flags` on the bind mount at `at` (`MS_REMOUNT | MS_BIND`).
    Remount(At, MsFlags),
    /// Binds `at` on itself and sets `flags` on it; skipped when `at` is missing and the
    /// step is `optional`.
    Restrict {
        /// The path.
        at: At,
        /// The flags it keeps.
        flags: MsFlags,
        /// Whether a missing path is skipped (otherwise the step fails).
        optional: bool,
    },
    /// Hides `at` when it exists: an empty read-only tmpfs over a directory, `null` (the
    /// host's `/dev/null`) bound over a file.
    Mask {
        /// The path.
        at: At,
        /// The host's `/dev/null`.
        null: PathBuf,
    },
    /// A host directory made if missing and given to the zone's ids (a volume).
    HostDir(PathBuf),
    /// An empty file, a device node's mount point.
    File(At),
    /// A directory.
    Dir(At),
    /// A symlink at `At` to the path given.
    Symlink(At, PathBuf),
}

fn mount(source: impl Into<PathBuf>, at: At, fstype: &'static str, flags: MsFlags, data: Option<String>) -> Step {
    Step::Mount {
        source: Some(source.into()),
        at,
        fstype: Some(fstype),
        flags,
        data,
    }
}

fn beneath(name: &str) -> At {
    At::Beneath(name.to_string())
}

fn mounted(name: &str, sub: &'static str) -> At {
    At::Mounted(name.to_string(), sub)
}

/// The zone's root for `spec` under the host's `paths`, its files owned by host id `ids`
/// (the zone's root): the payload on `device` at `lower`, the overlay at `root`, then the
/// volumes, `/proc`, `/sys`, `/tmp`, `/run` and `/dev` beneath it. Every mount the zone
/// can write to is `nodev,nosuid`.
pub fn plan(spec: &ZoneSpec, paths: &Paths, ids: u32, device: PathBuf, lower: PathBuf, root: PathBuf) -> Vec<Step> {
    let (upper, work) = (spec.state_dir.join("upper"), spec.state_dir.join("work"));
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let mut steps = vec![
        mount(device, At::Host(lower), "squashfs", RO, None),
        mount("overlay", At::Host(root), "overlay", NOSUID_NODEV, Some(options)),
    ];
    for (inside, volume) in &spec.volumes {
        let host = spec.state_dir.join("volumes").join(volume);
        steps.push(Step::HostDir(host.clone()));
        steps.push(Step::Mount {
            source: Some(host),
            at: beneath(inside),
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
        });
        steps.push(Step::Remount(mounted(inside, ""), NOSUID_NODEV));
    }
    let null = paths.dev().join("null");
    let mask = |name: &str, sub: &'static str| Step::Mask {
        at: mounted(name, sub),
        null: null.clone(),
    };
    // A fresh /proc for the zone's PID namespace.
    let noexec = NOSUID_NODEV | MsFlags::MS_NOEXEC;
    steps.push(mount("proc", beneath("proc"), "proc", noexec, None));
    steps.extend(MASKED.iter().map(|&m| mask("proc", m)));
    steps.extend(READ_ONLY.iter().map(|&entry| Step::Restrict {
        at: mounted("proc", entry),
        flags: noexec | MsFlags::MS_RDONLY,
        optional: true,
    }));
    steps.push(Step::Restrict {
        at: mounted("proc", "sys/net"),
        flags: noexec,
        optional: false,
    });
    let ro_noexec = RO | MsFlags::MS_NOEXEC;
    steps.push(mount("sysfs", beneath("sys"), "sysfs", ro_noexec, None));
    steps.push(mount(
        "cgroup2",
        mounted("sys", "fs/cgroup"),
        "cgroup2",
        ro_noexec,
        None,
    ));
    steps.extend(SYS_MASKED.iter().map(|&m| mask("sys", m)));
    for (dir, mode) in [("tmp", "1777"), ("run", "0755")] {
        let data = format!("mode={mode},uid={ids},gid={ids}");
        steps.push(mount("tmpfs", beneath(dir), "tmpfs", NOSUID_NODEV, Some(data)));
    }
    minimal_dev(paths, &mut steps);
    steps
}

/// A tmpfs `/dev` with the [`DEVICES`] bound from the host's (under `paths`), `pts`, `shm`.
fn minimal_dev(paths: &Paths, steps: &mut Vec<Step>) {
    let data = Some("mode=0755,size=1m".to_string());
    steps.push(mount(
        "tmpfs",
        beneath("dev"),
        "tmpfs",
        NOSUID_NODEV | MsFlags::MS_NOEXEC,
        data,
    ));
    for &node in DEVICES {
        steps.push(Step::File(mounted("dev", node)));
        steps.push(Step::Mount {
            source: Some(paths.dev().join(node)),
            at: mounted("dev", node),
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
        });
        steps.push(Step::Remount(
            mounted("dev", node),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        ));
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
        steps.push(Step::Symlink(mounted("dev", link), to));
    }
    let pts = Some("newinstance,ptmxmode=0666,mode=0620".to_string());
    steps.push(Step::Dir(mounted("dev", "pts")));
    steps.push(mount(
        "devpts",
        mounted("dev", "pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        pts,
    ));
    steps.push(Step::Dir(mounted("dev", "shm")));
    let shm = Some("mode=1777".to_string());
    steps.push(mount("tmpfs", mounted("dev", "shm"), "tmpfs", NOSUID_NODEV, shm));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use nix::mount::MsFlags;

    use super::*;

    fn spec() -> ZoneSpec {
        ZoneSpec {
            volumes: BTreeMap::from([("/srv/www".to_string(), "www".to_string())]),
            ..crate::zone::test_spec()
        }
    }

    fn the_plan() -> Vec<Step> {
        let run = Path::new("/host/run/ramkey/zones/web");
        plan(
            &spec(),
            &Paths::new("/host"),
            100_000,
            PathBuf::from("/host/dev/loop7"),
            run.join("lower"),
            run.join("root"),
        )
    }

    fn place(at: &At) -> String {
        match at {
            At::Host(path) => path.display().to_string(),
            At::Beneath(inside) => format!("{{{inside}}}"),
            At::Mounted(inside, "") => format!("<{inside}>"),
            At::Mounted(inside, sub) => format!("<{inside}>/{sub}"),
        }
    }

    /// The mounts, one line each: what on where.
    fn mounts(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|step| match step {
                Step::Mount { source, at, fstype, .. } => Some(format!(
                    "{} {} on {}",
                    fstype.unwrap_or("bind"),
                    source.as_deref().unwrap_or(Path::new("-")).display(),
                    place(at)
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_zones_root_is_mounted_in_order() {
        let steps = the_plan();
        let mounts = mounts(&steps);
        let expected = [
            "squashfs /host/dev/loop7 on /host/run/ramkey/zones/web/lower",
            "overlay overlay on /host/run/ramkey/zones/web/root",
            "bind /pool/instances/web/volumes/www on {/srv/www}",
            "proc proc on {proc}",
            "sysfs sysfs on {sys}",
            "cgroup2 cgroup2 on <sys>/fs/cgroup",
            "tmpfs tmpfs on {tmp}",
            "tmpfs tmpfs on {run}",
            "tmpfs tmpfs on {dev}",
            "bind /host/dev/null on <dev>/null",
            "bind /host/dev/zero on <dev>/zero",
            "bind /host/dev/full on <dev>/full",
            "bind /host/dev/random on <dev>/random",
            "bind /host/dev/urandom on <dev>/urandom",
            "bind /host/dev/tty on <dev>/tty",
            "devpts devpts on <dev>/pts",
            "tmpfs tmpfs on <dev>/shm",
        ];
        assert_eq!(mounts, expected);
        let Step::Mount { data, .. } = &steps[1] else {
            panic!("{:?}", steps[1]);
        };
        assert_eq!(
            data.as_deref(),
            Some(
                "lowerdir=/host/run/ramkey/zones/web/lower,upperdir=/pool/instances/web/upper,\
                 workdir=/pool/instances/web/work"
            )
        );
        // The volume's host directory is made (and given to the zone) just before its mount.
        assert_eq!(
            steps[2],
            Step::HostDir(PathBuf::from("/pool/instances/web/volumes/www"))
        );
    }

    #[test]
    fn only_the_payload_and_the_overlay_are_mounted_by_a_host_path() {
        // Everything else is beneath the zone's root, reached without following its
        // symlinks, or under what a step mounted there.
        let steps = the_plan();
        let mut mounted = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            let at = match step {
                Step::Mount { at, .. } | Step::Remount(at, _) | Step::Restrict { at, .. } => at,
                Step::Mask { at, .. } | Step::File(at) | Step::Dir(at) | Step::Symlink(at, _) => at,
                Step::HostDir(_) => continue,
            };
            match at {
                At::Host(_) => assert!(n < 2, "step {n} on a host path: {step:?}"),
                At::Beneath(inside) => mounted.push(inside.clone()),
                At::Mounted(inside, _) => assert!(mounted.contains(inside), "{step:?} before {inside} is mounted"),
            }
        }
    }

    #[test]
    fn every_mount_the_zone_can_write_is_nosuid_and_nodev() {
        let steps = the_plan();
        for (n, step) in steps.iter().enumerate() {
            match step {
                // A bind mount takes its flags when remounted, the next step.
                Step::Mount { fstype: None, at, .. } => assert!(
                    matches!(&steps[n + 1], Step::Remount(next, flags)
                        if place(next) == place(at).replace('{', "<").replace('}', ">")
                            && flags.contains(MsFlags::MS_NOSUID)),
                    "{step:?} is not remounted nosuid"
                ),
                Step::Mount {
                    fstype: Some(fstype),
                    flags,
                    ..
                } => {
                    assert!(flags.contains(MsFlags::MS_NOSUID), "{fstype}: {flags:?}");
                    // devpts holds the zone's own terminals, its only device nodes.
                    if *fstype != "devpts" {
                        assert!(flags.contains(MsFlags::MS_NODEV), "{fstype}: {flags:?}");
                    }
                }
                _ => {}
            }
        }
        let flags = |fstype: &str| {
            steps.iter().find_map(|s| match s {
                Step::Mount {
                    fstype: Some(f), flags, ..
                } if *f == fstype => Some(*flags),
                _ => None,
            })
        };
        for read_only in ["squashfs", "sysfs", "cgroup2"] {
            assert!(flags(read_only).unwrap().contains(MsFlags::MS_RDONLY), "{read_only}");
        }
        assert!(flags("proc").unwrap().contains(MsFlags::MS_NOEXEC));
    }

    #[test]
    fn proc_and_sys_are_masked_and_read_only_but_the_zones_network_settings() {
        let steps = the_plan();
        let masked: Vec<String> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Mask { at, null } => {
                    assert_eq!(null, Path::new("/host/dev/null"));
                    Some(place(at))
                }
                _ => None,
            })
            .collect();
        let mut expected: Vec<String> = MASKED.iter().map(|m| format!("<proc>/{m}")).collect();
        expected.extend(SYS_MASKED.iter().map(|m| format!("<sys>/{m}")));
        assert_eq!(masked, expected);
        let restricted: Vec<(String, bool, bool)> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Restrict { at, flags, optional } => {
                    Some((place(at), flags.contains(MsFlags::MS_RDONLY), *optional))
                }
                _ => None,
            })
            .collect();
        let mut expected: Vec<(String, bool, bool)> =
            READ_ONLY.iter().map(|e| (format!("<proc>/{e}"), true, true)).collect();
        expected.push(("<proc>/sys/net".to_string(), false, false));
        assert_eq!(restricted, expected);
    }

    #[test]
    fn dev_links_point_into_the_zones_own_proc() {
        let links: Vec<(String, PathBuf)> = the_plan()
            .into_iter()
            .filter_map(|s| match s {
                Step::Symlink(at, to) => Some((place(&at), to)),
                _ => None,
            })
            .collect();
        assert_eq!(links[0], ("<dev>/fd".to_string(), PathBuf::from("/proc/self/fd")));
        assert_eq!(links[3], ("<dev>/stderr".to_string(), PathBuf::from("/proc/self/fd/2")));
        assert_eq!(links[4], ("<dev>/ptmx".to_string(), PathBuf::from("pts/ptmx")));
    }
}

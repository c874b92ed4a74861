//! Early mounts as a table of typed steps, each logged before it runs.

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

/// A mount step failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be created.
    #[error("cannot create mount point {path}: {source}")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `mount(2)` failed.
    #[error("{step} failed: {source}")]
    Mount {
        /// The step, as displayed.
        step: String,
        /// The errno.
        source: Errno,
    },
}

/// One filesystem to mount during early boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountStep {
    /// The `source` argument (the filesystem name for pseudo filesystems).
    pub source: &'static str,
    /// The target, relative to the root the steps run under (`dev/pts`); shown as on the
    /// booted system (`/dev/pts`).
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: Option<&'static str>,
    /// Without it the boot cannot go on (recovery mode); otherwise a warning.
    pub required: bool,
}

impl fmt::Display for MountStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mount {} on /{} type {}", self.source, self.target, self.fstype)?;
        if let Some(data) = self.data {
            write!(f, " ({data})")?;
        }
        Ok(())
    }
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// The early mounts, in order (parents before children).
pub const EARLY_MOUNTS: &[MountStep] = &[
    MountStep {
        source: "proc",
        target: "proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: true,
    },
    MountStep {
        source: "sysfs",
        target: "sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: true,
    },
    MountStep {
        source: "devtmpfs",
        target: "dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        required: true,
    },
    MountStep {
        source: "devpts",
        target: "dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
        required: false,
    },
    MountStep {
        source: "tmpfs",
        target: "dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        required: false,
    },
    MountStep {
        source: "tmpfs",
        target: "run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
        required: true,
    },
    MountStep {
        source: "cgroup2",
        target: "sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: false,
    },
];

/// Performs mounts; the fake records them.
pub trait Mounter {
    /// Creates `path` and its parents if missing.
    fn mkdir_all(&mut self, path: &Path) -> std::io::Result<()>;
    /// Mounts `step` at `target` (the step's target under the root).
    fn mount(&mut self, step: &MountStep, target: &Path) -> Result<(), Errno>;
    /// Mounts the filesystem on `device` (a block device node) at `target`.
    fn mount_device(
        &mut self,
        device: &Path,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> Result<(), Errno>;
}

/// The real mounter.
#[derive(Debug, Default)]
pub struct KernelMounter;

impl Mounter for KernelMounter {
    fn mkdir_all(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(path)
    }

    fn mount(&mut self, step: &MountStep, target: &Path) -> Result<(), Errno> {
        crate::sys::mount(step.source, target, step.fstype, step.flags, step.data)
    }

    fn mount_device(
        &mut self,
        device: &Path,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> Result<(), Errno> {
        crate::sys::mount(&device.to_string_lossy(), target, fstype, flags, Some(data))
    }
}

/// What the early mounts did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountReport {
    /// Targets mounted now, in order.
    pub mounted: Vec<PathBuf>,
    /// Targets that were already mounted (`EBUSY`).
    pub already: Vec<PathBuf>,
    /// The targets of optional steps that failed (logged as warnings), as on the box.
    pub failed_optional: Vec<String>,
}

/// Runs `steps` under `root`; the first failed required step is the error.
pub fn mount_all(root: &Path, steps: &[MountStep], mounter: &mut dyn Mounter) -> Result<MountReport, MountError> {
    let mut report = MountReport::default();
    for step in steps {
        crate::info!("{step}");
        let target = root.join(step.target);
        let result = mounter
            .mkdir_all(&target)
            .map_err(|source| MountError::Mkdir {
                path: target.clone(),
                source,
            })
            .and_then(|()| match mounter.mount(step, &target) {
                Ok(()) => {
                    report.mounted.push(target.clone());
                    Ok(())
                }
                Err(Errno::EBUSY) => {
                    crate::info!("/{} is already mounted", step.target);
                    report.already.push(target.clone());
                    Ok(())
                }
                Err(source) => Err(MountError::Mount {
                    step: step.to_string(),
                    source,
                }),
            });
        match result {
            Ok(()) => {}
            Err(e) if step.required => return Err(e),
            Err(e) => {
                crate::warn!("{e}; continuing without it");
                report.failed_optional.push(format!("/{}", step.target));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod fake {
    //! The one [`Mounter`] fake: it records every call and fails the ones it is told to.

    use std::fmt;
    use std::path::{Path, PathBuf};

    use nix::errno::Errno;
    use nix::mount::MsFlags;

    use super::{MountStep, Mounter};

    /// One `mount` or `mount_device` call.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Mount {
        /// The step's source, or the device node.
        pub(crate) source: PathBuf,
        /// Where it was mounted.
        pub(crate) target: PathBuf,
        /// The filesystem type.
        pub(crate) fstype: String,
        /// The mount flags.
        pub(crate) flags: MsFlags,
        /// The options (empty for none).
        pub(crate) data: String,
    }

    /// `SOURCE TARGET FSTYPE DATA`, the paths by their last component, then `[remount]`
    /// and `[ro]` for those flags.
    impl fmt::Display for Mount {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let name = |p: &Path| {
                p.file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
            };
            let line = format!(
                "{} {} {} {}",
                name(&self.source),
                name(&self.target),
                self.fstype,
                self.data
            );
            f.write_str(line.trim_end())?;
            if self.flags.contains(MsFlags::MS_REMOUNT) {
                f.write_str(" [remount]")?;
            }
            if self.flags.contains(MsFlags::MS_RDONLY) {
                f.write_str(" [ro]")?;
            }
            Ok(())
        }
    }

    /// Records the directories made and the mounts done, in order. A mount fails when its
    /// target is in `fail`, or with `EINVAL` when it is read-only and `fail_ro` is set; a
    /// failed mount is not recorded. With `create_dirs`, `mkdir_all` makes the directories
    /// for real (for code that writes below them).
    #[derive(Debug, Default)]
    pub(crate) struct RecordingMounter {
        /// The directories `mkdir_all` was asked for.
        pub(crate) dirs: Vec<PathBuf>,
        /// The mounts that succeeded.
        pub(crate) mounts: Vec<Mount>,
        /// Targets whose mount fails, with the errno.
        pub(crate) fail: Vec<(PathBuf, Errno)>,
        /// A read-only mount fails with `EINVAL`.
        pub(crate) fail_ro: bool,
        /// `mkdir_all` creates the directories.
        pub(crate) create_dirs: bool,
    }

    impl RecordingMounter {
        /// A mounter that creates the directories it is asked for.
        pub(crate) fn creating_dirs() -> Self {
            RecordingMounter {
                create_dirs: true,
                ..RecordingMounter::default()
            }
        }

        /// The mounts as [`Mount`]'s display lines.
        pub(crate) fn lines(&self) -> Vec<String> {
            self.mounts.iter().map(ToString::to_string).collect()
        }

        fn record(&mut self, mount: Mount) -> Result<(), Errno> {
            if let Some((_, e)) = self.fail.iter().find(|(t, _)| *t == mount.target) {
                return Err(*e);
            }
            if self.fail_ro && mount.flags.contains(MsFlags::MS_RDONLY) {
                return Err(Errno::EINVAL);
            }
            self.mounts.push(mount);
            Ok(())
        }
    }

    impl Mounter for RecordingMounter {
        fn mkdir_all(&mut self, path: &Path) -> std::io::Result<()> {
            self.dirs.push(path.to_owned());
            if self.create_dirs {
                std::fs::create_dir_all(path)?;
            }
            Ok(())
        }

        fn mount(&mut self, step: &MountStep, target: &Path) -> Result<(), Errno> {
            self.record(Mount {
                source: step.source.into(),
                target: target.to_owned(),
                fstype: step.fstype.to_owned(),
                flags: step.flags,
                data: step.data.unwrap_or_default().to_owned(),
            })
        }

        fn mount_device(
            &mut self,
            device: &Path,
            target: &Path,
            fstype: &str,
            flags: MsFlags,
            data: &str,
        ) -> Result<(), Errno> {
            self.record(Mount {
                source: device.to_owned(),
                target: target.to_owned(),
                fstype: fstype.to_owned(),
                flags,
                data: data.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::RecordingMounter;
    use super::*;

    fn failing(target: &str, e: Errno) -> RecordingMounter {
        RecordingMounter {
            fail: vec![(target.into(), e)],
            ..RecordingMounter::default()
        }
    }

    #[test]
    fn steps_display() {
        assert_eq!(EARLY_MOUNTS[0].to_string(), "mount proc on /proc type proc");
        let run = EARLY_MOUNTS.iter().find(|s| s.target == "run").unwrap();
        assert_eq!(run.to_string(), "mount tmpfs on /run type tmpfs (mode=0755)");
    }

    #[test]
    fn parents_come_before_children() {
        for (i, step) in EARLY_MOUNTS.iter().enumerate() {
            assert!(!step.target.starts_with('/'), "{step}: a target under the root");
            for later in &EARLY_MOUNTS[i + 1..] {
                assert!(!step.target.starts_with(&format!("{}/", later.target)), "{step}");
            }
        }
    }

    #[test]
    fn mounts_everything_under_root_in_order() {
        let mut m = RecordingMounter::default();
        let report = mount_all(Path::new("/tmp/r"), EARLY_MOUNTS, &mut m).unwrap();
        let types: Vec<_> = m.mounts.iter().map(|m| m.fstype.as_str()).collect();
        assert_eq!(
            types,
            ["proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "tmpfs", "cgroup2"]
        );
        assert_eq!(m.mounts[6].target, PathBuf::from("/tmp/r/sys/fs/cgroup"));
        assert_eq!(m.lines()[2], "devtmpfs dev devtmpfs mode=0755");
        assert_eq!(m.dirs.len(), EARLY_MOUNTS.len());
        assert_eq!(report.mounted.len(), EARLY_MOUNTS.len());
    }

    #[test]
    fn ebusy_is_tolerated() {
        let mut m = failing("/dev", Errno::EBUSY);
        let report = mount_all(Path::new("/"), EARLY_MOUNTS, &mut m).unwrap();
        assert_eq!(report.already, vec![PathBuf::from("/dev")]);
        assert_eq!(report.mounted.len(), EARLY_MOUNTS.len() - 1);
    }

    #[test]
    fn optional_failure_warns_required_failure_stops() {
        let mut m = failing("/sys/fs/cgroup", Errno::ENODEV);
        let report = mount_all(Path::new("/"), EARLY_MOUNTS, &mut m).unwrap();
        assert_eq!(report.failed_optional, vec!["/sys/fs/cgroup".to_owned()]);

        let mut m = failing("/sys", Errno::ENODEV);
        let err = mount_all(Path::new("/"), EARLY_MOUNTS, &mut m).unwrap_err();
        assert!(err.to_string().contains("mount sysfs on /sys"), "{err}");
        assert_eq!(m.mounts.len(), 1);
    }
}

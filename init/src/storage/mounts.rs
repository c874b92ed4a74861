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
    /// Absolute target path on the booted system.
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
        write!(f, "mount {} on {} type {}", self.source, self.target, self.fstype)?;
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
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: true,
    },
    MountStep {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        required: true,
    },
    MountStep {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        required: true,
    },
    MountStep {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
        required: false,
    },
    MountStep {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        required: false,
    },
    MountStep {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
        required: true,
    },
    MountStep {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
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
    /// Optional steps that failed (logged as warnings).
    pub failed_optional: Vec<String>,
}

/// Runs `steps` under `root`; the first failed required step is the error.
pub fn mount_all(root: &Path, steps: &[MountStep], mounter: &mut dyn Mounter) -> Result<MountReport, MountError> {
    let mut report = MountReport::default();
    for step in steps {
        crate::info!("{step}");
        let target = root.join(step.target.trim_start_matches('/'));
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
                    crate::info!("{} is already mounted", step.target);
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
                report.failed_optional.push(step.target.to_owned());
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeMounter {
        dirs: Vec<PathBuf>,
        mounts: Vec<(String, PathBuf)>,
        answers: Vec<(&'static str, Errno)>,
    }

    impl Mounter for FakeMounter {
        fn mkdir_all(&mut self, path: &Path) -> std::io::Result<()> {
            self.dirs.push(path.to_owned());
            Ok(())
        }
        fn mount(&mut self, step: &MountStep, target: &Path) -> Result<(), Errno> {
            if let Some((_, e)) = self.answers.iter().find(|(t, _)| *t == step.target) {
                return Err(*e);
            }
            self.mounts.push((step.fstype.to_owned(), target.to_owned()));
            Ok(())
        }
        fn mount_device(&mut self, _: &Path, target: &Path, fstype: &str, _: MsFlags, _: &str) -> Result<(), Errno> {
            self.mounts.push((fstype.to_owned(), target.to_owned()));
            Ok(())
        }
    }

    #[test]
    fn steps_display() {
        assert_eq!(EARLY_MOUNTS[0].to_string(), "mount proc on /proc type proc");
        let run = EARLY_MOUNTS.iter().find(|s| s.target == "/run").unwrap();
        assert_eq!(run.to_string(), "mount tmpfs on /run type tmpfs (mode=0755)");
    }

    #[test]
    fn parents_come_before_children() {
        for (i, step) in EARLY_MOUNTS.iter().enumerate() {
            for later in &EARLY_MOUNTS[i + 1..] {
                assert!(!step.target.starts_with(&format!("{}/", later.target)), "{step}");
            }
        }
    }

    #[test]
    fn mounts_everything_under_root_in_order() {
        let mut m = FakeMounter::default();
        let report = mount_all(Path::new("/tmp/r"), EARLY_MOUNTS, &mut m).unwrap();
        let types: Vec<_> = m.mounts.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            ["proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "tmpfs", "cgroup2"]
        );
        assert_eq!(m.mounts[6].1, PathBuf::from("/tmp/r/sys/fs/cgroup"));
        assert_eq!(m.dirs.len(), EARLY_MOUNTS.len());
        assert_eq!(report.mounted.len(), EARLY_MOUNTS.len());
    }

    #[test]
    fn ebusy_is_tolerated() {
        let mut m = FakeMounter {
            answers: vec![("/dev", Errno::EBUSY)],
            ..Default::default()
        };
        let report = mount_all(Path::new("/"), EARLY_MOUNTS, &mut m).unwrap();
        assert_eq!(report.already, vec![PathBuf::from("/dev")]);
        assert_eq!(report.mounted.len(), EARLY_MOUNTS.len() - 1);
    }

    #[test]
    fn optional_failure_warns_required_failure_stops() {
        let mut m = FakeMounter {
            answers: vec![("/sys/fs/cgroup", Errno::ENODEV)],
            ..Default::default()
        };
        let report = mount_all(Path::new("/"), EARLY_MOUNTS, &mut m).unwrap();
        assert_eq!(report.failed_optional, vec!["/sys/fs/cgroup".to_owned()]);

        let mut m = FakeMounter {
            answers: vec![("/sys", Errno::ENODEV)],
            ..Default::default()
        };
        let err = mount_all(Path::new("/"), EARLY_MOUNTS, &mut m).unwrap_err();
        assert!(err.to_string().contains("mount sysfs on /sys"), "{err}");
        assert_eq!(m.mounts.len(), 1);
    }
}

//! Mounting the pool at `/pool`: the filesystem's modules, then `mount(2)`.

use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::base::paths::Paths;

use super::probe::FsKind;
use super::{MOUNT_POINT, PoolStep};

/// Mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Mkdir {
        /// The mount point.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `mount(2)` failed.
    #[error(
        "cannot mount {node} ({fstype}{}{}) on {MOUNT_POINT}: {source}; the kernel log (dmesg) says why",
        if data.is_empty() { String::new() } else { format!(", {data}") },
        if *read_only { ", read-only" } else { "" }
    )]
    Mount {
        /// The device.
        node: String,
        /// The filesystem type.
        fstype: &'static str,
        /// The options.
        data: String,
        /// Mounted read-only (`MS_RDONLY`).
        read_only: bool,
        /// The errno.
        source: Errno,
    },
}

/// How the pool is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every device of the filesystem is there: read-write.
    Whole,
    /// A btrfs mirror missing a disk, with `[pool] allow_degraded = true`: `degraded`,
    /// read-write.
    Degraded,
    /// A btrfs mirror missing a disk otherwise: `degraded`, read-only.
    DegradedReadOnly,
}

impl Mode {
    /// Mounted with devices missing (btrfs `degraded`).
    pub fn degraded(self) -> bool {
        self != Mode::Whole
    }

    /// Mounted read-only.
    pub fn read_only(self) -> bool {
        self == Mode::DegradedReadOnly
    }
}

/// No atime writes: the pool is flash or a disk, and nobody reads atimes.
pub const FLAGS: MsFlags = MsFlags::MS_NOATIME;

/// The `mount(2)` type, options and flags for `kind` on `nodes` (the first is the one
/// mounted).
pub fn options(kind: FsKind, nodes: &[PathBuf], mode: Mode) -> (&'static str, String, MsFlags) {
    let flags = if mode.read_only() {
        FLAGS | MsFlags::MS_RDONLY
    } else {
        FLAGS
    };
    match kind {
        FsKind::Btrfs => {
            let mut opts: Vec<String> = nodes.iter().map(|n| format!("device={}", n.display())).collect();
            if mode.degraded() {
                opts.push("degraded".into());
            }
            ("btrfs", opts.join(","), flags)
        }
        FsKind::Ext(_) => ("ext4", String::new(), flags),
    }
}

/// Loads the filesystem's module (a failure is a warning: it may be built in) and mounts
/// `nodes[0]` at `/pool` under the step's root.
pub fn mount(step: &mut PoolStep<'_>, kind: FsKind, nodes: &[PathBuf], mode: Mode) -> Result<PathBuf, MountError> {
    let (fstype, data, flags) = options(kind, nodes, mode);
    step.devices.modprobe(fstype);
    let target = step.paths.pool();
    step.mounter.mkdir_all(&target).map_err(|source| MountError::Mkdir {
        path: target.clone(),
        source,
    })?;
    let first = &nodes[0];
    let host_node = step
        .paths
        .dev()
        .join(first.strip_prefix(Paths::system().dev()).unwrap_or(first));
    step.mounter
        .mount_device(&host_node, &target, fstype, flags, &data)
        .map_err(|source| MountError::Mount {
            node: first.display().to_string(),
            fstype,
            data,
            read_only: mode.read_only(),
            source,
        })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::pool::probe::ExtVersion;

    #[test]
    fn btrfs_options_name_every_device() {
        let nodes = [PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vdc")];
        assert_eq!(
            options(FsKind::Btrfs, &nodes, Mode::Whole),
            ("btrfs", "device=/dev/vdb,device=/dev/vdc".into(), FLAGS)
        );
        assert_eq!(
            options(FsKind::Btrfs, &nodes[..1], Mode::Degraded),
            ("btrfs", "device=/dev/vdb,degraded".into(), FLAGS)
        );
        assert_eq!(
            options(FsKind::Btrfs, &nodes[..1], Mode::DegradedReadOnly),
            (
                "btrfs",
                "device=/dev/vdb,degraded".into(),
                MsFlags::MS_NOATIME | MsFlags::MS_RDONLY
            )
        );
        assert_eq!(
            options(FsKind::Ext(ExtVersion::Ext4), &nodes[..1], Mode::Whole),
            ("ext4", String::new(), FLAGS)
        );
    }
}

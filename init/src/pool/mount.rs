//! Mounting the pool at `/pool`: the filesystem's modules, then `mount(2)`.

use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::MsFlags;

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
    #[error("cannot mount {node} ({fstype}{}) on {MOUNT_POINT}: {source}; the kernel log (dmesg) says why", if data.is_empty() { String::new() } else { format!(", {data}") })]
    Mount {
        /// The device.
        node: String,
        /// The filesystem type.
        fstype: &'static str,
        /// The options.
        data: String,
        /// The errno.
        source: Errno,
    },
}

/// No atime writes: the pool is flash or a disk, and nobody reads atimes.
pub const FLAGS: MsFlags = MsFlags::MS_NOATIME;

/// The `mount(2)` type and options for `kind` on `nodes` (the first is the one mounted).
pub fn options(kind: FsKind, nodes: &[PathBuf], degraded: bool) -> (&'static str, String) {
    match kind {
        FsKind::Btrfs => {
            let mut opts: Vec<String> = nodes.iter().map(|n| format!("device={}", n.display())).collect();
            if degraded {
                opts.push("degraded".into());
            }
            ("btrfs", opts.join(","))
        }
        FsKind::Ext(_) => ("ext4", String::new()),
    }
}

/// Loads the filesystem's module (a failure is a warning: it may be built in) and mounts
/// `nodes[0]` at `/pool` under the step's root.
pub fn mount(step: &mut PoolStep<'_>, kind: FsKind, nodes: &[PathBuf], degraded: bool) -> Result<PathBuf, MountError> {
    let (fstype, data) = options(kind, nodes, degraded);
    step.devices.modprobe(fstype);
    let target = step.paths.root().join(MOUNT_POINT.trim_start_matches('/'));
    step.mounter.mkdir_all(&target).map_err(|source| MountError::Mkdir {
        path: target.clone(),
        source,
    })?;
    let first = &nodes[0];
    let host_node = step.paths.dev().join(first.strip_prefix("/dev").unwrap_or(first));
    step.mounter
        .mount_device(&host_node, &target, fstype, FLAGS, &data)
        .map_err(|source| MountError::Mount {
            node: first.display().to_string(),
            fstype,
            data,
            source,
        })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::probe::ExtVersion;

    #[test]
    fn btrfs_options_name_every_device() {
        let nodes = [PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vdc")];
        assert_eq!(
            options(FsKind::Btrfs, &nodes, false),
            ("btrfs", "device=/dev/vdb,device=/dev/vdc".into())
        );
        assert_eq!(options(FsKind::Btrfs, &nodes[..1], true).1, "device=/dev/vdb,degraded");
        assert_eq!(
            options(FsKind::Ext(ExtVersion::Ext4), &nodes[..1], false),
            ("ext4", String::new())
        );
    }
}

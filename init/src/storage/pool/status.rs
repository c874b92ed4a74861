//! What the pool step found, for the console and `ramkeyctl status`.

use std::fmt;
use std::path::PathBuf;

use super::probe::FsKind;

/// A disk the pool step refused to touch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The node (`/dev/vdb`).
    pub node: PathBuf,
    /// Its id (`virtio-ramkey-pool`).
    pub id: String,
    /// What is on it (`an ext4 filesystem labelled "data"`).
    pub what: String,
    /// Where the signature was found (`None`: the probe, blkid, did not say).
    pub offset: Option<u64>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) holds {}", self.node.display(), self.id, self.what)?;
        if let Some(offset) = self.offset {
            write!(f, " (found at offset {offset})")?;
        }
        f.write_str(": not touching it")
    }
}

/// The mounted pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// ext4 or btrfs.
    pub kind: FsKind,
    /// The device nodes (several for a btrfs mirror), the mounted one first.
    pub nodes: Vec<PathBuf>,
    /// Their ids.
    pub ids: Vec<String>,
    /// Where it is mounted (`/pool`, under the root).
    pub mount_point: PathBuf,
    /// Created by this boot.
    pub created: bool,
    /// The last shutdown was not clean (ext4 replayed its journal).
    pub unclean: bool,
    /// btrfs mounted with devices missing (`degraded`).
    pub degraded: bool,
    /// How many devices the filesystem has (btrfs: its superblock's `num_devices`; 1 for
    /// ext4); `nodes` are those attached.
    pub devices: u64,
}

/// The pool's state after boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolState {
    /// A pool is mounted at `/pool`.
    Mounted(Mounted),
    /// A btrfs mirror missing a disk, without `[pool] allow_degraded = true`: mounted
    /// read-only at `/pool` for the administrator to read, and nothing else. The rest of
    /// the box runs as diskless: zones keep their state in RAM, `/var` and `/opt` stay in
    /// RAM, no config history is written.
    ReadOnly(Mounted),
    /// No pool: data lives in RAM; `refused` lists disks left alone, `problem` any failure.
    Diskless {
        /// Disks with data that were not used.
        refused: Vec<Refused>,
        /// Why there is no pool beyond "none found" (a failed mount or mkfs).
        problem: Option<String>,
    },
}

/// `1.2 GiB`, `512 MiB`.
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

/// Free and total bytes of the filesystem at `path`.
pub fn space(path: &std::path::Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size();
    Some((st.blocks_available() * frag, st.blocks() * frag))
}

impl Mounted {
    /// `btrfs on /dev/vdb + /dev/vdc (virtio-a, virtio-b), 1.2 GiB free of 2.0 GiB`
    fn head(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.display().to_string()).collect();
        write!(f, "{} on {} ({})", self.kind, nodes.join(" + "), self.ids.join(", "))?;
        if let Some((free, total)) = space(&self.mount_point) {
            write!(f, ", {} free of {}", human(free), human(total))?;
        }
        Ok(())
    }

    /// `1 of 2 disks`
    fn disks(&self) -> String {
        format!("{} of {} disks", self.nodes.len(), self.devices)
    }
}

impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolState::ReadOnly(m) => {
                m.head(f)?;
                write!(
                    f,
                    ", READ-ONLY, DEGRADED: {}; zones, /var and /opt are in RAM (lost at power-off): put the \
                     missing disk back, or set [pool] allow_degraded = true to run without it",
                    m.disks()
                )
            }
            PoolState::Mounted(m) => {
                m.head(f)?;
                if m.degraded {
                    write!(
                        f,
                        ", DEGRADED: {}, read-write ([pool] allow_degraded = true): what is written has one \
                         copy until the missing disk is back",
                        m.disks()
                    )?;
                }
                if m.created {
                    f.write_str(", created this boot")?;
                }
                if m.unclean {
                    f.write_str(", recovered from an unclean shutdown")?;
                }
                Ok(())
            }
            PoolState::Diskless { refused, problem } => {
                f.write_str("diskless: data is lost at power-off")?;
                if let Some(problem) = problem {
                    write!(f, " ({problem})")?;
                }
                for r in refused {
                    write!(f, "; {r}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::pool::probe::ExtVersion;

    #[test]
    fn display() {
        let dir = tempfile::tempdir().unwrap();
        let m = PoolState::Mounted(Mounted {
            kind: FsKind::Ext(ExtVersion::Ext4),
            nodes: vec!["/dev/vdb".into()],
            ids: vec!["virtio-ramkey-pool".into()],
            mount_point: dir.path().to_owned(),
            created: true,
            unclean: false,
            degraded: false,
            devices: 1,
        })
        .to_string();
        assert!(m.starts_with("ext4 on /dev/vdb (virtio-ramkey-pool), "), "{m}");
        assert!(m.contains(" free of ") && m.ends_with(", created this boot"), "{m}");
        let d = PoolState::Diskless {
            refused: vec![Refused {
                node: "/dev/vdb".into(),
                id: "virtio-x".into(),
                what: "an MBR partition table".into(),
                offset: Some(446),
            }],
            problem: None,
        };
        assert_eq!(
            d.to_string(),
            "diskless: data is lost at power-off; /dev/vdb (virtio-x) holds an MBR partition \
             table (found at offset 446): not touching it"
        );
        let mirror = Mounted {
            kind: FsKind::Btrfs,
            nodes: vec!["/dev/vdb".into()],
            ids: vec!["virtio-a".into()],
            mount_point: "/nonexistent".into(),
            created: false,
            unclean: false,
            degraded: true,
            devices: 2,
        };
        assert_eq!(
            PoolState::Mounted(mirror.clone()).to_string(),
            "btrfs on /dev/vdb (virtio-a), DEGRADED: 1 of 2 disks, read-write ([pool] allow_degraded = true): \
             what is written has one copy until the missing disk is back"
        );
        assert_eq!(
            PoolState::ReadOnly(mirror).to_string(),
            "btrfs on /dev/vdb (virtio-a), READ-ONLY, DEGRADED: 1 of 2 disks; zones, /var and /opt are in RAM \
             (lost at power-off): put the missing disk back, or set [pool] allow_degraded = true to run without it"
        );
        assert_eq!(human(1288490188), "1.2 GiB");
        assert_eq!(human(512 << 20), "512 MiB");
    }
}

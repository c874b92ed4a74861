//! The packed platform: the platform's folders of programs, libraries and modules (`bin`,
//! `lib`, `lib64`, `sbin`, `usr`) go into one xz squashfs, `lib/ramkey/platform.sqfs`, inside
//! the initramfs, and PID 1 merges it back over the root early in boot (its `packed` step,
//! `init/src/storage/packed.rs`). The kernel unpacks the initramfs into RAM, where every file
//! stays for as long as the box runs; packed, a file costs its compressed size, and what is
//! read of it is page cache the kernel can reclaim.
//!
//! What stays unpacked is what PID 1 needs before that step: itself and the links to it
//! (`ramkeyctl`, the zone launcher, ...), `/etc`, the module index, and the modules that
//! mount the image (`loop`, `squashfs`, `overlay`) with their dependencies.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image_cmd::rootfs::RootfsError;
use crate::image_cmd::squashfs;
use crate::modules::{Index, ModuleError};
use crate::records::{Kind, Tree};

/// Where the image goes in the initramfs (PID 1's `base::paths::PACKED_IMAGE`).
pub const IMAGE: &str = "lib/ramkey/platform.sqfs";

/// The root's folders whose contents are packed.
const FOLDERS: &[&str] = &["bin", "lib", "lib64", "sbin", "usr"];

/// The modules PID 1 loads to mount the image (`init::storage::packed::MODULES`).
const MODULES: &[&str] = &["loop", "squashfs", "overlay"];

/// xz with the x86 branch filter: the smallest of gzip, zstd and xz on the platform's
/// programs and modules (12.9 MB against 14.6 with zstd -19 and 16.2 with gzip on the demo).
const OPTIONS: &[&str] = &["-noappend", "-comp", "xz", "-Xbcj", "x86", "-all-root", "-no-xattrs"];

/// What can go wrong packing.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Modules(#[from] ModuleError),
    #[error("the packed platform needs module {0}, which the kernel package does not have")]
    Missing(String),
    #[error("writing the packed platform's files to {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("making the packed platform: {0}")]
    Squashfs(#[from] RootfsError),
}

/// What [`pack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    /// Records moved into the image.
    pub records: usize,
    /// Their contents' size.
    pub bytes: u64,
    /// The image's size.
    pub image: u64,
}

/// Splits `tree` into what stays unpacked and what is packed, and returns the unpacked part
/// and the image, which goes to [`IMAGE`] as an uncompressed segment of its own
/// (`platform::write`). The image is kept in `cache` under a hash of everything that
/// decides its bytes, so that a build whose packed files did not change (a new init, a new
/// config) does not run mksquashfs again (about 10 s of xz on the demo).
pub fn pack(
    tree: &Tree,
    index: &Index,
    release: &str,
    epoch: u32,
    cache: &Path,
) -> Result<(Tree, Vec<u8>, Packed), PackError> {
    let modules = format!("lib/modules/{release}");
    let selection = index.select(MODULES)?;
    for name in MODULES {
        if !selection.modules.contains_key(*name) {
            return Err(PackError::Missing((*name).to_owned()));
        }
    }
    let unpacked_modules: Vec<String> = selection
        .modules
        .values()
        .map(|m| format!("{modules}/{}", m.path))
        .collect();
    let stays = |path: &str, kind: &Kind| {
        let top = path.split('/').next().unwrap_or_default();
        !FOLDERS.contains(&top)
            || path == top
            || matches!(kind, Kind::Symlink(target) if target == "/init")
            || path
                .strip_prefix(&modules)
                .is_some_and(|rest| rest.starts_with("/modules."))
            || unpacked_modules.iter().any(|m| m == path)
            || matches!(kind, Kind::Dir) && unpacked_modules.iter().any(|m| m.starts_with(&format!("{path}/")))
    };
    let (mut initramfs, mut packed) = (Tree::new(), Tree::new());
    let mut count = Packed {
        records: 0,
        bytes: 0,
        image: 0,
    };
    for (path, record) in tree.iter() {
        if stays(path, &record.kind) {
            initramfs.insert_record(path, record.clone());
        } else {
            if let Kind::File(data) = &record.kind {
                count.bytes += data.len() as u64;
            }
            count.records += 1;
            packed.insert_record(path, record.clone());
        }
    }
    let image = cached(&packed, epoch, cache)?;
    count.image = image.len() as u64;
    Ok((initramfs, image, count))
}

/// The paths in a packed image (its bytes, as the initramfs holds them at [`IMAGE`]), without
/// the leading `/`: what PID 1 merges into the root.
pub fn list(image: &[u8]) -> Result<Vec<String>, PackError> {
    let scratch = tempfile::NamedTempFile::new().map_err(|source| PackError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    std::fs::write(scratch.path(), image).map_err(|source| PackError::Io {
        path: scratch.path().to_owned(),
        source,
    })?;
    Ok(squashfs::list(scratch.path())?
        .iter()
        .map(|p| p.to_string_lossy().trim_start_matches('/').to_owned())
        .collect())
}

/// The squashfs of `tree` from `cache/packed/KEY.sqfs`, made and stored there when missing.
fn cached(tree: &Tree, epoch: u32, cache: &Path) -> Result<Vec<u8>, PackError> {
    let mut hash = Sha256::new();
    hash.update(format!(
        "{}\0{}\0{epoch}\0",
        OPTIONS.join(" "),
        squashfs::tool_version()
    ));
    for (path, record) in tree.iter() {
        let (kind, data): (&str, &[u8]) = match &record.kind {
            Kind::Dir => ("d", &[]),
            Kind::File(data) => ("f", data),
            Kind::Symlink(target) => ("l", target.as_bytes()),
            Kind::CharDevice { .. } => ("c", &[]),
        };
        hash.update(format!("{path}\0{kind}{:o}\0{}\0", record.mode, data.len()));
        hash.update(data);
    }
    let key: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let path = cache.join("packed").join(format!("{key}.sqfs"));
    if let Ok(image) = std::fs::read(&path) {
        return Ok(image);
    }
    let image = squash(tree, epoch)?;
    let io = |source| PackError::Io {
        path: path.clone(),
        source,
    };
    // Written whole under another name, then renamed: a build killed midway leaves no
    // truncated image behind for the next one to take.
    std::fs::create_dir_all(cache.join("packed")).map_err(io)?;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, &image).map_err(io)?;
    std::fs::rename(&partial, &path).map_err(io)?;
    Ok(image)
}

/// The squashfs of `tree`, written through a scratch folder.
fn squash(tree: &Tree, epoch: u32) -> Result<Vec<u8>, PackError> {
    let scratch = tempfile::tempdir().map_err(|source| PackError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let root = scratch.path().join("root");
    write_dir(tree, &root).map_err(|source| PackError::Io {
        path: root.clone(),
        source,
    })?;
    let out = scratch.path().join("platform.sqfs");
    squashfs::make_with(&root, &out, epoch.into(), OPTIONS)?;
    std::fs::read(&out).map_err(|source| PackError::Io { path: out, source })
}

/// Writes `tree` under `root` with its modes (no device nodes: none are packed).
fn write_dir(tree: &Tree, root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root)?;
    for (path, record) in tree.iter() {
        let at = root.join(path);
        match &record.kind {
            Kind::Dir => std::fs::create_dir_all(&at)?,
            Kind::File(data) => std::fs::write(&at, data)?,
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &at)?,
            Kind::CharDevice { .. } => return Err(std::io::Error::other(format!("{path}: a device node"))),
        }
        if !matches!(record.kind, Kind::Symlink(_)) {
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(record.mode))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::Module;

    fn module(name: &str, path: &str, depends: &[&str]) -> Module {
        Module {
            name: name.into(),
            path: path.into(),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            pre: Vec::new(),
            aliases: Vec::new(),
        }
    }

    #[test]
    fn pid1_and_what_mounts_the_image_stay_unpacked_the_rest_is_packed() {
        let index = Index {
            release: "6.1.0-t".into(),
            modules: [
                module("loop", "kernel/drivers/block/loop.ko", &[]),
                module("squashfs", "kernel/fs/squashfs/squashfs.ko", &[]),
                module("overlay", "kernel/fs/overlayfs/overlay.ko", &["exportfs"]),
                module("exportfs", "kernel/fs/exportfs/exportfs.ko", &[]),
                module("virtio_net", "kernel/drivers/net/virtio_net.ko", &[]),
            ]
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect(),
            builtin: Default::default(),
        };
        let mut tree = Tree::new();
        tree.file("init", b"\x7fELF".to_vec(), 0o755);
        tree.file("etc/os-release", b"NAME=Ramkey\n".to_vec(), 0o644);
        tree.symlink("usr/bin/ramkeyctl", "/init");
        tree.file("usr/sbin/sshd", vec![7; 1000], 0o755);
        tree.file("bin/busybox", vec![1; 500], 0o755);
        tree.symlink("bin/sh", "/bin/busybox");
        tree.file("lib64/ld-linux-x86-64.so.2", vec![2; 100], 0o755);
        for m in index.modules.values() {
            tree.file(&format!("lib/modules/6.1.0-t/{}", m.path), vec![3; 10], 0o644);
        }
        tree.file("lib/modules/6.1.0-t/modules.dep", b"".to_vec(), 0o644);
        tree.file("lib/modules/6.1.0-t/modules.alias", b"".to_vec(), 0o644);

        let cache = tempfile::tempdir().unwrap();
        let (initramfs, image, packed) = pack(&tree, &index, "6.1.0-t", 1, cache.path()).unwrap();
        let kept: Vec<&str> = initramfs
            .iter()
            .filter(|(_, r)| !matches!(r.kind, Kind::Dir))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            kept,
            [
                "etc/os-release",
                "init",
                "lib/modules/6.1.0-t/kernel/drivers/block/loop.ko",
                "lib/modules/6.1.0-t/kernel/fs/exportfs/exportfs.ko",
                "lib/modules/6.1.0-t/kernel/fs/overlayfs/overlay.ko",
                "lib/modules/6.1.0-t/kernel/fs/squashfs/squashfs.ko",
                "lib/modules/6.1.0-t/modules.alias",
                "lib/modules/6.1.0-t/modules.dep",
                "usr/bin/ramkeyctl",
            ]
        );
        // The mount points are in the initramfs.
        for dir in ["bin", "lib", "lib64", "usr"] {
            assert!(matches!(initramfs.get(dir).unwrap().kind, Kind::Dir), "{dir}");
        }
        assert_eq!((packed.records, packed.bytes), (8, 1000 + 500 + 100 + 10));
        assert_eq!(packed.image, image.len() as u64);
        let listed = list(&image).unwrap();
        for path in [
            "usr/sbin/sshd",
            "bin/sh",
            "lib64/ld-linux-x86-64.so.2",
            "lib/modules/6.1.0-t/kernel/drivers/net/virtio_net.ko",
        ] {
            assert!(listed.iter().any(|p| p == path), "{path} not in {listed:?}");
        }
        assert!(
            !listed.iter().any(|p| p.ends_with("loop.ko") || p == "init"),
            "{listed:?}"
        );
        // The same inputs give the same bytes, made again or from the cache.
        let elsewhere = tempfile::tempdir().unwrap();
        let (_, again, _) = pack(&tree, &index, "6.1.0-t", 1, elsewhere.path()).unwrap();
        assert_eq!(again, image);
        let cached: Vec<_> = std::fs::read_dir(cache.path().join("packed")).unwrap().collect();
        assert_eq!(cached.len(), 1);
        let (_, hit, _) = pack(&tree, &index, "6.1.0-t", 1, cache.path()).unwrap();
        assert_eq!(hit, image);
        // Another file: another image.
        tree.file("usr/sbin/sshd", vec![8; 1000], 0o755);
        let (_, changed, _) = pack(&tree, &index, "6.1.0-t", 1, cache.path()).unwrap();
        assert_ne!(changed, image);
    }
}

//! The target of `ramkey flash`, opened once before any check: a block device
//! (`O_RDWR | O_EXCL | O_CLOEXEC`: the kernel refuses with `EBUSY` a disk that is mounted or
//! claimed), an existing regular file outside `/dev`, or a path outside `/dev` still to be
//! created. The checks, the question, the write, the read-back and `--keep-config` all use
//! the one descriptor; nothing reopens the path. A path under `/dev` is a device or an
//! error, never a file created or written there. [`open_existing`] is that first step
//! alone, shared with `ramkey config` on an image or a stick.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::FlashError;
use super::checks;
use super::sysfs::{DevNum, Sysfs};

/// The opened target.
#[derive(Debug)]
pub enum Target {
    /// A block device, opened exclusively; `dev` is its `st_rdev` as `fstat` reports it.
    Block { file: File, dev: DevNum },
    /// An existing regular file outside `/dev`, opened read-write (truncated when written).
    File(File),
    /// A path outside `/dev` that does not exist: created (`O_CREAT | O_EXCL`) when written.
    New,
}

impl Target {
    /// The descriptor, unless the file is still to be created.
    pub fn file(&self) -> Option<&File> {
        match self {
            Target::Block { file, .. } | Target::File(file) => Some(file),
            Target::New => None,
        }
    }
}

/// Where devices live: the host's `/dev` and the one under the `Sysfs` root (the same when the
/// root is `/`), and the filesystem mounted on the host's `/dev` (devtmpfs), wherever it is
/// also mounted (a chroot's bind mount).
#[derive(Debug, Clone)]
pub struct DevRoots {
    paths: Vec<PathBuf>,
    fs: Option<u64>,
}

impl DevRoots {
    pub fn for_sysfs(sys: &Sysfs) -> DevRoots {
        let mut paths: Vec<PathBuf> = Vec::new();
        for root in [PathBuf::from("/dev"), sys.path("/dev")] {
            let root = std::fs::canonicalize(&root).unwrap_or(root);
            if !paths.contains(&root) {
                paths.push(root);
            }
        }
        // Only when /dev is a filesystem of its own: otherwise its st_dev is the root's.
        let fs = match (std::fs::metadata("/dev"), std::fs::metadata("/")) {
            (Ok(dev), Ok(root)) if dev.dev() != root.dev() => Some(dev.dev()),
            _ => None,
        };
        DevRoots { paths, fs }
    }

    /// Whether `path` (existing or not) is under a `/dev`: its longest existing ancestor,
    /// symlinks resolved, with the rest of the path appended, is under one of the paths, or
    /// that ancestor is on the filesystem mounted on `/dev`.
    pub fn contains(&self, path: &Path) -> bool {
        let Some((ancestor, rest, meta)) = existing_ancestor(path) else {
            return false;
        };
        let resolved = ancestor.join(rest);
        self.paths.iter().any(|root| resolved.starts_with(root)) || self.holds(&meta)
    }

    /// Whether `meta` (of an opened file) is on the filesystem mounted on `/dev`.
    pub fn holds(&self, meta: &Metadata) -> bool {
        self.fs == Some(meta.dev())
    }
}

/// The longest prefix of `path` (made absolute) that exists, canonicalized, the components
/// after it, and its metadata.
fn existing_ancestor(path: &Path) -> Option<(PathBuf, PathBuf, Metadata)> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let parts: Vec<Component> = abs.components().collect();
    (1..=parts.len()).rev().find_map(|n| {
        let prefix: PathBuf = parts[..n].iter().collect();
        let canonical = std::fs::canonicalize(&prefix).ok()?;
        let meta = std::fs::metadata(&canonical).ok()?;
        Some((canonical, parts[n..].iter().collect(), meta))
    })
}

/// How [`open_existing`] opens what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `O_RDONLY`: a block device is not claimed (reading a mounted stick is allowed).
    Read,
    /// `O_RDWR`, and `O_EXCL` on a block device: the kernel refuses a disk that is mounted
    /// or claimed, and nothing can mount or claim it while the descriptor is open.
    Write,
}

/// A device or regular file opened by [`open_existing`] (`O_CLOEXEC`: no child inherits it).
#[derive(Debug)]
pub(crate) enum Opened {
    /// `dev` is the `st_rdev` of the opened descriptor, not of the path.
    Block {
        file: File,
        dev: DevNum,
    },
    File(File),
}

/// Why [`open_existing`] opened nothing.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Nothing is there; `device` when the path is under a `/dev` or a dangling symlink: a
    /// device that is not there, never a file to create.
    Missing {
        device: bool,
        source: io::Error,
    },
    /// A regular file under `/dev` (or on the filesystem mounted there).
    FileInDev,
    /// Neither a block device nor a regular file (before or after opening).
    NotATarget,
    /// Opening the block device failed; `dev` is the path's device number, for the caller's
    /// checks that say why (`EBUSY`: mounted or claimed).
    Block {
        dev: DevNum,
        source: io::Error,
    },
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// Opens what is at `path` once, a block device or a regular file outside `/dev`, and
/// checks the opened descriptor (`fstat`), not the path: what is returned is what was
/// opened, whatever the path names by now. Never creates anything. The first step of
/// `ramkey flash` and of `ramkey config` on an image or a stick.
pub(crate) fn open_existing(path: &Path, dev: &DevRoots, access: Access) -> Result<Opened, OpenError> {
    use rustix::fs::OFlags;
    let io_err = |what: &'static str| move |source| OpenError::Io { what, source };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(source) if source.kind() == io::ErrorKind::NotFound => {
            // A dangling symlink (a by-id link of a stick that is gone) names a device.
            let device = dev.contains(path) || std::fs::symlink_metadata(path).is_ok();
            return Err(OpenError::Missing { device, source });
        }
        Err(e) => return Err(io_err("inspecting")(e)),
    };
    let write = access == Access::Write;
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    let opened = if meta.file_type().is_block_device() {
        let excl = if write { OFlags::EXCL } else { OFlags::empty() };
        let file = options
            .custom_flags((excl | OFlags::CLOEXEC).bits() as i32)
            .open(path)
            .map_err(|source| OpenError::Block {
                dev: DevNum::from_rdev(meta.rdev()),
                source,
            })?;
        let opened = file.metadata().map_err(io_err("inspecting"))?;
        if !opened.file_type().is_block_device() {
            return Err(OpenError::NotATarget);
        }
        Opened::Block {
            dev: DevNum::from_rdev(opened.rdev()),
            file,
        }
    } else if meta.is_file() {
        if dev.contains(path) || dev.holds(&meta) {
            return Err(OpenError::FileInDev);
        }
        let file = options
            .custom_flags(OFlags::CLOEXEC.bits() as i32)
            .open(path)
            .map_err(io_err("opening"))?;
        let opened = file.metadata().map_err(io_err("inspecting"))?;
        if !opened.is_file() {
            return Err(OpenError::NotATarget);
        }
        if dev.holds(&opened) {
            return Err(OpenError::FileInDev);
        }
        Opened::File(file)
    } else {
        return Err(OpenError::NotATarget);
    };
    Ok(opened)
}

/// Opens the target once ([`open_existing`], for writing). When opening a block device
/// fails, the checks that explain why (mounted, the boot disk, held, swap, a partition) are
/// asked first, by the device number of the path (nothing is written either way). A missing
/// path or a regular file under `/dev`, and a dangling symlink anywhere, are refused; a
/// missing path elsewhere is a file to create.
pub fn open(path: &Path, sys: &Sysfs) -> Result<Target, FlashError> {
    open_in(path, sys, &DevRoots::for_sysfs(sys))
}

/// [`open`] with the `/dev` roots given.
pub fn open_in(path: &Path, sys: &Sysfs, dev: &DevRoots) -> Result<Target, FlashError> {
    let io_err = |what: &'static str, source| FlashError::Io {
        what,
        path: path.into(),
        source,
    };
    match open_existing(path, dev, Access::Write) {
        Ok(Opened::Block { file, dev }) => Ok(Target::Block { file, dev }),
        Ok(Opened::File(file)) => Ok(Target::File(file)),
        Err(OpenError::Missing { device: false, .. }) => Ok(Target::New),
        Err(OpenError::Missing { device: true, .. }) => Err(FlashError::NoSuchDevice { path: path.into() }),
        Err(OpenError::FileInDev) => Err(FlashError::FileInDev { path: path.into() }),
        Err(OpenError::NotATarget) => Err(FlashError::NotATarget { path: path.into() }),
        Err(OpenError::Block { dev, source }) => {
            // Say why, when the checks know: "mounted on /media/stick" rather than EBUSY,
            // "the disk the host booted from" rather than EACCES.
            match checks::check_in_use(sys, path, dev) {
                Err(FlashError::Io { .. }) | Ok(_) => {}
                Err(refusal) => return Err(refusal),
            }
            if is_busy(&source) {
                Err(FlashError::Busy { device: path.into() })
            } else {
                Err(io_err("opening", source))
            }
        }
        Err(OpenError::Io { what, source }) => Err(io_err(what, source)),
    }
}

/// Whether opening failed with `EBUSY` (an exclusive open of a mounted or claimed disk).
pub(crate) fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
}

/// Creates the file target, which did not exist when it was looked at (`O_CREAT | O_EXCL`:
/// nothing that appeared there since, a symlink included, is followed or truncated).
pub fn create(path: &Path) -> Result<File, FlashError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
        .open(path)
        .map_err(|source| FlashError::Io {
            what: "creating",
            path: path.into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn roots(dev: &Path) -> DevRoots {
        DevRoots {
            paths: vec![fs::canonicalize(dev).unwrap()],
            fs: None,
        }
    }

    #[test]
    fn paths_under_dev_existing_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        fs::create_dir_all(dev.join("disk/by-id")).unwrap();
        let roots = roots(&dev);
        assert!(roots.contains(&dev.join("sdz")));
        assert!(roots.contains(&dev.join("disk/by-id/usb-gone")));
        assert!(roots.contains(&dev.join("no/such/dir/sdz")));
        assert!(!roots.contains(&dir.path().join("usb.img")));
        assert!(!roots.contains(&dir.path().join("out/new.img")));
        // `..` and symlinks are resolved where the path exists.
        assert!(!roots.contains(&dev.join("../usb.img")));
        std::os::unix::fs::symlink(&dev, dir.path().join("devices")).unwrap();
        assert!(roots.contains(&dir.path().join("devices/sdz")));
        // The host's /dev, whatever the Sysfs root.
        let host = DevRoots::for_sysfs(&Sysfs::new(dir.path()));
        assert!(host.contains(Path::new("/dev/ramkey-no-such-disk")));
        assert!(host.contains(&dev.join("sdz")));
        assert!(!host.contains(&dir.path().join("usb.img")));
    }

    #[test]
    fn a_missing_path_under_dev_is_no_such_device_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        fs::create_dir(&dev).unwrap();
        let sys = Sysfs::new(dir.path());
        let sdz = dev.join("sdz");
        let err = open_in(&sdz, &sys, &roots(&dev)).unwrap_err();
        assert!(matches!(err, FlashError::NoSuchDevice { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "no such device: {}; plug the stick in, `lsblk` lists the disks",
                sdz.display()
            )
        );
        assert!(fs::symlink_metadata(&sdz).is_err(), "created");
        // A dangling symlink anywhere: not followed to create its target.
        let link = dir.path().join("stick");
        std::os::unix::fs::symlink(&sdz, &link).unwrap();
        let err = open_in(&link, &sys, &roots(&dev)).unwrap_err();
        assert!(matches!(err, FlashError::NoSuchDevice { .. }), "{err}");
        assert!(fs::symlink_metadata(&sdz).is_err(), "created");
        // Outside /dev a missing path is a file to create, and is not created yet.
        let new = dir.path().join("copy.img");
        assert!(matches!(open_in(&new, &sys, &roots(&dev)), Ok(Target::New)));
        assert!(!new.exists());
    }

    #[test]
    fn a_regular_file_under_dev_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        fs::create_dir(&dev).unwrap();
        fs::write(dev.join("sdz"), b"left over").unwrap();
        let sys = Sysfs::new(dir.path());
        let err = open_in(&dev.join("sdz"), &sys, &roots(&dev)).unwrap_err();
        assert!(matches!(err, FlashError::FileInDev { .. }), "{err}");
        fs::write(dir.path().join("copy.img"), b"old").unwrap();
        let target = open_in(&dir.path().join("copy.img"), &sys, &roots(&dev)).unwrap();
        assert!(matches!(target, Target::File(_)));
        // Neither a device nor a regular file: never opened.
        let err = open_in(Path::new("/dev/null"), &sys, &roots(&dev)).unwrap_err();
        assert!(matches!(err, FlashError::NotATarget { .. }), "{err}");
    }
}

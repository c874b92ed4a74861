//! The packed platform: the builder puts most of the platform's files (the kernel modules
//! past the few needed here, the extras: busybox, sshd, mkfs and their libraries) into one
//! xz squashfs inside the initramfs. The kernel unpacks the initramfs into RAM, so an
//! unpacked file costs its full size for as long as the box runs; packed, it costs its
//! compressed size, and what is read sits in the page cache, which the kernel can reclaim.
//!
//! This step loads `loop`, `squashfs` and `overlay` from the initramfs, attaches the image
//! to a loop device, mounts it read-only at `/run/ramkey/packed`, and merges each of its
//! top-level folders over the root's folder of that name with a read-only overlayfs (the
//! initramfs's files on top), so `/usr/sbin/sshd` and `/lib/modules/...` are where programs
//! and the module loader look. An initramfs without the image (an unpacked platform, or a
//! unit test's root) skips the step.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::base::paths::{PACKED_IMAGE, Paths};
use crate::devices::modprobe::{Modprobe, ModprobeError, ModuleLoader};
use crate::storage::mounts::Mounter;
use crate::sys::SysError;

/// The modules the step needs; the builder keeps them (and their dependencies) unpacked.
pub const MODULES: &[&str] = &["loop", "squashfs", "overlay"];

/// Attaches an open image file of the given size to a loop device: `/dev/loopN` and the
/// open device, to keep until it is mounted.
pub type Attach<'a> = dyn FnMut(&File, u64) -> Result<(PathBuf, File), SysError> + 'a;

/// The packed platform could not be mounted: the initramfs is damaged or was not built for
/// this kernel.
#[derive(Debug, thiserror::Error)]
pub enum PackedError {
    /// A module the step needs did not load.
    #[error("the packed platform /{PACKED_IMAGE} needs module {module}: {source}")]
    Module {
        /// `loop`, `squashfs` or `overlay`.
        module: &'static str,
        /// Why it did not load.
        source: ModprobeError,
    },
    /// The image could not be opened.
    #[error("cannot open the packed platform /{PACKED_IMAGE}: {0}")]
    Open(std::io::Error),
    /// No loop device took it.
    #[error("cannot attach the packed platform /{PACKED_IMAGE} to a loop device: {0}")]
    Loop(SysError),
    /// A mount point could not be made.
    #[error("cannot create {path}: {source}")]
    Mkdir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A mount failed.
    #[error("cannot mount {what}: {source}; the initramfs is damaged or not built for this kernel: rebuild it")]
    Mount {
        /// What was mounted where.
        what: String,
        /// The errno.
        source: Errno,
    },
}

/// What the step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The image's size in bytes (what it costs in RAM).
    pub size: u64,
    /// The loop device it is read through.
    pub device: PathBuf,
    /// The root's folders it was merged into, sorted (`bin`, `lib`, `usr`).
    pub merged: Vec<String>,
}

impl Packed {
    /// The one line for the console.
    pub fn summary(&self) -> String {
        format!(
            "packed platform: {} KiB on {}, merged into /{}",
            self.size / 1024,
            self.device.display(),
            self.merged.join(", /")
        )
    }
}

/// Mounts the packed platform and merges its folders into the root; `None` when the
/// initramfs has no packed image.
pub fn mount(
    paths: &Paths,
    modprobe: &mut Modprobe,
    loader: &mut dyn ModuleLoader,
    mounter: &mut dyn Mounter,
    attach: &mut Attach<'_>,
) -> Result<Option<Packed>, PackedError> {
    let image = paths.packed_image();
    let file = match File::open(&image) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PackedError::Open(e)),
    };
    for module in MODULES {
        modprobe
            .modprobe(module, loader)
            .map_err(|source| PackedError::Module { module, source })?;
    }
    let size = file.metadata().map_err(PackedError::Open)?.len();
    let (device, _held) = attach(&file, size).map_err(PackedError::Loop)?;
    let at = paths.packed_mount();
    mounter.mkdir_all(&at).map_err(|source| PackedError::Mkdir {
        path: at.clone(),
        source,
    })?;
    let read_only = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    mounter
        .mount_device(&device, &at, "squashfs", read_only, "")
        .map_err(|source| PackedError::Mount {
            what: format!("{} (/{PACKED_IMAGE}) on {}", device.display(), at.display()),
            source,
        })?;
    let merged = top_folders(&at);
    for name in &merged {
        let target = paths.root().join(name);
        mounter.mkdir_all(&target).map_err(|source| PackedError::Mkdir {
            path: target.clone(),
            source,
        })?;
        let options = overlay_options(&target, &at.join(name));
        mounter
            .mount_device(Path::new("overlay"), &target, "overlay", MsFlags::MS_RDONLY, &options)
            .map_err(|source| PackedError::Mount {
                what: format!("overlay {options} on {}", target.display()),
                source,
            })?;
    }
    Ok(Some(Packed { size, device, merged }))
}

/// The image's top-level folders, sorted.
fn top_folders(at: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(at)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The options of a read-only overlay: the root's own folder on top of the image's (with no
/// upper layer, overlayfs takes two lower layers and writes nothing).
fn overlay_options(own: &Path, packed: &Path) -> String {
    format!("lowerdir={}:{}", own.display(), packed.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::modprobe::RecordingLoader;
    use crate::devices::modules::ModuleIndex;
    use crate::storage::mounts::fake::RecordingMounter;

    fn modprobe(root: &Path) -> Modprobe {
        let dir = root.join("lib/modules/6.1.0");
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        let mut dep = String::new();
        for m in MODULES {
            std::fs::write(dir.join(format!("kernel/{m}.ko")), b"ko").unwrap();
            dep.push_str(&format!("kernel/{m}.ko:\n"));
        }
        std::fs::write(dir.join("modules.dep"), dep).unwrap();
        std::fs::write(dir.join("modules.alias"), "").unwrap();
        Modprobe::new(ModuleIndex::load(&dir).unwrap(), Default::default())
    }

    fn with_image(dir: &Path, bytes: usize) -> Paths {
        let paths = Paths::new(dir);
        std::fs::create_dir_all(paths.packed_image().parent().unwrap()).unwrap();
        std::fs::write(paths.packed_image(), vec![0u8; bytes]).unwrap();
        paths
    }

    fn no_attach(_: &File, _: u64) -> Result<(PathBuf, File), SysError> {
        unreachable!("nothing is attached")
    }

    #[test]
    fn without_an_image_nothing_happens() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let (mut loader, mut mounter) = (RecordingLoader::default(), RecordingMounter::default());
        let got = mount(
            &paths,
            &mut modprobe(dir.path()),
            &mut loader,
            &mut mounter,
            &mut no_attach,
        )
        .unwrap();
        assert_eq!(got, None);
        assert!(loader.calls.is_empty() && mounter.mounts.is_empty());
    }

    #[test]
    fn the_image_is_mounted_and_each_folder_merged_with_the_root_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let paths = with_image(dir.path(), 4096);
        // What the mounted squashfs shows (the fake mounter mounts nothing).
        for folder in ["usr", "bin", "lib"] {
            std::fs::create_dir_all(paths.packed_mount().join(folder)).unwrap();
        }
        std::fs::write(paths.packed_mount().join("stray-file"), b"").unwrap();
        let (mut loader, mut mounter) = (RecordingLoader::default(), RecordingMounter::default());
        let mut sizes = Vec::new();
        let mut attach = |_: &File, size: u64| {
            sizes.push(size);
            Ok((PathBuf::from("/dev/loop0"), File::open("/dev/null").unwrap()))
        };
        let got = mount(
            &paths,
            &mut modprobe(dir.path()),
            &mut loader,
            &mut mounter,
            &mut attach,
        )
        .unwrap()
        .unwrap();
        assert_eq!(sizes, [4096]);
        let loaded: Vec<&str> = loader.calls.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(loaded, MODULES);
        assert_eq!(got.merged, ["bin", "lib", "usr"]);
        let root = dir.path().display();
        let packed = format!("{root}/run/ramkey/packed");
        let mounts: Vec<(String, String)> = mounter
            .mounts
            .iter()
            .map(|m| {
                (
                    m.target.display().to_string(),
                    format!("{} {} {}", m.source.display(), m.fstype, m.data),
                )
            })
            .collect();
        assert_eq!(
            mounts,
            [
                (packed.clone(), "/dev/loop0 squashfs ".to_owned()),
                (
                    format!("{root}/bin"),
                    format!("overlay overlay lowerdir={root}/bin:{packed}/bin")
                ),
                (
                    format!("{root}/lib"),
                    format!("overlay overlay lowerdir={root}/lib:{packed}/lib")
                ),
                (
                    format!("{root}/usr"),
                    format!("overlay overlay lowerdir={root}/usr:{packed}/usr")
                ),
            ]
        );
        assert!(mounter.mounts.iter().all(|m| m.flags.contains(MsFlags::MS_RDONLY)));
        assert_eq!(
            got.summary(),
            "packed platform: 4 KiB on /dev/loop0, merged into /bin, /lib, /usr"
        );
    }

    #[test]
    fn a_module_that_does_not_load_is_named_and_nothing_is_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let paths = with_image(dir.path(), 1);
        let mut loader = RecordingLoader::default();
        loader.failing.insert("squashfs".into(), Errno::ENOEXEC);
        let mut mounter = RecordingMounter::default();
        let err = mount(
            &paths,
            &mut modprobe(dir.path()),
            &mut loader,
            &mut mounter,
            &mut no_attach,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the packed platform /lib/ramkey/platform.sqfs needs module squashfs: finit_module"),
            "{err}"
        );
        assert!(mounter.mounts.is_empty());
    }

    #[test]
    fn a_failed_mount_says_the_initramfs_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let paths = with_image(dir.path(), 1);
        let mut mounter = RecordingMounter::default();
        mounter.fail.push((paths.packed_mount(), Errno::EINVAL));
        let mut attach = |_: &File, _: u64| Ok((PathBuf::from("/dev/loop3"), File::open("/dev/null").unwrap()));
        let err = mount(
            &paths,
            &mut modprobe(dir.path()),
            &mut RecordingLoader::default(),
            &mut mounter,
            &mut attach,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/dev/loop3 (/lib/ramkey/platform.sqfs)"),
            "{err}"
        );
        assert!(
            err.to_string().ends_with("not built for this kernel: rebuild it"),
            "{err}"
        );
    }
}

//! The platform build: one record tree from the init binary, the kernel's module subset,
//! the rootfs overlay and generated files; written as `platform/` (vmlinuz, initrd.img,
//! version, SHA256SUMS).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::initramfs::{self, Compression};
use crate::kernel::Kernel;
use crate::modules::{Index, ModuleError};
use crate::packed;
use crate::records::{RecordError, Tree};

/// The platform version, shown in `/etc/os-release` and `platform/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a platform is made of.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub kernel: &'a Kernel,
    /// The static PID 1 binary.
    pub init: &'a Path,
    /// Files copied verbatim into the root (e.g. `rootfs-overlay/`).
    pub overlay: Option<&'a Path>,
    /// Module names; their dependencies come along.
    pub modules: Vec<&'a str>,
    /// Timestamp of every record (`SOURCE_DATE_EPOCH`).
    pub epoch: u32,
}

/// What can go wrong building the platform.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Modules(#[from] ModuleError),
    #[error(transparent)]
    Records(#[from] RecordError),
}

/// The directories every Ramkey root has, with their modes.
const ROOT_DIRS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("etc", 0o755),
    ("lib/modules", 0o755),
    ("pool", 0o755),
    ("proc", 0o555),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usbkey", 0o755),
    ("var", 0o755),
];

/// Builds the record tree of the platform.
pub fn assemble(inputs: &Inputs<'_>) -> Result<Tree, PlatformError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| PlatformError::Read {
            path: path.into(),
            source,
        })
    };
    let mut tree = Tree::new();
    for (dir, mode) in ROOT_DIRS {
        tree.dir(dir, *mode);
    }
    // The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
    tree.char_device("dev/console", 5, 1, 0o600);
    tree.char_device("dev/null", 1, 3, 0o666);
    tree.file("init", read(inputs.init)?, 0o755);
    // One binary: PID 1 acts as the admin tool when called `ramkeyctl` (busybox style).
    tree.symlink("usr/bin/ramkeyctl", "/init");
    // ... and as the zone launcher PID 1's supervisor runs for each personality.
    tree.symlink("usr/sbin/ramkey-zone", "/init");
    tree.symlink("usr/sbin/ramkey-vmm", "/init");
    // ... and as the log shipper, a platform service when `[log] remote` is set.
    tree.symlink("usr/sbin/ramkey-logship", "/init");
    // ... and as the Prometheus exporter, a platform service when the config has [metrics].
    tree.symlink("usr/sbin/ramkey-metrics", "/init");
    // ... and as the HA agent, a platform service when the config has [cluster].
    tree.symlink("usr/sbin/ramkey-cluster", "/init");
    if let Some(overlay) = inputs.overlay {
        tree.add_host_dir(overlay, "/")?;
    }
    tree.file("etc/os-release", os_release(&inputs.kernel.release), 0o644);

    let kernel = inputs.kernel;
    let index = Index::load(&kernel.modules_dir, &kernel.release)?;
    let selection = index.select(&inputs.modules)?;
    let base = format!("lib/modules/{}", kernel.release);
    for module in selection.modules.values() {
        tree.file(
            &format!("{base}/{}", module.path),
            read(&kernel.modules_dir.join(&module.path))?,
            0o644,
        );
    }
    tree.file(&format!("{base}/modules.dep"), selection.modules_dep(), 0o644);
    tree.file(&format!("{base}/modules.alias"), selection.modules_alias(), 0o644);
    let builtin = kernel.modules_dir.join("modules.builtin");
    if builtin.exists() {
        tree.file(&format!("{base}/modules.builtin"), read(&builtin)?, 0o644);
    }
    Ok(tree)
}

fn os_release(kernel: &str) -> String {
    format!(
        "NAME=Ramkey\nID=ramkey\nVERSION_ID={VERSION}\nPRETTY_NAME=\"Ramkey {VERSION}\"\n\
         HOME_URL=\"https://ramkey.invalid/\"\nRAMKEY_KERNEL={kernel}\n"
    )
}

/// What `write` produced.
#[derive(Debug)]
pub struct Output {
    pub dir: PathBuf,
    pub initrd_size: u64,
    pub uncompressed_size: u64,
    /// Records in the compressed segment (the packed platform's are counted apart).
    pub records: usize,
}

/// Writes `dir/{vmlinuz,initrd.img,version,SHA256SUMS}`: `initrd.img` is `tree` compressed,
/// then the packed platform `image` at [`packed::IMAGE`] as an uncompressed segment.
pub fn write(
    dir: &Path,
    kernel: &Kernel,
    tree: &Tree,
    image: &[u8],
    epoch: u32,
    compression: Compression,
) -> Result<Output, PlatformError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PlatformError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut segment = Tree::new();
    segment.file(packed::IMAGE, image, 0o644);
    let mut initrd = initramfs::write(tree, epoch, compression).map_err(write_err(&dir.join("initrd.img")))?;
    initramfs::append_uncompressed(&mut initrd, &segment, epoch).map_err(write_err(&dir.join("initrd.img")))?;
    let mut uncompressed = Vec::new();
    initramfs::write_cpio(tree, epoch, &mut uncompressed).map_err(write_err(dir))?;
    initramfs::append_uncompressed(&mut uncompressed, &segment, epoch).map_err(write_err(dir))?;
    let vmlinuz = std::fs::read(&kernel.vmlinuz).map_err(|source| PlatformError::Read {
        path: kernel.vmlinuz.clone(),
        source,
    })?;
    let files: [(&str, &[u8]); 2] = [("vmlinuz", &vmlinuz), ("initrd.img", &initrd)];
    let mut sums = String::new();
    for (name, data) in files {
        std::fs::write(dir.join(name), data).map_err(write_err(&dir.join(name)))?;
        let digest = Sha256::digest(data);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        sums.push_str(&format!("{hex}  {name}\n"));
    }
    let version = format!("ramkey {VERSION}\nkernel {}\n", kernel.release);
    std::fs::write(dir.join("version"), version).map_err(write_err(&dir.join("version")))?;
    std::fs::write(dir.join("SHA256SUMS"), sums).map_err(write_err(&dir.join("SHA256SUMS")))?;
    Ok(Output {
        dir: dir.to_path_buf(),
        initrd_size: initrd.len() as u64,
        uncompressed_size: uncompressed.len() as u64,
        records: tree.len(),
    })
}

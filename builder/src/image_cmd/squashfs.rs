//! Writing the payload with `mksquashfs` (squashfs-tools), reproducibly: zstd, every
//! timestamp and the filesystem time set to the build epoch, sorted entries (mksquashfs's
//! default `-reproducible`). It reads a directory: bookworm's squashfs-tools 4.5.1 has no
//! `-tar` input, and the directory also serves the OCI and `files` bases.
//!
//! Why not `backhand`: mksquashfs is Debian's reference writer, keeps owners, hard links and
//! xattrs (file capabilities) from the directory, and compresses with both cores.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::rootfs::{RootfsError, ensure_tool, run};

/// The compressor.
pub const COMPRESSION: &str = "zstd";

/// Options that decide the payload's bytes (part of the cache key): the uid/gid table is
/// left uncompressed (`-noId`), so that a box can shift every owner into a zone's id range
/// in place (`ramkey_image::ids`).
pub const OPTIONS: &[&str] = &["-noappend", "-comp", COMPRESSION, "-noId"];

/// Writes the squashfs of `root` to `out` (replaced). `all_root` makes every file owned by
/// root (for trees a normal user put together, where owners mean nothing).
pub fn make(root: &Path, out: &Path, epoch: u64, all_root: bool) -> Result<(), RootfsError> {
    let mut options = OPTIONS.to_vec();
    if all_root {
        options.push("-all-root");
    }
    make_with(root, out, epoch, &options)
}

/// Writes the squashfs of `root` to `out` with mksquashfs `options` (compressor and the
/// like), every time set to `epoch`.
pub fn make_with(root: &Path, out: &Path, epoch: u64, options: &[&str]) -> Result<(), RootfsError> {
    ensure_tool("mksquashfs", "squashfs-tools")?;
    let epoch = epoch.to_string();
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(root)
        .arg(out)
        .args(options)
        .args(["-no-progress", "-quiet"])
        .args(["-mkfs-time", &epoch, "-all-time", &epoch])
        // mksquashfs refuses SOURCE_DATE_EPOCH together with the options that say the same.
        .env_remove("SOURCE_DATE_EPOCH");
    run(&mut cmd)?;
    Ok(())
}

/// mksquashfs's version line: part of the cache key, as it decides the payload's bytes.
pub fn tool_version() -> String {
    Command::new("mksquashfs")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(String::from))
        .unwrap_or_else(|| "mksquashfs missing".into())
}

/// The paths in a squashfs file (`unsquashfs -l`, no mounting), without the `squashfs-root`
/// prefix: `/usr/sbin/nginx`.
pub fn list(file: &Path) -> Result<Vec<PathBuf>, RootfsError> {
    ensure_tool("unsquashfs", "squashfs-tools")?;
    let out = run(Command::new("unsquashfs").args(["-l", "-no-progress"]).arg(file))?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("squashfs-root"))
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect())
}

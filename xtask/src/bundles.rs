//! Signed platform bundles for the upgrade boot tests, made from the tested platform
//! ([`artifacts::platform`]) into `target/ramkey/bundles/`: `NAME.rkup`, and beside it the
//! folder `NAME/` holding the bundle's `vmlinuz` and `initrd.img`, which
//! [`crate::qemu::Spec::direct`] boots as it is.
//!
//! A changed platform is the built one's initrd with one more uncompressed newc segment
//! appended: the kernel unpacks concatenated segments in order and a later file replaces an
//! earlier one, so the segment carries only what differs (the `etc/os-release` of another
//! version, an empty module file). `NAME` must be unique among the tests, which run two at
//! a time.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ramkey_builder::records::Tree;
use ramkey_builder::{initramfs, packed};
use ramkey_image::SigningKey;
use ramkey_image::bundle::{self, Release};

use crate::artifacts;

/// `NAME.rkup`: the tested platform as version `version` (its `etc/os-release` says so),
/// signed by [`artifacts::test_key`].
pub fn platform_bundle(name: &str, version: &str) -> Result<PathBuf> {
    platform_bundle_signed_by(name, version, &test_key()?)
}

/// [`platform_bundle`] signed by `key` instead of the test key.
pub fn platform_bundle_signed_by(name: &str, version: &str, key: &SigningKey) -> Result<PathBuf> {
    let platform = artifacts::platform()?;
    let mut extra = Tree::new();
    extra.file("etc/os-release", os_release(&platform, version)?, 0o644);
    let initrd = appended(&read(&platform.join("initrd.img"))?, &extra)?;
    write(name, version, &initrd, key)
}

/// [`platform_bundle`] whose initrd holds the kernel module `module` (`overlay`, `loop`,
/// `squashfs`, `macvlan`: what zones load) as an empty file, so that loading it fails on
/// the box (`modprobe` reads it, `finit_module` refuses it).
pub fn platform_bundle_without_module(name: &str, version: &str, module: &str) -> Result<PathBuf> {
    let platform = artifacts::platform()?;
    let initrd = read(&platform.join("initrd.img"))?;
    let path = module_path(&initrd, module)?;
    let mut extra = Tree::new();
    extra.file("etc/os-release", os_release(&platform, version)?, 0o644);
    extra.file(&path, Vec::new(), 0o644);
    write(name, version, &appended(&initrd, &extra)?, &test_key()?)
}

/// A bundle of the tested kernel with an initrd that is not an initramfs (256 KiB of fixed
/// junk): the kernel unpacks nothing, finds no init and panics (`VFS: Unable to mount root
/// fs`), before PID 1 could do anything about it.
pub fn panicking_platform_bundle(name: &str, version: &str) -> Result<PathBuf> {
    write(name, version, &junk(256 << 10), &test_key()?)
}

/// Where [`platform_bundle`] and the others put the bundle's kernel and initrd: the bundle's
/// path without `.rkup`.
pub fn bundle_platform(bundle: &Path) -> PathBuf {
    bundle.with_extension("")
}

fn test_key() -> Result<SigningKey> {
    let (secret, _) = artifacts::test_key()?;
    let text = std::fs::read_to_string(&secret).with_context(|| format!("reading {}", secret.display()))?;
    Ok(ramkey_image::keys::decode_secret(&text, "the test key")?)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes `bundles/NAME/{vmlinuz,initrd.img}` (the tested kernel, `initrd`) and
/// `bundles/NAME.rkup` from them, signed by `key`; returns the bundle.
fn write(name: &str, version: &str, initrd: &[u8], key: &SigningKey) -> Result<PathBuf> {
    let platform = artifacts::platform()?;
    let dir = artifacts::target_dir().join("ramkey/bundles");
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let (kernel, initrd_path) = (folder.join("vmlinuz"), folder.join("initrd.img"));
    std::fs::copy(platform.join("vmlinuz"), &kernel).with_context(|| format!("writing {}", kernel.display()))?;
    std::fs::write(&initrd_path, initrd).with_context(|| format!("writing {}", initrd_path.display()))?;
    let release = Release {
        version: version.to_string(),
        kernel_release: kernel_release(&platform)?,
        created: artifacts::source_date_epoch().into(),
        builder_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let out = dir.join(format!("{name}.rkup"));
    bundle::write_file(&kernel, &initrd_path, &release, key, &out)
        .with_context(|| format!("writing the platform bundle {}", out.display()))?;
    Ok(out)
}

/// The kernel release of a built platform folder, from its `version` file (`kernel REL`).
fn kernel_release(platform: &Path) -> Result<String> {
    let text = std::fs::read_to_string(platform.join("version"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("kernel "))
        .map(|r| r.trim().to_string())
        .with_context(|| format!("{}: no `kernel RELEASE` line", platform.join("version").display()))
}

/// The built platform's `etc/os-release` with `VERSION_ID` and `PRETTY_NAME` of `version`.
fn os_release(platform: &Path, version: &str) -> Result<String> {
    let entries = initramfs::read(&read(&platform.join("initrd.img"))?)?;
    let text = entries
        .iter()
        .find(|e| e.path == "etc/os-release")
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .context("the platform's initrd has no etc/os-release")?;
    with_version(&text, version)
}

fn with_version(os_release: &str, version: &str) -> Result<String> {
    let mut replaced = 0;
    let lines: Vec<String> = os_release
        .lines()
        .map(|line| {
            if line.starts_with("VERSION_ID=") {
                replaced += 1;
                format!("VERSION_ID={version}")
            } else if line.starts_with("PRETTY_NAME=") {
                replaced += 1;
                format!("PRETTY_NAME=\"Ramkey {version}\"")
            } else {
                line.to_string()
            }
        })
        .collect();
    anyhow::ensure!(
        replaced == 2,
        "os-release has no VERSION_ID= or PRETTY_NAME= line:\n{os_release}"
    );
    Ok(lines.join("\n") + "\n")
}

/// The archive path of `module`'s file (`lib/modules/REL/kernel/fs/overlayfs/overlay.ko`):
/// the file named `MODULE.ko` (maybe compressed), `-` and `_` alike, as modprobe names them.
fn module_path(initrd: &[u8], module: &str) -> Result<String> {
    let want = module.replace('-', "_");
    let entries = initramfs::read(initrd)?;
    // Most modules are in the packed platform, merged under the initramfs's own files.
    let mut paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
    if let Some(image) = entries.iter().find(|e| e.path == packed::IMAGE) {
        paths.extend(packed::list(&image.data)?);
    }
    let found: Vec<&str> = paths
        .iter()
        .map(String::as_str)
        .filter(|p| p.starts_with("lib/modules/"))
        .filter(|p| {
            let file = p.rsplit('/').next().unwrap_or_default();
            let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .find_map(|ext| file.strip_suffix(ext));
            stem.is_some_and(|s| s.replace('-', "_") == want)
        })
        .collect();
    match found[..] {
        [one] => Ok(one.to_string()),
        [] => anyhow::bail!("the platform's initrd has no module {module}"),
        _ => anyhow::bail!("the platform's initrd has module {module} more than once: {found:?}"),
    }
}

/// `initrd` with `extra` appended as an uncompressed newc segment. The kernel takes a cpio
/// segment after a compressed one only at an offset that is a multiple of 4
/// (`init/initramfs.c`), so zeros pad to it (it skips zeros between segments).
fn appended(initrd: &[u8], extra: &Tree) -> Result<Vec<u8>> {
    let mut out = initrd.to_vec();
    initramfs::append_uncompressed(&mut out, extra, artifacts::source_date_epoch())?;
    Ok(out)
}

/// `len` bytes that are not an initramfs: no compression magic, no `070701`, no zero start.
fn junk(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x5241_4d4b; // "RAMK"
    let mut out: Vec<u8> = b"JUNK, NOT AN INITRAMFS\n".to_vec();
    while out.len() < len {
        // xorshift32: fixed bytes, the same every build.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_takes_the_version() {
        let built =
            "NAME=Ramkey\nID=ramkey\nVERSION_ID=0.1.0\nPRETTY_NAME=\"Ramkey 0.1.0\"\nRAMKEY_KERNEL=6.1.0-57-amd64\n";
        assert_eq!(
            with_version(built, "0.2.0").unwrap(),
            "NAME=Ramkey\nID=ramkey\nVERSION_ID=0.2.0\nPRETTY_NAME=\"Ramkey 0.2.0\"\nRAMKEY_KERNEL=6.1.0-57-amd64\n"
        );
        assert!(with_version("NAME=Ramkey\n", "0.2.0").is_err());
    }

    #[test]
    fn the_appended_segment_replaces_files_and_starts_4_byte_aligned() {
        let mut base = Tree::new();
        base.file("etc/os-release", "VERSION_ID=0.1.0\n", 0o644);
        base.file(
            "lib/modules/6.1.0-57-amd64/kernel/fs/overlayfs/overlay.ko",
            vec![1; 99],
            0o644,
        );
        let initrd = initramfs::write(&base, 0, initramfs::Compression::Gzip).unwrap();
        assert_eq!(
            module_path(&initrd, "overlay").unwrap(),
            "lib/modules/6.1.0-57-amd64/kernel/fs/overlayfs/overlay.ko"
        );
        assert!(module_path(&initrd, "macvlan").is_err());
        let mut extra = Tree::new();
        extra.file("etc/os-release", "VERSION_ID=0.2.0\n", 0o644);
        let out = appended(&initrd, &extra).unwrap();
        let start = initrd.len().next_multiple_of(4);
        assert!(out[initrd.len()..start].iter().all(|b| *b == 0));
        assert_eq!(&out[start..start + 6], b"070701");
        assert_eq!(&out[..initrd.len()], &initrd[..]);
    }

    #[test]
    fn junk_is_fixed_and_no_initramfs() {
        let j = junk(256 << 10);
        assert_eq!((j.len(), j == junk(256 << 10)), (256 << 10, true));
        assert!(!j.starts_with(b"070701") && !j.starts_with(&[0x1f, 0x8b]) && j[0] != 0);
    }
}

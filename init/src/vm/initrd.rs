//! The guest's initramfs, made by the launcher at each VM start: this very binary as
//! `/init` (which `ramkey_guest=1` on the kernel command line puts in guest mode, [`super::guest`]) and the
//! modules the guest loads, with their dependencies and a `modules.dep`/`modules.alias` for
//! just those, all taken from the box's own `/lib/modules` (the guest boots the box's
//! kernel, so they fit). Uncompressed: the VMM copies it into guest memory as it is.

use std::io::Write;
use std::path::Path;

use crate::devices::modules::{ModuleIndex, module_name};

/// What the guest carries: the virtio devices' drivers (loaded by their modaliases), and
/// what it loads by name ([`LOADED_BY_NAME`]). `crc32c_generic` is ext4's soft dependency,
/// which `modules.dep` does not list and a guest without `modprobe` cannot ask for later.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "crc32c_generic",
    "squashfs",
    "overlay",
    "ext4",
];

/// What the guest loads by name, in this order, before it mounts its disks.
pub const LOADED_BY_NAME: &[&str] = &["crc32c_generic", "squashfs", "overlay", "ext4"];

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// Writes the archive to `out`: `init` (the bytes of `init_binary`) and the modules of
/// `GUEST_MODULES` (those the kernel has built in are not in the index and are skipped)
/// from `modules_dir` (`/lib/modules/RELEASE`), under `lib/modules/RELEASE`.
pub fn write(init_binary: &Path, modules_dir: &Path, release: &str, out: impl Write) -> std::io::Result<()> {
    let index = ModuleIndex::load(modules_dir).map_err(std::io::Error::other)?;
    let mut wanted: Vec<String> = Vec::new();
    for name in GUEST_MODULES.iter().filter(|n| index.get(n).is_some()) {
        for module in index.load_order(name).map_err(std::io::Error::other)? {
            if !wanted.contains(&module) {
                wanted.push(module);
            }
        }
    }
    let mut archive = Archive { out, ino: 0 };
    let base = format!("lib/modules/{release}");
    for dir in ["dev", "proc", "sys", "run", "tmp", "lib", "lib/modules", base.as_str()] {
        archive.entry(dir, S_IFDIR | 0o755, &[])?;
    }
    archive.entry("init", S_IFREG | 0o755, &std::fs::read(init_binary)?)?;
    let mut made = std::collections::BTreeSet::new();
    let mut dep = String::new();
    for name in &wanted {
        let entry = index
            .get(name)
            .ok_or_else(|| std::io::Error::other(format!("module {name} vanished")))?;
        let path = entry.path.to_string_lossy().into_owned();
        let mut parent = Path::new(&path).parent();
        let mut parents = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            parents.push(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
        for p in parents.iter().rev() {
            if made.insert(p.clone()) {
                archive.entry(&format!("{base}/{p}"), S_IFDIR | 0o755, &[])?;
            }
        }
        archive.entry(
            &format!("{base}/{path}"),
            S_IFREG | 0o644,
            &std::fs::read(modules_dir.join(&path))?,
        )?;
        let deps: Vec<String> = entry
            .deps
            .iter()
            .filter_map(|d| index.get(d).map(|e| e.path.to_string_lossy().into_owned()))
            .collect();
        dep.push_str(&format!("{path}: {}\n", deps.join(" ")));
    }
    let alias_text = std::fs::read_to_string(modules_dir.join("modules.alias"))?;
    let alias: String = alias_text
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|m| wanted.contains(&module_name(m)))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    archive.entry(&format!("{base}/modules.dep"), S_IFREG | 0o644, dep.as_bytes())?;
    archive.entry(&format!("{base}/modules.alias"), S_IFREG | 0o644, alias.as_bytes())?;
    cpio::newc::trailer(archive.out)?;
    Ok(())
}

struct Archive<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Archive<W> {
    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.ino += 1;
        let size = u32::try_from(data.len()).map_err(|_| std::io::Error::other(format!("{path}: too large")))?;
        let mut writer = cpio::newc::Builder::new(path)
            .ino(self.ino)
            .mode(mode)
            .nlink(if mode & S_IFDIR != 0 { 2 } else { 1 })
            .write(&mut self.out, size);
        writer.write_all(data)?;
        writer.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_has_init_the_modules_and_their_index_only() {
        let dir = tempfile::tempdir().unwrap();
        let modules = dir.path().join("lib/modules/6.1.0-test");
        std::fs::create_dir_all(modules.join("kernel/fs")).unwrap();
        for m in ["ext4", "jbd2", "btrfs"] {
            std::fs::write(modules.join(format!("kernel/fs/{m}.ko")), m).unwrap();
        }
        std::fs::write(
            modules.join("modules.dep"),
            "kernel/fs/ext4.ko: kernel/fs/jbd2.ko\nkernel/fs/jbd2.ko:\nkernel/fs/btrfs.ko:\n",
        )
        .unwrap();
        std::fs::write(
            modules.join("modules.alias"),
            "alias fs-ext4 ext4\nalias fs-btrfs btrfs\n",
        )
        .unwrap();
        let init = dir.path().join("init");
        std::fs::write(&init, b"\x7fELF").unwrap();
        let mut out = Vec::new();
        write(&init, &modules, "6.1.0-test", &mut out).unwrap();

        let mut files = std::collections::BTreeMap::new();
        let mut rest = std::io::Cursor::new(out);
        loop {
            let mut entry = cpio::newc::Reader::new(rest).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            let name = entry.entry().name().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            files.insert(name, String::from_utf8_lossy(&data).into_owned());
            rest = entry.finish().unwrap();
        }
        assert_eq!(files["init"], "\x7fELF");
        let base = "lib/modules/6.1.0-test";
        assert_eq!(files[&format!("{base}/kernel/fs/ext4.ko")], "ext4");
        assert!(files.contains_key(&format!("{base}/kernel/fs/jbd2.ko")));
        assert!(!files.contains_key(&format!("{base}/kernel/fs/btrfs.ko")));
        assert_eq!(
            files[&format!("{base}/modules.dep")],
            "kernel/fs/jbd2.ko: \nkernel/fs/ext4.ko: kernel/fs/jbd2.ko\n"
        );
        assert_eq!(files[&format!("{base}/modules.alias")], "alias fs-ext4 ext4\n");
    }
}

//! The floor: the same kernel with an initramfs whose `/init` (a ~2 KB static ELF built from
//! `floor_init.rs` with `rustc`) logs a marker and the memory figures, then powers off.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use ramkey_builder::initramfs::{self, Compression};
use ramkey_builder::records::Tree;

use super::peers::{self, fingerprint};
use crate::artifacts::workspace_root;

const SOURCE: &str = include_str!("floor_init.rs");

/// Compiles the floor's init (cached by its source) and writes its initramfs.
pub fn build(cache: &Path, epoch: u32) -> Result<PathBuf> {
    let key = fingerprint(&[SOURCE.as_bytes()]);
    let dir = cache.join(format!("floor-{key}"));
    let initrd = dir.join("initrd.img");
    if initrd.exists() {
        return Ok(initrd);
    }
    std::fs::create_dir_all(&dir)?;
    let src = dir.join("floor_init.rs");
    let bin = dir.join("init");
    std::fs::write(&src, SOURCE)?;
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // Run from the workspace so rust-toolchain.toml picks the project's toolchain.
    peers::run(
        Command::new(rustc)
            .current_dir(workspace_root())
            .args(["--edition", "2024", "--target", "x86_64-unknown-linux-gnu"])
            .args([
                "-C",
                "opt-level=s",
                "-C",
                "panic=abort",
                "-C",
                "relocation-model=static",
            ])
            .args(["-C", "target-feature=+crt-static", "-C", "strip=symbols"])
            .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
            .args(["-C", "link-arg=-static", "-C", "link-arg=-Wl,--build-id=none"])
            .arg("-o")
            .arg(&bin)
            .arg(&src),
    )?;
    let mut tree = Tree::new();
    peers::add_dev_nodes(&mut tree);
    tree.dir("proc", 0o755);
    tree.file("init", std::fs::read(&bin)?, 0o755);
    std::fs::write(&initrd, initramfs::write(&tree, epoch, Compression::Gzip)?)?;
    Ok(initrd)
}

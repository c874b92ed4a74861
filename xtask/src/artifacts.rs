//! Build artifacts the workflows and boot tests share: the static init and the platform,
//! built with the builder library into `target/ramkey/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use ramkey_builder::initramfs::Compression;
use ramkey_builder::kernel::{self, Kernel, KernelSource};
use ramkey_builder::{modules, platform};

/// The triple the static init is built for (see FACTS: without `--target`, proc macros fail).
const INIT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd.env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd
}

/// Builds the static PID 1 and returns its path.
pub fn build_init() -> Result<PathBuf> {
    let status = cargo()
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "ramkey-init",
            "--target",
            INIT_TARGET,
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the static init failed ({status})");
    }
    Ok(target_dir().join(INIT_TARGET).join("release/init"))
}

/// The kernel: `RAMKEY_KERNEL_DEB` if set, else the newest bookworm 6.1 package from apt.
pub fn kernel() -> Result<Kernel> {
    let source = std::env::var_os("RAMKEY_KERNEL_DEB").map_or(KernelSource::Apt, |p| KernelSource::Deb(p.into()));
    kernel::obtain(&source, &kernel::cache_dir()).context("getting the Debian kernel (needed by every boot test)")
}

/// `SOURCE_DATE_EPOCH`: the environment's, else the last commit's time, else 0.
pub fn source_date_epoch() -> u32 {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return v;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds the platform into `out` (`vmlinuz`, `initrd.img`, ...) and returns `out`.
pub fn build_platform(out: &Path, compression: Compression) -> Result<PathBuf> {
    let init = build_init()?;
    let kernel = kernel()?;
    let epoch = source_date_epoch();
    let overlay = workspace_root().join("rootfs-overlay");
    let inputs = platform::Inputs {
        kernel: &kernel,
        init: &init,
        overlay: Some(&overlay),
        modules: modules::DEFAULT_MODULES
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect(),
        epoch,
    };
    let tree = platform::assemble(&inputs)?;
    platform::write(out, &kernel, &tree, epoch, compression)?;
    Ok(out.to_path_buf())
}

/// The default platform under `target/ramkey/platform`, built once per process.
pub fn platform() -> Result<PathBuf> {
    static PLATFORM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            build_platform(&target_dir().join("ramkey/platform"), Compression::Gzip).map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("building the platform: {e}"))
}

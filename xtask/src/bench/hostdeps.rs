//! Host packages only the bench needs (the FAT tools, mmdebstrap), installed with apt-get
//! when running as root on Debian, like `crate::deps` does for QEMU.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A package and a file that proves it is installed.
const PACKAGES: &[(&str, &str)] = &[
    ("dosfstools", "/usr/sbin/mkfs.vfat"),
    ("mtools", "/usr/bin/mcopy"),
    ("mmdebstrap", "/usr/bin/mmdebstrap"),
];

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Installs what is missing of `wanted` (package names from the table above).
pub fn ensure(wanted: &[&str]) -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(name, provides)| wanted.contains(name) && !Path::new(provides).exists())
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "the bench needs host packages: {0}\nas root on Debian 12: apt-get install {0}",
            missing.join(" ")
        );
    }
    eprintln!("bench: installing host packages: {}", missing.join(" "));
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!(
            "apt-get install {} failed ({status}); try `apt-get update` first",
            missing.join(" ")
        );
    }
    Ok(())
}

//! The tasks behind `cargo xtask ...`.

use std::process::Command;

use anyhow::{Result, bail};

use crate::artifacts::{self, workspace_root};
use crate::{deps, qemu};

fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// fmt check, clippy, unit tests, then the platform and boot tests.
pub fn test() -> Result<()> {
    deps::ensure()?;
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Unit tier: every crate's own tests, no QEMU.
    run("cargo", &["test", "--workspace", "--exclude", "xtask"])?;
    run("cargo", &["test", "-p", "xtask", "--lib"])?;
    // Boot tier: builds the platform from the real kernel and boots it under QEMU.
    run("cargo", &["test", "-p", "xtask", "--tests", "--", "--test-threads=2"])?;
    Ok(())
}

/// Builds the platform and boots it on this terminal.
pub fn demo() -> Result<()> {
    deps::ensure()?;
    let platform = artifacts::platform()?;
    eprintln!(
        "xtask: booting {} under QEMU ({}).\n  Ctrl-a x quits; Ctrl-a c toggles the QEMU monitor, where `system_powerdown` presses the power button.",
        platform.display(),
        qemu::accel()
    );
    let status = Command::new(qemu::QEMU)
        .args([
            "-accel",
            &qemu::accel(),
            "-M",
            "q35",
            "-cpu",
            "max",
            "-m",
            "1024",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-serial", "mon:stdio", "-no-reboot"])
        .args(["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"])
        .arg("-kernel")
        .arg(platform.join("vmlinuz"))
        .arg("-initrd")
        .arg(platform.join("initrd.img"))
        .args(["-append", "console=ttyS0 panic=-1"])
        .status()?;
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(())
}

//! The tasks behind `cargo xtask ...`.

use std::process::Command;

use anyhow::{Result, bail};

use crate::artifacts::{self, workspace_root};
use ramkey_builder::run::{self, Boot, RunOptions};

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

/// Builds the demo appliance and boots its stick image on this terminal (`ramkey run`).
pub fn demo() -> Result<()> {
    deps::ensure()?;
    let image = artifacts::usb_copy("demo")?;
    let mut opts = RunOptions::new(Boot::Usb { image });
    opts.accel = qemu::accel();
    eprintln!("{}", run::banner(&opts));
    let status = run::command(&opts)?.status()?;
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(())
}

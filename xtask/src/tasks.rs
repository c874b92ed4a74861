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

/// Builds the demo appliance and boots its stick image on this terminal (`ramkey run`), with
/// the `web` personality in a zone at 10.0.2.16 and a pool disk kept between demos.
pub fn demo() -> Result<()> {
    deps::ensure()?;
    let image = artifacts::usb_copy("demo")?;
    let web = artifacts::personality("web")?;
    let (_, trusted) = artifacts::test_key()?;
    let dir = artifacts::target_dir().join("ramkey/run");
    let config = dir.join("demo.config.toml");
    std::fs::write(&config, demo_config(&trusted))?;
    let fat = format!("{}@@1048576", image.display());
    for (file, dest) in [(&web, "::/personalities/web.rkimg"), (&config, "::/config.toml")] {
        let file = file.to_string_lossy();
        run("mcopy", &["-o", "-i", &fat, &file, dest])?;
    }
    let pool = dir.join("demo.pool.img");
    if !pool.exists() {
        std::fs::File::create(&pool)?.set_len(1 << 30)?;
        run("mkfs.ext4", &["-q", "-L", "ramkey-pool", &pool.to_string_lossy()])?;
    }
    let mut opts = RunOptions::new(Boot::Usb { image });
    opts.accel = qemu::accel();
    opts.pool = Some(pool);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    opts.forwards = vec![run::Forward {
        host: port,
        guest: 80,
        address: Some(std::net::Ipv4Addr::new(10, 0, 2, 16)),
    }];
    eprintln!("{}", run::banner(&opts));
    eprintln!("the web personality answers at http://127.0.0.1:{port}/ once `zone web: up` shows on the console");
    let status = run::command(&opts)?.status()?;
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(())
}

/// The demo's usbkey config: DHCP on the admin NIC, the web zone at a static address.
fn demo_config(trusted: &str) -> String {
    format!(
        "version = 1\nhostname = \"demo\"\n\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n\n\
         [images]\ntrusted_keys = [\"{trusted}\"]\n\n[[personality]]\nname = \"web\"\n\
         image = \"personalities/web.rkimg\"\nnic = \"admin\"\nip = \"10.0.2.16/24\"\ngateway = \"10.0.2.2\"\n"
    )
}

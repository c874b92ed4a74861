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
    // Boot tier: builds the platform from the real kernel and boots it under QEMU, every
    // boot test in its own process, two at a time.
    crate::suite::run()
}

/// Builds the demo appliance and boots its stick image on this terminal (`ramkey run`), with
/// the `web` personality in a zone at 10.0.2.16, `office` (DNS) at 10.0.2.17 and a pool disk
/// kept between demos.
pub fn demo() -> Result<()> {
    deps::ensure()?;
    let demo = Demo::prepare("demo", false)?;
    eprintln!("{}", run::banner(&demo.opts));
    eprintln!("once `zone web: ... came up` shows on the console:");
    eprintln!("  the web personality answers at http://127.0.0.1:{}/", demo.http);
    eprintln!(
        "  office answers DNS (over TCP): {}",
        demo.dig("web.office.lan").join(" ")
    );
    let status = run::command(&demo.opts)?.status()?;
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(())
}

/// The demo appliance, ready to boot (the zones boot test boots it too).
#[derive(Debug)]
pub struct Demo {
    /// The stick with `web`, `office` and the demo's config, its pool disk and the forwards.
    pub opts: RunOptions,
    /// The host port that reaches `web`'s HTTP.
    pub http: u16,
    /// The host port that reaches `office`'s DNS (TCP).
    pub dns: u16,
}

impl Demo {
    /// Writes the stick (`target/ramkey/run/NAME.img`) and, when missing or when `fresh`, an
    /// empty pool disk next to it (`NAME.pool.img`).
    pub fn prepare(name: &str, fresh: bool) -> Result<Demo> {
        let image = artifacts::usb_copy(name)?;
        let web = artifacts::personality("web")?;
        let office = artifacts::personality("office")?;
        let (_, trusted) = artifacts::test_key()?;
        let dir = artifacts::target_dir().join("ramkey/run");
        let config = dir.join(format!("{name}.config.toml"));
        std::fs::write(&config, demo_config(&trusted))?;
        artifacts::put_on_stick(
            &image,
            &[
                (&web, "::/personalities/web.rkimg"),
                (&office, "::/personalities/office.rkimg"),
                (&config, "::/config.toml"),
            ],
        )?;
        let pool = dir.join(format!("{name}.pool.img"));
        let pool = if fresh || !pool.exists() {
            artifacts::empty_pool(name)?
        } else {
            pool
        };
        let mut opts = RunOptions::new(Boot::Usb { image });
        opts.accel = qemu::accel();
        opts.pool = Some(pool);
        let free = || -> Result<u16> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
        let (http, dns) = (free()?, free()?);
        opts.forwards = vec![
            run::Forward {
                host: http,
                guest: 80,
                address: Some(std::net::Ipv4Addr::new(10, 0, 2, 16)),
            },
            run::Forward {
                host: dns,
                guest: 53,
                address: Some(std::net::Ipv4Addr::new(10, 0, 2, 17)),
            },
        ];
        Ok(Demo { opts, http, dns })
    }

    /// The `dig` command line that asks `office` for `name` through the forward.
    pub fn dig(&self, name: &str) -> Vec<String> {
        let port = self.dns.to_string();
        ["dig", "+tcp", "-p", &port, "@127.0.0.1", name]
            .map(String::from)
            .to_vec()
    }
}

/// The demo's usbkey config: DHCP on the admin NIC, the web and office zones at static
/// addresses. office's DHCP range (its default, 192.168.1.100-200) is off this network, so it
/// only answers DNS here and leaves QEMU's DHCP alone.
fn demo_config(trusted: &str) -> String {
    format!(
        r#"version = 1
hostname = "demo"

[[nic]]
tag = "admin"
name = "eth0"
ip = "dhcp"

[images]
trusted_keys = ["{trusted}"]

[[personality]]
name = "web"
image = "personalities/web.rkimg"
nic = "admin"
ip = "10.0.2.16/24"
gateway = "10.0.2.2"

[[personality]]
name = "office"
image = "personalities/office.rkimg"
nic = "admin"
ip = "10.0.2.17/24"
gateway = "10.0.2.2"

[personality.settings]
hosts = "web=10.0.2.16"
"#
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_config_is_valid() {
        let (_, trusted) = crate::artifacts::test_key().unwrap();
        let config = ramkey_config::Config::parse(&super::demo_config(&trusted), "demo.config.toml").unwrap();
        let names: Vec<&str> = config.personalities.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "office"]);
    }
}

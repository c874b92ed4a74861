//! Host packages the workflows need: checked by the files they provide, installed with
//! apt-get when running as root on Debian, otherwise the exact command is printed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A host package and a file that proves it is installed.
struct Package {
    name: &'static str,
    provides: &'static str,
    /// Taken from bookworm-backports (to match the preinstalled qemu-utils 10.0).
    backports: bool,
    /// Installed without its recommends (which would run daemons the tests do not want).
    bare: bool,
}

/// (package, a file it provides, from bookworm-backports?)
const PACKAGES: &[Package] = &[
    pkg("qemu-system-x86", "/usr/bin/qemu-system-x86_64", true),
    pkg("seabios", "/usr/share/seabios/bios-256k.bin", false),
    pkg("ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd", false),
    pkg("ipxe-qemu", "/usr/lib/ipxe/qemu/efi-virtio.rom", false),
    // Boot media: FAT, boot loaders.
    pkg("dosfstools", "/usr/sbin/mkfs.vfat", false),
    pkg("mtools", "/usr/bin/mcopy", false),
    pkg("syslinux", "/usr/bin/syslinux", false),
    pkg("syslinux-common", "/usr/lib/syslinux/mbr/gptmbr.bin", false),
    pkg("pxelinux", "/usr/lib/PXELINUX/pxelinux.0", false),
    pkg(
        "systemd-boot-efi",
        "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
        false,
    ),
    // Personality images (`ramkey image build`) and the systemd peer of the bench.
    pkg("mmdebstrap", "/usr/bin/mmdebstrap", false),
    pkg("squashfs-tools", "/usr/bin/mksquashfs", false),
    // Pool tests read the pool disk on the host; supervisor tests hash a console password.
    pkg("e2fsprogs", "/usr/sbin/debugfs", false),
    // The pool test reads the btrfs mirror's chunk profiles from its disks.
    pkg("btrfs-progs", "/usr/bin/btrfs", false),
    pkg("openssl", "/usr/bin/openssl", false),
    // The remote tests log in with `ssh` and copy with `sftp`; `ramkey push` uses them too.
    pkg("openssh-client", "/usr/bin/ssh", false),
    // The remote test resolves its image repository's name through a DNS server on the host.
    pkg("dnsmasq-base", "/usr/sbin/dnsmasq", false),
    // The vm test copies the host's `ip` into its outer guest: busybox's cannot set a
    // macvtap's mode.
    pkg("iproute2", "/sbin/ip", false),
    // The demo test asks office's DNS with `dig`, as the demo tells people to.
    pkg("bind9-dnsutils", "/usr/bin/dig", false),
    // The observe test checks the box's metrics with `promtool check metrics`. Without its
    // recommends: they are node_exporter, a daemon on port 9100.
    Package {
        bare: true,
        ..pkg("prometheus", "/usr/bin/promtool", false)
    },
];

const fn pkg(name: &'static str, provides: &'static str, backports: bool) -> Package {
    Package {
        name,
        provides,
        backports,
        bare: false,
    }
}

/// The apt-get commands that install every package.
fn by_hand() -> String {
    let names = |backports: bool, bare: bool| {
        let names: Vec<&str> = PACKAGES
            .iter()
            .filter(|p| p.backports == backports && p.bare == bare)
            .map(|p| p.name)
            .collect();
        names.join(" ")
    };
    format!(
        "apt-get install --no-install-recommends -t bookworm-backports {} && apt-get install {} && \
         apt-get install --no-install-recommends {}",
        names(true, false),
        names(false, false),
        names(false, true)
    )
}

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/ramkey-backports.sources";

/// Makes sure every host package is there; installs what is missing when it can.
pub fn ensure() -> Result<()> {
    let missing: Vec<&Package> = PACKAGES.iter().filter(|p| !Path::new(p.provides).exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    let is_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !is_root || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "missing host packages: {}\nas root on Debian 12, run:\n  cargo xtask deps\n\
             or by hand: add a bookworm-backports apt source, then\n  {}",
            names.join(" "),
            by_hand()
        );
    }
    eprintln!("xtask: installing host packages: {}", names.join(" "));
    if missing.iter().any(|p| p.backports) {
        add_backports_source()?;
    }
    apt(&["update", "-q"])?;
    let (back, main): (Vec<&Package>, Vec<&Package>) = missing.iter().partition(|p| p.backports);
    if !back.is_empty() {
        // QEMU's recommends are its desktop front-ends (GTK, SDL, spice, gstreamer); the
        // firmware it needs is in the list itself.
        let mut args = vec![
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
        ];
        args.extend(back.iter().map(|p| p.name));
        apt(&args)?;
    }
    let (bare, main): (Vec<&Package>, Vec<&Package>) = main.iter().partition(|p| p.bare);
    if !main.is_empty() {
        let mut args = vec!["install", "-y", "-q"];
        args.extend(main.iter().map(|p| p.name));
        apt(&args)?;
    }
    if !bare.is_empty() {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(bare.iter().map(|p| p.name));
        apt(&args)?;
    }
    Ok(())
}

fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Adds bookworm-backports by copying the machine's own Debian source entry, so that no
/// mirror name is written into this repository.
fn add_backports_source() -> Result<()> {
    if Path::new(BACKPORTS_SOURCE).exists() {
        return Ok(());
    }
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    let text = if deb822.exists() {
        backports_from_deb822(&std::fs::read_to_string(deb822)?)
    } else {
        backports_from_list(&std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default())
    };
    let Some(text) = text else {
        bail!("no Debian bookworm entry in the apt sources to derive bookworm-backports from; add it by hand");
    };
    std::fs::write(BACKPORTS_SOURCE, text).with_context(|| format!("writing {BACKPORTS_SOURCE}"))
}

/// The deb822 stanza that has suite `bookworm`, with its suites replaced by backports.
pub fn backports_from_deb822(sources: &str) -> Option<String> {
    sources.split("\n\n").find_map(|stanza| {
        let has_bookworm = stanza.lines().any(|l| {
            l.strip_prefix("Suites:")
                .is_some_and(|s| s.split_whitespace().any(|s| s == "bookworm"))
        });
        has_bookworm.then(|| {
            let lines: Vec<String> = stanza
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    if l.starts_with("Suites:") {
                        "Suites: bookworm-backports".into()
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            lines.join("\n") + "\n"
        })
    })
}

/// The same for one-line `sources.list` entries, written out in deb822 form.
pub fn backports_from_list(list: &str) -> Option<String> {
    list.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["deb", url, "bookworm", components @ ..] if !url.starts_with('[') => Some(format!(
                "Types: deb\nURIs: {url}\nSuites: bookworm-backports\nComponents: {}\n",
                components.join(" ")
            )),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_by_hand_name_every_package() {
        let commands = by_hand();
        assert!(commands.starts_with(
            "apt-get install --no-install-recommends -t bookworm-backports qemu-system-x86 && apt-get install seabios "
        ));
        for p in PACKAGES {
            assert!(
                commands.contains(&format!(" {} ", p.name)) || commands.ends_with(p.name),
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn derives_backports_from_the_machine_source() {
        let src = "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\n\
                   Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let out = backports_from_deb822(src).unwrap();
        assert_eq!(
            out,
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /k.gpg\n"
        );
        let list = "deb http://mirror.invalid/debian bookworm main contrib\n";
        assert!(
            backports_from_list(list)
                .unwrap()
                .contains("Suites: bookworm-backports\nComponents: main contrib")
        );
        assert_eq!(backports_from_deb822("Suites: bullseye\n"), None);
    }
}

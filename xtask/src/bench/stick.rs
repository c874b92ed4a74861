//! The `ramkey-stick` system: the `usb.img` that `ramkey build` writes, booted as `ramkey
//! run` boots a stick (a USB disk on an xHCI controller under SeaBIOS: the machine of
//! `ramkey_builder::run::machine_args`), with the same job as `ramkey-platform`: the stick's
//! `config.toml` replaced by the bench's and the two platform services in `services.d/`.
//! The kernel command line is the stick's own, from its boot loader's config.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use ramkey_builder::kernel::Kernel;
use ramkey_builder::run::{Boot, Forward, RunOptions};

use super::peers::{RAMKEY_CONFIG, ramkey_services};
use crate::artifacts::{self, put_on_stick, stick_mtools};
use crate::qemu::Spec;

/// The configured stick, ready to be copied for each run.
#[derive(Debug, Clone)]
pub struct Stick {
    /// The configured copy of `usb.img`; never booted itself.
    pub image: PathBuf,
    /// Bytes of what the boot loader's default entry loads besides the kernel (its initrds).
    pub size: u64,
    /// The default entry's kernel command line, from `syslinux/syslinux.cfg`.
    pub cmdline: String,
}

/// Copies the built `usb.img` into `dir` (sparse), puts the bench's config and services on
/// it, and reads what its boot loader boots. The config is also the stick's last good
/// config (`config.toml.good`), as on a stick that has booted once, so that every run is an
/// ordinary boot that writes nothing to it. Fails if the stick's kernel is not `kernel`
/// (the report says every system boots the same one).
pub fn prepare(dir: &Path, kernel: &Kernel) -> Result<Stick> {
    std::fs::create_dir_all(dir)?;
    let usb = artifacts::appliance()?.join("usb.img");
    let image = dir.join("stick.img");
    copy_sparse(&usb, &image)?;

    let config = dir.join("config.toml");
    std::fs::write(&config, RAMKEY_CONFIG)?;
    let mut files: Vec<(PathBuf, String)> = vec![
        (config.clone(), "::/config.toml".into()),
        (config, "::/config.toml.good".into()),
    ];
    for (name, text) in ramkey_services() {
        let staged = dir.join(name);
        std::fs::write(&staged, text)?;
        files.push((staged, format!("::/services.d/{name}")));
    }
    let files: Vec<(&Path, &str)> = files.iter().map(|(p, d)| (p.as_path(), d.as_str())).collect();
    put_on_stick(&image, &files)?;

    let cfg = read_from_stick(&image, "syslinux/syslinux.cfg", &dir.join("syslinux.cfg"))?;
    let entry = default_entry(&String::from_utf8_lossy(&cfg))
        .with_context(|| format!("no default entry in {}'s syslinux/syslinux.cfg", usb.display()))?;
    let vmlinuz = read_from_stick(&image, &entry.kernel, &dir.join("vmlinuz"))?;
    ensure!(
        vmlinuz == std::fs::read(&kernel.vmlinuz)?,
        "the stick's {} is not the bench's kernel {}: rebuild the appliance",
        entry.kernel,
        kernel.vmlinuz.display()
    );
    let mut size = 0;
    for initrd in &entry.initrds {
        size += read_from_stick(&image, initrd, &dir.join("initrd"))?.len() as u64;
    }
    Ok(Stick {
        image,
        size,
        cmdline: entry.append,
    })
}

/// The machine for one run: a fresh copy of the configured `image` (so that no run sees
/// what an earlier one wrote) on the USB disk `ramkey run` gives a stick, and the forward
/// from `port` to the box's port 80.
pub fn spec(name: &str, image: &Path, port: u16) -> Result<Spec> {
    let copy = image.with_extension("run.img");
    copy_sparse(image, &copy)?;
    let mut opts = RunOptions::new(Boot::Usb { image: copy });
    opts.state_dir = image.parent().map(|d| d.join("state"));
    opts.forwards = vec![Forward {
        host: port,
        guest: 80,
        address: None,
    }];
    Spec::run(name, &opts)
}

fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_file(to);
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()
        .context("running cp")?;
    ensure!(
        status.success(),
        "copying {} to {} failed",
        from.display(),
        to.display()
    );
    Ok(())
}

/// The bytes of `path` (from the FAT's root) on the stick `image`, by way of `staged`.
fn read_from_stick(image: &Path, path: &str, staged: &Path) -> Result<Vec<u8>> {
    let _ = std::fs::remove_file(staged);
    let from = format!("::/{}", path.trim_start_matches('/'));
    if !stick_mtools("mcopy", image, &[&from, &staged.to_string_lossy()])? {
        bail!("cannot read {from} from {}", image.display());
    }
    std::fs::read(staged).with_context(|| format!("reading {}", staged.display()))
}

/// What syslinux boots by default: kernel, initrds and command line.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kernel: String,
    initrds: Vec<String>,
    append: String,
}

/// The `DEFAULT` label's entry of a `syslinux.cfg` (`INITRD` may list several files,
/// separated by commas).
fn default_entry(cfg: &str) -> Option<Entry> {
    let directive = |line: &str| -> Option<(String, String)> {
        let (key, value) = line.trim().split_once(char::is_whitespace)?;
        Some((key.to_ascii_uppercase(), value.trim().to_string()))
    };
    let default = cfg.lines().filter_map(directive).find(|(k, _)| k == "DEFAULT")?.1;
    let mut entry: Option<Entry> = None;
    let mut in_default = false;
    for (key, value) in cfg.lines().filter_map(directive) {
        match key.as_str() {
            "LABEL" => in_default = value == default,
            "LINUX" | "KERNEL" if in_default => {
                entry = Some(Entry {
                    kernel: value,
                    initrds: Vec::new(),
                    append: String::new(),
                });
            }
            "INITRD" if in_default => {
                let e = entry.as_mut()?;
                e.initrds = value.split(',').map(str::to_string).collect();
            }
            "APPEND" if in_default => entry.as_mut()?.append = value,
            _ => {}
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_label_of_a_syslinux_cfg() {
        let cfg = "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT ramkey-b\n\n\
                   LABEL ramkey-a\n  LINUX /platform/a/vmlinuz\n  INITRD /platform/a/initrd.img\n  APPEND console=ttyS0 ramkey.slot=a\n\n\
                   LABEL ramkey-b\n  SAY Booting\n  LINUX /platform/b/vmlinuz\n  INITRD /platform/b/initrd.img,/platform/b/extra.img\n  \
                   APPEND console=tty0 console=ttyS0,115200n8 ramkey.slot=b\n";
        assert_eq!(
            default_entry(cfg),
            Some(Entry {
                kernel: "/platform/b/vmlinuz".into(),
                initrds: vec!["/platform/b/initrd.img".into(), "/platform/b/extra.img".into()],
                append: "console=tty0 console=ttyS0,115200n8 ramkey.slot=b".into(),
            })
        );
        assert_eq!(default_entry("LABEL x\n  LINUX /k\n"), None);
    }
}

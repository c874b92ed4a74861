//! The busybox peer: what an expert writes by hand. busybox-static from Debian's package, a
//! shell `/init` that insmods the job's modules in dependency order, mounts the FAT config
//! disk, sets the address and starts busybox `httpd`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use ramkey_builder::initramfs::{self, Compression};
use ramkey_builder::kernel::Kernel;
use ramkey_builder::records::Tree;

use super::peers::{self, PAGE, fingerprint};

/// Applets the init script calls, linked to `/bin/busybox`.
const APPLETS: &[&str] = &[
    "sh", "mount", "mkdir", "insmod", "ip", "httpd", "sleep", "usleep", "grep", "cat", "poweroff",
];

/// The init script; `@INSMOD@` becomes the module loads.
const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
read up idle < /proc/uptime
echo "<2>bench: init boottime=$up" > /dev/kmsg
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
@INSMOD@
i=0
while [ ! -b /dev/vda ] && [ $i -lt 500 ]; do usleep 10000; i=$((i + 1)); done
mkdir -p /mnt/config
mount -t vfat -o ro /dev/vda /mnt/config
. /mnt/config/config
ip link set lo up
ip link set eth0 up
ip addr add "$ADDRESS" dev eth0
ip route add default via "$GATEWAY"
httpd -p 80 -h /www
echo "<2>bench: serving" > /dev/kmsg
@MEMINFO@
sleep 3; meminfo
sleep 3; meminfo
while :; do sleep 3600; done
"#;

/// The busybox-static package in `cache/debs`, downloaded with apt if missing.
fn busybox_deb(cache: &Path) -> Result<PathBuf> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let find = || -> Result<Option<PathBuf>> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&debs)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("busybox-static_") && name.ends_with(".deb")
            })
            .collect();
        found.sort();
        Ok(found.pop())
    };
    if let Some(deb) = find()? {
        return Ok(deb);
    }
    eprintln!("bench: apt-get download busybox-static");
    peers::run(
        Command::new("apt-get")
            .args(["download", "-q", "busybox-static"])
            .current_dir(&debs),
    )?;
    find()?.context("apt-get download busybox-static left no .deb")
}

/// Builds (or finds in the cache) the busybox initramfs.
pub fn build(cache: &Path, kernel: &Kernel, epoch: u32) -> Result<PathBuf> {
    let deb = busybox_deb(cache)?;
    let deb_name = deb.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let key = fingerprint(&[
        INIT.as_bytes(),
        peers::MEMINFO_SH.as_bytes(),
        PAGE.as_bytes(),
        deb_name.as_bytes(),
        kernel.release.as_bytes(),
        peers::MODULES.join(",").as_bytes(),
    ]);
    let dir = cache.join(format!("busybox-{key}"));
    let initrd = dir.join("initrd.img");
    if initrd.exists() {
        return Ok(initrd);
    }
    let unpacked = dir.join("deb");
    ramkey_builder::deb::unpack(&deb, &unpacked)?;
    let busybox = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| unpacked.join(p))
        .find(|p| p.is_file());
    let Some(busybox) = busybox else {
        bail!("{}: no bin/busybox in the package", deb.display());
    };

    let mut tree = Tree::new();
    peers::add_dev_nodes(&mut tree);
    for d in ["proc", "sys", "mnt", "tmp"] {
        tree.dir(d, 0o755);
    }
    tree.file("bin/busybox", std::fs::read(&busybox)?, 0o755);
    for applet in APPLETS {
        tree.symlink(&format!("bin/{applet}"), "busybox");
    }
    let order = peers::add_modules(&mut tree, kernel, "lib/modules")?;
    let insmod: Vec<String> = order
        .iter()
        .map(|p| format!("insmod /lib/modules/{}/{p}", kernel.release))
        .collect();
    let init = INIT
        .replace("@INSMOD@", &insmod.join("\n"))
        .replace("@MEMINFO@", peers::MEMINFO_SH.trim_end());
    tree.file("init", init, 0o755);
    tree.file("www/index.html", PAGE, 0o644);
    std::fs::write(&initrd, initramfs::write(&tree, epoch, Compression::Gzip)?)?;
    let _ = std::fs::remove_dir_all(&unpacked);
    Ok(initrd)
}

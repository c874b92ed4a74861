//! The systemd peer: what most people would use. A Debian bookworm minbase with systemd,
//! udev, dbus and stock nginx, built by `mmdebstrap` (merged-usr hook) from the host's own
//! apt sources, booted as a RAM root (the whole rootfs is the initramfs, `/init` execs
//! systemd). A small unit reads the address from the FAT config disk. Built once, cached
//! under `target/bench/cache/systemd-<key>/` keyed by everything that goes in.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use ramkey_builder::initramfs::{self, Compression};
use ramkey_builder::kernel::Kernel;
use ramkey_builder::records::Tree;

use super::peers::{self, PAGE, fingerprint};

const SUITE: &str = "bookworm";
const INCLUDE: &str = "systemd,systemd-sysv,udev,kmod,dbus,iproute2,nginx";
const HOOK_DIR: &str = "/usr/share/mmdebstrap/hooks/merged-usr";
/// Documentation is left out, as slim images do: it only makes the peer look bigger.
const EXCLUDES: &[&str] = &["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*"];

/// What the job does not use and a fair peer leaves out of a RAM root: the package
/// managers, their databases and caches, and perl (Essential in minbase for dpkg and
/// debconf). The peer was 46 MB of initramfs with them (docs/performance.md keeps the
/// figure).
const TRIM: &[&str] = &[
    "usr/bin/apt",
    "usr/bin/apt-cache",
    "usr/bin/apt-cdrom",
    "usr/bin/apt-config",
    "usr/bin/apt-get",
    "usr/bin/apt-key",
    "usr/bin/apt-mark",
    "usr/lib/apt",
    "var/lib/apt",
    "var/cache/apt",
    "var/cache/debconf",
    "usr/share/debconf",
    "usr/bin/dpkg",
    "usr/bin/dpkg-deb",
    "usr/bin/dpkg-divert",
    "usr/bin/dpkg-query",
    "usr/bin/dpkg-split",
    "usr/bin/dpkg-statoverride",
    "usr/bin/dpkg-trigger",
    "usr/bin/perl",
    "usr/bin/perl5.36.0",
    "usr/lib/x86_64-linux-gnu/perl-base",
    "usr/lib/x86_64-linux-gnu/perl",
    "usr/share/perl",
    "usr/share/perl5",
];

/// `/init`: the marker with the time since boot (`CLOCK_BOOTTIME`, from /proc/uptime), then
/// systemd as PID 1 (which finds /proc mounted and keeps it).
const INIT: &str = "#!/bin/sh\nmount -t proc proc /proc\nread up idle < /proc/uptime\n\
    echo \"<2>bench: init boottime=$up\" > /dev/kmsg\nexec /lib/systemd/systemd\n";

const NET_UNIT: &str = "[Unit]
Description=bench: static address from the FAT config disk
Requires=dev-vda.device
After=dev-vda.device systemd-udev-trigger.service
Wants=network.target
Before=network.target network-online.target nginx.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/bench-net

[Install]
WantedBy=multi-user.target
";

const NET_SCRIPT: &str = r#"#!/bin/sh
set -e
mkdir -p /run/bench-config
mount -t vfat -o ro /dev/vda /run/bench-config
. /run/bench-config/config
# Wait for udev to name the NIC (eth0 becomes enp0sN).
udevadm settle -t 30
iface=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ip link set lo up
ip link set "$iface" up
ip addr add "$ADDRESS" dev "$iface"
ip route add default via "$GATEWAY"
"#;

const MEM_UNIT: &str = "[Unit]
Description=bench: log memory use after boot
After=nginx.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/bench-mem

[Install]
WantedBy=multi-user.target
";

/// The host's Debian sources, given to mmdebstrap as a file so no mirror name is written here.
fn host_sources() -> Result<PathBuf> {
    for path in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains(SUITE))
        {
            return Ok(path.into());
        }
    }
    bail!("no Debian {SUITE} entry in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list")
}

/// Copies the job's modules into the rootfs and runs the peer's own `depmod` in it: udev's
/// libkmod reads only the binary indexes (`modules.alias.bin`, ...), which depmod writes.
fn install_modules(rootfs: &Path, kernel: &Kernel) -> Result<()> {
    let mut tree = Tree::new();
    peers::add_modules(&mut tree, kernel, "usr/lib/modules")?;
    for (path, record) in tree.iter() {
        if let ramkey_builder::records::Kind::File(data) = &record.kind {
            let dest = rootfs.join(path);
            std::fs::create_dir_all(dest.parent().context("module path")?)?;
            std::fs::write(&dest, data)?;
        }
    }
    peers::run(
        Command::new("chroot")
            .arg(rootfs)
            .args(["/usr/sbin/depmod", "-a", &kernel.release]),
    )
}

/// Builds (or finds in the cache) the systemd RAM root's initramfs.
pub fn build(cache: &Path, kernel: &Kernel, epoch: u32) -> Result<PathBuf> {
    let sources = host_sources()?;
    let sources_text = std::fs::read(&sources)?;
    let mem_script = format!("#!/bin/sh\n{}sleep 3; meminfo\nsleep 3; meminfo\n", peers::MEMINFO_SH);
    let key = fingerprint(&[
        SUITE.as_bytes(),
        INCLUDE.as_bytes(),
        EXCLUDES.join(",").as_bytes(),
        TRIM.join(",").as_bytes(),
        &sources_text,
        INIT.as_bytes(),
        NET_UNIT.as_bytes(),
        NET_SCRIPT.as_bytes(),
        MEM_UNIT.as_bytes(),
        mem_script.as_bytes(),
        PAGE.as_bytes(),
        kernel.release.as_bytes(),
        peers::MODULES.join(",").as_bytes(),
    ]);
    let dir = cache.join(format!("systemd-{key}"));
    let initrd = dir.join("initrd.img");
    if initrd.exists() {
        return Ok(initrd);
    }
    let rootfs = dir.join("rootfs");
    if !rootfs.join(".complete").exists() {
        if rootfs.exists() {
            std::fs::remove_dir_all(&rootfs)?;
        }
        std::fs::create_dir_all(&dir)?;
        eprintln!("bench: building the systemd peer with mmdebstrap (a minute or more, once)");
        let mut cmd = Command::new("mmdebstrap");
        cmd.args(["--variant=minbase", "--quiet"])
            .arg(format!("--include={INCLUDE}"))
            .arg(format!("--hook-dir={HOOK_DIR}"));
        for pattern in EXCLUDES {
            cmd.arg(format!("--dpkgopt=path-exclude={pattern}"));
        }
        cmd.arg(SUITE).arg(&rootfs).arg(&sources);
        let status = cmd.status().context("running mmdebstrap")?;
        if !status.success() {
            bail!("mmdebstrap failed ({status})");
        }
        // Device nodes cannot go into the record tree; the kernel's devtmpfs replaces them.
        let dev = rootfs.join("dev");
        std::fs::remove_dir_all(&dev)?;
        std::fs::create_dir(&dev)?;
        install_modules(&rootfs, kernel)?;
        for path in TRIM.iter().map(|p| rootfs.join(p)) {
            let removed = match path.symlink_metadata() {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(_) => continue,
            };
            removed.with_context(|| format!("trimming {}", path.display()))?;
        }
        std::fs::write(rootfs.join(".complete"), b"")?;
    }

    let mut tree = Tree::new();
    for entry in std::fs::read_dir(&rootfs)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".complete" {
            continue;
        }
        let meta = entry.path().symlink_metadata()?;
        if meta.file_type().is_symlink() {
            tree.symlink(&name, &std::fs::read_link(entry.path())?.to_string_lossy());
        } else if meta.is_dir() {
            tree.dir(&name, 0o755);
            tree.add_host_dir(&entry.path(), &name)?;
        }
    }
    // add_host_dir normalises modes; restore the ones that matter.
    tree.dir("tmp", 0o1777);
    tree.dir("var/tmp", 0o1777);
    tree.dir("root", 0o700);
    peers::add_dev_nodes(&mut tree);
    tree.file("init", INIT, 0o755);
    tree.file("etc/machine-id", "b3e7c0de00000000000000000000beef\n", 0o444);
    tree.file("etc/hostname", "bench-systemd\n", 0o644);
    tree.file("etc/systemd/system/bench-net.service", NET_UNIT, 0o644);
    tree.file("etc/systemd/system/bench-mem.service", MEM_UNIT, 0o644);
    tree.file("usr/local/sbin/bench-net", NET_SCRIPT, 0o755);
    tree.file("usr/local/sbin/bench-mem", mem_script, 0o755);
    for unit in ["bench-net.service", "bench-mem.service"] {
        tree.symlink(
            &format!("etc/systemd/system/multi-user.target.wants/{unit}"),
            &format!("/etc/systemd/system/{unit}"),
        );
    }
    tree.file("var/www/html/index.html", PAGE, 0o644);
    eprintln!(
        "bench: compressing the systemd peer's initramfs ({} MB)",
        tree.content_size() >> 20
    );
    std::fs::write(&initrd, initramfs::write(&tree, epoch, Compression::Gzip)?)?;
    Ok(initrd)
}

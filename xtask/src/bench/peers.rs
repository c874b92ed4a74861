//! What the peer systems share: the job's fixed inputs (address, page, FAT config disk), the
//! kernel module subset with its load order, device nodes, and a small content hash for
//! cache keys.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use ramkey_builder::kernel::Kernel;
use ramkey_builder::modules::Index;
use ramkey_builder::records::Tree;

/// The page every system serves; the HTTP check looks for it in the body.
pub const PAGE: &str = "<!doctype html><title>bench</title><p>ramkey bench page</p>\n";
/// The part of the page the HTTP check requires.
pub const PAGE_MARK: &str = "ramkey bench page";

/// The config file on the FAT disk, in shell syntax so every peer can source it.
pub const CONFIG: &str = "ADDRESS=10.0.2.15/24\nGATEWAY=10.0.2.2\n";

/// Ramkey's config on the same disk (the platform looks for a FAT filesystem labelled
/// RAMKEY holding `config.toml`); the peers ignore it.
pub const RAMKEY_CONFIG: &str = "version = 1\nhostname = \"bench\"\n\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n";

/// Ramkey's platform services on the config disk (the peers ignore them): busybox `httpd`
/// serving the page, the same memory readings the peers print, and where the RAM goes.
pub fn ramkey_services() -> [(&'static str, String); 2] {
    let page = PAGE.trim_end();
    let httpd = format!(
        "name = \"bench-httpd\"\nargv = [\"/bin/sh\", \"-c\", '''mkdir -p /run/www && \
         printf '%s' '{page}' > /run/www/index.html && exec /bin/busybox httpd -f -p 80 -h /run/www''']\n"
    );
    let meminfo = format!(
        "name = \"bench-meminfo\"\nrestart = \"never\"\nargv = [\"/bin/sh\", \"-c\", '''{MEMINFO_SH}{RAM_PARTS_SH}\
         sleep 3; meminfo; sleep 3; ram_parts; meminfo''']\n"
    );
    [("bench-httpd.toml", httpd), ("bench-meminfo.toml", meminfo)]
}

/// The shell lines that log where a Ramkey platform's RAM goes, as level-2 kernel messages
/// `bench: ram NAME: N kB`: the files the kernel unpacked from the initramfs (tmpfs, with
/// `/run`: `Shmem`), of them the packed platform and PID 1's binary; the modules' code and
/// data (`/proc/modules`); the processes' anonymous memory and PID 1's share (PSS); the page
/// cache besides the tmpfs (mostly the packed platform's pages that were read, reclaimable);
/// the kernel's unreclaimable slab; page tables and kernel stacks.
pub const RAM_PARTS_SH: &str = r#"ram_parts() {
  m() { sed -n "s/^$1: *\([0-9]*\) kB$/\1/p" /proc/meminfo; }
  r() { echo "<2>bench: ram $1: $2 kB" > /dev/kmsg; }
  size() { [ -f "$1" ] && echo $(($(wc -c < "$1") / 1024)) || echo 0; }
  modules=0
  while read -r _ bytes _; do modules=$((modules + bytes)); done < /proc/modules
  r 'RAM files (initramfs, /run)' "$(m Shmem)"
  r '- the packed platform' "$(size /lib/ramkey/platform.sqfs)"
  r '- PID 1 binary' "$(size /init)"
  r 'modules' "$((modules / 1024))"
  r 'processes (anonymous)' "$(m AnonPages)"
  r '- PID 1 (PSS)' "$(sed -n 's/^Pss: *\([0-9]*\) kB$/\1/p' /proc/1/smaps_rollup)"
  r 'page cache (reclaimable)' "$(($(m Cached) - $(m Shmem)))"
  r 'kernel slab (unreclaimable)' "$(m SUnreclaim)"
  r 'page tables, kernel stacks' "$(($(m PageTables) + $(m KernelStack)))"
}
"#;

/// The address the `ramkey-zone` system's `web` zone gets on QEMU's user network.
pub const ZONE_ADDRESS: &str = "10.0.2.16";

/// Modules a peer needs for the job: the NIC, the config disk and its filesystem.
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "vfat",
    "nls_cp437",
    "nls_ascii",
];

/// FNV-1a over `parts`, as 16 hex digits: a cache key stable across Rust versions.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The device nodes a peer's first process needs before it mounts devtmpfs.
pub fn add_dev_nodes(tree: &mut Tree) {
    tree.dir("dev", 0o755);
    tree.char_device("dev/console", 5, 1, 0o600);
    tree.char_device("dev/kmsg", 1, 11, 0o644);
    tree.char_device("dev/null", 1, 3, 0o666);
}

/// The module files, `modules.dep` and `modules.alias` under `<prefix>/<release>/`, and the
/// `.ko` paths (relative to that directory) in an order `insmod` can load them.
pub fn add_modules(tree: &mut Tree, kernel: &Kernel, prefix: &str) -> Result<Vec<String>> {
    let index = Index::load(&kernel.modules_dir, &kernel.release).context("indexing the kernel's modules")?;
    let selection = index.select(MODULES)?;
    let base = format!("{}/{}", prefix.trim_matches('/'), kernel.release);
    for module in selection.modules.values() {
        let host = kernel.modules_dir.join(&module.path);
        let data = std::fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
        tree.file(&format!("{base}/{}", module.path), data, 0o644);
    }
    let dep = selection.modules_dep();
    tree.file(&format!("{base}/modules.dep"), dep.clone(), 0o644);
    tree.file(&format!("{base}/modules.alias"), selection.modules_alias(), 0o644);
    let builtin = kernel.modules_dir.join("modules.builtin");
    if let Ok(data) = std::fs::read(&builtin) {
        tree.file(&format!("{base}/modules.builtin"), data, 0o644);
    }
    let wanted: Vec<String> = MODULES
        .iter()
        .map(|name| selection.modules[*name].path.clone())
        .collect();
    Ok(load_order(&dep, &wanted))
}

/// A load order for `wanted` from depmod-format lines: each module's dependencies from the
/// last listed to the first, then the module; each path once.
pub fn load_order(modules_dep: &str, wanted: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for path in wanted {
        let deps = modules_dep
            .lines()
            .find_map(|l| l.strip_prefix(path.as_str())?.strip_prefix(':'))
            .unwrap_or_default();
        for p in deps.split_whitespace().rev().chain([path.as_str()]) {
            if !order.iter().any(|o| o == p) {
                order.push(p.to_string());
            }
        }
    }
    order
}

/// The FAT config disk every system gets: `config` and Ramkey's `config.toml` at the root,
/// fixed volume id, label RAMKEY.
pub fn config_disk(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let image = dir.join("config.img");
    let staged = dir.join("config");
    std::fs::write(&staged, CONFIG)?;
    let toml = dir.join("config.toml");
    std::fs::write(&toml, RAMKEY_CONFIG)?;
    let _ = std::fs::remove_file(&image);
    run(Command::new("mkfs.vfat")
        .args(["-C", "-i", "0b5e0001", "-n", "RAMKEY"])
        .arg(&image)
        .arg("1024"))?;
    run(Command::new("mcopy").arg("-i").arg(&image).arg(&staged).arg("::config"))?;
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&image)
        .arg(&toml)
        .arg("::config.toml"))?;
    add_services(dir, &image, &ramkey_services())?;
    Ok(image)
}

fn add_services(dir: &Path, image: &Path, services: &[(&str, String)]) -> Result<()> {
    run(Command::new("mmd").arg("-i").arg(image).arg("::services.d"))?;
    for (name, text) in services {
        let staged = dir.join(name);
        std::fs::write(&staged, text)?;
        run(Command::new("mcopy")
            .arg("-i")
            .arg(image)
            .arg(&staged)
            .arg(format!("::services.d/{name}")))?;
    }
    Ok(())
}

/// The `ramkey-zone` system's stick: a FAT labelled RAMKEY with a config that runs the
/// `web` personality (signed by the key `trusted` names) at [`ZONE_ADDRESS`], the image,
/// and the memory readings, taken once the zone is online, with the zone's own
/// ([`ZONE_MEMORY_SH`]). No pool: the zone's data is in RAM. With `guest_kernel` (a VM
/// personality) the stick holds it as the platform's kernel, `platform/a/vmlinuz`, which
/// VM guests boot.
pub fn zone_disk(dir: &Path, web: &Path, trusted: &str, guest_kernel: Option<&Path>) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let image = dir.join("zone.img");
    let toml = dir.join("zone.toml");
    let personality = format!(
        "\n[images]\ntrusted_keys = [\"{trusted}\"]\n\n[[personality]]\nname = \"web\"\n\
         image = \"personalities/web.rkimg\"\nnic = \"admin\"\nip = \"{ZONE_ADDRESS}/24\"\ngateway = \"10.0.2.2\"\n"
    );
    std::fs::write(&toml, format!("{RAMKEY_CONFIG}{personality}"))?;
    let _ = std::fs::remove_file(&image);
    let kernel_len = guest_kernel.map_or(Ok(0), |k| std::fs::metadata(k).map(|m| m.len()))?;
    let kib = (std::fs::metadata(web)?.len() + kernel_len) / 1024 + 8192;
    run(Command::new("mkfs.vfat")
        .args(["-C", "-i", "0b5e0002", "-n", "RAMKEY"])
        .arg(&image)
        .arg(kib.to_string()))?;
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&image)
        .arg(&toml)
        .arg("::config.toml"))?;
    run(Command::new("mmd").arg("-i").arg(&image).arg("::personalities"))?;
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&image)
        .arg(web)
        .arg("::personalities/web.rkimg"))?;
    if let Some(kernel) = guest_kernel {
        run(Command::new("mmd")
            .arg("-i")
            .arg(&image)
            .args(["::platform", "::platform/a"]))?;
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&image)
            .arg(kernel)
            .arg("::platform/a/vmlinuz"))?;
    }
    let meminfo = format!(
        "name = \"bench-meminfo\"\nrestart = \"never\"\nargv = [\"/bin/sh\", \"-c\", '''{MEMINFO_SH}{ZONE_MEMORY_SH}\
         until ramkeyctl personality list 2>/dev/null | grep -q ' online '; do sleep 1; done; \
         sleep 3; meminfo; sleep 3; zone_memory; meminfo''']\n"
    );
    add_services(dir, &image, &[("bench-meminfo.toml", meminfo)])?;
    partitioned(&image, &dir.join("zone.stick.img"))
}

/// `fat` as a stick is laid out for Ramkey: an MBR with one FAT32 partition from 1 MiB.
/// The peers read their config from the whole-disk FAT ([`config_disk`]); Ramkey boots
/// from partitioned sticks, and a whole-disk FAT costs it a grace period (the kernel may
/// not have scanned partitions yet), which a fair comparison must not charge it.
pub fn partitioned(fat: &Path, out: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(fat).with_context(|| format!("reading {}", fat.display()))?;
    let sectors = u32::try_from(bytes.len().div_ceil(512)).context("FAT image too large")?;
    let mut disk = vec![0u8; 1 << 20];
    let entry = 0x1BE;
    disk[entry + 4] = 0x0C; // FAT32 (LBA)
    disk[entry + 8..entry + 12].copy_from_slice(&2048u32.to_le_bytes());
    disk[entry + 12..entry + 16].copy_from_slice(&sectors.to_le_bytes());
    disk[510..512].copy_from_slice(&[0x55, 0xAA]);
    disk.extend_from_slice(&bytes);
    disk.resize((1 << 20) + sectors as usize * 512, 0);
    std::fs::write(out, disk).with_context(|| format!("writing {}", out.display()))?;
    Ok(out.to_path_buf())
}

/// Runs a host command, failing with its output.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The shell lines that log MemTotal, MemFree and MemAvailable as level-2 kernel messages.
pub const MEMINFO_SH: &str = "meminfo() {
  grep -E '^(MemTotal|MemFree|MemAvailable):' /proc/meminfo | while read -r line; do
    echo \"<2>bench: meminfo $line\" > /dev/kmsg
  done
  echo '<2>bench: meminfo done' > /dev/kmsg
}
";

/// The shell lines that log the `web` zone's memory as level-2 kernel messages: its own
/// processes — the launcher and the zone's PID 1, both `ramkey-zone web` — as proportional
/// set size (the init's pages shared with the platform's PID 1 count in part), and its cgroup's
/// `memory.current` (everything in the zone: nginx, the page cache it charged, kernel memory);
/// for a VM also the VMM's PSS and its resident memory outside the guest's RAM (mappings of
/// 64 MiB or more), its own overhead.
pub const ZONE_MEMORY_SH: &str = r#"zone_memory() {
  pss=0
  for d in /proc/[0-9]*; do
    [ "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" = '/usr/sbin/ramkey-zone web ' ] || continue
    kb=$(sed -n 's/^Pss: *\([0-9]*\) kB$/\1/p' $d/smaps_rollup)
    pss=$((pss + ${kb:-0}))
  done
  echo "<2>bench: zone-memory processes: $pss kB" > /dev/kmsg
  echo "<2>bench: zone-memory cgroup: $(($(cat /sys/fs/cgroup/ramkey/zone-web/memory.current) / 1024)) kB" > /dev/kmsg
  for d in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in ramkey-vmm\ *) ;; *) continue ;; esac
    echo "<2>bench: zone-memory vmm (PSS): $(sed -n 's/^Pss: *\([0-9]*\) kB$/\1/p' $d/smaps_rollup) kB" > /dev/kmsg
    own=$(awk '/^[0-9a-f]+-[0-9a-f]+ /{guest=0} /^Size:/{guest=($2 >= 65536)} /^Rss:/{if (!guest) s+=$2} END{print s+0}' $d/smaps)
    echo "<2>bench: zone-memory vmm own (RSS outside guest RAM): $own kB" > /dev/kmsg
  done
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_order_puts_dependencies_first_once() {
        let dep =
            "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko:\nkernel/d.ko: kernel/c.ko\n";
        let order = load_order(dep, &["kernel/a.ko".into(), "kernel/d.ko".into()]);
        assert_eq!(order, ["kernel/c.ko", "kernel/b.ko", "kernel/a.ko", "kernel/d.ko"]);
    }

    #[test]
    fn fingerprint_depends_on_every_part_and_its_boundary() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]), fingerprint(&[b"x"]));
    }
}

//! The machine of the VM boot test (`tests/vm.rs`): a TCG guest with `-cpu max` (QEMU
//! emulates AMD SVM, so `kvm_amd` loads inside it) whose initramfs holds busybox, the KVM
//! modules of the tests' Debian kernel, the static `ramkey-vmm`, and an inner kernel (the
//! uncompressed vmlinux taken out of that kernel's bzImage) with an inner initramfs. The
//! outer `/init` runs the VMM once before loading `kvm_amd` (no usable KVM), then loads the
//! modules, boots a 121-byte ELF "kernel" that triple-faults at once ([`triple_fault_elf`]),
//! then the inner guest twice — the vmlinux on one vCPU, the bzImage on two — whose `/init`
//! prints a marker, its uptime and its CPU count, and ends as its command line says. The vmlinux boot also
//! gets two virtio-blk disks: a read-only image built here ([`ro_disk`]) whose first line
//! the inner `/init` prints and fails to overwrite, and a writable one (made by the outer
//! `/init`) it writes a line to; the outer `/init` then prints both backing files' first
//! lines. The inner guest loads `virtio_mmio`, `virtio_blk` and `virtio_net` from the same
//! kernel. Both boots get a NIC. The vmlinux boot's is a macvtap's character device (bridge
//! mode, on a `dummy` parent, with a macvlan beside it for the outer side): the inner guest
//! fetches a page and 4 MiB from the outer guest's busybox `httpd` (an HTTP GET with `nc`;
//! busybox-static's `wget` crashes in these guests), and the outer guest fetches the inner
//! guest's page; then a line written to the VMM's stdin (a pipe) must reach the inner
//! console, and SIGTERM to the VMM must make the guest power off (Ctrl-Alt-Del → SIGINT to
//! the inner `/init` → `poweroff -f` → ACPI S5, exit 0). The bzImage boot's NIC is the tap
//! `tap0` by name; that guest fetches the outer page and reboots (exit 5). The scripts are
//! in [`scripts`].

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use ramkey_builder::initramfs::{self, Compression};
use ramkey_builder::kernel::{self, Kernel};
use ramkey_builder::modules::Index;
use ramkey_builder::records::Tree;

use crate::artifacts::{self, source_date_epoch, target_dir, workspace_root};
use crate::bench::peers::{add_dev_nodes, load_order};

mod scripts;

/// The modules `/dev/kvm` needs in an AMD (SVM) guest, dependencies pulled in.
pub const KVM_MODULES: &[&str] = &["kvm_amd"];

/// What the inner `/init` prints first: the marker the test waits for, then the inner
/// kernel's uptime in seconds and its CPU count (`... uptime 3.31, cpus 1`).
pub const INNER_MARKER: &str = "inner: hello from the nested guest, uptime";

/// The modules the inner guest loads for its disks and its NIC, dependencies pulled in
/// (`virtio_net` needs `net_failover` and `failover`).
pub const DISK_MODULES: &[&str] = &["virtio_mmio", "virtio_blk", "virtio_net"];

/// The modules the outer guest loads for its tap (`/dev/net/tun`), its macvtap and macvlan
/// and their `dummy` parent.
pub const NET_MODULES: &[&str] = &["tun", "dummy", "macvlan", "macvtap"];

/// The tap the outer `/init` makes for the bzImage guest's NIC, and the two addresses.
pub const TAP: &str = "tap0";
pub const TAP_OUTER: &str = "192.168.77.1";
pub const TAP_INNER: &str = "192.168.77.2";
/// The macvtap for the vmlinux guest's NIC; the outer side's macvlan has [`MACVLAN_OUTER`].
pub const MACVTAP: &str = "macvtap0";
pub const MACVLAN_OUTER: &str = "192.168.78.1";
pub const MACVTAP_INNER: &str = "192.168.78.2";

/// The page the outer guest's httpd serves; the inner guest fetches and prints it.
pub const OUTER_PAGE: &str = "ramkey outer httpd page: 5c1d07";
/// The page the inner guest's httpd serves; the outer guest fetches and prints it.
pub const INNER_PAGE: &str = "ramkey inner httpd page: 9a41c2";
/// The line the outer guest writes to the VMM's stdin; the inner `/init` reads and prints it.
pub const CONSOLE_LINE: &str = "a line through the VMM's stdin pipe: 3b8e51";

/// The read-only disk's first line (the rest of its [`RO_DISK_BYTES`] are zeros).
pub const RO_DISK_LINE: &str = "ramkey read-only test disk: 7f3e9a";
pub const RO_DISK_BYTES: usize = 4 << 20;

/// The line the inner `/init` writes to its writable disk (`vdb`).
pub const RW_DISK_LINE: &str = "inner: written through virtio-blk";

/// The read-only disk: [`RO_DISK_LINE`] and zeros.
pub fn ro_disk() -> Vec<u8> {
    let mut disk = format!("{RO_DISK_LINE}\n").into_bytes();
    disk.resize(RO_DISK_BYTES, 0);
    disk
}

/// Applets the two `/init`s call, linked to `/bin/busybox`.
const APPLETS: &[&str] = &[
    "sh", "mount", "insmod", "reboot", "poweroff", "head", "tail", "cat", "dd", "mkdir", "touch", "sleep", "ip",
    "tunctl", "httpd", "nc", "grep", "wc", "tee", "pidof", "rm",
];

/// The inner guest's memory, MiB.
pub const INNER_MEMORY_MIB: u32 = 256;

/// One inner boot after the modules are loaded.
#[derive(Debug, Clone, Copy)]
pub struct Boot {
    /// What the outer `/init` says before it: `outer: booting the inner guest: LABEL`.
    pub label: &'static str,
    /// The kernel in `/guest`.
    pub kernel: &'static str,
    pub vcpus: u8,
    /// The two disks (after the boot the outer `/init` prints `outer: ro disk holds: ...` and
    /// `outer: rw disk holds: ...`, the backing files' first lines), the NIC on the macvtap,
    /// the 4 MiB fetch, the outer-side fetch, the stdin pipe and the SIGTERM ending; else a
    /// NIC on [`TAP`] (by name, the MAC derived from it), the outer-side fetch over it and a
    /// reboot.
    pub full: bool,
}

pub const BOOTS: &[Boot] = &[
    Boot {
        label: "vmlinux, 1 vcpu, 2 disks, a nic on a macvtap, stopped by SIGTERM",
        kernel: "vmlinux",
        vcpus: 1,
        full: true,
    },
    Boot {
        label: "bzImage, 2 vcpus, a nic on a tap, reboots",
        kernel: "bzImage",
        vcpus: 2,
        full: false,
    },
];

/// The VMM's command line in the outer guest: `extra` after the machine, `env` the inner
/// `/init`'s environment (on the kernel command line).
fn vmm_command(kernel: &str, vcpus: u8, extra: &str, env: &str) -> String {
    format!(
        "/bin/ramkey-vmm --kernel /guest/{kernel} --initrd /guest/initrd.img --vcpus {vcpus} \
         --memory {INNER_MEMORY_MIB}{extra} --cmdline \"quiet{env}\""
    )
}

/// The outer `/init`'s lines for `boot`.
fn boot_lines(boot: &Boot) -> String {
    let Boot {
        label,
        kernel,
        vcpus,
        full,
    } = *boot;
    let announce = format!("echo \"outer: booting the inner guest: {label}\"\n");
    if !full {
        let env = format!(" OUTER={TAP_OUTER} INNER={TAP_INNER} ENDING=reboot LINGER=5");
        let vmm = vmm_command(kernel, vcpus, &format!(" --net {TAP}"), &env);
        let fetch = scripts::OUTER_FETCH.replace("@INNER@", TAP_INNER).replace("@NIC@", TAP);
        return format!("{announce}{fetch}{vmm}\necho \"outer: vmm exit $?\"\nwait\n");
    }
    let env = format!(" OUTER={MACVLAN_OUTER} INNER={MACVTAP_INNER} ENDING=ctrl-alt-del BIG=1");
    let devices = " --disk /guest/ro.img,ro --disk /guest/rw.img --net $tapdev,mac=$mac";
    let vmm = vmm_command(kernel, vcpus, devices, &env);
    let run = scripts::SIGTERM_BOOT
        .replace("@VMM@", &vmm)
        .replace("@INNER@", MACVTAP_INNER)
        .replace("@CONSOLE_LINE@", CONSOLE_LINE);
    format!(
        "{announce}{run}echo \"outer: ro disk holds: $(head -c 64 /guest/ro.img | head -n 1)\"\n\
         echo \"outer: rw disk holds: $(head -c 64 /guest/rw.img | head -n 1)\"\n"
    )
}

/// iproute2's `ip` from the host, as `/usr/lib/iproute2/ip` (named `ip`: iproute2 takes a
/// longer name's tail as its command), with the shared libraries `ldd` lists at their paths
/// (busybox `ip` cannot set a macvlan's or macvtap's mode).
fn add_iproute2(tree: &mut Tree) -> Result<()> {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("no iproute2 ip on the host (apt-get install iproute2)")?;
    tree.file("usr/lib/iproute2/ip", std::fs::read(ip)?, 0o755);
    let ldd = std::process::Command::new("ldd")
        .arg(ip)
        .output()
        .context("running ldd")?;
    ensure!(ldd.status.success(), "ldd {} failed", ip.display());
    for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if lib.starts_with('/') {
            let data = std::fs::read(lib).with_context(|| format!("reading {lib}"))?;
            tree.file(lib.trim_start_matches('/'), data, 0o755);
        }
    }
    Ok(())
}

/// `insmod` lines for `wanted` and their dependencies, in load order.
fn insmod_lines(index: &Index, wanted: &[&str], tree: &mut Tree, kernel: &Kernel) -> Result<String> {
    let selection = index.select(wanted)?;
    let base = format!("lib/modules/{}", kernel.release);
    for module in selection.modules.values() {
        let data = std::fs::read(kernel.modules_dir.join(&module.path))?;
        tree.file(&format!("{base}/{}", module.path), data, 0o644);
    }
    let paths: Vec<String> = wanted.iter().map(|m| selection.modules[*m].path.clone()).collect();
    let lines: Vec<String> = load_order(&selection.modules_dep(), &paths)
        .iter()
        .map(|p| format!("insmod /{base}/{p}"))
        .collect();
    Ok(lines.join("\n"))
}

/// Where the crash kernel is loaded and entered.
const CRASH_LOAD: u64 = 0x10_0000;

/// A minimal ELF64 executable whose one loadable segment, at 1 MiB, is an `int3`: with the
/// VMM's empty boot IDT the breakpoint cannot be delivered, nor the #GP and double fault
/// that follow, so the vCPU triple-faults on its first instruction (KVM_EXIT_SHUTDOWN).
pub fn triple_fault_elf() -> Vec<u8> {
    const EHDR: u16 = 64;
    const PHDR: u16 = 56;
    let code = [0xcc]; // int3
    let size = u64::from(EHDR + PHDR) + code.len() as u64;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF");
    elf.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // executable
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(CRASH_LOAD + u64::from(EHDR + PHDR)).to_le_bytes()); // entry
    elf.extend_from_slice(&u64::from(EHDR).to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [EHDR, PHDR, 1, 64, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // read, execute
    for word in [0, CRASH_LOAD, CRASH_LOAD, size, size, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(&code);
    elf
}

/// The uncompressed vmlinux inside a bzImage: the setup header's payload (XZ, as Debian
/// builds it) decompressed.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>> {
    ensure!(
        bzimage.len() > 0x250 && &bzimage[0x202..0x206] == b"HdrS",
        "not a bzImage"
    );
    let u32_at =
        |at: usize| u32::from_le_bytes([bzimage[at], bzimage[at + 1], bzimage[at + 2], bzimage[at + 3]]) as usize;
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248);
    let payload = bzimage
        .get(start..start + u32_at(0x24c))
        .context("the bzImage's payload lies outside the file")?;
    if !payload.starts_with(b"\xfd7zXZ\0") {
        bail!(
            "the bzImage's payload is not XZ-compressed (starts {:02x?})",
            &payload[..6.min(payload.len())]
        );
    }
    let mut vmlinux = Vec::new();
    liblzma::read::XzDecoder::new(payload)
        .read_to_end(&mut vmlinux)
        .context("decompressing the bzImage's payload")?;
    ensure!(
        vmlinux.starts_with(b"\x7fELF"),
        "the decompressed payload is not an ELF file"
    );
    Ok(vmlinux)
}

/// The tests' kernel's vmlinux, extracted once into `target/ramkey/nested/`.
pub fn vmlinux(kernel: &Kernel) -> Result<PathBuf> {
    let dir = target_dir().join("ramkey/nested");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("vmlinux-{}", kernel.release));
    if !path.exists() {
        let bzimage =
            std::fs::read(&kernel.vmlinuz).with_context(|| format!("reading {}", kernel.vmlinuz.display()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, extract_vmlinux(&bzimage)?)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// busybox from Debian's busybox-static package (cached with the builder's kernel cache).
fn busybox() -> Result<PathBuf> {
    let cache = kernel::cache_dir();
    let deb = ramkey_builder::deb::download("busybox-static", &cache).context("getting busybox-static")?;
    let root = ramkey_builder::deb::unpack_cached(&deb, &cache)?;
    ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .with_context(|| format!("no busybox in {}", deb.path.display()))
}

fn add_busybox(tree: &mut Tree, busybox: &Path) -> Result<()> {
    add_dev_nodes(tree);
    for d in ["proc", "sys", "tmp"] {
        tree.dir(d, 0o755);
    }
    tree.file("bin/busybox", std::fs::read(busybox)?, 0o755);
    for applet in APPLETS {
        tree.symlink(&format!("bin/{applet}"), "busybox");
    }
    Ok(())
}

/// The static `ramkey-vmm`, built like the static PID 1.
pub fn static_vmm() -> Result<PathBuf> {
    let path = ramkey_builder::build::static_binary_into(&workspace_root(), &target_dir(), "ramkey-vmm", "ramkey-vmm")?;
    Ok(path)
}

/// What the test boots: the outer guest's kernel and initramfs.
#[derive(Debug)]
pub struct Nested {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Builds the outer and inner initramfs into `target/ramkey/nested/` (`vmm` is the VMM
/// binary to ship, so that a test can ship a different one).
pub fn build(vmm: &Path) -> Result<Nested> {
    let kernel = artifacts::kernel()?;
    let vmlinux = vmlinux(&kernel)?;
    let busybox = busybox()?;
    let epoch = source_date_epoch();
    let dir = target_dir().join("ramkey/nested");

    let index = Index::load(&kernel.modules_dir, &kernel.release).context("indexing the kernel's modules")?;
    let mut inner = Tree::new();
    add_busybox(&mut inner, &busybox)?;
    let disk_insmod = insmod_lines(&index, DISK_MODULES, &mut inner, &kernel)?;
    let inner_init = scripts::INNER_INIT
        .replace("@MARKER@", INNER_MARKER)
        .replace("@INNER_PAGE@", INNER_PAGE)
        .replace("@INSMOD@", &disk_insmod)
        .replace("@RW_LINE@", RW_DISK_LINE);
    inner.file("init", inner_init, 0o755);
    let inner_initrd = initramfs::write(&inner, epoch, Compression::Gzip)?;

    let mut outer = Tree::new();
    add_busybox(&mut outer, &busybox)?;
    add_iproute2(&mut outer)?;
    let insmod = insmod_lines(&index, &[KVM_MODULES, NET_MODULES].concat(), &mut outer, &kernel)?;
    outer.file(
        "bin/ramkey-vmm",
        std::fs::read(vmm).with_context(|| format!("reading {}", vmm.display()))?,
        0o755,
    );
    outer.file("guest/vmlinux", std::fs::read(&vmlinux)?, 0o644);
    outer.file("guest/bzImage", std::fs::read(&kernel.vmlinuz)?, 0o644);
    outer.file("guest/crash.elf", triple_fault_elf(), 0o644);
    outer.file("guest/initrd.img", inner_initrd, 0o644);
    outer.file("guest/ro.img", ro_disk(), 0o444);
    let boots: String = BOOTS.iter().map(boot_lines).collect();
    let init = scripts::OUTER_INIT
        .replace("@INSMOD@", &insmod)
        .replace("@BOOTS@", &boots)
        .replace("@VMM@", &vmm_command("vmlinux", 1, "", ""))
        .replace("@TAP@", TAP)
        .replace("@TAP_OUTER@", TAP_OUTER)
        .replace("@MACVTAP@", MACVTAP)
        .replace("@MACVLAN_OUTER@", MACVLAN_OUTER)
        .replace("@OUTER_PAGE@", OUTER_PAGE);
    outer.file("init", init, 0o755);
    // Uncompressed: nothing to inflate under TCG.
    let initrd = dir.join("outer-initrd.img");
    std::fs::write(&initrd, initramfs::write(&outer, epoch, Compression::None)?)?;
    Ok(Nested {
        kernel: kernel.vmlinuz,
        initrd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_kernel_is_one_int3_at_its_entry() {
        let elf = triple_fault_elf();
        assert_eq!(elf.len(), 121);
        let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
        let entry = u64_at(24);
        let (offset, paddr, filesz) = (u64_at(64 + 8), u64_at(64 + 24), u64_at(64 + 32));
        assert_eq!((offset, paddr, filesz), (0, CRASH_LOAD, 121));
        assert_eq!(elf[(entry - paddr + offset) as usize], 0xcc);
        assert_eq!(u16::from_le_bytes([elf[54], elf[55]]), 56, "program header size");
    }

    #[test]
    fn a_file_that_is_not_a_bzimage_is_refused() {
        assert!(extract_vmlinux(b"MZ not a kernel").is_err());
        let mut fake = vec![0u8; 0x1000];
        fake[0x202..0x206].copy_from_slice(b"HdrS");
        fake[0x1f1] = 1;
        fake[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
        fake[0x24c..0x250].copy_from_slice(&16u32.to_le_bytes());
        let err = extract_vmlinux(&fake).unwrap_err().to_string();
        assert!(err.contains("not XZ"), "{err}");
    }
}

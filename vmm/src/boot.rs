//! Putting a Linux kernel into guest memory for the 64-bit boot protocol: the kernel (an
//! ELF `vmlinux` at its physical addresses, or a `bzImage`'s protected-mode part at 1 MiB,
//! both by linux-loader), the initramfs, the command line, the zero page with its e820
//! map, the MP table, the GDT and the identity page tables the boot vCPU starts on.

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{self, BzImage, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::acpi::{self, VirtioWindow};
use crate::layout::{self, *};
use crate::mptable;

/// What the machine itself needs on every kernel command line: the console on the serial
/// port, a reboot through the i8042 (which the VMM sees), no PCI bus, one UART, an i8042
/// without aux port or multiplexer. The CPUs, interrupt controllers and virtio-mmio devices
/// come from the ACPI tables ([`crate::acpi`]). `--cmdline` is appended.
pub const BASE_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.dumbkbd";

/// The 64-bit entry point of a bzImage's protected-mode kernel, from its load address.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;

/// What went wrong putting the kernel and its inputs into guest memory.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: neither an ELF vmlinux ({elf}) nor a bzImage ({bzimage})")]
    Kernel {
        path: PathBuf,
        elf: loader::Error,
        bzimage: loader::Error,
    },
    #[error("{path}: {size} bytes do not fit in guest memory above the kernel: give more --memory")]
    InitrdTooBig { path: PathBuf, size: u64 },
    #[error("{path}: reading it into guest memory: {source}")]
    Initrd {
        path: PathBuf,
        source: vm_memory::GuestMemoryError,
    },
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error(transparent)]
    Acpi(#[from] acpi::TooBig),
    #[error("writing the boot structures to guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// The kernel as loaded.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Where the boot vCPU starts (64-bit mode).
    pub entry: u64,
    /// The first byte above what the kernel needs (its image, or a bzImage's `init_size`).
    pub end: u64,
    /// A bzImage's setup header, the zero page's template.
    pub header: Option<setup_header>,
}

/// Loads the kernel at `path`: an ELF vmlinux first, else a bzImage.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<Kernel, BootError> {
    let open = || {
        File::open(path).map_err(|source| BootError::Open {
            path: path.into(),
            source,
        })
    };
    let himem = Some(GuestAddress(HIMEM_START));
    let elf = match Elf::load(mem, None, &mut open()?, himem) {
        Ok(loaded) => {
            return Ok(Kernel {
                entry: loaded.kernel_load.0,
                end: loaded.kernel_end,
                header: None,
            });
        }
        Err(e) => e,
    };
    match BzImage::load(mem, None, &mut open()?, himem) {
        Ok(loaded) => {
            let header = loaded.setup_header;
            let init_size = header.map_or(0, |h| u64::from(h.init_size));
            Ok(Kernel {
                entry: loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY,
                end: loaded.kernel_end.max(loaded.kernel_load.0 + init_size),
                header,
            })
        }
        Err(bzimage) => Err(BootError::Kernel {
            path: path.into(),
            elf,
            bzimage,
        }),
    }
}

/// Reads the initramfs at `path` into the top of low memory; its address and size.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    ranges: &[(u64, u64)],
    kernel_end: u64,
    path: &Path,
) -> Result<(u64, u64), BootError> {
    let mut file = File::open(path).map_err(|source| BootError::Open {
        path: path.into(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| BootError::Open {
            path: path.into(),
            source,
        })?
        .len();
    let at = layout::initrd_address(ranges, kernel_end, size).ok_or_else(|| BootError::InitrdTooBig {
        path: path.into(),
        size,
    })?;
    mem.read_exact_volatile_from(GuestAddress(at), &mut file, size as usize)
        .map_err(|source| BootError::Initrd {
            path: path.into(),
            source,
        })?;
    Ok((at, size))
}

/// The whole command line: [`BASE_CMDLINE`] and the user's words.
pub fn cmdline(extra: &str) -> Result<Cmdline, BootError> {
    let mut line = Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| BootError::Cmdline(e.to_string()))?;
    line.insert_str(BASE_CMDLINE)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    if !extra.trim().is_empty() {
        line.insert_str(extra.trim())
            .map_err(|e| BootError::Cmdline(format!("{e} (at most {CMDLINE_MAX_SIZE} bytes in all)")))?;
    }
    Ok(line)
}

/// The zero page: the kernel's setup header (a bzImage's own, or a minimal one for an ELF
/// vmlinux), the loader's fields, the command line, the initramfs and the e820 map.
pub fn zero_page(
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
    e820: &[(u64, u64, u32)],
) -> boot_params {
    let mut params = boot_params::default();
    if let Some(header) = header {
        params.hdr = header;
    } else {
        params.hdr.boot_flag = 0xaa55;
        params.hdr.header = 0x5372_6448; // "HdrS"
        params.hdr.kernel_alignment = 0x0100_0000;
    }
    params.hdr.type_of_loader = 0xff; // undefined loader
    params.acpi_rsdp_addr = ACPI_START;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some((at, size)) = initrd {
        params.hdr.ramdisk_image = at as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    for (slot, &(addr, size, kind)) in params.e820_table.iter_mut().zip(e820) {
        *slot = boot_e820_entry {
            addr,
            size,
            r#type: kind,
        };
    }
    params.e820_entries = e820.len().min(params.e820_table.len()) as u8;
    params
}

/// The boot GDT: null, 64-bit code, data, TSS (Firecracker's).
pub const GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// A segment descriptor from its flags, base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (flags as u64, base as u64, limit as u64);
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0xf_0000) << 32)
        | ((base & 0xff_ffff) << 16)
        | (limit & 0xffff)
}

/// Writes everything but the kernel and the initramfs: command line, zero page, MP table,
/// ACPI tables (with `windows`, the virtio-mmio devices), GDT, IDT and the page tables that
/// identity-map the first GiB with 2 MiB pages.
pub fn write_boot_structures(
    mem: &GuestMemoryMmap,
    line: &Cmdline,
    params: &boot_params,
    vcpus: u8,
    windows: &[VirtioWindow],
) -> Result<(), BootError> {
    loader::load_cmdline(mem, GuestAddress(CMDLINE_START), line).map_err(|e| BootError::Cmdline(e.to_string()))?;
    mem.write_obj(*params, GuestAddress(ZERO_PAGE_START))?;
    mem.write_slice(&mptable::build(vcpus, MPTABLE_START), GuestAddress(MPTABLE_START))?;
    for (at, table) in acpi::tables(vcpus, windows)? {
        mem.write_slice(&table, GuestAddress(at))?;
    }
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_START + 8 * i as u64))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_START))?;
    mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START))?;
    mem.write_obj(PDE_START | 0x03, GuestAddress(PDPTE_START))?;
    for i in 0..512u64 {
        // Present, writable, 2 MiB page.
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_START + 8 * i))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_zero_page_carries_the_command_line_the_initramfs_and_the_map() {
        let e820 = layout::e820(&layout::ram_ranges(256 * MIB));
        let p = zero_page(None, 42, Some((0x0f00_0000, 1234)), &e820);
        let hdr = p.hdr;
        assert_eq!(
            (hdr.boot_flag, hdr.header, hdr.type_of_loader),
            (0xaa55, 0x5372_6448, 0xff)
        );
        assert_eq!((hdr.cmd_line_ptr, hdr.cmdline_size), (CMDLINE_START as u32, 42));
        assert_eq!((hdr.ramdisk_image, hdr.ramdisk_size), (0x0f00_0000, 1234));
        assert_eq!(p.e820_entries, 2);
        let second = p.e820_table[1];
        assert_eq!((second.addr, second.size, second.r#type), (HIMEM_START, 255 * MIB, 1));
        // A bzImage's header is kept, its loader fields set.
        let header = setup_header {
            version: 0x20f,
            init_size: 0x200_0000,
            ..Default::default()
        };
        let p = zero_page(Some(header), 10, None, &e820);
        let hdr = p.hdr;
        assert_eq!(
            (hdr.version, hdr.init_size, hdr.type_of_loader),
            (0x20f, 0x200_0000, 0xff)
        );
        assert_eq!({ hdr.ramdisk_image }, 0);
    }

    #[test]
    fn gdt_entries_match_the_well_known_values() {
        assert_eq!(GDT[1], 0x00af_9b00_0000_ffff);
        assert_eq!(GDT[2], 0x00cf_9300_0000_ffff);
        assert_eq!(GDT[3], 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn the_command_line_starts_with_the_machine_s_parameters() {
        let line = cmdline("  quiet rdinit=/init ").unwrap();
        let text = line.as_cstring().unwrap().into_string().unwrap();
        assert_eq!(text, format!("{BASE_CMDLINE} quiet rdinit=/init"));
        assert!(cmdline(&"x".repeat(CMDLINE_MAX_SIZE)).is_err());
    }

    #[test]
    fn boot_structures_and_an_initramfs_land_where_the_layout_says() {
        let ranges = layout::ram_ranges(64 * MIB);
        let regions: Vec<_> = ranges.iter().map(|&(s, l)| (GuestAddress(s), l as usize)).collect();
        let mem = GuestMemoryMmap::from_ranges(&regions).unwrap();
        let line = cmdline("quiet").unwrap();
        let params = zero_page(None, 10, None, &layout::e820(&ranges));
        write_boot_structures(&mem, &line, &params, 2, &[]).unwrap();
        let mut rsdp = [0u8; 8];
        mem.read_slice(&mut rsdp, GuestAddress(ACPI_START)).unwrap();
        assert_eq!(&rsdp, b"RSD PTR ");
        assert_eq!({ params.acpi_rsdp_addr }, ACPI_START);
        let pde: u64 = mem.read_obj(GuestAddress(PDE_START + 8)).unwrap();
        assert_eq!(pde, (1 << 21) | 0x83);
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(MPTABLE_START)).unwrap();
        assert_eq!(&sig, b"_MP_");
        let mut word = [0u8; 7];
        mem.read_slice(&mut word, GuestAddress(CMDLINE_START)).unwrap();
        assert_eq!(&word, b"console");

        let dir = std::env::temp_dir().join(format!("ramkey-vmm-initrd-{}", std::process::id()));
        std::fs::write(&dir, vec![7u8; 5000]).unwrap();
        let (at, size) = load_initrd(&mem, &ranges, 16 * MIB, &dir).unwrap();
        assert_eq!(size, 5000);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(at + 4999)).unwrap(), 7);
        let err = load_initrd(&mem, &ranges, 63 * MIB + 4096 * 255, &dir).unwrap_err();
        assert!(matches!(err, BootError::InitrdTooBig { .. }), "{err}");
        let _ = std::fs::remove_file(&dir);
        let not_a_kernel = load_kernel(&mem, Path::new("/proc/self/cmdline"));
        assert!(matches!(
            not_a_kernel,
            Err(BootError::Kernel { .. } | BootError::Open { .. })
        ));
    }
}

//! The guest's physical memory map: where RAM is, where the boot structures go (zero page,
//! command line, page tables, GDT, MP table), where the initramfs is placed, and the e820
//! table the kernel reads. Pure arithmetic, tested without KVM.

/// The MP table, in the last KiB of base memory (where Linux scans for it).
pub const MPTABLE_START: u64 = 0x9_fc00;
/// Base memory ends where the EBDA starts; RAM resumes at [`HIMEM_START`].
pub const EBDA_START: u64 = MPTABLE_START;
/// The first byte of high memory; a bzImage's protected-mode kernel is loaded here.
pub const HIMEM_START: u64 = 0x10_0000;
/// The global descriptor table and the (empty) interrupt descriptor table.
pub const GDT_START: u64 = 0x500;
pub const IDT_START: u64 = 0x520;
/// The zero page (`struct boot_params`) of the 64-bit boot protocol.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// The boot stack grows down from here.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// The identity-mapped page tables that put the boot vCPU in long mode: one PML4, one PDPT
/// and one page directory of 2 MiB pages covering the first GiB.
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// The kernel command line, and its room.
pub const CMDLINE_START: u64 = 0x2_0000;
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// The 32-bit hole below 4 GiB that RAM skips: the IOAPIC and LAPIC live at its top, and
/// the MMIO devices (virtio-mmio, phase 2) get their windows from its start.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const MMIO_GAP_END: u64 = 1 << 32;
/// Where the IOAPIC and the local APICs are mapped (fixed by the x86 platform).
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const APIC_START: u64 = 0xfee0_0000;

/// The ACPI tables (RSDP first, where the kernel scans for it) live in the legacy BIOS
/// area, which the e820 map leaves out of RAM.
pub const ACPI_START: u64 = 0xe_0000;
pub const ACPI_END: u64 = 0x10_0000;

/// The virtio-mmio windows: one page each from the start of the MMIO gap. Device `i` has
/// window `MMIO_GAP_START + i * VIRTIO_MMIO_SIZE` and interrupt `VIRTIO_IRQ_BASE + i`:
/// IOAPIC pins 16–23, above the ISA interrupts (the CMOS clock's IRQ 8 stays free).
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
pub const VIRTIO_IRQ_BASE: u32 = 16;
pub const MAX_VIRTIO_DEVICES: usize = 8;

/// Where virtio-mmio device `i` sits and which interrupt it raises.
pub fn virtio_window(i: usize) -> (u64, u32) {
    (MMIO_GAP_START + i as u64 * VIRTIO_MMIO_SIZE, VIRTIO_IRQ_BASE + i as u32)
}

/// A page.
pub const PAGE_SIZE: u64 = 4096;

/// e820 entry types.
pub const E820_RAM: u32 = 1;

/// The guest's RAM ranges (start, length) for `bytes` of memory: one range below the MMIO
/// gap, and the rest above 4 GiB.
pub fn ram_ranges(bytes: u64) -> Vec<(u64, u64)> {
    if bytes <= MMIO_GAP_START {
        vec![(0, bytes)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, bytes - MMIO_GAP_START)]
    }
}

/// The e820 map the kernel gets: base memory up to the EBDA, then every RAM byte from
/// [`HIMEM_START`] on. The EBDA, the legacy video area and the BIOS area stay out of it.
pub fn e820(ranges: &[(u64, u64)]) -> Vec<(u64, u64, u32)> {
    let mut map = vec![(0, EBDA_START, E820_RAM)];
    for &(start, len) in ranges {
        let start_at = start.max(HIMEM_START);
        let end = start + len;
        if end > start_at {
            map.push((start_at, end - start_at, E820_RAM));
        }
    }
    map
}

/// Where an initramfs of `size` bytes goes: as high as possible in the RAM below the MMIO
/// gap, page aligned, above `kernel_end`. `None` when it does not fit.
pub fn initrd_address(ranges: &[(u64, u64)], kernel_end: u64, size: u64) -> Option<u64> {
    let (start, len) = *ranges.first()?;
    let top = start + len;
    let at = top.checked_sub(size)? & !(PAGE_SIZE - 1);
    (at >= kernel_end.max(HIMEM_START)).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn small_guests_have_one_range_and_large_ones_skip_the_mmio_gap() {
        assert_eq!(ram_ranges(256 * MIB), vec![(0, 256 * MIB)]);
        assert_eq!(ram_ranges(MMIO_GAP_START), vec![(0, MMIO_GAP_START)]);
        assert_eq!(
            ram_ranges(4096 * MIB),
            vec![(0, MMIO_GAP_START), (MMIO_GAP_END, 1024 * MIB)]
        );
    }

    #[test]
    fn the_e820_map_leaves_out_the_ebda_and_the_bios_area() {
        let map = e820(&ram_ranges(256 * MIB));
        assert_eq!(map, vec![(0, 0x9_fc00, 1), (0x10_0000, 255 * MIB, 1)]);
        let big = e820(&ram_ranges(4096 * MIB));
        assert_eq!(big.len(), 3);
        assert_eq!(big[2], (MMIO_GAP_END, 1024 * MIB, 1));
        // Nothing overlaps the boot structures' area's end or the MMIO gap.
        for &(start, len, _) in &big {
            assert!(start + len <= MMIO_GAP_START || start >= MMIO_GAP_END);
        }
    }

    #[test]
    fn the_initramfs_goes_to_the_top_of_low_memory_page_aligned() {
        let ranges = ram_ranges(256 * MIB);
        let at = initrd_address(&ranges, 40 * MIB, 10_000_001).unwrap();
        assert_eq!(at % PAGE_SIZE, 0);
        assert!(at + 10_000_001 <= 256 * MIB);
        assert!(256 * MIB - (at + 10_000_001) < PAGE_SIZE);
        // Above the gap it still goes below 3 GiB.
        let at = initrd_address(&ram_ranges(8192 * MIB), 40 * MIB, 4096).unwrap();
        assert_eq!(at, MMIO_GAP_START - 4096);
        // Too big to fit above the kernel.
        assert_eq!(initrd_address(&ranges, 200 * MIB, 100 * MIB), None);
        assert_eq!(initrd_address(&ranges, 0, 300 * MIB), None);
    }

    #[test]
    fn the_boot_structures_do_not_overlap() {
        let areas = [
            (GDT_START, 4 * 8),
            (IDT_START, 8),
            (ZERO_PAGE_START, PAGE_SIZE),
            (PML4_START, PAGE_SIZE),
            (PDPTE_START, PAGE_SIZE),
            (PDE_START, PAGE_SIZE),
            (CMDLINE_START, CMDLINE_MAX_SIZE as u64),
            (MPTABLE_START, 1024),
        ];
        for (i, a) in areas.iter().enumerate() {
            for b in &areas[i + 1..] {
                assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{a:x?} overlaps {b:x?}");
            }
        }
        const { assert!(BOOT_STACK_POINTER > ZERO_PAGE_START + PAGE_SIZE && BOOT_STACK_POINTER < PML4_START) };
    }
}

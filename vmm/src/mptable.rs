//! The Intel MultiProcessor table (spec 1.4) that tells the guest kernel how many vCPUs it
//! has and where the IOAPIC is, without ACPI: a floating pointer, a configuration table
//! header, one processor entry per vCPU, an ISA bus, the IOAPIC, the 24 ISA/IOAPIC
//! interrupt routes and the two local interrupt lines. Built as bytes (Firecracker's
//! `mptable.rs` does the same with bindgen structs).

use crate::layout::{APIC_START, IOAPIC_START};

/// The most vCPUs whose entries still fit in the last KiB of base memory.
pub const MAX_VCPUS: u8 = 32;
/// IOAPIC input pins routed 1:1 from the ISA bus.
const IRQS: u8 = 24;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// The table for `vcpus` vCPUs, to be written at guest address `at`.
pub fn build(vcpus: u8, at: u64) -> Vec<u8> {
    let ioapic_id = vcpus + 1;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..vcpus {
        entries.push(0); // processor
        entries.push(id);
        entries.push(APIC_VERSION);
        entries.push(if id == 0 { 0b11 } else { 0b01 }); // enabled, bootstrap processor
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // signature: family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]); // usable
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    count += 1;
    for irq in 0..IRQS {
        // I/O interrupt: INT, bus default polarity and trigger, ISA bus 0, to the IOAPIC.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupts: ExtINT on every LAPIC's LINT0, NMI on LINT1.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_at = at + 16;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    header.push(4); // spec revision 1.4
    header.push(0); // checksum, below
    header.extend_from_slice(b"RAMKEY  ");
    header.extend_from_slice(b"RAMKEY-VMM  ");
    header.extend_from_slice(&[0; 4]); // no OEM table
    header.extend_from_slice(&[0; 2]);
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut pointer = Vec::with_capacity(16);
    pointer.extend_from_slice(b"_MP_");
    pointer.extend_from_slice(&(table_at as u32).to_le_bytes());
    pointer.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // 16 bytes, spec 1.4
    pointer[10] = checksum(&pointer);

    let mut out = pointer;
    out.extend_from_slice(&table);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{EBDA_START, HIMEM_START, MPTABLE_START};

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
    }

    #[test]
    fn the_table_checks_out_and_lists_every_vcpu() {
        for vcpus in [1, 2, MAX_VCPUS] {
            let bytes = build(vcpus, MPTABLE_START);
            assert_eq!(&bytes[..4], b"_MP_");
            assert!(sums_to_zero(&bytes[..16]));
            let pointer = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
            assert_eq!(u64::from(pointer), MPTABLE_START + 16);
            let table = &bytes[16..];
            assert_eq!(&table[..4], b"PCMP");
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert!(sums_to_zero(table));
            let count = u16::from_le_bytes([table[34], table[35]]);
            assert_eq!(count, u16::from(vcpus) + 2 + 24 + 2);
            let processors = table[44..].chunks(20).take(vcpus as usize);
            assert!(processors.enumerate().all(|(i, p)| p[0] == 0 && p[1] == i as u8));
            assert_eq!(table[44 + 3], 0b11, "vCPU 0 is the bootstrap processor");
            // It stays in the last KiB of base memory.
            assert!(MPTABLE_START + bytes.len() as u64 <= HIMEM_START.min(EBDA_START + 1024));
        }
    }
}

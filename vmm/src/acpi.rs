//! The ACPI tables that tell the guest kernel about its CPUs, its interrupt controllers and
//! its virtio-mmio devices (Debian's 6.1 kernel cannot take virtio-mmio devices from the
//! command line): an RSDP in the BIOS area, an XSDT, a hardware-reduced FADT, a MADT with
//! one local APIC per vCPU and the IOAPIC, and a DSDT with one `LNRO0005` device per
//! virtio-mmio window, as Firecracker and Cloud Hypervisor generate them. Built with the
//! rust-vmm `acpi_tables` crate (tables and the AML builder); laid out one after the other
//! from [`ACPI_START`].

use acpi_tables::Aml;
use acpi_tables::aml::{self, Device, EISAName, IO, Interrupt, Memory32Fixed, Name, Package, ResourceTemplate, Scope};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;

use crate::devices::power::{S5_SLEEP_TYPE, SLEEP_PORT};
use crate::devices::serial::{COM1_IRQ, COM1_PORT, COM1_PORTS};
use crate::layout::{ACPI_END, ACPI_START, APIC_START, IOAPIC_START, VIRTIO_MMIO_SIZE};

const OEM_ID: [u8; 6] = *b"RAMKEY";
const OEM_REVISION: u32 = 1;

/// FADT `IAPC_BOOT_ARCH` bits: an 8042 is there (so the guest's i8042 driver probes the
/// VMM's), no VGA, no MSI, no ASPM control for the OS.
const IAPC_8042: u16 = 1 << 1;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;
const IAPC_PCIE_ASPM_CONTROLS: u16 = 1 << 4;

/// A virtio-mmio device as the guest must see it: its register window and interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioWindow {
    pub base: u64,
    pub irq: u32,
}

/// The tables did not fit in the BIOS area.
#[derive(Debug, thiserror::Error)]
#[error("the ACPI tables need {0} bytes, more than the BIOS area holds")]
pub struct TooBig(pub usize);

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut out = Vec::new();
    table.to_aml_bytes(&mut out);
    out
}

/// A legacy ISA device for the DSDT: its PNP id, ports and interrupt. A hardware-reduced
/// guest has no legacy PIC and so no ISA interrupt of its own: a device it is not told about
/// gets no interrupt (the serial console's output stalls).
fn isa_device(name: &str, hid: &str, ports: &[(u16, u8)], irq: u32) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &EISAName::new(hid));
    let uid = Name::new("_UID".into(), &aml::ZERO);
    let io: Vec<IO> = ports.iter().map(|&(port, len)| IO::new(port, port, 1, len)).collect();
    let irq = Interrupt::new(true, true, false, false, irq);
    let mut resources: Vec<&dyn Aml> = io.iter().map(|r| r as &dyn Aml).collect();
    resources.push(&irq);
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(resources));
    bytes(&Device::new(name.into(), vec![&hid, &uid, &crs]))
}

/// The DSDT: the serial port (`PNP0501`, COM1, IRQ 4) and the i8042 keyboard controller
/// (`PNP0303`, IRQ 1), then per virtio-mmio window `\_SB_.Vnnn` with `_HID` "LNRO0005"
/// (the Linux virtio-mmio ACPI id), `_UID`, and `_CRS` (the window as Memory32Fixed, the
/// interrupt edge-triggered, active high).
pub fn dsdt(windows: &[VirtioWindow]) -> Vec<u8> {
    let mut devices = vec![
        isa_device("COM1", "PNP0501", &[(COM1_PORT as u16, COM1_PORTS as u8)], COM1_IRQ),
        isa_device("PS2_", "PNP0303", &[(0x60, 1), (0x64, 1)], 1),
    ];
    for (i, w) in windows.iter().enumerate() {
        let hid = Name::new("_HID".into(), &"LNRO0005");
        let uid = Name::new("_UID".into(), &(i as u32));
        let cca = Name::new("_CCA".into(), &aml::ONE);
        let crs = Name::new(
            "_CRS".into(),
            &ResourceTemplate::new(vec![
                &Memory32Fixed::new(true, w.base as u32, VIRTIO_MMIO_SIZE as u32),
                &Interrupt::new(true, true, false, false, w.irq),
            ]),
        );
        devices.push(bytes(&Device::new(
            format!("V{i:03}").as_str().into(),
            vec![&hid, &uid, &cca, &crs],
        )));
    }
    let raw: Vec<Raw> = devices.iter().map(|d| Raw(d)).collect();
    let children: Vec<&dyn Aml> = raw.iter().map(|d| d as &dyn Aml).collect();
    let scope = Scope::new("\\_SB_".into(), children);
    let mut table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, *b"RAMKEYDS", OEM_REVISION);
    table.append_slice(&bytes(&scope));
    // \_S5_: soft off is sleep type 5 (one integer: SLP_TYPa in its low byte, b above).
    table.append_slice(&bytes(&Name::new("_S5_".into(), &Package::new(vec![&S5_SLEEP_TYPE]))));
    table.as_slice().to_vec()
}

/// Raw AML bytes are AML too (the devices, built before the scope that holds them).
struct Raw<'a>(&'a [u8]);

impl Aml for Raw<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(self.0);
    }
}

/// The MADT: the LAPIC address, one enabled local APIC per vCPU (APIC id = vCPU index),
/// and the IOAPIC with GSI base 0 (its id after the CPUs', as in the MP table).
pub fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        *b"RAMKEYAP",
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START as u32),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(vcpus + 1, IOAPIC_START as u32, 0));
    bytes(&madt)
}

/// The FADT of a hardware-reduced ACPI machine (no PM timer, SCI or GPEs) that points at
/// the DSDT, with the sleep control and status registers (one byte at
/// [`SLEEP_PORT`]) a guest powers off through: Linux offers S5 only when both are there.
pub fn fadt(dsdt_at: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, *b"RAMKEYFA", OEM_REVISION)
        .dsdt_64(dsdt_at)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    let sleep = GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, SLEEP_PORT);
    fadt.sleep_control_reg = sleep;
    fadt.sleep_status_reg = sleep;
    fadt.iapc_boot_arch = (IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED | IAPC_PCIE_ASPM_CONTROLS).into();
    bytes(&fadt.finalize())
}

/// Rounds `at` up to the next 64-byte boundary.
fn align(at: u64) -> u64 {
    (at + 63) & !63
}

/// Every table and where it goes: the RSDP at [`ACPI_START`], then the DSDT, FADT, MADT
/// and XSDT. The RSDP's address goes into the zero page too.
pub fn tables(vcpus: u8, windows: &[VirtioWindow]) -> Result<Vec<(u64, Vec<u8>)>, TooBig> {
    let dsdt_at = align(ACPI_START + Rsdp::len() as u64);
    let dsdt = dsdt(windows);
    let fadt_at = align(dsdt_at + dsdt.len() as u64);
    let fadt = fadt(dsdt_at);
    let madt_at = align(fadt_at + fadt.len() as u64);
    let madt = madt(vcpus);
    let xsdt_at = align(madt_at + madt.len() as u64);
    let mut xsdt = XSDT::new(OEM_ID, *b"RAMKEYXS", OEM_REVISION);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    let xsdt = bytes(&xsdt);
    let end = xsdt_at + xsdt.len() as u64;
    if end > ACPI_END {
        return Err(TooBig((end - ACPI_START) as usize));
    }
    let rsdp = bytes(&Rsdp::new(OEM_ID, xsdt_at));
    Ok(vec![
        (ACPI_START, rsdp),
        (dsdt_at, dsdt),
        (fadt_at, fadt),
        (madt_at, madt),
        (xsdt_at, xsdt),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn every_table_sums_to_zero_and_the_pointers_chain_up() {
        let windows = [
            VirtioWindow {
                base: 0xc000_0000,
                irq: 16,
            },
            VirtioWindow {
                base: 0xc000_1000,
                irq: 17,
            },
        ];
        let tables = tables(2, &windows).unwrap();
        let (rsdp_at, rsdp) = &tables[0];
        assert_eq!(*rsdp_at, 0xe_0000);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0, "the ACPI 1.0 checksum");
        assert_eq!(sum(rsdp), 0, "the extended checksum");
        for (at, table) in &tables[1..] {
            assert_eq!(u32_at(table, 4) as usize, table.len(), "length of {:?}", &table[..4]);
            assert_eq!(sum(table), 0, "checksum of {:?}", &table[..4]);
            assert!(*at >= ACPI_START && at + table.len() as u64 <= ACPI_END);
        }
        let find = |sig: &[u8]| tables.iter().find(|(_, t)| &t[..4] == sig).unwrap().clone();
        let (xsdt_at, xsdt) = find(b"XSDT");
        assert_eq!(u64_at(rsdp, 24), xsdt_at);
        let (fadt_at, fadt) = find(b"FACP");
        let (madt_at, madt) = find(b"APIC");
        assert_eq!((u64_at(&xsdt, 36), u64_at(&xsdt, 44)), (fadt_at, madt_at));
        let (dsdt_at, dsdt) = find(b"DSDT");
        assert_eq!(u64_at(&fadt, 140), dsdt_at, "X_DSDT");
        assert_ne!(u32_at(&fadt, 112) & (1 << 20), 0, "hardware-reduced");
        // SLEEP_CONTROL_REG (at 244) and SLEEP_STATUS_REG (256): system I/O, 8 bits, byte
        // access, the sleep port.
        let sleep = [1, 8, 0, 1, 0xc0, 3, 0, 0, 0, 0, 0, 0];
        assert_eq!((&fadt[244..256], &fadt[256..268]), (&sleep[..], &sleep[..]));
        // MADT: 2 local APICs (type 0, ids 0 and 1) and the IOAPIC (type 1, id 3).
        assert_eq!(u32_at(&madt, 36), APIC_START as u32);
        assert_eq!(&madt[44..52], &[0, 8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&madt[52..56], &[0, 8, 1, 1]);
        assert_eq!(&madt[60..64], &[1, 12, 3, 0]);
        assert_eq!(u32_at(&madt, 64), IOAPIC_START as u32);
        assert_eq!(madt.len(), 44 + 2 * 8 + 12);
        // DSDT: one LNRO0005 device per window, with its window and interrupt.
        assert_eq!(count(&dsdt, b"LNRO0005"), 2);
        assert_eq!(count(&dsdt, b"V000"), 1);
        assert_eq!(count(&dsdt, b"V001"), 1);
        // Memory32Fixed: tag 0x86, length 9, read-write, base, length.
        let mut window = vec![0x86, 9, 0, 1];
        window.extend_from_slice(&0xc000_1000u32.to_le_bytes());
        window.extend_from_slice(&0x1000u32.to_le_bytes());
        assert_eq!(count(&dsdt, &window), 1);
        // Extended interrupt: tag 0x89, length 6, consumer + edge, one interrupt, 17.
        let irq = [0x89, 6, 0, 0b11, 1, 17, 0, 0, 0];
        assert_eq!(count(&dsdt, &irq), 1);
    }

    #[test]
    fn without_windows_the_dsdt_has_the_serial_port_and_the_i8042() {
        let dsdt = dsdt(&[]);
        assert_eq!(count(&dsdt, b"LNRO0005"), 0);
        assert_eq!(count(&dsdt, b"COM1"), 1);
        // EISA id PNP0501, compressed; the ports 0x3f8-0x3ff; IRQ 4.
        assert_eq!(count(&dsdt, &[0x0c, 0x41, 0xd0, 0x05, 0x01]), 1);
        assert_eq!(count(&dsdt, &[0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8]), 1);
        assert_eq!(count(&dsdt, &[0x89, 6, 0, 0b11, 1, 4, 0, 0, 0]), 1);
        // Name(_S5_, Package(1) { 5 }) at the root, after the \_SB_ scope.
        assert!(dsdt.ends_with(&[0x08, b'_', b'S', b'5', b'_', 0x12, 4, 1, 0x0a, 5]));
        assert_eq!(sum(&dsdt), 0);
    }
}

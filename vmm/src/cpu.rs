//! A vCPU's state at power-on: its CPUID (KVM's supported set, with its APIC id and the
//! hypervisor bit), its local APIC's LINT0/LINT1 (ExtINT and NMI), and for the boot vCPU
//! the 64-bit boot protocol's registers: long mode on the identity page tables, the boot
//! GDT, `rip` at the kernel's entry and `rsi` at the zero page.

use kvm_bindings::{CpuId, kvm_fpu, kvm_lapic_state, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;

use crate::boot::GDT;
use crate::kvm::KvmError;
use crate::layout::{BOOT_STACK_POINTER, GDT_START, IDT_START, PML4_START, ZERO_PAGE_START};

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Local APIC registers: the two local interrupt lines, and their delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Gives vCPU `id` of `vcpus` its CPUID: its APIC id, the vCPU count, the hypervisor bit.
pub fn patch_cpuid(cpuid: &mut CpuId, id: u8, vcpus: u8) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => {
                entry.ebx = (entry.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(vcpus) << 16);
                entry.ecx |= 1 << 31; // running under a hypervisor
                if vcpus > 1 {
                    entry.edx |= 1 << 28; // HTT: the count above is valid
                }
            }
            0xb | 0x1f => entry.edx = u32::from(id),
            0x8000_001e => entry.eax = u32::from(id),
            _ => {}
        }
    }
}

/// A segment register from a GDT entry.
pub fn segment(entry: u64, index: u16) -> kvm_segment {
    let bit = |shift: u32| ((entry >> shift) & 1) as u8;
    let limit = (((entry >> 32) & 0xf_0000) | (entry & 0xffff)) as u32;
    let base = ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0xff_ffff);
    kvm_segment {
        base,
        limit: if bit(55) == 1 { (limit << 12) | 0xfff } else { limit },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: bit(47),
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: 1 - bit(47),
        padding: 0,
    }
}

/// The boot vCPU's special registers for long mode on the boot page tables.
pub fn long_mode(sregs: &mut kvm_sregs) {
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    let code = segment(GDT[1], 1);
    let data = segment(GDT[2], 2);
    sregs.cs = code;
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment(GDT[3], 3);
    sregs.cr3 = PML4_START;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// The boot vCPU's general registers: the entry point, the boot stack, the zero page.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    }
}

fn lapic_reg(lapic: &kvm_lapic_state, at: usize) -> u32 {
    let b = |i: usize| lapic.regs[at + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set_lapic_reg(lapic: &mut kvm_lapic_state, at: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        lapic.regs[at + i] = byte as _;
    }
}

/// LINT0 delivers the PIC's interrupts (ExtINT), LINT1 the NMI, as on a PC.
pub fn set_lint(lapic: &mut kvm_lapic_state) {
    let mode = |value: u32, mode: u32| (value & !0x700) | (mode << 8);
    let lvt0 = lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(lapic, APIC_LVT0, mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, mode(lvt1, APIC_MODE_NMI));
}

fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, KvmError> {
    r.map_err(|source| KvmError { what, source })
}

/// Sets vCPU `id` up; `entry` is the kernel's entry point, used by the boot vCPU (0). The
/// others wait for the guest's INIT/SIPI.
pub fn configure(vcpu: &VcpuFd, id: u8, vcpus: u8, supported: &CpuId, entry: u64) -> Result<(), KvmError> {
    let mut cpuid = supported.clone();
    patch_cpuid(&mut cpuid, id, vcpus);
    ioctl("KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))?;
    let mut lapic = ioctl("KVM_GET_LAPIC", vcpu.get_lapic())?;
    set_lint(&mut lapic);
    ioctl("KVM_SET_LAPIC", vcpu.set_lapic(&lapic))?;
    if id == 0 {
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        ioctl("KVM_SET_FPU", vcpu.set_fpu(&fpu))?;
        let mut sregs = ioctl("KVM_GET_SREGS", vcpu.get_sregs())?;
        long_mode(&mut sregs);
        ioctl("KVM_SET_SREGS", vcpu.set_sregs(&sregs))?;
        ioctl("KVM_SET_REGS", vcpu.set_regs(&boot_regs(entry)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kvm_bindings::kvm_cpuid_entry2;

    use super::*;

    #[test]
    fn the_boot_segments_are_flat_64_bit_code_and_data() {
        let code = segment(GDT[1], 1);
        assert_eq!((code.base, code.limit, code.selector), (0, 0xffff_ffff, 8));
        assert_eq!((code.l, code.db, code.present, code.s, code.type_), (1, 0, 1, 1, 0xb));
        let data = segment(GDT[2], 2);
        assert_eq!((data.l, data.db, data.selector, data.type_), (0, 1, 16, 3));
        assert_eq!(segment(0, 0).unusable, 1);
        let mut sregs = kvm_sregs::default();
        long_mode(&mut sregs);
        assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((sregs.cr3, sregs.gdt.limit, sregs.tr.selector), (PML4_START, 31, 24));
        let regs = boot_regs(0x100_0000);
        assert_eq!((regs.rip, regs.rsi, regs.rflags), (0x100_0000, ZERO_PAGE_START, 2));
    }

    #[test]
    fn each_vcpu_gets_its_apic_id() {
        let leaf = |function| kvm_cpuid_entry2 {
            function,
            ebx: 0xaabb_ccdd,
            ..Default::default()
        };
        let mut cpuid = CpuId::from_entries(&[leaf(1), leaf(0xb), leaf(7)]).unwrap();
        patch_cpuid(&mut cpuid, 3, 4);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx, 0x0304_ccdd);
        assert_eq!(e[0].ecx >> 31, 1);
        assert_eq!(e[0].edx & (1 << 28), 1 << 28);
        assert_eq!(e[1].edx, 3);
        assert_eq!(e[2].ebx, 0xaabb_ccdd);
    }

    #[test]
    fn lint0_is_extint_and_lint1_is_nmi() {
        let mut lapic = kvm_lapic_state::default();
        set_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0700);
        set_lint(&mut lapic);
        assert_eq!(lapic_reg(&lapic, APIC_LVT0), 0x0001_0700);
        assert_eq!(lapic_reg(&lapic, APIC_LVT1), 0x400);
    }
}

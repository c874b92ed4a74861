//! The VMM's sys layer: opening KVM (and saying in one line why it cannot be used),
//! creating the VM with its in-kernel interrupt controllers and timer, and handing guest
//! memory to KVM — the one `unsafe` call the VMM makes.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

/// What to do when KVM is not usable, said once for every reason.
const REMEDY: &str = "load kvm_amd or kvm_intel (the CPU needs AMD SVM or Intel VMX, also when nested) \
or run on a machine with hardware virtualisation";

/// KVM cannot run a VM here.
#[derive(Debug, thiserror::Error)]
pub enum NoKvm {
    #[error("no usable KVM: {path} is missing: {REMEDY}")]
    Missing { path: PathBuf },
    #[error("no usable KVM: opening {path}: {source}: {REMEDY}")]
    Open { path: PathBuf, source: kvm_ioctls::Error },
    #[error("no usable KVM: {path} speaks KVM API {version}, not 12")]
    Api { path: PathBuf, version: i32 },
    #[error("no usable KVM: the kernel's KVM lacks {0}")]
    Capability(&'static str),
    #[error("no usable KVM: KVM_CREATE_VM failed: {0}: {REMEDY}")]
    CreateVm(kvm_ioctls::Error),
}

/// An ioctl on the VM failed while setting it up.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct KvmError {
    pub what: &'static str,
    pub source: kvm_ioctls::Error,
}

fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, KvmError> {
    r.map_err(|source| KvmError { what, source })
}

/// KVM and one VM on it.
#[derive(Debug)]
pub struct Hypervisor {
    pub kvm: Kvm,
    pub vm: VmFd,
}

/// The capabilities the VMM relies on.
const NEEDED: &[(Cap, &str)] = &[
    (Cap::Irqchip, "an in-kernel irqchip (KVM_CAP_IRQCHIP)"),
    (Cap::UserMemory, "user memory regions (KVM_CAP_USER_MEMORY)"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Pit2, "an in-kernel PIT (KVM_CAP_PIT2)"),
    (Cap::Irqfd, "irqfds (KVM_CAP_IRQFD)"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
];

/// Opens KVM at `path` and creates a VM: the probe. Every way it fails is a [`NoKvm`].
pub fn open(path: &Path) -> Result<Hypervisor, NoKvm> {
    if !path.exists() {
        return Err(NoKvm::Missing { path: path.into() });
    }
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| NoKvm::Missing { path: path.into() })?;
    let kvm = Kvm::new_with_path(&cpath).map_err(|source| NoKvm::Open {
        path: path.into(),
        source,
    })?;
    let version = kvm.get_api_version();
    if version != 12 {
        return Err(NoKvm::Api {
            path: path.into(),
            version,
        });
    }
    if let Some((_, name)) = NEEDED.iter().find(|(cap, _)| !kvm.check_extension(*cap)) {
        return Err(NoKvm::Capability(name));
    }
    let vm = kvm.create_vm().map_err(NoKvm::CreateVm)?;
    Ok(Hypervisor { kvm, vm })
}

/// Where KVM keeps the TSS it needs for real-mode emulation (three pages below the BIOS).
const TSS_ADDRESS: usize = 0xfffb_d000;

/// The platform every guest gets: the in-kernel PIC, IOAPIC and local APICs, and the PIT.
pub fn platform(vm: &VmFd) -> Result<(), KvmError> {
    ioctl("KVM_SET_TSS_ADDR", vm.set_tss_address(TSS_ADDRESS))?;
    ioctl("KVM_CREATE_IRQCHIP", vm.create_irq_chip())?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    ioctl("KVM_CREATE_PIT2", vm.create_pit2(pit))
}

/// Gives KVM every region of `mem`, one memory slot each.
pub fn add_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), KvmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region.get_host_address(MemoryRegionAddress(0)).map_err(|_| KvmError {
            what: "guest memory has no host mapping",
            source: kvm_ioctls::Error::new(libc::EFAULT),
        })? as u64;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host,
        };
        // SAFETY: `userspace_addr` and `memory_size` describe a live mapping owned by `mem`
        // (vm-memory's mmap of exactly that length), and the regions of a
        // `GuestMemoryMmap` do not overlap in guest physical addresses. `mem` outlives the
        // VM: the VMM keeps it until the process exits, so KVM never sees the mapping go
        // away while the guest can still touch it.
        ioctl("KVM_SET_USER_MEMORY_REGION", unsafe {
            vm.set_user_memory_region(region)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_one_line_that_says_what_to_do() {
        let err = open(Path::new("/nonexistent/kvm")).unwrap_err();
        let line = err.to_string();
        assert!(
            line.starts_with("no usable KVM: /nonexistent/kvm is missing: load kvm_amd or kvm_intel"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let not_kvm = open(Path::new("/dev/null")).unwrap_err();
        assert!(not_kvm.to_string().starts_with("no usable KVM:"), "{not_kvm}");
    }
}

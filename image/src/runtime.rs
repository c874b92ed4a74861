//! How a personality runs: as a zone (a container on the platform's kernel, the default) or
//! as a VM (a KVM micro-VM with its own kernel, [`VmShape`] its size). The manifest says it
//! with `runtime = "vm"` and an optional `[vm]` table.

use serde::{Deserialize, Serialize};

/// What runs the personality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// A zone: namespaces, a cgroup, seccomp, on the platform's kernel.
    #[default]
    Zone,
    /// A KVM micro-VM under `ramkey-vmm`, booting the platform's kernel in guest mode.
    Vm,
}

impl Runtime {
    /// Whether this is the default (a zone): the manifest leaves the key out then.
    pub fn is_zone(&self) -> bool {
        *self == Runtime::Zone
    }

    /// `zone` or `vm`, as `ramkeyctl personality list` shows it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Runtime::Zone => "zone",
            Runtime::Vm => "vm",
        }
    }
}

/// `[vm]`: the machine a VM personality gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmShape {
    /// Virtual CPUs, 1 to [`MAX_VCPUS`].
    #[serde(default = "default_vcpus")]
    pub vcpus: u8,
    /// Guest memory in MiB, [`MIN_MEMORY_MIB`] to [`MAX_MEMORY_MIB`].
    #[serde(default = "default_memory")]
    pub memory_mib: u32,
}

/// Memory a VM's cgroup allows beyond its guest's RAM: the VMM's own pages, page tables,
/// the guest initramfs while it is read, the device threads.
pub const VMM_OVERHEAD_MIB: u32 = 64;

/// The most vCPUs a VM personality may ask for (the VMM's limit).
pub const MAX_VCPUS: u8 = 32;
/// The least guest memory: the platform's kernel and the guest init need about 64 MiB.
pub const MIN_MEMORY_MIB: u32 = 96;
/// The most guest memory.
pub const MAX_MEMORY_MIB: u32 = 64 * 1024;

fn default_vcpus() -> u8 {
    1
}

fn default_memory() -> u32 {
    256
}

impl Default for VmShape {
    fn default() -> Self {
        VmShape {
            vcpus: default_vcpus(),
            memory_mib: default_memory(),
        }
    }
}

impl VmShape {
    /// Whether this is the default shape (left out of the manifest).
    pub fn is_default(&self) -> bool {
        *self == VmShape::default()
    }

    /// The memory cap of the VM's cgroup: guest memory plus [`VMM_OVERHEAD_MIB`].
    pub fn cap_mib(&self) -> u32 {
        self.memory_mib.saturating_add(VMM_OVERHEAD_MIB)
    }

    /// Checks the ranges; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(format!("vm.vcpus = {}: give 1 to {MAX_VCPUS}", self.vcpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(format!(
                "vm.memory_mib = {}: give {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} (MiB of guest memory)",
                self.memory_mib
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_out_of_range_are_refused_with_their_key() {
        assert!(VmShape::default().validate().is_ok());
        let none = VmShape {
            vcpus: 0,
            ..VmShape::default()
        };
        assert!(none.validate().unwrap_err().contains("vm.vcpus = 0"));
        let small = VmShape {
            memory_mib: 32,
            ..VmShape::default()
        };
        assert!(small.validate().unwrap_err().contains("vm.memory_mib = 32"));
    }
}

//! Whether this box can run VM personalities, checked once at boot when one is configured:
//! hardware virtualization in the CPU, the KVM and macvtap modules, `/dev/kvm`, and the
//! platform's kernel on the usbkey for the guests to boot. The answer is the guest kernel,
//! or the one line that says why not.

use std::path::{Path, PathBuf};

use crate::base::cmdline::Cmdline;
use crate::base::paths::Paths;
use crate::devices::modprobe::{KernelLoader, Modprobe};

/// The KVM module of a CPU with these `/proc/cpuinfo` flags: `kvm_amd` for SVM, `kvm_intel`
/// for VMX; the error says what is missing.
pub fn kvm_module(cpuinfo: &str) -> Result<&'static str, String> {
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    if flags.contains(&"svm") {
        Ok("kvm_amd")
    } else if flags.contains(&"vmx") {
        Ok("kvm_intel")
    } else {
        Err(
            "this CPU offers neither AMD SVM nor Intel VMX (absent, or off in the firmware's setup; \
             under QEMU start the box with -cpu max or -cpu host): VM personalities cannot run here, \
             zones can"
                .into(),
        )
    }
}

/// The kernel the box booted, on the usbkey: `platform/SLOT/vmlinuz` of the slot on the
/// command line (`a` when none says).
pub fn platform_kernel(usbkey: &Path, cmdline: &str) -> Result<PathBuf, String> {
    let slot = Cmdline::parse(cmdline).slot.map_or('a', |s| s.letter());
    let kernel = usbkey.join(format!("platform/{slot}/vmlinuz"));
    if kernel.is_file() {
        Ok(kernel)
    } else {
        Err(format!(
            "the guest boots the platform's own kernel, and {} is not there (a PXE boot has no \
             usbkey): boot the box from its stick to run VM personalities",
            kernel.display()
        ))
    }
}

/// Loads what VMs need and finds the guest kernel; the error is the reason every VM
/// personality is refused.
pub fn enable(paths: &Paths, usbkey: Option<&Path>, modprobe: Option<&mut Modprobe>) -> Result<PathBuf, String> {
    let cpuinfo = std::fs::read_to_string(paths.proc().join("cpuinfo")).unwrap_or_default();
    let kvm = kvm_module(&cpuinfo)?;
    let usbkey = usbkey.ok_or(
        "the guest boots the platform's own kernel, which is on the usbkey, and this box has none \
         mounted (a PXE boot): boot the box from its stick to run VM personalities",
    )?;
    let cmdline = std::fs::read_to_string(paths.cmdline()).unwrap_or_default();
    let kernel = platform_kernel(usbkey, &cmdline)?;
    let modprobe = modprobe.ok_or("no module index: the KVM modules cannot be loaded")?;
    for module in [kvm, "macvtap"] {
        modprobe
            .modprobe(module, &mut KernelLoader)
            .map_err(|e| format!("loading {module}: {e}"))?;
    }
    let device = paths.dev().join("kvm");
    if !device.exists() {
        return Err(format!(
            "{kvm} is loaded but {} did not appear (virtualization off in the firmware?)",
            device.display()
        ));
    }
    crate::notice!("vm: {kvm} and macvtap loaded; guests boot {}", kernel.display());
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kvm_module_follows_the_cpu_flags() {
        assert_eq!(kvm_module("flags\t\t: fpu vme svm lm\n"), Ok("kvm_amd"));
        assert_eq!(kvm_module("processor: 0\nflags : fpu vmx\n"), Ok("kvm_intel"));
        let none = kvm_module("flags : fpu vme lm\n").unwrap_err();
        assert!(none.contains("neither AMD SVM nor Intel VMX"), "{none}");
    }

    #[test]
    fn the_guest_kernel_is_the_booted_slots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("platform/b")).unwrap();
        std::fs::write(dir.path().join("platform/b/vmlinuz"), b"k").unwrap();
        let got = platform_kernel(dir.path(), "console=ttyS0 ramkey.slot=b").unwrap();
        assert_eq!(got, dir.path().join("platform/b/vmlinuz"));
        let missing = platform_kernel(dir.path(), "ramkey.slot=a").unwrap_err();
        assert!(missing.contains("platform/a/vmlinuz is not there"), "{missing}");
    }
}

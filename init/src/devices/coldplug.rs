//! Coldplug: load the modules for every device already in sysfs, until nothing new appears.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::clock::Clock;
use crate::devices::modprobe::{Modprobe, ModuleLoader};

/// Scanning sysfs failed.
#[derive(Debug, thiserror::Error)]
pub enum ColdplugError {
    /// The `devices` directory itself could not be read.
    #[error("cannot read {path}: {source}")]
    ReadDevices {
        /// `<sysfs>/devices`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Passes after which coldplug stops even if modules keep appearing.
const MAX_PASSES: usize = 16;

/// What coldplug did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdplugReport {
    /// Devices with a modalias in the last scan.
    pub devices: usize,
    /// Modules the kernel loaded.
    pub modules_loaded: usize,
    /// Scans of sysfs.
    pub passes: usize,
    /// Module loads that failed.
    pub failures: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl ColdplugReport {
    /// The one summary line.
    pub fn summary(&self) -> String {
        format!(
            "coldplug: {} devices, {} modules loaded in {} ms ({} passes, {} failures)",
            self.devices,
            self.modules_loaded,
            self.elapsed.as_millis(),
            self.passes,
            self.failures
        )
    }
}

/// Every `modalias` value under `<sys_root>/devices`, sorted, without following symlinks.
pub fn scan_modaliases(sys_root: &Path) -> Result<Vec<String>, ColdplugError> {
    let devices = sys_root.join("devices");
    let top = std::fs::read_dir(&devices).map_err(|source| ColdplugError::ReadDevices {
        path: devices.clone(),
        source,
    })?;
    let mut found = Vec::new();
    let mut stack = vec![top];
    while let Some(dir) = stack.pop() {
        for entry in dir.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                // Unreadable directories (permissions, vanished devices) are skipped.
                if let Ok(sub) = std::fs::read_dir(entry.path()) {
                    stack.push(sub);
                }
            } else if kind.is_file()
                && entry.file_name() == "modalias"
                && let Ok(text) = std::fs::read_to_string(entry.path())
            {
                let alias = text.trim();
                if !alias.is_empty() {
                    found.push(alias.to_owned());
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Loads every module matching `modalias`; returns how many the kernel loaded now.
///
/// Failures are logged with the module and errno and counted in `failures`.
pub fn load_for_modalias(
    modalias: &str,
    modprobe: &mut Modprobe,
    loader: &mut dyn ModuleLoader,
    failures: &mut usize,
) -> usize {
    let mut loaded = 0;
    for module in modprobe.index().match_alias(modalias) {
        match modprobe.modprobe(&module, loader) {
            Ok(n) => loaded += n,
            Err(e) => {
                *failures += 1;
                crate::warn!("module {module} for {modalias}: {e}");
            }
        }
    }
    loaded
}

/// Scans sysfs and loads modules until a pass loads nothing new.
///
/// `wanted` filters modaliases (recovery mode only loads what the power button needs).
pub fn coldplug(
    sys_root: &Path,
    modprobe: &mut Modprobe,
    loader: &mut dyn ModuleLoader,
    clock: &dyn Clock,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<ColdplugReport, ColdplugError> {
    let start = clock.since_boot();
    let mut handled = HashSet::new();
    let mut report = ColdplugReport {
        devices: 0,
        modules_loaded: 0,
        passes: 0,
        failures: 0,
        elapsed: Duration::ZERO,
    };
    while report.passes < MAX_PASSES {
        report.passes += 1;
        let aliases = scan_modaliases(sys_root)?;
        report.devices = aliases.len();
        let mut loaded = 0;
        for alias in aliases {
            if wanted(&alias) && handled.insert(alias.clone()) {
                loaded += load_for_modalias(&alias, modprobe, loader, &mut report.failures);
            }
        }
        report.modules_loaded += loaded;
        if loaded == 0 {
            break;
        }
    }
    report.elapsed = clock.since_boot().saturating_sub(start);
    Ok(report)
}

/// The modaliases recovery mode needs: the ACPI power button and evdev.
pub fn power_button_only(modalias: &str) -> bool {
    modalias.starts_with("acpi") || modalias.starts_with("input:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::FakeClock;
    use crate::devices::modprobe::{LoadOutcome, ModprobeError, RecordingLoader};
    use crate::devices::modules::ModuleIndex;
    use std::collections::BTreeMap;

    const DEP: &str = "\
kernel/virtio_pci.ko: kernel/virtio_ring.ko kernel/virtio.ko
kernel/virtio_net.ko: kernel/virtio_ring.ko kernel/virtio.ko kernel/net_failover.ko kernel/failover.ko
kernel/net_failover.ko: kernel/failover.ko
kernel/failover.ko:
kernel/virtio.ko: kernel/virtio_ring.ko
kernel/virtio_ring.ko:
kernel/button.ko:
kernel/evdev.ko:
kernel/e1000.ko:
";
    const ALIAS: &str = "\
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias acpi*:LNXPWRBN:* button
alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
";

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn setup() -> (tempfile::TempDir, Modprobe) {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path();
        write(
            &sys.join("devices/pci0000:00/0000:00:02.0/modalias"),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
        );
        write(
            &sys.join("devices/pci0000:00/0000:00:00.0/modalias"),
            "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00\n",
        );
        write(
            &sys.join("devices/LNXSYSTM:00/LNXPWRBN:00/modalias"),
            "acpi:LNXPWRBN:\n",
        );
        write(&sys.join("devices/platform/serial8250/modalias"), "\n");
        write(&sys.join("devices/pci0000:00/0000:00:02.0/uevent"), "DRIVER=x\n");
        let mut params = BTreeMap::new();
        params.insert("virtio_net".to_owned(), "napi_tx=1".to_owned());
        let mp = Modprobe::new(ModuleIndex::parse(DEP, ALIAS), params);
        (dir, mp)
    }

    /// A loader that makes new devices appear in the fake sysfs, like the kernel.
    struct HotLoader {
        sys: PathBuf,
        inner: RecordingLoader,
    }

    impl ModuleLoader for HotLoader {
        fn load(&mut self, name: &str, path: &Path, params: &str) -> Result<LoadOutcome, ModprobeError> {
            let sys = &self.sys;
            match name {
                "virtio_pci" => write(
                    &sys.join("devices/pci0000:00/0000:00:02.0/virtio0/modalias"),
                    "virtio:d00000001v00001AF4\n",
                ),
                "button" => write(
                    &sys.join("devices/LNXSYSTM:00/LNXPWRBN:00/input/input0/modalias"),
                    "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw\n",
                ),
                _ => {}
            }
            self.inner.load(name, path, params)
        }
    }

    #[test]
    fn scan_finds_nonempty_modaliases_sorted() {
        let (dir, _) = setup();
        let found = scan_modaliases(dir.path()).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found[0], "acpi:LNXPWRBN:");
        assert!(scan_modaliases(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn scan_does_not_follow_symlinks() {
        let (dir, _) = setup();
        std::fs::create_dir_all(dir.path().join("devices/virtual")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("devices"), dir.path().join("devices/virtual/loop")).unwrap();
        assert_eq!(scan_modaliases(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn coldplug_rescans_until_nothing_new() {
        let (dir, mut mp) = setup();
        let mut loader = HotLoader {
            sys: dir.path().to_owned(),
            inner: RecordingLoader::default(),
        };
        let clock = FakeClock::new(Duration::from_secs(1), Duration::from_millis(40));
        let report = coldplug(dir.path(), &mut mp, &mut loader, &clock, &|_| true).unwrap();
        let calls: Vec<_> = loader.inner.calls.iter().map(|(m, p)| format!("{m}[{p}]")).collect();
        assert_eq!(
            calls,
            [
                "button[]",
                "virtio_ring[]",
                "virtio[]",
                "virtio_pci[]",
                "evdev[]",
                "failover[]",
                "net_failover[]",
                "virtio_net[napi_tx=1]",
            ]
        );
        assert_eq!(report.modules_loaded, 8);
        assert_eq!(report.devices, 5);
        assert_eq!(report.passes, 3);
        assert_eq!(report.failures, 0);
        assert_eq!(report.elapsed, Duration::from_millis(40));
        assert_eq!(
            report.summary(),
            "coldplug: 5 devices, 8 modules loaded in 40 ms (3 passes, 0 failures)"
        );
    }

    #[test]
    fn coldplug_counts_failures_and_continues() {
        let (dir, mut mp) = setup();
        let mut inner = RecordingLoader::default();
        inner.failing.insert("virtio".into(), nix::errno::Errno::ENOEXEC);
        let mut loader = HotLoader {
            sys: dir.path().to_owned(),
            inner,
        };
        let clock = FakeClock::new(Duration::ZERO, Duration::ZERO);
        let report = coldplug(dir.path(), &mut mp, &mut loader, &clock, &|_| true).unwrap();
        assert_eq!(report.failures, 1);
        assert!(mp.is_loaded("button") && mp.is_loaded("evdev"));
        assert!(!mp.is_loaded("virtio_pci"));
    }

    #[test]
    fn recovery_filter_loads_only_the_power_button() {
        let (dir, mut mp) = setup();
        let mut loader = HotLoader {
            sys: dir.path().to_owned(),
            inner: RecordingLoader::default(),
        };
        let clock = FakeClock::new(Duration::ZERO, Duration::ZERO);
        let report = coldplug(dir.path(), &mut mp, &mut loader, &clock, &power_button_only).unwrap();
        let names: Vec<_> = loader.inner.calls.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(names, ["button", "evdev"]);
        assert_eq!(report.modules_loaded, 2);
    }

    #[test]
    fn nothing_to_load_is_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("devices")).unwrap();
        let mut mp = Modprobe::new(ModuleIndex::parse(DEP, ALIAS), BTreeMap::new());
        let mut loader = RecordingLoader::default();
        let clock = FakeClock::new(Duration::ZERO, Duration::ZERO);
        let report = coldplug(dir.path(), &mut mp, &mut loader, &clock, &|_| true).unwrap();
        assert_eq!((report.devices, report.modules_loaded, report.passes), (0, 0, 1));
    }
}

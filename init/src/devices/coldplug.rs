//! Coldplug: load the modules for every device already in sysfs and for the devices their
//! drivers add, until nothing new appears.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::clock::Clock;
use crate::devices::modprobe::{Modprobe, ModuleLoader};
use crate::devices::pipeline::Pipeline;

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

/// Scans after which coldplug stops even if modules keep appearing.
const MAX_SCANS: usize = 16;

/// What coldplug did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdplugReport {
    /// Distinct modaliases found (in sysfs and announced while loading).
    pub devices: usize,
    /// Modules the kernel loaded.
    pub modules_loaded: usize,
    /// Scans of sysfs.
    pub scans: usize,
    /// Devices whose modules could not be loaded.
    pub failures: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl ColdplugReport {
    /// The one summary line.
    pub fn summary(&self) -> String {
        format!(
            "coldplug: {} devices, {} modules loaded in {} ms ({} sysfs {}, {} failures)",
            self.devices,
            self.modules_loaded,
            self.elapsed.as_millis(),
            self.scans,
            if self.scans == 1 { "scan" } else { "scans" },
            self.failures
        )
    }
}

/// Every `modalias` value under `<sys_root>/devices`, sorted, without following symlinks.
///
/// The `power` directory every device has (its power-management attributes) is not entered:
/// it never holds a device (measured under TCG: the walk takes ~60–110 ms, about a tenth
/// less without those directories; the same 32 modaliases either way).
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
                if entry.file_name() == "power" {
                    continue;
                }
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
    found.dedup();
    Ok(found)
}

/// Loads every module matching `modalias` (unless seen before); returns how many the kernel
/// loaded now.
///
/// Failures are logged with the module and errno and counted in `failures`.
pub fn load_for_modalias(
    modalias: &str,
    modprobe: &mut Modprobe,
    loader: &mut dyn ModuleLoader,
    failures: &mut usize,
) -> usize {
    if !modprobe.first_sight(modalias) {
        return 0;
    }
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

/// Loads the modules for the devices in sysfs and for those their drivers add, until no new
/// device appears.
///
/// With a loader that can overlap loads ([`ModuleLoader::parallel`], the kernel's), sysfs is
/// scanned once, after the announcements are opened, and the devices the loads add are taken
/// from the announcements ([`Pipeline::run_overlapped`]); sysfs is scanned again only if
/// announcements were lost. Otherwise the modules load one after another and sysfs is scanned
/// again until a scan loads nothing new (virtio_pci makes virtio devices, which need
/// virtio_net). `wanted` filters modaliases (recovery mode only loads what the power button
/// needs).
pub fn coldplug(
    sys_root: &Path,
    modprobe: &mut Modprobe,
    loader: &mut dyn ModuleLoader,
    clock: &dyn Clock,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<ColdplugReport, ColdplugError> {
    let start = clock.since_boot();
    let mut scans = 0;
    let mut pipeline = Pipeline::new(modprobe);
    let mut in_passes = true;
    if let Some(mut parallel) = loader.parallel() {
        scans += 1;
        let scanned = clock.since_boot();
        let found = scan_modaliases(sys_root)?;
        crate::debug!(
            "coldplug: {} modaliases in sysfs, scanned in {} ms",
            found.len(),
            clock.since_boot().saturating_sub(scanned).as_millis()
        );
        pipeline.devices(&found, wanted);
        let mut rescan = || {
            scans += 1;
            scan_modaliases(sys_root)
        };
        match pipeline.run_overlapped(&*parallel.loader, &mut *parallel.feed, wanted, &mut rescan)? {
            Ok(()) => in_passes = false,
            Err(e) => crate::warn!("uevents: {e}; scanning sysfs until nothing new appears"),
        }
    }
    while in_passes && scans < MAX_SCANS {
        scans += 1;
        let before = pipeline.loaded;
        pipeline.devices(&scan_modaliases(sys_root)?, wanted);
        pipeline.run_here(loader);
        if pipeline.loaded == before {
            break;
        }
    }
    Ok(ColdplugReport {
        devices: pipeline.devices.len(),
        modules_loaded: pipeline.loaded,
        scans,
        failures: pipeline.failures,
        elapsed: clock.since_boot().saturating_sub(start),
    })
}

/// The modaliases recovery mode needs: the ACPI power button and evdev.
pub fn power_button_only(modalias: &str) -> bool {
    modalias.starts_with("acpi") || modalias.starts_with("input:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::FakeClock;
    use crate::devices::modprobe::{FeedError, LoadOutcome, ModprobeError, Parallel, RecordingLoader};
    use crate::devices::modules::ModuleIndex;
    use crate::devices::overlap::tests::{Behaviour, fake_kernel};
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
    fn scan_skips_power_directories_and_duplicates() {
        let (dir, _) = setup();
        write(&dir.path().join("devices/platform/power/modalias"), "platform:never\n");
        write(&dir.path().join("devices/platform/twin/modalias"), "acpi:LNXPWRBN:\n");
        let found = scan_modaliases(dir.path()).unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn a_modalias_is_looked_up_once() {
        let (_, mut mp) = setup();
        let mut loader = RecordingLoader::default();
        let mut failures = 0;
        let alias = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        assert_eq!(load_for_modalias(alias, &mut mp, &mut loader, &mut failures), 3);
        assert_eq!(load_for_modalias(alias, &mut mp, &mut loader, &mut failures), 0);
        assert_eq!((loader.calls.len(), failures), (3, 0));
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
        assert_eq!(report.scans, 3);
        assert_eq!(report.failures, 0);
        assert_eq!(report.elapsed, Duration::from_millis(40));
        assert_eq!(
            report.summary(),
            "coldplug: 5 devices, 8 modules loaded in 40 ms (3 sysfs scans, 0 failures)"
        );
    }

    /// A loader whose loads overlap in a fake kernel: virtio_pci adds a virtio device and
    /// button an input device, announced but not written to the fake sysfs.
    struct Overlapping {
        feed_errors: Vec<FeedError>,
    }

    impl ModuleLoader for Overlapping {
        fn load(&mut self, name: &str, _: &Path, _: &str) -> Result<LoadOutcome, ModprobeError> {
            panic!("{name} loaded on the caller's thread")
        }

        fn parallel(&self) -> Option<Parallel> {
            let adds = |alias: &str| Behaviour {
                adds: vec![alias.into()],
                ..Default::default()
            };
            let (kernel, mut feed) = fake_kernel(&[
                ("virtio_pci", adds("virtio:d00000001v00001AF4")),
                ("button", adds("input:b0019v0000p0001e0000-e0,1,k74,ramlsfw")),
            ]);
            feed.errors = self.feed_errors.clone();
            Some(Parallel {
                loader: Box::new(kernel),
                feed: Box::new(feed),
            })
        }
    }

    #[test]
    fn overlapped_loads_scan_sysfs_once_and_hear_of_the_rest() {
        let (dir, mut mp) = setup();
        let mut loader = Overlapping { feed_errors: vec![] };
        let clock = FakeClock::new(Duration::ZERO, Duration::ZERO);
        let report = coldplug(dir.path(), &mut mp, &mut loader, &clock, &|_| true).unwrap();
        assert_eq!(
            (report.scans, report.modules_loaded, report.devices, report.failures),
            (1, 8, 5, 0)
        );
        assert!(mp.is_loaded("virtio_net") && mp.is_loaded("evdev"));
    }

    #[test]
    fn a_broken_feed_falls_back_to_scanning_until_nothing_new() {
        let (dir, mut mp) = setup();
        let mut loader = Overlapping {
            feed_errors: vec![FeedError::Broken(nix::errno::Errno::EIO)],
        };
        let clock = FakeClock::new(Duration::ZERO, Duration::ZERO);
        let report = coldplug(dir.path(), &mut mp, &mut loader, &clock, &|_| true).unwrap();
        // The first loads are done; the devices they announced are not in this fake sysfs.
        assert_eq!((report.scans, report.modules_loaded), (2, 4));
        assert!(mp.is_loaded("virtio_pci") && !mp.is_loaded("virtio_net"));
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
        assert_eq!((report.devices, report.modules_loaded, report.scans), (0, 0, 1));
    }
}

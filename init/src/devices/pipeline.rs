//! Coldplug's queue of module loads: which module loads next, in a fixed order, and what came
//! of each load. [`crate::devices::overlap`] runs it with the loads overlapping.
//!
//! The order: within each batch (the first sysfs scan, then each lot of devices announced
//! meanwhile, after the batches before it), first the CPU's implementation of the hash module
//! signatures are checked with ([`SIGNATURE_HASH`]), then the drivers of disk controllers
//! ([`disk_controller`]: their probes wait longest, and the pool and the stick are behind
//! them), then the rest in modalias order, as coldplug always loaded them; each module after
//! its dependencies. NIC drivers keep their order among themselves, so NICs keep their names.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use crate::devices::modprobe::{LoadOutcome, Modprobe, ModprobeError, ModuleLoader};

/// The alias of the hash the kernel checks module signatures with (Debian's
/// `CONFIG_MODULE_SIG_HASH="sha256"`). Before loading a module the kernel hashes its whole
/// `.ko` with the fastest `sha256` registered; the CPU's (`sha256_ssse3`, matched by the CPU's
/// modalias) loaded first cut the loads after it by a quarter under TCG (`libata` 66 → 47 ms,
/// `scsi_mod` 46 → 35 ms) for its own 34 ms.
pub const SIGNATURE_HASH: &str = "crypto-sha256";

/// Modules a device's modalias matches that coldplug leaves alone: KVM matches every CPU
/// with SVM or VMX, and is loaded only when a VM personality is configured.
pub const ON_DEMAND: &[&str] = &["kvm_amd", "kvm_intel"];

/// Whether a modalias is a PCI controller disks hang off: mass storage (base class 01: SATA,
/// NVMe, SCSI, virtio-blk), USB (0C03) or SD host (0805). Their probes are the slow ones
/// (ahci's SATA ports, ~330 ms under TCG; USB enumerates in the background), so they start
/// first and the rest loads while they wait.
pub fn disk_controller(modalias: &str) -> bool {
    let Some(class) = modalias
        .strip_prefix("pci:")
        .and_then(|rest| rest.split_once("bc"))
        .map(|(_, rest)| rest)
    else {
        return false;
    };
    class.starts_with("01") || class.starts_with("0Csc03") || class.starts_with("08sc05")
}

/// One module to load now.
#[derive(Debug, Clone)]
pub struct Start {
    /// The module.
    pub module: String,
    /// Its `.ko` file.
    pub path: PathBuf,
    /// Its parameter string.
    pub params: String,
    /// The modalias of the device that asked for it; `None` for a dependency.
    pub wanted_for: Option<String>,
}

#[derive(Debug)]
struct Item {
    module: String,
    wanted_for: Option<String>,
}

/// The queue of modules to load, and what came of the loads.
#[derive(Debug)]
pub struct Pipeline<'m> {
    modprobe: &'m mut Modprobe,
    queue: VecDeque<Item>,
    queued: HashSet<String>,
    /// Distinct modaliases seen (scans and announcements).
    pub devices: HashSet<String>,
    /// Modules the kernel loaded now.
    pub loaded: usize,
    /// Devices' modules that could not be loaded.
    pub failures: usize,
}

impl<'m> Pipeline<'m> {
    /// An empty queue over `modprobe`'s state.
    pub fn new(modprobe: &'m mut Modprobe) -> Self {
        Pipeline {
            modprobe,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            devices: HashSet::new(),
            loaded: 0,
            failures: 0,
        }
    }

    /// Queues the modules for each modalias `wanted` accepts and not handled before: the
    /// signature hash's first, then the disk controllers', then in the order given.
    pub fn devices(&mut self, modaliases: &[String], wanted: &dyn Fn(&str) -> bool) {
        let hashers = self.modprobe.index().match_alias(SIGNATURE_HASH);
        let mut asked = Vec::new();
        for alias in modaliases {
            self.devices.insert(alias.clone());
            if wanted(alias) && self.modprobe.first_sight(alias) {
                for module in self.modprobe.index().match_alias(alias) {
                    if ON_DEMAND.contains(&module.as_str()) {
                        continue;
                    }
                    let rank = (hashers.contains(&module), disk_controller(alias));
                    asked.push((rank, module, alias.clone()));
                }
            }
        }
        asked.sort_by_key(|(rank, _, _)| std::cmp::Reverse(*rank));
        for (_, module, alias) in asked {
            self.request(&module, &alias);
        }
    }

    fn request(&mut self, module: &str, modalias: &str) {
        let order = match self.modprobe.plan(module) {
            Ok(order) => order,
            Err(e) => {
                self.failures += 1;
                crate::warn!("module {module} for {modalias}: {e}");
                return;
            }
        };
        let top = order.last().cloned();
        for name in order {
            let wanted_for = (Some(&name) == top.as_ref()).then(|| modalias.to_owned());
            if self.queued.insert(name.clone()) {
                self.queue.push_back(Item {
                    module: name,
                    wanted_for,
                });
            } else if let Some(item) = self
                .queue
                .iter_mut()
                .find(|i| i.module == name && i.wanted_for.is_none())
            {
                item.wanted_for = wanted_for;
            }
        }
    }

    /// The next module to load, skipping those loaded meanwhile and failing those whose
    /// dependency failed.
    pub fn next(&mut self) -> Option<Start> {
        while let Some(Item { module, wanted_for }) = self.queue.pop_front() {
            self.queued.remove(&module);
            if self.modprobe.is_loaded(&module) || self.modprobe.is_failed(&module) {
                continue;
            }
            if let Some(dependency) = self.modprobe.failed_dependency(&module) {
                self.modprobe.record(&module, false);
                if let Some(alias) = wanted_for {
                    self.failures += 1;
                    let e = ModprobeError::Dependency {
                        module: module.clone(),
                        dependency,
                    };
                    crate::warn!("module {module} for {alias}: {e}");
                }
                continue;
            }
            let Some((path, params)) = self.modprobe.file_and_params(&module) else {
                continue; // planned modules are indexed
            };
            return Some(Start {
                module,
                path,
                params,
                wanted_for,
            });
        }
        None
    }

    /// Records the result of a load.
    pub fn finished(&mut self, start: &Start, result: Result<LoadOutcome, ModprobeError>) {
        let module = &start.module;
        match result {
            Ok(outcome) => {
                if outcome == LoadOutcome::Loaded {
                    self.loaded += 1;
                    crate::debug!("loaded module {module} [{}]", start.params);
                }
                self.modprobe.record(module, true);
            }
            Err(e) => {
                self.modprobe.record(module, false);
                match &start.wanted_for {
                    Some(alias) => {
                        self.failures += 1;
                        crate::warn!("module {module} for {alias}: {e}");
                    }
                    None => crate::warn!("module {module}: {e}"),
                }
            }
        }
    }

    /// A module the kernel announced as initialised (loaded by us or by the kernel itself).
    pub fn initialised(&mut self, module: &str) {
        if !self.modprobe.is_failed(module) {
            self.modprobe.record(module, true);
        }
    }

    /// Loads the queue on this thread, one module after another.
    pub fn run_here(&mut self, loader: &mut dyn ModuleLoader) {
        while let Some(start) = self.next() {
            let result = loader.load(&start.module, &start.path, &start.params);
            self.finished(&start, result);
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

//! The pool: the box's persistent disk, mounted at `/pool` (SmartOS's `zones` pool).
//!
//! Found by the label `ramkey-pool` on any disk but the usbkey, or by the disks `[pool]
//! disks` names; created only on disks that are blank and that `[pool] create` names
//! (`create = "virtio-XYZ"`); without one the box runs diskless. See `docs/pool.md`.

pub mod boot_step;
pub mod create;
pub mod external;
pub mod find;
pub mod layout;
pub mod mount;
mod plan;
pub mod probe;
#[cfg(test)]
mod probe_tests;
pub mod signatures;
pub mod status;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ramkey_config::{Filesystem, Pool};

use crate::clock::Clock;
use crate::mounts::Mounter;
use crate::paths::Paths;

pub use status::{Mounted, PoolState, Refused};

use create::Mkfs;
use find::Disk;
use plan::{Plan, plan};
use probe::FsKind;

/// The label of the pool's filesystem.
pub const LABEL: &str = "ramkey-pool";

/// Where the pool is mounted.
pub const MOUNT_POINT: &str = "/pool";

/// How long the step waits for the disks `[pool]` names to appear.
pub const WAIT: Duration = Duration::from_secs(5);

/// The console line of a diskless box.
pub const DISKLESS: &str = "pool: none found: DISKLESS — data lives in RAM and is lost at power-off";

/// The effects the pool step uses; real ones on the box, fakes in tests.
pub struct PoolStep<'a> {
    /// Where everything is.
    pub paths: &'a Paths,
    /// Time since kernel start (for the waits and the measurements).
    pub clock: &'a dyn Clock,
    /// Mounts the pool and the bind mounts.
    pub mounter: &'a mut dyn Mounter,
    /// Formats blank disks.
    pub mkfs: &'a mut dyn Mkfs,
    /// Waits for late disks, loads the filesystem's module.
    pub devices: &'a mut dyn Devices,
}

/// What the pool step needs of the device handling: waiting for late disks (uevents load
/// their modules meanwhile) and loading the filesystem's module.
pub trait Devices {
    /// Waits up to `timeout` for device events.
    fn wait(&mut self, timeout: Duration);
    /// Loads `module` and its dependencies; a failure is logged (it may be built in).
    fn modprobe(&mut self, module: &str);
}

impl std::fmt::Debug for PoolStep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolStep")
            .field("paths", self.paths)
            .finish_non_exhaustive()
    }
}

/// What the pool step is given.
#[derive(Debug, Clone, Default)]
pub struct Input<'a> {
    /// `[pool]` from the config, if any.
    pub config: Option<&'a Pool>,
    /// The usbkey's disk (`sda`), never a pool.
    pub usbkey_disk: Option<&'a str>,
    /// The text of the config the box booted with, for `config-history/`.
    pub config_text: Option<&'a str>,
    /// The wall-clock time, for the history file's name.
    pub now: Option<SystemTime>,
}

impl PoolStep<'_> {
    /// Finds (or creates) and mounts the pool, lays it out, and says what happened.
    pub fn run(&mut self, input: &Input<'_>) -> PoolState {
        let start = self.clock.since_boot();
        let disks = self.wait_for_disks(input);
        let dev = self.paths.dev();
        let plan = plan(&disks, input.config, |d| find::not_blank(&d.device.node(&dev)));
        let ms = |s: &Self| s.clock.since_boot().saturating_sub(start).as_millis();
        let (kind, disks, degraded, created) = match plan {
            Plan::Mount { kind, disks, degraded } => {
                crate::notice!(
                    "pool: found {LABEL} ({kind}) on {} after {} ms",
                    describe(&disks),
                    ms(self)
                );
                (kind, disks, degraded, false)
            }
            Plan::Create { fs, disks, keys } => {
                if let Err(state) = self.ask_the_platform(&disks, &keys) {
                    return state;
                }
                let nodes: Vec<PathBuf> = disks.iter().map(|d| d.node.clone()).collect();
                let t = self.clock.since_boot();
                if let Err(e) = self.mkfs.mkfs(fs, &nodes) {
                    return diskless(Vec::new(), Some(format!("creating the pool failed: {e}")));
                }
                let size = find::size(&self.paths.sys(), &disks[0].device)
                    .map_or_else(String::new, |s| format!(", {}", status::human(s)));
                let took = self.clock.since_boot().saturating_sub(t).as_millis();
                let kind = match fs {
                    Filesystem::Ext4 => FsKind::Ext(probe::ExtVersion::Ext4),
                    Filesystem::Btrfs => FsKind::Btrfs,
                };
                crate::notice!(
                    "pool: created {kind} {LABEL} on {}{size} in {took} ms",
                    describe(&disks)
                );
                (kind, disks, false, true)
            }
            Plan::Diskless { refused, problem } => return diskless(refused, problem),
        };
        let unclean = disks.iter().any(|d| d.fs.as_ref().is_some_and(|fs| fs.unclean));
        if unclean && !created {
            crate::notice!(
                "pool: {} was not unmounted cleanly; {kind} replays its journal",
                disks[0].node.display()
            );
        }
        if degraded {
            crate::warn!("pool: btrfs mirror is missing a disk: mounting it degraded");
        }
        let nodes: Vec<PathBuf> = disks.iter().map(|d| d.node.clone()).collect();
        let mount_point = match mount::mount(self, kind, &nodes, degraded) {
            Ok(p) => p,
            Err(e) => return diskless(Vec::new(), Some(e.to_string())),
        };
        crate::notice!(
            "pool: mounted {} at {MOUNT_POINT} {} ms after the pool step began",
            nodes[0].display(),
            ms(self)
        );
        self.lay_out(&mount_point, input);
        let state = PoolState::Mounted(Mounted {
            kind,
            nodes,
            ids: disks.iter().map(Disk::id).collect(),
            mount_point,
            created,
            unclean: unclean && !created,
            degraded,
        });
        crate::notice!("pool: {state}");
        state
    }

    /// The platform's probes (wipefs, blkid), right before mkfs: anything found, or a probe
    /// that fails, leaves the box diskless.
    fn ask_the_platform(&mut self, disks: &[Disk], keys: &[&str]) -> Result<(), PoolState> {
        let mut refused = Vec::new();
        for (disk, key) in disks.iter().zip(keys) {
            match self.mkfs.signatures(&disk.node) {
                Ok(None) => {}
                Ok(Some(found)) => refused.push(plan::refuse(disk, key, found)),
                Err(e) => return Err(diskless(refused, Some(format!("not creating the pool: {e}")))),
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(diskless(refused, None))
        }
    }

    fn wait_for_disks(&mut self, input: &Input<'_>) -> Vec<Disk> {
        let (sys, dev) = (self.paths.sys(), self.paths.dev());
        let named: Vec<&String> = input
            .config
            .map(|p| p.disks.iter().chain(&p.mirror).collect())
            .unwrap_or_default();
        let start = self.clock.since_boot();
        loop {
            let disks = find::scan(&sys, &dev, input.usbkey_disk);
            let missing = named.iter().filter(|id| find::by_id(&disks, id).is_empty()).count();
            let waited = self.clock.since_boot().saturating_sub(start);
            if missing == 0 || waited >= WAIT {
                return disks;
            }
            self.devices.wait(Duration::from_millis(250));
        }
    }

    fn lay_out(&mut self, pool: &std::path::Path, input: &Input<'_>) {
        if let Err(e) = layout::apply(self.paths.root(), pool, &mut *self.mounter) {
            crate::error!("pool: layout: {e}; /var and /opt stay in RAM");
        }
        let (Some(text), Some(now)) = (input.config_text, input.now) else {
            return;
        };
        match layout::save_history(pool, text, now) {
            Ok((name, n)) => crate::notice!("pool: config saved as config-history/{name} ({n} entries)"),
            Err(e) => crate::warn!("pool: cannot save the config in config-history: {e}"),
        }
    }
}

fn describe(disks: &[Disk]) -> String {
    let all: Vec<String> = disks
        .iter()
        .map(|d| format!("{} ({})", d.node.display(), d.id()))
        .collect();
    all.join(" + ")
}

fn diskless(refused: Vec<Refused>, problem: Option<String>) -> PoolState {
    if let Some(problem) = &problem {
        crate::error!("pool: {problem}");
    }
    crate::notice!("{DISKLESS}");
    PoolState::Diskless { refused, problem }
}

//! The pool: the box's persistent disk, mounted at `/pool` (SmartOS's `zones` pool).
//!
//! Found by the label `ramkey-pool` on any disk but the usbkey, or by the disks `[pool]
//! disks` names; created only on disks that are blank and that `[pool] create` names
//! (`create = "virtio-XYZ"`); without one the box runs diskless. See `docs/pool.md`.

pub mod create;
pub mod external;
pub mod find;
pub mod layout;
pub mod mirror;
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

use crate::base::clock::Clock;
use crate::base::paths::{POOL, Paths};
use crate::storage::mounts::Mounter;

pub use status::{Mounted, PoolState, Refused};

use create::Mkfs;
use find::Disk;
use mirror::{Scrub, Shortfall};
use mount::Mode;
use plan::{Plan, plan};
use probe::FsKind;

/// The label of the pool's filesystem.
pub const LABEL: &str = "ramkey-pool";

/// Where the pool is mounted on the box, as messages name it (`Paths::pool` under a root).
pub const MOUNT_POINT: &str = POOL;

/// How long the step waits for the disks `[pool]` names to appear.
pub const WAIT: Duration = Duration::from_secs(5);

/// How much longer than [`WAIT`] the step waits for the missing disks of a btrfs mirror
/// (its superblock says how many devices it has), named in `[pool]` or not, before it
/// mounts the mirror without them.
pub const MIRROR_WAIT: Duration = Duration::from_secs(10);

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
    /// Starts a btrfs scrub (after a degraded boot, once every disk is back).
    pub scrub: &'a mut dyn Scrub,
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
        let (kind, disks, devices, short, created) = match plan {
            Plan::Mount {
                kind,
                disks,
                devices,
                short,
            } => {
                crate::notice!(
                    "pool: found {LABEL} ({kind}) on {} after {} ms",
                    describe(&disks),
                    ms(self)
                );
                (kind, disks, devices, short, false)
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
                let (kind, devices) = match fs {
                    Filesystem::Ext4 => (FsKind::Ext(probe::ExtVersion::Ext4), 1),
                    Filesystem::Btrfs => (FsKind::Btrfs, disks.len() as u64),
                };
                crate::notice!(
                    "pool: created {kind} {LABEL} on {}{size} in {took} ms",
                    describe(&disks)
                );
                (kind, disks, devices, None, true)
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
        let allow = input.config.is_some_and(|p| p.allow_degraded);
        let mode = match &short {
            None => Mode::Whole,
            Some(short) => degraded_mode(short, allow, ms(self)),
        };
        let nodes: Vec<PathBuf> = disks.iter().map(|d| d.node.clone()).collect();
        let mount_point = match mount::mount(self, kind, &nodes, mode) {
            Ok(p) => p,
            Err(e) => {
                let problem = match &short {
                    Some(s) if mode.read_only() => format!(
                        "the btrfs mirror has {} of its {} disks and mounting it read-only failed: {e}",
                        s.found(),
                        s.total
                    ),
                    _ => e.to_string(),
                };
                return diskless(Vec::new(), Some(problem));
            }
        };
        crate::notice!(
            "pool: mounted {} at {MOUNT_POINT}{} {} ms after the pool step began",
            nodes[0].display(),
            match mode {
                Mode::Whole => "",
                Mode::Degraded => " degraded, read-write",
                Mode::DegradedReadOnly => " degraded, READ-ONLY",
            },
            ms(self)
        );
        let mounted = Mounted {
            kind,
            nodes,
            ids: disks.iter().map(Disk::id).collect(),
            mount_point,
            created,
            unclean: unclean && !created,
            degraded: mode.degraded(),
            devices,
        };
        if mode.read_only() {
            // Nothing may be written: no layout, no history; the rest of the box is diskless.
            crate::notice!(
                "pool: DISKLESS but for reading: zones, /var and /opt live in RAM and are lost at power-off; \
                 the pool is mounted read-only at {MOUNT_POINT}"
            );
            let state = PoolState::ReadOnly(mounted);
            crate::notice!("pool: {state}");
            return state;
        }
        if let Some(short) = &short {
            self.record_degraded(&mounted.mount_point, short, input.now);
        }
        self.lay_out(&mounted.mount_point, input);
        if mode == Mode::Whole && kind == FsKind::Btrfs && !created {
            self.scrub_after_degraded(&mounted);
        }
        let state = PoolState::Mounted(mounted);
        crate::notice!("pool: {state}");
        state
    }

    /// Records on the pool that it runs degraded, for the scrub at the next whole boot.
    fn record_degraded(&mut self, pool: &std::path::Path, short: &Shortfall, now: Option<SystemTime>) {
        match mirror::record(pool, short, now) {
            Ok(true) => crate::notice!(
                "pool: recorded in {MOUNT_POINT}/{} that the mirror runs degraded: a scrub starts at the \
                 next boot with every disk",
                mirror::RECORD
            ),
            Ok(false) => {}
            Err(e) => crate::warn!(
                "pool: cannot record in {MOUNT_POINT}/{} that the mirror runs degraded: {e}; once the disk \
                 is back, run btrfs scrub start {MOUNT_POINT} yourself",
                mirror::RECORD
            ),
        }
    }

    /// The mirror is whole again after running degraded: starts a scrub (it runs in the
    /// background) and removes the record once it started.
    fn scrub_after_degraded(&mut self, m: &Mounted) {
        let Some(since) = mirror::recorded(&m.mount_point) else {
            return;
        };
        let n = m.nodes.len();
        match self.scrub.start(&m.mount_point) {
            Ok(said) => {
                crate::notice!(
                    "pool: all {n} disks of the btrfs mirror are back after it ran degraded since {since}: \
                     started btrfs scrub start {MOUNT_POINT} in the background ({said}); it rewrites what the \
                     returning disk missed; btrfs scrub status {MOUNT_POINT} shows how far it is"
                );
                if let Err(e) = mirror::clear(&m.mount_point) {
                    crate::warn!("pool: cannot remove {MOUNT_POINT}/{}: {e}", mirror::RECORD);
                }
            }
            Err(e) => crate::warn!(
                "pool: the btrfs mirror ran degraded since {since} and needs a scrub, which did not start: {e}; \
                 run btrfs scrub start {MOUNT_POINT} yourself (it is tried again at the next boot)"
            ),
        }
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
        let mut said = false;
        loop {
            let disks = find::scan(&sys, &dev, input.usbkey_disk);
            let missing = named.iter().filter(|id| find::by_id(&disks, id).is_empty()).count();
            let short = plan::short_mirror(&disks, input.config);
            let waited = self.clock.since_boot().saturating_sub(start);
            let limit = if short.is_some() { WAIT + MIRROR_WAIT } else { WAIT };
            if (missing == 0 && short.is_none()) || waited >= limit {
                if said && short.is_none() {
                    crate::notice!(
                        "pool: every disk of the btrfs mirror is here after {} ms",
                        waited.as_millis()
                    );
                }
                return disks;
            }
            if let Some((found, total)) = short
                && !said
            {
                crate::notice!(
                    "pool: the btrfs {LABEL} has {found} of its {total} disks here; waiting up to {} s for the others",
                    limit.as_secs()
                );
                said = true;
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

/// Says loudly that the mirror is missing disks and how it is mounted: degraded read-write
/// when `[pool] allow_degraded = true`, read-only otherwise.
fn degraded_mode(short: &Shortfall, allow: bool, waited_ms: u128) -> Mode {
    crate::warn!("pool: btrfs mirror DEGRADED: {short}, after waiting {waited_ms} ms");
    if allow {
        crate::warn!(
            "pool: [pool] allow_degraded = true: mounting it degraded, read-write: what is written now has \
             one copy until the missing disk is back; a scrub starts at the next boot with every disk"
        );
        Mode::Degraded
    } else {
        crate::error!(
            "pool: read-only: a disk of the mirror is missing; put it back, or set [pool] allow_degraded = true \
             to run without it; zones, /var and /opt are in RAM this boot"
        );
        Mode::DegradedReadOnly
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

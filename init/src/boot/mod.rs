//! The boot sequence: the top-level steps PID 1 runs before its event loop.

pub mod config_load;
pub mod good_config;
pub mod identity;
pub mod media;
pub mod pool_step;
pub mod recovery;

use std::path::PathBuf;

use ramkey_config::Config;

use crate::base::clock::Clock;
use crate::base::cmdline::Cmdline;
use crate::base::paths::Paths;
use crate::base::timeline::Timeline;
use crate::boot::config_load::{FetchError, Loaded};
use crate::devices::coldplug::{self, ColdplugError, ColdplugReport};
use crate::devices::modprobe::{Modprobe, ModuleLoader};
use crate::devices::modules::{ModuleIndex, ModulesError};
use crate::devices::power::PowerButtons;
use crate::devices::uevent::UeventSocket;
use crate::net::netconf::Applied;
use crate::net::ntp::Synced;
use crate::net::renew::HeldLease;
use crate::net::{NetError, NetReport, Network};
use crate::storage::mounts::{self, EARLY_MOUNTS, MountError, Mounter};
use crate::storage::packed::{self, PackedError};
use crate::storage::usbkey::{FoundKey, UsbkeyError};

/// A boot step failed; the boot goes to recovery mode with this as the cause.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A required early mount failed.
    #[error("early mounts failed: {0}")]
    Mounts(#[from] MountError),
    /// `ramkey.recovery` was given.
    #[error("requested on the kernel command line")]
    RecoveryRequested,
    /// The running kernel's release could not be read.
    #[error("cannot read the kernel release from {path}: {source}")]
    KernelRelease {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `modules.dep` or `modules.alias` is missing.
    #[error("module index unusable: {0}")]
    Modules(#[from] ModulesError),
    /// The packed platform could not be mounted.
    #[error(transparent)]
    Packed(#[from] PackedError),
    /// sysfs could not be scanned.
    #[error("coldplug failed: {0}")]
    Coldplug(#[from] ColdplugError),
    /// No usbkey appeared, or it could not be mounted.
    #[error(transparent)]
    Usbkey(#[from] UsbkeyError),
    /// The network for the config URL could not be brought up.
    #[error(transparent)]
    Network(#[from] NetError),
    /// The config URL is unusable or could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The config is unusable and there is no last good copy.
    #[error(
        "no usable config: {config} is invalid or missing (the errors are above) and there is no \
         valid last good copy; {network}; fix the config with `ramkey config` on a workstation \
         (or `ramkeyctl config` here) and reboot"
    )]
    NoConfig {
        /// The config file or URL that failed.
        config: String,
        /// What recovery did with the network.
        network: String,
    },
}

/// What the boot steps produced, kept even when a later step fails or panics.
#[derive(Debug, Default)]
pub struct BootState {
    /// The parsed kernel command line.
    pub cmdline: Cmdline,
    /// Module loading for coldplug and uevents.
    pub modprobe: Option<Modprobe>,
    /// The uevent socket, opened before coldplug so that no device is missed.
    pub uevents: Option<UeventSocket>,
    /// Open power-button devices.
    pub buttons: PowerButtons,
    /// The usbkey, once mounted.
    pub usbkey: Option<FoundKey>,
    /// The boot network (PXE boots with a config URL).
    pub network: Option<NetReport>,
    /// The validated config in use; `None` when there is no usable one.
    pub config: Option<Config>,
    /// Where the config in use came from: `/usbkey/config.toml`, `/usbkey/config.toml.good`
    /// or the URL (the file or URL that failed when there is no config).
    pub config_source: String,
    /// What was wrong with the config, every error with its line and column (also when the
    /// last good copy is in use); for `ramkeyctl status`.
    pub config_error: Option<String>,
    /// The text of `/usbkey/config.toml` while it waits to be saved as the good copy.
    pub config_text: Option<String>,
    /// What the `network` step did with the config's NICs (or with every NIC in recovery).
    pub applied: Option<Applied>,
    /// The DHCP leases to renew (see [`crate::net::renew`]); the event loop takes them.
    pub leases: Vec<HeldLease>,
    /// The SNTP result, when the clock was set.
    pub ntp: Option<Synced>,
    /// The pool (or diskless mode), for `ramkeyctl status`; `None` before the `pool` step.
    pub pool: Option<crate::storage::pool::PoolState>,
}

impl BootState {
    /// Takes what the `config` step loaded.
    pub fn set_config(&mut self, loaded: Loaded) {
        self.config = loaded.config;
        // `[log] level` sets the console's, unless the kernel command line said.
        if let (None, Some(config)) = (self.cmdline.log, self.config.as_ref()) {
            use ramkey_config::LogLevel;
            crate::base::log::set_level(match config.log.level {
                LogLevel::Error => crate::base::log::Level::Error,
                LogLevel::Warn => crate::base::log::Level::Warn,
                LogLevel::Info => crate::base::log::Level::Info,
                LogLevel::Debug | LogLevel::Trace => crate::base::log::Level::Debug,
            });
        }
        self.config_source = loaded.source;
        self.config_error = loaded.error;
        self.config_text = loaded.text;
    }
}

/// The effects the boot uses; real ones on the box, fakes in tests.
pub struct Boot<'a> {
    /// Where everything is.
    pub paths: &'a Paths,
    /// Time since kernel start.
    pub clock: &'a dyn Clock,
    /// Performs the early mounts.
    pub mounter: &'a mut dyn Mounter,
    /// Loads modules.
    pub loader: &'a mut dyn ModuleLoader,
    /// Open the kernel uevent socket (off in unit tests).
    pub watch_uevents: bool,
    /// DHCP and HTTP for a `ramkey.config=` URL.
    pub network: &'a mut dyn Network,
}

impl std::fmt::Debug for Boot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boot")
            .field("paths", self.paths)
            .field("watch_uevents", &self.watch_uevents)
            .finish_non_exhaustive()
    }
}

impl Boot<'_> {
    /// Runs the boot steps in order, recording each in `timeline`.
    pub fn run(&mut self, timeline: &mut Timeline, state: &mut BootState) -> Result<(), BootError> {
        let clock = self.clock;
        let paths = self.paths;
        let mounter = &mut *self.mounter;
        let report = timeline.step(clock, "early-mounts", || {
            mounts::mount_all(paths.root(), EARLY_MOUNTS, mounter)
        })?;
        crate::debug!("early mounts: {report:?}");

        state.cmdline = timeline.step(clock, "cmdline", || read_cmdline(paths));
        if state.cmdline.recovery {
            return Err(BootError::RecoveryRequested);
        }

        let modprobe = timeline.step(clock, "modules-index", || open_modules(paths, &state.cmdline))?;
        let modprobe = state.modprobe.insert(modprobe);

        let (loader, mounter) = (&mut *self.loader, &mut *self.mounter);
        let packed = timeline.step(clock, "packed", || {
            let mut attach = |file: &std::fs::File, size| {
                crate::sys::confine::attach_loop(file, size, &paths.dev(), crate::sys::confine::LoopMode::ReadOnly)
            };
            packed::mount(paths, modprobe, loader, mounter, &mut attach)
        })?;
        if let Some(packed) = packed {
            crate::info!("{}", packed.summary());
        }

        if self.watch_uevents {
            state.uevents = open_uevents();
        }
        let loader = &mut *self.loader;
        let report = timeline.step(clock, "coldplug", || {
            coldplug::coldplug(&paths.sys(), modprobe, loader, clock, &|_| true)
        })?;
        crate::notice!("{}", report.summary());

        let buttons = &mut state.buttons;
        timeline.step(clock, "power-button", || buttons.scan(&paths.dev()));
        if state.buttons.is_empty() {
            crate::warn!("no power button found; SIGUSR2 or SIGPWR powers the box off");
        }
        crate::boot::media::run(self, timeline, state)?;
        state.pool = Some(crate::boot::pool_step::step(self, timeline, state));
        self.configure(timeline, state)
    }

    /// The steps after `pool`: `identity`, `nics`, `ntp`, `good-config`; without a
    /// config, DHCP on every NIC and recovery mode.
    fn configure(&mut self, timeline: &mut Timeline, state: &mut BootState) -> Result<(), BootError> {
        let (clock, paths) = (self.clock, self.paths);
        let network = &mut *self.network;
        let resolv = paths.root().join("etc/resolv.conf");
        let config_read = timeline
            .steps
            .last()
            .map_or(clock.since_boot(), |s| s.start + s.duration);
        let Some(config) = state.config.clone() else {
            let up = if state.network.is_some() {
                "the network stays as the PXE boot set it".to_owned()
            } else {
                let applied = timeline.step(clock, "network", || network.dhcp_everywhere(clock, &resolv));
                let summary = format!("DHCP on every NIC: {} lease(s)", applied.leases.len());
                state.leases = applied.leases.clone();
                state.applied = Some(applied);
                summary
            };
            return Err(BootError::NoConfig {
                config: state.config_source.clone(),
                network: up,
            });
        };
        let root = paths.root();
        timeline.step(clock, "identity", || {
            crate::boot::identity::apply(root, &config, network)
        });
        let pxe = state.network.as_ref();
        let applied = timeline.step(clock, "nics", || network.apply_config(clock, &config, pxe, &resolv));
        let took = clock.since_boot().saturating_sub(config_read);
        crate::notice!(
            "network: up {} ms after the config was read ({} of {} NICs configured{})",
            took.as_millis(),
            applied.lines.len(),
            config.nics.len(),
            if applied.failures.is_empty() {
                String::new()
            } else {
                format!(", {} problem(s)", applied.failures.len())
            }
        );
        state.leases = applied.leases.clone();
        state.applied = Some(applied);
        state.ntp = timeline.step(clock, "ntp", || {
            crate::net::ntp::step(&config.ntp_servers, network, clock, &paths.init())
        });
        if let (Some(text), Some(key)) = (state.config_text.take(), &state.usbkey) {
            let mount = paths.usbkey();
            let mounter = &mut *self.mounter;
            timeline.step(clock, "good-config", || {
                crate::boot::good_config::step(mounter, &key.node, &mount, &text)
            });
        }
        Ok(())
    }
}

/// Reads the command line (defaults if unreadable), applies the log level, logs warnings.
pub fn read_cmdline(paths: &Paths) -> Cmdline {
    let cmdline = Cmdline::read(&paths.cmdline()).unwrap_or_else(|e| {
        crate::warn!("{e}; using defaults");
        Cmdline::default()
    });
    crate::base::log::set_level(cmdline.log.unwrap_or(crate::base::log::Level::Info));
    for warning in &cmdline.warnings {
        crate::warn!("kernel command line: {warning}");
    }
    if let Some([pretty, version]) = paths.os_release_fields(["PRETTY_NAME", "VERSION_ID"]) {
        crate::info!(
            "{} (VERSION_ID={})",
            pretty.unwrap_or_else(|| "Ramkey".into()),
            version.unwrap_or_else(|| "unknown".into())
        );
    }
    crate::debug!("kernel command line: {cmdline:?}");
    cmdline
}

/// Loads the module index of the running kernel, with the command line's parameters.
pub fn open_modules(paths: &Paths, cmdline: &Cmdline) -> Result<Modprobe, BootError> {
    let release_path = paths.osrelease();
    let release = std::fs::read_to_string(&release_path).map_err(|source| BootError::KernelRelease {
        path: release_path,
        source,
    })?;
    let release = release.trim();
    let index = ModuleIndex::load(&paths.modules_dir(release))?;
    for warning in &index.warnings {
        crate::warn!("{warning}");
    }
    crate::info!("kernel {release}: {} modules in the index", index.len());
    let params = cmdline
        .module_params
        .keys()
        .map(|m| (m.clone(), cmdline.params_for(m)))
        .collect();
    let mut modprobe = Modprobe::new(index, params);
    if let Ok(loaded) = std::fs::read_to_string(paths.proc_modules()) {
        modprobe.seed_loaded(&loaded);
    }
    Ok(modprobe)
}

/// Opens the uevent socket; a failure is logged and the box goes on without it.
pub fn open_uevents() -> Option<UeventSocket> {
    UeventSocket::open()
        .inspect_err(|e| crate::warn!("{e}; late devices will not get their modules"))
        .ok()
}

/// Loads only the power-button modules (recovery mode) and opens the buttons.
pub fn power_button_coldplug(
    paths: &Paths,
    state: &mut BootState,
    loader: &mut dyn ModuleLoader,
    clock: &dyn Clock,
) -> Option<ColdplugReport> {
    let report = match state.modprobe.as_mut() {
        Some(modprobe) => coldplug::coldplug(&paths.sys(), modprobe, loader, clock, &coldplug::power_button_only)
            .inspect_err(|e| crate::warn!("{e}"))
            .ok(),
        None => None,
    };
    state.buttons.scan(&paths.dev());
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::FakeClock;
    use crate::devices::modprobe::RecordingLoader;
    use crate::net::fake::{FakeLinks, FakeNetwork, qemu_report};
    use crate::net::http::fake::FakeFetch;
    use crate::storage::blkid::{FatKind, fixture_sector};
    use crate::storage::mounts::fake::RecordingMounter;
    use std::path::Path;
    use std::time::Duration;

    fn no_net() -> FakeNetwork {
        FakeNetwork::default()
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn fixture(cmdline: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "proc/cmdline", cmdline);
        write(r, "proc/sys/kernel/osrelease", "6.1.0-test\n");
        write(r, "proc/modules", "");
        write(r, "etc/os-release", "PRETTY_NAME=\"Ramkey 0.1\"\nVERSION_ID=0.1\n");
        write(
            r,
            "lib/modules/6.1.0-test/modules.dep",
            "kernel/button.ko:\nkernel/usb-storage.ko:\nkernel/vfat.ko: kernel/fat.ko\nkernel/fat.ko:\n\
             kernel/nls_cp437.ko:\nkernel/nls_ascii.ko:\n",
        );
        write(
            r,
            "lib/modules/6.1.0-test/modules.alias",
            "alias acpi*:LNXPWRBN:* button\nalias usb:v1234* usb_storage\n",
        );
        write(r, "sys/devices/LNXSYSTM:00/LNXPWRBN:00/modalias", "acpi:LNXPWRBN:\n");
        write(
            r,
            "sys/devices/pci0000:00/usb1/1-1/1-1:1.0/modalias",
            "usb:v1234p5678\n",
        );
        dir
    }

    /// Adds a usbkey (`sda1` labelled RAMKEY on USB) and its config file.
    fn add_key(root: &Path) {
        let usb = "pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";
        crate::storage::blockdev::fake_device(&root.join("sys"), usb, "sda", Some("sda1"), ("QEMU", "HARDDISK"));
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/sda"), vec![0u8; 512]).unwrap();
        std::fs::write(root.join("dev/sda1"), fixture_sector(FatKind::Fat32, "RAMKEY")).unwrap();
        write(root, "usbkey/config.toml", "version = 1\nhostname = \"box1\"\n");
    }

    fn boot(dir: &Path, loader: &mut RecordingLoader) -> (Result<(), BootError>, Timeline, BootState) {
        boot_with(dir, loader, &mut no_net()).0
    }

    type Booted = (Result<(), BootError>, Timeline, BootState);

    fn boot_with(dir: &Path, loader: &mut RecordingLoader, network: &mut FakeNetwork) -> (Booted, Vec<String>) {
        let paths = Paths::new(dir);
        let clock = FakeClock::new(Duration::from_secs(1), Duration::from_millis(10));
        let mut mounter = RecordingMounter::creating_dirs();
        let mut timeline = Timeline::new(Duration::from_millis(900));
        let mut state = BootState::default();
        let result = Boot {
            paths: &paths,
            clock: &clock,
            mounter: &mut mounter,
            loader,
            watch_uevents: false,
            network,
        }
        .run(&mut timeline, &mut state);
        crate::base::log::set_level(crate::base::log::Level::Info);
        ((result, timeline, state), mounter.lines())
    }

    #[test]
    fn full_boot_with_fakes() {
        let dir = fixture("BOOT_IMAGE=/vmlinuz usb-storage.delay_use=0 quiet\n");
        add_key(dir.path());
        let mut loader = RecordingLoader::default();
        let ((result, timeline, state), mounts) = boot_with(dir.path(), &mut loader, &mut no_net());
        result.unwrap();
        let steps: Vec<_> = timeline.steps.iter().map(|s| s.name).collect();
        assert_eq!(
            steps,
            [
                "early-mounts",
                "cmdline",
                "modules-index",
                "packed",
                "coldplug",
                "power-button",
                "usbkey",
                "config",
                "pool",
                "identity",
                "nics",
                "ntp",
                "good-config"
            ]
        );
        let modules: Vec<_> = loader.calls.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(
            modules,
            ["button", "usb_storage", "fat", "vfat", "nls_cp437", "nls_ascii"]
        );
        assert_eq!(loader.calls[1].1, "delay_use=0");
        assert!(state.modprobe.unwrap().is_loaded("usb_storage"));
        let key = format!("sda1 usbkey vfat {}", crate::storage::usbkey::MOUNT_OPTIONS);
        let key_mounts: Vec<_> = mounts.iter().filter(|m| m.starts_with("sda1 ")).collect();
        assert_eq!(
            key_mounts,
            [
                &format!("{key} [ro]"),
                &format!("{key} [remount]"),
                &format!("{key} [remount] [ro]")
            ],
            "mounted read-only, read-write only to save the good copy"
        );
        assert_eq!(state.usbkey.unwrap().node, PathBuf::from("/dev/sda1"));
        assert_eq!(state.config.unwrap().hostname, "box1");
    }

    #[test]
    fn a_good_boot_saves_the_good_copy_which_a_broken_config_falls_back_to() {
        let dir = fixture("ramkey.key_wait=1\n");
        add_key(dir.path());
        let mut loader = RecordingLoader::default();
        let (result, _, state) = boot(dir.path(), &mut loader);
        result.unwrap();
        assert_eq!(state.config_source, "/usbkey/config.toml");
        assert!(state.config_error.is_none());
        let good = dir.path().join("usbkey/config.toml.good");
        assert_eq!(
            std::fs::read_to_string(&good).unwrap(),
            "version = 1\nhostname = \"box1\"\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/hostname")).unwrap(),
            "box1\n"
        );

        write(
            dir.path(),
            "usbkey/config.toml",
            "version = 1\nhostname = \"box2\"\nbogus = 1\n",
        );
        let (result, timeline, state) = boot(dir.path(), &mut loader);
        result.unwrap();
        assert_eq!(state.config.unwrap().hostname, "box1");
        assert_eq!(state.config_source, "/usbkey/config.toml.good");
        let error = state.config_error.unwrap();
        assert!(
            error.starts_with("/usbkey/config.toml:3:1: unknown key `bogus`"),
            "{error}"
        );
        assert!(
            timeline.steps.iter().all(|s| s.name != "good-config"),
            "the good copy is not rewritten"
        );

        std::fs::remove_file(&good).unwrap();
        let (result, timeline, state) = boot(dir.path(), &mut loader);
        let err = result.unwrap_err().to_string();
        assert!(
            err.starts_with("no usable config: /usbkey/config.toml is invalid or missing"),
            "{err}"
        );
        assert!(err.contains("DHCP on every NIC: 0 lease(s)"), "{err}");
        assert_eq!(timeline.steps.last().unwrap().name, "network");
        assert!(state.config.is_none() && state.config_error.is_some());
    }

    #[test]
    fn no_key_and_no_url_is_recovery() {
        let dir = fixture("ramkey.key_wait=0\n");
        let mut loader = RecordingLoader::default();
        let (result, timeline, state) = boot(dir.path(), &mut loader);
        let err = result.unwrap_err().to_string();
        assert!(
            err.starts_with("no usbkey: no partition labelled RAMKEY appeared within 0 s"),
            "{err}"
        );
        assert_eq!(timeline.steps.last().unwrap().name, "usbkey");
        assert!(state.config.is_none());
    }

    #[test]
    fn pxe_boot_fetches_the_config_by_mac() {
        let dir = fixture("ramkey.config=http://10.0.2.2:8099/${mac}.toml\n");
        let mut loader = RecordingLoader::default();
        let mut net = FakeNetwork {
            links: FakeLinks {
                report: Some(qemu_report()),
                ..FakeLinks::default()
            },
            http: FakeFetch::answering([Ok(b"version = 1\nhostname = \"pxe1\"\n".to_vec())]),
            ..FakeNetwork::default()
        };
        let ((result, timeline, state), _) = boot_with(dir.path(), &mut loader, &mut net);
        result.unwrap();
        let steps: Vec<_> = timeline.steps.iter().map(|s| s.name).collect();
        assert_eq!(steps[6..], ["network", "config", "pool", "identity", "nics", "ntp"]);
        assert_eq!(net.http.urls, ["http://10.0.2.2:8099/52:54:00:12:34:56.toml"]);
        assert_eq!(net.links.calls, ["configure", "apply_config"]);
        assert_eq!(net.hostname.0, ["pxe1"]);
        assert_eq!(state.config.unwrap().hostname, "pxe1");
        assert_eq!(state.network.unwrap().link.name, "eth0");
        assert!(state.usbkey.is_none());

        let mut net = FakeNetwork {
            links: FakeLinks {
                report: Some(qemu_report()),
                ..FakeLinks::default()
            },
            ..FakeNetwork::default()
        };
        let ((result, _, _), _) = boot_with(dir.path(), &mut loader, &mut net);
        let err = result.unwrap_err().to_string();
        assert!(
            err.starts_with("cannot fetch the config from http://10.0.2.2:8099/"),
            "{err}"
        );
        assert_eq!(net.http.urls.len(), crate::boot::config_load::FETCH_ATTEMPTS);
    }

    #[test]
    fn a_bad_config_url_fails_before_the_network() {
        let dir = fixture("ramkey.config=http://10.0.2.2:80a/${mac}.toml\n");
        let mut loader = RecordingLoader::default();
        let (result, timeline, _) = boot(dir.path(), &mut loader);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("the port is not a number"), "{err}");
        assert!(timeline.steps.iter().all(|s| s.name != "network"));
    }

    #[test]
    fn recovery_on_request_stops_after_cmdline() {
        let dir = fixture("ramkey.recovery\n");
        let mut loader = RecordingLoader::default();
        let (result, timeline, mut state) = boot(dir.path(), &mut loader);
        assert!(matches!(result, Err(BootError::RecoveryRequested)));
        assert_eq!(timeline.steps.len(), 2);
        assert!(loader.calls.is_empty());
        // Recovery then loads only the power button.
        let paths = Paths::new(dir.path());
        state.modprobe = Some(open_modules(&paths, &state.cmdline).unwrap());
        let clock = FakeClock::new(Duration::ZERO, Duration::ZERO);
        power_button_coldplug(&paths, &mut state, &mut loader, &clock).unwrap();
        assert_eq!(loader.calls, [("button".to_owned(), String::new())]);
    }

    #[test]
    fn missing_module_index_is_a_boot_error() {
        let dir = fixture("");
        std::fs::remove_file(dir.path().join("lib/modules/6.1.0-test/modules.dep")).unwrap();
        let mut loader = RecordingLoader::default();
        let (result, _, _) = boot(dir.path(), &mut loader);
        let err = result.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("module index unusable: cannot read module index"),
            "{err}"
        );
    }

    /// Every boot step, in the order `docs/boot-order.md` lists them (`network` runs instead
    /// of `usbkey` for a config URL, and again in recovery without a config).
    const STEPS: &[&str] = &[
        "early-mounts",
        "cmdline",
        "modules-index",
        "packed",
        "coldplug",
        "power-button",
        "usbkey",
        "network",
        "config",
        "pool",
        "identity",
        "nics",
        "ntp",
        "good-config",
        "services",
    ];

    /// The name of every `timeline.step(clock, NAME, ...)` in the crate's non-test code.
    fn steps_in_code() -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = dirs.pop() {
            for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for call in code.split("timeline.step(").skip(1) {
                    let name = call
                        .split_once(',')
                        .and_then(|(_, rest)| rest.trim_start().strip_prefix('"')?.split_once('"'))
                        .unwrap_or_else(|| panic!("{}: a step not named by a string literal", path.display()));
                    names.insert(name.0.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn boot_order_doc_lists_every_step_in_order() {
        let in_code = steps_in_code();
        let listed: std::collections::BTreeSet<String> = STEPS.iter().map(|s| s.to_string()).collect();
        assert_eq!(in_code, listed, "the steps the code runs (left) against STEPS (right)");
        let doc = include_str!("../../../docs/boot-order.md");
        let in_doc: Vec<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| ")?.split(" | ").nth(1))
            .filter_map(|step| step.strip_prefix('`')?.strip_suffix('`'))
            .collect();
        assert_eq!(
            in_doc, STEPS,
            "the steps docs/boot-order.md lists (left) against the code's (right)"
        );
    }
}

//! Guest mode: this binary as PID 1 inside a VM personality (`ramkey_guest=1` on the kernel
//! command line). It loads the virtio modules, reads its [`ZoneSpec`] from the spec disk,
//! builds the root — the image's squashfs from the read-only disk, an overlay whose
//! writable layer and volumes live on the state disk (reset when the image changed, unless
//! the root is persistent, as for a zone), `/proc`, `/sys`, `/dev`, `/run`, `/tmp` and the
//! settings file — moves it over `/`, sets the address and runs the manifest's services
//! under the same supervisor and event loop as a zone, saying on the console when they are
//! all online ([`super::READY_LINE`]). A stop (ctrl-alt-del from the VMM) stops them and
//! powers the guest off; PID 1 never exits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::MsFlags;

use ramkey_image::service::{RestartPolicy, ServiceSpec};

use crate::base::clock::BootClock;
use crate::base::paths::Paths;
use crate::devices::coldplug;
use crate::devices::modprobe::KernelLoader;
use crate::net::renew::HeldLease;
use crate::runtime::control;
use crate::storage::mounts::{self, EARLY_MOUNTS, KernelMounter};
use crate::supervisor::protocol::{Request, Response};
use crate::sys;
use crate::zone::{SETTINGS_FILE, ZoneSpec};

/// Where the guest builds its root, in its initramfs.
const BUILD: &str = "run/guest";
/// How long the disks may take to appear after their driver loaded.
const DISK_WAIT: Duration = Duration::from_secs(20);

/// Runs the guest's PID 1. Never returns.
pub fn run() -> ! {
    crate::base::log::hold_early_lines();
    let signals = sys::signalfd(crate::runtime::events::SIGNALS);
    if let Err(e) = sys::disable_ctrl_alt_del() {
        crate::warn!("{e}");
    }
    let paths = Paths::system();
    let started = sys::boottime();
    let setup =
        std::panic::catch_unwind(|| setup(&paths)).unwrap_or_else(|_| Err("panic (see the PANIC line above)".into()));
    drop(signals);
    match setup {
        Ok((spec, leases)) => {
            crate::notice!(
                "guest {}: {} {} set up in {} ms (modules, disks, root, network; its init started {} ms \
                 after its kernel); starting its services",
                spec.name,
                spec.image_name,
                spec.version,
                sys::boottime().saturating_sub(started).as_millis(),
                started.as_millis()
            );
            let name = spec.name.clone();
            std::thread::spawn(move || report_readiness(&name));
            let mut spec = spec;
            if Paths::system().root().join("bin/sh").exists() {
                spec.services.push(serial_console());
            }
            let code = crate::zone::inside::serve(&Paths::system(), &spec, leases);
            crate::notice!("guest {}: services stopped ({code}); powering off", spec.name);
        }
        Err(e) => crate::error!("guest: not started: {e}; powering off"),
    }
    sys::sync();
    let e = sys::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    crate::error!("guest: power-off failed: {e}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Everything before the services; returns the spec and the lease to renew.
fn setup(paths: &Paths) -> Result<(ZoneSpec, Vec<HeldLease>), String> {
    let clock = BootClock;
    mounts::mount_all(paths.root(), EARLY_MOUNTS, &mut KernelMounter).map_err(|e| e.to_string())?;
    let cmdline = crate::boot::read_cmdline(paths);
    let mut modprobe = crate::boot::open_modules(paths, &cmdline).map_err(|e| e.to_string())?;
    let report = coldplug::coldplug(&paths.sys(), &mut modprobe, &mut KernelLoader, &clock, &|_| true)
        .map_err(|e| e.to_string())?;
    crate::info!("{}", report.summary());
    for module in super::initrd::LOADED_BY_NAME {
        if modprobe.index().get(module).is_some() {
            modprobe
                .modprobe(module, &mut KernelLoader)
                .map_err(|e| format!("{module}: {e}"))?;
        }
    }
    let [image, spec_disk, state] = disks(paths)?;
    let spec = read_spec(&spec_disk)?;
    let root = build_root(paths, &spec, &image, &state)?;
    nix::unistd::sethostname(&spec.name).map_err(|e| format!("sethostname: {e}"))?;
    // The initramfs's files stay in RAM under the new root: drop the big ones first.
    let _ = std::fs::remove_dir_all(paths.root().join("lib/modules"));
    let _ = std::fs::remove_file(paths.init());
    enter(paths, &root)?;
    let leases = crate::zone::network::configure(paths, &spec).map_err(|e| e.to_string())?;
    Ok((spec, leases))
}

/// The image, spec and state disks' device nodes, found by their serial numbers (the
/// VMM's `ramkey-diskN`, in the launcher's order).
fn disks(paths: &Paths) -> Result<[PathBuf; 3], String> {
    let deadline = std::time::Instant::now() + DISK_WAIT;
    loop {
        let found: Vec<Option<PathBuf>> = (0..3)
            .map(|i| disk_with_serial(paths, &super::disk_serial(i)))
            .collect();
        if let [Some(a), Some(b), Some(c)] = &found[..] {
            return Ok([a.clone(), b.clone(), c.clone()]);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the VM's disks did not all appear in {} s (virtio_mmio, virtio_blk loaded?)",
                DISK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn disk_with_serial(paths: &Paths, serial: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(paths.sys().join("block")).ok()?;
    entries.flatten().find_map(|e| {
        let read = std::fs::read_to_string(e.path().join("serial")).ok()?;
        // The node appears a moment after the sysfs entry (devtmpfs makes it in its thread).
        let node = paths.dev().join(e.file_name());
        (read.trim() == serial && node.exists()).then_some(node)
    })
}

/// The spec the launcher wrote to its disk: JSON, then zeros.
fn read_spec(disk: &Path) -> Result<ZoneSpec, String> {
    let bytes = std::fs::read(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    serde_json::from_slice(&bytes[..end]).map_err(|e| format!("the spec on {}: {e}", disk.display()))
}

fn mount(source: &Path, target: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    nix::mount::mount(Some(source), target, fstype, flags, data)
        .map_err(|e| format!("mounting {} on {}: {e}", source.display(), target.display()))
}

/// The guest's root under [`BUILD`]`/root`; returns it.
fn build_root(paths: &Paths, spec: &ZoneSpec, image: &Path, state_disk: &Path) -> Result<PathBuf, String> {
    let build = paths.root().join(BUILD);
    let (lower, state, root) = (build.join("lower"), build.join("state"), build.join("root"));
    mount(image, &lower, Some("squashfs"), MsFlags::MS_RDONLY, None)?;
    mount(
        state_disk,
        &state,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    )?;
    // The writable layer goes with the image it was made over, unless the root persists.
    let marker = state.join("root-image");
    let before = std::fs::read_to_string(&marker).unwrap_or_default();
    if before.trim() != spec.sha256 && !spec.persistent_root {
        for dir in ["upper", "work"] {
            let _ = std::fs::remove_dir_all(state.join(dir));
        }
    }
    for dir in ["upper", "work", "volumes"] {
        std::fs::create_dir_all(state.join(dir)).map_err(|e| format!("{dir}: {e}"))?;
    }
    std::fs::write(&marker, &spec.sha256).map_err(|e| format!("{}: {e}", marker.display()))?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        state.join("upper").display(),
        state.join("work").display()
    );
    mount(
        Path::new("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?;
    for (inside, volume) in &spec.volumes {
        let source = state.join("volumes").join(volume);
        std::fs::create_dir_all(&source).map_err(|e| format!("volume {volume}: {e}"))?;
        let target = root.join(inside.trim_start_matches('/'));
        mount(&source, &target, None, MsFlags::MS_BIND, None)?;
    }
    mounts::mount_all(&root, EARLY_MOUNTS, &mut KernelMounter).map_err(|e| e.to_string())?;
    mount(
        Path::new("tmpfs"),
        &root.join("tmp"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    )?;
    let settings = root.join(SETTINGS_FILE);
    if let Some(dir) = settings.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&settings, &spec.settings).map_err(|e| format!("{}: {e}", settings.display()))?;
    Ok(root)
}

/// Moves `root` over `/` and enters it (the initramfs cannot be `pivot_root`ed away).
fn enter(paths: &Paths, root: &Path) -> Result<(), String> {
    nix::unistd::chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::mount::mount(Some("."), paths.root(), None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| format!("moving {} over /: {e}", root.display()))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    nix::unistd::chdir(paths.root()).map_err(|e| format!("chdir /: {e}"))
}

/// The service that serves the guest's serial console (`ramkeyctl personality console
/// NAME` on the host, root's only): each line typed runs as a command of the image's
/// `/bin/sh`; an empty line starts an interactive shell. The VM is the boundary here, as
/// the zone's namespaces are for a zone's console.
fn serial_console() -> ServiceSpec {
    const LOOP: &str = "exec </dev/ttyS0 >/dev/ttyS0 2>&1; \
        while IFS= read -r line; do \
        if [ -z \"$line\" ]; then /bin/sh -i; else /bin/sh -c \"$line\"; echo \"[exit $?]\"; fi; \
        done";
    let mut s = ServiceSpec::new(SERIAL_SERVICE, vec!["/bin/sh".into(), "-c".into(), LOOP.into()]);
    s.restart = RestartPolicy::Always;
    s
}

/// The guest's own service on its serial console.
const SERIAL_SERVICE: &str = "ramkey-serial";

/// Says on the console when every service is online (and when that stops being so), for
/// the launcher outside, which cannot reach the guest's control socket.
fn report_readiness(name: &str) {
    let mut said: Option<Vec<String>> = None;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let answer = control::call(
            Path::new(control::SOCKET),
            &Request::Svcs { all: true },
            Duration::from_secs(3),
        );
        let Ok(Response::Svcs { services }) = answer else {
            continue;
        };
        let waiting = crate::zone::launch::waiting(&services);
        if said.as_ref() == Some(&waiting) {
            continue;
        }
        if waiting.is_empty() {
            crate::notice!("{} ({name}: every service online)", super::READY_LINE);
        } else {
            crate::warn!("{} {}", super::WAITING_LINE, waiting.join(", "));
        }
        said = Some(waiting);
    }
}

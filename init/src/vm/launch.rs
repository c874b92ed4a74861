//! `ramkey-zone NAME` for a VM personality: the guest's initramfs and disks, its macvtap
//! on the personality's NIC, `ramkey-vmm` started with them in the zone's cgroup, the
//! console relayed ([`super::console`]), a stop turned into the guest's own power-off, and
//! the VMM's ending turned into the service's exit status: 0 when the guest powered off,
//! 1 otherwise (a crash or a reboot, which the supervisor restarts, up to its budget).
//! Zones go on to [`crate::zone::launch`].

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use ramkey_image::runtime::Runtime;

use super::console::{self, Files};
use super::jail::Jail;
use crate::base::log::Level;
use crate::base::paths::Paths;
use crate::net::netlink::{Netlink, RouteSocket};
use crate::net::source_check;
use crate::sys;
use crate::zone::{ZoneSpec, launch as zone_launch};

/// The name `ramkey-vmm` answers to in this binary.
pub const VMM_NAME: &str = "ramkey-vmm";

/// The guest kernel's command line (the VMM adds its machine's own parameters).
const GUEST_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// `ramkey-zone NAME | --ready NAME`: a VM's launcher or readiness check; a zone's
/// otherwise.
pub fn main(args: &[String]) -> i32 {
    let (ready, name) = match args {
        [flag, name] if flag == "--ready" => (true, name),
        [name] => (false, name),
        _ => return zone_launch::main(args),
    };
    let spec = match ZoneSpec::read(Paths::system().root(), name) {
        Ok(spec) if spec.runtime == Runtime::Vm => spec,
        _ => return zone_launch::main(args),
    };
    if ready {
        return match super::ready(name) {
            Ok(()) => 0,
            Err(why) => {
                eprintln!("{why}");
                1
            }
        };
    }
    match run(&spec) {
        Ok(code) => code,
        Err(e) => {
            say(Level::Error, &format!("vm {name}: not started: {e}"));
            1
        }
    }
}

/// A line for the VM's log and for the console, where whoever watches the box is.
fn say(level: Level, line: &str) {
    crate::base::log::log(level, format_args!("{line}"));
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open(Paths::system().console()) {
        crate::base::log::to_console(&mut console, level, format_args!("{line}"));
    }
}

/// A step of the VM's start that failed, in words.
type Failed = String;

fn run(spec: &ZoneSpec) -> Result<i32, Failed> {
    let name = &spec.name;
    let paths = Paths::system();
    let procs = spec.cgroup.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string()).map_err(|e| format!("joining {}: {e}", procs.display()))?;
    let kernel = spec.kernel.clone().ok_or("no guest kernel in its spec")?;
    let state = super::file(name, super::GUEST_STATE);
    let _ = std::fs::remove_file(&state);
    let spec_disk = spec_disk(spec)?;
    // A cluster resource's state disk is on its replicated volumes, which move with it.
    let state_dir = if spec.mac.is_some() {
        spec.state_dir.join("volumes")
    } else {
        spec.state_dir.clone()
    };
    let state_disk = state_disk(&state_dir)?;
    let initrd = super::file(name, "guest.cpio");
    guest_initrd(&paths, &initrd)?;
    let base = crate::zone::ids::base(&spec.state_dir).map_err(|e| e.to_string())?;
    // The VMM's own id (the zone's id base) may write the state disk, and nothing else.
    std::os::unix::fs::chown(&state_disk, Some(base), Some(base))
        .map_err(|e| format!("{}: {e}", state_disk.display()))?;
    let signals = sys::signalfd(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD]).map_err(|e| e.to_string())?;
    // From here on a failure removes the macvtap again.
    let nic = match &spec.nic {
        Some(nic) => Some(macvtap(spec, base, nic)?),
        None => None,
    };
    // Paths as the VMM sees them, in its jail: the files are at its root.
    let jailed = |name: &str| paths.root().join(name).display().to_string();
    let mut argv: Vec<String> = vec![VMM_NAME.into()];
    argv.extend([
        "--kernel".into(),
        jailed("kernel"),
        "--initrd".into(),
        jailed("initrd"),
        "--kvm".into(),
        paths.dev().join("kvm").display().to_string(),
        "--cmdline".into(),
        format!("{GUEST_CMDLINE} {}", super::GUEST_PARAM),
        "--vcpus".into(),
        spec.vm.vcpus.to_string(),
        "--memory".into(),
        spec.vm.memory_mib.to_string(),
    ]);
    for (i, ro) in [",ro", ",ro", ""].iter().enumerate() {
        argv.extend(["--disk".into(), format!("{}{ro}", jailed(&format!("disk{i}")))]);
    }
    let mut devices = vec![(paths.dev().join("kvm"), "kvm".to_string())];
    if let Some(tap) = &nic {
        let device = paths.dev().join("tap").display().to_string();
        argv.extend(["--net".into(), format!("{device},mac={}", mac_text(tap.mac))]);
        devices.push((tap.device.clone(), "tap".to_string()));
    }
    let jail = Jail {
        dir: super::file(name, "jail"),
        id: base,
        files: vec![
            (kernel, "kernel".into(), false),
            (initrd.clone(), "initrd".into(), false),
            (spec.image.clone(), "disk0".into(), false),
            (spec_disk, "disk1".into(), false),
            (state_disk, "disk2".into(), true),
        ],
        devices,
    };
    let started = start(&paths, &jail, &argv);
    let (vmm, output, input) = match started {
        Ok(started) => started,
        Err(e) => {
            remove_tap(name, nic);
            return Err(e);
        }
    };
    let _ = std::fs::write(super::file(name, "pid"), vmm.to_string());
    say(
        Level::Info,
        &format!(
            "vm {name}: {} {} on {} vCPU(s), {} MiB, pid {vmm}",
            spec.image_name, spec.version, spec.vm.vcpus, spec.vm.memory_mib
        ),
    );
    // The launcher outlives an out-of-memory kill in the cgroup; the VMM does not.
    let _ = std::fs::write(paths.proc_of("self").join("oom_score_adj"), "-1000");
    let files = Files {
        name: name.clone(),
        console: paths.console(),
        socket: super::file(name, super::CONSOLE_SOCKET),
        state: state.clone(),
        initrd,
    };
    console::relay(name, output, input, files);
    let code = wait(name, vmm, &signals);
    let _ = std::fs::remove_file(&state);
    remove_tap(name, nic);
    Ok(code)
}

/// Starts `ramkey-vmm` with `argv` in `jail`, its console on two pipes; returns its pid
/// and the pipes' ends for the relay.
fn start(paths: &Paths, jail: &Jail, argv: &[String]) -> Result<(Pid, std::fs::File, std::fs::File), Failed> {
    let program = std::fs::File::open(paths.init()).map_err(|e| format!("{}: {e}", paths.init().display()))?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let pipe = |what| std::io::pipe().map_err(|e| format!("{what} pipe: {e}"));
    let (from_vmm, vmm_out) = pipe("console")?;
    let (vmm_in, to_vmm) = pipe("console")?;
    match sys::confine::fork().map_err(|e| e.to_string())? {
        Some(pid) => Ok((pid, OwnedFd::from(from_vmm).into(), OwnedFd::from(to_vmm).into())),
        None => {
            let redirected = sys::terminal::redirect(&vmm_in.into(), &[0])
                .and_then(|()| sys::terminal::redirect(&vmm_out.into(), &[1]));
            let failed = match redirected {
                Ok(()) => {
                    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
                    jail.exec(&program.into(), &argv)
                }
                Err(e) => e.to_string(),
            };
            say(Level::Error, &format!("ramkey-vmm: not started in its jail: {failed}"));
            sys::confine::exit_child(ramkey_vmm::outcome::code::INTERNAL)
        }
    }
}

/// Forwards a stop to the VMM (which asks the guest to power off) and maps its exit.
fn wait(name: &str, vmm: Pid, signals: &nix::sys::signalfd::SignalFd) -> i32 {
    let mut stopping = false;
    loop {
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 1,
        }
        while let Ok(Some(signo)) = sys::read_signal(signals) {
            if signo != Signal::SIGCHLD as i32 {
                stopping = true;
                let _ = nix::sys::signal::kill(vmm, Signal::SIGTERM);
                continue;
            }
            match waitpid(vmm, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return exit_code(name, Some(code), stopping),
                Ok(WaitStatus::Signaled(..)) => return exit_code(name, None, stopping),
                _ => {}
            }
        }
    }
}

/// The launcher's status for the VMM's exit `code` (see `ramkey_vmm::outcome::code`).
fn exit_code(name: &str, code: Option<i32>, stopping: bool) -> i32 {
    match code {
        Some(ramkey_vmm::outcome::code::POWERED_OFF) if stopping => {
            say(Level::Info, &format!("vm {name}: the guest powered off (stopped)"));
            0
        }
        Some(ramkey_vmm::outcome::code::POWERED_OFF) => {
            say(Level::Info, &format!("vm {name}: the guest powered itself off"));
            0
        }
        Some(code) => {
            say(
                Level::Error,
                &format!("vm {name}: the VM ended: {VMM_NAME} exit {code} ({})", ending(code)),
            );
            1
        }
        None => {
            say(Level::Error, &format!("vm {name}: the VMM was killed"));
            1
        }
    }
}

/// What the VMM's exit code means (see `ramkey_vmm::outcome::code`).
fn ending(code: i32) -> &'static str {
    use ramkey_vmm::outcome::code as c;
    match code {
        c::CRASHED => "the guest crashed",
        c::NO_KVM => "no usable KVM on this box",
        c::INTERNAL => "the VMM failed",
        c::USAGE => "the launcher's command line is wrong: a bug",
        c::REBOOTED => "the guest rebooted (a kernel panic reboots it)",
        _ => "an exit code this launcher does not know",
    }
}

/// The spec the guest reads, as JSON padded with zeros to whole sectors, in the zone's
/// run directory.
fn spec_disk(spec: &ZoneSpec) -> Result<PathBuf, Failed> {
    let path = super::file(&spec.name, "guest-spec.json");
    let mut text = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
    // Whole sectors, and 64 KiB at least: the guest kernel's partition scan reads that far.
    text.resize((text.len().div_ceil(512) * 512).max(64 << 10), 0);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The state disk on the pool (or in RAM without one): made and formatted ext4 the first
/// time, kept after.
fn state_disk(state_dir: &Path) -> Result<PathBuf, Failed> {
    let path = state_dir.join(super::STATE_FILE);
    if path.exists() {
        return Ok(path);
    }
    let partial = state_dir.join(format!("{}.partial", super::STATE_FILE));
    let failed = |e: std::io::Error| format!("{}: {e}", partial.display());
    std::fs::create_dir_all(state_dir).map_err(failed)?;
    std::fs::File::create(&partial)
        .and_then(|f| f.set_len(super::STATE_SIZE))
        .map_err(failed)?;
    let made = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "ramkey-state"])
        .arg(&partial)
        .output()
        .map_err(|e| format!("mke2fs (e2fsprogs): {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "mke2fs {}: {}",
            partial.display(),
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    std::fs::rename(&partial, &path).map_err(failed)?;
    Ok(path)
}

/// Writes the guest's initramfs from this binary and the box's modules.
fn guest_initrd(paths: &Paths, out: &Path) -> Result<(), Failed> {
    let release = std::fs::read_to_string(paths.osrelease()).map_err(|e| format!("kernel release: {e}"))?;
    let release = release.trim();
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut file = std::io::BufWriter::new(file);
    super::initrd::write(
        &paths.proc_of("self").join("exe"),
        &paths.modules_dir(release),
        release,
        &mut file,
    )
    .and_then(|()| file.flush())
    .map_err(|e| format!("the guest's initramfs {}: {e}", out.display()))
}

/// The VM's NIC on the host: a macvtap, its device node, its MAC and its source check.
struct Tap {
    index: u32,
    device: PathBuf,
    mac: [u8; 6],
    checked: (u32, u16),
}

/// Makes the VM's macvtap on host NIC `nic`, with the zone's MAC and source check.
fn macvtap(spec: &ZoneSpec, base: u32, nic: &str) -> Result<Tap, Failed> {
    let mut socket = RouteSocket::open().map_err(|e| e.to_string())?;
    let links = socket.links().map_err(|e| e.to_string())?;
    let parent = links
        .iter()
        .find(|l| l.name == nic)
        .ok_or_else(|| format!("no NIC {nic} on the host"))?;
    let own = parent.mac.ok_or_else(|| format!("{nic} has no MAC"))?;
    let mac = spec.mac.unwrap_or_else(|| source_check::zone_mac(own, &spec.name));
    let tap_name = format!("vmtap{}", std::process::id());
    socket
        .add_macvtap(parent.index, &tap_name, mac)
        .map_err(|e| format!("a macvtap on {nic}: {e}"))?;
    let links = socket.links().map_err(|e| e.to_string())?;
    let index = links
        .iter()
        .find(|l| l.name == tap_name)
        .map(|l| l.index)
        .ok_or_else(|| format!("{tap_name} vanished"))?;
    let made = socket
        .set_up(index)
        .map_err(|e| format!("{tap_name} up: {e}"))
        .and_then(|()| {
            zone_launch::guard(spec, base, &mut socket, nic, (parent.index, own), mac).map_err(|e| e.to_string())
        });
    match made {
        Ok(checked) => Ok(Tap {
            index,
            device: Paths::system().dev().join(format!("tap{index}")),
            mac,
            checked,
        }),
        Err(e) => {
            let _ = socket.delete_link(index);
            Err(e)
        }
    }
}

/// Removes the VM's macvtap and its source check.
fn remove_tap(name: &str, tap: Option<Tap>) {
    let Some(tap) = tap else { return };
    zone_launch::unguard(name, tap.checked);
    if let Err(e) = RouteSocket::open().and_then(|mut s| s.delete_link(tap.index)) {
        crate::warn!("vm {name}: removing its macvtap: {e}");
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramkey_vmm::outcome::code;

    #[test]
    fn only_a_guest_that_powered_off_ends_the_service_cleanly() {
        // The supervisor restarts `zone-NAME` on a failure: a panic (reboot), a crash, no KVM.
        assert_eq!(exit_code("web", Some(code::POWERED_OFF), true), 0);
        assert_eq!(exit_code("web", Some(code::POWERED_OFF), false), 0);
        for ended in [code::REBOOTED, code::CRASHED, code::NO_KVM, code::INTERNAL] {
            assert_eq!(exit_code("web", Some(ended), false), 1, "exit {ended}");
        }
        assert_eq!(exit_code("web", None, true), 1);
        assert!(ending(code::REBOOTED).contains("kernel panic"));
    }
}

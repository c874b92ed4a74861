//! What the harness boots and on which accelerator: the [`Spec`] of a machine (a direct
//! kernel boot or `ramkey run`'s machine) and the KVM probe behind [`accel`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::channel;
use std::time::Duration;

use anyhow::Result;

use super::QEMU;

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Names the log file: `target/ramkey/logs/<name>.log`.
    pub name: String,
    pub memory_mb: u32,
    /// Direct kernel boot: kernel, initrd, command line.
    pub kernel: Option<(PathBuf, PathBuf, String)>,
    /// Further QEMU arguments (disks, NICs, firmware).
    pub args: Vec<String>,
}

impl Spec {
    /// A direct kernel boot of a built platform with the test console settings.
    pub fn direct(name: &str, platform: &Path, extra_cmdline: &str) -> Spec {
        let cmdline = format!("console=ttyS0 panic=-1 quiet {extra_cmdline}")
            .trim()
            .to_string();
        Spec {
            name: name.to_string(),
            memory_mb: 1024,
            kernel: Some((platform.join("vmlinuz"), platform.join("initrd.img"), cmdline)),
            args: Vec::new(),
        }
    }

    /// A machine described by `ramkey run`'s options — the same machine users get.
    pub fn run(name: &str, opts: &ramkey_builder::run::RunOptions) -> Result<Spec> {
        let args = ramkey_builder::run::machine_args(opts)?;
        Ok(Spec {
            name: name.to_string(),
            memory_mb: opts.memory_mb,
            kernel: None,
            args: args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        })
    }

    /// Adds a virtio NIC on QEMU's user network, optionally with host port forwards.
    pub fn user_net(mut self, forwards: &[(u16, u16)]) -> Spec {
        let mut netdev = "user,id=n0".to_string();
        for (host, guest) in forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        self.args.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ]);
        self
    }
}

/// The QEMU accelerator: `RAMKEY_ACCEL` if set, else `kvm` only when a probe showed that
/// KVM really boots the platform on this machine, else `tcg`. On this project's machines
/// `/dev/kvm` is there but stock kernels do not boot on it (FACTS.md), so the presence of the
/// device proves nothing. The probe's answer is cached in `target/ramkey/kvm-probe`.
pub fn accel() -> String {
    static ACCEL: OnceLock<String> = OnceLock::new();
    ACCEL
        .get_or_init(|| {
            if let Ok(accel) = std::env::var("RAMKEY_ACCEL") {
                return accel;
            }
            if !Path::new("/dev/kvm").exists() {
                return "tcg".into();
            }
            let cache = crate::artifacts::target_dir().join("ramkey/kvm-probe");
            if let Ok(answer) = std::fs::read_to_string(&cache) {
                return answer.trim().to_string();
            }
            let answer = if probe_kvm() { "kvm" } else { "tcg" };
            let _ = std::fs::create_dir_all(cache.parent().unwrap_or(Path::new(".")));
            let _ = std::fs::write(&cache, answer);
            eprintln!("xtask: KVM probe: using {answer} (cached in {})", cache.display());
            answer.into()
        })
        .clone()
}

/// Boots the platform into recovery mode under KVM; KVM works if PID 1 says so in time.
fn probe_kvm() -> bool {
    let Ok(platform) = crate::artifacts::platform() else {
        return false;
    };
    let Ok(mut child) = Command::new(QEMU)
        .args([
            "-accel",
            "kvm",
            "-M",
            "q35",
            "-cpu",
            "host",
            "-m",
            "512",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-no-reboot", "-serial", "stdio"])
        .arg("-kernel")
        .arg(platform.join("vmlinuz"))
        .arg("-initrd")
        .arg(platform.join("initrd.img"))
        .args(["-append", "console=ttyS0 panic=-1 quiet ramkey.recovery"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let stdout = child.stdout.take();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let Some(stdout) = stdout else { return };
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("ramkey: RECOVERY MODE") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let works = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    works
}

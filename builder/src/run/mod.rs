//! `ramkey run`: boots built media under QEMU to try an appliance without hardware — a stick
//! image on an emulated USB disk (SeaBIOS or OVMF), a PXE tree over QEMU's built-in TFTP, or
//! a platform folder by direct kernel boot. `machine_args` is the one machine definition: the
//! xtask boot tests use it too and add their own accelerator, console and monitor options.
//! [`Hub`] joins machines linked over UDP into one Ethernet segment (`ramkey hub`).

mod cli;
mod hub;
mod machine;
mod net;

pub use cli::{HubArgs, RunArgs, cli, hub_cli, parse_size};
pub use hub::{Hub, HubStats, Seen};
pub use machine::machine_args;
pub use net::{Forward, Link};

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// OVMF's code (read-only) and the template of its variable store (copied, writable).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The iPXE script the PXE tree boots.
pub const BOOT_SCRIPT: &str = "boot.ipxe";

/// What to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A stick image (`usb.img`) on an emulated USB disk.
    Usb { image: PathBuf },
    /// A PXE tree (`pxe/` with `boot.ipxe`) served by QEMU's TFTP.
    Pxe { dir: PathBuf },
    /// A platform folder (`vmlinuz`, `initrd.img`) booted with `-kernel`.
    Kernel { platform: PathBuf },
}

/// The firmware.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    #[default]
    Bios,
    /// OVMF.
    Uefi,
}

/// How to run the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    pub boot: Boot,
    pub firmware: Firmware,
    /// Guest RAM; used by `command` (the test harness sets its own).
    pub memory_mb: u32,
    /// A raw disk image attached as a virtio-blk disk (serial `ramkey-pool`); created sparse
    /// with `pool_size` bytes when missing.
    pub pool: Option<PathBuf>,
    pub pool_size: u64,
    pub forwards: Vec<Forward>,
    /// NICs after the first (QEMU's user network), in order.
    pub links: Vec<Link>,
    /// `ramkey.config=URL` for PXE and kernel boots.
    pub config_url: Option<String>,
    /// Further kernel parameters for kernel boots.
    pub append: String,
    /// Where the writable OVMF variables and a rewritten PXE tree go; default: next to what
    /// is booted, `<name>.ramkey-run/`.
    pub state_dir: Option<PathBuf>,
    /// QEMU's accelerator for `command`: `tcg` (see FACTS: KVM does not work here).
    pub accel: String,
}

impl RunOptions {
    /// BIOS, 1024 MiB, no pool, no forwards, TCG.
    pub fn new(boot: Boot) -> RunOptions {
        RunOptions {
            boot,
            firmware: Firmware::Bios,
            memory_mb: 1024,
            pool: None,
            pool_size: DEFAULT_POOL_SIZE,
            forwards: Vec::new(),
            links: Vec::new(),
            config_url: None,
            append: String::new(),
            state_dir: None,
            accel: "tcg".into(),
        }
    }

    /// Where per-run files go.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let source = match &self.boot {
            Boot::Usb { image } => image,
            Boot::Pxe { dir } => dir,
            Boot::Kernel { platform } => platform,
        };
        let name = source.file_name().unwrap_or_default().to_string_lossy();
        let parent = source.parent().filter(|p| !p.as_os_str().is_empty());
        parent.unwrap_or(Path::new(".")).join(format!("{name}.ramkey-run"))
    }
}

/// 4 GiB.
pub const DEFAULT_POOL_SIZE: u64 = 4 << 30;

/// Why the machine cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path} is missing: {hint}")]
    Missing { path: PathBuf, hint: &'static str },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--config-url needs a PXE or kernel boot: a stick carries its config in /config.toml")]
    ConfigUrlOnUsb,
    #[error("{path} has no `kernel` line to add ramkey.config= to")]
    NoKernelLine { path: PathBuf },
    #[error(
        "cannot start {QEMU}: {source}; install qemu-system-x86 (bookworm-backports), or run `cargo xtask deps` as root"
    )]
    Spawn { source: std::io::Error },
    #[error("{QEMU} exited with {status}")]
    Qemu { status: ExitStatus },
}

/// The interactive run: the console and the QEMU monitor multiplexed on stdio.
pub fn command(opts: &RunOptions) -> Result<Command, RunError> {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", &opts.accel, "-M", "q35", "-cpu", "max", "-m"])
        .arg(opts.memory_mb.to_string())
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "mon:stdio",
        ])
        .args(machine_args(opts)?);
    Ok(cmd)
}

/// What is being booted and how to get out, printed before QEMU starts.
pub fn banner(opts: &RunOptions) -> String {
    let what = match &opts.boot {
        Boot::Usb { image } => format!("the stick image {} on a USB disk", image.display()),
        Boot::Pxe { dir } => format!("{} over PXE (QEMU's TFTP)", dir.display()),
        Boot::Kernel { platform } => format!("the platform {} (direct kernel boot)", platform.display()),
    };
    let firmware = match opts.firmware {
        Firmware::Bios => "BIOS (SeaBIOS)",
        Firmware::Uefi => "UEFI (OVMF)",
    };
    let mut text = format!("ramkey run: booting {what}, {firmware}, {} MiB\n", opts.memory_mb);
    if let Some(pool) = &opts.pool {
        text.push_str(&format!(
            "  pool: {} (virtio disk, serial ramkey-pool)\n",
            pool.display()
        ));
    }
    for f in &opts.forwards {
        text.push_str(&format!("  forward: {f}\n"));
    }
    for link in &opts.links {
        text.push_str(&format!("  link: {link}\n"));
    }
    text.push_str(
        "  quit: Ctrl-a x    power button: Ctrl-a c, then `system_powerdown`, then Ctrl-a c back to the console\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::machine::opt_path;
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usb.img"), b"img").unwrap();
        let platform = dir.path().join("platform");
        std::fs::create_dir(&platform).unwrap();
        std::fs::write(platform.join("vmlinuz"), b"k").unwrap();
        std::fs::write(platform.join("initrd.img"), b"i").unwrap();
        let pxe = dir.path().join("pxe");
        std::fs::create_dir(&pxe).unwrap();
        std::fs::write(pxe.join("vmlinuz"), b"k").unwrap();
        std::fs::write(
            pxe.join(BOOT_SCRIPT),
            "#!ipxe\nkernel vmlinuz console=ttyS0 quiet\ninitrd initrd.img\nboot\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn usb_with_bios_forwards_and_a_new_sparse_pool() {
        let dir = fixture();
        let image = dir.path().join("usb.img");
        let pool = dir.path().join("pool.img");
        let opts = RunOptions {
            pool: Some(pool.clone()),
            pool_size: 1 << 30,
            forwards: vec!["8080:80".parse().unwrap(), "2222:22".parse().unwrap()],
            ..RunOptions::new(Boot::Usb { image: image.clone() })
        };
        let args = strings(machine_args(&opts).unwrap());
        let d = dir.path().display();
        let expected: Vec<String> = [
            "-device".to_string(),
            "qemu-xhci,id=xhci".into(),
            "-drive".into(),
            format!("if=none,id=stick,format=raw,file={d}/usb.img"),
            "-device".into(),
            "usb-storage,bus=xhci.0,drive=stick,removable=on,bootindex=1".into(),
            "-netdev".into(),
            "user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22".into(),
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
            "-drive".into(),
            format!("if=none,id=pool,format=raw,file={d}/pool.img"),
            "-device".into(),
            "virtio-blk-pci,drive=pool,serial=ramkey-pool".into(),
        ]
        .into();
        assert_eq!(args, expected);
        let meta = std::fs::metadata(&pool).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() < 16, "the pool is sparse");
        // An existing pool is kept as it is.
        std::fs::write(&pool, b"data").unwrap();
        machine_args(&opts).unwrap();
        assert_eq!(std::fs::read(&pool).unwrap(), b"data");
        assert!(matches!(
            machine_args(&RunOptions {
                config_url: Some("http://x/".into()),
                ..opts.clone()
            }),
            Err(RunError::ConfigUrlOnUsb)
        ));
    }

    #[test]
    fn usb_with_uefi_copies_the_variables_next_to_the_image() {
        let dir = fixture();
        if !Path::new(OVMF_VARS).exists() {
            panic!("{OVMF_VARS} is missing: install the ovmf package (apt-get install ovmf)");
        }
        let opts = RunOptions {
            firmware: Firmware::Uefi,
            ..RunOptions::new(Boot::Usb {
                image: dir.path().join("usb.img"),
            })
        };
        let args = strings(machine_args(&opts).unwrap());
        let vars = dir.path().join("usb.img.ramkey-run/OVMF_VARS.fd");
        assert_eq!(
            args[..4],
            [
                "-drive".to_string(),
                format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                "-drive".into(),
                format!("if=pflash,format=raw,file={}", vars.display()),
            ]
        );
        assert_eq!(std::fs::read(&vars).unwrap(), std::fs::read(OVMF_VARS).unwrap());
        assert_eq!(args[4..6], ["-device".to_string(), "qemu-xhci,id=xhci".into()]);
    }

    #[test]
    fn pxe_uses_qemus_tftp_and_rewrites_the_script_for_a_config_url() {
        let dir = fixture();
        let pxe = dir.path().join("pxe");
        let opts = RunOptions::new(Boot::Pxe { dir: pxe.clone() });
        let args = strings(machine_args(&opts).unwrap());
        assert_eq!(
            args,
            [
                "-boot".to_string(),
                "n".into(),
                "-netdev".into(),
                format!("user,id=n0,tftp={},bootfile=boot.ipxe", pxe.display()),
                "-device".into(),
                "virtio-net-pci,netdev=n0".into(),
            ]
        );
        let opts = RunOptions {
            config_url: Some("http://10.0.2.2:8080/c.toml".into()),
            ..opts
        };
        let args = strings(machine_args(&opts).unwrap());
        let root = dir.path().join("pxe.ramkey-run/tftp");
        assert_eq!(
            args[3],
            format!("user,id=n0,tftp={},bootfile=boot.ipxe", root.display())
        );
        let script = std::fs::read_to_string(root.join(BOOT_SCRIPT)).unwrap();
        assert!(script.contains("kernel vmlinuz console=ttyS0 quiet ramkey.config=http://10.0.2.2:8080/c.toml\n"));
        assert_eq!(std::fs::read(root.join("vmlinuz")).unwrap(), b"k");
        // The original tree is untouched.
        assert!(
            !std::fs::read_to_string(pxe.join(BOOT_SCRIPT))
                .unwrap()
                .contains("ramkey.config")
        );
    }

    #[test]
    fn kernel_boot_with_config_url_and_extra_parameters() {
        let dir = fixture();
        let platform = dir.path().join("platform");
        let opts = RunOptions {
            config_url: Some("http://10.0.2.2:8080/c.toml".into()),
            append: "ramkey.log=debug".into(),
            forwards: vec![Forward {
                host: 8080,
                guest: 80,
                address: None,
            }],
            ..RunOptions::new(Boot::Kernel {
                platform: platform.clone(),
            })
        };
        let args = strings(machine_args(&opts).unwrap());
        assert_eq!(
            args,
            [
                "-kernel".to_string(),
                format!("{}/vmlinuz", platform.display()),
                "-initrd".into(),
                format!("{}/initrd.img", platform.display()),
                "-append".into(),
                "console=ttyS0 ramkey.config=http://10.0.2.2:8080/c.toml ramkey.log=debug".into(),
                "-netdev".into(),
                "user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80".into(),
                "-device".into(),
                "virtio-net-pci,netdev=n0".into(),
            ]
        );
        let cmd = command(&opts).unwrap();
        let all: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            all[..14].join(" "),
            "-accel tcg -M q35 -cpu max -m 1024 -nodefaults -no-user-config -display none -serial mon:stdio"
        );
        assert_eq!(all[14..], args[..]);
    }

    #[test]
    fn links_wire_further_nics_to_another_machine() {
        let dir = fixture();
        let opts = RunOptions {
            links: vec!["listen:7001".parse().unwrap(), "connect:7002".parse().unwrap()],
            ..RunOptions::new(Boot::Usb {
                image: dir.path().join("usb.img"),
            })
        };
        let args = strings(machine_args(&opts).unwrap());
        let n0 = args.iter().position(|a| a == "virtio-net-pci,netdev=n0").unwrap();
        assert_eq!(
            args[n0 + 1..],
            [
                "-netdev".to_string(),
                "socket,id=link0,listen=127.0.0.1:7001".into(),
                "-device".into(),
                "virtio-net-pci,netdev=link0,mac=52:54:00:4c:1b:59".into(),
                "-netdev".into(),
                "socket,id=link1,connect=127.0.0.1:7002".into(),
                "-device".into(),
                "virtio-net-pci,netdev=link1,mac=52:54:00:43:1b:5a".into(),
            ]
        );
        // The two ends of one link differ.
        assert_ne!(Link::Listen(7001).mac(), Link::Listen(7001).peer().mac());
        assert_eq!(Link::Connect(7001).peer(), Link::Listen(7001));
        assert!(banner(&opts).contains("link: connected to 127.0.0.1:7002, MAC 52:54:00:43:1b:5a"));
        for bad in [
            "7001",
            "listen:",
            "listen:0",
            "serve:7001",
            "connect:70000",
            "udp:7001",
            "udp:7001:0",
        ] {
            let err = bad.parse::<Link>().unwrap_err();
            assert!(
                err.contains("listen:PORT, connect:PORT or udp:LOCAL:REMOTE"),
                "{bad}: {err}"
            );
        }
        assert!("udp:7001:7001".parse::<Link>().unwrap_err().contains("must differ"));
    }

    #[test]
    fn udp_links_send_frames_as_datagrams_to_a_peer_or_a_hub() {
        let dir = fixture();
        let opts = RunOptions {
            links: vec!["udp:7101:7100".parse().unwrap(), "listen:7101".parse().unwrap()],
            ..RunOptions::new(Boot::Usb {
                image: dir.path().join("usb.img"),
            })
        };
        let args = strings(machine_args(&opts).unwrap());
        let n0 = args.iter().position(|a| a == "virtio-net-pci,netdev=n0").unwrap();
        assert_eq!(
            args[n0 + 1..n0 + 5],
            [
                "-netdev".to_string(),
                "dgram,id=link0,local.type=inet,local.host=127.0.0.1,local.port=7101,\
                 remote.type=inet,remote.host=127.0.0.1,remote.port=7100"
                    .into(),
                "-device".into(),
                "virtio-net-pci,netdev=link0,mac=52:54:00:55:1b:bd".into(),
            ]
        );
        let udp = Link::Udp {
            local: 7101,
            remote: 7100,
        };
        // The MAC is the LOCAL port's, apart from the TCP links' on the same port.
        assert_ne!(udp.mac(), Link::Listen(7101).mac());
        assert_ne!(udp.mac(), Link::Connect(7101).mac());
        assert_ne!(udp.mac(), udp.peer().mac());
        assert_eq!(
            udp.peer(),
            Link::Udp {
                local: 7100,
                remote: 7101
            }
        );
        assert!(banner(&opts).contains("link: UDP from 127.0.0.1:7101 to 127.0.0.1:7100, MAC 52:54:00:55:1b:bd"));
    }

    #[test]
    fn missing_media_and_bad_arguments_are_explained() {
        let dir = fixture();
        let err = machine_args(&RunOptions::new(Boot::Kernel {
            platform: dir.path().join("nope"),
        }))
        .unwrap_err();
        assert!(err.to_string().contains("nope/vmlinuz is missing"), "{err}");
        assert!("8080".parse::<Forward>().unwrap_err().contains("HOST:GUEST"));
        assert!("8080:0".parse::<Forward>().is_err());
        let zone: Forward = "8080:10.0.2.16:80".parse().unwrap();
        assert_eq!(zone.address, Some(std::net::Ipv4Addr::new(10, 0, 2, 16)));
        assert_eq!(zone.to_string(), "127.0.0.1:8080 -> 10.0.2.16:80");
        assert!("8080:10.0.2:80".parse::<Forward>().is_err());
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("4X").is_err());
        let banner = banner(&RunOptions::new(Boot::Usb {
            image: "usb.img".into(),
        }));
        assert!(
            banner.contains("Ctrl-a x") && banner.contains("system_powerdown"),
            "{banner}"
        );
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        assert_eq!(opt_path(Path::new("/a,b/usb.img")), "/a,,b/usb.img");
    }
}

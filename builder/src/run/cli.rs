//! `ramkey run`'s command line: its arguments ([`RunArgs`]), turned into [`RunOptions`],
//! and the interactive run ([`cli`]); and `ramkey hub` ([`HubArgs`], [`hub_cli`]).

use std::path::PathBuf;

use super::{Boot, Firmware, Forward, Hub, Link, RunError, RunOptions, banner, command};

/// Parses `4G`, `512M`, `1T`, `65536` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: unknown unit {c:?} (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is not a size like 4G or 512M"))
}

/// `ramkey run` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A stick image (usb.img) to boot from an emulated USB disk.
    #[arg(required_unless_present_any = ["pxe", "kernel"], conflicts_with_all = ["pxe", "kernel"])]
    pub image: Option<PathBuf>,
    /// Boot this PXE tree (with boot.ipxe) over QEMU's TFTP.
    #[arg(long, value_name = "DIR", conflicts_with = "kernel")]
    pub pxe: Option<PathBuf>,
    /// Boot this platform folder's vmlinuz and initrd.img directly.
    #[arg(long, value_name = "PLATFORM")]
    pub kernel: Option<PathBuf>,
    /// SeaBIOS (the default).
    #[arg(long, conflicts_with = "uefi")]
    pub bios: bool,
    /// OVMF.
    #[arg(long)]
    pub uefi: bool,
    /// A raw pool disk (virtio); created sparse when missing.
    #[arg(long, value_name = "FILE")]
    pub pool: Option<PathBuf>,
    /// Size of a new pool disk.
    #[arg(long, default_value = "4G", value_parser = parse_size)]
    pub pool_size: u64,
    /// Forward 127.0.0.1:HOST to the guest's GUEST port (TCP); repeatable.
    #[arg(long = "forward", value_name = "HOST:[ADDRESS:]GUEST")]
    pub forwards: Vec<Forward>,
    /// A further NIC wired to another `ramkey run` (`listen:PORT` on the first machine,
    /// `connect:PORT` on the second), or over UDP from 127.0.0.1:LOCAL to REMOTE: another
    /// machine's `udp:REMOTE:LOCAL` or a `ramkey hub REMOTE`; repeatable.
    #[arg(long = "link", value_name = "listen:PORT|connect:PORT|udp:LOCAL:REMOTE")]
    pub links: Vec<Link>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MB", default_value_t = 1024)]
    pub memory: u32,
    /// Where the appliance fetches config.toml (PXE and kernel boots).
    #[arg(long, value_name = "URL", conflicts_with = "image")]
    pub config_url: Option<String>,
    /// Further kernel parameters (kernel boots).
    #[arg(long, default_value = "", requires = "kernel")]
    pub append: String,
    /// QEMU accelerator.
    #[arg(long, default_value = "tcg")]
    pub accel: String,
}

impl RunArgs {
    pub fn options(&self) -> RunOptions {
        let boot = match (&self.image, &self.pxe, &self.kernel) {
            (_, Some(dir), _) => Boot::Pxe { dir: dir.clone() },
            (_, _, Some(platform)) => Boot::Kernel {
                platform: platform.clone(),
            },
            (image, _, _) => Boot::Usb {
                image: image.clone().unwrap_or_default(),
            },
        };
        RunOptions {
            firmware: if self.uefi { Firmware::Uefi } else { Firmware::Bios },
            memory_mb: self.memory,
            pool: self.pool.clone(),
            pool_size: self.pool_size,
            forwards: self.forwards.clone(),
            links: self.links.clone(),
            config_url: self.config_url.clone(),
            append: self.append.clone(),
            accel: self.accel.clone(),
            ..RunOptions::new(boot)
        }
    }
}

/// Runs `ramkey run` interactively until QEMU exits.
pub fn cli(args: &RunArgs) -> Result<(), RunError> {
    let opts = args.options();
    let mut cmd = command(&opts)?;
    eprint!("{}", banner(&opts));
    let status = cmd.status().map_err(|source| RunError::Spawn { source })?;
    if status.success() {
        Ok(())
    } else {
        Err(RunError::Qemu { status })
    }
}

/// `ramkey hub` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// A UDP port on 127.0.0.1 to serve one segment on; each machine joins it with
    /// `ramkey run --link udp:LOCAL:PORT`, LOCAL its own port.
    #[arg(required = true, value_name = "PORT")]
    pub ports: Vec<u16>,
}

/// Runs a hub on each of `args.ports` until the process is interrupted (Ctrl-C), printing
/// each member as it joins.
pub fn hub_cli(args: &HubArgs) -> std::io::Result<()> {
    let hubs = args
        .ports
        .iter()
        .map(|&port| {
            Hub::start(port).map_err(|e| std::io::Error::new(e.kind(), format!("hub on 127.0.0.1:{port}: {e}")))
        })
        .collect::<std::io::Result<Vec<Hub>>>()?;
    for hub in &hubs {
        eprintln!(
            "hub on 127.0.0.1:{port}: join with ramkey run --link udp:LOCAL:{port}",
            port = hub.port()
        );
    }
    eprintln!("Ctrl-C stops");
    let mut known = vec![0; hubs.len()];
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        for (hub, known) in hubs.iter().zip(&mut known) {
            let members = hub.members();
            for member in &members[*known..] {
                eprintln!("hub {}: {member} joined", hub.port());
            }
            *known = members.len();
        }
    }
}

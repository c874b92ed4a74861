//! `ramkey run`: boots built media under QEMU to try an appliance without hardware — a stick
//! image on an emulated USB disk (SeaBIOS or OVMF), a PXE tree over QEMU's built-in TFTP, or
//! a platform folder by direct kernel boot. `machine_args` is the one machine definition: the
//! xtask boot tests use it too and add their own accelerator, console and monitor options.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::str::FromStr;

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

/// A host port forwarded to a guest port: `HOST:GUEST`, or `HOST:ADDRESS:GUEST` to reach a
/// zone's own address on QEMU's user network (`8080:10.0.2.16:80`); TCP, host side on
/// 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    pub guest: u16,
    /// The guest address; the box's own (QEMU's first DHCP address) when absent.
    pub address: Option<std::net::Ipv4Addr>,
}

impl FromStr for Forward {
    type Err = String;

    fn from_str(s: &str) -> Result<Forward, String> {
        let (host, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not HOST:GUEST or HOST:ADDRESS:GUEST (e.g. 8080:80)"))?;
        let (address, guest) = match rest.rsplit_once(':') {
            Some((address, guest)) => (
                Some(
                    address
                        .parse()
                        .map_err(|_| format!("{address:?} in {s:?} is not an IPv4 address"))?,
                ),
                guest,
            ),
            None => (None, rest),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} in {s:?} is not a port number (1-65535)"))
        };
        Ok(Forward {
            host: port(host)?,
            guest: port(guest)?,
            address,
        })
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            Some(a) => write!(f, "127.0.0.1:{} -> {a}:{}", self.host, self.guest),
            None => write!(f, "127.0.0.1:{} -> guest port {}", self.host, self.guest),
        }
    }
}

/// A further NIC wired to another machine's: Ethernet frames over a TCP connection on
/// 127.0.0.1 (QEMU's socket netdev), so two `ramkey run`s share a network of their own — an
/// office appliance and a client, say. `listen:PORT` on the machine started first,
/// `connect:PORT` on the other. The NIC's MAC is fixed by the side and the port
/// (`52:54:00:4c:..` listening, `52:54:00:43:..` connecting), so a config can select it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Listen(u16),
    Connect(u16),
}

impl Link {
    /// The NIC's MAC address, `aa:bb:..` as configs write it.
    pub fn mac(&self) -> String {
        let (side, port) = match self {
            Link::Listen(port) => (b'L', port),
            Link::Connect(port) => (b'C', port),
        };
        let [hi, lo] = port.to_be_bytes();
        format!("52:54:00:{side:02x}:{hi:02x}:{lo:02x}")
    }

    /// The other machine's end of this link.
    pub fn peer(&self) -> Link {
        match *self {
            Link::Listen(port) => Link::Connect(port),
            Link::Connect(port) => Link::Listen(port),
        }
    }

    fn netdev(&self, id: &str) -> String {
        match self {
            Link::Listen(port) => format!("socket,id={id},listen=127.0.0.1:{port}"),
            Link::Connect(port) => format!("socket,id={id},connect=127.0.0.1:{port}"),
        }
    }
}

impl FromStr for Link {
    type Err = String;

    fn from_str(s: &str) -> Result<Link, String> {
        let bad = || format!("{s:?} is not listen:PORT or connect:PORT (e.g. listen:7001)");
        let (side, port) = s.split_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        match side {
            "listen" => Ok(Link::Listen(port)),
            "connect" => Ok(Link::Connect(port)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Listen(port) => write!(f, "listening on 127.0.0.1:{port}, MAC {}", self.mac()),
            Link::Connect(port) => write!(f, "connected to 127.0.0.1:{port}, MAC {}", self.mac()),
        }
    }
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

fn need(path: &Path, hint: &'static str) -> Result<(), RunError> {
    if path.exists() {
        Ok(())
    } else {
        Err(RunError::Missing {
            path: path.into(),
            hint,
        })
    }
}

/// QEMU's `-drive`/`-netdev` option values separate with commas; a comma in a path doubles.
fn opt_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The machine: firmware, disks, NIC and boot source — everything but the accelerator,
/// machine type, CPU, memory, `-nodefaults`, display, serial, monitor and `-no-reboot`,
/// which the caller adds (`command` for an interactive run, the xtask harness for tests).
/// Creates the pool when missing, the OVMF variables copy and the rewritten PXE tree.
pub fn machine_args(opts: &RunOptions) -> Result<Vec<OsString>, RunError> {
    let mut args: Vec<String> = Vec::new();
    let state = opts.state_dir();
    let mkstate = || {
        std::fs::create_dir_all(&state).map_err(|source| RunError::Io {
            what: "creating",
            path: state.clone(),
            source,
        })
    };
    if opts.firmware == Firmware::Uefi {
        need(Path::new(OVMF_CODE), "install the ovmf package")?;
        need(Path::new(OVMF_VARS), "install the ovmf package")?;
        mkstate()?;
        let vars = state.join("OVMF_VARS.fd");
        if !vars.exists() {
            std::fs::copy(OVMF_VARS, &vars).map_err(|source| RunError::Io {
                what: "copying OVMF's variables to",
                path: vars.clone(),
                source,
            })?;
        }
        args.extend([
            "-drive".into(),
            format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", opt_path(&vars)),
        ]);
    }
    let mut netdev = "user,id=n0".to_string();
    match &opts.boot {
        Boot::Usb { image } => {
            need(image, "build it with `ramkey build` or give the right path")?;
            if opts.config_url.is_some() {
                return Err(RunError::ConfigUrlOnUsb);
            }
            args.extend([
                "-device".into(),
                "qemu-xhci,id=xhci".into(),
                "-drive".into(),
                format!("if=none,id=stick,format=raw,file={}", opt_path(image)),
                "-device".into(),
                "usb-storage,bus=xhci.0,drive=stick,removable=on,bootindex=1".into(),
            ]);
        }
        Boot::Pxe { dir } => {
            need(&dir.join(BOOT_SCRIPT), "give a PXE tree built by `ramkey build`")?;
            let root = match &opts.config_url {
                None => dir.clone(),
                Some(url) => {
                    mkstate()?;
                    pxe_with_config(dir, &state.join("tftp"), url)?
                }
            };
            netdev.push_str(&format!(",tftp={},bootfile={BOOT_SCRIPT}", opt_path(&root)));
            args.extend(["-boot".into(), "n".into()]);
        }
        Boot::Kernel { platform } => {
            let (kernel, initrd) = (platform.join("vmlinuz"), platform.join("initrd.img"));
            need(&kernel, "give a platform folder built by `ramkey build`")?;
            need(&initrd, "give a platform folder built by `ramkey build`")?;
            let mut cmdline = "console=ttyS0".to_string();
            if let Some(url) = &opts.config_url {
                cmdline.push_str(&format!(" ramkey.config={url}"));
            }
            if !opts.append.trim().is_empty() {
                cmdline.push(' ');
                cmdline.push_str(opts.append.trim());
            }
            args.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
                "-append".into(),
                cmdline,
            ]);
        }
    }
    for f in &opts.forwards {
        let address = f.address.map(|a| a.to_string()).unwrap_or_default();
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-{address}:{}", f.host, f.guest));
    }
    args.extend([
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ]);
    for (i, link) in opts.links.iter().enumerate() {
        let id = format!("link{i}");
        args.extend([
            "-netdev".into(),
            link.netdev(&id),
            "-device".into(),
            format!("virtio-net-pci,netdev={id},mac={}", link.mac()),
        ]);
    }
    if let Some(pool) = &opts.pool {
        create_pool(pool, opts.pool_size)?;
        args.extend([
            "-drive".into(),
            format!("if=none,id=pool,format=raw,file={}", opt_path(pool)),
            "-device".into(),
            "virtio-blk-pci,drive=pool,serial=ramkey-pool".into(),
        ]);
    }
    Ok(args.into_iter().map(OsString::from).collect())
}

/// A sparse file of `size` bytes, unless `path` exists.
fn create_pool(path: &Path, size: u64) -> Result<(), RunError> {
    if path.exists() {
        return Ok(());
    }
    let err = |source| RunError::Io {
        what: "creating the pool",
        path: path.into(),
        source,
    };
    std::fs::File::create_new(path)
        .and_then(|f| f.set_len(size))
        .map_err(err)
}

/// A TFTP root that is `dir` (symlinked) with `boot.ipxe`'s `kernel` lines given
/// `ramkey.config=URL`. Rebuilt every run.
fn pxe_with_config(dir: &Path, root: &Path, url: &str) -> Result<PathBuf, RunError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { what, path, source }
    };
    let dir = std::fs::canonicalize(dir).map_err(io("reading", dir))?;
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(io("removing", root))?;
    }
    std::fs::create_dir_all(root).map_err(io("creating", root))?;
    for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
        let entry = entry.map_err(io("reading", &dir))?;
        if entry.file_name() != BOOT_SCRIPT {
            let link = root.join(entry.file_name());
            std::os::unix::fs::symlink(entry.path(), &link).map_err(io("linking", &link))?;
        }
    }
    let script_path = dir.join(BOOT_SCRIPT);
    let script = std::fs::read_to_string(&script_path).map_err(io("reading", &script_path))?;
    let (script, found) = add_to_kernel_lines(&script, &format!("ramkey.config={url}"));
    if !found {
        return Err(RunError::NoKernelLine { path: script_path });
    }
    let out = root.join(BOOT_SCRIPT);
    std::fs::write(&out, script).map_err(io("writing", &out))?;
    Ok(root.to_path_buf())
}

/// Appends `word` to every iPXE `kernel`/`imgargs` line; says whether there was one.
fn add_to_kernel_lines(script: &str, word: &str) -> (String, bool) {
    let mut found = false;
    let mut out = String::new();
    for line in script.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "kernel" | "imgargs") {
            found = true;
            out.push_str(line.trim_end());
            out.push(' ');
            out.push_str(word);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out, found)
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
    /// `connect:PORT` on the second); repeatable.
    #[arg(long = "link", value_name = "listen:PORT|connect:PORT")]
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

#[cfg(test)]
mod tests {
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
        for bad in ["7001", "listen:", "listen:0", "serve:7001", "connect:70000"] {
            let err = bad.parse::<Link>().unwrap_err();
            assert!(err.contains("listen:PORT or connect:PORT"), "{bad}: {err}");
        }
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

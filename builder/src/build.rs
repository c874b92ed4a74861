//! `ramkey build`: everything an appliance is made of, into one output folder —
//! `platform/` (vmlinuz, initrd.img, version, SHA256SUMS), `usb.img` and `pxe/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::appliance::Appliance;
use crate::kernel::{self, KernelSource};
use crate::platform::{self, Inputs};
use crate::{extras, pxe, usb};

/// The triple the static init is built for (without `--target`, proc macros fail).
pub const INIT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Options from the command line that override the appliance.
#[derive(Debug, Default)]
pub struct Options {
    pub out: PathBuf,
    /// The static init; default: built from the source tree the appliance lives in.
    pub init: Option<PathBuf>,
    pub kernel_deb: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH` of every output.
    pub epoch: u32,
    /// Build only `platform/` (no `usb.img`, no `pxe/`).
    pub platform_only: bool,
}

/// What was built, for the report.
#[derive(Debug)]
pub struct Report {
    pub kernel: String,
    pub platform: platform::Output,
    pub libraries: Vec<String>,
    pub usb: Option<(PathBuf, u64)>,
    pub pxe: Option<PathBuf>,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Platform(#[from] platform::PlatformError),
    #[error(transparent)]
    Extras(#[from] extras::ExtrasError),
    #[error(transparent)]
    Usb(#[from] usb::UsbError),
    #[error(transparent)]
    Pxe(#[from] pxe::PxeError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the appliance's default config is invalid:\n{0}")]
    Config(String),
    #[error(
        "no init binary: give --init FILE, or build from a Ramkey source tree (none at {searched}), or build it with\n  \
         RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p ramkey-init --target {INIT_TARGET}"
    )]
    NoInit { searched: PathBuf },
    #[error("building the static init failed ({0})")]
    InitBuild(String),
}

/// Builds the static PID 1 from the source tree at `workspace` (into `CARGO_TARGET_DIR`, or
/// the tree's `target/`) and returns its path.
pub fn static_init(workspace: &Path) -> Result<PathBuf, BuildError> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    static_init_into(workspace, &target)
}

/// The flags of the static init's build: static linking, and the source tree's path and
/// cargo's home mapped to fixed names, so that the binary (its panic locations) does not
/// depend on where the tree was checked out.
fn init_rustflags(workspace: &Path) -> String {
    let mut flags = format!(
        "-C target-feature=+crt-static --remap-path-prefix={}=/ramkey",
        workspace.display()
    );
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = home {
        flags.push_str(&format!(" --remap-path-prefix={}=/cargo", home.display()));
    }
    flags
}

/// [`static_init`] into the target directory `target`.
pub fn static_init_into(workspace: &Path, target: &Path) -> Result<PathBuf, BuildError> {
    if !workspace.join("init/Cargo.toml").exists() {
        return Err(BuildError::NoInit {
            searched: workspace.into(),
        });
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "ramkey-init",
            "--target",
            INIT_TARGET,
        ])
        .current_dir(workspace)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", target)
        .env("RUSTFLAGS", init_rustflags(workspace))
        .status()
        .map_err(|e| BuildError::InitBuild(e.to_string()))?;
    if !status.success() {
        return Err(BuildError::InitBuild(status.to_string()));
    }
    Ok(target.join(INIT_TARGET).join("release/init"))
}

/// Builds the appliance at `path` (resolved paths) into `opts.out`.
pub fn build(appliance: &Appliance, base: &Path, opts: &Options) -> Result<Report, BuildError> {
    let cache = kernel::cache_dir();
    let source = match opts.kernel_deb.as_ref().or(appliance.kernel.deb.as_ref()) {
        Some(deb) => KernelSource::Deb(deb.clone()),
        None => KernelSource::Apt,
    };
    let kernel = kernel::obtain(&source, &cache)?;
    let init = match &opts.init {
        Some(init) => init.clone(),
        None => static_init(base)?,
    };
    let inputs = Inputs {
        kernel: &kernel,
        init: &init,
        overlay: appliance.platform.overlay.as_deref(),
        modules: appliance.module_names(),
        epoch: opts.epoch,
    };
    let mut tree = platform::assemble(&inputs)?;
    let libraries = extras::add(&mut tree, &appliance.platform.extras, &cache)?;
    if let Some(motd) = &appliance.platform.motd {
        tree.file("etc/motd", motd.as_bytes(), 0o644);
    }
    let platform_dir = opts.out.join("platform");
    let output = platform::write(
        &platform_dir,
        &kernel,
        &tree,
        opts.epoch,
        appliance.platform.compression,
    )?;
    let mut report = Report {
        kernel: kernel.release.clone(),
        platform: output,
        libraries,
        usb: None,
        pxe: None,
    };
    if opts.platform_only {
        return Ok(report);
    }

    let config = match &appliance.usbkey.config {
        Some(path) => std::fs::read_to_string(path).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?,
        None => DEFAULT_CONFIG.to_string(),
    };
    let shown = appliance
        .usbkey
        .config
        .as_ref()
        .map_or("default config".into(), |p| p.display().to_string());
    ramkey_config::Config::parse(&config, &shown).map_err(|e| BuildError::Config(e.to_string()))?;
    let usb_path = opts.out.join("usb.img");
    let part = usb::write(
        &usb_path,
        &usb::Inputs {
            platform: &platform_dir,
            config: &config,
            cmdline: &appliance.platform.cmdline,
            personalities: &appliance.usbkey.personalities,
            size_mib: appliance.usbkey.size_mib,
            epoch: opts.epoch,
        },
    )?;
    report.usb = Some((usb_path, part.size));
    let pxe_dir = opts.out.join("pxe");
    pxe::write(
        &pxe_dir,
        &platform_dir,
        &appliance.platform.cmdline,
        appliance.pxe.config_url.as_deref(),
    )?;
    report.pxe = Some(pxe_dir);
    Ok(report)
}

/// The usbkey config of an appliance that names none: DHCP on the first NIC.
pub const DEFAULT_CONFIG: &str = "# Ramkey usbkey config. Edit with `ramkey config` or any text editor.\n\
version = 1\nhostname = \"ramkey\"\n\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        ramkey_config::Config::parse(DEFAULT_CONFIG, "default").unwrap();
    }
}

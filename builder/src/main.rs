//! The `ramkey` workstation CLI: argument parsing only; the work is in the library.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ramkey_builder::appliance::Appliance;
use ramkey_builder::{build, platform};

#[derive(Parser)]
#[command(name = "ramkey", version, about = "Build and run Ramkey appliances")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write an image to a USB stick (or a file) and verify it.
    Flash(ramkey_builder::flash::FlashArgs),
    /// Boot a stick image, a PXE tree or a platform under QEMU.
    Run(ramkey_builder::run::RunArgs),
    /// Join `ramkey run --link udp:LOCAL:PORT` machines into one Ethernet segment per PORT.
    Hub(ramkey_builder::run::HubArgs),
    /// Show, change or check the usbkey config (a file, a stick image or a stick), without mounting.
    Config(ramkey_builder::config_cmd::ConfigArgs),
    /// Build, inspect, verify and list personality images (.rkimg).
    Image(ramkey_builder::image_cmd::ImageArgs),
    /// Deliver personality images and a platform bundle to a running box over SSH (--swap, --reboot).
    Push(ramkey_builder::push::PushArgs),
    /// Verify a signed platform bundle (OUT/platform.rkup) as a box will.
    Platform(ramkey_builder::platform_cmd::PlatformArgs),
    /// Write a signing key pair: OUT.secret (0600) and OUT.pub.
    Keygen(ramkey_builder::image_cmd::KeygenArgs),
    /// Build an appliance: OUT/platform/, OUT/platform.rkup, OUT/usb.img and OUT/pxe/.
    Build {
        /// The appliance definition.
        #[arg(default_value = "appliance.toml")]
        appliance: PathBuf,
        /// Output folder.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// The static PID 1 binary; default: built with cargo from the Ramkey source tree the
        /// appliance lives in, else from the one this ramkey was built from.
        #[arg(long)]
        init: Option<PathBuf>,
        /// A linux-image-6.1.0-*-amd64 .deb; default: the appliance's, else the newest apt knows.
        #[arg(long)]
        kernel_deb: Option<PathBuf>,
        /// Build only OUT/platform/ (and OUT/platform.rkup).
        #[arg(long)]
        platform_only: bool,
        /// The secret key signing OUT/platform.rkup, the platform bundle a box upgrades from
        /// [default: keys/ramkey.secret; when that does not exist, no bundle is written].
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Flash(args) => ramkey_builder::flash::cli(&args).map(drop).map_err(Into::into),
        Command::Run(args) => ramkey_builder::run::cli(&args).map_err(Into::into),
        Command::Hub(args) => ramkey_builder::run::hub_cli(&args).map_err(Into::into),
        Command::Config(args) => ramkey_builder::config_cmd::cli(&args).map_err(Into::into),
        Command::Image(args) => ramkey_builder::image_cmd::cli(&args).map_err(Into::into),
        Command::Push(args) => ramkey_builder::push::cli(&args).map_err(Into::into),
        Command::Platform(args) => ramkey_builder::platform_cmd::cli(&args).map_err(Into::into),
        Command::Keygen(args) => ramkey_builder::image_cmd::keygen(&args).map_err(Into::into),
        Command::Build {
            appliance,
            out,
            init,
            kernel_deb,
            platform_only,
            key,
        } => {
            let started = std::time::Instant::now();
            let a = Appliance::load(&appliance)?;
            let base = appliance
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let opts = build::Options {
                out,
                init,
                kernel_deb,
                epoch: source_date_epoch()?,
                platform_only,
                key: build::bundle_key(key.as_deref()),
            };
            let report = build::build(&a, base, &opts)?;
            let p = &report.platform;
            println!(
                "platform {} (kernel {}): {} records, initrd.img {} bytes ({} uncompressed), {} of them packed ({} bytes in a {}-byte squashfs), {} libraries for extras",
                platform::VERSION,
                report.kernel,
                p.records + report.packed.records,
                p.initrd_size,
                p.uncompressed_size,
                report.packed.records,
                report.packed.bytes,
                report.packed.image,
                report.libraries.len()
            );
            match &report.bundle {
                Some((path, key_id)) => println!("platform bundle: {} (signed by key {key_id})", path.display()),
                None => println!(
                    "platform bundle: not written: no signing key ({} does not exist; give --key SECRET, or make one with `ramkey keygen`)",
                    ramkey_builder::image_cmd::DEFAULT_KEY
                ),
            }
            if let Some((usb, fat)) = &report.usb {
                println!("usb.img: {} (FAT partition {} MiB)", usb.display(), fat >> 20);
            }
            if let Some(pxe) = &report.pxe {
                println!("pxe: {}", pxe.display());
            }
            println!("built {} in {:.1} s", a.name, started.elapsed().as_secs_f64());
            Ok(())
        }
    }
}

/// `SOURCE_DATE_EPOCH`, or 0: every build output is reproducible either way.
fn source_date_epoch() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        Err(_) => Ok(0),
    }
}

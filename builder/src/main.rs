//! The `ramkey` workstation CLI: argument parsing only; the work is in the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ramkey_builder::initramfs::Compression;
use ramkey_builder::kernel::{self, KernelSource};
use ramkey_builder::{modules, platform};

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
    /// Build the platform (kernel + initramfs) into OUT/platform/.
    Build {
        /// The static PID 1 binary (built by `cargo xtask`).
        #[arg(long)]
        init: PathBuf,
        /// A linux-image-6.1.0-*-amd64 .deb; default: the newest apt knows, cached.
        #[arg(long)]
        kernel_deb: Option<PathBuf>,
        /// Files copied verbatim into the platform root.
        #[arg(long)]
        overlay: Option<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Compression::Gzip)]
        compression: Compression,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Flash(args) => ramkey_builder::flash::cli(&args).map(drop).map_err(Into::into),
        Command::Run(args) => ramkey_builder::run::cli(&args).map_err(Into::into),
        Command::Build {
            init,
            kernel_deb,
            overlay,
            out,
            compression,
        } => {
            let source = kernel_deb.map_or(KernelSource::Apt, KernelSource::Deb);
            let kernel = kernel::obtain(&source, &kernel::cache_dir()).context("getting the kernel")?;
            let epoch = source_date_epoch()?;
            let inputs = platform::Inputs {
                kernel: &kernel,
                init: &init,
                overlay: overlay.as_deref(),
                modules: modules::DEFAULT_MODULES
                    .iter()
                    .flat_map(|(_, names)| names.iter().copied())
                    .collect(),
                epoch,
            };
            let tree = platform::assemble(&inputs).context("assembling the platform")?;
            let output = platform::write(&out.join("platform"), &kernel, &tree, epoch, compression)?;
            println!(
                "platform {} (kernel {}): {} records, initrd.img {} bytes ({} uncompressed) in {}",
                platform::VERSION,
                kernel.release,
                output.records,
                output.initrd_size,
                output.uncompressed_size,
                output.dir.display()
            );
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

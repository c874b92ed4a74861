//! `ramkey image build|inspect|verify|publish|list` and `ramkey keygen`: personality images (`.rkimg`)
//! from definitions in `personalities/NAME/personality.toml`, and the tools that read them.
//!
//! A build is: load the definition ([`definition`]), compute the cache key ([`cache`]), and on
//! a miss build the root filesystem from the base ([`rootfs`], [`oci`]), add `files/`, write
//! the squashfs ([`squashfs`]), fill in the manifest and sign ([`build`]).

mod beneath;
pub mod build;
pub mod cache;
pub mod definition;
pub mod keygen;
pub mod oci;
pub mod progress;
pub mod publish;
pub mod rootfs;
pub mod squashfs;
pub mod tools;

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub use build::{BuildError, BuildOptions, BuildReport};
pub use keygen::{KeygenArgs, keygen};

/// Default location of the signing key, relative to the working directory.
pub const DEFAULT_KEY: &str = "keys/ramkey.secret";

/// `ramkey image ...`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The `ramkey image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build and sign an image from personalities/NAME (personality.toml + files/).
    Build {
        /// The personality folder.
        personality: PathBuf,
        /// The secret key to sign with (`ramkey keygen` writes one).
        #[arg(long, default_value = DEFAULT_KEY)]
        key: PathBuf,
        /// Output folder; the image is OUT/NAME-VERSION.rkimg.
        #[arg(long, default_value = "out/images")]
        out: PathBuf,
        /// Cache folder (default: $RAMKEY_CACHE_DIR, else ~/.cache/ramkey/images).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Build even if the cache holds an image for the same inputs.
        #[arg(long)]
        no_cache: bool,
        /// Build it as a VM personality (`runtime = "vm"`), with the definition's `[vm]` size.
        #[arg(long)]
        vm: bool,
    },
    /// Show an image's manifest, sizes and signer, without verifying it.
    Inspect {
        /// The image.
        file: PathBuf,
        /// Print the manifest's TOML text as stored.
        #[arg(long)]
        manifest: bool,
    },
    /// Verify an image's signature, payload digest and requirements (exit 1 if it fails).
    Verify {
        /// The image.
        file: PathBuf,
        /// A trusted public key file (repeatable).
        #[arg(long, required = true)]
        key: Vec<PathBuf>,
        /// Platform version to check the requirements against.
        #[arg(long, default_value = crate::platform::VERSION)]
        platform: String,
    },
    /// Publish images into a static repository folder (images + index.json) for any web
    /// server to serve; boxes name it in [images] sources.
    Publish {
        /// The repository folder (created if missing).
        repo: PathBuf,
        /// The images, each verified with --key first.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// The public key the images must be signed with.
        #[arg(long, default_value = "keys/ramkey.pub")]
        key: PathBuf,
    },
    /// List the images in a folder: name, version, size, signer.
    List {
        /// The folder.
        #[arg(default_value = "out/images")]
        dir: PathBuf,
    },
}

/// Errors of the `ramkey image` commands.
#[derive(Debug, thiserror::Error)]
pub enum ImageCmdError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Tools(#[from] tools::ToolsError),
}

/// Runs a `ramkey image` subcommand, printing its results on stdout.
pub fn cli(args: &ImageArgs) -> Result<(), ImageCmdError> {
    match &args.command {
        ImageCommand::Build {
            personality,
            key,
            out,
            cache,
            no_cache,
            vm,
        } => {
            let opts = BuildOptions {
                out: out.clone(),
                key: key.clone(),
                cache: cache.clone().or_else(cache::default_dir),
                use_cache: !*no_cache,
                epoch: None,
                progress: true,
                vm: *vm,
            };
            let report = build::build(personality, &opts)?;
            println!("{report}");
            Ok(())
        }
        ImageCommand::Inspect { file, manifest } => {
            print!("{}", tools::inspect(file, *manifest)?);
            Ok(())
        }
        ImageCommand::Verify { file, key, platform } => {
            println!("{}", tools::verify(file, key, platform)?);
            Ok(())
        }
        ImageCommand::Publish { repo, images, key } => {
            print!("{}", publish::publish(repo, images, key)?);
            Ok(())
        }
        ImageCommand::List { dir } => {
            print!("{}", tools::list(dir)?);
            Ok(())
        }
    }
}

//! `ramkey build`: everything an appliance is made of, into one output folder —
//! `platform/` (vmlinuz, initrd.img, version, SHA256SUMS), `platform.rkup` (the signed
//! platform bundle, when there is a key), `usb.img` and `pxe/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ramkey_image::SigningKey;
use ramkey_image::bundle::{self, BundleError, Release};
use ramkey_image::keys::{self, KeyError, KeyId};

use crate::appliance::Appliance;
use crate::kernel::{self, KernelSource};
use crate::platform::{self, Inputs};
use crate::{extras, packed, pxe, usb};

/// The triple the static init is built for (without `--target`, proc macros fail).
pub const INIT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Options from the command line that override the appliance.
#[derive(Debug, Default)]
pub struct Options {
    pub out: PathBuf,
    /// The static init; default: built from a Ramkey source tree, see [`init_source`].
    pub init: Option<PathBuf>,
    pub kernel_deb: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH` of every output.
    pub epoch: u32,
    /// Build only `platform/` (and `platform.rkup`; no `usb.img`, no `pxe/`).
    pub platform_only: bool,
    /// The secret key signing `platform.rkup`; none: no bundle. See [`bundle_key`].
    pub key: Option<PathBuf>,
}

/// The key that signs `platform.rkup`: the one given with `--key`, else
/// [`DEFAULT_KEY`](crate::image_cmd::DEFAULT_KEY) if that file exists, else none (the build
/// skips the bundle and says so).
pub fn bundle_key(given: Option<&Path>) -> Option<PathBuf> {
    let default = Path::new(crate::image_cmd::DEFAULT_KEY);
    given
        .map(Path::to_path_buf)
        .or_else(|| default.is_file().then(|| default.to_path_buf()))
}

/// What was built, for the report.
#[derive(Debug)]
pub struct Report {
    pub kernel: String,
    pub platform: platform::Output,
    pub libraries: Vec<String>,
    /// What went into the packed platform (`packed`).
    pub packed: packed::Packed,
    /// `platform.rkup` and the id of the key that signed it, or none when no key was given.
    pub bundle: Option<(PathBuf, KeyId)>,
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
    Pack(#[from] packed::PackError),
    #[error(transparent)]
    Usb(#[from] usb::UsbError),
    #[error(transparent)]
    Pxe(#[from] pxe::PxeError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {error}")]
    Bundle { path: PathBuf, error: BundleError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the appliance's default config is invalid:\n{0}")]
    Config(String),
    #[error("--init {0}: no such file")]
    InitMissing(PathBuf),
    #[error(
        "no init binary: ramkey builds the static PID 1 from a Ramkey source tree (one with init/Cargo.toml), and \
         found none in the appliance's folder ({appliance_dir}){recorded}. Give --init FILE: a static ramkey-init, \
         built in a Ramkey source tree with\n  \
         RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p ramkey-init --target {INIT_TARGET}\n\
         (it is target/{INIT_TARGET}/release/init there)"
    )]
    NoInit {
        appliance_dir: PathBuf,
        /// `, nor at PATH, ...` for the tree this `ramkey` was built from, or empty.
        recorded: String,
    },
    #[error("building the static init failed ({0})")]
    InitBuild(String),
    #[error("building the static {binary} failed ({why})")]
    StaticBuild { binary: String, why: String },
}

/// The source tree this `ramkey` was compiled from (the workspace holding `builder/`),
/// recorded at compile time; it may be gone or have moved since.
pub fn recorded_source_tree() -> Option<&'static Path> {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent()
}

/// Whether `dir` is a Ramkey source tree: a workspace with the `ramkey-init` package.
pub fn is_source_tree(dir: &Path) -> bool {
    dir.join("Cargo.toml").is_file()
        && std::fs::read_to_string(dir.join("init/Cargo.toml"))
            .is_ok_and(|manifest| manifest.lines().any(|l| l.trim() == r#"name = "ramkey-init""#))
}

/// Where the static init of a build comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitSource {
    /// The binary given with `--init`.
    Given(PathBuf),
    /// Built from the source tree the appliance lives in (absolute).
    ApplianceTree(PathBuf),
    /// Built from the source tree this `ramkey` was compiled from (absolute).
    RecordedTree(PathBuf),
}

/// Picks the init, in order: the binary given with `--init` (which must exist); the source
/// tree the appliance lives in (`appliance_dir`), as in a checkout of Ramkey; the source
/// tree `ramkey` was compiled from (`recorded`, see [`recorded_source_tree`]), for an
/// installed `ramkey` building an appliance kept anywhere.
pub fn init_source(
    given: Option<&Path>,
    appliance_dir: &Path,
    recorded: Option<&Path>,
) -> Result<InitSource, BuildError> {
    if let Some(given) = given {
        return if given.is_file() {
            Ok(InitSource::Given(given.to_path_buf()))
        } else {
            Err(BuildError::InitMissing(given.to_path_buf()))
        };
    }
    let absolute = |dir: &Path| {
        std::fs::canonicalize(dir).map_err(|source| BuildError::Io {
            path: dir.to_path_buf(),
            source,
        })
    };
    if is_source_tree(appliance_dir) {
        return Ok(InitSource::ApplianceTree(absolute(appliance_dir)?));
    }
    if let Some(tree) = recorded.filter(|t| is_source_tree(t)) {
        return Ok(InitSource::RecordedTree(absolute(tree)?));
    }
    Err(BuildError::NoInit {
        appliance_dir: appliance_dir.to_path_buf(),
        recorded: recorded.map_or_else(String::new, |tree| {
            format!(
                ", nor where this ramkey was built from ({}: moved or deleted since?)",
                tree.display()
            )
        }),
    })
}

/// The init binary of a build: the given one, or built (printing what runs) from the tree
/// [`init_source`] picks.
pub fn resolve_init(given: Option<&Path>, appliance_dir: &Path) -> Result<PathBuf, BuildError> {
    match init_source(given, appliance_dir, recorded_source_tree())? {
        InitSource::Given(path) => Ok(path),
        InitSource::ApplianceTree(tree) => static_init(&tree),
        InitSource::RecordedTree(tree) => {
            eprintln!(
                "ramkey: {} is not a Ramkey source tree; the static init comes from the one this ramkey was built from",
                appliance_dir.display()
            );
            static_init(&tree)
        }
    }
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

/// [`static_init`] into the target directory `target`; says on stderr what it runs.
pub fn static_init_into(workspace: &Path, target: &Path) -> Result<PathBuf, BuildError> {
    if !workspace.join("init/Cargo.toml").exists() {
        return Err(BuildError::NoInit {
            appliance_dir: workspace.into(),
            recorded: String::new(),
        });
    }
    static_binary_into(workspace, target, "ramkey-init", "init").map_err(|e| match e {
        BuildError::StaticBuild { why, .. } if why.starts_with("cannot run") => {
            BuildError::InitBuild(format!("{why}; give --init FILE"))
        }
        BuildError::StaticBuild { why, .. } => BuildError::InitBuild(why),
        other => other,
    })
}

/// Builds `package`'s binary `binary` of the source tree at `workspace` as a static
/// executable, with the same flags as the static init (so that both share the dependencies
/// they have in common in `target`), and returns its path. Says on stderr what it runs.
pub fn static_binary_into(workspace: &Path, target: &Path, package: &str, binary: &str) -> Result<PathBuf, BuildError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustflags = init_rustflags(workspace);
    let args = ["build", "--quiet", "--release", "-p", package, "--target", INIT_TARGET];
    eprintln!(
        "ramkey: building the static {binary}: cd {} && CARGO_TARGET_DIR={} RUSTFLAGS='{rustflags}' {cargo} {}",
        workspace.display(),
        target.display(),
        args.join(" ")
    );
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", target)
        .env("RUSTFLAGS", rustflags)
        .status()
        .map_err(|e| BuildError::StaticBuild {
            binary: binary.into(),
            why: format!("cannot run {cargo}: {e}"),
        })?;
    if !status.success() {
        return Err(BuildError::StaticBuild {
            binary: binary.into(),
            why: status.to_string(),
        });
    }
    Ok(target.join(INIT_TARGET).join("release").join(binary))
}

/// Builds the appliance at `path` (resolved paths) into `opts.out`.
pub fn build(appliance: &Appliance, base: &Path, opts: &Options) -> Result<Report, BuildError> {
    // First: a missing --init or no source tree is said before any download.
    let init = resolve_init(opts.init.as_deref(), base)?;
    let key = opts.key.as_deref().map(keys::read_secret_file).transpose()?;
    let cache = kernel::cache_dir();
    let source = match opts.kernel_deb.as_ref().or(appliance.kernel.deb.as_ref()) {
        Some(deb) => KernelSource::Deb(deb.clone()),
        None => KernelSource::Apt,
    };
    let kernel = kernel::obtain(&source, &cache)?;
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
    if !appliance.pxe.config_keys.is_empty() {
        // The box takes a fetched config only with a signature by one of these.
        let keys: String = appliance
            .pxe
            .config_keys
            .iter()
            .map(|k| format!("{}\n", k.trim()))
            .collect();
        tree.file("etc/ramkey/config-keys", keys.into_bytes(), 0o644);
    }
    let index =
        crate::modules::Index::load(&kernel.modules_dir, &kernel.release).map_err(platform::PlatformError::from)?;
    let (tree, image, packed) = packed::pack(&tree, &index, &kernel.release, opts.epoch, &cache)?;
    let platform_dir = opts.out.join("platform");
    let output = platform::write(
        &platform_dir,
        &kernel,
        &tree,
        &image,
        opts.epoch,
        appliance.platform.compression,
    )?;
    let bundle = match &key {
        Some(key) => Some(write_bundle(
            &platform_dir,
            &opts.out,
            key,
            &kernel.release,
            opts.epoch,
        )?),
        None => None,
    };
    let mut report = Report {
        kernel: kernel.release.clone(),
        platform: output,
        libraries,
        packed,
        bundle,
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

/// Writes `out/platform.rkup` from `platform_dir`'s kernel and initrd, signed with the
/// `key`.
pub fn write_bundle(
    platform_dir: &Path,
    out: &Path,
    key: &SigningKey,
    kernel_release: &str,
    epoch: u32,
) -> Result<(PathBuf, KeyId), BuildError> {
    let path = out.join(bundle::FILE_NAME);
    let release = Release {
        version: platform::VERSION.into(),
        kernel_release: kernel_release.into(),
        created: epoch.into(),
        builder_version: env!("CARGO_PKG_VERSION").into(),
    };
    let kernel = platform_dir.join("vmlinuz");
    let initrd = platform_dir.join("initrd.img");
    bundle::write_file(&kernel, &initrd, &release, key, &path).map_err(|error| BuildError::Bundle {
        path: path.clone(),
        error,
    })?;
    Ok((path, KeyId::of(&key.verifying_key())))
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

    /// A folder that looks like a Ramkey source tree to [`is_source_tree`].
    fn fake_tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("init")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = [\"init\"]\n").unwrap();
        std::fs::write(dir.join("init/Cargo.toml"), "[package]\nname = \"ramkey-init\"\n").unwrap();
    }

    #[test]
    fn the_init_is_the_given_one_then_the_appliances_tree_then_the_recorded_tree() {
        let dir = tempfile::tempdir().unwrap();
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap();
        let checkout = dir.path().join("checkout");
        fake_tree(&checkout);
        let recorded = dir.path().join("ramkey-src");
        fake_tree(&recorded);
        let plain = dir.path().join("my-appliance");
        std::fs::create_dir_all(plain.join("init")).unwrap();
        std::fs::write(plain.join("init/Cargo.toml"), "[package]\nname = \"something-else\"\n").unwrap();
        let given = dir.path().join("init-binary");
        std::fs::write(&given, b"\x7fELF").unwrap();

        // An existing --init wins over both trees; a missing one is an error, not a fallback.
        assert_eq!(
            init_source(Some(&given), &checkout, Some(&recorded)).unwrap(),
            InitSource::Given(given.clone())
        );
        let missing = dir.path().join("no-such-init");
        let err = init_source(Some(&missing), &checkout, Some(&recorded)).unwrap_err();
        assert!(matches!(err, BuildError::InitMissing(ref p) if *p == missing), "{err}");
        // The tree the appliance lives in, before the recorded one.
        assert_eq!(
            init_source(None, &checkout, Some(&recorded)).unwrap(),
            InitSource::ApplianceTree(canon(&checkout))
        );
        // An appliance folder that is no Ramkey tree: the tree ramkey was built from.
        assert_eq!(
            init_source(None, &plain, Some(&recorded)).unwrap(),
            InitSource::RecordedTree(canon(&recorded))
        );
        // That tree gone: an error naming both places and --init.
        std::fs::remove_dir_all(&recorded).unwrap();
        let err = init_source(None, &plain, Some(&recorded)).unwrap_err().to_string();
        for part in [
            "--init FILE",
            &plain.display().to_string(),
            &recorded.display().to_string(),
        ] {
            assert!(err.contains(part), "{part:?} missing from: {err}");
        }
    }

    #[test]
    fn the_bundle_holds_the_platform_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let platform_dir = dir.path().join("platform");
        std::fs::create_dir_all(&platform_dir).unwrap();
        std::fs::write(platform_dir.join("vmlinuz"), b"a kernel").unwrap();
        std::fs::write(platform_dir.join("initrd.img"), b"an initrd").unwrap();
        let key = SigningKey::from_bytes(&[42; 32]);
        let (path, id) = write_bundle(&platform_dir, dir.path(), &key, "6.1.0-31-amd64", 7).unwrap();
        assert_eq!(path, dir.path().join("platform.rkup"));
        assert_eq!(id, KeyId::of(&key.verifying_key()));
        let (mut kernel, mut initrd) = (Vec::new(), Vec::new());
        let file = std::fs::File::open(&path).unwrap();
        let trusted = [key.verifying_key()];
        let v = bundle::verify_into(file, &trusted, Some(platform::VERSION), false, &mut kernel, &mut initrd).unwrap();
        assert_eq!((&kernel[..], &initrd[..]), (&b"a kernel"[..], &b"an initrd"[..]));
        assert_eq!(v.manifest.version, platform::VERSION);
        assert_eq!(v.manifest.created, 7);
        // A given key is used whether or not it exists (reading it says what is wrong).
        let given = dir.path().join("no.secret");
        assert_eq!(bundle_key(Some(&given)), Some(given));
    }

    #[test]
    fn the_recorded_source_tree_is_this_checkout() {
        let tree = recorded_source_tree().unwrap();
        assert!(is_source_tree(tree), "{}", tree.display());
        assert!(tree.join("builder/src/build.rs").is_file());
    }
}

//! Build artifacts the workflows and boot tests share, built with the builder library from
//! the repository's `appliance.toml` into `target/ramkey/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use ramkey_builder::appliance::Appliance;
use ramkey_builder::build::{self, Options};
use ramkey_builder::initramfs::Compression;
use ramkey_builder::kernel::{self, Kernel, KernelSource};

/// The SHA-512 crypt hash of `password` (fixed salt), for a test config's
/// `admin.password_hash`.
pub fn password_hash(password: &str) -> Result<String> {
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", "testsalt", password])
        .output()
        .context("running openssl passwd")?;
    anyhow::ensure!(out.status.success(), "openssl passwd failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The kernel: `RAMKEY_KERNEL_DEB` if set, else the newest bookworm 6.1 package from apt.
pub fn kernel_source() -> KernelSource {
    std::env::var_os("RAMKEY_KERNEL_DEB").map_or(KernelSource::Apt, |p| KernelSource::Deb(p.into()))
}

/// The unpacked kernel the builds use.
pub fn kernel() -> Result<Kernel> {
    kernel::obtain(&kernel_source(), &kernel::cache_dir())
        .context("getting the Debian kernel (needed by every boot test)")
}

/// `SOURCE_DATE_EPOCH`: the environment's, else the last commit's time, else 0.
pub fn source_date_epoch() -> u32 {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return v;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds the repository's appliance into `out` (`platform/`, and unless `platform_only`,
/// `usb.img` and `pxe/`).
pub fn build_appliance(out: &Path, compression: Compression, platform_only: bool) -> Result<PathBuf> {
    let root = workspace_root();
    let mut appliance = Appliance::load(&root.join("appliance.toml"))?;
    appliance.platform.compression = compression;
    // The tested platform takes a config fetched over the network only when [`test_key`]
    // signed it, as a fleet's platform built with `[pxe] config_keys` does.
    appliance.pxe.config_keys = vec![test_key()?.1];
    let kernel_deb = match kernel_source() {
        KernelSource::Deb(deb) => Some(deb),
        KernelSource::Apt => None,
    };
    let opts = Options {
        out: out.to_path_buf(),
        init: None,
        kernel_deb,
        epoch: source_date_epoch(),
        platform_only,
        // `platform.rkup`, signed like the tested images, for the upgrade tests.
        key: Some(test_key()?.0),
    };
    build::build(&appliance, &root, &opts).with_context(|| format!("building the appliance into {}", out.display()))?;
    Ok(out.to_path_buf())
}

/// Builds only the platform into `out/platform` and returns that folder.
pub fn build_platform(out: &Path, compression: Compression) -> Result<PathBuf> {
    Ok(build_appliance(out, compression, true)?.join("platform"))
}

/// Set by `cargo xtask test` for the boot-test processes it starts: `key=path` pairs
/// separated by `;` (`appliance=...;web=...;office=...`) naming artifacts it built before
/// starting them, which [`appliance`] and [`personality`] return instead of building
/// them again, several processes at once, into the same files.
pub const PREBUILT: &str = "RAMKEY_TEST_PREBUILT";

fn prebuilt(key: &str) -> Option<PathBuf> {
    let pairs = std::env::var(PREBUILT).ok()?;
    pairs
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, path)| PathBuf::from(path))
}

/// The repository's appliance under `target/ramkey/appliance`, built once per process
/// (or once per `cargo xtask test`, see [`PREBUILT`]).
pub fn appliance() -> Result<PathBuf> {
    if let Some(built) = prebuilt("appliance") {
        return Ok(built);
    }
    static APPLIANCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    APPLIANCE
        .get_or_init(|| {
            build_appliance(&target_dir().join("ramkey/appliance"), Compression::Gzip, false)
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("building the appliance: {e}"))
}

/// The platform folder of `appliance()`.
pub fn platform() -> Result<PathBuf> {
    Ok(appliance()?.join("platform"))
}

/// A private copy of the built stick image (sparse), so a test may write to it.
pub fn usb_copy(name: &str) -> Result<PathBuf> {
    let src = appliance()?.join("usb.img");
    let dir = target_dir().join("ramkey/run");
    std::fs::create_dir_all(&dir)?;
    let dest = dir.join(format!("{name}.img"));
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(&src)
        .arg(&dest)
        .status()?;
    anyhow::ensure!(status.success(), "copying {} failed", src.display());
    Ok(dest)
}

/// Where the FAT partition starts in the built `usb.img`, as mtools' `IMAGE@@OFFSET` says it.
const STICK_FAT: &str = "@@1048576";

/// Runs mtools' `tool` (`mcopy`, `mdel`, `mmd`, ...) with `args` on the FAT partition of the
/// stick image `image`; whether it succeeded.
pub fn stick_mtools(tool: &str, image: &Path, args: &[&str]) -> Result<bool> {
    let fat = format!("{}{STICK_FAT}", image.display());
    let status = Command::new(tool)
        .env("MTOOLS_SKIP_CHECK", "1")
        .stdin(std::process::Stdio::null())
        .args(["-i", &fat])
        .args(args)
        .status()
        .with_context(|| format!("running {tool} (mtools)"))?;
    Ok(status.success())
}

/// Copies each host file to its `::/PATH` on the stick's FAT, replacing what is there and
/// making the destination's folder when it is missing.
pub fn put_on_stick(image: &Path, files: &[(&Path, &str)]) -> Result<()> {
    for (file, dest) in files {
        if let Some((folder, _)) = dest.rsplit_once('/').filter(|(f, _)| *f != "::") {
            // A folder that is there already is skipped (`-D s`), never asked about: mtools
            // prompts on a terminal otherwise, and `cargo xtask demo` runs on one.
            stick_mtools("mmd", image, &["-D", "s", folder])?;
        }
        let copied = stick_mtools("mcopy", image, &["-D", "o", &file.to_string_lossy(), dest])?;
        anyhow::ensure!(copied, "mcopy {} {dest} on {} failed", file.display(), image.display());
    }
    Ok(())
}

/// `target/ramkey/run/NAME.pool.img` made anew: a 1 GiB sparse disk holding an empty ext4
/// labelled `ramkey-pool`, which a box takes as its pool.
pub fn empty_pool(name: &str) -> Result<PathBuf> {
    let dir = target_dir().join("ramkey/run");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.pool.img"));
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path)?.set_len(1 << 30)?;
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "ramkey-pool"])
        .arg(&path)
        .status()
        .context("running mkfs.ext4 (e2fsprogs)")?;
    anyhow::ensure!(status.success(), "mkfs.ext4 {} failed ({status})", path.display());
    Ok(path)
}

/// The key that signs the test personalities: fixed, so that rebuilds hit the image cache.
/// Returns the secret key file and the public key line the config trusts.
pub fn test_key() -> Result<(PathBuf, String)> {
    let dir = target_dir().join("ramkey/keys");
    std::fs::create_dir_all(&dir)?;
    let key = ramkey_image::SigningKey::from_bytes(&[42; 32]);
    let secret = dir.join("test.secret");
    if !secret.exists() {
        ramkey_image::keys::write_secret_file(&secret, &key)?;
    }
    let public = ramkey_image::keys::encode_public(&key.verifying_key());
    Ok((secret, public.trim().to_string()))
}

/// `personalities/NAME` built with `ramkey image build` (mmdebstrap for Debian bases; the
/// first build takes minutes, later ones hit the cache under `target/ramkey/image-cache`),
/// signed with [`test_key`]. Returns the image file.
pub fn personality(name: &str) -> Result<PathBuf> {
    if let Some(built) = prebuilt(name) {
        return Ok(built);
    }
    build_personality(&workspace_root().join("personalities").join(name))
}

/// `personalities/NAME` built as a VM personality (`ramkey image build --vm`), into
/// `target/ramkey/images/vm/` (its file name is the zone image's).
pub fn vm_personality(name: &str) -> Result<PathBuf> {
    build(&workspace_root().join("personalities").join(name), true)
}

/// A personality definition folder built like [`personality`].
pub fn build_personality(definition: &Path) -> Result<PathBuf> {
    build(definition, false)
}

fn build(definition: &Path, vm: bool) -> Result<PathBuf> {
    let (key, _) = test_key()?;
    let images = target_dir().join("ramkey/images");
    let opts = ramkey_builder::image_cmd::build::BuildOptions {
        out: if vm { images.join("vm") } else { images },
        key,
        cache: Some(target_dir().join("ramkey/image-cache")),
        use_cache: true,
        epoch: None,
        progress: true,
        vm,
    };
    let report = ramkey_builder::image_cmd::build::build(definition, &opts)
        .with_context(|| format!("building the personality in {}", definition.display()))?;
    Ok(report.image)
}

/// A copy of `image` signed by another key than [`test_key`] (same payload and manifest).
pub fn resigned(image: &Path, dest: &Path) -> Result<()> {
    let read = ramkey_image::read::open(image)?;
    let payload = std::io::Read::take(std::fs::File::open(image)?, read.manifest.payload.size);
    let other = ramkey_image::SigningKey::from_bytes(&[7; 32]);
    ramkey_image::write::assemble(payload, &read.manifest, &other, std::fs::File::create(dest)?)?;
    Ok(())
}

/// A copy of `image` that says it is version `version`, signed by [`test_key`]: the same
/// payload, another manifest.
pub fn as_version(image: &Path, version: &str, dest: &Path) -> Result<()> {
    with_manifest(image, dest, |m| m.version = version.to_string())
}

/// A copy of `image` whose manifest `edit` changed, signed by [`test_key`]: the same payload.
pub fn with_manifest(
    image: &Path,
    dest: &Path,
    edit: impl FnOnce(&mut ramkey_image::manifest::Manifest),
) -> Result<()> {
    let read = ramkey_image::read::open(image)?;
    let mut manifest = read.manifest.clone();
    edit(&mut manifest);
    let payload = std::io::Read::take(std::fs::File::open(image)?, manifest.payload.size);
    let (secret, _) = test_key()?;
    let key = ramkey_image::keys::decode_secret(&std::fs::read_to_string(secret)?, "the test key")?;
    ramkey_image::write::assemble(payload, &manifest, &key, std::fs::File::create(dest)?)?;
    Ok(())
}

/// `personalities/BASE` copied to `target/ramkey/run/NAME`, given `version`, changed by
/// `edit` (called with the copy's folder) and built like [`personality`]. `NAME` must be
/// unique among the tests, which run two at a time.
pub fn personality_variant(name: &str, base: &str, version: &str, edit: impl FnOnce(&Path)) -> Result<PathBuf> {
    let dir = target_dir().join("ramkey/run").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&workspace_root().join("personalities").join(base), &dir)?;
    let definition = dir.join("personality.toml");
    let text = std::fs::read_to_string(&definition)?;
    let versioned = text.replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    anyhow::ensure!(
        versioned != text,
        "{}: no `version = \"1.0.0\"` line",
        definition.display()
    );
    std::fs::write(&definition, versioned)?;
    edit(&dir);
    build_personality(&dir)
}

/// In a copy of the `web` definition (`dir`), a page `/version.html` that says
/// `web VERSION`, for tests that tell two images apart by what they serve.
pub fn add_version_page(dir: &Path, version: &str) {
    std::fs::write(
        dir.join("files/usr/share/ramkey-web/version.html"),
        format!("web {version}\n"),
    )
    .unwrap();
    let conf = dir.join("files/etc/nginx/nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let versioned = text.replace(
        "        location / {",
        "        location = /version.html {\n            root /usr/share/ramkey-web;\n        }\n        location / {",
    );
    assert_ne!(versioned, text, "no `location / {{` in {}", conf.display());
    std::fs::write(conf, versioned).unwrap();
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

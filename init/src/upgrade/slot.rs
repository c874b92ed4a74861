//! The slots' files on the stick, `platform/a/` and `platform/b/` (`vmlinuz`, `initrd.img`,
//! `version`, `SHA256SUMS`, and `bundle.toml` when a bundle wrote it), and writing a
//! bundle into one: streamed and verified into `platform/S.new/`, which replaces
//! `platform/S/` only once everything verified and reached the stick. A refused or
//! interrupted bundle leaves the slot as it was; a power cut leaves a `S.new` that
//! [`info`] reports as an incomplete write and the next upgrade removes.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ramkey_image::VerifyingKey;
use ramkey_image::bundle::{Manifest, verify::Verified, verify::verify_into};

use super::state::PLATFORM_DIR;
use crate::base::cmdline::Slot;

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Which.
    pub slot: Slot,
    /// Its platform version; `None` when the slot is empty.
    pub version: Option<String>,
    /// Its kernel release.
    pub kernel: Option<String>,
    /// Build time, seconds since the epoch (from `bundle.toml`, else the build's file times).
    pub built: Option<u64>,
    /// Set when a write of this slot was cut off: what is left and what to do.
    pub incomplete: Option<String>,
}

fn dir(usbkey: &Path, name: &str) -> PathBuf {
    usbkey.join(PLATFORM_DIR).join(name)
}

/// Reads what slot `slot` of the stick mounted at `usbkey` holds.
pub fn info(usbkey: &Path, slot: Slot) -> SlotInfo {
    let name = slot.to_string();
    let folder = dir(usbkey, &name);
    let version_file = fs::read_to_string(folder.join("version")).ok();
    let field = |key: &str| {
        version_file
            .as_deref()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned())))
    };
    let manifest: Option<Manifest> = fs::read_to_string(folder.join("bundle.toml"))
        .ok()
        .and_then(|t| toml::from_str(&t).ok());
    let built = manifest.as_ref().map(|m| m.created).or_else(|| {
        let modified = fs::metadata(folder.join("version")).and_then(|m| m.modified()).ok()?;
        modified.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
    });
    let leftovers: Vec<String> = [".new", ".old"]
        .iter()
        .map(|suffix| format!("{name}{suffix}"))
        .filter(|n| dir(usbkey, n).exists())
        .map(|n| format!("{PLATFORM_DIR}/{n}"))
        .collect();
    let incomplete = (!leftovers.is_empty()).then(|| {
        format!(
            "a write was cut off ({} left on the stick); the next `ramkeyctl platform upgrade` removes it",
            leftovers.join(", ")
        )
    });
    SlotInfo {
        slot,
        version: field("ramkey "),
        kernel: field("kernel "),
        built,
        incomplete,
    }
}

/// How a slot was written.
#[derive(Debug)]
pub struct Written {
    /// The bundle that verified.
    pub verified: Verified,
    /// How long receiving, verifying and writing took.
    pub took: Duration,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

fn sync_dir(path: &Path) -> Result<(), String> {
    match File::open(path).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != std::io::ErrorKind::InvalidInput => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Removes `path` (a leftover folder) if it is there.
fn remove(path: &Path) -> Result<(), String> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

fn create(path: &Path) -> Result<BufWriter<File>, String> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(io(path))
}

fn finish(writer: BufWriter<File>, path: &Path) -> Result<(), String> {
    let file = writer
        .into_inner()
        .map_err(|e| format!("{}: {}", path.display(), e.error()))?;
    file.sync_all().map_err(io(path))
}

/// Streams the bundle from `from` into slot `slot` of the stick mounted (read-write) at
/// `usbkey`, verified against `trusted` and the `running` version. The slot changes only
/// when everything verified; on an error nothing of the bundle is left.
pub fn write(
    usbkey: &Path,
    slot: Slot,
    from: &mut dyn Read,
    trusted: &[VerifyingKey],
    running: &str,
    allow_downgrade: bool,
) -> Result<Written, String> {
    let started = Instant::now();
    let name = slot.to_string();
    let platform = usbkey.join(PLATFORM_DIR);
    let (target, new, old) = (
        dir(usbkey, &name),
        dir(usbkey, &format!("{name}.new")),
        dir(usbkey, &format!("{name}.old")),
    );
    remove(&new)?;
    remove(&old)?;
    fs::create_dir_all(&new).map_err(io(&new))?;
    // Durable at once: after a power cut, `S.new` is what says the write was cut off.
    sync_dir(&platform)?;
    let written = receive(&new, from, trusted, running, allow_downgrade);
    let verified = match written {
        Ok(v) => v,
        Err(e) => {
            let _ = remove(&new);
            let _ = sync_dir(&platform);
            return Err(e);
        }
    };
    sync_dir(&new)?;
    if target.exists() {
        fs::rename(&target, &old).map_err(io(&target))?;
    }
    fs::rename(&new, &target).map_err(io(&new))?;
    sync_dir(&platform)?;
    remove(&old)?;
    sync_dir(&platform)?;
    Ok(Written {
        verified,
        took: started.elapsed(),
    })
}

/// Verifies the bundle into `new/`: the kernel and initrd as they stream, then the files
/// that describe them.
fn receive(
    new: &Path,
    from: &mut dyn Read,
    trusted: &[VerifyingKey],
    running: &str,
    allow_downgrade: bool,
) -> Result<Verified, String> {
    let (kernel_path, initrd_path) = (new.join("vmlinuz"), new.join("initrd.img"));
    let mut kernel = create(&kernel_path)?;
    let mut initrd = create(&initrd_path)?;
    let verified = verify_into(from, trusted, Some(running), allow_downgrade, &mut kernel, &mut initrd)
        .map_err(|e| e.to_string())?;
    finish(kernel, &kernel_path)?;
    finish(initrd, &initrd_path)?;
    let m = &verified.manifest;
    let files = [
        (
            "version",
            format!("ramkey {}\nkernel {}\n", m.version, m.kernel_release),
        ),
        (
            "SHA256SUMS",
            format!("{}  vmlinuz\n{}  initrd.img\n", m.kernel.sha256, m.initrd.sha256),
        ),
        ("bundle.toml", toml::to_string(m).unwrap_or_default()),
    ];
    for (file, text) in files {
        let path = new.join(file);
        let mut out = create(&path)?;
        out.write_all(text.as_bytes()).map_err(io(&path))?;
        finish(out, &path)?;
    }
    Ok(verified)
}

#[cfg(test)]
#[path = "slot_tests.rs"]
mod tests;

//! `config.toml.good`: the last config a boot got through with, kept on the usbkey so that a
//! config broken later still leaves the box reachable.
//!
//! Written like every file on the usbkey ([`crate::storage::usbkey_write`]): remounted
//! read-write for the moment of the write, `config.toml.good.new`, fsync, rename.

use std::path::Path;

use crate::storage::mounts::Mounter;
use crate::storage::usbkey::MOUNT_POINT;
pub use crate::storage::usbkey_write::WriteError;
use crate::storage::usbkey_write::{with_rw, write_file};

/// The last good config's file name, next to `config.toml`.
pub const GOOD_FILE: &str = "config.toml.good";

/// What [`save`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The good copy already had this text; nothing was written.
    UpToDate,
    /// The good copy was written (bytes).
    Written(usize),
}

/// Writes `dir/config.toml.good` power-safely (the usbkey must be writable).
pub fn write_good(dir: &Path, text: &str) -> Result<(), WriteError> {
    write_file(dir, GOOD_FILE, text.as_bytes())
}

/// The good copy's text, if there is one.
pub fn read_good(mount: &Path) -> Option<String> {
    crate::boot::config_load::read_capped(&mount.join(GOOD_FILE))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Saves `text` (the config the boot used) as the good copy, unless it already is.
pub fn save(mounter: &mut dyn Mounter, node: &Path, mount: &Path, text: &str) -> Result<Saved, WriteError> {
    if read_good(mount).as_deref() == Some(text) {
        return Ok(Saved::UpToDate);
    }
    with_rw(mounter, node, mount, || write_good(mount, text))?;
    Ok(Saved::Written(text.len()))
}

/// The boot's `good-config` step: saves and logs.
pub fn step(mounter: &mut dyn Mounter, node: &Path, mount: &Path, text: &str) {
    let name = format!("{MOUNT_POINT}/{GOOD_FILE}");
    match save(mounter, node, mount, text) {
        Ok(Saved::UpToDate) => crate::notice!("config: {name} is up to date"),
        Ok(Saved::Written(n)) => crate::notice!("config: saved {name} ({n} bytes): the last good config"),
        Err(e) => crate::warn!("config: cannot save {name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mounts::fake::RecordingMounter;
    use nix::mount::MsFlags;

    /// The remounts `m` did, each `rw` or `ro`; every one a remount of the usbkey, noexec.
    fn remounts(m: &RecordingMounter) -> Vec<&'static str> {
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_NOEXEC;
        m.mounts
            .iter()
            .inspect(|c| assert!(c.flags.contains(remount) && c.source == Path::new("/dev/sda1"), "{c}"))
            .map(|c| {
                if c.flags.contains(MsFlags::MS_RDONLY) {
                    "ro"
                } else {
                    "rw"
                }
            })
            .collect()
    }

    #[test]
    fn saved_once_between_remounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = RecordingMounter::default();
        let node = Path::new("/dev/sda1");
        assert_eq!(
            save(&mut m, node, dir.path(), "version = 1\n").unwrap(),
            Saved::Written(12)
        );
        assert_eq!(remounts(&m), ["rw", "ro"]);
        assert_eq!(read_good(dir.path()).unwrap(), "version = 1\n");
        assert!(!dir.path().join("config.toml.good.new").exists());
        assert_eq!(
            save(&mut m, node, dir.path(), "version = 1\n").unwrap(),
            Saved::UpToDate
        );
        assert_eq!(remounts(&m).len(), 2, "no remount when up to date");
    }

    #[test]
    fn read_only_again_after_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = RecordingMounter::default();
        let missing = dir.path().join("gone");
        let err = save(&mut m, Path::new("/dev/sda1"), &missing, "x").unwrap_err();
        assert!(err.to_string().starts_with("create "), "{err}");
        assert_eq!(remounts(&m), ["rw", "ro"]);
    }
}

//! Where the config lives for `ramkey config`: a `config.toml` file, or the `RAMKEY` FAT
//! partition of a stick image or a stick, read and written without mounting
//! ([`crate::usbkey_fs`]). Writes are power-safe in both cases; a stick with a mounted
//! partition is refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ramkey_config::{CONFIG_FILE, Config, atomic};

use super::ConfigCmdError;
use crate::flash::sysfs::{DevNum, Sysfs};
use crate::usbkey_fs::{NEW_SUFFIX, PREV_SUFFIX, Usbkey};

/// The config a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A plain file (`--file`).
    File(PathBuf),
    /// `/config.toml` on the `RAMKEY` partition of an image file or a block device
    /// (`--image`, `--device`).
    Disk(PathBuf),
}

impl Target {
    /// The target named by exactly one of the three options.
    pub fn from_options(
        file: Option<&Path>,
        image: Option<&Path>,
        device: Option<&Path>,
    ) -> Result<Target, ConfigCmdError> {
        match (file, image, device) {
            (Some(f), None, None) => Ok(Target::File(f.to_owned())),
            (None, Some(d), None) | (None, None, Some(d)) => Ok(Target::Disk(d.to_owned())),
            (None, None, None) => Err(ConfigCmdError::NoTarget),
            _ => Err(ConfigCmdError::TwoTargets),
        }
    }

    /// How messages name the config: `box1.toml`, `usb.img::/config.toml` (as mtools does).
    pub fn name(&self) -> String {
        match self {
            Target::File(path) => path.display().to_string(),
            Target::Disk(path) => format!("{}::/{CONFIG_FILE}", path.display()),
        }
    }

    /// The config's text.
    pub fn read(&self) -> Result<String, ConfigCmdError> {
        let data = match self {
            Target::File(path) => fs::read(path).map_err(io_err("reading", path))?,
            Target::Disk(path) => {
                let disk = File::open(path).map_err(io_err("opening", path))?;
                Usbkey::open(&disk, path)?.read_existing(CONFIG_FILE)?
            }
        };
        String::from_utf8(data).map_err(|_| ConfigCmdError::NotText { name: self.name() })
    }

    /// Refuses a block device with anything mounted: called before an edit starts, so that
    /// the refusal comes first, and again by [`Target::write`].
    pub fn check_writable(&self, sys: &Sysfs) -> Result<(), ConfigCmdError> {
        match self {
            Target::File(_) => Ok(()),
            Target::Disk(path) => check_not_mounted(sys, path),
        }
    }

    /// Replaces the config with `text`, power-safely, keeping the old text as
    /// `config.toml.prev`. The caller has validated `text` (or accepted that it is still
    /// invalid but better than before). A block device with anything mounted is refused.
    pub fn write(&self, text: &str, sys: &Sysfs) -> Result<(), ConfigCmdError> {
        match self {
            Target::File(path) => write_file(path, text),
            Target::Disk(path) => {
                check_not_mounted(sys, path)?;
                let disk = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(io_err("opening for writing", path))?;
                Usbkey::open(&disk, path)?.replace(CONFIG_FILE, text.as_bytes())?;
                Ok(())
            }
        }
    }
}

pub(super) fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ConfigCmdError + 'p {
    move |source| ConfigCmdError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A file called `config.toml` goes through `ramkey_config::atomic` (the same code the box
/// uses); any other name gets the same steps with its own `.new` and `.prev`.
pub fn write_file(path: &Path, text: &str) -> Result<(), ConfigCmdError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.file_name().is_some_and(|n| n == CONFIG_FILE) {
        let valid = Config::parse(text, CONFIG_FILE).is_ok();
        let written = if valid {
            atomic::write_config(dir, text)
        } else {
            atomic::write_raw(dir, text)
        };
        return written.map_err(ConfigCmdError::Atomic);
    }
    let sibling = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (new, prev) = (sibling(NEW_SUFFIX), sibling(PREV_SUFFIX));
    let mut file = File::create(&new).map_err(io_err("creating", &new))?;
    file.write_all(text.as_bytes()).map_err(io_err("writing", &new))?;
    file.sync_all().map_err(io_err("syncing", &new))?;
    if path.exists() {
        fs::copy(path, &prev).map_err(io_err("copying to .prev", path))?;
        File::open(&prev)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing", &prev))?;
    }
    fs::rename(&new, path).map_err(io_err("renaming .new over", path))?;
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != io::ErrorKind::InvalidInput => Err(io_err("syncing", dir)(e)),
        _ => Ok(()),
    }
}

/// Refuses a block device when it, its disk or any partition of that disk is mounted.
pub fn check_not_mounted(sys: &Sysfs, path: &Path) -> Result<(), ConfigCmdError> {
    let meta = fs::metadata(path).map_err(io_err("inspecting", path))?;
    if !meta.file_type().is_block_device() {
        return Ok(());
    }
    refuse_mounted(sys, path, DevNum::from_rdev(meta.rdev()))
}

/// Refuses when the disk of device `dev` (the node `path`) has anything mounted.
fn refuse_mounted(sys: &Sysfs, path: &Path, dev: DevNum) -> Result<(), ConfigCmdError> {
    let sysfs_err = |source| ConfigCmdError::Io {
        what: "reading",
        path: sys.path("/sys/block"),
        source,
    };
    let (devs, names): (Vec<DevNum>, Vec<String>) = match sys.find_dev(dev).map_err(sysfs_err)? {
        Some((disk, _)) => (disk.devs().collect(), disk.names().map(str::to_owned).collect()),
        None => (vec![dev], vec![sys.kernel_name(&path.display().to_string())]),
    };
    let mounts = sys.mounts().map_err(|source| ConfigCmdError::Io {
        what: "reading",
        path: sys.path("/proc/self/mountinfo"),
        source,
    })?;
    for mount in mounts {
        let by_dev = mount.dev.is_some_and(|d| devs.contains(&d));
        if by_dev || names.contains(&sys.kernel_name(&mount.source)) {
            return Err(ConfigCmdError::Mounted {
                device: path.to_owned(),
                what: mount.source,
                mount_point: mount.mount_point,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version = 1\nhostname = \"a\"\n";

    #[test]
    fn files_of_any_name_are_replaced_with_a_prev_copy() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.toml", "box1.toml"] {
            let path = dir.path().join(name);
            let target = Target::File(path.clone());
            target.write(MINIMAL, &Sysfs::host()).unwrap();
            target.write("version = 1\nhostname = \"b\"\n", &Sysfs::host()).unwrap();
            assert_eq!(target.read().unwrap(), "version = 1\nhostname = \"b\"\n");
            assert_eq!(
                fs::read_to_string(dir.path().join(format!("{name}.prev"))).unwrap(),
                MINIMAL
            );
            assert!(!dir.path().join(format!("{name}.new")).exists());
        }
    }

    #[test]
    fn exactly_one_target() {
        let p = Some(Path::new("x"));
        assert!(matches!(
            Target::from_options(None, None, None),
            Err(ConfigCmdError::NoTarget)
        ));
        assert!(matches!(
            Target::from_options(p, p, None),
            Err(ConfigCmdError::TwoTargets)
        ));
        assert_eq!(Target::from_options(None, None, p).unwrap(), Target::Disk("x".into()));
        assert_eq!(Target::Disk("usb.img".into()).name(), "usb.img::/config.toml");
    }

    #[test]
    fn a_mounted_stick_is_refused() {
        // A fake /sys and /proc where 1:3 is a disk with a mounted partition: the check goes
        // by the disk, not only the node given.
        let root = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        w("sys/block/sdq/dev", "1:3\n");
        w("sys/block/sdq/sdq1/dev", "8:241\n");
        w("sys/block/sdq/sdq1/partition", "1\n");
        w(
            "proc/self/mountinfo",
            "40 22 8:241 / /media/stick rw - vfat /dev/sdq1 rw\n",
        );
        let dev = DevNum::parse("1:3").unwrap();
        let err = refuse_mounted(&Sysfs::new(root.path()), Path::new("/dev/sdq"), dev).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mounted (/dev/sdq1 on /media/stick)"), "{text}");
        assert!(text.contains("ramkeyctl config"), "{text}");
        w("proc/self/mountinfo", "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n");
        refuse_mounted(&Sysfs::new(root.path()), Path::new("/dev/sdq"), dev).unwrap();
        // Files are never mounted.
        check_not_mounted(&Sysfs::new(root.path()), Path::new("/etc/hostname")).unwrap();
    }
}

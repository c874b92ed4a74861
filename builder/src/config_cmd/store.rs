//! Where the config lives for `ramkey config`: a `config.toml` file, or the `RAMKEY` FAT
//! partition of a stick image or a stick, read and written without mounting
//! ([`crate::usbkey_fs`], the `fatfs` crate on the descriptor: no tool reopens the path).
//! Writes are power-safe in both cases; a stick with a mounted partition is refused.
//!
//! An image or a stick is opened once ([`Target::open_for_writing`], the same first step as
//! `ramkey flash`: `O_EXCL` on a block device, so that the kernel refuses a mounted or
//! claimed disk and nothing mounts it while the config is edited). The mount check, the
//! read, the write and its read-back all go through that descriptor; nothing reopens the
//! path, which may name something else by the time an editor is closed. A path under `/dev`
//! is a device or an error.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ramkey_config::{CONFIG_FILE, Config, atomic};

use super::ConfigCmdError;
use crate::flash::sysfs::{DevNum, Sysfs};
use crate::flash::target::{self as opener, Access, DevRoots, OpenError, Opened as OpenedDisk};
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
            Target::Disk(path) => disk_name(path),
        }
    }

    /// The config's text. An image or a stick is opened read-only, not exclusively (a
    /// mounted stick can be read).
    pub fn read(&self, sys: &Sysfs) -> Result<String, ConfigCmdError> {
        match self {
            Target::File(path) => read_file(path),
            Target::Disk(path) => Disk::open(path, sys, Access::Read)?.read(),
        }
    }

    /// Opens the config for an edit, before the edit starts, so that a refusal comes first:
    /// an image or a stick is opened once, a block device exclusively and refused when
    /// anything on its disk is mounted. Read and write through what is returned.
    pub fn open_for_writing(&self, sys: &Sysfs) -> Result<Opened, ConfigCmdError> {
        Ok(Opened(match self {
            Target::File(path) => Place::File(path.clone()),
            Target::Disk(path) => Place::Disk(Disk::open(path, sys, Access::Write)?),
        }))
    }
}

/// A target opened for an edit ([`Target::open_for_writing`]): for an image or a stick, the
/// one descriptor every later check, read and write goes through.
#[derive(Debug)]
pub struct Opened(Place);

#[derive(Debug)]
enum Place {
    /// Read and replaced by name (`ramkey_config::atomic`: a rename).
    File(PathBuf),
    Disk(Disk),
}

impl Opened {
    /// The config's text: on an image or a stick read through the descriptor (a `--file`
    /// is read by its name).
    pub fn read(&self) -> Result<String, ConfigCmdError> {
        match &self.0 {
            Place::File(path) => read_file(path),
            Place::Disk(disk) => disk.read(),
        }
    }

    /// Replaces the config with `text`, power-safely, keeping the old text as
    /// `config.toml.prev`: on an image or a stick written and read back through the
    /// descriptor, a block device checked again for mounts by the descriptor's device number
    /// first; a `--file` replaced by a rename ([`write_file`]). The caller has validated
    /// `text` (or accepted that it is still invalid but better than before).
    pub fn write(&self, text: &str, sys: &Sysfs) -> Result<(), ConfigCmdError> {
        match &self.0 {
            Place::File(path) => write_file(path, text),
            Place::Disk(disk) => disk.write(text, sys),
        }
    }
}

/// An image or a stick, opened once.
#[derive(Debug)]
struct Disk {
    file: File,
    path: PathBuf,
    /// A block device's `st_rdev`, from the opened descriptor.
    dev: Option<DevNum>,
}

impl Disk {
    /// Opens `path` ([`opener::open_existing`]); for writing, a block device is opened
    /// exclusively and refused when its disk has anything mounted (checked by the opened
    /// descriptor's device number). When the exclusive open fails with `EBUSY`, the mount
    /// check by the path's device number says why.
    fn open(path: &Path, sys: &Sysfs, access: Access) -> Result<Disk, ConfigCmdError> {
        let opened = opener::open_existing(path, &DevRoots::for_sysfs(sys), access);
        let (file, dev) = match opened {
            Ok(OpenedDisk::Block { file, dev }) => (file, Some(dev)),
            Ok(OpenedDisk::File(file)) => (file, None),
            Err(OpenError::Missing { device: true, .. }) => {
                return Err(ConfigCmdError::NoSuchDevice { path: path.into() });
            }
            Err(OpenError::Missing { device: false, source }) => return Err(io_err("opening", path)(source)),
            Err(OpenError::FileInDev) => return Err(ConfigCmdError::FileInDev { path: path.into() }),
            Err(OpenError::NotATarget) => return Err(ConfigCmdError::NotADisk { path: path.into() }),
            Err(OpenError::Block { dev, source }) if opener::is_busy(&source) => {
                refuse_mounted(sys, path, dev)?;
                return Err(ConfigCmdError::Busy { device: path.into() });
            }
            Err(OpenError::Block { source, .. }) => return Err(io_err("opening", path)(source)),
            Err(OpenError::Io { what, source }) => return Err(io_err(what, path)(source)),
        };
        if let (Some(dev), Access::Write) = (dev, access) {
            refuse_mounted(sys, path, dev)?;
        }
        Ok(Disk {
            file,
            path: path.into(),
            dev,
        })
    }

    fn read(&self) -> Result<String, ConfigCmdError> {
        let data = Usbkey::open(&self.file, &self.path)?.read_existing(CONFIG_FILE)?;
        String::from_utf8(data).map_err(|_| ConfigCmdError::NotText {
            name: disk_name(&self.path),
        })
    }

    fn write(&self, text: &str, sys: &Sysfs) -> Result<(), ConfigCmdError> {
        if let Some(dev) = self.dev {
            refuse_mounted(sys, &self.path, dev)?;
        }
        Usbkey::open(&self.file, &self.path)?.replace(CONFIG_FILE, text.as_bytes())?;
        Ok(())
    }
}

fn disk_name(path: &Path) -> String {
    format!("{}::/{CONFIG_FILE}", path.display())
}

fn read_file(path: &Path) -> Result<String, ConfigCmdError> {
    let data = fs::read(path).map_err(io_err("reading", path))?;
    String::from_utf8(data).map_err(|_| ConfigCmdError::NotText {
        name: path.display().to_string(),
    })
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
pub(crate) mod tests {
    use super::*;

    /// A stick image at `path`: 8 MiB, one FAT filesystem labelled `RAMKEY` from byte 0
    /// (made by `fatfs`, no tools), `/config.toml` holding `config`.
    pub(crate) fn image(path: &Path, config: &str) {
        let file = File::create_new(path).unwrap();
        file.set_len(8 << 20).unwrap();
        let label = format!("{:11}", crate::usbkey_fs::LABEL);
        let opts = fatfs::FormatVolumeOptions::new().volume_label(label.as_bytes().try_into().unwrap());
        fatfs::format_volume(crate::usbkey_fs::Slice::new(&file, 0, 8 << 20), opts).unwrap();
        Usbkey::open(&file, path)
            .unwrap()
            .replace(CONFIG_FILE, config.as_bytes())
            .unwrap();
    }

    /// `/config.toml` of the image `file` (an inode, whatever its path names now).
    pub(crate) fn config_of(file: &File) -> String {
        let data = Usbkey::open(file, Path::new("t.img"))
            .unwrap()
            .read_existing(CONFIG_FILE)
            .unwrap();
        String::from_utf8(data).unwrap()
    }

    const MINIMAL: &str = "version = 1\nhostname = \"a\"\n";

    #[test]
    fn files_of_any_name_are_replaced_with_a_prev_copy() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.toml", "box1.toml"] {
            let path = dir.path().join(name);
            let target = Target::File(path.clone());
            let sys = Sysfs::host();
            target.open_for_writing(&sys).unwrap().write(MINIMAL, &sys).unwrap();
            let opened = target.open_for_writing(&sys).unwrap();
            assert_eq!(opened.read().unwrap(), MINIMAL);
            opened.write("version = 1\nhostname = \"b\"\n", &sys).unwrap();
            assert_eq!(target.read(&sys).unwrap(), "version = 1\nhostname = \"b\"\n");
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
        // Image files are never mounted (a loop device over one is another device).
        let img = root.path().join("usb.img");
        image(&img, MINIMAL);
        let target = Target::Disk(img);
        let opened = target.open_for_writing(&Sysfs::new(root.path())).unwrap();
        opened
            .write("version = 1\nhostname = \"b\"\n", &Sysfs::new(root.path()))
            .unwrap();
    }

    #[test]
    fn the_image_opened_is_the_one_checked_read_and_written() {
        // Between the open and the write another file takes the path (a rename, as a
        // download or a build does): the read, the write and its read-back stay with the
        // file that was opened; the new one is not touched.
        let dir = tempfile::tempdir().unwrap();
        let (img, other) = (dir.path().join("usb.img"), dir.path().join("other.img"));
        image(&img, MINIMAL);
        image(&other, "version = 1\nhostname = \"other\"\n");
        let (checked, swapped) = (File::open(&img).unwrap(), File::open(&other).unwrap());
        let target = Target::Disk(img.clone());
        let sys = Sysfs::host();
        let opened = target.open_for_writing(&sys).unwrap();
        fs::rename(&other, &img).unwrap();
        assert_eq!(opened.read().unwrap(), MINIMAL);
        opened.write("version = 1\nhostname = \"b\"\n", &sys).unwrap();
        assert_eq!(config_of(&checked), "version = 1\nhostname = \"b\"\n");
        assert_eq!(
            config_of(&swapped),
            "version = 1\nhostname = \"other\"\n",
            "written by name"
        );
        // The path is read afresh by the next command.
        assert_eq!(target.read(&sys).unwrap(), "version = 1\nhostname = \"other\"\n");
    }

    /// A fake root with an empty `dev/`, which stands in for `/dev`.
    fn fake_dev() -> (tempfile::TempDir, PathBuf, Sysfs) {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("dev");
        fs::create_dir(&dev).unwrap();
        let sys = Sysfs::new(root.path());
        (root, dev, sys)
    }

    #[test]
    fn a_missing_device_is_refused_and_nothing_is_created() {
        let (root, dev, sys) = fake_dev();
        let sdz = dev.join("sdz");
        let pairs = ["hostname=b".to_owned()];
        let err = super::super::set(&Target::Disk(sdz.clone()), &pairs, &sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::NoSuchDevice { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "no such device: {}; plug the stick in, `lsblk` lists the disks",
                sdz.display()
            )
        );
        let err = Target::Disk(sdz.clone()).read(&sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::NoSuchDevice { .. }), "{err}");
        assert!(fs::symlink_metadata(&sdz).is_err(), "created");
        // The host's /dev whatever the root, and a dangling symlink anywhere (a by-id link
        // of a stick that was pulled out).
        let gone = Target::Disk("/dev/ramkey-no-such-disk".into());
        let err = gone.open_for_writing(&sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::NoSuchDevice { .. }), "{err}");
        let link = root.path().join("stick");
        std::os::unix::fs::symlink(&sdz, &link).unwrap();
        let err = Target::Disk(link).open_for_writing(&sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::NoSuchDevice { .. }), "{err}");
        assert!(fs::symlink_metadata(&sdz).is_err(), "created");
        // Elsewhere a missing image is just missing.
        let err = Target::Disk(root.path().join("usb.img"))
            .open_for_writing(&sys)
            .unwrap_err();
        assert!(matches!(&err, ConfigCmdError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound));
        assert!(!root.path().join("usb.img").exists());
    }

    #[test]
    fn a_regular_file_under_dev_is_refused_and_left_alone() {
        // What `dd of=/dev/sdz` leaves when no stick was plugged in: a whole stick image.
        let (_root, dev, sys) = fake_dev();
        let sdz = dev.join("sdz");
        image(&sdz, MINIMAL);
        let before = fs::read(&sdz).unwrap();
        let target = Target::Disk(sdz.clone());
        let err = super::super::set(&target, &["hostname=b".to_owned()], &sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::FileInDev { .. }), "{err}");
        assert!(err.to_string().contains("is a regular file, not a device"), "{err}");
        let err = target.read(&sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::FileInDev { .. }), "{err}");
        assert!(fs::read(&sdz).unwrap() == before, "written");
        // Neither a device nor a regular file.
        let err = Target::Disk(dev).open_for_writing(&sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::NotADisk { .. }), "{err}");
    }

    #[test]
    fn a_stick_is_held_exclusively_while_its_config_is_edited_as_root() {
        use crate::flash::tests::{Loop, require_root};
        require_root("a_stick_is_held_exclusively_while_its_config_is_edited_as_root");
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("stick.disk");
        image(&backing, MINIMAL);
        let lo = Loop::new(&backing);
        let target = Target::Disk(lo.dev.clone());
        let sys = Sysfs::host();
        let opened = target.open_for_writing(&sys).unwrap();
        // Nothing else can claim (or mount) the stick meanwhile; reading is still allowed.
        let err = target.open_for_writing(&sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::Busy { .. }), "{err}");
        assert_eq!(target.read(&sys).unwrap(), MINIMAL);
        opened.write("version = 1\nhostname = \"b\"\n", &sys).unwrap();
        drop(opened);
        target.open_for_writing(&sys).unwrap();
        drop(lo);
        assert_eq!(
            config_of(&File::open(&backing).unwrap()),
            "version = 1\nhostname = \"b\"\n"
        );
    }
}

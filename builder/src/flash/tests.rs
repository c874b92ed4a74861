//! `flash()` about its target: opened once, checked through that descriptor, written,
//! verified and given its config back through it; paths under `/dev` that are not devices.
//! Non-root tests use a fake root whose `dev/` stands in for `/dev`; the `*_as_root` tests
//! make loop devices with `losetup` (they fail, never skip, when not run as root).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::sysfs::{DevNum, Sysfs};
use super::{Confirm, FlashError, Options, ProgressMode, flash};

/// Answers `answer` after running `during` (what happens while the person reads the question).
struct Ask<F: FnMut(&str)> {
    during: F,
    answer: Option<bool>,
    asked: usize,
}

impl<F: FnMut(&str)> Confirm for Ask<F> {
    fn ask(&mut self, question: &str) -> std::io::Result<Option<bool>> {
        self.asked += 1;
        (self.during)(question);
        Ok(self.answer)
    }
}

fn yes() -> Ask<fn(&str)> {
    Ask {
        during: |_| {},
        answer: Some(true),
        asked: 0,
    }
}

fn options(image: &Path, target: &Path) -> Options {
    Options {
        image: image.into(),
        target: target.into(),
        force: false,
        yes: false,
        keep_config: false,
        progress: ProgressMode::Quiet,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

/// A fake host root: `dev/` (empty), `sys/block/`, `sys/class/block/`, a mountinfo with `/`
/// on a device no disk has, no swap.
struct FakeRoot {
    dir: tempfile::TempDir,
}

impl FakeRoot {
    fn new() -> FakeRoot {
        let fake = FakeRoot {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["dev", "sys/block", "sys/class/block"] {
            fs::create_dir_all(fake.path(d)).unwrap();
        }
        fake.write("proc/self/mountinfo", "22 1 254:99 / / rw - ext4 /dev/fakeroot rw\n");
        fake.write("proc/swaps", "Filename Type Size Used Priority\n");
        fake
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A removable disk `name` with device number `dev`, linked from `sys/class/block/` as in
    /// the real sysfs (both lead to the same `dev` file).
    fn disk(&self, name: &str, dev: DevNum, bytes: u64) {
        self.write(&format!("sys/block/{name}/dev"), &format!("{dev}\n"));
        self.write(&format!("sys/block/{name}/size"), &format!("{}\n", bytes / 512));
        self.write(&format!("sys/block/{name}/removable"), "1\n");
        self.write(&format!("sys/block/{name}/device/vendor"), "Fake\n");
        self.write(&format!("sys/block/{name}/device/model"), "Stick\n");
        fs::create_dir_all(self.path(&format!("sys/block/{name}/holders"))).unwrap();
        std::os::unix::fs::symlink(
            format!("../../block/{name}"),
            self.path(&format!("sys/class/block/{name}")),
        )
        .unwrap();
    }

    fn sys(&self) -> Sysfs {
        Sysfs::new(self.dir.path())
    }
}

#[test]
fn a_missing_device_under_dev_is_refused_and_never_created() {
    let fake = FakeRoot::new();
    let image = fake.path("usb.img");
    fs::write(&image, pattern(64 << 10)).unwrap();
    let sdz = fake.path("dev/sdz");
    let links = tempfile::tempdir().unwrap();
    // The same missing device through a symlinked directory and through a dangling symlink.
    let dev_link = links.path().join("devices");
    std::os::unix::fs::symlink(fake.path("dev"), &dev_link).unwrap();
    let dangling = links.path().join("stick");
    std::os::unix::fs::symlink(&sdz, &dangling).unwrap();
    for target in [sdz.clone(), dev_link.join("sdz"), dangling.clone()] {
        let opts = Options {
            yes: true,
            force: true,
            ..options(&image, &target)
        };
        let err = flash(&opts, &fake.sys(), &mut yes()).unwrap_err();
        let text = err.to_string();
        assert!(!sdz.exists(), "{target:?} created {sdz:?}");
        assert!(text.contains("no such device"), "{target:?}: {text}");
        assert!(text.contains("lsblk"), "{text}");
    }
    // And the real /dev, with the host's sysfs.
    let real = PathBuf::from(format!("/dev/ramkey-flash-test-{}-sdz", std::process::id()));
    let result = flash(&options(&image, &real), &Sysfs::host(), &mut yes());
    let created = fs::symlink_metadata(&real).is_ok();
    if created {
        let _ = fs::remove_file(&real); // what the old code left in devtmpfs
    }
    assert!(!created, "{real:?} was created");
    let text = result.unwrap_err().to_string();
    assert!(text.contains("no such device"), "{text}");
}

#[test]
fn a_regular_file_under_dev_is_refused_and_left_alone() {
    let fake = FakeRoot::new();
    let image = fake.path("usb.img");
    fs::write(&image, pattern(64 << 10)).unwrap();
    // What an earlier `dd` to an unplugged /dev/sdz leaves.
    let sdz = fake.path("dev/sdz");
    fs::write(&sdz, b"left over").unwrap();
    let opts = Options {
        yes: true,
        ..options(&image, &sdz)
    };
    let err = flash(&opts, &fake.sys(), &mut yes()).unwrap_err();
    assert!(err.to_string().contains("regular file"), "{err}");
    assert_eq!(fs::read(&sdz).unwrap(), b"left over");
    // Outside /dev a regular file is a file target, written and verified.
    let out = fake.path("out.img");
    fs::write(&out, b"old").unwrap();
    let outcome = flash(&options(&image, &out), &fake.sys(), &mut yes()).unwrap();
    assert_eq!(outcome.bytes, 64 << 10);
    assert!(fs::read(&out).unwrap() == pattern(64 << 10));
}

// --- as root, with loop devices -----------------------------------------------------------

pub(crate) fn require_root(test: &str) {
    assert!(
        fs::metadata("/proc/self").unwrap().uid() == 0,
        "{test} needs root (it makes loop devices with losetup); run `sudo cargo test -p ramkey-builder {test}`"
    );
}

fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A loop device over a file; unmounted and detached on drop.
pub(crate) struct Loop {
    pub(crate) dev: PathBuf,
    mount: Option<PathBuf>,
}

impl Loop {
    pub(crate) fn new(backing: &Path) -> Loop {
        let out = tool(Command::new("losetup").args(["--find", "--show"]).arg(backing));
        Loop {
            dev: PathBuf::from(String::from_utf8(out).unwrap().trim()),
            mount: None,
        }
    }

    fn name(&self) -> String {
        self.dev.file_name().unwrap().to_string_lossy().into_owned()
    }

    fn devnum(&self) -> DevNum {
        DevNum::from_rdev(fs::metadata(&self.dev).unwrap().rdev())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(mount) = &self.mount {
            let _ = Command::new("umount").arg(mount).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// An 8 MiB stick: one FAT filesystem labelled RAMKEY over the whole disk (no partition
/// table), holding `/config.toml` and `/marker`.
fn stick(path: &Path, config: &str, marker: &str) {
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    file.set_len(8 << 20).unwrap();
    let opts = fatfs::FormatVolumeOptions::new().volume_label(*b"RAMKEY     ");
    fatfs::format_volume(crate::usbkey_fs::Slice::new(&file, 0, 8 << 20), opts).unwrap();
    super::keep_config::write_config(&file, config.as_bytes()).unwrap();
    let key = crate::usbkey_fs::Usbkey::open(&file, path).unwrap();
    key.overwrite("marker", marker.as_bytes()).unwrap();
}

fn read_stick(path: &Path, name: &str) -> String {
    let file = File::open(path).unwrap();
    let key = crate::usbkey_fs::Usbkey::open(&file, path).unwrap();
    String::from_utf8(key.read(name).unwrap().unwrap()).unwrap()
}

#[test]
fn writes_verifies_and_keeps_config_through_the_device_it_checked_as_root() {
    require_root("writes_verifies_and_keeps_config_through_the_device_it_checked_as_root");
    let dir = tempfile::tempdir().unwrap();
    let (a, b, image) = (
        dir.path().join("a.disk"),
        dir.path().join("b.disk"),
        dir.path().join("usb.img"),
    );
    stick(&a, "hostname = \"a\"\n", "stick a");
    stick(&b, "hostname = \"b\"\n", "stick b");
    stick(&image, "hostname = \"new\"\n", "the image");
    let b_before = fs::read(&b).unwrap();
    let (lo_a, lo_b) = (Loop::new(&a), Loop::new(&b));
    // The user names the stick through a link (as /dev/disk/by-id/ does); while the question
    // waits, the link comes to point at another disk.
    let link = dir.path().join("stick");
    std::os::unix::fs::symlink(&lo_a.dev, &link).unwrap();
    let mut question = String::new();
    let mut ask = Ask {
        during: |q: &str| {
            question = q.to_string();
            fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(&lo_b.dev, &link).unwrap();
        },
        answer: Some(true),
        asked: 0,
    };
    let opts = Options {
        force: true, // loop devices are not removable
        keep_config: true,
        ..options(&image, &link)
    };
    let outcome = flash(&opts, &Sysfs::host(), &mut ask).unwrap();
    assert!(outcome.config_kept && outcome.bytes == 8 << 20);
    assert_eq!(ask.asked, 1);
    let names = |name: String| question.contains(&format!("({name})")) || question.contains(&format!("({name},"));
    assert!(names(lo_a.name()) && !names(lo_b.name()), "{question}");
    drop((lo_a, lo_b));
    assert!(fs::read(&b).unwrap() == b_before, "the other disk was written");
    assert_eq!(read_stick(&a, "marker"), "the image");
    assert_eq!(read_stick(&a, "config.toml"), "hostname = \"a\"\n");
}

#[test]
fn refuses_when_sysfs_names_another_device_after_the_question_as_root() {
    require_root("refuses_when_sysfs_names_another_device_after_the_question_as_root");
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("stick.disk");
    fs::write(&backing, vec![0u8; 4 << 20]).unwrap();
    let image = dir.path().join("usb.img");
    fs::write(&image, pattern(1 << 20)).unwrap();
    let lo = Loop::new(&backing);
    let fake = FakeRoot::new();
    fake.disk(&lo.name(), lo.devnum(), 4 << 20);
    // While the question waits, the stick is pulled and the name comes back for another disk.
    let dev_file = fake.path(&format!("sys/block/{}/dev", lo.name()));
    let mut ask = Ask {
        during: |_: &str| fs::write(&dev_file, "7:250\n").unwrap(),
        answer: Some(true),
        asked: 0,
    };
    let err = flash(&options(&image, &lo.dev), &fake.sys(), &mut ask).unwrap_err();
    assert_eq!(ask.asked, 1);
    assert!(err.to_string().contains("7:250"), "{err}");
    assert!(err.to_string().contains("changed"), "{err}");
    drop(lo);
    assert!(
        fs::read(&backing).unwrap().iter().all(|b| *b == 0),
        "nothing was written"
    );
}

#[test]
fn refuses_a_disk_held_exclusively_elsewhere_before_asking_as_root() {
    require_root("refuses_a_disk_held_exclusively_elsewhere_before_asking_as_root");
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("stick.disk");
    fs::write(&backing, vec![0u8; 4 << 20]).unwrap();
    let image = dir.path().join("usb.img");
    fs::write(&image, pattern(1 << 20)).unwrap();
    let lo = Loop::new(&backing);
    // Another program has the disk open exclusively: nothing in sysfs or mountinfo shows it.
    let held = std::os::unix::fs::OpenOptionsExt::custom_flags(
        File::options().read(true),
        rustix::fs::OFlags::EXCL.bits() as i32,
    )
    .open(&lo.dev)
    .unwrap();
    let mut ask = yes();
    let opts = Options {
        force: true,
        ..options(&image, &lo.dev)
    };
    let err = flash(&opts, &Sysfs::host(), &mut ask).unwrap_err();
    assert!(matches!(err, FlashError::Busy { .. }), "{err}");
    assert_eq!(ask.asked, 0, "asked about a disk it cannot write");
    drop(held);
    drop(lo);
    assert!(
        fs::read(&backing).unwrap().iter().all(|b| *b == 0),
        "nothing was written"
    );
}

#[test]
fn o_excl_refuses_a_mounted_disk_that_mountinfo_does_not_show_as_root() {
    require_root("o_excl_refuses_a_mounted_disk_that_mountinfo_does_not_show_as_root");
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("ext4.disk");
    fs::write(&backing, vec![0u8; 8 << 20]).unwrap();
    tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&backing));
    let image = dir.path().join("usb.img");
    fs::write(&image, pattern(1 << 20)).unwrap();
    let mut lo = Loop::new(&backing);
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    tool(Command::new("mount").arg(&lo.dev).arg(&mnt));
    lo.mount = Some(mnt.clone());
    fs::File::create(mnt.join("precious"))
        .unwrap()
        .write_all(b"keep me")
        .unwrap();
    // A mount in another mount namespace (a container, a service with PrivateMounts): this
    // process's mountinfo does not list it; the fake sysfs shows an idle removable stick.
    let fake = FakeRoot::new();
    fake.disk(&lo.name(), lo.devnum(), 8 << 20);
    let mut ask = yes();
    let err = flash(&options(&image, &lo.dev), &fake.sys(), &mut ask).unwrap_err();
    assert!(matches!(err, FlashError::Busy { .. }), "{err}");
    assert_eq!(ask.asked, 0, "asked about a disk it cannot write");
    assert_eq!(fs::read(mnt.join("precious")).unwrap(), b"keep me");
    // With the host's mountinfo the refusal names the mount.
    let err = flash(&options(&image, &lo.dev), &Sysfs::host(), &mut yes()).unwrap_err();
    assert!(matches!(err, FlashError::Mounted { .. }), "{err}");
    drop(lo);
    assert!(
        fs::read(&backing).unwrap()[..1 << 20] != pattern(1 << 20),
        "nothing was written"
    );
}

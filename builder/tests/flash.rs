//! `ramkey flash` end to end: to files (raw, gzip, zstd, `--keep-config`) as any user, and to
//! loop devices as root (`*_as_root`: they fail, never skip, when not run as root).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use gptman::{GPT, GPTPartitionEntry};
use ramkey_builder::flash::sysfs::Sysfs;
use ramkey_builder::flash::{Confirm, FlashError, Options, Outcome, ProgressMode, flash};
use sha2::{Digest, Sha256};

/// Answers every question with `answer` and counts them.
struct Answer(Option<bool>, usize);

impl Confirm for Answer {
    fn ask(&mut self, _question: &str) -> std::io::Result<Option<bool>> {
        self.1 += 1;
        Ok(self.0)
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

fn run(opts: &Options) -> Result<Outcome, FlashError> {
    flash(opts, &Sysfs::host(), &mut Answer(None, 0))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn flashes_a_raw_image_to_a_file_and_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(9 << 20); // more than two write blocks, not a multiple of one
    let image = dir.path().join("usb.img");
    std::fs::write(&image, &data).unwrap();
    let target = dir.path().join("copy.img");
    std::fs::write(&target, vec![0xffu8; 20 << 20]).unwrap(); // a longer old file is replaced
    let outcome = run(&options(&image, &target)).unwrap();
    assert_eq!(outcome.bytes, data.len() as u64);
    assert_eq!(outcome.sha256, sha256(&data));
    assert!(std::fs::read(&target).unwrap() == data);
    let err = run(&options(&image, &image)).unwrap_err();
    assert!(matches!(err, FlashError::SameFile { .. }), "{err}");
}

#[test]
fn flashes_gzip_and_zstd_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(5 << 20);
    let gz = dir.path().join("usb.img.gz");
    let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
    let zst = dir.path().join("usb.img.zst");
    std::fs::write(&zst, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
    for image in [gz, zst] {
        let target = dir.path().join("out.img");
        let outcome = run(&options(&image, &target)).unwrap();
        assert_eq!(outcome.sha256, sha256(&data), "{image:?}");
        assert!(std::fs::read(&target).unwrap() == data, "{image:?}");
        std::fs::remove_file(&target).unwrap();
    }
}

#[test]
fn refuses_what_is_neither_a_disk_nor_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("usb.img");
    std::fs::write(&image, pattern(4096)).unwrap();
    let err = run(&options(&image, Path::new("/dev/null"))).unwrap_err();
    assert!(matches!(err, FlashError::NotATarget { .. }), "{err}");
    let err = run(&options(&image, dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("neither a block device nor a regular file"),
        "{err}"
    );
}

/// A stick image: GPT, one FAT partition labelled RAMKEY from 1 MiB, `/config.toml` holding
/// `config` — made with gptman, `mkfs.vfat --offset` and mtools, as `usb.rs` does.
fn stick_image(path: &Path, size_mib: u64, config: Option<&str>) {
    let mut file = File::create(path).unwrap();
    file.set_len(size_mib << 20).unwrap();
    let mut gpt = GPT::new_from(&mut file, 512, [7; 16]).unwrap();
    let last = gpt.header.last_usable_lba / 2048 * 2048 - 1;
    gpt[1] = GPTPartitionEntry {
        partition_type_guid: [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
        ],
        unique_partition_guid: [8; 16],
        starting_lba: 2048,
        ending_lba: last,
        attribute_bits: 0,
        partition_name: "RAMKEY".into(),
    };
    gpt.write_into(&mut file).unwrap();
    GPT::write_protective_mbr_into(&mut file, 512).unwrap();
    drop(file);
    let kib = (last + 1 - 2048) / 2;
    tool(
        Command::new("mkfs.vfat")
            .args(["-n", "RAMKEY", "--offset", "2048"])
            .arg(path)
            .arg(kib.to_string()),
    );
    if let Some(config) = config {
        let src = path.with_extension("config.toml");
        std::fs::write(&src, config).unwrap();
        tool(
            Command::new("mcopy")
                .arg("-i")
                .arg(at_offset(path))
                .arg(&src)
                .arg("::/config.toml"),
        );
    }
}

fn at_offset(path: &Path) -> String {
    format!("{}@@{}", path.display(), 2048 * 512)
}

/// `/config.toml` as mtools reads it.
fn mtype_config(path: &Path) -> String {
    let out = tool(
        Command::new("mtype")
            .arg("-i")
            .arg(at_offset(path))
            .arg("::/config.toml"),
    );
    String::from_utf8(out).unwrap()
}

fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install dosfstools and mtools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn keep_config_carries_the_sticks_config_over() {
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick.img");
    stick_image(&stick, 48, Some("hostname = \"kept\"\n"));
    let image = dir.path().join("new.img");
    stick_image(&image, 40, Some("hostname = \"fresh from the build\"\n"));
    let opts = Options {
        keep_config: true,
        ..options(&image, &stick)
    };
    let outcome = run(&opts).unwrap();
    assert!(outcome.config_kept);
    assert_eq!(outcome.bytes, 40 << 20);
    assert_eq!(mtype_config(&stick), "hostname = \"kept\"\n");
    // Without --keep-config the image's own config lands.
    run(&options(&image, &stick)).unwrap();
    assert_eq!(mtype_config(&stick), "hostname = \"fresh from the build\"\n");
}

#[test]
fn keep_config_refuses_before_writing_when_there_is_no_config() {
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick.img");
    stick_image(&stick, 40, None);
    let before = std::fs::read(&stick).unwrap();
    let image = dir.path().join("new.img");
    stick_image(&image, 40, Some("x = 1\n"));
    let opts = Options {
        keep_config: true,
        ..options(&image, &stick)
    };
    let err = run(&opts).unwrap_err();
    assert!(matches!(err, FlashError::NoConfig { .. }), "{err}");
    assert!(err.to_string().contains("no /config.toml"), "{err}");
    assert!(std::fs::read(&stick).unwrap() == before, "nothing was written");
    // No partition table at all.
    std::fs::write(&stick, vec![0u8; 1 << 20]).unwrap();
    let err = run(&opts).unwrap_err();
    assert!(err.to_string().contains("no GPT"), "{err}");
}

// --- as root, with loop devices -----------------------------------------------------------

fn require_root(test: &str) {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "{test} needs root (it makes loop devices with losetup); run `sudo cargo test -p ramkey-builder --test flash`"
    );
}

/// A loop device over a file; detached (and unmounted) on drop.
struct Loop {
    dev: PathBuf,
    mount: Option<PathBuf>,
}

impl Loop {
    fn new(backing: &Path) -> Loop {
        let out = tool(Command::new("losetup").args(["--find", "--show"]).arg(backing));
        Loop {
            dev: PathBuf::from(String::from_utf8(out).unwrap().trim()),
            mount: None,
        }
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

#[test]
fn refuses_a_too_small_disk_as_root() {
    require_root("refuses_a_too_small_disk_as_root");
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("small.disk");
    std::fs::write(&backing, vec![0u8; 1 << 20]).unwrap();
    let image = dir.path().join("usb.img");
    std::fs::write(&image, pattern(2 << 20)).unwrap();
    let lo = Loop::new(&backing);
    let opts = Options {
        yes: true,
        force: true,
        ..options(&image, &lo.dev)
    };
    let err = run(&opts).unwrap_err();
    assert!(
        matches!(
            err,
            FlashError::TooSmall {
                capacity: 1048576,
                image_size: 2097152,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("too small"), "{err}");
    drop(lo);
    assert!(
        std::fs::read(&backing).unwrap().iter().all(|b| *b == 0),
        "nothing was written"
    );
}

#[test]
fn refuses_a_mounted_disk_as_root() {
    require_root("refuses_a_mounted_disk_as_root");
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("ext4.disk");
    std::fs::write(&backing, vec![0u8; 8 << 20]).unwrap();
    // ext4, not vfat: this machine's kernel cannot mount vfat, every Linux mounts ext4.
    tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&backing));
    let image = dir.path().join("usb.img");
    std::fs::write(&image, pattern(1 << 20)).unwrap();
    let mut lo = Loop::new(&backing);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    tool(Command::new("mount").arg(&lo.dev).arg(&mnt));
    lo.mount = Some(mnt.clone());
    let opts = Options {
        yes: true,
        force: true,
        ..options(&image, &lo.dev)
    };
    let err = run(&opts).unwrap_err();
    assert!(matches!(err, FlashError::Mounted { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("mounted on {}", mnt.display())),
        "{err}"
    );
    drop(lo);
    // (Mounting changed the superblock; the image's bytes must not be there.)
    assert!(
        std::fs::read(&backing).unwrap()[..1 << 20] != pattern(1 << 20),
        "nothing was written"
    );
}

#[test]
fn flashes_a_loop_device_with_keep_config_as_root() {
    require_root("flashes_a_loop_device_with_keep_config_as_root");
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("stick.disk");
    stick_image(&backing, 64, Some("hostname = \"on the stick\"\n"));
    let image = dir.path().join("usb.img.zst");
    let raw = dir.path().join("usb.img");
    stick_image(&raw, 40, Some("hostname = \"new\"\n"));
    std::fs::write(&image, zstd::encode_all(&std::fs::read(&raw).unwrap()[..], 3).unwrap()).unwrap();
    let lo = Loop::new(&backing);
    // A loop device is not removable: refused without --force, and nobody to ask without --yes.
    let err = run(&Options {
        keep_config: true,
        ..options(&image, &lo.dev)
    })
    .unwrap_err();
    assert!(matches!(err, FlashError::NotRemovable { .. }), "{err}");
    let opts = Options {
        keep_config: true,
        force: true,
        ..options(&image, &lo.dev)
    };
    let err = run(&opts).unwrap_err();
    assert!(err.to_string().contains("pass --yes"), "{err}");
    let mut declined = Answer(Some(false), 0);
    let err = flash(&opts, &Sysfs::host(), &mut declined).unwrap_err();
    assert!(matches!(err, FlashError::Declined { .. }) && declined.1 == 1, "{err}");
    let outcome = flash(&opts, &Sysfs::host(), &mut Answer(Some(true), 0)).unwrap();
    assert!(outcome.config_kept);
    assert_eq!(outcome.bytes, 40 << 20);
    drop(lo);
    assert_eq!(mtype_config(&backing), "hostname = \"on the stick\"\n");
    let written = std::fs::read(&backing).unwrap();
    assert_eq!(written.len(), 64 << 20);
    // Everything but the FAT partition's contents is the image's.
    assert!(written[..1 << 20] == std::fs::read(&raw).unwrap()[..1 << 20]);
}

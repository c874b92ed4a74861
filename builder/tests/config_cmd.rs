//! `ramkey config` end to end on stick images, through the library and the `ramkey` binary:
//! comment-preserving edits read back with mtools, `config.toml.prev`, `fsck.vfat`, refusals
//! that leave the image byte-identical, `edit` with a scripted `$EDITOR`, SmartOS import; and
//! on a loop device as root (`*_as_root`: fails, never skips, when not run as root).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gptman::{GPT, GPTPartitionEntry};
use ramkey_builder::config_cmd::{self, ConfigCmdError, Target};
use ramkey_builder::flash::sysfs::Sysfs;
use sha2::{Digest, Sha256};

const FULL: &str = include_str!("../../config/tests/fixtures/accept/full.toml");
const GATEWAY_LINE: &str = "gateway = \"192.168.1.1\"   # default route";
const ESP: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
const OFFSET: u64 = 2048 * 512;

/// A stick image like usb.img, small: GPT, partition 1 at LBA 2048 (and, with `second`, a
/// 4 MiB partition 2 after it), `mkfs.vfat -F 32 -n RAMKEY`, `/config.toml` by mtools.
fn stick(dir: &Path, config: &str, second: bool) -> PathBuf {
    let path = dir.join("stick.img");
    let mut file = File::create(&path).unwrap();
    file.set_len(48 << 20).unwrap();
    let mut gpt = GPT::new_from(&mut file, 512, [7; 16]).unwrap();
    let end = gpt.header.last_usable_lba / 2048 * 2048 - 1;
    let last = if second { end - (4 << 11) } else { end };
    gpt[1] = GPTPartitionEntry {
        partition_type_guid: ESP,
        unique_partition_guid: [8; 16],
        starting_lba: 2048,
        ending_lba: last,
        attribute_bits: 0,
        partition_name: "RAMKEY".into(),
    };
    if second {
        gpt[2] = GPTPartitionEntry {
            partition_type_guid: [9; 16],
            unique_partition_guid: [10; 16],
            starting_lba: last + 1,
            ending_lba: end,
            attribute_bits: 0,
            partition_name: "other".into(),
        };
    }
    gpt.write_into(&mut file).unwrap();
    GPT::write_protective_mbr_into(&mut file, 512).unwrap();
    drop(file);
    let kib = (last + 1 - 2048) / 2;
    tool(
        Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "RAMKEY", "--offset", "2048"])
            .arg(&path)
            .arg(kib.to_string()),
    );
    let src = dir.join("src-config.toml");
    std::fs::write(&src, config).unwrap();
    tool(
        Command::new("mcopy")
            .arg("-i")
            .arg(at(&path))
            .arg(&src)
            .arg("::/config.toml"),
    );
    path
}

fn at(img: &Path) -> String {
    format!("{}@@{OFFSET}", img.display())
}

/// A file of the FAT partition as mtools reads it, or `None` if it is not there.
fn mtype(img: &Path, name: &str) -> Option<String> {
    let out = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(at(img))
        .arg(format!("::/{name}"))
        .output()
        .unwrap();
    out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
}

/// `fsck.vfat -n` on the partition's bytes (it has no offset option).
fn fsck(img: &Path, len: u64) {
    let data = std::fs::read(img).unwrap();
    let part = img.with_extension("part");
    std::fs::write(&part, &data[OFFSET as usize..(OFFSET + len) as usize]).unwrap();
    tool(Command::new("fsck.vfat").arg("-n").arg(&part));
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
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

fn ramkey(args: &[&str], editor: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ramkey"));
    cmd.arg("config").args(args);
    if let Some(editor) = editor {
        cmd.env("EDITOR", editor);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn set_on_an_image_changes_only_the_value_and_keeps_prev() {
    let dir = tempfile::tempdir().unwrap();
    let img = stick(dir.path(), FULL, false);
    let target = Target::Disk(img.clone());
    let pairs = ["nic.admin.gateway=192.168.1.254".to_owned()];
    config_cmd::set(&target, &pairs, &Sysfs::host()).unwrap();
    let expected = FULL.replace(GATEWAY_LINE, "gateway = \"192.168.1.254\"   # default route");
    assert_ne!(expected, FULL);
    assert_eq!(mtype(&img, "config.toml").unwrap(), expected, "only the value changed");
    assert_eq!(mtype(&img, "config.toml.prev").unwrap(), FULL);
    assert_eq!(mtype(&img, "config.toml.new"), None);
    fsck(&img, (48 << 20) - OFFSET - (1 << 20));

    // Through the binary: typed values, a nic by tag, several keys at once.
    let out = ramkey(
        &[
            "--image",
            img.to_str().unwrap(),
            "set",
            "hostname=box2",
            "nic.admin.mtu=9000",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hostname = \"box2\"\nnic.admin.mtu = 9000\n");
    let now = mtype(&img, "config.toml").unwrap();
    assert_eq!(
        now,
        expected
            .replace("hostname = \"box1\"", "hostname = \"box2\"")
            .replace("mtu = 1500", "mtu = 9000")
    );
    assert_eq!(mtype(&img, "config.toml.prev").unwrap(), expected);
    fsck(&img, (48 << 20) - OFFSET - (1 << 20));
    let out = ramkey(&["get", "nic.admin.mtu", "--image", img.to_str().unwrap()], None);
    assert_eq!(text(&out.stdout), "9000\n");
    let out = ramkey(&["--image", img.to_str().unwrap(), "show"], None);
    assert_eq!(text(&out.stdout), now);
}

#[test]
fn invalid_sets_are_refused_and_the_image_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let img = stick(dir.path(), FULL, false);
    let before = sha256(&img);
    let image = img.to_str().unwrap();
    for (pair, message) in [
        (
            "nic.admin.gateway=10.9.9.9",
            "gateway 10.9.9.9 is outside 192.168.1.0/24",
        ),
        ("hostname=bad_name!", "hostname \"bad_name!\" is not valid"),
        (
            "nic.storage.ip=dhcp",
            "no [[nic]] with tag \"storage\"; existing: admin, external",
        ),
    ] {
        let out = ramkey(&["--image", image, "set", pair], None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{pair}: {err}");
        assert!(err.contains(message), "{pair}: {err}");
        assert_eq!(sha256(&img), before, "{pair}: the image is byte-identical");
    }
    let out = ramkey(&["--image", image, "set", "hostname=bad_name!"], None);
    assert!(
        text(&out.stderr).contains(&format!("{image}::/config.toml:5:12: hostname")),
        "line and column: {}",
        text(&out.stderr)
    );
    let err = config_cmd::set(&Target::Disk(img.clone()), &["hostname=a.b".into()], &Sysfs::host()).unwrap_err();
    assert!(matches!(err, ConfigCmdError::Edit { .. }), "{err}");
    assert_eq!(sha256(&img), before);
}

#[test]
fn edit_saves_a_valid_result_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let img = stick(dir.path(), FULL, false);
    let image = img.to_str().unwrap();
    let out = ramkey(
        &["--image", image, "edit"],
        Some("sh -c 'sed -i s/box1/box3/ \"$1\"' --"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mtype(&img, "config.toml").unwrap(), FULL.replace("box1", "box3"));
    assert_eq!(mtype(&img, "config.toml.prev").unwrap(), FULL);

    let before = sha256(&img);
    let out = ramkey(
        &["--image", image, "edit"],
        Some("sed -i s/192.168.1.1\\\"/10.9.9.9\\\"/"),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("gateway 10.9.9.9 is outside"), "{err}");
    assert!(err.contains("nothing was saved"), "{err}");
    assert_eq!(sha256(&img), before, "the image is byte-identical");
    let kept = err
        .lines()
        .find_map(|l| l.strip_prefix("your text is kept in "))
        .unwrap();
    assert!(std::fs::read_to_string(kept).unwrap().contains("10.9.9.9"));
    std::fs::remove_file(kept).unwrap();
}

#[test]
fn check_exits_1_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "version = 1\nhostname = \"a.b\"\ntimezone = \"Nowhere\"\n";
    let img = stick(dir.path(), bad, false);
    let out = ramkey(&["check", "--image", img.to_str().unwrap()], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("::/config.toml:2:12:"), "{err}");
    assert!(err.contains("::/config.toml:3:12:"), "{err}");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, FULL).unwrap();
    let out = ramkey(&["check", "--file", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ramkey(&["check"], None);
    assert!(text(&out.stderr).contains("say which config"));
}

#[test]
fn set_on_a_file_uses_atomic_writes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, FULL).unwrap();
    let out = ramkey(&["--file", file.to_str().unwrap(), "unset", "nic.admin.mtu"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        FULL.replace("mtu = 1500\n", "")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.toml.prev")).unwrap(),
        FULL
    );
}

#[test]
fn a_real_usb_img_is_edited_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let platform = dir.path().join("platform");
    std::fs::create_dir(&platform).unwrap();
    for name in ["vmlinuz", "initrd.img", "version", "SHA256SUMS"] {
        std::fs::write(platform.join(name), format!("dummy {name}\n")).unwrap();
    }
    let img = dir.path().join("usb.img");
    let inputs = ramkey_builder::usb::Inputs {
        platform: &platform,
        config: FULL,
        cmdline: "console=ttyS0",
        personalities: &[],
        size_mib: 64,
        epoch: 0,
    };
    let part = ramkey_builder::usb::write(&img, &inputs).unwrap();
    assert_eq!(part.offset, OFFSET);
    let out = ramkey(&["--image", img.to_str().unwrap(), "set", "timezone=UTC"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        mtype(&img, "config.toml").unwrap(),
        FULL.replace("\"Europe/Paris\"", "\"UTC\"")
    );
    assert_eq!(mtype(&img, "platform/a/vmlinuz").unwrap(), "dummy vmlinuz\n");
    fsck(&img, part.size);
}

#[test]
fn import_smartos_reports_what_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let smartos = dir.path().join("config");
    std::fs::write(
        &smartos,
        "# SmartOS\nhostname=hn1\nadmin_nic=0:c:29:a1:b2:c3\nadmin_ip=10.99.99.7\n\
         admin_netmask=255.255.255.0\ncoal=true\ndns_resolvers=8.8.8.8,8.8.4.4\n",
    )
    .unwrap();
    let out = ramkey(&["import-smartos", smartos.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    assert!(
        toml.contains("hostname = \"hn1\"") && toml.contains("ip = \"10.99.99.7/24\""),
        "{toml}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:6: not carried over: coal", smartos.display())),
        "{err}"
    );
    let dest = dir.path().join("config.toml");
    let out = ramkey(
        &[
            "import-smartos",
            smartos.to_str().unwrap(),
            "--out",
            dest.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), toml);
    // No hostname: invalid; the conversion is printed for the user to finish.
    std::fs::write(&smartos, "admin_nic=0:c:29:a1:b2:c3\nadmin_ip=dhcp\n").unwrap();
    let out = ramkey(&["import-smartos", smartos.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("ip = \"dhcp\""));
    assert!(text(&out.stderr).contains("hostname"), "{}", text(&out.stderr));
}

// --- as root, with loop devices -----------------------------------------------------------

/// A loop device with partitions over a file; unmounted and detached on drop.
struct Loop {
    dev: String,
    mount: Option<PathBuf>,
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
fn edits_a_stick_and_refuses_a_mounted_one_as_root() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "this test needs root (loop devices); run `sudo cargo test -p ramkey-builder --test config_cmd`"
    );
    let dir = tempfile::tempdir().unwrap();
    let img = stick(dir.path(), FULL, true);
    let out = tool(Command::new("losetup").args(["--find", "--show"]).arg(&img));
    let lo = Loop {
        dev: text(&out).trim().to_owned(),
        mount: None,
    };
    let out = ramkey(&["--device", &lo.dev, "set", "hostname=onstick"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ramkey(&["--device", &lo.dev, "get", "hostname"], None);
    assert_eq!(text(&out.stdout), "onstick\n");
    // A mounted disk is refused before anything is opened for writing. This machine's
    // kernel neither mounts vfat nor scans loop partitions: the mounted disk is ext4.
    let backing = dir.path().join("ext4.disk");
    File::create(&backing).unwrap().set_len(8 << 20).unwrap();
    tool(Command::new("mkfs.ext4").arg("-q").arg(&backing));
    let out = tool(Command::new("losetup").args(["--find", "--show"]).arg(&backing));
    let mut mounted = Loop {
        dev: text(&out).trim().to_owned(),
        mount: None,
    };
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    tool(Command::new("mount").arg(&mounted.dev).arg(&mnt));
    mounted.mount = Some(mnt.clone());
    let out = ramkey(&["--device", &mounted.dev, "set", "hostname=again"], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("is mounted ({} on {})", mounted.dev, mnt.display())),
        "{err}"
    );
    assert!(err.contains("ramkeyctl config"), "{err}");
    drop(mounted);
    let out = ramkey(&["--device", &lo.dev, "get", "hostname"], None);
    assert_eq!(text(&out.stdout), "onstick\n");
    fsck(&img, (48 << 20) - OFFSET - (1 << 20) - (4 << 20));
}

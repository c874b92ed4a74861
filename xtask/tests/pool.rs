//! Boot tests of the pool under QEMU (TCG): created on a blank virtio disk, found again on
//! the next boot, disks with data left byte-identical (also a partition whose table was
//! wiped), an unclean shutdown recovered, the diskless mode, and a btrfs mirror missing a
//! disk (read-only unless `[pool] allow_degraded = true`, then scrubbed when it is back).
//! The stick's config is edited with the builder's `config set`; what the pool holds
//! afterwards is read with `debugfs` on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ramkey_builder::config_cmd::{self, Target};
use ramkey_builder::flash::sysfs::Sysfs;
use ramkey_builder::run::{Boot, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(240);
const SHUTDOWN: Duration = Duration::from_secs(60);
const GIB: u64 = 1 << 30;

/// A stick copy named `name` with `pairs` set in its config.
fn stick(name: &str, pairs: &[&str]) -> PathBuf {
    let image = artifacts::usb_copy(name).unwrap();
    if !pairs.is_empty() {
        let pairs: Vec<String> = pairs.iter().map(|p| (*p).to_owned()).collect();
        config_cmd::set(&Target::Disk(image.clone()), &pairs, &Sysfs::host()).unwrap();
    }
    image
}

/// A fresh path for a pool disk image (removed if left from an earlier run).
fn disk_path(name: &str) -> PathBuf {
    let dir = artifacts::target_dir().join("ramkey/run");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.pool.img"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Boots the stick with `pool` attached (and `extra` QEMU arguments).
fn boot(name: &str, image: &Path, pool: Option<&Path>, extra: &[String]) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb {
        image: image.to_owned(),
    });
    opts.pool = pool.map(Path::to_owned);
    opts.pool_size = GIB;
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    let mut spec = Spec::run(name, &opts).unwrap();
    spec.args.extend(extra.iter().cloned());
    Machine::start(&spec).unwrap()
}

/// The complete console line that contains `start` and `end` (`expect` also returns a line
/// still arriving: then the rest is waited for).
fn full(vm: &mut Machine, start: &str, end: &str) -> String {
    let (_, line) = vm.expect(start, BOOT).unwrap();
    if line.contains(end) {
        return line;
    }
    loop {
        let (_, line) = vm.expect(end, BOOT).unwrap();
        if line.contains(start) {
            return line;
        }
    }
}

/// `ms` from a line like `... in 123 ms` or `... after 12 ms`.
fn millis(line: &str) -> u64 {
    let before = line.rsplit_once(" ms").map_or(line, |(b, _)| b);
    before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Powers off through ACPI and checks that /var, /opt and then /pool were unmounted.
fn power_off(vm: &mut Machine, with_pool: bool) {
    vm.monitor("system_powerdown").unwrap();
    if with_pool {
        // Whole lines: `ok (busy, remounted read-only, detached)` is a lazy detach, not a clean unmount.
        vm.expect_line("ramkey: unmount /opt: ok", SHUTDOWN).unwrap();
        vm.expect_line("ramkey: unmount /var: ok", SHUTDOWN).unwrap();
        vm.expect_line("ramkey: unmount /pool: ok", SHUTDOWN).unwrap();
    }
    vm.expect_line("ramkey: unmount /usbkey: ok", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

/// `debugfs -R 'ls -l DIR' IMG` on the host.
fn debugfs_ls(image: &Path, dir: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", &format!("ls -l {dir}")])
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs) on the host");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pool disk was unmounted cleanly: the superblock says `clean` and a forced,
/// read-only `e2fsck` finds nothing to fix.
fn assert_clean_ext4(disk: &Path) {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(disk)
        .output()
        .expect("dumpe2fs (e2fsprogs)");
    let header = String::from_utf8_lossy(&out.stdout);
    let state = header
        .lines()
        .find(|l| l.starts_with("Filesystem state:"))
        .unwrap_or_default();
    assert!(state.ends_with(" clean"), "{}: {state:?}", disk.display());
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(disk)
        .output()
        .expect("e2fsck");
    assert!(
        fsck.status.success(),
        "e2fsck -fn {}: {}{}",
        disk.display(),
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}

/// The profiles of a btrfs filesystem's chunks (`DATA|RAID1`, ...), read on the host from
/// one of its disks.
fn btrfs_profiles(disk: &Path) -> Vec<String> {
    let out = Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", "chunk"])
        .arg(disk)
        .output()
        .expect("btrfs (btrfs-progs) on the host");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut profiles: Vec<String> = text
        .split("type ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|t| t.contains('|') || t.chars().all(|c| c.is_ascii_uppercase()))
        .map(str::to_owned)
        .collect();
    profiles.sort();
    profiles.dedup();
    profiles
}

fn history_files(listing: &str) -> usize {
    listing.lines().filter(|l| l.trim_end().ends_with(".toml")).count()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `disks` first: each pair is checked as it is set, and `create` names one of `disks`.
const CREATE: &[&str] = &[
    "pool.disks=[\"virtio-ramkey-pool\"]",
    "pool.create=\"virtio-ramkey-pool\"",
];

#[test]
fn blank_disk_is_created_then_found_on_the_next_boot() {
    let image = stick("pool-create", CREATE);
    let disk = disk_path("pool-create");
    let mut vm = boot("pool-create", &image, Some(&disk), &[]);
    let line = full(&mut vm, "ramkey: pool: created ext4 ramkey-pool on /dev/vd", " ms");
    eprintln!("created a 1 GiB pool in {} ms: {line}", millis(&line));
    vm.expect("ramkey: pool: config saved as config-history/", BOOT)
        .unwrap();
    let state = full(&mut vm, "ramkey: pool: ext4 on /dev/vd", ", created this boot");
    assert!(
        state.contains("(virtio-ramkey-pool), ") && state.contains(" free of "),
        "{state}"
    );
    vm.expect_running(BOOT).unwrap();
    power_off(&mut vm, true);
    assert_eq!(history_files(&debugfs_ls(&disk, "/config-history")), 1);

    assert_clean_ext4(&disk);

    let mut vm = boot("pool-create", &image, Some(&disk), &[]);
    vm.forbid(&["ramkey: pool: created", "not unmounted cleanly"]).unwrap();
    let line = full(&mut vm, "ramkey: pool: found ramkey-pool (ext4) on /dev/vd", " ms");
    eprintln!("found the pool {} ms into the pool step: {line}", millis(&line));
    let line = full(&mut vm, "ramkey: pool: mounted /dev/vd", "after the pool step began");
    eprintln!("mounted {} ms into the pool step", millis(&line));
    full(&mut vm, "ramkey: pool: config saved as config-history/", "(2 entries)");
    vm.expect_running(BOOT).unwrap();
    power_off(&mut vm, true);
    assert_clean_ext4(&disk);
    let listing = debugfs_ls(&disk, "/config-history");
    assert_eq!(history_files(&listing), 2, "{listing}");
    let var = debugfs_ls(&disk, "/var");
    assert!(var.contains("log"), "/var on the pool: {var}");
}

/// Boots with `disk` holding data and `[pool] create` naming it: nothing may change.
fn left_alone(name: &str, disk: &Path, said: &str) {
    let image = stick(name, CREATE);
    let before = sha256(disk);
    let mut vm = boot(name, &image, Some(disk), &[]);
    let line = full(&mut vm, "ramkey: pool: /dev/vd", "or remove it from [pool] disks");
    assert!(
        line.contains(said) && line.contains("): not touching it; wipe it yourself with wipefs -a /dev/vd"),
        "{line}"
    );
    vm.expect("ramkey: pool: none found: DISKLESS", BOOT).unwrap();
    vm.expect_running(BOOT).unwrap();
    power_off(&mut vm, false);
    assert_eq!(sha256(disk), before, "{name}: the disk changed");
}

#[test]
fn a_foreign_ext4_filesystem_is_left_alone() {
    let disk = disk_path("pool-foreign-ext4");
    std::fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "data"])
        .arg(&disk)
        .status();
    assert!(status.expect("mkfs.ext4 on the host").success());
    left_alone(
        "pool-foreign-ext4",
        &disk,
        "holds an ext4 filesystem labelled \"data\" (found at offset 1024)",
    );
}

#[test]
fn a_partitioned_disk_is_left_alone() {
    let disk = disk_path("pool-foreign-mbr");
    let mut mbr = vec![0u8; 512];
    // One Linux partition from sector 2048, 16 MiB.
    mbr[0x1BE + 4] = 0x83;
    mbr[0x1BE + 8..0x1BE + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[0x1BE + 12..0x1BE + 16].copy_from_slice(&32768u32.to_le_bytes());
    mbr[510..].copy_from_slice(&[0x55, 0xAA]);
    std::fs::write(&disk, &mbr).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    left_alone(
        "pool-foreign-mbr",
        &disk,
        "holds an MBR partition table (found at offset 446)",
    );
}

/// A disk that had a GPT with an ext4 partition at 1 MiB, whose first MiB (the protective
/// MBR and the table) was then zeroed: blkid and wipefs, which probe the disk's start, see
/// nothing; PID 1's probe of the common partition starts must, and leave it byte-identical.
#[test]
fn a_partition_past_a_wiped_table_is_left_alone() {
    use std::os::unix::fs::FileExt;
    let name = "pool-wiped-table";
    let disk = disk_path(name);
    std::fs::File::create(&disk).unwrap().set_len(GIB).unwrap();
    // The partition a GPT's first one would be: from sector 2048 to 1 MiB before the end.
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "data", "-E", "offset=1048576"])
        .arg(&disk)
        .arg("1022M")
        .status();
    assert!(status.expect("mkfs.ext4 on the host").success());
    let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    file.write_all_at(&vec![0u8; 1 << 20], 0).unwrap();
    file.sync_all().unwrap();
    drop(file);
    // What the host's util-linux says, where it has it: nothing (blkid -p exits 2).
    if let Ok(out) = Command::new("blkid").args(["-p", "-o", "export"]).arg(&disk).output() {
        assert_eq!(
            out.status.code(),
            Some(2),
            "blkid -p: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let image = stick(name, CREATE);
    let before = sha256(&disk);
    let mut vm = boot(name, &image, Some(&disk), &[]);
    vm.forbid(&["ramkey: pool: running mke2fs", "ramkey: pool: created"])
        .unwrap();
    let line = full(&mut vm, "ramkey: pool: /dev/vd", "or remove it from [pool] disks");
    assert!(
        line.contains(
            " (virtio-ramkey-pool) holds an ext4 filesystem labelled \"data\" in a partition starting at 1 MiB \
             (found at offset 1049600): not touching it; wipefs does not see it: zero the disk's first 3 MiB \
             yourself with dd if=/dev/zero of=/dev/vd"
        ),
        "{line}"
    );
    vm.expect("ramkey: pool: none found: DISKLESS", BOOT).unwrap();
    vm.expect_running(BOOT).unwrap();
    power_off(&mut vm, false);
    assert_eq!(sha256(&disk), before, "{name}: the disk changed");
}

#[test]
fn a_power_cut_is_recovered_on_the_next_boot() {
    let image = stick("pool-powercut", CREATE);
    let disk = disk_path("pool-powercut");
    let mut vm = boot("pool-powercut", &image, Some(&disk), &[]);
    vm.expect("ramkey: pool: created ext4", BOOT).unwrap();
    vm.expect("ramkey: pool: config saved as config-history/", BOOT)
        .unwrap();
    vm.expect_running(BOOT).unwrap();
    // A hard power cut: QEMU is killed, the guest unmounts and flushes nothing (see
    // `Machine::pull_the_plug` for what this does and does not simulate).
    vm.pull_the_plug().unwrap();

    let mut vm = boot("pool-powercut", &image, Some(&disk), &[]);
    vm.expect("ramkey: pool: found ramkey-pool (ext4)", BOOT).unwrap();
    full(
        &mut vm,
        "ramkey: pool: /dev/vd",
        "was not unmounted cleanly; ext4 replays its journal",
    );
    full(&mut vm, "ramkey: pool: config saved as config-history/", "(2 entries)");
    full(
        &mut vm,
        "ramkey: pool: ext4 on /dev/vd",
        "recovered from an unclean shutdown",
    );
    vm.expect_running(BOOT).unwrap();
    power_off(&mut vm, true);
    assert_eq!(history_files(&debugfs_ls(&disk, "/config-history")), 2);
}

#[test]
fn no_second_disk_is_diskless() {
    let image = stick("pool-diskless", &[]);
    let mut vm = boot("pool-diskless", &image, None, &[]);
    vm.expect(
        "ramkey: pool: none found: DISKLESS — data lives in RAM and is lost at power-off",
        BOOT,
    )
    .unwrap();
    vm.forbid(&["unmount /pool"]).unwrap();
    vm.expect_running(BOOT).unwrap();
    power_off(&mut vm, false);
}

/// A one-shot service printing on the console what the box says of its pool
/// (`ramkeyctl status`), how `/pool` is mounted (`pool-mount: DEV TYPE OPTIONS`), whether the
/// degraded record is there, and the scrub's status once it is no longer running.
const POOL_PROBE: &str = r#"name = "pool-probe"
restart = "never"
argv = ["/bin/sh", "-c", """
ramkeyctl status >/dev/console 2>&1
while read -r dev mnt fs opts rest; do
  [ "$mnt" = /pool ] && echo "pool-mount: $dev $fs $opts" >/dev/console
done </proc/mounts
if [ -e /pool/.ramkey/degraded ]; then echo "pool-record: present"; else echo "pool-record: absent"; fi >/dev/console
n=0
while [ $n -lt 120 ]; do
  s=$(btrfs scrub status /pool 2>&1)
  case "$s" in *running*) sleep 1; n=$((n+1));; *) break;; esac
done
echo "pool-scrub:" $s >/dev/console
"""]
"#;

/// Powers off a box whose pool is mounted read-only: no /var or /opt from it.
fn power_off_read_only(vm: &mut Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect_line("ramkey: unmount /pool: ok", SHUTDOWN).unwrap();
    vm.expect_line("ramkey: unmount /usbkey: ok", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

/// A two-disk btrfs mirror is created, then booted with its second disk missing: without
/// `allow_degraded` it is mounted read-only after the mirror wait and the box is otherwise
/// diskless (nothing on the disk changes); with `[pool] allow_degraded = true` it runs
/// degraded read-write and records it; with both disks again a scrub starts. Four boots.
#[test]
fn a_btrfs_mirror_missing_a_disk_is_read_only_unless_allowed() {
    let name = "pool-mirror";
    let image = stick(
        name,
        &[
            "pool.filesystem=\"btrfs\"",
            "pool.disks=[\"virtio-ramkey-pool\"]",
            "pool.mirror=[\"virtio-ramkey-mirror\"]",
            "pool.create=[\"virtio-ramkey-pool\", \"virtio-ramkey-mirror\"]",
        ],
    );
    let probe = artifacts::target_dir().join("ramkey/run/pool-probe.toml");
    std::fs::write(&probe, POOL_PROBE).unwrap();
    artifacts::put_on_stick(&image, &[(probe.as_path(), "::/services.d/pool-probe.toml")]).unwrap();
    let (disk, mirror) = (disk_path(name), disk_path("pool-mirror-2"));
    std::fs::File::create(&mirror).unwrap().set_len(GIB).unwrap();
    let second = [
        "-drive".to_owned(),
        format!("if=none,id=mirror,format=raw,file={}", mirror.display()),
        "-device".to_owned(),
        "virtio-blk-pci,drive=mirror,serial=ramkey-mirror".to_owned(),
    ];

    // 1. Both disks: the mirror is created.
    let mut vm = boot(name, &image, Some(&disk), &second);
    let line = full(&mut vm, "ramkey: pool: created btrfs ramkey-pool on /dev/vd", " ms");
    eprintln!(
        "created a btrfs mirror of two 1 GiB disks in {} ms: {line}",
        millis(&line)
    );
    vm.expect("ramkey: pool: btrfs on /dev/vd", BOOT).unwrap();
    vm.expect_running(BOOT).unwrap();
    power_off(&mut vm, true);
    // A mirror in fact: every chunk, data, metadata and system, is RAID1 on both disks.
    for disk in [&disk, &mirror] {
        let profiles = btrfs_profiles(disk);
        assert_eq!(
            profiles,
            ["DATA|RAID1", "METADATA|RAID1", "SYSTEM|RAID1"],
            "{}",
            disk.display()
        );
    }

    // 2. The second disk missing, no allow_degraded: waited for, then read-only.
    let before = sha256(&disk);
    let mut vm = boot(name, &image, Some(&disk), &[]);
    vm.forbid(&[
        "ramkey: pool: config saved",
        "allow_degraded = true: mounting it degraded, read-write",
        "ramkey: unmount /var",
    ])
    .unwrap();
    full(
        &mut vm,
        "ramkey: pool: the btrfs ramkey-pool has 1 of its 2 disks here;",
        "waiting up to 15 s for the others",
    );
    let line = full(
        &mut vm,
        "ramkey: warning: pool: btrfs mirror DEGRADED: 1 of 2 disks (present: devid 1 on /dev/vd",
        " ms",
    );
    assert!(
        line.contains("; missing: virtio-ramkey-mirror (named in [pool] mirror)), after waiting "),
        "{line}"
    );
    assert!(millis(&line) >= 15_000, "waited only {} ms: {line}", millis(&line));
    full(
        &mut vm,
        "ramkey: error: pool: read-only: a disk of the mirror is missing; put it back, or set [pool] \
         allow_degraded = true to run without it",
        "zones, /var and /opt are in RAM this boot",
    );
    vm.expect("ramkey: pool: mounted /dev/vd", BOOT).unwrap();
    vm.expect("ramkey: pool: DISKLESS but for reading:", BOOT).unwrap();
    // The error line above is the point: not `expect_running`, which forbids any.
    vm.expect("ramkey: ready in ", BOOT).unwrap();
    // `ramkeyctl status`'s pool line (the pool step's own came before `ready`).
    let status = full(&mut vm, "btrfs on /dev/vd", "to run without it");
    assert!(
        !status.contains("ramkey: pool:")
            && status.contains(", READ-ONLY, DEGRADED: 1 of 2 disks; zones, /var and /opt are in RAM"),
        "{status}"
    );
    let (_, mount) = vm.expect("pool-mount: /dev/vd", BOOT).unwrap();
    assert!(mount.contains(" btrfs ro,") && mount.contains("degraded"), "{mount}");
    vm.expect("pool-record: absent", BOOT).unwrap();
    power_off_read_only(&mut vm);
    assert_eq!(sha256(&disk), before, "a read-only boot wrote to the disk");

    // 3. Still missing, allow_degraded = true: degraded read-write, recorded.
    config_cmd::set(
        &Target::Disk(image.clone()),
        &["pool.allow_degraded=true".to_owned()],
        &Sysfs::host(),
    )
    .unwrap();
    let mut vm = boot(name, &image, Some(&disk), &[]);
    vm.forbid(&["ramkey: pool: DISKLESS", "READ-ONLY"]).unwrap();
    full(
        &mut vm,
        "ramkey: warning: pool: btrfs mirror DEGRADED: 1 of 2 disks (present: devid 1 on /dev/vd",
        " ms",
    );
    full(
        &mut vm,
        "ramkey: warning: pool: [pool] allow_degraded = true: mounting it degraded, read-write:",
        "a scrub starts at the next boot with every disk",
    );
    full(
        &mut vm,
        "ramkey: pool: mounted /dev/vd",
        "at /pool degraded, read-write",
    );
    vm.expect(
        "ramkey: pool: recorded in /pool/.ramkey/degraded that the mirror runs degraded",
        BOOT,
    )
    .unwrap();
    vm.expect_running(BOOT).unwrap();
    let status = full(&mut vm, "btrfs on /dev/vd", "until the missing disk is back");
    assert!(
        !status.contains("ramkey: pool:")
            && status.contains(", DEGRADED: 1 of 2 disks, read-write ([pool] allow_degraded = true)"),
        "{status}"
    );
    let (_, mount) = vm.expect("pool-mount: /dev/vd", BOOT).unwrap();
    assert!(mount.contains(" btrfs rw,") && mount.contains("degraded"), "{mount}");
    vm.expect("pool-record: present", BOOT).unwrap();
    power_off(&mut vm, true);

    // 4. Both disks again: mounted whole, the scrub starts, the record goes.
    let mut vm = boot(name, &image, Some(&disk), &second);
    vm.forbid(&["DEGRADED", "READ-ONLY"]).unwrap();
    let line = full(
        &mut vm,
        "ramkey: pool: all 2 disks of the btrfs mirror are back after it ran degraded since ",
        "btrfs scrub status /pool shows how far it is",
    );
    assert!(
        line.contains(": started btrfs scrub start /pool in the background (scrub started on /pool"),
        "{line}"
    );
    vm.expect_running(BOOT).unwrap();
    vm.expect("pool-record: absent", BOOT).unwrap();
    // btrfs-progs 6.2 may say "finished", or "no stats available" once the scrub is over;
    // either way with its error summary. What the box wrote while degraded (e.g. the
    // platform's /var folders copied to the pool) left stale copies on the returning disk:
    // the scrub corrects them ("csum=3 Corrected: 3"); none may stay uncorrectable.
    let (_, scrub) = vm.expect("pool-scrub:", BOOT).unwrap();
    let repaired = scrub.contains("Corrected:") && scrub.contains("Uncorrectable: 0 Unverified: 0");
    assert!(scrub.contains("Error summary: no errors found") || repaired, "{scrub}");
    power_off(&mut vm, true);
}

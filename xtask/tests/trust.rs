//! Boot tests of the trust from the stick to the running bytes (QEMU, TCG), on a box with a
//! pool and three zones of the `web` personality. A first boot brings them up (each image
//! kept on the pool as its last good one); between the boots the config is edited offline
//! and the bytes of one kept image are changed on the pool disk. The second boot refuses
//! the changed image (the zone stays down, nothing runs those bytes), another personality
//! in a zone (it runs its last good image instead) and an older version than the zone ran
//! (the same).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ramkey_builder::config_cmd::{self, Target};
use ramkey_builder::flash::sysfs::Sysfs;
use ramkey_builder::run::{Boot, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(300);
const SHUTDOWN: Duration = Duration::from_secs(120);

/// What no console line of these boots contains (they refuse images on purpose, so `error:`
/// lines are expected).
const ALIVE: &[&str] = &[
    "Kernel panic",
    "ramkey: error: PANIC",
    "RECOVERY MODE",
    "services: not started",
];

/// The box: three zones of `web`, on 2.0.0, 1.0.0 and 3.0.0.
fn config(trusted: &str) -> String {
    let mut text = format!(
        "version = 1\nhostname = \"trustbox\"\n\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"10.0.2.15/24\"\n\
         gateway = \"10.0.2.2\"\n\n[images]\ntrusted_keys = [\"{trusted}\"]\n"
    );
    for (zone, version, ip) in [("web", "2.0.0", 16), ("site", "1.0.0", 17), ("old", "3.0.0", 18)] {
        text.push_str(&format!(
            "\n[[personality]]\nname = \"{zone}\"\nimage = \"personalities/web-{version}.rkimg\"\nnic = \"admin\"\n\
             ip = \"10.0.2.{ip}/24\"\nmemory = \"128M\"\n"
        ));
    }
    text
}

fn as_version(image: &Path, version: &str, dest: &Path) {
    artifacts::as_version(image, version, dest).unwrap();
}

fn boot(name: &str, image: &Path, pool: &Path) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.pool = Some(pool.into());
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    Machine::start(&Spec::run(name, &opts).unwrap()).unwrap()
}

fn power_off(mut vm: Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect_line("ramkey: unmount /pool: ok", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

fn debugfs(disk: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(disk)
        .output()
        .expect("debugfs (e2fsprogs)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Flips one byte of `file` (a path in the ext4 filesystem on `disk`) at `offset`, in place:
/// the file's own block on the disk, found with debugfs, as a disk that went bad or a hand
/// on the pool would change it.
fn flip_byte_in_place(disk: &Path, file: &str, offset: u64) {
    let stats = debugfs(disk, "stats");
    let block_size: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no block size in {stats}"));
    let bmap = debugfs(disk, &format!("bmap {file} {}", offset / block_size));
    let block: u64 = bmap.trim().parse().unwrap_or_else(|_| panic!("bmap {file}: {bmap}"));
    assert!(block > 0, "{file} has no block at {offset}");
    let at = block * block_size + offset % block_size;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(disk).unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut byte).unwrap();
    byte[0] ^= 0x55;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&byte).unwrap();
    f.sync_all().unwrap();
}

/// Prints `ramkeyctl personality list` on the console once two zones are online.
const LISTER: &str = r#"name = "lister"
restart = "never"
argv = ["/bin/sh", "-c", '''
until [ "$(ramkeyctl personality list 2>/dev/null | grep -c ' online ')" -ge 2 ]; do sleep 1; done
ramkeyctl personality list 2>&1 | sed 's/^/trust: list /' >/dev/console
echo "trust: done" >/dev/console
''']
"#;

#[test]
fn a_changed_foreign_or_older_image_is_refused_at_boot_and_only_the_last_good_one_runs() {
    let name = "trust";
    let web = artifacts::personality("web").unwrap();
    let kv = artifacts::personality("kv").unwrap();
    let (_, trusted) = artifacts::test_key().unwrap();
    let work = artifacts::target_dir().join("ramkey/run").join(format!("{name}.files"));
    std::fs::create_dir_all(&work).unwrap();
    let (web2, web3) = (work.join("web-2.0.0.rkimg"), work.join("web-3.0.0.rkimg"));
    as_version(&web, "2.0.0", &web2);
    as_version(&web, "3.0.0", &web3);
    let config_file = work.join("config.toml");
    std::fs::write(&config_file, config(&trusted)).unwrap();
    let image = artifacts::usb_copy(name).unwrap();
    artifacts::put_on_stick(
        &image,
        &[
            (web.as_path(), "::/personalities/web-1.0.0.rkimg"),
            (&web2, "::/personalities/web-2.0.0.rkimg"),
            (&web3, "::/personalities/web-3.0.0.rkimg"),
            (&kv, "::/personalities/kv-1.0.0.rkimg"),
            (&config_file, "::/config.toml"),
        ],
    )
    .unwrap();
    let disk = artifacts::empty_pool(name).unwrap();

    // First boot: each zone comes up and its image is kept on the pool as the last good one.
    let mut vm = boot(name, &image, &disk);
    vm.forbid(ALIVE).unwrap();
    vm.forbid(&["refused"]).unwrap();
    let mut up = Vec::new();
    for _ in 0..3 {
        let (_, line) = vm.expect("came up; kept as the last good image", BOOT).unwrap();
        up.push(line.split_once("ramkey: ").map_or(line.clone(), |(_, l)| l.to_string()));
    }
    up.sort();
    assert_eq!(
        up,
        [
            "zone old: web 3.0.0 came up; kept as the last good image",
            "zone site: web 1.0.0 came up; kept as the last good image",
            "zone web: web 2.0.0 came up; kept as the last good image",
        ]
    );
    power_off(vm);

    // Offline: the bytes of web's kept image change on the pool, and the config points web at
    // that copy, site at another personality and old at an older web.
    let sha = ramkey_image::read::open(&web).unwrap().manifest.payload.sha256;
    let kept = format!("web-2.0.0-{}.rkimg", &sha[..16]);
    let listing = debugfs(&disk, "ls -l /images");
    assert!(listing.contains(&kept), "{kept} in {listing}");
    flip_byte_in_place(&disk, &format!("/images/{kept}"), 4096 * 3);
    let pairs = [
        format!("personality.web.image=\"{kept}\""),
        "personality.site.image=\"personalities/kv-1.0.0.rkimg\"".to_string(),
        "personality.old.image=\"personalities/web-2.0.0.rkimg\"".to_string(),
    ];
    config_cmd::set(&Target::Disk(image.clone()), &pairs, &Sysfs::host()).unwrap();
    let lister = work.join("lister.toml");
    std::fs::write(&lister, LISTER).unwrap();
    artifacts::put_on_stick(&image, &[(&lister, "::/services.d/lister.toml")]).unwrap();

    let mut vm = boot(&format!("{name}-again"), &image, &disk);
    vm.forbid(ALIVE).unwrap();
    // Nothing runs the changed bytes, nor kv in site's zone, nor 2.0.0 in old's.
    vm.forbid(&[
        "zone web: image web",
        "zone web: web 2.0.0 came up",
        "zone site: image kv",
        "zone old: image web 2.0.0",
    ])
    .unwrap();
    let (_, changed) = vm.expect("ramkey: error: zone web: refused: ", BOOT).unwrap();
    assert!(
        changed.contains(&format!("/pool/images/{kept}: payload sha256 mismatch"))
            && changed.contains("the payload is corrupt or was altered"),
        "{changed}"
    );
    let (_, foreign) = vm.expect("ramkey: error: zone site: refused: ", BOOT).unwrap();
    assert!(
        foreign.contains(
            "/usbkey/personalities/kv-1.0.0.rkimg is image kv 1.0.0, and zone site last came up on web 1.0.0 \
             (/pool/instances/site/good.json)"
        ) && foreign.contains("give it a [[personality]] of another name")
            && foreign.contains("remove /pool/instances/site"),
        "{foreign}"
    );
    vm.expect(
        &format!(
            "ramkey: zone site: running its last good image web 1.0.0 (/pool/images/web-1.0.0-{}",
            &sha[..16]
        ),
        BOOT,
    )
    .unwrap();
    let (_, older) = vm.expect("ramkey: error: zone old: refused: ", BOOT).unwrap();
    assert!(
        older.contains(
            "/usbkey/personalities/web-2.0.0.rkimg is web 2.0.0, older than 3.0.0, which zone old has run \
             (/pool/instances/old/highest-version): a downgrade"
        ) && older.contains("set allow_downgrade = true in [[personality]] old"),
        "{older}"
    );
    vm.expect(
        &format!(
            "ramkey: zone old: running its last good image web 3.0.0 (/pool/images/web-3.0.0-{}",
            &sha[..16]
        ),
        BOOT,
    )
    .unwrap();
    // The two fallbacks come up; web is listed as refused, with PID 1's reason.
    let mut listed = Vec::new();
    loop {
        let (_, line) = vm.expect("trust: ", BOOT).unwrap();
        if line.ends_with("trust: done") {
            break;
        }
        listed.push(line);
    }
    let row = |zone: &str| listed.iter().find(|l| l.contains(&format!("trust: list {zone} ")));
    assert!(
        row("site").is_some_and(|l| l.contains("web 1.0.0") && l.contains(" online ")),
        "{listed:#?}"
    );
    assert!(
        row("old").is_some_and(|l| l.contains("web 3.0.0") && l.contains(" online ")),
        "{listed:#?}"
    );
    assert!(
        row("web").is_some_and(|l| l.contains(" refused ") && l.contains("payload sha256 mismatch")),
        "{listed:#?}"
    );
    power_off(vm);
    // The records are where they were: the floor did not move.
    assert_eq!(debugfs(&disk, "cat /instances/old/highest-version").trim(), "3.0.0");
}

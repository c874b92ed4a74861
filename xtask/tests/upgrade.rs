//! Boot tests of platform upgrades (QEMU, TCG), on the built `usb.img` under SeaBIOS and
//! under OVMF, with `web` in a zone and a pool: bundles refused with their reasons (an
//! untrusted signer, a truncated file, an older version) leave both slots as they were;
//! power cut while a slot is written, the box boots the committed slot and says the other
//! is incomplete; an upgrade over SSH or HTTP boots the new slot once and commits it when
//! `web` serves again; a bundle whose kernel panics before PID 1 (its initrd is no
//! initramfs) and one whose zones cannot start (a module they need is broken) fall back to
//! the committed slot with no human input, and `ramkeyctl platform status` says why. Each
//! reboot of the box is a new QEMU process on the same disks (`-no-reboot`), as a reset.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use ramkey_builder::push::{self, PushArgs};
use ramkey_builder::run::{Boot, Firmware, Forward, RunOptions};
use xtask::http::{Served, wait_ok};
use xtask::qemu::{Machine, Spec};
use xtask::ssh::{self, client, free_port, keygen, text};
use xtask::{artifacts, bundles};

const BOOT: Duration = Duration::from_secs(300);
const SHUTDOWN: Duration = Duration::from_secs(120);

/// One box: its stick, pool, forwards and the operator's key.
struct Rack {
    name: String,
    firmware: Firmware,
    image: PathBuf,
    disk: PathBuf,
    ssh_port: u16,
    web_port: u16,
    keys: tempfile::TempDir,
    boots: u32,
}

impl Rack {
    fn new(name: &str, firmware: Firmware) -> Rack {
        let keys = tempfile::tempdir().unwrap();
        let key = keygen(keys.path(), "operator");
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let image = artifacts::usb_copy(name).unwrap();
        let config = keys.path().join("config.toml");
        std::fs::write(&config, ssh::zone_box_config("upbox", public.trim(), &[])).unwrap();
        let web = artifacts::personality("web").unwrap();
        artifacts::put_on_stick(
            &image,
            &[
                (web.as_path(), "::/personalities/web-1.0.0.rkimg"),
                (&config, "::/config.toml"),
            ],
        )
        .unwrap();
        Rack {
            name: name.into(),
            firmware,
            image,
            disk: artifacts::empty_pool(name).unwrap(),
            ssh_port: free_port(),
            web_port: free_port(),
            keys,
            boots: 0,
        }
    }

    fn key(&self) -> PathBuf {
        self.keys.path().join("operator")
    }

    fn known_hosts(&self) -> PathBuf {
        self.keys.path().join("known_hosts")
    }

    /// Powers the box on (again): a new QEMU on the same stick, pool and firmware state.
    fn boot(&mut self) -> Machine {
        self.boots += 1;
        let mut opts = RunOptions::new(Boot::Usb {
            image: self.image.clone(),
        });
        opts.firmware = self.firmware;
        opts.pool = Some(self.disk.clone());
        opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(&self.name));
        opts.forwards = vec![
            Forward {
                host: self.ssh_port,
                guest: 22,
                address: Some("10.0.2.15".parse().unwrap()),
            },
            Forward {
                host: self.web_port,
                guest: 80,
                address: Some("10.0.2.16".parse().unwrap()),
            },
        ];
        let name = format!("{}-{}", self.name, self.boots);
        let mut vm = Machine::start(&Spec::run(&name, &opts).unwrap()).unwrap();
        vm.forbid(&["ramkey: error: PANIC", "RECOVERY MODE"]).unwrap();
        vm
    }

    /// The first boot of the stick as flashed, checked as a person would: the loader's
    /// command line (a box whose kernel panics reboots rather than hang), the stick found
    /// and mounted read-only, its config read, slot a committed, `web` serving.
    fn first_boot(&mut self) -> Machine {
        let mut vm = self.boot();
        let (_, cmdline) = vm.expect("Kernel command line: ", BOOT).unwrap();
        assert!(
            cmdline.contains(" panic=10") && cmdline.contains("ramkey.slot=a"),
            "{cmdline}"
        );
        let (_, line) = vm.expect("ramkey: usbkey: RAMKEY on /dev/sd", BOOT).unwrap();
        assert!(
            line.contains("(usb") && line.ends_with("mounted read-only at /usbkey"),
            "{line}"
        );
        vm.expect("ramkey: config: /usbkey/config.toml: ok (hostname upbox)", BOOT)
            .unwrap();
        vm.expect("ramkey: platform: booted slot a (0.1.0), committed", BOOT)
            .unwrap();
        self.web_serves();
        // sshd is a service of its own: serving web says nothing about it (it starts from
        // the packed platform, libcrypto and all, and can come up after web under TCG).
        self.run("true");
        vm
    }

    fn ssh(&self, command: &str) -> Output {
        ssh::ssh(self.ssh_port, &self.key(), &self.known_hosts(), "accept-new", command)
    }

    /// `command` over SSH once sshd answers; its output, which must be a success.
    fn run(&self, command: &str) -> String {
        ssh::ssh_when_up(self.ssh_port, &self.key(), &self.known_hosts(), command, BOOT)
    }

    /// `web` answers through its forward.
    fn web_serves(&self) {
        let page = wait_ok(self.web_port, "/", BOOT).unwrap();
        assert!(page.contains("HTTP/1."), "{page}");
    }

    /// `ramkeyctl platform upgrade SOURCE --reboot` over SSH; what it printed. The box then
    /// reboots (QEMU exits).
    fn upgrade_and_reboot(&self, vm: &mut Machine, source: &str) -> String {
        let out = self.ssh(&format!("ramkeyctl platform upgrade {source} --reboot"));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(said.contains("\nrebooting into slot "), "{}", text(&out));
        eprintln!("{}: upgrade {source}:\n{said}", self.name);
        vm.expect("ramkey: reboot", SHUTDOWN).unwrap();
        vm.wait_exit(SHUTDOWN).unwrap();
        said
    }

    /// `ramkey push BOX BUNDLE --reboot`, as an operator runs it; what it printed.
    fn push(&self, bundle: &Path) -> String {
        let args = PushArgs {
            target: "127.0.0.1".into(),
            images: vec![bundle.to_owned()],
            swap: None,
            reboot: true,
            port: Some(self.ssh_port),
            identity: Some(self.key()),
            options: ssh::push_options(&self.known_hosts()),
        };
        push::push(&args).unwrap_or_else(|e| panic!("ramkey push: {e}"))
    }

    /// The `platform status` row of `slot`.
    fn slot_row(&self, slot: char) -> (String, String) {
        let status = self.run("ramkeyctl platform status");
        let row = status
            .lines()
            .find(|l| l.starts_with(&format!("{slot} ")))
            .unwrap_or_else(|| panic!("no slot {slot} in:\n{status}"))
            .to_owned();
        (row, status)
    }
}

/// The seconds in `slot b written: 26.3 MB in 4.1 s`.
fn write_seconds(said: &str) -> String {
    said.lines()
        .find(|l| l.contains(" written: "))
        .unwrap_or_else(|| panic!("no `written` line in:\n{said}"))
        .to_owned()
}

/// Serves the test's bundles over HTTP; returns the server and the URL of each file.
fn serve(dir: &Path) -> (Served, impl Fn(&str) -> String) {
    let server = Served::start(dir);
    let port = server.port();
    (server, move |file: &str| format!("http://10.0.2.2:{port}/{file}"))
}

fn copy_into(dir: &Path, bundle: &Path, name: &str) {
    std::fs::copy(bundle, dir.join(name)).unwrap();
}

#[test]
fn under_seabios_an_upgrade_commits_and_a_panic_a_dead_zone_and_a_power_cut_fall_back() {
    let mut rack = Rack::new("upgrade-bios", Firmware::Bios);
    let www = tempfile::tempdir().unwrap();
    let v2 = bundles::platform_bundle("bios-0.2.0", "0.2.0").unwrap();
    copy_into(www.path(), &v2, "v2.rkup");
    let panics = bundles::panicking_platform_bundle("bios-0.3.0-panics", "0.3.0").unwrap();
    copy_into(www.path(), &panics, "panics.rkup");
    let no_zones = bundles::platform_bundle_without_module("bios-0.4.0-no-macvlan", "0.4.0", "macvlan").unwrap();
    copy_into(www.path(), &no_zones, "no-zones.rkup");
    let stranger = ramkey_image::SigningKey::from_bytes(&[0x5a; 32]);
    let untrusted = bundles::platform_bundle_signed_by("bios-0.2.0-stranger", "0.2.0", &stranger).unwrap();
    copy_into(www.path(), &untrusted, "untrusted.rkup");
    let older = bundles::platform_bundle("bios-0.0.9", "0.0.9").unwrap();
    copy_into(www.path(), &older, "older.rkup");
    let bytes = std::fs::read(&v2).unwrap();
    std::fs::write(www.path().join("truncated.rkup"), &bytes[..bytes.len() / 2]).unwrap();
    let (_server, url) = serve(www.path());

    // Boot 1: platform 0.1.0, as flashed; refusals.
    let mut vm = rack.first_boot();
    for (file, reason) in [
        ("untrusted.rkup", "which is not trusted"),
        ("truncated.rkup", "truncated platform bundle"),
        ("older.rkup", "older than the running platform 0.1.0"),
    ] {
        let out = rack.ssh(&format!("ramkeyctl platform upgrade {}", url(file)));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            err.contains(reason) && err.contains("both slots are as they were"),
            "{file}: {err}"
        );
    }
    let (row, status) = rack.slot_row('b');
    assert!(row.ends_with("empty") && !status.contains("last trial"), "{status}");

    // Power cut while slot b is written: half the bundle on the standard input, then the plug.
    let mut upload = client("ssh", rack.ssh_port, &rack.key(), &rack.known_hosts())
        .args(["-o", "StrictHostKeyChecking=yes", "root@127.0.0.1"])
        .arg("ramkeyctl platform upgrade -")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(upload.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert!(said.starts_with("writing the standard input into slot b"), "{said}");
    let mut stdin = upload.stdin.take().unwrap();
    stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(8));
    vm.pull_the_plug().unwrap();
    drop(stdin);
    let _ = upload.kill();
    let _ = upload.wait();

    // Boot 2: still 0.1.0; slot b is incomplete. The upgrade to 0.2.0, over HTTP.
    let mut vm = rack.boot();
    vm.expect("ramkey: platform: booted slot a (0.1.0), committed", BOOT)
        .unwrap();
    let (row, status) = rack.slot_row('b');
    assert!(
        row.contains("incomplete: a write was cut off (platform/b.new"),
        "{status}"
    );
    rack.web_serves();
    let said = rack.upgrade_and_reboot(&mut vm, &url("v2.rkup"));
    assert!(said.contains("verified platform 0.2.0"), "{said}");
    let written = write_seconds(&said);

    // Boot 3: the trial of slot b, committed once `web` serves again.
    let mut vm = rack.boot();
    vm.expect("ramkey: platform: booted slot b (0.2.0), on trial", BOOT)
        .unwrap();
    let (committed_at, line) = vm.expect("ramkey: platform: slot b (0.2.0) committed: ", BOOT).unwrap();
    assert!(line.contains("web"), "{line}");
    rack.web_serves();
    let (row, status) = rack.slot_row('b');
    assert!(
        row.starts_with("b     0.2.0") && row.contains("committed; booted"),
        "{status}"
    );
    assert!(status.contains("last trial: slot b (0.2.0) committed"), "{status}");

    // A kernel that panics before PID 1: the loader's boot-once runs it once, then slot b.
    rack.upgrade_and_reboot(&mut vm, &url("panics.rkup"));
    let mut vm = rack.boot();
    let (_, cmdline) = vm.expect("Kernel command line: ", BOOT).unwrap();
    assert!(cmdline.contains("ramkey.slot=a"), "{cmdline}");
    let (panic_at, _) = vm.expect("Kernel panic - not syncing", BOOT).unwrap();
    vm.wait_exit(SHUTDOWN).unwrap();
    let mut vm = rack.boot();
    let (back_at, line) = vm
        .expect("ramkey: error: platform: the trial of slot a (0.3.0) failed: ", BOOT)
        .unwrap();
    assert!(
        line.contains("never reached Ramkey's init") && line.ends_with("running slot b (0.2.0)"),
        "{line}"
    );
    rack.web_serves();
    let (_, status) = rack.slot_row('a');
    assert!(status.contains("last trial: slot a (0.3.0) FAILED"), "{status}");

    // A platform whose zones cannot start: its init rejects it and reboots into slot b.
    rack.upgrade_and_reboot(&mut vm, &url("no-zones.rkup"));
    let mut vm = rack.boot();
    vm.expect("ramkey: platform: booted slot a (0.4.0), on trial", BOOT)
        .unwrap();
    let (rejected_at, line) = vm
        .expect("ramkey: error: platform: slot a (0.4.0) rejected: ", BOOT)
        .unwrap();
    assert!(
        line.contains("web is") && line.ends_with("rebooting into slot b"),
        "{line}"
    );
    vm.wait_exit(SHUTDOWN).unwrap();
    let mut vm = rack.boot();
    vm.expect("ramkey: platform: booted slot b (0.2.0), committed", BOOT)
        .unwrap();
    rack.web_serves();
    let (row, status) = rack.slot_row('b');
    assert!(row.contains("committed; booted"), "{status}");
    assert!(
        status.contains("last trial: slot a (0.4.0) FAILED") && status.contains("rejected by its init"),
        "{status}"
    );
    eprintln!(
        "upgrade-bios: {written}; trial committed {:.1} s after QEMU started; panic {:.1} s, back on slot b \
         {:.1} s after the next start; zone trial rejected {:.1} s after QEMU started",
        committed_at.as_secs_f64(),
        panic_at.as_secs_f64(),
        back_at.as_secs_f64(),
        rejected_at.as_secs_f64()
    );
    vm.monitor("system_powerdown").unwrap();
    vm.expect_line("ramkey: unmount /usbkey: ok", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

#[test]
fn under_ovmf_a_pushed_upgrade_commits_and_a_panicking_kernel_falls_back() {
    let mut rack = Rack::new("upgrade-uefi", Firmware::Uefi);
    let v2 = bundles::platform_bundle("uefi-0.2.0", "0.2.0").unwrap();
    let panics = bundles::panicking_platform_bundle("uefi-0.3.0-panics", "0.3.0").unwrap();

    // Boot 1: 0.1.0 as flashed; `ramkey push BOX platform.rkup --reboot`.
    let mut vm = rack.first_boot();
    rack.run("true");
    let said = rack.push(&v2);
    eprintln!("ramkey push said:\n{said}");
    assert!(
        said.contains("verified platform 0.2.0") && said.contains("rebooting into slot b"),
        "{said}"
    );
    let written = write_seconds(&said);
    vm.wait_exit(SHUTDOWN).unwrap();

    // Boot 2: systemd-boot takes the trial entry; committed once `web` serves.
    let mut vm = rack.boot();
    vm.expect("ramkey: platform: booted slot b (0.2.0), on trial", BOOT)
        .unwrap();
    let (committed_at, _) = vm.expect("ramkey: platform: slot b (0.2.0) committed: ", BOOT).unwrap();
    rack.web_serves();
    let (row, status) = rack.slot_row('b');
    assert!(row.contains("committed; booted"), "{status}");

    // A panicking kernel: systemd-boot spends its one try, then boots slot b.
    rack.push(&panics);
    vm.wait_exit(SHUTDOWN).unwrap();
    let mut vm = rack.boot();
    let (_, cmdline) = vm.expect("Kernel command line: ", BOOT).unwrap();
    assert!(cmdline.contains("ramkey.slot=a"), "{cmdline}");
    vm.expect("Kernel panic - not syncing", BOOT).unwrap();
    vm.wait_exit(SHUTDOWN).unwrap();
    let mut vm = rack.boot();
    let (back_at, line) = vm
        .expect("ramkey: error: platform: the trial of slot a (0.3.0) failed: ", BOOT)
        .unwrap();
    assert!(line.ends_with("running slot b (0.2.0)"), "{line}");
    rack.web_serves();
    let (row, status) = rack.slot_row('b');
    assert!(row.contains("committed; booted"), "{status}");
    assert!(status.contains("last trial: slot a (0.3.0) FAILED"), "{status}");
    eprintln!(
        "upgrade-uefi: {written}; trial committed {:.1} s after QEMU started; back on slot b {:.1} s after the \
         start that followed the panic",
        committed_at.as_secs_f64(),
        back_at.as_secs_f64()
    );
    vm.monitor("system_powerdown").unwrap();
    vm.expect_line("ramkey: unmount /usbkey: ok", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

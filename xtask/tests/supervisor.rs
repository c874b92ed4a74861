//! Boot tests of the service supervisor in PID 1 (QEMU, TCG): services put on the stick's
//! `/services.d/` with mtools, the console login, `ramkeyctl` typed on the serial console,
//! and the orderly stop at power-off. Measurements are printed, not asserted.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ramkey_builder::run::{Boot, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec, TROUBLE};

const BOOT: Duration = Duration::from_secs(240);
const STEP: Duration = Duration::from_secs(60);
const SHUTDOWN: Duration = Duration::from_secs(90);
/// Writes `files` (name, text) to the stick's `/services.d/`, and `config` as `/config.toml`.
fn stick(name: &str, config: &str, services: &[(&str, String)]) -> std::path::PathBuf {
    let image = artifacts::usb_copy(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, text: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut files = vec![(write("config.toml", config), "::/config.toml".to_string())];
    for (service, text) in services {
        let file = format!("{service}.toml");
        files.push((write(&file, text), format!("::/services.d/{file}")));
    }
    let files: Vec<(&std::path::Path, &str)> = files.iter().map(|(f, d)| (f.as_path(), d.as_str())).collect();
    artifacts::put_on_stick(&image, &files).unwrap();
    image
}

fn base_config() -> String {
    std::fs::read_to_string(artifacts::workspace_root().join("appliance/config.toml")).unwrap()
}

fn service(name: &str, argv: &[&str], extra: &str) -> (String, String) {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    let text = format!("name = \"{name}\"\nargv = [{}]\n{extra}", argv.join(", "));
    (name.to_string(), text)
}

fn boot(name: &str, image: &Path) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    Machine::start(&Spec::run(name, &opts).unwrap()).unwrap()
}

/// Types a command and waits for a line with `needle` in its output.
fn run(vm: &mut Machine, command: &str, needle: &str) -> String {
    vm.send(&format!("{command}\n")).unwrap();
    vm.expect(needle, STEP).unwrap().1
}

fn login(vm: &mut Machine) {
    vm.login("root", "secret", STEP).unwrap();
    assert_eq!(number(vm, "echo $((6*7))", "answer"), 42);
    // The platform ships `ramkeyctl` as a link to PID 1's binary.
    run(vm, "echo link=$(readlink /usr/bin/ramkeyctl)", "link=/init");
}

/// The number after `key=` in `command`'s output. The typed line reads `key""=`, so only
/// the output has `key=`; an end marker makes sure the whole line has arrived.
fn number(vm: &mut Machine, command: &str, key: &str) -> u64 {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    vm.send(&format!("echo \"{key}\"\"=$({command})\"; echo \"@@\"\"end{n}.\"\n"))
        .unwrap();
    vm.expect(&format!("@@end{n}."), STEP).unwrap();
    let needle = format!("{key}=");
    let line = vm
        .lines()
        .iter()
        .rev()
        .map(|(_, l)| l)
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {needle} line\n{}", vm.tail()))
        .clone();
    let at = line.rfind(&needle).unwrap() + needle.len();
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn services_crash_restart_clear_stop_in_order_and_log_in() {
    let config = format!(
        "{}\n[admin]\npassword_hash = \"{}\"\n",
        base_config(),
        artifacts::password_hash("secret").unwrap()
    );
    let mut services = vec![
        service(
            "crasher",
            &["/bin/sh", "-c", "echo crash-$$; exit 3"],
            "restart = \"on-failure\"\nbackoff = { initial_ms = 300, max_ms = 600 }\n\
             budget = { max_restarts = 2, window_secs = 60 }\n",
        ),
        service("dependent", &["/bin/sleep", "1000"], "requires = [\"crasher\"]\n"),
        service(
            "sleeper",
            &[
                "/bin/sh",
                "-c",
                "echo $$ > /run/sleeper.pid; echo run-$$; exec /bin/sleep 1000",
            ],
            "restart = \"always\"\nbackoff = { initial_ms = 500, max_ms = 1000 }\n",
        ),
        service("cycle-a", &["/bin/sleep", "1000"], "requires = [\"cycle-b\"]\n"),
        service("cycle-b", &["/bin/sleep", "1000"], "requires = [\"cycle-a\"]\n"),
        service("base", &["/bin/sleep", "1000"], ""),
        service("mid", &["/bin/sleep", "1000"], "requires = [\"base\"]\n"),
        service("top", &["/bin/sleep", "1000"], "requires = [\"mid\"]\n"),
    ];
    // As a user, with caps: the cgroup's limits and the process's uid are read back.
    services.push(service(
        "capped",
        &["/bin/sleep", "1000"],
        "user = \"nobody\"\ncaps = { memory_mib = 32, cpu_percent = 50, pids = 16 }\n",
    ));
    // About 6 MB of output: rotated at 1 MiB, 3 old files kept.
    services.push(service(
        "chatty",
        &[
            "/bin/sh",
            "-c",
            "yes rotation-padding-0123456789 | head -n 100000; exec /bin/sleep 1000",
        ],
        "",
    ));
    // Ignores SIGTERM: killed when its stop timeout runs out.
    services.push(service(
        "stubborn",
        &["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
        "stop_timeout_secs = 2\n",
    ));
    // 20 services in all with the console login.
    for i in 0..8 {
        services.push(service(&format!("idle-{i:02}"), &["/bin/sleep", "1000"], ""));
    }
    let services: Vec<(&str, String)> = services.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let image = stick("supervisor", &config, &services);
    let mut vm = boot("supervisor", &image);
    vm.forbid(TROUBLE).unwrap();
    vm.expect(
        "ramkey: services: cycle: cycle-a -> cycle-b -> cycle-a (cycle-a, cycle-b in maintenance)",
        BOOT,
    )
    .unwrap();
    vm.expect(" started, 2 in maintenance", BOOT).unwrap();
    vm.expect("ramkey: timeline step=services ", BOOT).unwrap();
    vm.expect("ramkey: ready", BOOT).unwrap();
    // Settled as soon as everything started (none has a readiness check, so running is
    // online): what is down, and why.
    let (_, settled) = vm.expect("ramkey: warning: services: degraded (", BOOT).unwrap();
    for part in [
        "(18 online; ",
        "cycle-a maintenance: cycle: cycle-a -> cycle-b -> cycle-a",
        "cycle-b maintenance: cycle: ",
    ] {
        assert!(settled.contains(part), "{part:?} not in {settled}");
    }
    login(&mut vm);

    // The crasher used its budget: maintenance with the reason; its dependent waits.
    let explained = run(
        &mut vm,
        "until ramkeyctl svcs -x | grep -q 'crasher (m''aintenance)'; do sleep 1; done; ramkeyctl svcs -x",
        "crasher (maintenance)",
    );
    assert!(explained.starts_with("crasher"), "{explained}");
    vm.expect("Reason: restarted 2 times in 60 s; last exit: status 3", STEP)
        .unwrap();
    vm.expect("Log: /var/log/ramkey/crasher.log", STEP).unwrap();
    // `svcs` lists in definition order: the stick's files by name.
    vm.expect("cycle-a (maintenance)", STEP).unwrap();
    vm.expect("dependent (offline)", STEP).unwrap();
    let backoffs = number(&mut vm, "ramkeyctl svcs --json | grep -c 'restarting in 0'", "backoffs");
    assert!(backoffs >= 1, "no backoff in the crasher's history");
    assert_eq!(number(&mut vm, "ramkeyctl log crasher | grep -c crash-", "crashes"), 3);
    run(&mut vm, "ramkeyctl svcadm clear crasher", "crasher: cleared");
    let crashes = number(&mut vm, "sleep 3; ramkeyctl log crasher | grep -c crash-", "crashes");
    assert_eq!(crashes, 6, "clear gives a fresh budget of 2 restarts");
    run(&mut vm, "ramkeyctl svcs | grep dependent", "offline");

    // A killed service comes back within its backoff; its log has both runs.
    run(
        &mut vm,
        "kill $(cat /run/sleeper.pid); sleep 2; echo kil\"\"led",
        "killed",
    );
    assert_eq!(number(&mut vm, "ramkeyctl log sleeper | grep -c run-", "runs"), 2);
    run(&mut vm, "ramkeyctl svcs | grep sleeper", "online");
    run(
        &mut vm,
        "ramkeyctl status | grep pool",
        "pool:      diskless: data is lost at power-off",
    );

    // Measurements.
    let rss = number(&mut vm, "grep VmRSS /proc/1/status | tr -dc 0-9", "rss_kib");
    let online_ms = number(
        &mut vm,
        "ramkeyctl svcs --json | grep -A2 '\"state\": \"online\"' | grep since_ms | tr -dc '0-9\\n' | sort -n | tail -1",
        "online_ms",
    );
    let step = vm
        .lines()
        .iter()
        .find(|(_, l)| l.contains("timeline step=services "))
        .map(|(_, l)| l.clone())
        .unwrap();
    let step_start = step
        .split("start=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap();
    eprintln!(
        "supervisor: PID 1 VmRSS {rss} KiB with 20 services; last service online {} ms after the \
         services step began ({step})",
        online_ms as f64 - step_start * 1000.0
    );

    // A service as `nobody` with its caps in its cgroup.
    let cg = "/sys/fs/cgroup/ramkey/capped";
    let uid = number(
        &mut vm,
        &format!("awk '/^Uid:/{{print $2}}' /proc/$(head -1 {cg}/cgroup.procs)/status"),
        "uid",
    );
    assert_eq!(uid, 65534, "capped runs as nobody");
    assert_eq!(number(&mut vm, &format!("cat {cg}/memory.max"), "memory_max"), 32 << 20);
    assert_eq!(number(&mut vm, &format!("cat {cg}/pids.max"), "pids_max"), 16);
    assert_eq!(
        number(&mut vm, &format!("cut -d' ' -f1 {cg}/cpu.max"), "cpu_quota"),
        50_000
    );
    // Log rotation: NAME.log and three old files, none over 1 MiB.
    let logs = number(&mut vm, "ls /var/log/ramkey | grep -c '^chatty[.]log'", "chatty_logs");
    assert_eq!(logs, 4, "chatty.log and .1 .. .3");
    let biggest = number(
        &mut vm,
        "wc -c /var/log/ramkey/chatty.log* | grep -v total | sort -n | tail -1 | awk '{print $1}'",
        "biggest",
    );
    assert!(biggest <= 1 << 20, "a log file of {biggest} bytes");
    // A device plugged in after boot: PID 1 loads its driver from the uevent.
    vm.monitor("device_add usb-kbd,bus=xhci.0,id=late").unwrap();
    let (_, loaded) = vm.expect("modules loaded for usb:v0627p0001", STEP).unwrap();
    assert!(loaded.contains("ramkey: uevent: "), "{loaded}");

    // The usbkey config on the box: checked, and a bad value refused with its reason.
    run(
        &mut vm,
        "ramkeyctl config check",
        "/usbkey/config.toml: ok (hostname ramkey)",
    );
    run(
        &mut vm,
        "ramkeyctl config set hostname=Bad_Name 2>&1; echo \"rc\"\"=$?\"",
        "only letters, digits and '-' are allowed",
    );
    run(&mut vm, "", "rc=1");

    // `ramkeyctl reboot`: dependents stop before what they require, then the reboot (which
    // ends QEMU, started with -no-reboot).
    vm.send("ramkeyctl reboot\n").unwrap();
    vm.expect("ramkey: shutdown requested: ramkeyctl reboot", SHUTDOWN)
        .unwrap();
    vm.expect("ramkey: stopping top", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopped top in ", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopping mid", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopped mid in ", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopping base", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopped base in ", SHUTDOWN).unwrap();
    vm.expect_line("ramkey: reboot", SHUTDOWN).unwrap();
    // The service that ignored SIGTERM was killed when its 2 s ran out.
    let stubborn = vm
        .lines()
        .iter()
        .find_map(|(_, l)| {
            l.split_once("ramkey: stopped stubborn in ")
                .map(|(_, ms)| ms.to_string())
        })
        .unwrap_or_else(|| panic!("no stop line for stubborn\n{}", vm.tail()));
    let ms: u64 = stubborn.trim_end_matches(" ms").parse().unwrap();
    assert!((2000..10_000).contains(&ms), "stubborn stopped in {ms} ms");
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

#[test]
fn without_a_password_hash_the_console_says_how_to_set_one() {
    let image = stick("supervisor-nologin", &base_config(), &[]);
    let mut vm = boot("supervisor-nologin", &image);
    let (_, line) = vm
        .expect("set admin.password_hash=\"$(openssl passwd -6)\"", BOOT)
        .unwrap();
    assert!(
        line.contains("ramkey: console login disabled: no admin.password_hash in config.toml; set one with: "),
        "{line}"
    );
    vm.expect("ramkey: services: 0 started, 0 in maintenance", BOOT)
        .unwrap();
    vm.forbid(&["login:"]).unwrap();
    vm.expect_running(BOOT).unwrap();
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

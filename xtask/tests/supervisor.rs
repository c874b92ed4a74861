//! Boot tests of the service supervisor in PID 1 (QEMU, TCG): services put on the stick's
//! `/services.d/` with mtools, the console login, `ramkeyctl` typed on the serial console,
//! and the orderly stop at power-off. Measurements are printed, not asserted.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ramkey_builder::run::{Boot, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

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
    // Until the platform ships the link, make it here.
    run(
        vm,
        "[ -e /usr/bin/ramkeyctl ] || ln -s /init /usr/bin/ramkeyctl; echo link\"\"ed",
        "linked",
    );
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
    // 20 services in all with the console login.
    for i in 0..11 {
        services.push(service(&format!("idle-{i:02}"), &["/bin/sleep", "1000"], ""));
    }
    let services: Vec<(&str, String)> = services.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let image = stick("supervisor", &config, &services);
    let mut vm = boot("supervisor", &image);

    vm.expect(
        "ramkey: services: cycle: cycle-a -> cycle-b -> cycle-a (cycle-a, cycle-b in maintenance)",
        BOOT,
    )
    .unwrap();
    vm.expect(" started, 2 in maintenance", BOOT).unwrap();
    vm.expect("ramkey: timeline step=services ", BOOT).unwrap();
    vm.expect("ramkey: ready", BOOT).unwrap();
    login(&mut vm);

    // The crasher used its budget: maintenance with the reason; its dependent waits.
    let explained = run(&mut vm, "sleep 3; ramkeyctl svcs -x", "crasher (maintenance)");
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

    // Power button: dependents stop before what they require.
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: shutdown requested: power button", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopping top", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopped top in ", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopping mid", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopped mid in ", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopping base", SHUTDOWN).unwrap();
    vm.expect("ramkey: stopped base in ", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
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
    vm.expect("ramkey: ready", BOOT).unwrap();
    vm.refute("login:").unwrap();
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

//! Boot tests of reaching a running box (QEMU, TCG): SSH with a key from the config through a
//! host forward — `ramkeyctl status` over SSH shows the host key fingerprint the console
//! printed and the client saw, a wrong key and a password are refused, `scp` (SFTP) copies a
//! file, sshd's log is the supervisor's — and the host key survives a reboot (kept on the
//! pool). The host's own OpenSSH client does the talking, as an operator's would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ramkey_builder::config_cmd::{self, Target};
use ramkey_builder::flash::sysfs::Sysfs;
use ramkey_builder::run::{Boot, Forward, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(240);
const SHUTDOWN: Duration = Duration::from_secs(90);
const GIB: u64 = 1 << 30;

/// An ed25519 key pair made with `ssh-keygen` in `dir`; returns the private key's path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client) on the host");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

/// An `ssh`-family command with the options every call shares: no agent, no prompt, the
/// test's own `known_hosts`.
fn client(program: &str, port: u16, key: &Path, known_hosts: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg(if program == "scp" { "-P" } else { "-p" })
        .arg(port.to_string())
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
        ])
        .args(["-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()));
    cmd
}

fn ssh(port: u16, key: &Path, known_hosts: &Path, strict: &str, command: &str) -> Output {
    client("ssh", port, key, known_hosts)
        .arg("-o")
        .arg(format!("StrictHostKeyChecking={strict}"))
        .arg("root@127.0.0.1")
        .arg(command)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `command` over SSH until sshd answers (it starts with the platform's services).
fn ssh_when_up(port: u16, key: &Path, known_hosts: &Path, command: &str) -> String {
    let start = Instant::now();
    loop {
        let out = ssh(port, key, known_hosts, "accept-new", command);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(start.elapsed() < BOOT, "no SSH answer: {}", text(&out));
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The fingerprint in `ramkey: ssh: host key ED25519 SHA256:... (...)`, and the rest.
fn printed_fingerprint(vm: &mut Machine) -> (String, String) {
    let (_, line) = vm.expect("ramkey: ssh: host key ED25519 SHA256:", BOOT).unwrap();
    let rest = line.split("host key ED25519 ").nth(1).unwrap();
    let (fingerprint, origin) = rest.split_once(' ').unwrap();
    (fingerprint.to_owned(), origin.to_owned())
}

fn boot(name: &str, image: &Path, disk: &Path, port: u16) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.pool = Some(disk.to_owned());
    opts.pool_size = GIB;
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    opts.forwards = vec![Forward {
        host: port,
        guest: 22,
        address: None,
    }];
    Machine::start(&Spec::run(name, &opts).unwrap()).unwrap()
}

fn power_off(mut vm: Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn ssh_with_the_configured_key_sees_the_printed_host_key_which_survives_a_reboot() {
    let name = "remote-ssh";
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "operator");
    let stranger = keygen(keys.path(), "stranger");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let known_hosts = keys.path().join("known_hosts");
    let image = artifacts::usb_copy(name).unwrap();
    let hash = artifacts::password_hash("console-secret").unwrap();
    let pairs: Vec<String> = vec![
        format!("admin.authorized_keys=[\"{}\"]", public.trim()),
        format!("admin.password_hash=\"{hash}\""),
        "pool.disks=[\"virtio-ramkey-pool\"]".into(),
        "pool.create=\"virtio-ramkey-pool\"".into(),
    ];
    config_cmd::set(&Target::Disk(image.clone()), &pairs, &Sysfs::host()).unwrap();
    let disk = artifacts::target_dir()
        .join("ramkey/run")
        .join(format!("{name}.pool.img"));
    let _ = std::fs::remove_file(&disk);
    let port = free_port();

    let mut vm = boot(name, &image, &disk, port);
    let (fingerprint, origin) = printed_fingerprint(&mut vm);
    assert_eq!(origin, "(new, saved to /pool/ssh/ssh_host_ed25519_key)");
    vm.expect("ramkey: ssh: port 22 on every platform NIC for 1 key", BOOT)
        .unwrap();
    vm.expect_running(BOOT).unwrap();
    let status = ssh_when_up(port, &key, &known_hosts, "ramkeyctl status");
    let ssh_line = format!("ssh:       port 22 on every platform NIC; host key ED25519 {fingerprint}");
    assert!(status.lines().any(|l| l == ssh_line), "{status}");
    // What the client saw is what the console printed.
    let seen = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&known_hosts)
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
    assert!(seen.contains(&fingerprint) && seen.contains("ED25519"), "{seen}");

    // Only the configured key, and never a password (the console has one).
    let wrong = ssh(port, &stranger, &known_hosts, "yes", "true");
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("Permission denied (publickey)"),
        "{}",
        text(&wrong)
    );
    let password = client("ssh", port, &key, &known_hosts)
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "root@127.0.0.1", "true"])
        .output()
        .unwrap();
    assert!(
        text(&password).contains("Permission denied (publickey)"),
        "a password was offered: {}",
        text(&password)
    );

    // scp (over SFTP, OpenSSH's default since 9.0) both ways.
    let payload = keys.path().join("payload");
    std::fs::write(&payload, "copied over sftp\n").unwrap();
    let copy = client("scp", port, &key, &known_hosts)
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg(&payload)
        .arg("root@127.0.0.1:/tmp/payload")
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", text(&copy));
    let back = ssh(port, &key, &known_hosts, "yes", "cat /tmp/payload");
    assert_eq!(
        String::from_utf8_lossy(&back.stdout),
        "copied over sftp\n",
        "{}",
        text(&back)
    );
    let log = ssh(port, &key, &known_hosts, "yes", "ramkeyctl log -n 50 sshd");
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    assert!(log.contains("Accepted publickey for root"), "sshd's log: {log}");
    power_off(vm);

    // The next boot keeps the key: the client, now strict, connects without a word.
    let mut vm = boot(name, &image, &disk, port);
    let (again, origin) = printed_fingerprint(&mut vm);
    assert_eq!(
        (again.as_str(), origin.as_str()),
        (fingerprint.as_str(), "(kept in /pool/ssh/ssh_host_ed25519_key)")
    );
    vm.expect_running(BOOT).unwrap();
    let start = Instant::now();
    let hostname = loop {
        let out = ssh(port, &key, &known_hosts, "yes", "hostname");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            !text(&out).contains("HOST IDENTIFICATION HAS CHANGED"),
            "{}",
            text(&out)
        );
        assert!(start.elapsed() < BOOT, "{}", text(&out));
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(!hostname.trim().is_empty());
    power_off(vm);
}

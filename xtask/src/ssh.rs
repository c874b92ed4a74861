//! The host's OpenSSH client against a box under test, as an operator runs it: keys made
//! with `ssh-keygen`, no agent, no prompt, the test's own `known_hosts`, through a host
//! port forward to the box's port 22.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// An ed25519 key pair made with `ssh-keygen` in `dir`; returns the private key's path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
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
pub fn client(program: &str, port: u16, key: &Path, known_hosts: &Path) -> Command {
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

/// `ssh root@127.0.0.1 COMMAND` through `port`, with `StrictHostKeyChecking=strict`.
pub fn ssh(port: u16, key: &Path, known_hosts: &Path, strict: &str, command: &str) -> Output {
    client("ssh", port, key, known_hosts)
        .arg("-o")
        .arg(format!("StrictHostKeyChecking={strict}"))
        .arg("root@127.0.0.1")
        .arg(command)
        .output()
        .unwrap()
}

/// An output's status, stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `command` over SSH until sshd answers (it starts with the platform's services) or
/// `within` passed; its standard output.
pub fn ssh_when_up(port: u16, key: &Path, known_hosts: &Path, command: &str, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = ssh(port, key, known_hosts, "accept-new", command);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(start.elapsed() < within, "no SSH answer: {}", text(&out));
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A free loopback port (closed again before QEMU binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The usbkey config of a box reached over SSH that runs `web` in a zone: the box at
/// 10.0.2.15 and `web` at 10.0.2.16 on QEMU's user network, a pool on the disk `ramkey run`
/// attaches, the test key trusted, root's key `public_key`, image `sources`.
pub fn zone_box_config(hostname: &str, public_key: &str, sources: &[String]) -> String {
    let (_, trusted) = crate::artifacts::test_key().unwrap();
    let sources: Vec<String> = sources.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "version = 1\nhostname = \"{hostname}\"\n\n[admin]\nauthorized_keys = [\"{public_key}\"]\n\n\
         [[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\n\n\
         [pool]\ndisks = [\"virtio-ramkey-pool\"]\ncreate = \"virtio-ramkey-pool\"\n\n\
         [images]\ntrusted_keys = [\"{trusted}\"]\nsources = [{}]\n\n\
         [[personality]]\nname = \"web\"\nimage = \"personalities/web-1.0.0.rkimg\"\nnic = \"admin\"\n\
         ip = \"10.0.2.16/24\"\nmemory = \"128M\"\n",
        sources.join(", ")
    )
}

/// The `-o` options `ramkey push` passes to `ssh` in the tests: the [`client`]'s, with the
/// host key checked strictly against `known_hosts`.
pub fn push_options(known_hosts: &Path) -> Vec<String> {
    [
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "StrictHostKeyChecking=yes",
        "LogLevel=ERROR",
    ]
    .iter()
    .map(|o| (*o).to_owned())
    .chain([format!("UserKnownHostsFile={}", known_hosts.display())])
    .collect()
}

//! Tests of the SSH server's plan: when it is off and what it says, the configuration it
//! writes, the addresses it listens on.

use super::*;
use crate::storage::mounts::fake::RecordingMounter;
use ramkey_config::Config;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g admin@laptop";

fn admin(extra: &str) -> Admin {
    let text = format!(
        "version = 1\nhostname = \"b\"\n[admin]\nauthorized_keys = [\"{KEY}\"]\n{extra}\n\
         [[nic]]\ntag = \"admin\"\nname = \"eth0\"\n[[nic]]\ntag = \"lan\"\nname = \"eth1\"\n"
    );
    Config::parse(&text, "config.toml").unwrap().admin
}

fn addresses(tag: &str) -> Vec<Ipv4Addr> {
    match tag {
        "admin" => vec![Ipv4Addr::new(10, 0, 2, 15)],
        _ => Vec::new(),
    }
}

/// A root with `sshd` in it, and a pool directory.
fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
    fs::write(dir.path().join(PROGRAM), "").unwrap();
    fs::create_dir(dir.path().join("pool")).unwrap();
    dir
}

fn run(root: &Path, admin: Option<&Admin>) -> Ssh {
    let pool = root.join("pool");
    let mut mounter = RecordingMounter::default();
    prepare(
        root,
        admin,
        || Stores {
            pool: Some(&pool),
            usbkey: None,
            mounter: &mut mounter,
        },
        &addresses,
    )
}

#[test]
fn off_without_a_key_or_without_sshd_and_says_what_to_do() {
    let dir = root();
    let Ssh::Off { message } = run(dir.path(), None) else {
        panic!()
    };
    assert!(
        message.starts_with("no admin.authorized_keys") && message.contains("ramkey config"),
        "{message}"
    );
    let mut none = admin("");
    none.authorized_keys.clear();
    assert!(matches!(run(dir.path(), Some(&none)), Ssh::Off { .. }));
    assert!(!dir.path().join("pool/ssh").exists(), "no host key is made for nothing");
    fs::remove_file(dir.path().join(PROGRAM)).unwrap();
    let Ssh::Off { message } = run(dir.path(), Some(&admin(""))) else {
        panic!()
    };
    assert!(message.contains("add openssh-server to [platform] extras"), "{message}");
}

#[test]
fn on_with_a_key_writes_its_configuration_and_keeps_its_host_key() {
    let dir = root();
    let Ssh::On { spec, summary } = run(dir.path(), Some(&admin(""))) else {
        panic!()
    };
    assert_eq!(
        spec.argv,
        ["/usr/sbin/sshd", "-D", "-e", "-f", "/run/ramkey/ssh/sshd_config"]
    );
    assert_eq!(spec.restart, RestartPolicy::Always);
    let config = fs::read_to_string(dir.path().join("run/ramkey/ssh/sshd_config")).unwrap();
    for line in [
        "Port 22",
        "ListenAddress 0.0.0.0",
        "HostKey /run/ramkey/ssh/ssh_host_ed25519_key",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
        "AllowTcpForwarding no",
        "Subsystem sftp internal-sftp",
    ] {
        assert!(config.lines().any(|l| l == line), "{line:?} missing in:\n{config}");
    }
    assert!(dir.path().join("run/sshd").is_dir());
    let kept = fs::read_to_string(dir.path().join("pool/ssh").join(host_key::KEY_FILE)).unwrap();
    let fingerprint = HostKey::parse(&kept).unwrap().fingerprint();
    assert_eq!(
        summary,
        format!("port 22 on every platform NIC; host key ED25519 {fingerprint}")
    );
    let Ssh::On { summary: again, .. } = run(dir.path(), Some(&admin(""))) else {
        panic!()
    };
    assert_eq!(again, summary, "the same host key at the next boot");
}

#[test]
fn named_nics_listen_on_their_addresses_only() {
    let dir = root();
    let Ssh::On { summary, .. } = run(
        dir.path(),
        Some(&admin("[admin.ssh]\nport = 2222\nnics = [\"admin\", \"lan\"]")),
    ) else {
        panic!()
    };
    assert!(summary.starts_with("port 2222 on admin, lan;"), "{summary}");
    let config = fs::read_to_string(dir.path().join("run/ramkey/ssh/sshd_config")).unwrap();
    let listen: Vec<&str> = config.lines().filter(|l| l.starts_with("ListenAddress")).collect();
    assert_eq!(listen, ["ListenAddress 10.0.2.15"]);
    assert!(config.contains("Port 2222\n"));
    let Ssh::Off { message } = run(dir.path(), Some(&admin("[admin.ssh]\nnics = [\"lan\"]"))) else {
        panic!()
    };
    assert_eq!(message, "admin.ssh.nics names lan, which has no IPv4 address");
}

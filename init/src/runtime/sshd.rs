//! The SSH server: OpenSSH's `sshd` (a platform extra), run by the supervisor as the platform
//! service `sshd` when the config has at least one `admin.authorized_keys` line — keys only,
//! no passwords, root only, no forwarding — on `admin.ssh.port` of the NICs named by
//! `admin.ssh.nics` (every platform NIC when empty: the host's network namespace holds no
//! zone interface). Its configuration is written at each boot from the config; its log goes
//! to stderr, which the supervisor keeps like every service's.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use ramkey_config::Admin;
use ramkey_image::service::{RestartPolicy, ServiceSpec};

use crate::runtime::host_key::{self, HostKey, Origin, Stores};

/// The service's name.
pub const SERVICE: &str = "sshd";
/// The program, under the root.
pub const PROGRAM: &str = "usr/sbin/sshd";
/// Where its configuration and the host key are written at boot, under the root.
pub const RUN_DIR: &str = "run/ramkey/ssh";
/// The privilege separation directory Debian's `sshd` wants (empty, root's, not writable).
const PRIVSEP_DIR: &str = "run/sshd";
/// Where the boot writes root's keys (see `boot::identity`), under the root.
const AUTHORIZED_KEYS: &str = "root/.ssh/authorized_keys";

/// How to give root a key, for the console line when there is none.
const KEY_HINT: &str = "add one with: ramkey config --image usb.img set \
     admin.authorized_keys='[\"ssh-ed25519 AAAA... you@laptop\"]'";

/// What the boot decided about SSH.
#[derive(Debug)]
pub enum Ssh {
    /// `sshd` runs as this service; `summary` is the line for `ramkeyctl status`.
    On {
        /// The service.
        spec: Box<ServiceSpec>,
        /// Port, NICs, host key fingerprint and where it is kept.
        summary: String,
    },
    /// No SSH server, and why (with what to do).
    Off {
        /// The reason.
        message: String,
    },
}

impl Ssh {
    /// The line for `ramkeyctl status`.
    pub fn status(&self) -> String {
        match self {
            Ssh::On { summary, .. } => summary.clone(),
            Ssh::Off { message } => format!("off: {message}"),
        }
    }
}

/// The addresses to listen on: every address when `nics` is empty, else each named NIC's
/// IPv4 addresses (`addresses_of` a tag, the interface's name on the box); an error when
/// none of them has one.
pub fn listen_addresses(
    nics: &[String],
    addresses_of: &dyn Fn(&str) -> Vec<Ipv4Addr>,
) -> Result<Vec<Ipv4Addr>, String> {
    if nics.is_empty() {
        return Ok(vec![Ipv4Addr::UNSPECIFIED]);
    }
    let mut out = Vec::new();
    let mut bare = Vec::new();
    for tag in nics {
        let found = addresses_of(tag);
        if found.is_empty() {
            bare.push(tag.as_str());
        }
        out.extend(found);
    }
    if out.is_empty() {
        return Err(format!(
            "admin.ssh.nics names {}, which {} no IPv4 address",
            bare.join(", "),
            if bare.len() == 1 { "has" } else { "have" }
        ));
    }
    if !bare.is_empty() {
        crate::warn!("ssh: not listening on {}: no IPv4 address", bare.join(", "));
    }
    Ok(out)
}

/// `sshd_config`: keys only, root only, no forwarding of any kind, the sftp subsystem
/// built in.
pub fn config_text(port: u16, listen: &[Ipv4Addr], host_key: &str) -> String {
    let mut text = String::from("# Written at boot by Ramkey's PID 1 from config.toml [admin]; edits here are lost.\n");
    let _ = writeln!(text, "Port {port}\nAddressFamily inet");
    for address in listen {
        let _ = writeln!(text, "ListenAddress {address}");
    }
    let _ = writeln!(text, "HostKey {host_key}");
    let _ = writeln!(text, "AuthorizedKeysFile /{AUTHORIZED_KEYS}");
    text.push_str(
        "PidFile none
UsePAM no
AllowUsers root
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
HostbasedAuthentication no
StrictModes yes
MaxAuthTries 3
LoginGraceTime 30
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
PermitTunnel no
PermitUserEnvironment no
Subsystem sftp internal-sftp
",
    );
    text
}

/// Decides and prepares: without a key or without `sshd` in the platform, off; otherwise
/// the host key (kept, or made and kept through `stores`), the configuration and the
/// privilege separation directory written under `root`, and the service.
pub fn prepare<'s>(
    root: &Path,
    admin: Option<&Admin>,
    stores: impl FnOnce() -> Stores<'s>,
    addresses_of: &dyn Fn(&str) -> Vec<Ipv4Addr>,
) -> Ssh {
    let off = |message: String| Ssh::Off { message };
    let Some(admin) = admin.filter(|a| !a.authorized_keys.is_empty()) else {
        return off(format!("no admin.authorized_keys in config.toml; {KEY_HINT}"));
    };
    if !root.join(PROGRAM).is_file() {
        return off(format!(
            "/{PROGRAM} is not in this platform; add openssh-server to [platform] extras in appliance.toml"
        ));
    }
    let listen = match listen_addresses(&admin.ssh.nics, addresses_of) {
        Ok(listen) => listen,
        Err(e) => return off(e),
    };
    let (key, origin) = match host_key::load_or_make(stores()) {
        Ok(found) => found,
        Err(e) => return off(format!("no host key: {e}")),
    };
    announce(&key, &origin);
    match write_files(root, admin.ssh.port, &listen, &key) {
        Ok(config) => {
            let argv = vec![format!("/{PROGRAM}"), "-D".into(), "-e".into(), "-f".into(), config];
            let mut spec = ServiceSpec::new(SERVICE, argv);
            spec.restart = RestartPolicy::Always;
            let nics = match admin.ssh.nics.as_slice() {
                [] => "every platform NIC".to_owned(),
                tags => tags.join(", "),
            };
            let keys = admin.authorized_keys.len();
            crate::notice!(
                "ssh: port {} on {nics} for {keys} key{}",
                admin.ssh.port,
                if keys == 1 { "" } else { "s" }
            );
            Ssh::On {
                spec: Box::new(spec),
                summary: format!(
                    "port {} on {nics}; host key ED25519 {}",
                    admin.ssh.port,
                    key.fingerprint()
                ),
            }
        }
        Err(e) => off(format!("cannot write /{RUN_DIR}: {e}")),
    }
}

/// The console lines an operator checks on first connect.
fn announce(key: &HostKey, origin: &Origin) {
    crate::notice!("ssh: host key ED25519 {} ({origin})", key.fingerprint());
    if let Origin::ThisBootOnly(_) = origin {
        crate::warn!("ssh: clients will see a new host key after the next boot");
    }
}

/// Writes the host key and `sshd_config` into the run directory and makes the privilege
/// separation directory; returns the configuration's path as `sshd` sees it.
fn write_files(root: &Path, port: u16, listen: &[Ipv4Addr], key: &HostKey) -> std::io::Result<String> {
    let dir = root.join(RUN_DIR);
    host_key::install(key, &dir)?;
    let host_key = format!("/{RUN_DIR}/{}", host_key::KEY_FILE);
    fs::write(dir.join("sshd_config"), config_text(port, listen, &host_key))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root.join(PRIVSEP_DIR))?;
    Ok(format!("/{RUN_DIR}/sshd_config"))
}

/// The IPv4 addresses of the interface `name` (a NIC's tag: the boot renames NICs to their
/// tags) in this network namespace.
pub fn interface_addresses(name: &str) -> Vec<Ipv4Addr> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addresses
        .filter(|a| a.interface_name == name)
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .collect()
}

#[cfg(test)]
#[path = "sshd_tests.rs"]
mod tests;

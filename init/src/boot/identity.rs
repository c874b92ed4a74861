//! The box's identity from the config: host name (`sethostname(2)`, `/etc/hostname`,
//! `/etc/hosts`), time zone (`/etc/timezone`) and root's SSH keys
//! (`/root/.ssh/authorized_keys`, mode 0600).
//!
//! The platform carries no tzdata, so the zone is recorded for services and people, and the
//! console and logs stay in UTC. Every failure is a warning: identity never stops the boot.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ramkey_config::Config;

use crate::net::Hostname;

/// Writes `text` to `path` with `mode`, creating parents (0755) as needed.
fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(text.as_bytes())
}

/// `/etc/hosts` with the host name on 127.0.1.1 (so that the name resolves locally).
pub fn hosts_text(hostname: &str) -> String {
    let mut text = "127.0.0.1\tlocalhost\n::1\t\tlocalhost\n".to_owned();
    if !hostname.is_empty() {
        text.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    text
}

/// Applies the identity under `root`; returns the warnings (also logged).
pub fn apply(root: &Path, config: &Config, net: &mut dyn Hostname) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut warn = |msg: String| {
        crate::warn!("{msg}");
        warnings.push(msg);
    };
    if config.hostname.is_empty() {
        crate::notice!("identity: no hostname in the config; keeping the platform's");
    } else {
        let name = &config.hostname;
        if let Err(e) = net.set_hostname(name) {
            warn(format!("identity: sethostname({name}): {e}"));
        }
        for (file, text) in [("etc/hostname", format!("{name}\n")), ("etc/hosts", hosts_text(name))] {
            if let Err(e) = write_file(&root.join(file), &text, 0o644) {
                warn(format!("identity: cannot write /{file}: {e}"));
            }
        }
        crate::notice!("identity: hostname {name}");
    }
    match write_file(&root.join("etc/timezone"), &format!("{}\n", config.timezone), 0o644) {
        Ok(()) => crate::notice!(
            "identity: timezone {} (in /etc/timezone; the platform has no tzdata, so the console stays in UTC)",
            config.timezone
        ),
        Err(e) => warn(format!("identity: cannot write /etc/timezone: {e}")),
    }
    let keys = &config.admin.authorized_keys;
    let ssh = root.join("root/.ssh");
    let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    let written = DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&ssh)
        .and_then(|()| std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| write_file(&ssh.join("authorized_keys"), &text, 0o600));
    match written {
        Ok(()) => crate::notice!(
            "identity: {} SSH key{} for root in /root/.ssh/authorized_keys",
            keys.len(),
            if keys.len() == 1 { "" } else { "s" }
        ),
        Err(e) => warn(format!("identity: cannot write /root/.ssh/authorized_keys: {e}")),
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::fake::RecordingHostname;

    #[test]
    fn hostname_timezone_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let text = "version = 1\nhostname = \"box1\"\ntimezone = \"Europe/Paris\"\n[admin]\nauthorized_keys = [\n  \
            \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g admin@laptop\",\n]\n";
        let config = Config::parse(text, "config.toml").unwrap();
        let mut net = RecordingHostname::default();
        assert!(apply(dir.path(), &config, &mut net).is_empty());
        assert_eq!(net.0, ["box1"]);
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("etc/hostname"), "box1\n");
        assert!(read("etc/hosts").ends_with("127.0.1.1\tbox1\n"));
        assert_eq!(read("etc/timezone"), "Europe/Paris\n");
        assert!(read("root/.ssh/authorized_keys").starts_with("ssh-ed25519 AAAAC3"));
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
        assert_eq!(mode("root/.ssh"), 0o700);
    }
}

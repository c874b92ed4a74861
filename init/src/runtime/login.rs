//! The console login (busybox `getty` + `login`): the account files from the config's
//! `admin.password_hash`, the active console, and the `console-login` service.
//!
//! Without a usable hash nobody gets a shell: the service is defined but kept disabled, and
//! the console says how to set one.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ramkey_image::service::{RestartPolicy, ServiceSpec};

/// The service's name.
pub const SERVICE: &str = "console-login";

/// How to make a hash busybox can check.
const SET_HINT: &str = "set one with: ramkey config --image usb.img set admin.password_hash=\"$(openssl passwd -6)\"";

/// The account files could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct LoginError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

/// Whether the console offers a login, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// root may log in with this crypt(3) hash.
    Enabled {
        /// The hash for `/etc/shadow`.
        hash: String,
    },
    /// No login; the message says why and what to do.
    Disabled {
        /// The console line (without `ramkey: `).
        message: String,
    },
}

/// Decides from the config's `admin.password_hash`.
pub fn decide(hash: Option<&str>) -> Console {
    let Some(hash) = hash.filter(|h| !h.is_empty()) else {
        return Console::Disabled {
            message: format!("console login disabled: no admin.password_hash in config.toml; {SET_HINT}"),
        };
    };
    if hash.starts_with("$y$") {
        return Console::Disabled {
            message: format!(
                "console login disabled: admin.password_hash is a yescrypt ($y$) hash, which busybox \
                 login cannot check; make a SHA-512 one with `openssl passwd -6` and {SET_HINT}"
            ),
        };
    }
    if ["$1$", "$5$", "$6$"].iter().any(|p| hash.starts_with(p)) {
        Console::Enabled { hash: hash.to_string() }
    } else {
        Console::Disabled {
            message: format!(
                "console login disabled: admin.password_hash is not a $1$, $5$ or $6$ crypt hash; {SET_HINT}"
            ),
        }
    }
}

/// The files written under the root: `etc/passwd`, `etc/group`, `etc/shadow` (0600) and
/// root's home. With no hash, root has no password (`*`: nothing matches it), but the
/// account is not locked (`!`), which would make `sshd` refuse root's keys too.
pub fn write_accounts(root: &Path, hash: Option<&str>) -> Result<(), LoginError> {
    let hash = hash.unwrap_or("*");
    let files: [(&str, String, u32); 3] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                .into(),
            0o644,
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into(), 0o644),
        (
            "etc/shadow",
            format!("root:{hash}:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"),
            0o600,
        ),
    ];
    for (name, text, mode) in files {
        let path = root.join(name);
        let fail = |source| LoginError {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(fail)?;
        }
        // Create with the final mode, so that the hash is never readable by others.
        let tmp = path.with_extension("new");
        fs::write(&tmp, "").map_err(fail)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(fail)?;
        fs::write(&tmp, text).map_err(fail)?;
        fs::rename(&tmp, &path).map_err(fail)?;
    }
    let home = root.join("root");
    fs::create_dir_all(&home).map_err(|source| LoginError {
        path: home.clone(),
        source,
    })?;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).map_err(|source| LoginError { path: home, source })
}

/// The active console's tty: the last name in `<sys>/class/tty/console/active`
/// (`/dev/console` is the last `console=`); `ttyS0` when it cannot be read.
pub fn console_tty(sys_root: &Path) -> String {
    fs::read_to_string(sys_root.join("class/tty/console/active"))
        .ok()
        .and_then(|text| text.split_whitespace().last().map(str::to_string))
        .unwrap_or_else(|| "ttyS0".to_string())
}

/// The `console-login` service: busybox `getty` on `tty`, restarted after every logout.
///
/// getty runs under a shell rather than directly: the supervisor puts each service in its
/// own process group, and a process-group leader cannot `setsid()`, which getty needs to
/// take the tty as its controlling terminal. The shell's child is no leader. A stop reaches
/// the shell by its group and the rest through the service's cgroup.
pub fn service(tty: &str) -> ServiceSpec {
    let script = format!("/sbin/getty -L {tty} 115200 vt100; exit $?");
    let mut spec = ServiceSpec::new(SERVICE, vec!["/bin/sh".into(), "-c".into(), script]);
    spec.restart = RestartPolicy::Always;
    spec.backoff.initial_ms = 200;
    spec.backoff.max_ms = 5_000;
    // A logout is an exit: allow many in the window before giving up.
    spec.budget.max_restarts = 30;
    spec.budget.window_secs = 60;
    spec.stop_timeout_secs = 3;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_busybox_can_check_enable_the_login() {
        let sha512 = "$6$testsalt$abc";
        assert_eq!(
            decide(Some(sha512)),
            Console::Enabled {
                hash: sha512.to_string()
            }
        );
        let none = decide(None);
        let Console::Disabled { message } = none else { panic!() };
        assert!(message.starts_with("console login disabled: no admin.password_hash in config.toml"));
        assert!(message.contains("openssl passwd -6"), "{message}");
        let Console::Disabled { message } = decide(Some("$y$j9T$salt$sum")) else {
            panic!()
        };
        assert!(message.contains("yescrypt"), "{message}");
        assert!(matches!(decide(Some("plain")), Console::Disabled { .. }));
    }

    #[test]
    fn account_files_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        write_accounts(dir.path(), Some("$6$s$h")).unwrap();
        let shadow = dir.path().join("etc/shadow");
        assert!(fs::read_to_string(&shadow).unwrap().starts_with("root:$6$s$h:"));
        assert_eq!(fs::metadata(&shadow).unwrap().permissions().mode() & 0o777, 0o600);
        let passwd = fs::read_to_string(dir.path().join("etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"));
        write_accounts(dir.path(), None).unwrap();
        // No password, yet not locked: a locked root would lose SSH too.
        assert!(fs::read_to_string(&shadow).unwrap().starts_with("root:*:"));
        assert!(passwd.contains("\nsshd:x:100:65534:"));
        assert!(dir.path().join("root").is_dir());
    }

    #[test]
    fn console_is_the_last_active_tty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(console_tty(dir.path()), "ttyS0");
        let active = dir.path().join("class/tty/console");
        fs::create_dir_all(&active).unwrap();
        fs::write(active.join("active"), "tty0 ttyS1\n").unwrap();
        assert_eq!(console_tty(dir.path()), "ttyS1");
        let spec = service("ttyS1");
        assert_eq!(spec.argv[2], "/sbin/getty -L ttyS1 115200 vt100; exit $?");
        assert_eq!(spec.restart, RestartPolicy::Always);
    }
}

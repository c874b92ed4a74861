//! `ramkeyctl config show|get|set|unset|check`: the usbkey's `config.toml` on the running
//! box, edited with `ramkey_config::edit::Document` (comments and layout kept).
//!
//! Writes are refused when the result would be invalid (with every error), remount
//! `/usbkey` read-write only for the moment of the write, and are power-safe
//! (`ramkey_config::atomic::write_config`). Changes take effect at the next boot.

use std::path::PathBuf;

use ramkey_config::atomic::{self, AtomicError};
use ramkey_config::edit::{Document, EditError};
use ramkey_config::{CONFIG_FILE, ConfigErrors};

use crate::storage::mounts::{KernelMounter, Mounter};
use crate::storage::usbkey::MOUNT_POINT;
use crate::storage::usbkey_write::{self, WriteError};

/// The usage text.
pub const USAGE: &str = "usage: ramkeyctl config show | get KEY | set KEY=VALUE... | unset KEY... | check";

/// A `ramkeyctl config` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlConfigError {
    /// Bad arguments.
    #[error("{0}\n{USAGE}")]
    Usage(String),
    /// No usbkey is mounted (a PXE boot, or the stick was not found).
    #[error("no usbkey is mounted at {MOUNT_POINT} (a PXE boot keeps its config at its URL)")]
    NotMounted,
    /// The config could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key or the TOML itself is wrong.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The config (as it is, or as it would be) is invalid.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// `get` of a key that is not set.
    #[error("{key} is not set in {MOUNT_POINT}/{CONFIG_FILE}")]
    NotSet {
        /// The key.
        key: String,
    },
    /// Writing the config failed.
    #[error("cannot write {MOUNT_POINT}/{CONFIG_FILE}: {0}")]
    Write(AtomicError),
    /// The remount failed.
    #[error(transparent)]
    Remount(#[from] WriteError),
}

impl From<AtomicError> for CtlConfigError {
    fn from(e: AtomicError) -> Self {
        match e {
            AtomicError::Invalid(errors) => CtlConfigError::Invalid(errors),
            other => CtlConfigError::Write(other),
        }
    }
}

/// The mounted usbkey: its device and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usbkey {
    /// The device node (`/dev/sda1`), for the remounts.
    pub node: PathBuf,
    /// Where it is mounted (`/usbkey` on the box).
    pub mount: PathBuf,
}

/// Finds the device mounted at `/usbkey` in a `/proc/self/mounts` text.
pub fn find_usbkey(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (source, target) = (fields.next()?, fields.next()?);
        (target == MOUNT_POINT).then(|| PathBuf::from(source))
    })
}

/// Runs `ramkeyctl config ARGS...` on the box; the text to print on success.
pub fn run(args: &[String]) -> Result<String, CtlConfigError> {
    let mounts = std::fs::read_to_string(crate::base::paths::Paths::system().mounts()).unwrap_or_default();
    let node = find_usbkey(&mounts).ok_or(CtlConfigError::NotMounted)?;
    let key = Usbkey {
        node,
        mount: PathBuf::from(MOUNT_POINT),
    };
    run_on(&key, args, &mut KernelMounter)
}

fn unquote(value: String) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if !inner.contains(['\\', '"']) => inner.to_owned(),
        _ => value,
    }
}

/// Runs the command against the usbkey `key`, remounting through `mounter`.
pub fn run_on(key: &Usbkey, args: &[String], mounter: &mut dyn Mounter) -> Result<String, CtlConfigError> {
    let path = key.mount.join(CONFIG_FILE);
    let name = format!("{MOUNT_POINT}/{CONFIG_FILE}");
    let read = || {
        std::fs::read_to_string(&path).map_err(|source| CtlConfigError::Read {
            path: path.clone(),
            source,
        })
    };
    let (command, rest) = args
        .split_first()
        .ok_or_else(|| CtlConfigError::Usage("no command".into()))?;
    let doc = || Document::parse(&read()?, &name).map_err(CtlConfigError::from);
    let mut done = Vec::new();
    match (command.as_str(), rest) {
        ("show", []) => return read(),
        ("check", []) => {
            let config = doc()?.config().map_err(CtlConfigError::Invalid)?;
            return Ok(format!("{name}: ok (hostname {})\n", config.hostname));
        }
        ("get", [k]) => {
            let value = doc()?
                .get(k)?
                .ok_or_else(|| CtlConfigError::NotSet { key: k.clone() })?;
            return Ok(format!("{}\n", unquote(value)));
        }
        ("set", pairs) if !pairs.is_empty() => {
            let mut d = doc()?;
            for pair in pairs {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| CtlConfigError::Usage(format!("{pair:?} is not KEY=VALUE")))?;
                d.set(k.trim(), v)?;
                done.push(format!("{} = {}", k.trim(), d.get(k.trim())?.unwrap_or_default()));
            }
            write(key, mounter, &d)?;
        }
        ("unset", keys) if !keys.is_empty() => {
            let mut d = doc()?;
            for k in keys {
                if d.unset(k)? {
                    done.push(format!("{k} removed"));
                } else {
                    done.push(format!("{k} was not set"));
                }
            }
            if done.iter().any(|l| l.ends_with(" removed")) {
                write(key, mounter, &d)?;
            } else {
                return Ok(format!("{}\n{name}: unchanged\n", done.join("\n")));
            }
        }
        _ => return Err(CtlConfigError::Usage(format!("bad command: {}", args.join(" ")))),
    }
    done.push(format!("{name}: written; the box applies it at the next boot"));
    Ok(done.join("\n") + "\n")
}

/// Validates and writes the document, with the usbkey read-write only meanwhile.
fn write(key: &Usbkey, mounter: &mut dyn Mounter, doc: &Document) -> Result<(), CtlConfigError> {
    doc.config().map_err(CtlConfigError::Invalid)?;
    let text = doc.to_string();
    usbkey_write::with_rw(mounter, &key.node, &key.mount, || {
        atomic::write_config(&key.mount, &text).map_err(CtlConfigError::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mounts::fake::RecordingMounter;
    use nix::mount::MsFlags;

    /// Whether each mount `m` did was read-only.
    fn read_only(m: &RecordingMounter) -> Vec<bool> {
        m.mounts.iter().map(|c| c.flags.contains(MsFlags::MS_RDONLY)).collect()
    }

    const TEXT: &str = "# the box\nversion = 1\nhostname = \"box1\"  # its name\n";

    fn setup() -> (tempfile::TempDir, Usbkey) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), TEXT).unwrap();
        let key = Usbkey {
            node: "/dev/sda1".into(),
            mount: dir.path().to_owned(),
        };
        (dir, key)
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn show_get_check() {
        let (_dir, key) = setup();
        let mut m = RecordingMounter::default();
        assert_eq!(run_on(&key, &args(&["show"]), &mut m).unwrap(), TEXT);
        assert_eq!(run_on(&key, &args(&["get", "hostname"]), &mut m).unwrap(), "box1\n");
        assert_eq!(
            run_on(&key, &args(&["check"]), &mut m).unwrap(),
            "/usbkey/config.toml: ok (hostname box1)\n"
        );
        let err = run_on(&key, &args(&["get", "timezone"]), &mut m).unwrap_err();
        assert_eq!(err.to_string(), "timezone is not set in /usbkey/config.toml");
        assert!(m.mounts.is_empty(), "reading never remounts");
        assert!(
            run_on(&key, &args(&["frob"]), &mut m)
                .unwrap_err()
                .to_string()
                .contains("usage:")
        );
    }

    #[test]
    fn set_keeps_comments_and_remounts_around_the_write() {
        let (dir, key) = setup();
        let mut m = RecordingMounter::default();
        let out = run_on(&key, &args(&["set", "hostname=box2", "timezone=Europe/Paris"]), &mut m).unwrap();
        assert!(
            out.starts_with("hostname = \"box2\"\ntimezone = \"Europe/Paris\"\n"),
            "{out}"
        );
        assert_eq!(read_only(&m), [false, true], "rw, then ro");
        let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        assert!(text.contains("hostname = \"box2\"  # its name"), "{text}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.toml.prev")).unwrap(),
            TEXT
        );
        let out = run_on(&key, &args(&["unset", "timezone", "dns"]), &mut m).unwrap();
        assert!(out.starts_with("timezone removed\ndns was not set\n"), "{out}");
    }

    #[test]
    fn invalid_results_are_refused_with_their_errors() {
        let (dir, key) = setup();
        let mut m = RecordingMounter::default();
        let err = run_on(&key, &args(&["set", "hostname=not a name"]), &mut m).unwrap_err();
        assert!(err.to_string().contains("/usbkey/config.toml:3:"), "{err}");
        assert!(m.mounts.is_empty());
        assert_eq!(std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap(), TEXT);
        assert_eq!(
            find_usbkey("proc /proc proc rw 0 0\n/dev/sda1 /usbkey vfat ro 0 0\n"),
            Some(PathBuf::from("/dev/sda1"))
        );
    }
}

//! Tolerant kernel command line parsing: `ramkey.*` keys and module parameters.
//!
//! Boot loaders add their own words (`BOOT_IMAGE=`, `initrd=\initrd.img`, a leading
//! kernel path); they and any unknown word are ignored. A bad `ramkey.*` value becomes
//! a warning and the default, never an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::log::Level;

/// How long the boot waits for the usbkey by default: USB sticks enumerate slowly
/// (seconds under QEMU TCG).
pub const DEFAULT_KEY_WAIT: Duration = Duration::from_secs(15);

/// The longest `ramkey.key_wait=` accepted, in seconds.
const MAX_KEY_WAIT_SECS: f64 = 600.0;

/// Which platform slot the boot loader says it booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Platform slot A.
    A,
    /// Platform slot B.
    B,
}

impl Slot {
    /// The slot's letter, as in `/platform/a` and `ramkey.slot=a`.
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl std::fmt::Display for Slot {
    /// The letter: `a` or `b`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// Reading the command line failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    /// The file (normally `/proc/cmdline`) could not be read.
    #[error("cannot read the kernel command line from {path}: {source}")]
    Read {
        /// The file read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What PID 1 takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    /// `ramkey.key=LABEL`: the usbkey filesystem label.
    pub key: Option<String>,
    /// `ramkey.key_wait=SECONDS`: how long to wait for the usbkey to appear.
    pub key_wait: Duration,
    /// `ramkey.config=URL`: where to fetch `config.toml` (PXE).
    pub config: Option<String>,
    /// `ramkey.slot=a|b`.
    pub slot: Option<Slot>,
    /// `ramkey.recovery`: go to recovery mode right after the early mounts.
    pub recovery: bool,
    /// `ramkey.log=LEVEL`; `None` leaves it to the config's `[log] level` (info by default).
    pub log: Option<Level>,
    /// `module.param=value` words, per module name (with `_`), in command line order.
    pub module_params: BTreeMap<String, Vec<String>>,
    /// Problems found, to be logged once the log level is known.
    pub warnings: Vec<String>,
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            key: None,
            key_wait: DEFAULT_KEY_WAIT,
            config: None,
            slot: None,
            recovery: false,
            log: None,
            module_params: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

impl Cmdline {
    /// Reads and parses the command line from `path` (normally `/proc/cmdline`).
    pub fn read(path: &Path) -> Result<Cmdline, CmdlineError> {
        let text = std::fs::read_to_string(path).map_err(|source| CmdlineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Cmdline::parse(&text))
    }

    /// Parses a command line; never fails.
    pub fn parse(text: &str) -> Cmdline {
        let mut out = Cmdline::default();
        for (index, word) in split_words(text).into_iter().enumerate() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word.as_str(), None),
            };
            if index == 0 && value.is_none() && looks_like_kernel_path(key) {
                continue;
            }
            if let Some(name) = key.strip_prefix("ramkey.") {
                out.ramkey_key(name, value);
            } else if let Some((module, param)) = key.split_once('.') {
                out.module_param(module, param, value);
            }
        }
        out
    }

    /// The parameter string for `finit_module` of `module` (empty when none).
    pub fn params_for(&self, module: &str) -> String {
        self.module_params.get(module).map(|p| p.join(" ")).unwrap_or_default()
    }

    fn ramkey_key(&mut self, name: &str, value: Option<&str>) {
        match (name, value) {
            ("key", Some(v)) if !v.is_empty() => self.key = Some(v.to_owned()),
            ("config", Some(v)) if v.starts_with("http://") || v.starts_with("https://") => {
                self.config = Some(v.to_owned());
            }
            ("key_wait", Some(v)) => match v.parse::<f64>() {
                Ok(secs) if (0.0..=MAX_KEY_WAIT_SECS).contains(&secs) => {
                    self.key_wait = Duration::from_secs_f64(secs);
                }
                _ => self.warn(format!(
                    "ramkey.key_wait={v:?} is not a number of seconds from 0 to {MAX_KEY_WAIT_SECS}; using {}",
                    DEFAULT_KEY_WAIT.as_secs()
                )),
            },
            ("slot", Some(v)) if v.eq_ignore_ascii_case("a") => self.slot = Some(Slot::A),
            ("slot", Some(v)) if v.eq_ignore_ascii_case("b") => self.slot = Some(Slot::B),
            ("recovery", None | Some("" | "1" | "yes" | "true" | "on")) => self.recovery = true,
            ("recovery", Some("0" | "no" | "false" | "off")) => self.recovery = false,
            ("log", Some(v)) => match v.parse() {
                Ok(level) => self.log = Some(level),
                Err(e) => self.warn(format!("ramkey.log: {e}; using info")),
            },
            ("key", _) => self.warn("ramkey.key needs a filesystem label; ignored".into()),
            ("key_wait", None) => self.warn("ramkey.key_wait needs a number of seconds; ignored".into()),
            ("config", _) => {
                self.warn("ramkey.config needs an http:// or https:// URL; ignored".into());
            }
            ("slot", _) => self.warn("ramkey.slot must be a or b; ignored".into()),
            ("recovery", Some(v)) => {
                self.warn(format!("ramkey.recovery={v:?} is not a boolean; ignored"));
            }
            _ => self.warn(format!("unknown key ramkey.{name}; ignored")),
        }
    }

    fn module_param(&mut self, module: &str, param: &str, value: Option<&str>) {
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid(module) || !valid(param) {
            return;
        }
        let module = module.replace('-', "_");
        let entry = match value {
            None => param.to_owned(),
            Some(v) if v.contains(char::is_whitespace) => format!("{param}=\"{v}\""),
            Some(v) => format!("{param}={v}"),
        };
        self.module_params.entry(module).or_default().push(entry);
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }
}

/// True for a first word such as `\vmlinuz`, `/boot/vmlinuz-6.1.0-amd64` or `vmlinuz`.
fn looks_like_kernel_path(word: &str) -> bool {
    word.contains('/') || word.contains('\\') || word.starts_with("vmlinuz")
}

/// Splits on whitespace except inside double quotes, and drops the quotes (as the kernel).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut in_word = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                in_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_letters() {
        assert_eq!((Slot::A.letter(), Slot::B.letter()), ('a', 'b'));
        assert_eq!((Slot::A.other(), Slot::B.other()), (Slot::B, Slot::A));
        assert_eq!(format!("{} {}", Slot::A, Slot::B), "a b");
    }

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(Cmdline::parse(""), Cmdline::default());
        assert_eq!(Cmdline::parse("  \n"), Cmdline::default());
    }

    #[test]
    fn all_ramkey_keys() {
        let c = Cmdline::parse(
            "ramkey.key=MYKEY ramkey.config=http://10.0.2.2:8080/c.toml ramkey.slot=b \
             ramkey.recovery ramkey.log=debug\n",
        );
        assert_eq!(c.key.as_deref(), Some("MYKEY"));
        assert_eq!(c.config.as_deref(), Some("http://10.0.2.2:8080/c.toml"));
        assert_eq!(c.slot, Some(Slot::B));
        assert!(c.recovery);
        assert_eq!(c.log, Some(Level::Debug));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn syslinux_words_are_ignored() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/platform/a/vmlinuz initrd=/platform/a/initrd.img console=ttyS0 quiet ramkey.slot=a",
        );
        assert_eq!(c.slot, Some(Slot::A));
        assert!(c.module_params.is_empty());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn systemd_boot_initrd_with_backslash() {
        let c = Cmdline::parse("initrd=\\platform\\a\\initrd.img ramkey.key=RAMKEY");
        assert_eq!(c.key.as_deref(), Some("RAMKEY"));
        assert!(c.module_params.is_empty());
    }

    #[test]
    fn ipxe_leading_kernel_name_is_ignored() {
        for first in ["vmlinuz", "\\vmlinuz", "/boot/vmlinuz-6.1.0-28-amd64", "vmlinuz-6.1.0"] {
            let c = Cmdline::parse(&format!("{first} ramkey.log=warn"));
            assert_eq!(c.log, Some(Level::Warn), "{first}");
            assert!(c.module_params.is_empty(), "{first}: {:?}", c.module_params);
            assert!(c.warnings.is_empty(), "{first}");
        }
    }

    #[test]
    fn quoted_values_keep_spaces() {
        let c = Cmdline::parse("ramkey.key=\"MY KEY\" mymod.opt=\"a b\" other=\"x y z\" ramkey.slot=a");
        assert_eq!(c.key.as_deref(), Some("MY KEY"));
        assert_eq!(c.params_for("mymod"), "opt=\"a b\"");
        assert_eq!(c.slot, Some(Slot::A));
    }

    #[test]
    fn module_params_are_collected_per_module() {
        let c = Cmdline::parse(
            "usb_storage.delay_use=0 usb-storage.quirks=abcd:1234:u nls-ascii.x=1 usbcore.nousb \
             ramkey.log=info",
        );
        assert_eq!(c.params_for("usb_storage"), "delay_use=0 quirks=abcd:1234:u");
        assert_eq!(c.params_for("nls_ascii"), "x=1");
        assert_eq!(c.params_for("usbcore"), "nousb");
        assert_eq!(c.params_for("absent"), "");
        assert!(!c.module_params.contains_key("ramkey"));
    }

    #[test]
    fn malformed_module_words_are_ignored() {
        let c = Cmdline::parse(".x=1 mod.=1 a/b.c=1 mod.x.y=2 foo=bar.baz");
        assert!(c.module_params.is_empty(), "{:?}", c.module_params);
    }

    #[test]
    fn bad_ramkey_values_warn_and_keep_defaults() {
        let c = Cmdline::parse(
            "ramkey.slot=c ramkey.log=loud ramkey.key= ramkey.config=ftp://x ramkey.recovery=maybe \
             ramkey.frobnicate=1 ramkey.slot",
        );
        assert_eq!(c.slot, None);
        assert_eq!(c.log, None);
        assert_eq!(c.key, None);
        assert_eq!(c.config, None);
        assert!(!c.recovery);
        assert_eq!(c.warnings.len(), 7, "{:?}", c.warnings);
        assert!(c.warnings.iter().any(|w| w.contains("ramkey.frobnicate")));
    }

    #[test]
    fn key_wait_seconds() {
        assert_eq!(Cmdline::parse("").key_wait, Duration::from_secs(15));
        assert_eq!(Cmdline::parse("ramkey.key_wait=30").key_wait, Duration::from_secs(30));
        assert_eq!(
            Cmdline::parse("ramkey.key_wait=2.5").key_wait,
            Duration::from_millis(2500)
        );
        assert_eq!(Cmdline::parse("ramkey.key_wait=0").key_wait, Duration::ZERO);
        for bad in [
            "ramkey.key_wait=-1",
            "ramkey.key_wait=x",
            "ramkey.key_wait=1e9",
            "ramkey.key_wait=NaN",
        ] {
            let c = Cmdline::parse(bad);
            assert_eq!(c.key_wait, DEFAULT_KEY_WAIT, "{bad}");
            assert_eq!(c.warnings.len(), 1, "{bad}");
        }
    }

    #[test]
    fn recovery_flag_forms() {
        assert!(Cmdline::parse("ramkey.recovery=1").recovery);
        assert!(Cmdline::parse("ramkey.recovery=yes").recovery);
        assert!(!Cmdline::parse("ramkey.recovery ramkey.recovery=0").recovery);
    }

    #[test]
    fn later_value_wins() {
        let c = Cmdline::parse("ramkey.slot=a ramkey.slot=B");
        assert_eq!(c.slot, Some(Slot::B));
    }

    #[test]
    fn read_from_injected_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cmdline");
        std::fs::write(&path, "BOOT_IMAGE=x ramkey.key=K\n").unwrap();
        assert_eq!(Cmdline::read(&path).unwrap().key.as_deref(), Some("K"));
        assert!(Cmdline::read(&dir.path().join("missing")).is_err());
    }
}

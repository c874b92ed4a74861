//! `ramkey config`: show, query, change and check the usbkey config on the workstation — in a
//! `config.toml` file, a stick image or a stick, without mounting — and import a SmartOS one.
//! Values are changed through `ramkey_config::edit::Document`, which keeps comments and
//! refuses an edit that would make the config invalid; writes are power-safe
//! ([`store::Opened::write`]), through the one descriptor an image or a stick was opened
//! with before the edit.

pub mod editor;
pub mod store;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ramkey_config::atomic::AtomicError;
use ramkey_config::edit::{Document, EditError};
use ramkey_config::smartos::{self, ImportError, NotCarried};
use ramkey_config::{Config, ConfigErrors};

use crate::flash::sysfs::Sysfs;
use crate::usbkey_fs::UsbkeyFsError;
pub use editor::{Ask, Edited, Terminal};
pub use store::{Opened, Target};

/// `ramkey config`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "KEYs are dotted: hostname, dns.resolvers, nic.admin.ip (the [[nic]] tagged admin), \
personality.web.memory (the [[personality]] named web).\n\
Examples:\n  ramkey config --image out/usb.img set hostname=box2 nic.admin.ip=192.168.1.3/24\n  \
ramkey config --device /dev/sdb edit\n  ramkey config --file config.toml check\n  \
ramkey config import-smartos usbkey-config --out config.toml"
)]
pub struct ConfigArgs {
    /// A config file.
    #[arg(long, global = true, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A stick image (usb.img): /config.toml on its RAMKEY partition.
    #[arg(long, global = true, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// A stick (/dev/sdX), none of its partitions mounted: /config.toml on its RAMKEY partition.
    #[arg(long, global = true, value_name = "DEV")]
    pub device: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the config as it is written.
    Show,
    /// Print one value (strings without quotes, the rest as TOML).
    Get { key: String },
    /// Change values; refused with every problem, and nothing written, if the config would be invalid.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove values, tables, or a whole nic (nic.TAG) or personality (personality.NAME).
    Unset {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Validate: exit status 0, or 1 with every problem (line:column and a hint).
    Check,
    /// Edit in $EDITOR (default vi); an invalid result is not saved.
    Edit,
    /// Sign a config file served over the network (--file only): writes FILE.sig, which a
    /// platform built with `[pxe] config_keys` requires. The config is checked first.
    Sign {
        /// The secret key (`ramkey keygen` writes NAME.secret).
        #[arg(long, value_name = "PATH")]
        key: PathBuf,
    },
    /// Convert a SmartOS /usbkey/config; keys that cannot be carried over are listed on stderr.
    ImportSmartos {
        /// The SmartOS config file.
        smartos_config: PathBuf,
        /// Write the result here (power-safely, keeping PATH.prev) instead of printing it.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

/// What can go wrong in `ramkey config`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigCmdError {
    #[error("say which config: --file PATH, --image usb.img or --device /dev/sdX")]
    NoTarget,
    #[error("give only one of --file, --image and --device")]
    TwoTargets,
    #[error("expected KEY=VALUE, got {0:?} (example: nic.admin.ip=192.168.1.3/24)")]
    NotAPair(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Usbkey(#[from] UsbkeyFsError),
    #[error("{name}: {error}")]
    Edit { name: String, error: Box<EditError> },
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error(transparent)]
    Atomic(AtomicError),
    #[error("{key} is not set in {name}")]
    NotSet { name: String, key: String },
    #[error("{name} is not UTF-8 text")]
    NotText { name: String },
    #[error(
        "{} is mounted ({what} on {mount_point}): unmount it first (`umount {mount_point}`), or edit the config on the running box with `ramkeyctl config`",
        device.display()
    )]
    Mounted {
        device: PathBuf,
        what: String,
        mount_point: String,
    },
    #[error("no such device: {}; plug the stick in, `lsblk` lists the disks", path.display())]
    NoSuchDevice { path: PathBuf },
    #[error(
        "{} is a regular file, not a device: nothing but devices belongs in /dev (a write to a stick that was not plugged in leaves such a file); give the stick's device (see `lsblk`), or an image outside /dev",
        path.display()
    )]
    FileInDev { path: PathBuf },
    #[error(
        "{} is neither a block device nor a regular file; give a stick (--device /dev/sdX, see `lsblk`) or a stick image (--image usb.img)",
        path.display()
    )]
    NotADisk { path: PathBuf },
    #[error(
        "{} is busy: opening it exclusively failed (something has it open or mounted); close that and run ramkey config again",
        device.display()
    )]
    Busy { device: PathBuf },
    #[error("the editor `{editor}` failed ({status}); nothing was saved")]
    EditorFailed { editor: String, status: String },
    #[error("the edited config is not valid; nothing was saved:\n{errors}\nyour text is kept in {}", kept.display())]
    EditRefused { errors: ConfigErrors, kept: PathBuf },
    #[error("{name}: {error}")]
    Import { name: String, error: Box<ImportError> },
    #[error("sign takes a config file (--file PATH): the signature goes beside it, FILE.sig, where the box fetches it")]
    SignNeedsFile,
    #[error(transparent)]
    Key(#[from] ramkey_image::keys::KeyError),
}

/// The result of `set` and `unset`.
#[derive(Debug, Default)]
pub struct Changed {
    /// `key = value` lines of what was set, and the keys removed.
    pub done: Vec<String>,
    /// Keys given to `unset` that were not there.
    pub absent: Vec<String>,
    /// The config was invalid before and still is, with fewer problems: written anyway.
    pub still_invalid: Option<ConfigErrors>,
}

fn document(target: &Target, text: &str) -> Result<Document, ConfigCmdError> {
    let name = target.name();
    Document::parse(text, &name).map_err(|error| ConfigCmdError::Edit {
        name,
        error: Box::new(error),
    })
}

/// `get`: the value at `key`, strings unquoted.
pub fn get(target: &Target, key: &str, sys: &Sysfs) -> Result<String, ConfigCmdError> {
    let name = target.name();
    let value = document(target, &target.read(sys)?)?
        .get(key)
        .map_err(|error| ConfigCmdError::Edit {
            name: name.clone(),
            error: Box::new(error),
        })?
        .ok_or_else(|| ConfigCmdError::NotSet {
            name,
            key: key.to_owned(),
        })?;
    Ok(match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(t) => match t.get("v") {
            Some(toml::Value::String(s)) => s.clone(),
            _ => value,
        },
        Err(_) => value,
    })
}

/// `set`: applies every `KEY=VALUE` in order, then writes once; all or nothing.
pub fn set(target: &Target, pairs: &[String], sys: &Sysfs) -> Result<Changed, ConfigCmdError> {
    change(target, sys, |doc, changed| {
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| Err(ConfigCmdError::NotAPair(pair.clone())))?;
            let key = key.trim();
            doc.set(key, value).map_err(Ok)?;
            let shown = doc.get(key).map_err(Ok)?.unwrap_or_default();
            changed.done.push(format!("{key} = {shown}"));
        }
        Ok(())
    })
}

/// `unset`: removes every key, then writes once (nothing when none was there).
pub fn unset(target: &Target, keys: &[String], sys: &Sysfs) -> Result<Changed, ConfigCmdError> {
    change(target, sys, |doc, changed| {
        for key in keys {
            if doc.unset(key).map_err(Ok)? {
                changed.done.push(format!("{key} removed"));
            } else {
                changed.absent.push(key.clone());
            }
        }
        Ok(())
    })
}

/// An edit step's failure: `Ok` for the document's errors (named after the target), `Err`
/// for the others.
type StepError = Result<EditError, ConfigCmdError>;

fn change(
    target: &Target,
    sys: &Sysfs,
    apply: impl FnOnce(&mut Document, &mut Changed) -> Result<(), StepError>,
) -> Result<Changed, ConfigCmdError> {
    let opened = target.open_for_writing(sys)?;
    let mut doc = document(target, &opened.read()?)?;
    let mut changed = Changed::default();
    apply(&mut doc, &mut changed).map_err(|e| match e {
        Ok(error) => ConfigCmdError::Edit {
            name: target.name(),
            error: Box::new(error),
        },
        Err(e) => e,
    })?;
    if changed.done.is_empty() {
        return Ok(changed);
    }
    changed.still_invalid = doc.config().err();
    opened.write(&doc.to_string(), sys)?;
    Ok(changed)
}

/// `check`: the validated config, or every problem.
pub fn check(target: &Target, sys: &Sysfs) -> Result<Config, ConfigCmdError> {
    Config::parse(&target.read(sys)?, &target.name()).map_err(ConfigCmdError::Invalid)
}

/// `import-smartos`: the converted text and what was not carried over. With `out`, the text
/// is written there (power-safely, keeping `out.prev`).
pub fn import_smartos(file: &Path, out: Option<&Path>) -> Result<(String, Vec<NotCarried>), ConfigCmdError> {
    let text = std::fs::read_to_string(file).map_err(store::io_err("reading", file))?;
    let (converted, skipped) = smartos::import(&text).map_err(|error| ConfigCmdError::Import {
        name: file.display().to_string(),
        error: Box::new(error),
    })?;
    if let Some(out) = out {
        store::write_file(out, &converted)?;
    }
    Ok((converted, skipped))
}

/// Runs a parsed `ramkey config` command against the host, printing to stdout and stderr.
pub fn cli(args: &ConfigArgs) -> Result<(), ConfigCmdError> {
    let sys = Sysfs::host();
    if let ConfigCommand::ImportSmartos { smartos_config, out } = &args.command {
        let result = import_smartos(smartos_config, out.as_deref());
        if let Err(ConfigCmdError::Import { error, .. }) = &result
            && let ImportError::Invalid { text, .. } = error.as_ref()
        {
            print!("{text}");
        }
        let (text, skipped) = result?;
        for n in &skipped {
            eprintln!(
                "{}:{}: not carried over: {}: {}",
                smartos_config.display(),
                n.line,
                n.key,
                n.reason
            );
        }
        match out {
            Some(out) => eprintln!("wrote {}", out.display()),
            None => print!("{text}"),
        }
        return Ok(());
    }
    let target = Target::from_options(args.file.as_deref(), args.image.as_deref(), args.device.as_deref())?;
    match &args.command {
        ConfigCommand::Show => print!("{}", target.read(&sys)?),
        ConfigCommand::Get { key } => println!("{}", get(&target, key, &sys)?),
        ConfigCommand::Set { pairs } => report(&target, &set(&target, pairs, &sys)?),
        ConfigCommand::Unset { keys } => report(&target, &unset(&target, keys, &sys)?),
        ConfigCommand::Check => {
            check(&target, &sys)?;
            println!("{}: valid", target.name());
        }
        ConfigCommand::Edit => {
            let editor = std::env::var("EDITOR")
                .ok()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "vi".to_owned());
            let done = editor::edit(&target, &editor, &sys, &mut Terminal, &mut io::stderr())?;
            match done {
                Edited::Saved => println!("{}: saved (the previous text is in config.toml.prev)", target.name()),
                Edited::Unchanged => println!("{}: no change", target.name()),
            }
        }
        ConfigCommand::Sign { key } => {
            let file = args.file.as_deref().ok_or(ConfigCmdError::SignNeedsFile)?;
            let sig = sign(&target, file, key, &sys)?;
            println!("{}: signed, {}", target.name(), sig.display());
        }
        ConfigCommand::ImportSmartos { .. } => {}
    }
    Ok(())
}

/// Checks the config at `file` and writes `file.sig`, its signature by the secret `key`
/// ([`ramkey_image::detached`]); returns the signature's path.
pub fn sign(target: &Target, file: &Path, key: &Path, sys: &Sysfs) -> Result<PathBuf, ConfigCmdError> {
    check(target, sys)?;
    let key = ramkey_image::keys::read_secret_file(key)?;
    let bytes = std::fs::read(file).map_err(|source| ConfigCmdError::Io {
        what: "reading",
        path: file.to_path_buf(),
        source,
    })?;
    let mut sig = file.as_os_str().to_os_string();
    sig.push(".sig");
    let sig = PathBuf::from(sig);
    std::fs::write(&sig, ramkey_image::detached::sign(&key, &bytes)).map_err(|source| ConfigCmdError::Io {
        what: "writing",
        path: sig.clone(),
        source,
    })?;
    Ok(sig)
}

fn report(target: &Target, changed: &Changed) {
    let mut out = io::stdout().lock();
    for line in &changed.done {
        let _ = writeln!(out, "{line}");
    }
    for key in &changed.absent {
        eprintln!("{key} was not set");
    }
    if changed.done.is_empty() {
        eprintln!("{}: nothing to change", target.name());
    } else {
        eprintln!("{}: written (the previous text is in config.toml.prev)", target.name());
    }
    if let Some(errors) = &changed.still_invalid {
        eprintln!("the config is still not valid (fewer problems than before):\n{errors}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "version = 1\nhostname = \"box1\" # name\n\n[dns]\nresolvers = [\"1.1.1.1\"]\n";

    fn file(text: &str) -> (tempfile::TempDir, Target) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, Target::File(path))
    }

    #[test]
    fn get_prints_strings_bare_and_the_rest_as_toml() {
        let (_dir, t) = file(TEXT);
        assert_eq!(get(&t, "hostname", &Sysfs::host()).unwrap(), "box1");
        assert_eq!(get(&t, "dns.resolvers", &Sysfs::host()).unwrap(), "[\"1.1.1.1\"]");
        assert_eq!(get(&t, "dns", &Sysfs::host()).unwrap(), "resolvers = [\"1.1.1.1\"]");
        let err = get(&t, "timezone", &Sysfs::host()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with(&format!("timezone is not set in {}", t.name())),
            "{err}"
        );
    }

    #[test]
    fn set_is_all_or_nothing_and_keeps_comments() {
        let (dir, t) = file(TEXT);
        let sys = Sysfs::host();
        let pairs = ["hostname=box2".to_owned(), "hostname=bad_name!".to_owned()];
        let err = set(&t, &pairs, &sys).unwrap_err().to_string();
        assert!(
            err.contains("config.toml:2:12: hostname \"bad_name!\" is not valid"),
            "{err}"
        );
        assert_eq!(t.read(&Sysfs::host()).unwrap(), TEXT);
        assert!(!dir.path().join("config.toml.prev").exists(), "nothing written");
        let err = set(&t, &["hostname".to_owned()], &sys).unwrap_err();
        assert!(matches!(err, ConfigCmdError::NotAPair(_)), "{err}");
        let changed = set(
            &t,
            &["hostname=box2".to_owned(), "dns.search=[\"lan\"]".to_owned()],
            &sys,
        )
        .unwrap();
        assert_eq!(changed.done, ["hostname = \"box2\"", "dns.search = [\"lan\"]"]);
        assert_eq!(
            t.read(&Sysfs::host()).unwrap(),
            TEXT.replace("box1", "box2") + "search = [\"lan\"]\n"
        );
        let changed = unset(&t, &["dns.search".to_owned(), "ntp".to_owned()], &sys).unwrap();
        assert_eq!((changed.done.len(), changed.absent), (1, vec!["ntp".to_owned()]));
        assert_eq!(t.read(&Sysfs::host()).unwrap(), TEXT.replace("box1", "box2"));
    }

    #[test]
    fn check_reports_every_problem() {
        let (_dir, t) = file("version = 1\nhostname = \"a.b\"\ntimezone = \"Nowhere\"\n");
        let ConfigCmdError::Invalid(errors) = check(&t, &Sysfs::host()).unwrap_err() else {
            panic!("invalid");
        };
        assert_eq!(errors.len(), 2, "{errors}");
        let (_dir, t) = file(TEXT);
        assert_eq!(check(&t, &Sysfs::host()).unwrap().hostname, "box1");
    }

    #[test]
    fn an_invalid_config_can_be_improved_one_set_at_a_time() {
        let (_dir, t) = file("version = 1\nhostname = \"a.b\"\ntimezone = \"Nowhere\"\n");
        let changed = set(&t, &["hostname=ab".to_owned()], &Sysfs::host()).unwrap();
        assert_eq!(changed.still_invalid.map(|e| e.len()), Some(1));
        assert!(t.read(&Sysfs::host()).unwrap().contains("hostname = \"ab\""));
    }
}

//! `ramkey flash IMAGE DEVICE`: writes a stick image (raw, `.gz` or `.zst`) to a USB disk or
//! a file, reads it back and compares sha256 sums, and with `--keep-config` carries the
//! stick's `/config.toml` over. The target is opened once, exclusively, before any check
//! (`target.rs`); the checks, the question, the write, the read-back and the config all go
//! through that descriptor. Every check runs before the first byte is written; a refusal
//! destroys nothing. See `docs/flash-and-run.md`.

pub mod checks;
pub mod keep_config;
pub mod progress;
pub mod source;
pub mod sysfs;
pub(crate) mod target;
#[cfg(test)]
pub(crate) mod tests;

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use progress::Progress;
pub use progress::ProgressMode;
use source::{Image, read_up_to};
use sysfs::Sysfs;
use target::Target;

/// Writes go out in blocks of this size (a multiple of every logical block size).
pub const BLOCK: usize = 4 << 20;

/// Why a flash was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no such device: {path}; plug the stick in, `lsblk` lists the disks")]
    NoSuchDevice { path: PathBuf },
    #[error(
        "{path} is a regular file, not a device: nothing but devices belongs in /dev (a write to a stick that was not plugged in leaves such a file); remove it and give the stick's device (see `lsblk`)"
    )]
    FileInDev { path: PathBuf },
    #[error(
        "{device} changed under ramkey flash: the disk it opened is {opened}, but /sys/class/block/{name}/dev now says {found}; nothing written; plug the stick in again and run ramkey flash again"
    )]
    DeviceChanged {
        device: String,
        name: String,
        opened: String,
        found: String,
    },
    #[error("{path} is empty; is it the right image?")]
    EmptyImage { path: PathBuf },
    #[error("{target} is the image itself; give the stick's device (e.g. /dev/sdb) or another file")]
    SameFile { target: PathBuf },
    #[error(
        "{path} is neither a block device nor a regular file; give the stick's whole disk (e.g. /dev/sdb, see `lsblk`) or an output file"
    )]
    NotATarget { path: PathBuf },
    #[error("{device} is block device {dev}, which is not in {}; is sysfs mounted?", sysfs.display())]
    UnknownDevice {
        device: String,
        dev: String,
        sysfs: PathBuf,
    },
    #[error("{device} is partition {partition} of /dev/{disk}; flash the whole disk: ramkey flash IMAGE /dev/{disk}")]
    Partition {
        device: String,
        partition: String,
        disk: String,
    },
    #[error(
        "{device} holds this computer's {mount_point} filesystem: refusing to overwrite the disk the host booted from; pick the stick's device (see `lsblk`)"
    )]
    BootDisk { device: String, mount_point: String },
    #[error(
        "{device} is in use: {what} is mounted on {mount_point}; unmount it (`umount {mount_point}`) and run ramkey flash again"
    )]
    Mounted {
        device: String,
        what: String,
        mount_point: String,
    },
    #[error("{device} is in use: /dev/{swap} is active swap; run `swapoff /dev/{swap}` first")]
    Swap { device: String, swap: String },
    #[error(
        "{device} is in use: {name} is held by {holders} (device-mapper, LVM or RAID); stop that (e.g. `dmsetup remove`, `vgchange -an`, `mdadm --stop`) first"
    )]
    Held {
        device: String,
        name: String,
        holders: String,
    },
    #[error("{target} is too small: {capacity} bytes, the image needs {image_size} bytes (uncompressed); use a stick of at least {}", checks::human(*image_size))]
    TooSmall {
        target: String,
        capacity: u64,
        image_size: u64,
    },
    #[error(
        "{device} ({model}) is not a removable disk; if it really is the stick to overwrite (some USB SSDs and card readers report fixed disks), pass --force"
    )]
    NotRemovable { device: String, model: String },
    #[error("not asking for confirmation without a terminal: pass --yes to overwrite {device}")]
    NeedsYes { device: String },
    #[error("nothing written to {device}: not confirmed")]
    Declined { device: String },
    #[error(
        "--keep-config: cannot read /config.toml from {target}: {reason}; nothing written; flash without --keep-config to start from the image's own config"
    )]
    NoConfig { target: PathBuf, reason: String },
    #[error(
        "{device} is busy: opening it exclusively failed (something has it open or mounted); close that and run ramkey flash again"
    )]
    Busy { device: PathBuf },
    #[error(
        "{target} is smaller than the decompressed image: stopped after {written} bytes, before writing past its end ({capacity} bytes); the stick holds a partial image — flash a smaller image or use a bigger stick"
    )]
    Overflow {
        target: PathBuf,
        written: u64,
        capacity: u64,
    },
    #[error(
        "verification failed: {target} reads back sha256 {actual} over {len} bytes, the image is {expected}; the stick may be faulty or counterfeit, try another"
    )]
    Verify {
        target: PathBuf,
        len: u64,
        expected: String,
        actual: String,
    },
    #[error("the image is written and verified, but carrying config.toml over failed: {reason}; the old config is saved in {}: copy it to the stick's RAMKEY partition as /config.toml", saved.display())]
    ConfigNotCarried { reason: String, saved: PathBuf },
}

/// What to flash where.
#[derive(Debug, Clone)]
pub struct Options {
    pub image: PathBuf,
    pub target: PathBuf,
    /// Allow a disk that says it is not removable.
    pub force: bool,
    /// Do not ask.
    pub yes: bool,
    /// Carry the target's `/config.toml` over.
    pub keep_config: bool,
    pub progress: ProgressMode,
}

/// Asks the person at the terminal.
pub trait Confirm {
    /// `None` when nobody can be asked (no terminal).
    fn ask(&mut self, question: &str) -> io::Result<Option<bool>>;
}

/// Asks on stderr and reads the answer from stdin, when stdin is a terminal.
#[derive(Debug)]
pub struct Terminal;

impl Confirm for Terminal {
    fn ask(&mut self, question: &str) -> io::Result<Option<bool>> {
        if !io::stdin().is_terminal() {
            return Ok(None);
        }
        eprint!("{question}");
        io::stderr().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        Ok(Some(answer.trim().eq_ignore_ascii_case("yes")))
    }
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub bytes: u64,
    /// sha256 of the written range, hex.
    pub sha256: String,
    pub config_kept: bool,
}

/// Checks, asks, writes, verifies and (with `keep_config`) carries the config over. The
/// target is opened once, before any check ([`target::open`]); everything after goes
/// through that descriptor.
pub fn flash(opts: &Options, sys: &Sysfs, confirm: &mut dyn Confirm) -> Result<Outcome, FlashError> {
    let image = Image::open(&opts.image)?;
    let path = &opts.target;
    let io_err = |what: &'static str| {
        move |source| FlashError::Io {
            what,
            path: path.clone(),
            source,
        }
    };
    let target = target::open(path, sys)?;
    if let Some(file) = target.file() {
        let meta = file.metadata().map_err(io_err("inspecting"))?;
        let src = std::fs::metadata(&opts.image).map_err(|source| FlashError::Io {
            what: "inspecting",
            path: opts.image.clone(),
            source,
        })?;
        if (meta.dev(), meta.ino()) == (src.dev(), src.ino()) {
            return Err(FlashError::SameFile { target: path.clone() });
        }
    }
    let mut capacity = u64::MAX;
    let mut question = None;
    let mut disk_name = None;
    if let Target::Block { file, dev } = &target {
        let size = || {
            let mut file = file;
            file.seek(SeekFrom::End(0)).map_err(io_err("finding the size of"))
        };
        let (disk, size) = checks::check_block_target(sys, path, *dev, &size, image.size, opts.force)?;
        checks::same_device(sys, path, file, &disk.name)?;
        capacity = size;
        question = Some(format!(
            "{}Write {} ({}) to it, destroying everything on it? Type yes to go on: ",
            checks::describe(path, &disk),
            opts.image.display(),
            checks::human(image.size)
        ));
        disk_name = Some(disk.name);
    }
    let old_config = if opts.keep_config {
        let read = match target.file() {
            Some(file) => keep_config::read_config(file),
            None => Err("it does not exist".to_string()),
        };
        Some(read.map_err(|reason| FlashError::NoConfig {
            target: path.clone(),
            reason,
        })?)
    } else {
        None
    };
    if let Some(question) = question.filter(|_| !opts.yes) {
        let device = path.display().to_string();
        match confirm.ask(&question).map_err(io_err("asking about"))? {
            None => return Err(FlashError::NeedsYes { device }),
            Some(false) => return Err(FlashError::Declined { device }),
            Some(true) => {}
        }
    }

    let out = match target {
        Target::Block { file, .. } => {
            // The question may have waited for minutes: still the disk that was checked?
            if let Some(name) = &disk_name {
                checks::same_device(sys, path, &file, name)?;
            }
            file
        }
        Target::File(file) => {
            file.set_len(0).map_err(io_err("truncating"))?;
            file
        }
        Target::New => target::create(path)?,
    };
    let (bytes, expected) = write(&image, &out, path, capacity, opts.progress)?;
    let actual = read_back(&out, path, bytes, opts.progress)?;
    if actual != expected {
        return Err(FlashError::Verify {
            target: path.clone(),
            len: bytes,
            expected,
            actual,
        });
    }
    if let Some(config) = &old_config
        && let Err(reason) = keep_config::write_config(&out, config)
    {
        let saved = std::env::temp_dir().join(format!("ramkey-kept-config-{}.toml", std::process::id()));
        std::fs::write(&saved, config).map_err(|source| FlashError::Io {
            what: "saving the old config to",
            path: saved.clone(),
            source,
        })?;
        return Err(FlashError::ConfigNotCarried { reason, saved });
    }
    Ok(Outcome {
        bytes,
        sha256: expected,
        config_kept: old_config.is_some(),
    })
}

/// Streams the image onto the target in `BLOCK`-sized writes, never past `capacity`; syncs.
/// Returns the bytes written and their sha256.
fn write(
    image: &Image,
    out: &File,
    path: &Path,
    capacity: u64,
    mode: ProgressMode,
) -> Result<(u64, String), FlashError> {
    let write_err = |source| FlashError::Io {
        what: "writing",
        path: path.into(),
        source,
    };
    let mut out = out;
    out.rewind().map_err(write_err)?;
    let mut reader = image.reader()?;
    let mut buf = vec![0u8; BLOCK];
    let mut hash = Sha256::new();
    let mut written = 0u64;
    let mut progress = Progress::new(mode, "writing", image.size);
    loop {
        let n = read_up_to(&mut reader, &mut buf).map_err(|e| image.corrupt(e))?;
        if n == 0 {
            break;
        }
        if written + n as u64 > capacity {
            return Err(FlashError::Overflow {
                target: path.into(),
                written,
                capacity,
            });
        }
        out.write_all(&buf[..n]).map_err(write_err)?;
        hash.update(&buf[..n]);
        written += n as u64;
        progress.inc(n as u64);
    }
    out.sync_all().map_err(write_err)?;
    // Drop the page cache of what was written so that the read-back comes from the device.
    let _ = rustix::fs::fadvise(out, 0, None, rustix::fs::Advice::DontNeed);
    progress.finish();
    Ok((written, hex(&hash.finalize())))
}

/// sha256 of the first `len` bytes of `file` (the target, opened from `path`).
fn read_back(file: &File, path: &Path, len: u64, mode: ProgressMode) -> Result<String, FlashError> {
    let err = |source| FlashError::Io {
        what: "reading back",
        path: path.into(),
        source,
    };
    let mut file = file;
    file.rewind().map_err(err)?;
    let mut input = file.take(len);
    let mut buf = vec![0u8; BLOCK];
    let mut hash = Sha256::new();
    let mut progress = Progress::new(mode, "verifying", len);
    loop {
        let n = read_up_to(&mut input, &mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        progress.inc(n as u64);
    }
    progress.finish();
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `ramkey flash` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FlashArgs {
    /// The stick image: usb.img, usb.img.gz or usb.img.zst.
    pub image: PathBuf,
    /// The stick's whole disk (e.g. /dev/sdb) or an output file.
    pub device: PathBuf,
    /// Write to a disk that says it is not removable.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Carry the stick's /config.toml over into the new image.
    #[arg(long)]
    pub keep_config: bool,
}

/// Runs `ramkey flash` on this host and reports on stdout.
pub fn cli(args: &FlashArgs) -> Result<Outcome, FlashError> {
    let opts = Options {
        image: args.image.clone(),
        target: args.device.clone(),
        force: args.force,
        yes: args.yes,
        keep_config: args.keep_config,
        progress: ProgressMode::for_stderr(),
    };
    let outcome = flash(&opts, &Sysfs::host(), &mut Terminal)?;
    println!(
        "{}: wrote and verified {} bytes (sha256 {}){}",
        opts.target.display(),
        outcome.bytes,
        outcome.sha256,
        if outcome.config_kept {
            "; config.toml carried over"
        } else {
            ""
        }
    );
    Ok(outcome)
}

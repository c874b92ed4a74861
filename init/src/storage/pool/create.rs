//! Formatting a blank disk as the pool: `mke2fs` (e2fsprogs) or `mkfs.btrfs` (btrfs-progs),
//! both shipped in the platform as extras, after the platform's own probes (`wipefs`,
//! `blkid`: see [`super::external`]) found nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use ramkey_config::Filesystem;

use super::LABEL;
use super::signatures::Found;

/// Where the tools are looked for, below the root.
const SBIN: &[&str] = &["sbin", "usr/sbin", "bin", "usr/bin"];

/// Formatting failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The tool is not in the platform.
    #[error("{tool} is not in the platform; add {package} to [platform] extras in appliance.toml")]
    Missing {
        /// `mke2fs`.
        tool: &'static str,
        /// `e2fsprogs`.
        package: &'static str,
    },
    /// The tool could not be started.
    #[error("cannot run {}: {source}", tool.display())]
    Spawn {
        /// The program.
        tool: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tool failed.
    #[error("{command} failed ({status}): {output}")]
    Failed {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// What it printed.
        output: String,
    },
}

/// Makes filesystems; the fake records the calls.
pub trait Mkfs {
    /// What the platform's own probes (`wipefs --no-act`, `blkid -p`) find on `device`,
    /// asked right before [`Mkfs::mkfs`]; `Ok(None)` when they find nothing or the platform
    /// has none of them.
    fn signatures(&mut self, device: &Path) -> Result<Option<Found>, CreateError>;

    /// Formats `devices` (more than one only for a btrfs raid1 mirror) labelled [`LABEL`].
    ///
    /// The tools run without their force flags and without a terminal. `mkfs.btrfs` then
    /// refuses a device where libblkid sees a signature; `mke2fs` checks nothing (it asks
    /// only on a terminal), so the probes before it are the only guard.
    fn mkfs(&mut self, fs: Filesystem, devices: &[PathBuf]) -> Result<(), CreateError>;
}

/// The real formatter: runs the tools from the platform under `root`.
#[derive(Debug)]
pub struct Tools {
    /// The root the tools live under (`/` on the box).
    pub root: PathBuf,
}

/// The program `name` in the platform under `root`.
pub fn find_tool(root: &Path, name: &str) -> Option<PathBuf> {
    SBIN.iter().map(|d| root.join(d).join(name)).find(|p| p.is_file())
}

/// The command line for `fs` on `devices`.
pub fn command_line(fs: Filesystem, devices: &[PathBuf]) -> (&'static str, &'static str, Vec<String>) {
    let mut args: Vec<String> = match fs {
        Filesystem::Ext4 => ["-t", "ext4", "-L", LABEL, "-q"].map(String::from).to_vec(),
        Filesystem::Btrfs if devices.len() > 1 => ["-L", LABEL, "-q", "-d", "raid1", "-m", "raid1"]
            .map(String::from)
            .to_vec(),
        Filesystem::Btrfs => ["-L", LABEL, "-q"].map(String::from).to_vec(),
    };
    args.extend(devices.iter().map(|d| d.display().to_string()));
    match fs {
        Filesystem::Ext4 => ("mke2fs", "e2fsprogs", args),
        Filesystem::Btrfs => ("mkfs.btrfs", "btrfs-progs", args),
    }
}

impl Mkfs for Tools {
    fn signatures(&mut self, device: &Path) -> Result<Option<Found>, CreateError> {
        super::external::probe(&self.root, device)
    }

    fn mkfs(&mut self, fs: Filesystem, devices: &[PathBuf]) -> Result<(), CreateError> {
        let (tool, package, args) = command_line(fs, devices);
        let path = find_tool(&self.root, tool).ok_or(CreateError::Missing { tool, package })?;
        let command = format!("{tool} {}", args.join(" "));
        crate::notice!("pool: running {command}");
        let out = Command::new(&path)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .map_err(|source| CreateError::Spawn { tool: path, source })?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(CreateError::Failed {
            command,
            status: out.status.to_string(),
            output: output.trim().replace('\n', "; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let one = [PathBuf::from("/dev/vdb")];
        assert_eq!(
            command_line(Filesystem::Ext4, &one).2.join(" "),
            "-t ext4 -L ramkey-pool -q /dev/vdb"
        );
        let two = [PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vdc")];
        let (tool, _, args) = command_line(Filesystem::Btrfs, &two);
        assert_eq!(tool, "mkfs.btrfs");
        assert_eq!(args.join(" "), "-L ramkey-pool -q -d raid1 -m raid1 /dev/vdb /dev/vdc");
    }

    #[test]
    fn missing_tool_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tools {
            root: dir.path().to_owned(),
        }
        .mkfs(Filesystem::Ext4, &[PathBuf::from("/dev/null")])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mke2fs is not in the platform; add e2fsprogs to [platform] extras in appliance.toml"
        );
    }
}

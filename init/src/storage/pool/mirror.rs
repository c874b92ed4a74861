//! A btrfs mirror missing disks: what is missing, the record a degraded read-write boot
//! leaves on the pool, and the scrub started at the next boot with every disk.
//!
//! Without `[pool] allow_degraded = true` a mirror missing a disk is only mounted
//! read-only (see [`super::PoolState::ReadOnly`]); nothing is written, nothing is recorded.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use super::create::{CreateError, Tools, find_tool};
use super::layout::utc_stamp;

/// The record of a degraded read-write boot, relative to the pool.
pub const RECORD: &str = ".ramkey/degraded";

/// Where `btrfs scrub start` writes what it says, relative to the root (`/var` is the
/// pool's once it is laid out, so the file persists).
pub const SCRUB_LOG: &str = "var/log/ramkey/pool-scrub.log";

/// A btrfs filesystem with fewer devices attached than it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The devices attached: devid and node, by devid.
    pub present: Vec<(u64, PathBuf)>,
    /// How many devices the filesystem has (its superblock's `num_devices`).
    pub total: u64,
    /// The `[pool]` ids (with their key) whose disk is not among the present ones; empty
    /// when the pool is found by its label.
    pub missing: Vec<String>,
}

impl Shortfall {
    /// How many distinct devices are attached.
    pub fn found(&self) -> usize {
        self.present.len()
    }
}

impl fmt::Display for Shortfall {
    /// `1 of 2 disks (present: devid 1 on /dev/vdb; missing: virtio-b, named in [pool] mirror)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present: Vec<String> = self
            .present
            .iter()
            .map(|(devid, node)| format!("devid {devid} on {}", node.display()))
            .collect();
        write!(
            f,
            "{} of {} disks (present: {}; missing: ",
            self.found(),
            self.total,
            present.join(", ")
        )?;
        if self.missing.is_empty() {
            let n = self.total.saturating_sub(self.found() as u64);
            write!(f, "{n} not attached or not labelled {}", super::LABEL)?;
        } else {
            f.write_str(&self.missing.join(", "))?;
        }
        f.write_str(")")
    }
}

/// Records on the pool mounted at `pool` that it runs degraded, unless a record is there
/// already (it keeps the first degraded boot). Synced with its folder. Returns whether it
/// wrote one.
pub fn record(pool: &Path, shortfall: &Shortfall, now: Option<SystemTime>) -> std::io::Result<bool> {
    let path = pool.join(RECORD);
    if path.exists() {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(pool);
    std::fs::create_dir_all(dir)?;
    let since = now.map_or_else(|| "an unknown time (no clock)".to_owned(), utc_stamp);
    let text = format!(
        "# The btrfs mirror ran degraded read-write ([pool] allow_degraded = true). At the next\n\
         # boot with every disk, PID 1 starts a scrub and removes this file.\n\
         since = {since}\n\
         disks = {shortfall}\n"
    );
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(true)
}

/// When the pool mounted at `pool` last started running degraded (the record's `since`),
/// if it did and no scrub was started since.
pub fn recorded(pool: &Path) -> Option<String> {
    let text = std::fs::read_to_string(pool.join(RECORD)).ok()?;
    let since = text.lines().find_map(|l| l.strip_prefix("since = "));
    Some(since.unwrap_or("an unknown time").trim().to_owned())
}

/// Removes the record (synced), once the scrub is started.
pub fn clear(pool: &Path) -> std::io::Result<()> {
    let path = pool.join(RECORD);
    std::fs::remove_file(&path)?;
    File::open(path.parent().unwrap_or(pool))?.sync_all()
}

/// Starts scrubs; the fake records the calls.
pub trait Scrub {
    /// Starts `btrfs scrub start MOUNT_POINT`, which returns at once and leaves the scrub
    /// running in the kernel (a background process of btrfs-progs waits for it). Returns
    /// what the tool said.
    fn start(&mut self, mount_point: &Path) -> Result<String, CreateError>;
}

impl Scrub for Tools {
    fn start(&mut self, mount_point: &Path) -> Result<String, CreateError> {
        let (tool, package) = ("btrfs", "btrfs-progs");
        let path = find_tool(&self.root, tool).ok_or(CreateError::Missing { tool, package })?;
        let command = format!("btrfs scrub start {}", mount_point.display());
        // Where btrfs-progs keeps the scrub's status (`btrfs scrub status` reads it).
        let _ = std::fs::create_dir_all(self.root.join("var/lib/btrfs"));
        // The background process keeps its output open until the scrub ends: a file, not a
        // pipe, or this would wait for the whole scrub.
        let log = self.root.join(SCRUB_LOG);
        let io = |source| CreateError::Spawn {
            tool: log.clone(),
            source,
        };
        std::fs::create_dir_all(log.parent().unwrap_or(&self.root)).map_err(io)?;
        let out = File::create(&log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let status = Command::new(&path)
            .args(["scrub", "start"])
            .arg(mount_point)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .status()
            .map_err(|source| CreateError::Spawn { tool: path, source })?;
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        let said = said.trim().replace('\n', "; ");
        if status.success() {
            return Ok(said);
        }
        Err(CreateError::Failed {
            command,
            status: status.to_string(),
            output: if said.is_empty() { "no output".into() } else { said },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn shortfall(missing: &[&str]) -> Shortfall {
        Shortfall {
            present: vec![(1, PathBuf::from("/dev/vdb"))],
            total: 2,
            missing: missing.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn says_what_is_missing() {
        assert_eq!(
            shortfall(&["virtio-b (named in [pool] mirror)"]).to_string(),
            "1 of 2 disks (present: devid 1 on /dev/vdb; missing: virtio-b (named in [pool] mirror))"
        );
        assert_eq!(
            shortfall(&[]).to_string(),
            "1 of 2 disks (present: devid 1 on /dev/vdb; missing: 1 not attached or not labelled ramkey-pool)"
        );
    }

    #[test]
    fn the_record_keeps_the_first_degraded_boot() {
        let dir = tempfile::tempdir().unwrap();
        let pool = dir.path();
        assert_eq!(recorded(pool), None);
        assert!(record(pool, &shortfall(&[]), Some(SystemTime::UNIX_EPOCH)).unwrap());
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(86400);
        assert!(!record(pool, &shortfall(&[]), Some(later)).unwrap());
        assert_eq!(recorded(pool).as_deref(), Some("1970-01-01T00-00-00Z"));
        let text = std::fs::read_to_string(pool.join(RECORD)).unwrap();
        assert!(
            text.contains("\ndisks = 1 of 2 disks (present: devid 1 on /dev/vdb;"),
            "{text}"
        );
        clear(pool).unwrap();
        assert_eq!(recorded(pool), None);
    }

    /// A fake `btrfs` under `root/sbin` running `body`.
    fn fake_btrfs(root: &Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let sbin = root.join("sbin");
        std::fs::create_dir_all(&sbin).unwrap();
        let path = sbin.join("btrfs");
        std::fs::write(&path, format!("#!/bin/sh\n[ \"$1\" = --ready ] && exit 0\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Wait out ETXTBSY: a child forked by another test may still hold the file open.
        while let Err(e) = Command::new(&path).arg("--ready").status() {
            assert_eq!(e.raw_os_error(), Some(nix::libc::ETXTBSY), "{e}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_scrub_is_started_without_waiting_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Like btrfs-progs: says it started, and a background child keeps its output open.
        fake_btrfs(
            root,
            "echo \"scrub started on $3, fsid x (pid=1)\"; echo \"$@\" > \"$(dirname \"$0\")/args\"; sleep 20 &",
        );
        let mut tools = Tools { root: root.to_owned() };
        let t = Instant::now();
        let said = tools.start(Path::new("/pool")).unwrap();
        assert!(t.elapsed() < Duration::from_secs(15), "waited for the background child");
        assert_eq!(said, "scrub started on /pool, fsid x (pid=1)");
        assert_eq!(
            std::fs::read_to_string(root.join("sbin/args")).unwrap(),
            "scrub start /pool\n"
        );
        assert!(root.join("var/lib/btrfs").is_dir());

        fake_btrfs(root, "echo 'ERROR: not a btrfs filesystem: /pool' >&2; exit 1");
        let e = tools.start(Path::new("/pool")).unwrap_err().to_string();
        assert_eq!(
            e,
            "btrfs scrub start /pool failed (exit status: 1): ERROR: not a btrfs filesystem: /pool"
        );
        let none = tempfile::tempdir().unwrap();
        let e = Tools {
            root: none.path().to_owned(),
        }
        .start(Path::new("/pool"))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "btrfs is not in the platform; add btrfs-progs to [platform] extras in appliance.toml"
        );
    }
}

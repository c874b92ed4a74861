//! One cgroup v2 per service, `<root>/ramkey/<name>`, holding its caps (`memory.max`,
//! `cpu.max`, `pids.max`); the root (`/sys/fs/cgroup` on the box) is injected.
//!
//! Placement: the spawner writes the new pid into `cgroup.procs` right after `spawn`
//! returns. For that short time (from `exec` to the write, well under a millisecond) the
//! service runs in PID 1's cgroup, unlimited; anything it forks in that window stays
//! there. The race-free ways need code between `fork` and `exec` (`pre_exec`, or `clone3`
//! with `CLONE_INTO_CGROUP`), i.e. `unsafe` outside `sys.rs`, or PID 1 itself stepping into
//! the service's cgroup around the fork, which would charge PID 1's own allocations to the
//! service's `memory.max`. A service that forks in its first microseconds is the only loser,
//! and its process group still gets the stop signal.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use ramkey_image::service::Caps;

/// The controllers the services' caps need.
const CONTROLLERS: &str = "+memory +cpu +pids";

/// The `cpu.max` period in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// A cgroup file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct CgroupError {
    /// The file or directory.
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

/// The `ramkey` subtree of the cgroup v2 hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    /// The tree under `root` (`/sys/fs/cgroup` on the box).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupTree { root: root.into() }
    }

    /// Creates `ramkey/` and enables the controllers for the services below it.
    pub fn prepare(&self) -> Result<(), CgroupError> {
        let base = self.base();
        fs::create_dir_all(&base).map_err(at(&base))?;
        write(&self.root.join("cgroup.subtree_control"), CONTROLLERS)?;
        write(&base.join("cgroup.subtree_control"), CONTROLLERS)
    }

    /// The directory of `service`'s cgroup.
    pub fn path(&self, service: &str) -> PathBuf {
        self.base().join(service)
    }

    /// Creates `service`'s cgroup if needed and writes its caps (`max` where none is set,
    /// so that a changed definition drops an old cap).
    pub fn configure(&self, service: &str, caps: &Caps) -> Result<(), CgroupError> {
        let dir = self.path(service);
        fs::create_dir_all(&dir).map_err(at(&dir))?;
        for (file, value) in cap_files(caps) {
            write(&dir.join(file), &value)?;
        }
        Ok(())
    }

    /// Moves `pid` into `service`'s cgroup.
    pub fn add(&self, service: &str, pid: Pid) -> Result<(), CgroupError> {
        write(&self.path(service).join("cgroup.procs"), &pid.as_raw().to_string())
    }

    /// Kills every process left in `service`'s cgroup (`cgroup.kill`, Linux 5.14).
    pub fn kill(&self, service: &str) -> Result<(), CgroupError> {
        let dir = self.path(service);
        if !dir.exists() {
            return Ok(());
        }
        write(&dir.join("cgroup.kill"), "1")
    }

    fn base(&self) -> PathBuf {
        self.root.join("ramkey")
    }
}

/// The cap files and their values for `caps`.
pub fn cap_files(caps: &Caps) -> [(&'static str, String); 3] {
    let memory = caps
        .memory_mib
        .map_or("max".to_string(), |mib| (u64::from(mib) << 20).to_string());
    let cpu = caps.cpu_percent.map_or(format!("max {CPU_PERIOD_US}"), |percent| {
        format!("{} {CPU_PERIOD_US}", u64::from(percent) * CPU_PERIOD_US / 100)
    });
    let pids = caps.pids.map_or("max".to_string(), |n| n.to_string());
    [("memory.max", memory), ("cpu.max", cpu), ("pids.max", pids)]
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(at(path))
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_caps_and_pids_under_an_injected_root() {
        let dir = tempfile::tempdir().unwrap();
        let tree = CgroupTree::new(dir.path());
        tree.prepare().unwrap();
        let caps = Caps {
            memory_mib: Some(64),
            cpu_percent: Some(250),
            pids: None,
        };
        tree.configure("web", &caps).unwrap();
        tree.add("web", Pid::from_raw(42)).unwrap();
        let read = |f: &str| fs::read_to_string(dir.path().join("ramkey/web").join(f)).unwrap();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("cpu.max"), "250000 100000");
        assert_eq!(read("pids.max"), "max");
        assert_eq!(read("cgroup.procs"), "42");
        let control = fs::read_to_string(dir.path().join("ramkey/cgroup.subtree_control")).unwrap();
        assert_eq!(control, "+memory +cpu +pids");
        tree.kill("web").unwrap();
        assert_eq!(read("cgroup.kill"), "1");
        tree.kill("absent").unwrap();
    }
}

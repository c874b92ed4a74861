//! The VMM's jail, as Firecracker's jailer makes one: `ramkey-vmm` runs in mount, network,
//! IPC and UTS namespaces of its own, chrooted into a small tmpfs that holds only what it
//! needs (the guest's kernel, initramfs and disks bound in, `/dev/kvm` and the macvtap's
//! node made there for it, a `/proc` that shows only its own processes), as an unprivileged
//! host id nobody else has (the zone's id base), without capabilities and with
//! `no_new_privs`; the zone's cgroup caps its memory, processes and CPU, and the VMM adds
//! its own seccomp filter before the guest runs. A VMM that a guest took over finds no
//! host file, device or network to reach.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// What goes into the jail.
#[derive(Debug)]
pub struct Jail {
    /// Where its root is mounted (on the host, in the VMM's mount namespace only).
    pub dir: PathBuf,
    /// The host uid and gid the VMM runs as.
    pub id: u32,
    /// Host files bound in: the file, its name in the jail's root, whether it is writable.
    pub files: Vec<(PathBuf, String, bool)>,
    /// Character devices made in the jail's `/dev` with the numbers of these host nodes,
    /// owned by `id`: the node and its name there.
    pub devices: Vec<(PathBuf, String)>,
}

impl Jail {
    /// In the VMM's process, forked from the launcher and still host root: builds the jail,
    /// enters it as `id` and runs `program` (opened before, as it is not in the jail) with
    /// `argv`. Returns only when something failed, with what.
    pub fn exec(&self, program: &OwnedFd, argv: &[CString]) -> String {
        match self.enter() {
            Ok(()) => match nix::unistd::fexecve(program, argv, &[] as &[CString]) {
                Ok(never) => match never {},
                Err(e) => format!("exec {}: {e}", argv.first().map_or("", |a| a.to_str().unwrap_or(""))),
            },
            Err(e) => e,
        }
    }

    fn enter(&self) -> Result<(), String> {
        // No capability to come back either, whatever a file might carry.
        let paths = crate::base::paths::Paths::system();
        crate::sys::confine::limit_bounding_set(&[], &paths.cap_last_cap()).map_err(|e| e.to_string())?;
        let flags =
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
        nix::sched::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
        // Nothing mounted from here on reaches the host's namespace.
        mount(None, paths.root(), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
        let dir = &self.dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=0755,size=64k,nr_inodes=64"),
        )?;
        let dev = dir.join("dev");
        std::fs::create_dir(&dev).map_err(|e| format!("{}: {e}", dev.display()))?;
        let id = (Uid::from_raw(self.id), Gid::from_raw(self.id));
        for (node, name) in &self.devices {
            let rdev = std::fs::metadata(node)
                .map_err(|e| format!("{}: {e}", node.display()))?
                .rdev();
            let made = dev.join(name);
            nix::sys::stat::mknod(&made, SFlag::S_IFCHR, Mode::S_IRUSR | Mode::S_IWUSR, rdev)
                .and_then(|()| nix::unistd::chown(&made, Some(id.0), Some(id.1)))
                .map_err(|e| format!("{}: {e}", made.display()))?;
        }
        for (file, name, writable) in &self.files {
            let target = dir.join(name);
            std::fs::File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            mount(Some(&file.to_string_lossy()), &target, None, MsFlags::MS_BIND, None)?;
            let mut again =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            if !writable {
                again |= MsFlags::MS_RDONLY;
            }
            mount(None, &target, None, again, None)?;
        }
        // Its own processes only (its threads' memory figures); the others' are invisible.
        let proc = dir.join("proc");
        std::fs::create_dir(&proc).map_err(|e| format!("{}: {e}", proc.display()))?;
        mount(
            Some("proc"),
            &proc,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("hidepid=invisible,subset=pid"),
        )?;
        mount(
            None,
            dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
            None,
        )?;
        // A chroot, not the jail moved over `/`: the kernel then sees the VMM as chrooted and
        // refuses it a user namespace (`unshare(CLONE_NEWUSER)`, a way back to capabilities).
        nix::unistd::chdir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
        nix::unistd::chdir(paths.root()).map_err(|e| format!("chdir /: {e}"))?;
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setresgid(id.1, id.1, id.1).map_err(|e| format!("setresgid: {e}"))?;
        // From root to another uid: every capability goes.
        nix::unistd::setresuid(id.0, id.0, id.0).map_err(|e| format!("setresuid: {e}"))?;
        crate::sys::confine::set_no_new_privs().map_err(|e| e.to_string())
    }
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    nix::mount::mount(source, target, fstype, flags, data)
        .map_err(|e| format!("mount {} on {}: {e}", source.unwrap_or("-"), target.display()))
}

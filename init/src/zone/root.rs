//! The zone's root, built by its PID 1 (still host root, in the zone's fresh mount
//! namespace) before it enters it: the image's payload, its owners shifted into the zone's
//! id range ([`super::ids`]), read-only through a loop device,
//! the writable layer over it (reset when the image changed), the volumes, a masked `/proc`,
//! a read-only `/sys`, a `/dev` of the standard few nodes, `/tmp`, `/run` and the settings
//! file. Every mount target inside the zone is resolved beneath its root without following
//! symlinks ([`sys::beneath`]), every mount the zone can write to is `nodev,nosuid`. The
//! mounts are the [`super::root_plan`]'s steps, run here in order.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::root_plan::{At, Step, plan};
use super::{RUN_DIR, SETTINGS_FILE, ZoneError, ZoneSpec};
use crate::base::paths::Paths;
use crate::sys;
use crate::sys::beneath;

/// Where the writable layer notes the payload it was made over (in the zone's state
/// directory, beside `upper/`).
const ROOT_IMAGE: &str = "root-image";

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

pub(super) fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), ZoneError> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|errno| ZoneError::Mount {
        what: source.map_or_else(|| fstype.unwrap_or("-").to_string(), |s| s.display().to_string()),
        target: target.to_path_buf(),
        errno,
    })
}

fn mkdir(path: &Path) -> Result<(), ZoneError> {
    fs::create_dir_all(path).map_err(|source| ZoneError::Mkdir {
        path: path.to_path_buf(),
        source,
    })
}

/// A mount target inside the zone: the directory `inside` beneath `root`, made if missing,
/// never through a symlink. Mount on its [`beneath::fd_path`].
fn target(root: &Path, inside: &str) -> Result<OwnedFd, ZoneError> {
    Ok(beneath::make_dir(root, Path::new(inside))?)
}

/// The path of what is mounted on `at` now (the magic link of [`beneath::fd_path`] leads
/// to the directory beneath the mount).
fn mounted_on(proc: &Path, at: &OwnedFd) -> Result<PathBuf, ZoneError> {
    let link = beneath::fd_path(proc, at);
    fs::read_link(&link).map_err(ZoneError::file(&link))
}

/// Binds `source` on `target` with `flags` (a bind mount takes its flags only when
/// remounted).
fn bind(source: &Path, target: &Path, flags: MsFlags) -> Result<(), ZoneError> {
    mount(Some(source), target, None, MsFlags::MS_BIND, None)?;
    remount(target, flags)
}

/// Sets `flags` on the bind mount at `target` (its root: a path, not a descriptor of the
/// directory beneath it).
fn remount(target: &Path, flags: MsFlags) -> Result<(), ZoneError> {
    mount(None, target, None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags, None)
}

/// Builds the zone's root, its files owned by the zone's ids (host ids from `ids`, the
/// zone's base); returns where it is mounted. `paths` are the host's.
pub fn build(paths: &Paths, spec: &ZoneSpec, ids: u32) -> Result<PathBuf, ZoneError> {
    let run = paths.root().join(RUN_DIR).join(&spec.name);
    let (lower, root) = (run.join("lower"), run.join("root"));
    let (upper, work) = (spec.state_dir.join("upper"), spec.state_dir.join("work"));
    let volumes = spec.state_dir.join("volumes");
    reset_if_image_changed(spec)?;
    for dir in [&lower, &root, &upper, &work] {
        mkdir(dir)?;
    }
    super::ids::shift_trees(&spec.state_dir, &[&upper, &volumes], ids)?;
    super::ids::give(&upper, ids)?;
    let made = run.join("payload.made");
    let image = super::ids::payload(
        &spec.image,
        spec.payload_size,
        &spec.sha256,
        &spec.state_dir,
        ids,
        &made,
    )?;
    let (device, held) = sys::confine::attach_loop(
        &image,
        spec.payload_size,
        &paths.dev(),
        sys::confine::LoopMode::ReadOnly,
    )
    .map_err(|source| ZoneError::LoopDevice {
        image: spec.image.clone(),
        source,
    })?;
    let mut steps = plan(spec, paths, ids, device, lower, root.clone()).into_iter();
    let mut run = Run {
        root: &root,
        proc: paths.proc(),
        ids,
        at: BTreeMap::new(),
    };
    // The payload's mount holds the device now; it is cleared when the zone's mounts go away.
    steps.next().map_or(Ok(()), |first| run.step(first))?;
    drop(held);
    for step in steps {
        run.step(step)?;
    }
    // In the fresh /run: nothing of the writable layer is on the way.
    let settings = root.join(SETTINGS_FILE);
    let dir = settings.parent().unwrap_or(&root);
    mkdir(dir)?;
    fs::write(&settings, &spec.settings).map_err(ZoneError::file(&settings))?;
    super::ids::give(dir, ids)?;
    super::ids::give(&settings, ids)?;
    Ok(root)
}

/// Empties the writable layer when the zone's image is not the one it was made over (a
/// swap, a rollback, a boot fallback, a new image in the config): a file the zone changed
/// outside its volumes (`/usr/sbin/nginx`, `/etc/ld.so.preload`) must not shadow the new,
/// verified image. Kept when the config asks for a persistent root.
fn reset_if_image_changed(spec: &ZoneSpec) -> Result<(), ZoneError> {
    let record = spec.state_dir.join(ROOT_IMAGE);
    let made_over = fs::read_to_string(&record).unwrap_or_default();
    if made_over.trim() != spec.sha256 && !spec.persistent_root {
        for layer in ["upper", "work"] {
            let dir = spec.state_dir.join(layer);
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ZoneError::ResetRoot { dir, source }),
            }
        }
        if !made_over.is_empty() {
            crate::notice!(
                "zone {}: the image changed: writable root reset (only the volumes are kept)",
                spec.name
            );
        }
    }
    mkdir(&spec.state_dir)?;
    fs::write(&record, format!("{}\n", spec.sha256)).map_err(ZoneError::file(&record))
}

/// Runs a plan's steps beneath `root`, keeping the directories mounted on by name.
struct Run<'a> {
    root: &'a Path,
    /// The host's procfs, for the paths of descriptors.
    proc: PathBuf,
    ids: u32,
    at: BTreeMap<String, OwnedFd>,
}

impl Run<'_> {
    /// Where `at` is now (a descriptor's path for a directory beneath the root, kept).
    fn path(&mut self, at: &At) -> Result<PathBuf, ZoneError> {
        match at {
            At::Host(path) => Ok(path.clone()),
            At::Beneath(inside) => {
                let fd = target(self.root, inside)?;
                let path = beneath::fd_path(&self.proc, &fd);
                self.at.insert(inside.clone(), fd);
                Ok(path)
            }
            At::Mounted(inside, sub) => {
                let fd = self
                    .at
                    .get(inside)
                    .ok_or_else(|| ZoneError::NotInPlan(inside.clone()))?;
                let path = mounted_on(&self.proc, fd)?;
                Ok(if sub.is_empty() { path } else { path.join(sub) })
            }
        }
    }

    fn step(&mut self, step: Step) -> Result<(), ZoneError> {
        match step {
            Step::Mount {
                source,
                at,
                fstype,
                flags,
                data,
            } => mount(source.as_deref(), &self.path(&at)?, fstype, flags, data.as_deref()),
            Step::Remount(at, flags) => remount(&self.path(&at)?, flags),
            Step::Restrict { at, flags, optional } => {
                let path = self.path(&at)?;
                if optional && !path.exists() {
                    return Ok(());
                }
                bind(&path, &path, flags)
            }
            Step::Mask { at, null } => mask(&self.path(&at)?, &null),
            Step::HostDir(path) => {
                mkdir(&path)?;
                super::ids::give(&path, self.ids)
            }
            Step::File(at) => {
                let path = self.path(&at)?;
                fs::write(&path, b"").map_err(ZoneError::file(&path))
            }
            Step::Dir(at) => mkdir(&self.path(&at)?),
            Step::Symlink(at, to) => {
                let path = self.path(&at)?;
                std::os::unix::fs::symlink(to, &path).map_err(ZoneError::file(&path))
            }
        }
    }
}

/// Hides `path` (when it exists): an empty read-only tmpfs over a directory, `null` bound
/// over a file.
fn mask(path: &Path, null: &Path) -> Result<(), ZoneError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            NOSUID_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
            Some("size=0"),
        ),
        Ok(_) => mount(Some(null), path, None, MsFlags::MS_BIND, None),
        Err(_) => Ok(()),
    }
}

//! The resources' replicated disks: set up when the agent starts (a sparse file on the pool,
//! created on a blank pool, on a loop device; DRBD's and keepalived's configuration; DRBD
//! up) and taken down when it stops, so that the pool unmounts cleanly and DRBD records a
//! clean stop rather than a crashed primary.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Places, Plan, RAMKEYCTL, conf, drbd, say, write_secret};
use crate::base::paths::Paths;
use crate::sys::confine::LoopMode;

/// Creates each resource's disk on a blank pool, attaches it to a loop device, writes
/// DRBD's and keepalived's configuration and brings DRBD up.
pub fn setup(paths: &Paths, places: &Places, plan: &Plan) -> Result<(), String> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    fs::create_dir_all(places.pool_dir()).map_err(io(places.pool_dir()))?;
    // drbdadm's own records (on the pool's /var when there is one, which starts empty).
    for dir in ["var/lib/drbd", "var/run/drbd", "var/lock"] {
        let dir = paths.root().join(dir);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
    }
    let mut disks = Vec::new();
    let mut created = Vec::new();
    for r in &plan.resources {
        let file = places.disk(&r.name);
        if !file.exists() {
            let f = fs::File::create(&file).map_err(io(&file))?;
            f.set_len(plan.size).map_err(io(&file))?;
            fs::write(places.fresh(&r.name), "").map_err(io(&places.fresh(&r.name)))?;
            created.push(r.name.clone());
            say(
                paths,
                &format!(
                    "cluster: {}: new replicated disk {} ({} MiB)",
                    r.name,
                    file.display(),
                    plan.size >> 20
                ),
            );
        }
        disks.push((r.clone(), loop_device(paths, &file)?));
    }
    let ramkeyctl = RAMKEYCTL;
    let device = |minor| places.device(minor).display().to_string();
    let drbd_conf = conf::drbd(plan, &disks, device, ramkeyctl);
    write_secret(&places.drbd_conf(), &drbd_conf).map_err(io(&places.drbd_conf()))?;
    let keepalived = conf::keepalived(plan, super::CHECK, &places.fifo());
    write_secret(&places.keepalived_conf(), &keepalived).map_err(io(&places.keepalived_conf()))?;
    if !places.fifo().exists() {
        nix::unistd::mkfifo(&places.fifo(), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("{}: {e}", places.fifo().display()))?;
    }
    for r in &plan.resources {
        let configured = drbd::device(&paths.proc(), r.minor).is_some_and(|d| d.cstate != "Unconfigured");
        if configured {
            continue;
        }
        if created.contains(&r.name) {
            drbd::adm(&places.drbd_conf(), &["create-md", "--force", &r.name])?;
        }
        drbd::adm(&places.drbd_conf(), &["up", &r.name]).map_err(|e| {
            format!(
                "{e}; if {} never held data, delete it and restart the service",
                places.disk(&r.name).display()
            )
        })?;
    }
    Ok(())
}

/// The loop device backed by `file`: the one already attached (the agent restarted), else
/// a new one, with direct I/O: what DRBD writes, its metadata too, is on the pool's disk
/// when the write completes, not in this box's page cache.
fn loop_device(paths: &Paths, file: &Path) -> Result<String, String> {
    if let Some(found) = attached(paths, file) {
        return Ok(found.display().to_string());
    }
    let backing = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let (device, _open) = crate::sys::confine::attach_loop(&backing, 0, &paths.dev(), LoopMode::WritableDirect)
        .map_err(|e| format!("a loop device for {}: {e}", file.display()))?;
    Ok(device.display().to_string())
}

/// The loop device `file` is attached to, if any.
fn attached(paths: &Paths, file: &Path) -> Option<PathBuf> {
    let entries = fs::read_dir(paths.sys().join("block")).ok()?;
    entries.flatten().find_map(|e| {
        let backing = fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
        (Path::new(backing.trim()) == file).then(|| paths.dev().join(e.file_name()))
    })
}

/// Takes each resource's DRBD device down (after its demotion: DRBD refuses while it is
/// primary) and detaches its loop device, so that nothing holds the pool's files open.
pub fn take_down(paths: &Paths, places: &Places, plan: &Plan) {
    for r in &plan.resources {
        let up = drbd::device(&paths.proc(), r.minor).is_some_and(|d| d.cstate != "Unconfigured");
        if up && let Err(e) = drbd::adm(&places.drbd_conf(), &["down", &r.name]) {
            say(paths, &format!("cluster: {}: DRBD not taken down: {e}", r.name));
            continue;
        }
        let file = places.disk(&r.name);
        if let Some(device) = attached(paths, &file)
            && let Err(e) = crate::sys::confine::detach_loop(&device)
        {
            say(paths, &format!("cluster: {}: {}: {e}", r.name, device.display()));
            continue;
        }
        say(
            paths,
            &format!("cluster: {}: DRBD down, {} released", r.name, file.display()),
        );
    }
}

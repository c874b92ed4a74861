//! `ramkey-cluster`, the agent: brings each resource's DRBD device up (its backing file on
//! the pool, created on a blank pool), writes keepalived's and DRBD's configuration, then
//! follows keepalived's state changes, one at a time and always towards the latest: MASTER
//! promotes the resources, anything else demotes them.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

use super::{Places, Plan, RAMKEYCTL, Resource, conf, drbd, say};
use crate::base::paths::Paths;
use crate::runtime::control;
use crate::supervisor::protocol::{Action, Request, Response};
use crate::supervisor::state::State;
use crate::sys::confine::LoopMode;
use crate::zone::ZoneSpec;

/// How long a promotion waits for DRBD to allow it (the peer's death noticed, a fresh
/// pair connected) and a demotion for the zone to stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs the agent; returns only on a setup failure (exit status 1).
pub fn main() -> i32 {
    let paths = Paths::system();
    let places = Places::new(&paths);
    // A restarted agent is not ready until it has set DRBD up again.
    let _ = fs::remove_file(places.ready());
    let plan = match Plan::read(&places) {
        Ok(plan) => plan,
        Err(e) => {
            say(&paths, &format!("cluster: not started: {e}"));
            return 1;
        }
    };
    let started = Instant::now();
    if let Err(e) = setup(&paths, &places, &plan) {
        say(&paths, &format!("cluster: not started: {e}"));
        return 1;
    }
    say(
        &paths,
        &format!(
            "cluster: DRBD up for {} in {} ms; waiting for keepalived",
            names(&plan),
            started.elapsed().as_millis()
        ),
    );
    let _ = fs::write(places.ready(), "");
    follow(&paths, &places, &plan);
    0
}

fn names(plan: &Plan) -> String {
    plan.resources
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn setup(paths: &Paths, places: &Places, plan: &Plan) -> Result<(), String> {
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
    fs::write(places.drbd_conf(), drbd_conf).map_err(io(&places.drbd_conf()))?;
    let keepalived = conf::keepalived(plan, super::CHECK, &places.fifo());
    fs::write(places.keepalived_conf(), keepalived).map_err(io(&places.keepalived_conf()))?;
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
    let find = || {
        let entries = fs::read_dir(paths.sys().join("block")).ok()?;
        entries.flatten().find_map(|e| {
            let backing = fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            (Path::new(backing.trim()) == file).then(|| paths.dev().join(e.file_name()).display().to_string())
        })
    };
    if let Some(found) = find() {
        return Ok(found);
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

/// keepalived's states from its FIFO, the latest acted on.
fn follow(paths: &Paths, places: &Places, plan: &Plan) {
    let (tx, rx) = mpsc::channel();
    let fifo = places.fifo();
    std::thread::spawn(move || {
        // Read and write, so that keepalived's restarts never give us an end of file.
        let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(&fifo) else {
            return;
        };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Some(state) = instance_state(&line)
                && tx.send(state).is_err()
            {
                return;
            }
        }
    });
    let mut held = false;
    while let Ok(mut state) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            state = newer;
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let _ = fs::write(places.role(), format!("{state} {since}\n"));
        let master = state == "MASTER";
        if master == held && !master {
            continue;
        }
        if master {
            say(
                paths,
                &format!("cluster: keepalived says MASTER: taking {}", names(plan)),
            );
            let done = "DRBD primary, volumes mounted, zone starting";
            for line in each(paths, plan, "promoted", done, |r| promote(paths, places, r)) {
                let _ = fs::write(places.unpromoted(), format!("{line}\n"));
                say(paths, &format!("{line}; handing over to the peer"));
            }
        } else {
            say(
                paths,
                &format!("cluster: keepalived says {state}: releasing {}", names(plan)),
            );
            let _ = fs::remove_file(places.unpromoted());
            let done = "zone stopped, unmounted, DRBD secondary";
            for line in each(paths, plan, "demoted", done, |r| demote(paths, places, r)) {
                say(paths, &line);
            }
        }
        held = master;
    }
}

/// Does `act` to each resource and says how long it took (`done`: what that was); returns
/// the failures' lines (`cluster: NAME: not VERB: why`).
fn each(
    paths: &Paths,
    plan: &Plan,
    verb: &str,
    done: &str,
    act: impl Fn(&Resource) -> Result<(), String>,
) -> Vec<String> {
    let started = Instant::now();
    let mut failed = Vec::new();
    for r in &plan.resources {
        match act(r) {
            Ok(()) => say(
                paths,
                &format!(
                    "cluster: {}: {verb} in {} ms ({done})",
                    r.name,
                    started.elapsed().as_millis()
                ),
            ),
            Err(e) => failed.push(format!("cluster: {}: not {verb}: {e}", r.name)),
        }
    }
    failed
}

/// The state of our instance in a keepalived FIFO line (`INSTANCE "ramkey" MASTER 150`);
/// not the events it reports the same way (`MASTER_RX_LOWER_PRI`: the master heard a
/// lower-priority advert, and stays master).
fn instance_state(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    (words.next()? == "INSTANCE").then_some(())?;
    (words.next()?.trim_matches('"') == super::INSTANCE).then_some(())?;
    let state = words.next()?;
    ["MASTER", "BACKUP", "FAULT", "STOP", "DELETED"]
        .contains(&state)
        .then(|| state.to_string())
}

fn promote(paths: &Paths, places: &Places, r: &Resource) -> Result<(), String> {
    let conf = places.drbd_conf();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let d = drbd::device(&paths.proc(), r.minor).ok_or("DRBD does not show the device")?;
        if d.roles.0 == "Primary" {
            break;
        }
        let fresh_pair = d.cstate == "Connected" && d.disks == ("Inconsistent".into(), "Inconsistent".into());
        // Two blank disks: this one becomes the source of the first full sync, after which
        // the two are the same block for block (`new-current-uuid --clear-bitmap` would skip
        // the sync and leave them differing wherever nothing was written yet).
        let force = fresh_pair && places.fresh(&r.name).exists();
        let args: &[&str] = if force {
            &["primary", "--force", &r.name]
        } else {
            &["primary", &r.name]
        };
        let tried = drbd::adm(&conf, args);
        if tried.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let hint = if d.disks.0 == "UpToDate" {
                String::new()
            } else {
                format!(
                    "; if the peer's copy is lost for good, take this one: drbdadm primary --force {}",
                    r.name
                )
            };
            return Err(format!(
                "DRBD is {} {}/{} {}/{}: {}{hint}",
                d.cstate,
                d.roles.0,
                d.roles.1,
                d.disks.0,
                d.disks.1,
                tried.err().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let device = places.device(r.minor);
    if !has_ext4(&device) {
        let out = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-L", &r.name])
            .arg(&device)
            .output()
            .map_err(|e| format!("mkfs.ext4: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mkfs.ext4 {}: {}",
                device.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let _ = fs::remove_file(places.fresh(&r.name));
    fs::create_dir_all(&r.volumes).map_err(|e| format!("{}: {e}", r.volumes.display()))?;
    match nix::mount::mount(
        Some(&device),
        &r.volumes,
        Some("ext4"),
        MsFlags::MS_NOATIME,
        None::<&str>,
    ) {
        Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
        Err(e) => return Err(format!("mounting {} on {}: {e}", device.display(), r.volumes.display())),
    }
    svcadm(paths, Action::Enable, &ZoneSpec::service_name(&r.name))
}

fn demote(paths: &Paths, places: &Places, r: &Resource) -> Result<(), String> {
    let service = ZoneSpec::service_name(&r.name);
    svcadm(paths, Action::Disable, &service)?;
    let deadline = Instant::now() + PATIENCE;
    while state(paths, &service).is_some_and(|s| s != State::Disabled) {
        if Instant::now() > deadline {
            return Err(format!("{service} did not stop in {} s", PATIENCE.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match nix::mount::umount2(&r.volumes, MntFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(format!("unmounting {}: {e}", r.volumes.display())),
    }
    let d = drbd::device(&paths.proc(), r.minor);
    if d.is_some_and(|d| d.roles.0 == "Primary") {
        drbd::adm(&places.drbd_conf(), &["secondary", &r.name])?;
    }
    Ok(())
}

/// Whether `device` holds an ext4 (or ext2/3) filesystem: its superblock's magic.
fn has_ext4(device: &Path) -> bool {
    let mut head = [0u8; 1082];
    fs::File::open(device)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head[1080..1082] == [0x53, 0xef])
}

fn svcadm(paths: &Paths, action: Action, service: &str) -> Result<(), String> {
    let request = Request::Svcadm {
        action,
        service: service.to_string(),
    };
    match control::call(&paths.control_socket(), &request, Duration::from_secs(15)) {
        Ok(Response::Error { message }) => Err(message),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("asking PID 1 to {action:?} {service}: {e}")),
    }
}

/// A service's state, from PID 1.
pub fn state(paths: &Paths, service: &str) -> Option<State> {
    match control::call(
        &paths.control_socket(),
        &Request::Svcs { all: true },
        Duration::from_secs(15),
    ) {
        Ok(Response::Svcs { services }) => services.into_iter().find(|s| s.name == service).map(|s| s.state),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_instances_state_from_keepalived_lines() {
        assert_eq!(
            instance_state("INSTANCE \"ramkey\" MASTER 150").as_deref(),
            Some("MASTER")
        );
        assert_eq!(instance_state("INSTANCE \"ramkey\" FAULT 0").as_deref(), Some("FAULT"));
        assert_eq!(instance_state("INSTANCE \"other\" MASTER 150"), None);
        assert_eq!(instance_state("INSTANCE \"ramkey\" MASTER_RX_LOWER_PRI 150"), None);
        assert_eq!(instance_state("GROUP \"ramkey\" MASTER"), None);
    }
}

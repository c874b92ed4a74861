//! `ramkeyctl cluster`: the HA pair from this node ([`crate::cluster`]): its status, a
//! hand-over for maintenance, standby, the resolution of a split brain, and the callbacks
//! keepalived (`check`) and DRBD (`split-brain`) and the supervisor (`ready`) use.

use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use crate::base::paths::Paths;
use crate::cluster::{Places, Plan, drbd, role, say};
use crate::supervisor::state::State;
use crate::zone::ZoneSpec;

/// How long `failover` waits for the peer to take the resources.
const HAND_OVER: Duration = Duration::from_secs(120);

const USAGE: &str = "usage: ramkeyctl cluster status | failover | standby | unstandby | resolve NAME [--discard-here]";

/// Runs `ramkeyctl cluster ARGS`.
pub fn run(args: &[String], out: &mut dyn Write) -> Result<(), String> {
    let paths = Paths::system();
    let places = Places::new(&paths);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = match words.as_slice() {
        ["status"] | [] => status(&paths, &places)?,
        ["check"] => check(&paths, &places)?,
        ["ready"] => places
            .ready()
            .exists()
            .then(String::new)
            .ok_or("the cluster agent has not brought DRBD up yet")?,
        ["standby"] => {
            std::fs::write(places.standby(), "").map_err(|e| format!("{}: {e}", places.standby().display()))?;
            "standby: this node hands its resources to the peer and takes none until `ramkeyctl cluster unstandby`\n"
                .into()
        }
        ["unstandby"] => {
            let _ = std::fs::remove_file(places.standby());
            "unstandby: this node may take the resources again (it does not take them back from a healthy peer)\n"
                .into()
        }
        ["failover"] => failover(&paths, &places)?,
        ["split-brain"] => split_brain(&paths, &places)?,
        ["resolve", name] => resolve(&paths, &places, name, false)?,
        ["resolve", name, "--discard-here"] => resolve(&paths, &places, name, true)?,
        _ => return Err(USAGE.into()),
    };
    write!(out, "{text}").map_err(|e| e.to_string())
}

/// keepalived's health check: fails (so that this node hands over, or takes nothing) while
/// the agent is not ready, in standby or handing over, or holding a resource whose zone
/// is in maintenance.
fn check(paths: &Paths, places: &Places) -> Result<String, String> {
    if !places.ready().exists() {
        return Err("the cluster agent is not ready".into());
    }
    if places.standby().exists() || places.handing_over().exists() {
        return Err("standby".into());
    }
    if let Ok(why) = std::fs::read_to_string(places.unpromoted()) {
        return Err(why.trim_end().to_string());
    }
    if role(places).0 == "MASTER" {
        let plan = Plan::read(places)?;
        for r in &plan.resources {
            let service = ZoneSpec::service_name(&r.name);
            if crate::cluster::agent::state(paths, &service) == Some(State::Maintenance) {
                return Err(format!("{service} is in maintenance"));
            }
        }
    }
    Ok(String::new())
}

fn status(paths: &Paths, places: &Places) -> Result<String, String> {
    let plan = Plan::read(places)?;
    let (role, since) = role(places);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node: {} (priority {}), peer {} at {} over {}",
        plan.node, plan.priority, plan.peer, plan.peer_address, plan.link
    );
    let since = since
        .map(|s| format!(" for {} s", now.saturating_sub(s)))
        .unwrap_or_default();
    let standby = if places.standby().exists() { ", standby" } else { "" };
    let _ = writeln!(out, "role: {role}{since}{standby}");
    if let Ok(why) = std::fs::read_to_string(places.unpromoted()) {
        let _ = write!(out, "{why}");
    }
    let devices: Vec<_> = plan
        .resources
        .iter()
        .map(|r| drbd::device(&paths.proc(), r.minor))
        .collect();
    let connected = devices.iter().flatten().any(|d| d.roles.1 != "Unknown");
    let peer = match (connected, role.as_str()) {
        (true, _) => "reachable (DRBD connected)",
        (false, "BACKUP") => "reachable (VRRP adverts heard), DRBD not connected",
        _ => "NOT reachable over the link",
    };
    let _ = writeln!(out, "peer: {peer}");
    for (r, d) in plan.resources.iter().zip(&devices) {
        let service = ZoneSpec::service_name(&r.name);
        let state = crate::cluster::agent::state(paths, &service);
        let here = match state {
            Some(State::Disabled) | None => match d {
                Some(d) if d.roles.1 == "Primary" => "on the peer".to_string(),
                _ => "not running on this node".to_string(),
            },
            Some(s) => format!("here, {}", format!("{s:?}").to_lowercase()),
        };
        let _ = writeln!(out, "resource {}: {here}", r.name);
        match d {
            Some(d) => {
                let synced = d.synced.as_ref().map(|s| format!(", resync {s}")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "drbd {}: {} {}/{} {}/{}, {} KiB out of sync{synced}",
                    r.name, d.cstate, d.roles.0, d.roles.1, d.disks.0, d.disks.1, d.out_of_sync_kib
                );
            }
            None => {
                let _ = writeln!(out, "drbd {}: not up", r.name);
            }
        }
        if let Ok(note) = std::fs::read_to_string(places.split_brain(&r.name)) {
            let _ = write!(out, "{note}");
        }
    }
    Ok(out)
}

/// What to say about a split brain of `name`, and what to do.
fn split_brain_note(name: &str) -> String {
    format!(
        "SPLIT BRAIN on {name}: both nodes wrote to {name}'s volumes while they could not reach each other; \
         DRBD stopped replicating it and discarded nothing. Decide which node's changes to keep; on the OTHER \
         node run `ramkeyctl cluster resolve {name} --discard-here` (its changes since the split are lost; copy \
         them out first), then on the node you keep run `ramkeyctl cluster resolve {name}`\n"
    )
}

/// DRBD's split-brain handler (DRBD_RESOURCE names the resource).
fn split_brain(paths: &Paths, places: &Places) -> Result<String, String> {
    let name = std::env::var("DRBD_RESOURCE").map_err(|_| "DRBD_RESOURCE is not set (DRBD calls this)")?;
    let note = split_brain_note(&name);
    std::fs::write(places.split_brain(&name), &note).map_err(|e| e.to_string())?;
    say(paths, &format!("cluster: {}", note.trim_end()));
    Ok(String::new())
}

fn resolve(paths: &Paths, places: &Places, name: &str, discard_here: bool) -> Result<String, String> {
    let plan = Plan::read(places)?;
    let r = plan
        .resource(name)
        .ok_or_else(|| format!("{name} is not a cluster resource"))?;
    let conf = places.drbd_conf();
    let d = drbd::device(&paths.proc(), r.minor).ok_or("DRBD does not show the device")?;
    let mut out = String::new();
    if discard_here {
        if d.roles.0 == "Primary" {
            return Err(format!(
                "{name} runs on this node (DRBD primary): hand it over first (`ramkeyctl cluster standby`), \
                 or discard the other node's copy instead"
            ));
        }
        let _ = drbd::adm(&conf, &["disconnect", name]);
        drbd::adm(&conf, &["connect", "--discard-my-data", name])?;
        let _ = writeln!(out, "{name}: this node's copy is discarded; it resyncs from the peer");
    } else {
        if d.cstate == "StandAlone" {
            drbd::adm(&conf, &["connect", name])?;
        }
        let _ = writeln!(
            out,
            "{name}: this node's copy is kept; the peer resyncs from it once it discards its own"
        );
    }
    let _ = std::fs::remove_file(places.split_brain(name));
    say(paths, &format!("cluster: {}", out.trim_end()));
    Ok(out)
}

/// Hands the resources to the peer (the failing health check puts keepalived in FAULT)
/// and waits until the peer runs them, then lets this node be a backup again.
fn failover(paths: &Paths, places: &Places) -> Result<String, String> {
    let plan = Plan::read(places)?;
    let roles = |r: &crate::cluster::Resource| drbd::device(&paths.proc(), r.minor).map(|d| d.roles);
    let peer_runs_all = || {
        plan.resources
            .iter()
            .all(|r| roles(r).is_some_and(|(here, peer)| here == "Secondary" && peer == "Primary"))
    };
    if !plan
        .resources
        .iter()
        .any(|r| roles(r).is_some_and(|(here, _)| here == "Primary"))
    {
        if peer_runs_all() {
            return Ok(format!(
                "failover: nothing to hand over: {} runs the resources\n",
                plan.peer
            ));
        }
        return Err(format!(
            "this node runs no resource (role {}); nothing to hand over",
            role(places).0
        ));
    }
    std::fs::write(places.handing_over(), "").map_err(|e| e.to_string())?;
    let started = Instant::now();
    while !peer_runs_all() {
        if started.elapsed() > HAND_OVER {
            let _ = std::fs::remove_file(places.handing_over());
            return Err(format!(
                "the peer did not take the resources in {} s; this node may take them again",
                HAND_OVER.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = std::fs::remove_file(places.handing_over());
    Ok(format!(
        "failover: {} handed to {} in {:.1} s\n",
        plan.resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        plan.peer,
        started.elapsed().as_secs_f64()
    ))
}

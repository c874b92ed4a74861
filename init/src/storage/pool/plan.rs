//! Deciding from the disks and `[pool]`: mount, create, or diskless. A disk is formatted
//! only when `[pool]` names it in `disks` (or `mirror`) and in `create`, its id names no
//! other disk, and nothing is found on it.

use ramkey_config::{Filesystem, Pool};

use super::find::{self, Disk};
use super::mirror::Shortfall;
use super::probe::FsKind;
use super::signatures::Found;
use super::status::Refused;
use super::{LABEL, describe};

/// What to do after looking at the disks.
pub(super) enum Plan {
    Mount {
        kind: FsKind,
        disks: Vec<Disk>,
        /// How many devices the filesystem has (1 for ext4).
        devices: u64,
        /// A btrfs filesystem with fewer of its devices attached than it has.
        short: Option<Shortfall>,
    },
    Create {
        fs: Filesystem,
        disks: Vec<Disk>,
        /// The `[pool]` key each disk is named under (`disks`, `mirror`), for the advice.
        keys: Vec<&'static str>,
    },
    Diskless {
        refused: Vec<Refused>,
        problem: Option<String>,
    },
}

fn diskless(problem: String) -> Plan {
    Plan::Diskless {
        refused: Vec::new(),
        problem: Some(problem),
    }
}

/// Logs why `disk` (named under `[pool] key`) is left alone, with what to do about it.
pub(super) fn refuse(disk: &Disk, key: &str, found: Found) -> Refused {
    let at = found
        .offset
        .map_or_else(String::new, |o| format!(" (found at offset {o})"));
    crate::notice!(
        "pool: {} ({}) holds {}{at}: not touching it; {}",
        disk.node.display(),
        disk.id(),
        found.what,
        found.advice(&disk.node, key)
    );
    Refused {
        node: disk.node.clone(),
        id: disk.id(),
        what: found.what,
        offset: found.offset,
    }
}

/// The filesystem the labelled devices hold: the btrfs devices sharing the first one's fsid,
/// or the first ext4 one; with how many devices it has.
fn chosen<'a>(labelled: &[&'a Disk]) -> Option<(FsKind, Vec<&'a Disk>, u64)> {
    let first = *labelled.first()?;
    let fs = first.fs.as_ref()?;
    let disks: Vec<&Disk> = match fs.kind {
        FsKind::Btrfs => labelled
            .iter()
            .copied()
            .filter(|d| d.fs.as_ref().is_some_and(|f| f.fsid == fs.fsid))
            .collect(),
        FsKind::Ext(_) => vec![first],
    };
    Some((fs.kind, disks, fs.num_devices.max(1)))
}

/// The distinct btrfs devids among `disks`, with the first node of each, by devid.
fn devids(disks: &[&Disk]) -> Vec<(u64, std::path::PathBuf)> {
    let mut ids: Vec<(u64, std::path::PathBuf)> = disks
        .iter()
        .filter_map(|d| Some((d.fs.as_ref()?.devid, d.node.clone())))
        .collect();
    ids.sort_by_key(|(devid, _)| *devid);
    ids.dedup_by_key(|(devid, _)| *devid);
    ids
}

/// The shortfall of a btrfs filesystem on `disks`, when it has more devices than attached;
/// `missing`: the `[pool]` ids not among them.
fn shortfall(kind: FsKind, disks: &[&Disk], devices: u64, missing: Vec<String>) -> Option<Shortfall> {
    let present = devids(disks);
    (kind == FsKind::Btrfs && (present.len() as u64) < devices).then_some(Shortfall {
        present,
        total: devices,
        missing,
    })
}

/// The labelled devices to mount (see [`chosen`]); `named` the `[pool]` ids and keys, to say
/// which are missing from a btrfs mirror.
fn mountable(labelled: &[&Disk], named: &[(&str, &str)]) -> Option<Plan> {
    let (kind, disks, devices) = chosen(labelled)?;
    if kind != FsKind::Btrfs && labelled.len() > 1 {
        crate::warn!(
            "pool: {} disks are labelled {LABEL}; using {}",
            labelled.len(),
            disks[0].node.display()
        );
    }
    let missing = named
        .iter()
        .filter(|(id, _)| !disks.iter().any(|d| d.ids.iter().any(|i| i == id)))
        .map(|(id, key)| format!("{id} (named in [pool] {key})"))
        .collect();
    Some(Plan::Mount {
        kind,
        short: shortfall(kind, &disks, devices, missing),
        disks: disks.into_iter().cloned().collect(),
        devices,
    })
}

/// The pool's labelled devices among `disks`: those `[pool]` names, or all of them when it
/// names none (an id that names several disks names none here).
fn labelled_candidates<'a>(disks: &'a [Disk], config: Option<&Pool>) -> Vec<&'a Disk> {
    let is_pool = |d: &&Disk| d.fs.as_ref().is_some_and(|f| f.label == LABEL);
    match config.filter(|p| !p.disks.is_empty() || !p.mirror.is_empty()) {
        None => find::labelled(disks, LABEL),
        Some(pool) => pool
            .disks
            .iter()
            .chain(&pool.mirror)
            .filter_map(|id| match find::by_id(disks, id).as_slice() {
                [one] => Some(*one),
                _ => None,
            })
            .filter(is_pool)
            .collect(),
    }
}

/// While the step waits for disks: the btrfs filesystem it would mount, when fewer of its
/// devices are attached than it has (how many found, of how many).
pub(super) fn short_mirror(disks: &[Disk], config: Option<&Pool>) -> Option<(usize, u64)> {
    let (kind, members, devices) = chosen(&labelled_candidates(disks, config))?;
    let short = shortfall(kind, &members, devices, Vec::new())?;
    Some((short.found(), short.total))
}

/// A disk `[pool]` names: the id as written, under which key, and the device it names.
struct Named<'a> {
    id: &'a str,
    key: &'static str,
    disk: &'a Disk,
}

/// The disks `[pool]` names and the ids that name none; a problem when an id names several
/// disks or two ids name one disk.
fn resolve<'a>(disks: &'a [Disk], pool: &'a Pool) -> Result<(Vec<Named<'a>>, Vec<&'a str>), String> {
    let ids = pool.disks.iter().map(|id| (id, "disks"));
    let ids = ids.chain(pool.mirror.iter().map(|id| (id, "mirror")));
    let (mut present, mut missing, mut problems) = (Vec::<Named<'a>>::new(), Vec::new(), Vec::new());
    for (id, key) in ids {
        match find::by_id(disks, id).as_slice() {
            [] => missing.push(id.as_str()),
            [disk] => {
                if let Some(other) = present.iter().find(|n| n.disk.device.name == disk.device.name) {
                    problems.push(format!(
                        "{} and {id} name the same disk {}; name it once",
                        other.id,
                        disk.node.display()
                    ));
                }
                present.push(Named { id, key, disk });
            }
            several => {
                let all: Vec<String> = several
                    .iter()
                    .map(|d| format!("{} ({})", d.node.display(), d.id()))
                    .collect();
                problems.push(format!(
                    "[pool] id {id} matches {} disks: {}; not touching any of them: name each disk by an \
                     id only it has (ls -l /dev/disk/by-id; a wwn- id is unique)",
                    several.len(),
                    all.join(", ")
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok((present, missing))
    } else {
        Err(problems.join("; "))
    }
}

/// `"a"` or `["a", "b"]`.
fn toml_ids(ids: &[&str]) -> String {
    match ids {
        [one] => format!("{one:?}"),
        many => format!(
            "[{}]",
            many.iter().map(|id| format!("{id:?}")).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Decides from the disks and `[pool]`: mount, create, or diskless. `not_blank` is PID 1's
/// own probe of a disk (the platform's probes come later, right before any mkfs).
pub(super) fn plan(
    disks: &[Disk],
    config: Option<&Pool>,
    not_blank: impl Fn(&Disk) -> std::io::Result<Option<Found>>,
) -> Plan {
    let Some(pool) = config.filter(|p| !p.disks.is_empty() || !p.mirror.is_empty()) else {
        return mountable(&find::labelled(disks, LABEL), &[]).unwrap_or(Plan::Diskless {
            refused: Vec::new(),
            problem: None,
        });
    };
    let (present, missing) = match resolve(disks, pool) {
        Ok(resolved) => resolved,
        Err(problem) => return diskless(problem),
    };
    for id in &missing {
        crate::warn!("pool: disk {id} (named in [pool]) is not attached");
    }
    let labelled: Vec<&Disk> = present
        .iter()
        .map(|n| n.disk)
        .filter(|d| d.fs.as_ref().is_some_and(|f| f.label == LABEL))
        .collect();
    let named: Vec<(&str, &str)> = pool
        .disks
        .iter()
        .map(|id| (id.as_str(), "disks"))
        .chain(pool.mirror.iter().map(|id| (id.as_str(), "mirror")))
        .collect();
    if let Some(plan) = mountable(&labelled, &named) {
        return plan;
    }
    let mut refused = Vec::new();
    let mut problem = None;
    for named in &present {
        match not_blank(named.disk) {
            Ok(None) => {}
            Ok(Some(found)) => refused.push(refuse(named.disk, named.key, found)),
            Err(e) => problem = Some(format!("cannot read {}: {e}", named.disk.node.display())),
        }
    }
    if !refused.is_empty() || problem.is_some() {
        return Plan::Diskless { refused, problem };
    }
    if present.is_empty() {
        return diskless(format!("none of the [pool] disks ({}) is attached", missing.join(", ")));
    }
    let all: Vec<&str> = pool.disks.iter().chain(&pool.mirror).map(String::as_str).collect();
    let unconfirmed: Vec<&str> = all
        .iter()
        .copied()
        .filter(|id| !pool.create.iter().any(|c| c == id))
        .collect();
    if pool.create.is_empty() {
        let blank: Vec<Disk> = present.iter().map(|n| n.disk.clone()).collect();
        return diskless(format!(
            "{} is blank but [pool] create does not name it: write create = {} in [pool] to make it the pool",
            describe(&blank),
            toml_ids(&all)
        ));
    }
    if !unconfirmed.is_empty() {
        return diskless(format!(
            "not creating the pool: [pool] create does not name {} (the pool is made on every disk of \
             disks and mirror)",
            unconfirmed.join(", ")
        ));
    }
    if !missing.is_empty() {
        return diskless(format!("not creating the pool while {} is missing", missing.join(", ")));
    }
    Plan::Create {
        fs: pool.filesystem,
        keys: present.iter().map(|n| n.key).collect(),
        disks: present.into_iter().map(|n| n.disk.clone()).collect(),
    }
}

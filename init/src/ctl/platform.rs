//! `ramkeyctl platform status|upgrade`: the stick's two platform slots. `upgrade FILE|-|URL`
//! verifies a signed platform bundle while it streams into the slot that is not committed
//! (`upgrade::slot`), records what must come back (every service and zone that came up) and
//! arms one trial boot of it in both boot loaders (`upgrade::loaders`); `--reboot` starts
//! it at once. PID 1 of the trial commits it or goes back (`upgrade::trial`).

use std::io::Write;
use std::path::Path;

use crate::base::clock::civil_from_days;
use crate::base::cmdline::{Cmdline, Slot};
use crate::base::paths::Paths;
use crate::ctl::import::{self, Source};
use crate::ctl::usbkey_config::find_usbkey;
use crate::storage::mounts::KernelMounter;
use crate::supervisor::State as SvcState;
use crate::supervisor::protocol::{Request, Response};
use crate::upgrade::state::{State, Trial, now_unix, on_stick, slot_of};
use crate::upgrade::{loaders, slot};
use crate::zone::plan;

/// The usage text.
pub const USAGE: &str = "usage: ramkeyctl platform status | upgrade FILE|-|URL [--reboot] [--allow-downgrade]";

/// Runs `ramkeyctl platform ARGS...` on the box whose root is `root`, printing to `out`.
pub fn run(root: &Path, args: &[String], out: &mut dyn Write) -> Result<(), String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["status"] => write!(out, "{}", status(root)?).map_err(|e| e.to_string()),
        ["upgrade", rest @ ..] => {
            let (mut source, mut reboot, mut downgrade) = (None, false, false);
            for word in rest {
                match *word {
                    "--reboot" => reboot = true,
                    "--allow-downgrade" => downgrade = true,
                    w if w.starts_with("--") => return Err(format!("upgrade: unknown option `{w}`; {USAGE}")),
                    w if source.is_none() => source = Some(Source::parse(w)),
                    w => return Err(format!("upgrade: unexpected argument `{w}`; {USAGE}")),
                }
            }
            let source = source.ok_or_else(|| format!("upgrade needs a bundle: a file, - or a URL; {USAGE}"))?;
            upgrade(root, &source, reboot, downgrade, out)
        }
        _ => Err(USAGE.into()),
    }
}

/// The stick this box booted from: its device node and mount point, and the slot booted.
struct Booted {
    node: std::path::PathBuf,
    usbkey: std::path::PathBuf,
    slot: Option<Slot>,
}

fn booted(root: &Path) -> Result<Booted, String> {
    let paths = Paths::new(root);
    let mounts = std::fs::read_to_string(paths.mounts()).unwrap_or_default();
    let node = find_usbkey(&mounts)
        .ok_or("no stick is mounted at /usbkey (a PXE boot?): a PXE-booted box is upgraded on its PXE server")?;
    let cmdline = std::fs::read_to_string(paths.cmdline()).unwrap_or_default();
    Ok(Booted {
        node,
        usbkey: paths.usbkey(),
        slot: Cmdline::parse(&cmdline).slot,
    })
}

/// `2026-12-05 05:14 UTC`.
fn when(secs: u64) -> String {
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// The slots, which booted, which is committed, the trial and the last trial's outcome.
pub fn status(root: &Path) -> Result<String, String> {
    let b = booted(root)?;
    let usbkey = b.usbkey.as_path();
    let committed = loaders::committed(usbkey).map_err(|e| e.to_string())?;
    let state = State::read(usbkey).map_err(|e| e.to_string())?;
    let entries = loaders::entries(usbkey).unwrap_or_default();
    let once = loaders::boot_once(usbkey).ok().flatten();
    let mut text = format!(
        "{:<5} {:<9} {:<16} {:<21} STATE\n",
        "SLOT", "VERSION", "KERNEL", "BUILT"
    );
    for s in [Slot::A, Slot::B] {
        let info = slot::info(usbkey, s);
        let mut states = Vec::new();
        if s == committed {
            states.push("committed".to_owned());
        }
        if b.slot == Some(s) {
            states.push("booted".to_owned());
        }
        if let Some(t) = state.trial.as_ref().filter(|t| slot_of(&t.slot) == Some(s)) {
            if b.slot == Some(s) {
                states.push(format!("on trial (commits when {} have come up)", t.expect.join(", ")));
            } else if t.armed {
                let uefi = entries
                    .iter()
                    .filter(|e| e.slot == s && e.is_trial())
                    .map(|e| format!("UEFI {} tries left", e.tries_left.unwrap_or(0)))
                    .next_back();
                let bios = once.as_deref().map(|label| format!("BIOS boot-once {label}"));
                let how: Vec<String> = uefi.into_iter().chain(bios).collect();
                states.push(format!("armed: the next boot tries it ({})", how.join(", ")));
            }
        }
        if let Some(why) = &info.incomplete {
            states.push(format!("incomplete: {why}"));
        } else if info.version.is_none() {
            states.push("empty".into());
        }
        let dash = || "-".to_owned();
        text.push_str(&format!(
            "{:<5} {:<9} {:<16} {:<21} {}\n",
            s.letter(),
            info.version.unwrap_or_else(dash),
            info.kernel.unwrap_or_else(dash),
            info.built.map_or_else(dash, when),
            states.join("; ")
        ));
    }
    if let Some(last) = &state.last {
        let how = if last.committed { "committed" } else { "FAILED" };
        text.push_str(&format!(
            "last trial: slot {} ({}) {how} {}: {}\n",
            last.slot,
            last.version,
            when(last.at),
            last.reason
        ));
    }
    Ok(text)
}

/// The services (zones among them) that came up in this boot and were not given up on
/// since: what the trial must bring back.
fn came_up() -> Result<Vec<String>, String> {
    match crate::ctl::ask(&Request::Svcs { all: false }) {
        Ok(Response::Svcs { services }) => Ok(services
            .into_iter()
            .filter(|s| s.state != SvcState::Maintenance && s.state != SvcState::Disabled)
            .filter(crate::upgrade::trial::came_up)
            .map(|s| s.name)
            .collect()),
        Ok(other) => Err(crate::ctl::unexpected(&other)),
        Err(e) => Err(format!(
            "refused: cannot ask PID 1 what runs now, which the trial must bring back: {e}"
        )),
    }
}

fn upgrade(
    root: &Path,
    source: &Source,
    reboot: bool,
    allow_downgrade: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let b = booted(root).map_err(|e| format!("refused: {e}"))?;
    let usbkey = b.usbkey.as_path();
    let booted = b
        .slot
        .ok_or("refused: the kernel command line names no ramkey.slot: this boot did not come from a stick's slot")?;
    loaders::check_layout(usbkey).map_err(|e| format!("refused: {e}"))?;
    let committed = loaders::committed(usbkey).map_err(|e| format!("refused: {e}"))?;
    let mut state = State::read(usbkey).map_err(|e| format!("refused: {e}"))?;
    if let Some(t) = state.trial.as_ref().filter(|t| slot_of(&t.slot) == Some(booted)) {
        return Err(format!(
            "refused: this boot is the trial of slot {} ({}); wait until it is committed or rejected \
             (ramkeyctl platform status)",
            t.slot, t.version
        ));
    }
    if booted != committed {
        return Err(format!(
            "refused: this boot runs slot {}, but slot {} is committed; reboot into the committed slot first",
            booted, committed
        ));
    }
    let target = committed.other();
    let config = import::config(root)?;
    let trusted = plan::trusted_keys(&config);
    let running = Paths::new(root)
        .os_release_field("VERSION_ID")
        .unwrap_or_else(|| "0".into());
    let expect = came_up()?;
    let (mut from, _) = source.open(&crate::net::conn::Client::on_box(root, &config))?;
    let print = |out: &mut dyn Write, text: String| {
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())
    };
    print(out, format!("writing {source} into slot {} ...", target))?;
    let deadline = config.upgrade.commit_deadline;
    let written = on_stick(&mut KernelMounter, &b.node, usbkey, || -> Result<_, String> {
        if state.trial.take().is_some() {
            loaders::disarm(usbkey).map_err(|e| e.to_string())?;
            state.write(usbkey).map_err(|e| e.to_string())?;
        }
        let written = slot::write(usbkey, target, &mut from, &trusted, &running, allow_downgrade)
            .map_err(|e| format!("refused: {source}: {e}; both slots are as they were"))?;
        let m = &written.verified.manifest;
        let mut trial = Trial {
            slot: target.to_string(),
            version: m.version.clone(),
            armed_at: now_unix(),
            deadline,
            expect: expect.clone(),
            armed: false,
            reached_init: false,
        };
        state.trial = Some(trial.clone());
        state.write(usbkey).map_err(|e| e.to_string())?;
        let title = format!("Ramkey {}", m.version);
        loaders::arm(usbkey, target, 1, &title, &m.version).map_err(|e| e.to_string())?;
        trial.armed = true;
        state.trial = Some(trial);
        state.write(usbkey).map_err(|e| e.to_string())?;
        Ok(written)
    })?;
    let m = &written.verified.manifest;
    let size = (m.kernel.size + m.initrd.size) as f64 / 1e6;
    print(
        out,
        format!(
            "verified platform {} (kernel {}, built {}), signed by key {}",
            m.version,
            m.kernel_release,
            when(m.created),
            written.verified.key_id
        ),
    )?;
    print(
        out,
        format!(
            "slot {} written: {size:.1} MB in {:.1} s",
            target,
            written.took.as_secs_f64()
        ),
    )?;
    let what = if expect.is_empty() {
        "once it is ready".to_owned()
    } else {
        format!("once {} have come up again", expect.join(", "))
    };
    print(
        out,
        format!(
            "trial boot of slot {} armed: the next boot runs it once and commits it {what}, within {deadline} s; \
             otherwise, or if it does not boot, the box goes back to slot {}",
            target, committed
        ),
    )?;
    if reboot {
        print(out, format!("rebooting into slot {}", target))?;
        match crate::ctl::ask(&Request::Reboot)? {
            Response::Done { .. } => Ok(()),
            other => Err(crate::ctl::unexpected(&other)),
        }
    } else {
        print(out, "reboot to try it: ramkeyctl reboot".into())
    }
}

//! `ramkeyctl personality swap NAME IMAGE` and `rollback NAME`: a zone moved to another
//! image with the same volumes, kept only if it comes up.
//!
//! The new image is verified with the keys the usbkey config trusts now and the platform
//! version the zone was started with, must be the personality the zone runs (its
//! manifest's name) and no older than any version the zone came up on (unless
//! `--allow-downgrade`), is copied into `/pool/images/` under a name that says its bytes
//! (when there is a pool), and the zone restarted on it. If the
//! zone is not online before the deadline — its setup failed, or one of its services never
//! got ready — it is restarted on the image it ran before, and the reason is kept for
//! `personality list`. The image a kept swap replaced stays in `zone.prev.json` until the
//! next kept swap, for `rollback`. A kept swap is written to the usbkey config, so the next boot runs
//! it too.

use ramkey_image::runtime::Runtime;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ask, unexpected};
use crate::base::paths::Paths;
use crate::supervisor::protocol::{Action, Request, Response};
use crate::supervisor::{ServiceStatus, State};
use crate::zone::{PREVIOUS, ZoneSpec, binding, plan};

/// The default time a new image gets to come up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// The file, next to `zone.json`, that says why the last swap was rolled back.
pub const ROLLBACK_NOTE: &str = "rollback.txt";

/// `swap NAME IMAGE [--wait SECS] [--allow-downgrade]`. The image must be the same
/// personality the zone runs (its manifest's name) and, unless `allow_downgrade`, not older
/// than any version the zone has come up on.
pub fn swap(name: &str, image: &str, wait: Duration, allow_downgrade: bool) -> Result<String, String> {
    let paths = Paths::system();
    let root = paths.root();
    let current = ZoneSpec::read(root, name)?;
    let path = std::fs::canonicalize(image).map_err(|e| format!("{image}: {e}"))?;
    let verified = plan::verify(&path, &trusted_now(&current)?, &current.platform_version)
        .map_err(|reason| format!("refused: {reason}"))?;
    let m = verified.manifest();
    if m.name != current.image_name {
        return Err(format!(
            "refused: {} is image {} {}, and zone {name} runs {}: a swap keeps the personality (to run another one, \
             give it a [[personality]] of another name)",
            path.display(),
            m.name,
            m.version,
            current.image_name
        ));
    }
    if !allow_downgrade {
        floor(&current, &m.version)?;
    }
    let path = keep_on_pool(&paths, &path, &m.name, &m.version, &m.payload.sha256)?;
    let mut next = current.clone();
    next.take_image(path.clone(), verified.manifest());
    let _ = std::fs::remove_file(ZoneSpec::file(root, name, ROLLBACK_NOTE));
    let started = Instant::now();
    match restart_on(&next, wait) {
        Ok(()) => {
            // Only a kept swap replaces what `rollback` goes back to: after one that was
            // rolled back, the zone runs `current` again and `rollback` still means the image
            // before it.
            current.write(root, PREVIOUS)?;
            record_good(&next);
            let saved = save_in_config(name, &path);
            Ok(format!(
                "{name}: swapped {} {} -> {} {} in {} ms; {saved}\n",
                current.image_name,
                current.version,
                next.image_name,
                next.version,
                started.elapsed().as_millis()
            ))
        }
        Err(why) => {
            let note = format!("rolled back from {} {}: {why}", next.image_name, next.version);
            restart_on(&current, wait).map_err(|e| format!("{note}; and the previous image did not come back: {e}"))?;
            let _ = std::fs::write(ZoneSpec::file(root, name, ROLLBACK_NOTE), &note);
            Err(format!(
                "{name}: {note}; running {} {} again",
                current.image_name, current.version
            ))
        }
    }
}

/// `rollback NAME`: back to the image the last swap replaced.
pub fn rollback(name: &str, wait: Duration) -> Result<String, String> {
    let previous = ZoneSpec::file(Paths::system().root(), name, PREVIOUS);
    if !previous.exists() {
        return Err(format!("{name} has not been swapped since boot"));
    }
    // The image a kept swap replaced came up on this box: going back to it is no downgrade
    // to refuse, and never further back than it.
    swap(name, &ZoneSpec::load(&previous)?.image.to_string_lossy(), wait, true)
}

/// The keys the usbkey config trusts now (a key removed from it is distrusted at once), or,
/// on a box without a usbkey config (PXE), those it booted with.
fn trusted_now(spec: &ZoneSpec) -> Result<Vec<ramkey_image::VerifyingKey>, String> {
    let path = Paths::system().usbkey_config();
    let shown = path.display();
    match crate::boot::config_load::read_capped(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let config = ramkey_config::Config::parse(&text, &shown.to_string()).map_err(|e| {
                format!("refused: {shown} does not parse, so which keys are trusted now is unknown; fix it first: {e}")
            })?;
            Ok(plan::trusted_keys(&config))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(spec.trusted()),
        Err(e) => Err(format!("refused: {shown}: {e}")),
    }
}

/// Refuses `version` when it is older than the highest the zone has come up on.
fn floor(spec: &ZoneSpec, version: &str) -> Result<(), String> {
    match binding::floor_above(spec, version) {
        Some(highest) => Err(format!(
            "refused: {} {version} is older than {highest}, which zone {} has run (a downgrade; \
             --allow-downgrade runs it anyway)",
            spec.image_name, spec.name
        )),
        None => Ok(()),
    }
}

/// The image copied into `/pool/images/` (the place the box keeps what it runs) as
/// `NAME-VERSION-SHA.rkimg` (`SHA`: the payload's sha256, 16 digits), unless it is there
/// already or there is no pool. The name says the bytes: another image with the same
/// file name never replaces one a zone runs. (Each zone start checks the payload's sha256
/// again, [`crate::zone::ids::payload`].)
fn keep_on_pool(paths: &Paths, path: &Path, name: &str, version: &str, sha256: &str) -> Result<PathBuf, String> {
    let images = &paths.pool().join("images");
    if !paths.pool().is_dir() {
        return Ok(path.to_path_buf());
    }
    let dest = images.join(super::import::kept_name(name, version, sha256));
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(images).map_err(|e| format!("{}: {e}", images.display()))?;
    let partial = dest.with_extension("rkimg.partial");
    std::fs::copy(path, &partial)
        .and_then(|_| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, &dest))
        .map_err(|e| format!("copying {} into {}: {e}", path.display(), images.display()))?;
    Ok(dest)
}

/// Writes `spec` as the zone's spec, restarts the zone, and waits until it is online again
/// (a new process that passed its readiness check), or says what kept it from it.
fn restart_on(spec: &ZoneSpec, wait: Duration) -> Result<(), String> {
    spec.write(Paths::system().root(), "zone.json")?;
    let service = ZoneSpec::service_name(&spec.name);
    let before = status(&service)?.and_then(|s| s.pid);
    match ask(&Request::Svcadm {
        action: Action::Restart,
        service: service.clone(),
    })? {
        Response::Done { .. } => {}
        other => return Err(unexpected(&other)),
    }
    wait_online(spec, before, wait)
}

/// Waits until the zone's service is online in a process other than `before`, or says what
/// kept it from it.
fn wait_online(spec: &ZoneSpec, before: Option<i32>, wait: Duration) -> Result<(), String> {
    let service = ZoneSpec::service_name(&spec.name);
    let deadline = Instant::now() + wait;
    loop {
        let now = status(&service)?;
        if let Some(s) = &now
            && s.state == State::Online
            && s.pid.is_some()
            && s.pid != before
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            // What the zone's own supervisor says, or the zone service's state.
            let inside = match spec.runtime {
                Runtime::Vm => crate::vm::ready(&spec.name).err(),
                Runtime::Zone => crate::zone::launch::ready(&spec.name).err().map(String::from),
            };
            let outside = now.map(|s| format!("zone {}: {}", s.state, s.reason));
            return Err(inside.or(outside).unwrap_or_else(|| "not online".into()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn status(service: &str) -> Result<Option<ServiceStatus>, String> {
    Ok(super::personality::statuses()?.into_iter().find(|s| s.name == service))
}

/// Records the kept image in the usbkey config (`personality.NAME.image`).
fn save_in_config(name: &str, image: &Path) -> String {
    let pair = format!("personality.{name}.image=\"{}\"", image.display());
    match crate::ctl::usbkey_config::run(&["set".to_string(), pair]) {
        Ok(_) => "the usbkey config names it for the next boot".into(),
        Err(e) => format!("not saved in the usbkey config ({e}): the next boot runs the configured image"),
    }
}

/// How long the boot gate waits for a zone's first start.
pub const GATE_WAIT: Duration = Duration::from_secs(90);

/// `gate NAME`, a one-shot service at boot: once the zone is online its image is recorded as
/// the last good one (and kept in `/pool/images/`); if it does not come up and the image
/// changed since the last good boot, the zone goes back to that image. Says so on the
/// console.
pub fn gate(name: &str) -> Result<String, String> {
    let paths = Paths::system();
    let root = paths.root();
    let spec = ZoneSpec::read(root, name)?;
    let line = match wait_online(&spec, None, GATE_WAIT) {
        Ok(()) => match keep_on_pool(&paths, &spec.image, &spec.image_name, &spec.version, &spec.sha256) {
            Ok(kept) => {
                let mut good = spec.clone();
                good.image = kept;
                record_good(&good);
                format!(
                    "zone {name}: {} {} came up; kept as the last good image",
                    spec.image_name, spec.version
                )
            }
            Err(e) => format!("zone {name}: {} {} came up, but {e}", spec.image_name, spec.version),
        },
        Err(why) => match ZoneSpec::load(&ZoneSpec::file(root, name, PREVIOUS)).ok() {
            None => format!(
                "zone {name}: {} {} did not come up: {why}",
                spec.image_name, spec.version
            ),
            Some(good) => {
                let note = format!("rolled back from {} {}: {why}", spec.image_name, spec.version);
                let back = restart_on(&good, GATE_WAIT);
                let _ = std::fs::write(ZoneSpec::file(root, name, ROLLBACK_NOTE), &note);
                match back {
                    Ok(()) => format!(
                        "zone {name}: {note}; running {} {} again",
                        good.image_name, good.version
                    ),
                    Err(e) => format!(
                        "zone {name}: {note}; and {} {} did not come back: {e}",
                        good.image_name, good.version
                    ),
                }
            }
        },
    };
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open(paths.console()) {
        crate::base::log::to_console(&mut console, crate::base::log::Level::Info, format_args!("{line}"));
    }
    Ok(format!("{line}\n"))
}

/// Records `spec`'s image as the one the zone last came up on, and its version as the
/// highest the zone has run when it is.
fn record_good(spec: &ZoneSpec) {
    let Some(record) = spec.good_record() else {
        return;
    };
    let written = serde_json::to_vec_pretty(spec)
        .map_err(std::io::Error::other)
        .and_then(|text| std::fs::write(&record, text));
    if let Err(e) = written {
        eprintln!("ramkeyctl: {}: {e}", record.display());
    }
    if let Err(e) = binding::raise_floor(spec) {
        eprintln!("ramkeyctl: {e}");
    }
}

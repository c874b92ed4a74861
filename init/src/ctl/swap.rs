//! `ramkeyctl personality swap NAME IMAGE` and `rollback NAME`: a zone moved to another
//! image with the same volumes, kept only if it comes up.
//!
//! The new image is verified with the keys and platform version the zone was started with,
//! copied into `/pool/images/` (when there is a pool), and the zone restarted on it. If the
//! zone is not online before the deadline — its setup failed, or one of its services never
//! got ready — it is restarted on the image it ran before, and the reason is kept for
//! `personality list`. The image a kept swap replaced stays in `zone.prev.json` until the
//! next kept swap, for `rollback`. A kept swap is written to the usbkey config, so the next boot runs
//! it too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ask, unexpected};
use crate::supervisor::protocol::{Action, Request, Response};
use crate::supervisor::{ServiceStatus, State};
use crate::zone::{PREVIOUS, ZoneSpec, plan};

/// The default time a new image gets to come up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// The file, next to `zone.json`, that says why the last swap was rolled back.
pub const ROLLBACK_NOTE: &str = "rollback.txt";

/// `swap NAME IMAGE [--wait SECS]`.
pub fn swap(name: &str, image: &str, wait: Duration) -> Result<String, String> {
    let root = Path::new("/");
    let current = ZoneSpec::read(root, name)?;
    let path = std::fs::canonicalize(image).map_err(|e| format!("{image}: {e}"))?;
    let verified = plan::verify(&path, &current.trusted(), &current.platform_version)
        .map_err(|reason| format!("refused: {reason}"))?;
    let path = keep_on_pool(&path)?;
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
    let previous = ZoneSpec::file(Path::new("/"), name, PREVIOUS);
    if !previous.exists() {
        return Err(format!("{name} has not been swapped since boot"));
    }
    swap(name, &ZoneSpec::load(&previous)?.image.to_string_lossy(), wait)
}

/// The image copied into `/pool/images/` (the place the box keeps what it runs), unless it
/// is there already or there is no pool.
fn keep_on_pool(path: &Path) -> Result<PathBuf, String> {
    let images = Path::new("/pool/images");
    if !Path::new("/pool").is_dir() || path.starts_with(images) {
        return Ok(path.to_path_buf());
    }
    let file = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file", path.display()))?;
    let dest = images.join(file);
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
    spec.write(Path::new("/"), "zone.json")?;
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
            let inside = crate::zone::launch::ready(&spec.name).err();
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
    match crate::ctl_config::run(&["set".to_string(), pair]) {
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
    let root = Path::new("/");
    let spec = ZoneSpec::read(root, name)?;
    let line = match wait_online(&spec, None, GATE_WAIT) {
        Ok(()) => match keep_on_pool(&spec.image) {
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
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        crate::log::to_console(&mut console, crate::log::Level::Info, format_args!("{line}"));
    }
    Ok(format!("{line}\n"))
}

/// Records `spec`'s image as the one the zone last came up on.
fn record_good(spec: &ZoneSpec) {
    if let Some(record) = spec.good_record() {
        let written = serde_json::to_vec_pretty(spec)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(&record, text));
        if let Err(e) = written {
            eprintln!("ramkeyctl: {}: {e}", record.display());
        }
    }
}

/// `import FILE`: verifies an image against the keys the usbkey config trusts and this
/// platform, and copies it into `/pool/images/`, where a `[[personality]]` `image` names it
/// by file name.
pub fn import(image: &str) -> Result<String, String> {
    if !Path::new("/pool").is_dir() {
        return Err(
            "no pool: imported images live on it; put the image on the stick under /personalities/ instead".into(),
        );
    }
    let config_path = "/usbkey/config.toml";
    let text = std::fs::read_to_string(config_path).map_err(|e| format!("{config_path}: {e}"))?;
    let config = ramkey_config::Config::parse(&text, config_path).map_err(|e| e.to_string())?;
    let version = crate::paths::Paths::new("/")
        .os_release_field("VERSION_ID")
        .unwrap_or_else(|| "0".into());
    let path = std::fs::canonicalize(image).map_err(|e| format!("{image}: {e}"))?;
    let verified =
        plan::verify(&path, &plan::trusted_keys(&config), &version).map_err(|reason| format!("refused: {reason}"))?;
    let kept = keep_on_pool(&path)?;
    let m = verified.manifest();
    Ok(format!(
        "imported {} {} as {}; run it with `ramkeyctl personality swap NAME {}`\n",
        m.name,
        m.version,
        kept.display(),
        kept.display()
    ))
}

//! PID 1's side of the zones at boot: each `[[personality]]`'s image found and verified, its
//! [`ZoneSpec`] written, and the `zone-NAME` service that runs it. A refused image is
//! logged with its reason; the other personalities still start.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ramkey_config::{Addressing, Config, Personality, SettingValue};
use ramkey_image::VerifyingKey;
use ramkey_image::check::{Check, Probe};
use ramkey_image::requirements::PlatformVersion;
use ramkey_image::service::{Caps, RestartPolicy, ServiceSpec};
use ramkey_image::verify::{Platform, VerifiedImage};

use super::{INSTANCES_DIR, LAUNCHER, RAM_INSTANCES_DIR, RUN_DIR, ZoneSpec};

/// The modules a zone needs: loop devices, the payload's filesystem, the overlay, macvlan.
pub const MODULES: &[&str] = &["loop", "squashfs", "overlay", "macvlan"];

/// Where things are, for [`prepare`].
#[derive(Debug)]
pub struct Places<'a> {
    /// `/` on the box.
    pub root: &'a Path,
    /// The mounted usbkey, if any.
    pub usbkey: Option<&'a Path>,
    /// The mounted pool (`/pool`), if any.
    pub pool: Option<&'a Path>,
    /// The supervisor's cgroup base (`/sys/fs/cgroup/ramkey`).
    pub cgroups: &'a Path,
    /// The platform's version (`VERSION_ID` of `/etc/os-release`).
    pub version: &'a str,
}

/// Verifies every enabled personality's image and writes its zone spec; returns the
/// `zone-NAME` services to supervise.
pub fn prepare(config: &Config, places: &Places<'_>) -> Vec<ServiceSpec> {
    let run_dir = places.root.join(RUN_DIR);
    let _stale = std::fs::remove_dir_all(&run_dir);
    let trusted = trusted_keys(config);
    let memory_mib = memory_total(places.root);
    let mut services = Vec::new();
    for p in config.personalities.iter().filter(|p| p.enabled) {
        match plan_one(config, p, &trusted, places, memory_mib) {
            Ok(spec) => match spec.write(places.root, "zone.json") {
                Ok(()) => {
                    let data = if spec.persistent {
                        "on the pool"
                    } else {
                        "in RAM (diskless)"
                    };
                    crate::notice!(
                        "zone {}: image {} {} verified ({}); data {data}",
                        p.name,
                        spec.image_name,
                        spec.version,
                        spec.image.display()
                    );
                    services.push(service(p, &spec));
                    if spec.persistent {
                        services.push(gate(p));
                    }
                }
                Err(e) => crate::error!("zone {}: not started: {e}", p.name),
            },
            Err(reason) => crate::error!("zone {}: refused: {reason}", p.name),
        }
    }
    services
}

/// The keys `[images] trusted_keys` names.
pub fn trusted_keys(config: &Config) -> Vec<VerifyingKey> {
    config
        .trusted_keys
        .iter()
        .filter_map(|k| VerifyingKey::from_bytes(&k.key).ok())
        .collect()
}

/// Finds, verifies and describes one personality's zone.
fn plan_one(
    config: &Config,
    p: &Personality,
    trusted: &[VerifyingKey],
    places: &Places<'_>,
    memory_mib: u32,
) -> Result<ZoneSpec, String> {
    let path = find_image(&p.image, places)?;
    let verified = verify(&path, trusted, places.version)?;
    let m = verified.manifest();
    let (state_dir, persistent) = match places.pool {
        Some(pool) => (pool.join(INSTANCES_DIR).join(&p.name), true),
        None => (places.root.join(RAM_INSTANCES_DIR).join(&p.name), false),
    };
    // Recorded beside the zone's state, where its launcher reads it.
    super::ids::allocate(&state_dir)?;
    let nic = p.nic.clone().or_else(|| config.nics.first().map(|n| n.tag.clone()));
    let ip = p.ip.map(|a| match a {
        Addressing::Dhcp => "dhcp".to_string(),
        Addressing::Static { addr, prefix } => format!("{addr}/{prefix}"),
    });
    let caps = caps(p, &m.caps, memory_mib);
    let mut spec = ZoneSpec {
        name: p.name.clone(),
        image: PathBuf::new(),
        image_name: String::new(),
        version: String::new(),
        payload_size: 0,
        sha256: String::new(),
        state_dir,
        persistent,
        persistent_root: p.persistent_root,
        nic,
        ip,
        gateway: p.gateway.map(|g| g.to_string()),
        resolvers: config.dns.resolvers.iter().map(ToString::to_string).collect(),
        search: config.dns.search.clone(),
        volumes: BTreeMap::new(),
        settings: settings_file(p, m),
        services: Vec::new(),
        cgroup: places.cgroups.join(ZoneSpec::service_name(&p.name)),
        caps,
        capabilities: Vec::new(),
        trusted_keys: trusted
            .iter()
            .map(|k| ramkey_image::keys::encode_public(k).trim_end().to_string())
            .collect(),
        platform_version: places.version.to_string(),
    };
    spec.take_image(path, m);
    fall_back_to_good(&spec, trusted, places);
    Ok(spec)
}

/// When the configured image is not the one the zone last came up on (its record on the
/// pool), that one becomes the zone's fallback ([`super::PREVIOUS`]): the gate (`ramkeyctl
/// personality gate`) goes back to it if the new image does not come up.
fn fall_back_to_good(spec: &ZoneSpec, trusted: &[VerifyingKey], places: &Places<'_>) {
    let Some(record) = spec.good_record() else {
        return;
    };
    let Ok(good) = ZoneSpec::load(&record) else {
        return;
    };
    if good.sha256 == spec.sha256 {
        return;
    }
    match verify(&good.image, trusted, places.version) {
        Ok(verified) => {
            let mut previous = spec.clone();
            previous.take_image(good.image.clone(), verified.manifest());
            if previous.write(places.root, super::PREVIOUS).is_ok() {
                crate::notice!(
                    "zone {}: image changed since the last boot ({} {} -> {} {}); {} {} is kept to fall back to",
                    spec.name,
                    good.image_name,
                    good.version,
                    spec.image_name,
                    spec.version,
                    good.image_name,
                    good.version
                );
            }
        }
        Err(e) => crate::warn!("zone {}: the last good image is unusable, no fallback: {e}", spec.name),
    }
}

/// Verifies the image at `path`: signed by one of `trusted`, intact, and made for this
/// platform `version` and architecture. The error is the reason, for the console.
pub fn verify(path: &Path, trusted: &[VerifyingKey], version: &str) -> Result<VerifiedImage, String> {
    if trusted.is_empty() {
        return Err("no [images] trusted_keys in the config: no image can be trusted".into());
    }
    let platform = Platform {
        version: version
            .parse::<PlatformVersion>()
            .map_err(|e| format!("the platform version {version:?}: {e}"))?,
        arch: std::env::consts::ARCH.to_string(),
    };
    let image = ramkey_image::read::open(path).map_err(|e| e.to_string())?;
    ramkey_image::verify::verify(image, trusted, &platform).map_err(|e| e.to_string())
}

/// The image file: an absolute path as is; otherwise on the usbkey, then in `pool/images/`.
fn find_image(image: &str, places: &Places<'_>) -> Result<PathBuf, String> {
    let given = Path::new(image);
    let mut tried = Vec::new();
    if given.is_absolute() {
        tried.push(given.to_path_buf());
    } else {
        if let Some(usbkey) = places.usbkey {
            tried.push(usbkey.join(given));
        }
        if let (Some(pool), Some(file)) = (places.pool, given.file_name()) {
            tried.push(pool.join("images").join(file));
        }
    }
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        format!(
            "image {image:?} not found (looked at: {}); put it on the stick under /personalities/ or import it",
            if list.is_empty() {
                "nowhere: no usbkey, no pool".to_string()
            } else {
                list.join(", ")
            }
        )
    })
}

/// The process cap of a zone whose config and image name none.
pub const DEFAULT_PIDS: u32 = 1024;

/// The zone's caps: the config's where it sets them, the manifest's defaults otherwise, and
/// where neither does, half the box's memory (`memory_mib`, its total) and
/// [`DEFAULT_PIDS`]: no zone runs without a memory and a process cap.
fn caps(p: &Personality, defaults: &Caps, memory_mib: u32) -> Caps {
    Caps {
        memory_mib: p
            .memory
            .map(|bytes| u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX))
            .or(defaults.memory_mib)
            .or(Some(memory_mib / 2)),
        cpu_percent: p.cpu.map(|cpus| (cpus * 100.0).round() as u32).or(defaults.cpu_percent),
        pids: p.pids.or(defaults.pids).or(Some(DEFAULT_PIDS)),
    }
}

/// The box's memory in MiB (`MemTotal` of `/proc/meminfo` under `root`); 1024 if unknown.
fn memory_total(root: &Path) -> u32 {
    std::fs::read_to_string(root.join("proc/meminfo"))
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            u32::try_from(kib / 1024).ok()
        })
        .unwrap_or(1024)
}

/// `/run/ramkey/settings.toml` inside the zone: the manifest's defaults overridden by the
/// config's `[personality.settings]`.
fn settings_file(p: &Personality, m: &ramkey_image::manifest::Manifest) -> String {
    let mut table = toml::Table::new();
    for s in &m.settings {
        if let Some(default) = &s.default {
            table.insert(s.name.clone(), image_value(default));
        }
    }
    for (key, value) in &p.settings {
        let v = match value {
            SettingValue::String(s) => toml::Value::String(s.clone()),
            SettingValue::Integer(i) => toml::Value::Integer(*i),
            SettingValue::Bool(b) => toml::Value::Boolean(*b),
        };
        table.insert(key.clone(), v);
    }
    let mut out = format!("# settings of personality {} (from the usbkey config)\n", p.name);
    let _ = write!(out, "{}", toml::to_string(&table).unwrap_or_default());
    out
}

fn image_value(v: &ramkey_image::manifest::SettingValue) -> toml::Value {
    use ramkey_image::manifest::SettingValue as V;
    match v {
        V::String(s) => toml::Value::String(s.clone()),
        V::Int(i) => toml::Value::Integer(*i),
        V::Bool(b) => toml::Value::Boolean(*b),
    }
}

/// The one-shot service that waits for the zone's first start and keeps the image if it
/// comes up, or falls back (see [`fall_back_to_good`]).
fn gate(p: &Personality) -> ServiceSpec {
    let mut s = ServiceSpec::new(
        format!("zone-gate-{}", p.name),
        ["/usr/bin/ramkeyctl", "personality", "gate", &p.name]
            .map(String::from)
            .to_vec(),
    );
    s.restart = RestartPolicy::Never;
    s
}

/// The platform service running the zone.
fn service(p: &Personality, spec: &ZoneSpec) -> ServiceSpec {
    let mut s = ServiceSpec::new(
        ZoneSpec::service_name(&p.name),
        vec![LAUNCHER.to_string(), p.name.clone()],
    );
    s.restart = RestartPolicy::OnFailure;
    // Online once the zone is set up and its own services are (up to two minutes).
    s.readiness = Some(Probe {
        check: Check::Exec {
            argv: vec![LAUNCHER.to_string(), "--ready".to_string(), p.name.clone()],
        },
        interval_secs: 1,
        timeout_secs: 5,
        retries: 120,
    });
    // The zone's own services get their stop timeouts inside; this covers them all.
    s.stop_timeout_secs = 30;
    s.caps = spec.caps;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn personality(extra: &str) -> Personality {
        let text =
            format!("version = 1\nhostname = \"box\"\n[[personality]]\nname = \"web\"\nimage = \"web.rkimg\"\n{extra}");
        let config = Config::parse(&text, "config.toml").expect("valid config");
        config.personality("web").expect("web").clone()
    }

    #[test]
    fn no_zone_runs_without_a_memory_and_a_process_cap() {
        let none = Caps::default();
        let got = caps(&personality(""), &none, 2048);
        assert_eq!(
            (got.memory_mib, got.pids, got.cpu_percent),
            (Some(1024), Some(DEFAULT_PIDS), None)
        );
        // The image's defaults come first, the config's before them.
        let image = Caps {
            memory_mib: Some(256),
            cpu_percent: Some(50),
            pids: Some(64),
        };
        let got = caps(&personality(""), &image, 2048);
        assert_eq!(
            (got.memory_mib, got.pids, got.cpu_percent),
            (Some(256), Some(64), Some(50))
        );
        let got = caps(&personality("memory = \"128M\"\npids = 32\n"), &image, 2048);
        assert_eq!((got.memory_mib, got.pids), (Some(128), Some(32)));
    }

    #[test]
    fn the_boxs_memory_is_read_from_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/meminfo"),
            "MemTotal:        1004540 kB\nMemFree: 1 kB\n",
        )
        .unwrap();
        assert_eq!(memory_total(dir.path()), 980);
        assert_eq!(memory_total(&dir.path().join("nowhere")), 1024);
    }
}

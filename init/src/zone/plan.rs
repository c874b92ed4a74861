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
use ramkey_image::runtime::{Runtime, VmShape};
use ramkey_image::service::{Caps, RestartPolicy, ServiceSpec};
use ramkey_image::verify::{Platform, VerifiedImage};

use super::{INSTANCES_DIR, LAUNCHER, RAM_INSTANCES_DIR, RUN_DIR, ZoneError, ZoneSpec, binding};

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
///
/// `vms` makes the box ready for VM personalities ([`crate::vm::host::enable`]); it is
/// called once, at the first one, and its answer (the guest kernel, or why VMs cannot run)
/// holds for them all.
pub fn prepare(
    config: &Config,
    places: &Places<'_>,
    vms: &mut dyn FnMut() -> Result<PathBuf, String>,
) -> Vec<ServiceSpec> {
    let run_dir = places.root.join(RUN_DIR);
    let _stale = std::fs::remove_dir_all(&run_dir);
    let trusted = trusted_keys(config);
    let memory_mib = memory_total(places.root);
    let mut services = Vec::new();
    let mut vm_host = None;
    let mut vms = || vm_host.get_or_insert_with(&mut *vms).clone();
    for p in config.personalities.iter().filter(|p| p.enabled) {
        match plan_one(config, p, &trusted, places, memory_mib).and_then(|mut spec| {
            if spec.runtime == Runtime::Vm {
                spec.kernel = Some(vms().map_err(ZoneError::NoVms)?);
            }
            Ok(spec)
        }) {
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
                Err(e) => {
                    crate::error!("zone {}: not started: {e}", p.name);
                    super::note_refused(places.root, &p.name, &format!("not started: {e}"));
                }
            },
            Err(reason) => {
                crate::error!("zone {}: refused: {reason}", p.name);
                super::note_refused(places.root, &p.name, &format!("refused: {reason}"));
            }
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

/// Finds, verifies and describes one personality's zone, bound to what it ran before
/// ([`super::binding`]): refused there, the zone runs its last good image instead, if that
/// verifies.
fn plan_one(
    config: &Config,
    p: &Personality,
    trusted: &[VerifyingKey],
    places: &Places<'_>,
    memory_mib: u32,
) -> Result<ZoneSpec, ZoneError> {
    let path = find_image(&p.image, places)?;
    let verified = verify(&path, trusted, places.version)?;
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
        settings: String::new(),
        services: Vec::new(),
        cgroup: places.cgroups.join(ZoneSpec::service_name(&p.name)),
        caps: Caps::default(),
        capabilities: Vec::new(),
        trusted_keys: trusted
            .iter()
            .map(|k| ramkey_image::keys::encode_public(k).trim_end().to_string())
            .collect(),
        platform_version: places.version.to_string(),
        runtime: Runtime::Zone,
        vm: VmShape::default(),
        kernel: None,
        mac: config
            .cluster
            .as_ref()
            .filter(|c| c.is_resource(&p.name))
            .map(|c| floating_mac(c, &p.name)),
    };
    run_image(&mut spec, p, path, verified.manifest(), memory_mib);
    let good = binding::last_good(&spec);
    match binding::check(&spec, good.as_ref(), p.allow_downgrade) {
        Ok(()) => fall_back_to_good(&spec, good.as_ref(), trusted, places),
        Err(refused) => {
            let refused = refused.explain(&spec);
            let Some(good) = good else {
                return Err(ZoneError::RefusedNoFallback { refusal: refused });
            };
            let verified = match verify(&good.image, trusted, places.version) {
                Ok(verified) => verified,
                Err(e) => {
                    return Err(ZoneError::RefusedFallbackUnusable {
                        refusal: refused,
                        source: Box::new(e),
                    });
                }
            };
            crate::error!("zone {}: refused: {refused}", p.name);
            crate::notice!(
                "zone {}: running its last good image {} {} ({}) instead of {} {}",
                p.name,
                good.image_name,
                good.version,
                good.image.display(),
                spec.image_name,
                spec.version
            );
            run_image(&mut spec, p, good.image, verified.manifest(), memory_mib);
        }
    }
    Ok(spec)
}

/// The MAC of a cluster resource's zone: the same on both nodes (from the pair's router id
/// and node names), unlike any box's own zones'.
fn floating_mac(cluster: &ramkey_config::Cluster, zone: &str) -> [u8; 6] {
    use sha2::Digest;
    let mut names: Vec<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    let digest = sha2::Sha256::new()
        .chain_update([cluster.router_id])
        .chain_update(names.join("\0"))
        .finalize();
    let mut pair = [0u8; 6];
    pair.copy_from_slice(&digest[..6]);
    crate::net::source_check::zone_mac(pair, zone)
}

/// Makes `spec` run the verified image at `path` (its `manifest`), with the caps and the
/// settings file of the config and that image.
fn run_image(
    spec: &mut ZoneSpec,
    p: &Personality,
    path: PathBuf,
    manifest: &ramkey_image::manifest::Manifest,
    memory_mib: u32,
) {
    spec.caps = caps(p, &manifest.caps, memory_mib);
    spec.settings = settings_file(p, manifest);
    spec.take_image(path, manifest);
    if spec.runtime == Runtime::Vm {
        // The config's `memory` is the guest's; the cgroup holds it and the VMM's own.
        if let Some(bytes) = p.memory {
            spec.vm.memory_mib = u32::try_from(bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX);
        }
        spec.caps.memory_mib = Some(spec.vm.cap_mib());
    }
}

/// When the configured image is not the one the zone last came up on (`good`, its record
/// on the pool), that one becomes the zone's fallback ([`super::PREVIOUS`]): the gate
/// (`ramkeyctl personality gate`) goes back to it if the new image does not come up.
fn fall_back_to_good(spec: &ZoneSpec, good: Option<&ZoneSpec>, trusted: &[VerifyingKey], places: &Places<'_>) {
    let Some(good) = good else {
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
pub fn verify(path: &Path, trusted: &[VerifyingKey], version: &str) -> Result<VerifiedImage, ZoneError> {
    if trusted.is_empty() {
        return Err(ZoneError::NoTrustedKeys);
    }
    let platform = Platform {
        version: version
            .parse::<PlatformVersion>()
            .map_err(|source| ZoneError::PlatformVersion {
                version: version.to_string(),
                source,
            })?,
        arch: std::env::consts::ARCH.to_string(),
    };
    let image = ramkey_image::read::open(path)?;
    Ok(ramkey_image::verify::verify(image, trusted, &platform)?)
}

/// The image file: an absolute path as is; otherwise on the usbkey, then in `pool/images/`.
fn find_image(image: &str, places: &Places<'_>) -> Result<PathBuf, ZoneError> {
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
    match tried.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(ZoneError::ImageNotFound {
            image: image.to_string(),
            tried,
        }),
    }
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
    use crate::zone::PREVIOUS;

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

    /// A signed image of personality `name` at `version` in `dir`, its payload a fake
    /// squashfs filled with `tag` (so each tag is another payload).
    fn image(dir: &Path, name: &str, version: &str, tag: u8) -> PathBuf {
        let mut payload = vec![tag; 8192];
        payload[..96].copy_from_slice(&ramkey_image::squashfs::Superblock::fake(8192));
        let manifest = ramkey_image::manifest::Manifest::parse(&format!(
            "format_version = 1\nname = \"{name}\"\nversion = \"{version}\"\n\
             uuid = \"00000000-0000-4000-8000-000000000000\"\ndescription = \"\"\nbuilder_version = \"0.1.0\"\n\
             created = 0\n[payload]\nsha256 = \"{}\"\nsize = 4096\n[requirements]\nmin_platform = \"0.1.0\"\n\
             arch = \"{}\"\n",
            "0".repeat(64),
            std::env::consts::ARCH
        ))
        .unwrap();
        let path = dir.join(format!("{name}-{version}-{tag}.rkimg"));
        let file = std::fs::File::create(&path).unwrap();
        ramkey_image::write::assemble(payload.as_slice(), &manifest, &key(), file).unwrap();
        path
    }

    fn key() -> ramkey_image::SigningKey {
        ramkey_image::SigningKey::from_bytes(&[42; 32])
    }

    /// Plans the zone `web` with the config's `image` (and `extra` keys) at boot; the image
    /// its `zone.json` names, or `None` if it was refused.
    fn boot(dir: &Path, image: &Path, extra: &str) -> Option<(String, String)> {
        let trusted = ramkey_image::keys::encode_public(&key().verifying_key());
        let text = format!(
            "version = 1\nhostname = \"box\"\n[images]\ntrusted_keys = [\"{}\"]\n[[personality]]\n\
             name = \"web\"\nimage = \"{}\"\n{extra}",
            trusted.trim(),
            image.display()
        );
        let config = Config::parse(&text, "config.toml").expect("valid config");
        let (root, pool, cgroups) = (dir.join("root"), dir.join("pool"), dir.join("cgroups"));
        std::fs::create_dir_all(&pool).unwrap();
        let places = Places {
            root: &root,
            usbkey: None,
            pool: Some(&pool),
            cgroups: &cgroups,
            version: "1.0.0",
        };
        let services = prepare(&config, &places, &mut || Err("no VMs in unit tests".into()));
        let spec = ZoneSpec::read(&root, "web").ok();
        assert_eq!(services.is_empty(), spec.is_none(), "{services:?}");
        spec.map(|s| (s.image_name, s.version))
    }

    /// What the gate records once the zone came up on what `zone.json` names.
    fn came_up(dir: &Path) {
        let spec = ZoneSpec::read(&dir.join("root"), "web").unwrap();
        let record = spec.good_record().unwrap();
        std::fs::write(record, serde_json::to_vec(&spec).unwrap()).unwrap();
        binding::raise_floor(&spec).unwrap();
    }

    #[test]
    fn at_boot_a_zone_keeps_its_personality_and_version_floor() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        let (web1, web2) = (image(&images, "web", "1.0.0", 1), image(&images, "web", "2.0.0", 2));
        let kv = image(&images, "kv", "1.0.0", 3);
        let pair = |name: &str, version: &str| Some((name.to_string(), version.to_string()));
        // A new zone takes any personality; this one comes up on web 2.0.0.
        assert_eq!(boot(dir.path(), &web2, ""), pair("web", "2.0.0"));
        came_up(dir.path());
        // An older web is refused: the zone runs its last good image instead.
        assert_eq!(boot(dir.path(), &web1, ""), pair("web", "2.0.0"));
        assert!(!ZoneSpec::file(&dir.path().join("root"), "web", PREVIOUS).exists());
        // Unless the config allows it; then the last good image is its fallback.
        assert_eq!(
            boot(dir.path(), &web1, "allow_downgrade = true\n"),
            pair("web", "1.0.0")
        );
        let previous = ZoneSpec::load(&ZoneSpec::file(&dir.path().join("root"), "web", PREVIOUS)).unwrap();
        assert_eq!(previous.version, "2.0.0");
        // Another personality is refused, allowed downgrade or not.
        assert_eq!(boot(dir.path(), &kv, "allow_downgrade = true\n"), pair("web", "2.0.0"));
        // With the last good image changed on its disk, nothing runs: neither kv nor those bytes.
        let mut bytes = std::fs::read(&web2).unwrap();
        bytes[4096] ^= 0x55;
        std::fs::write(&web2, bytes).unwrap();
        assert_eq!(boot(dir.path(), &kv, ""), None);
        assert_eq!(boot(dir.path(), &web1, ""), None);
        // The image the zone came up on last is no downgrade, even below the floor (a rollback).
        assert_eq!(
            boot(dir.path(), &web1, "allow_downgrade = true\n"),
            pair("web", "1.0.0")
        );
        came_up(dir.path());
        assert_eq!(boot(dir.path(), &web1, ""), pair("web", "1.0.0"));
        let floor = std::fs::read_to_string(dir.path().join("pool/instances/web/highest-version")).unwrap();
        assert_eq!(floor.trim(), "2.0.0");
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

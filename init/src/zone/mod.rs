//! Zones: the personalities of the config, each run from its signed image as an isolated
//! container, like a SmartOS zone.
//!
//! The flow, and who does what:
//!
//! 1. At boot PID 1 ([`plan`]) verifies each `[[personality]]`'s image (signature by a key
//!    of `[images] trusted_keys`, payload hash, requirements), checks it against what the
//!    zone ran before (its personality and version floor, [`binding`]; refused, the zone
//!    runs its last good image if that verifies) and writes what the zone needs to
//!    `/run/ramkey/zones/NAME/zone.json` ([`ZoneSpec`]); a refused image is logged with its
//!    reason and the others still start. Each zone becomes a platform service
//!    `zone-NAME` running `ramkey-zone NAME`, so that the supervisor restarts it, stops it at
//!    shutdown, and holds it in a cgroup with the zone's caps.
//! 2. `ramkey-zone NAME` ([`launch`]) joins that cgroup, makes a PID namespace and forks the
//!    zone's PID 1; once the child has its own network namespace it creates the macvlan
//!    interface on the personality's NIC directly inside it, then waits, forwarding
//!    SIGTERM.
//! 3. The zone's PID 1 ([`inside`]) makes the zone's user namespace (its ids mapped to the
//!    zone's host id range, [`ids`]) with network, UTS, IPC and cgroup namespaces owned by
//!    it, builds the root as the host's root (overlayfs of a sealed copy of the squashfs
//!    payload, its owners in the zone's range, under a writable upper on the pool, volumes
//!    bound from the pool, a minimal `/dev`, `/proc`, read-only `/sys`, `/tmp`, `/run`, the
//!    settings file), moves it over `/` and enters it, becomes the zone's root in its user
//!    namespace, sets up its address ([`network`]; a DHCP lease is renewed by its event
//!    loop), drops capabilities, sets `no_new_privs` and a seccomp filter, then runs the
//!    manifest's services under the same supervisor and event loop as the platform.
//!
//! What fails on the way is a [`ZoneError`] ([`error`]): the step and the file, errno or
//! reason; its text is the line the console and `ramkeyctl` show.

pub mod binding;
pub mod error;
pub mod ids;
pub mod inside;
pub mod launch;
pub mod network;
pub mod plan;
pub mod root;
pub mod root_plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ramkey_image::runtime::{Runtime, VmShape};
use ramkey_image::service::{Caps, ServiceSpec};
use serde::{Deserialize, Serialize};

pub use error::ZoneError;

/// Where the zone specs live (under the root).
pub const RUN_DIR: &str = "run/ramkey/zones";
/// Where each zone's writable layer and volumes live on the pool (under `/pool`).
pub const INSTANCES_DIR: &str = "instances";
/// Where a zone's state lives, under the root, when there is no pool (in RAM).
pub const RAM_INSTANCES_DIR: &str = "run/ramkey/instances";
/// The program name the platform links to `/init` for the zone launcher.
pub const LAUNCHER: &str = "/usr/sbin/ramkey-zone";
/// The settings file inside the zone (SmartOS `customer_metadata`), under its root.
pub const SETTINGS_FILE: &str = "run/ramkey/settings.toml";
/// Where a zone on DHCP notes the address it leased (`192.168.1.23/24`), under the zone's
/// root, for `ramkeyctl personality list`.
pub const LEASE_FILE: &str = "run/ramkey/address";
/// The spec the zone goes back to: the image a swap replaced, or at boot the last good one.
pub const PREVIOUS: &str = "zone.prev.json";
/// The file in a zone's run directory saying why PID 1 refused to plan it at boot.
pub const REFUSED: &str = "refused";
/// A VM guest's virtio NIC, as its kernel names it (the only NIC it has).
pub const GUEST_IFNAME: &str = "eth0";
/// The zone's interface name inside its network namespace.
pub const ZONE_IFNAME: &str = "eth0";

/// The name the launcher gives the zone's macvlan, unique on the host: the kernel checks a
/// new link's name in the creator's namespace too, so `eth0` fails on a host that has an
/// `eth0` of its own. The zone renames it to [`ZONE_IFNAME`].
pub fn macvlan_name(zone_pid: i32) -> String {
    format!("{MACVLAN_PREFIX}{zone_pid}")
}

/// What [`macvlan_name`]s start with.
pub const MACVLAN_PREFIX: &str = "zone";

/// Everything a zone needs, written by PID 1 for the launcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneSpec {
    /// The personality's name (also the zone's hostname).
    pub name: String,
    /// The verified image file.
    pub image: PathBuf,
    /// The image's name and version, for `ramkeyctl personality list`.
    pub image_name: String,
    /// The image's version.
    pub version: String,
    /// The squashfs payload's size: the loop device ends there.
    pub payload_size: u64,
    /// The payload's sha256 (tells whether the configured image changed since it last ran).
    pub sha256: String,
    /// Where the writable layer (`upper/`, `work/`) and `volumes/` live on the host.
    pub state_dir: PathBuf,
    /// Whether `state_dir` is on the pool (otherwise in RAM).
    pub persistent: bool,
    /// Whether the writable root is kept when the image changes (the config's
    /// `persistent_root`); otherwise it is reset and only the volumes persist.
    #[serde(default)]
    pub persistent_root: bool,
    /// The host NIC (its tag) the macvlan hangs off; no network but loopback without one.
    pub nic: Option<String>,
    /// `"dhcp"`, or an address with its prefix, `10.0.2.16/24`.
    pub ip: Option<String>,
    /// The default gateway.
    pub gateway: Option<String>,
    /// DNS resolvers for the zone's `/etc/resolv.conf`.
    pub resolvers: Vec<String>,
    /// DNS search domains.
    pub search: Vec<String>,
    /// Volumes: path inside the zone → volume name (its directory under `volumes/`).
    pub volumes: BTreeMap<String, String>,
    /// The settings file's text.
    pub settings: String,
    /// The manifest's services.
    pub services: Vec<ServiceSpec>,
    /// The host cgroup the zone runs in (the supervisor's `zone-NAME` cgroup).
    pub cgroup: PathBuf,
    /// The zone's caps: the config's, or the manifest's defaults.
    pub caps: Caps,
    /// Capabilities the image asks for beyond the zone's default set (`NET_ADMIN`).
    pub capabilities: Vec<String>,
    /// The config's trusted image keys (public key lines), for `ramkeyctl personality swap`.
    pub trusted_keys: Vec<String>,
    /// The platform version images are checked against.
    pub platform_version: String,
    /// A zone, or a VM ([`crate::vm`]) of [`ZoneSpec::vm`]'s size.
    #[serde(default)]
    pub runtime: Runtime,
    /// The VM's vCPUs and memory (the image's `[vm]`).
    #[serde(default)]
    pub vm: VmShape,
    /// The kernel a VM boots (the platform's, on the usbkey); none for a zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// The MAC both nodes of an HA pair give this zone, a cluster resource whose address
    /// floats with it: the neighbours' ARP caches stay right across a failover. None: the
    /// box's own ([`crate::net::source_check::zone_mac`] of the NIC's). Only a cluster
    /// resource has one (a VM resource keeps its state disk on its replicated volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
}

impl ZoneSpec {
    /// Runs `manifest`'s image (at `path`) from now on: its services, volumes and payload.
    pub fn take_image(&mut self, path: PathBuf, manifest: &ramkey_image::manifest::Manifest) {
        self.image = path;
        self.image_name.clone_from(&manifest.name);
        self.version.clone_from(&manifest.version);
        self.payload_size = manifest.payload.size;
        self.sha256.clone_from(&manifest.payload.sha256);
        self.services.clone_from(&manifest.services);
        self.capabilities.clone_from(&manifest.requirements.capabilities);
        self.runtime = manifest.runtime;
        self.vm = manifest.vm;
        self.volumes = manifest
            .volumes
            .iter()
            .map(|v| (v.path.clone(), v.name.clone()))
            .collect();
    }

    /// The trusted keys, decoded.
    pub fn trusted(&self) -> Vec<ramkey_image::VerifyingKey> {
        self.trusted_keys
            .iter()
            .filter_map(|line| ramkey_image::keys::decode_public(line, "a trusted key").ok())
            .collect()
    }

    /// Writes the spec to `run/ramkey/zones/NAME/FILE` under `root`.
    pub fn write(&self, root: &Path, file: &str) -> Result<(), ZoneError> {
        let path = Self::file(root, &self.name, file);
        let text = serde_json::to_vec_pretty(self).map_err(ZoneError::SpecEncode)?;
        path.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(ZoneError::file(&path))
    }

    /// `run/ramkey/zones/NAME/zone.json` under `root`.
    pub fn path(root: &Path, name: &str) -> PathBuf {
        Self::file(root, name, "zone.json")
    }

    /// `run/ramkey/zones/NAME/FILE` under `root`: the spec, [`PREVIOUS`], the rollback note.
    pub fn file(root: &Path, name: &str, file: &str) -> PathBuf {
        root.join(RUN_DIR).join(name).join(file)
    }

    /// Reads the spec PID 1 wrote for zone `name`.
    pub fn read(root: &Path, name: &str) -> Result<Self, ZoneError> {
        Self::load(&Self::path(root, name))
    }

    /// Reads a spec file: `zone.json`, [`PREVIOUS`], a zone's `good.json`.
    pub fn load(path: &Path) -> Result<Self, ZoneError> {
        let text = std::fs::read_to_string(path).map_err(ZoneError::file(path))?;
        serde_json::from_str(&text).map_err(|source| ZoneError::SpecParse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Every zone spec under `root`, in name order.
    pub fn all(root: &Path) -> Vec<Self> {
        let Ok(entries) = std::fs::read_dir(root.join(RUN_DIR)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.iter().filter_map(|n| Self::read(root, n).ok()).collect()
    }

    /// Where the image the zone last came up on is recorded (with a pool only).
    pub fn good_record(&self) -> Option<PathBuf> {
        self.persistent.then(|| self.state_dir.join("good.json"))
    }

    /// The zone's static IPv4 address (`None` on DHCP or without one).
    pub fn static_ipv4(&self) -> Option<std::net::Ipv4Addr> {
        static_ipv4(self.ip.as_deref())
    }

    /// The supervisor's service that runs this zone.
    pub fn service_name(name: &str) -> String {
        format!("zone-{name}")
    }
}

/// The IPv4 address of a spec's `ip` (`10.0.2.16/24`); `None` for `dhcp` or IPv6.
fn static_ipv4(ip: Option<&str>) -> Option<std::net::Ipv4Addr> {
    ip?.split_once('/')?.0.parse().ok()
}

/// The zones PID 1 refused at boot, in name order, each with the reason it gave.
pub fn refused(root: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(root.join(RUN_DIR)) else {
        return Vec::new();
    };
    let mut refused: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let reason = std::fs::read_to_string(ZoneSpec::file(root, &name, REFUSED)).ok()?;
            Some((name, reason.trim_end().to_string()))
        })
        .collect();
    refused.sort();
    refused
}

/// Notes why zone `name` was refused, for `ramkeyctl personality list`.
pub fn note_refused(root: &Path, name: &str, reason: &str) {
    let path = ZoneSpec::file(root, name, REFUSED);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, format!("{reason}\n")));
    if let Err(e) = written {
        crate::warn!("zone {name}: {}: {e}", path.display());
    }
}

/// A spec for tests: zone `web` running `web` 1.0.0 from `/pool/images/web.rkimg`, no
/// network, no volumes; tests change what they look at.
#[cfg(test)]
pub(crate) fn test_spec() -> ZoneSpec {
    ZoneSpec {
        name: "web".into(),
        image: PathBuf::from("/pool/images/web.rkimg"),
        image_name: "web".into(),
        version: "1.0.0".into(),
        payload_size: 4096,
        sha256: "0".repeat(64),
        state_dir: PathBuf::from("/pool/instances/web"),
        persistent: true,
        persistent_root: false,
        nic: None,
        ip: None,
        gateway: None,
        resolvers: Vec::new(),
        search: Vec::new(),
        volumes: std::collections::BTreeMap::new(),
        settings: String::new(),
        services: Vec::new(),
        cgroup: PathBuf::from("/sys/fs/cgroup/ramkey/zone-web"),
        caps: ramkey_image::service::Caps::default(),
        capabilities: Vec::new(),
        trusted_keys: Vec::new(),
        platform_version: "1.0.0".into(),
        runtime: Runtime::Zone,
        vm: VmShape::default(),
        kernel: None,
        mac: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_static_ipv4_address_is_checked_as_the_source() {
        assert_eq!(super::static_ipv4(Some("10.0.2.16/24")), Some([10, 0, 2, 16].into()));
        assert_eq!(super::static_ipv4(Some("dhcp")), None);
        assert_eq!(super::static_ipv4(Some("fd00::5/64")), None);
        assert_eq!(super::static_ipv4(None), None);
    }

    #[test]
    fn refused_zones_are_listed_with_their_reason_in_name_order() {
        let root = tempfile::tempdir().unwrap();
        assert!(super::refused(root.path()).is_empty());
        super::note_refused(root.path(), "tampered", "refused: payload sha256 mismatch");
        super::note_refused(root.path(), "stranger", "refused: not trusted");
        // A planned zone has a spec and no note.
        let planned = super::ZoneSpec::path(root.path(), "web");
        std::fs::create_dir_all(planned.parent().unwrap()).unwrap();
        std::fs::write(&planned, "{}").unwrap();
        assert_eq!(
            super::refused(root.path()),
            [
                ("stranger".to_string(), "refused: not trusted".to_string()),
                ("tampered".to_string(), "refused: payload sha256 mismatch".to_string()),
            ]
        );
    }

    #[test]
    fn macvlan_names_fit_the_kernels_limit() {
        // PID_MAX_LIMIT; IFNAMSIZ is 16 with the terminating NUL.
        let longest = super::macvlan_name(4_194_304);
        assert!(
            longest.len() <= 15 && longest.starts_with(super::MACVLAN_PREFIX),
            "{longest}"
        );
    }
}

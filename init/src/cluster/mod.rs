//! The HA pair: two boxes, each running one [`agent`] beside Debian's keepalived and the
//! kernel's DRBD. No consensus or replication is written here:
//!
//! - **keepalived** (VRRP, unicast over the `[cluster] link` NIC, password-authenticated)
//!   decides which node is MASTER. Its health check is `ramkeyctl cluster check` (a node in
//!   standby or whose resource is in maintenance fails it and goes to FAULT, handing over);
//!   it reports every state change on a FIFO the agent reads.
//! - **DRBD** (the kernel's 8.4 module, driven with `drbdadm` from drbd-utils) replicates each
//!   resource's volumes, synchronously (protocol C), over the same link. Its backing disk is
//!   a file on the pool on a loop device, created on the first boot of a blank pool.
//! - **The agent** (`ramkey-cluster`, a platform service) brings each resource's DRBD device
//!   up at boot, then follows keepalived: MASTER promotes (DRBD primary, mount the volumes,
//!   start the zone, whose own address is the floating one), anything else demotes (stop
//!   the zone, unmount, secondary), one change at a time. Split brain is DRBD's to detect;
//!   its handler (`ramkeyctl cluster split-brain`) says so on the console and in
//!   `ramkeyctl cluster status`, and nothing is discarded until an administrator says which
//!   copy goes (`ramkeyctl cluster resolve`).
//!
//! PID 1 ([`plan`]) writes the [`Plan`] for the agent and defines the two services; the
//! resources' zones start disabled and only the agent enables them.

pub mod agent;
pub mod conf;
pub mod disks;
pub mod drbd;
pub mod metrics;
pub mod plan;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::paths::Paths;

/// Where the agent's files live, under the root.
pub const RUN_DIR: &str = "run/ramkey/cluster";
/// Where each resource's replicated disk lives, under the pool.
pub const POOL_DIR: &str = "cluster";
/// The first resource's DRBD port; the next ones count up.
pub const FIRST_PORT: u16 = 7789;
/// keepalived's VRRP instance.
pub const INSTANCE: &str = "ramkey";
/// The agent's program (a link to the platform binary).
pub const AGENT: &str = "/usr/sbin/ramkey-cluster";
/// `ramkeyctl`, which keepalived and DRBD call back.
pub const RAMKEYCTL: &str = "/usr/bin/ramkeyctl";
/// keepalived's health check, a script in the platform running `ramkeyctl cluster check`.
pub const CHECK: &str = "/usr/lib/ramkey/cluster-check";
/// The agent's platform service.
pub const AGENT_SERVICE: &str = "cluster";
/// keepalived's service.
pub const KEEPALIVED_SERVICE: &str = "keepalived";

/// What PID 1 tells the agent: the config's `[cluster]` resolved for this box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// This box's host name (DRBD's `on` section for it).
    pub hostname: String,
    /// This node's name.
    pub node: String,
    /// The peer's name.
    pub peer: String,
    /// This node's address on the link.
    pub address: Ipv4Addr,
    /// The peer's address on the link.
    pub peer_address: Ipv4Addr,
    /// The link's interface.
    pub link: String,
    /// The shared secret.
    pub secret: String,
    /// This node's VRRP priority.
    pub priority: u8,
    /// VRRP's virtual router id.
    pub router_id: u8,
    /// Whether the higher priority takes the resources back.
    pub failback: bool,
    /// Each resource's replicated disk size, bytes.
    pub size: u64,
    /// The resources, in config order.
    pub resources: Vec<Resource>,
}

/// One resource: a personality whose volumes are a DRBD device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The personality (and DRBD resource) name.
    pub name: String,
    /// The DRBD minor (`/dev/drbdN`).
    pub minor: u32,
    /// Its DRBD port on the link.
    pub port: u16,
    /// Where its volumes are mounted: the zone's `volumes` folder on the pool.
    pub volumes: PathBuf,
}

/// The cluster's files on a box.
#[derive(Debug, Clone)]
pub struct Places {
    root: PathBuf,
    pool: PathBuf,
    dev: PathBuf,
}

impl Places {
    /// The places under `paths`.
    pub fn new(paths: &Paths) -> Self {
        Places {
            root: paths.root().join(RUN_DIR),
            pool: paths.pool().join(POOL_DIR),
            dev: paths.dev(),
        }
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.root
    }
    /// The plan PID 1 wrote.
    pub fn plan(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    /// keepalived's configuration.
    pub fn keepalived_conf(&self) -> PathBuf {
        self.root.join("keepalived.conf")
    }
    /// DRBD's configuration (`/etc/drbd.conf` links here).
    pub fn drbd_conf(&self) -> PathBuf {
        self.root.join("drbd.conf")
    }
    /// keepalived's state changes, for the agent.
    pub fn fifo(&self) -> PathBuf {
        self.root.join("notify.fifo")
    }
    /// The agent's record of keepalived's last state (`MASTER`, `BACKUP`, `FAULT`) and since when.
    pub fn role(&self) -> PathBuf {
        self.root.join("role")
    }
    /// Present once the agent has the DRBD devices up.
    pub fn ready(&self) -> PathBuf {
        self.root.join("ready")
    }
    /// Why the last promotion failed, while this node is MASTER without its resources (the
    /// check fails, so that the peer takes them).
    pub fn unpromoted(&self) -> PathBuf {
        self.root.join("not-promoted")
    }
    /// `ramkeyctl cluster failover`'s temporary standby.
    pub fn handing_over(&self) -> PathBuf {
        self.root.join("handing-over")
    }
    /// `ramkeyctl cluster standby`'s flag, on the pool: it outlives a reboot.
    pub fn standby(&self) -> PathBuf {
        self.pool.join("standby")
    }
    /// The note DRBD's split-brain handler leaves for `resource`.
    pub fn split_brain(&self, resource: &str) -> PathBuf {
        self.root.join(format!("split-brain-{resource}"))
    }
    /// The pool's folder of replicated disks.
    pub fn pool_dir(&self) -> &Path {
        &self.pool
    }
    /// `resource`'s backing file on the pool.
    pub fn disk(&self, resource: &str) -> PathBuf {
        self.pool.join(format!("{resource}.disk"))
    }
    /// Present while `resource`'s disk has never been made a filesystem (a blank pool's).
    pub fn fresh(&self, resource: &str) -> PathBuf {
        self.pool.join(format!("{resource}.fresh"))
    }
    /// The DRBD device of `minor`.
    pub fn device(&self, minor: u32) -> PathBuf {
        self.dev.join(format!("drbd{minor}"))
    }
}

impl Plan {
    /// Reads the plan PID 1 wrote.
    pub fn read(places: &Places) -> Result<Plan, String> {
        let path = places.plan();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (is [cluster] in the config?)", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// alpha's plan in a pair with beta, with one resource, `web` (for tests).
    #[cfg(test)]
    pub fn example(failback: bool) -> Plan {
        Plan {
            hostname: "alpha".into(),
            node: "alpha".into(),
            peer: "beta".into(),
            address: "10.99.0.1".parse().unwrap(),
            peer_address: "10.99.0.2".parse().unwrap(),
            link: "cluster".into(),
            secret: "s3cret-pair-of-boxes".into(),
            priority: 150,
            router_id: 51,
            failback,
            size: 64 << 20,
            resources: vec![Resource {
                name: "web".into(),
                minor: 0,
                port: 7789,
                volumes: "/pool/instances/web/volumes".into(),
            }],
        }
    }

    /// The resource named `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

/// Writes `text` to `path`, readable and writable by root only, also when the file was there
/// with another mode: the plan and the configurations hold the pair's secret.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// keepalived's last state as the agent recorded it (`UNKNOWN` before it has), and since
/// when (seconds since the epoch).
pub fn role(places: &Places) -> (String, Option<u64>) {
    let text = std::fs::read_to_string(places.role()).unwrap_or_default();
    let mut words = text.split_whitespace();
    let role = words.next().unwrap_or("UNKNOWN").to_string();
    (role, words.next().and_then(|s| s.parse().ok()))
}

/// Says `line` on the box's console and in the caller's log (stderr): what the cluster does
/// is what an administrator at either box must see.
pub fn say(paths: &Paths, line: &str) {
    eprintln!("{line}");
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open(paths.console()) {
        use std::io::Write;
        let _ = writeln!(console, "ramkey: {line}");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_is_written_for_root_only_even_over_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keepalived.conf");
        std::fs::write(&path, "old, readable by all").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write_secret(&path, "auth_pass s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "auth_pass s3cret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

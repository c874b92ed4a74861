//! The usbkey config (`config.toml`): schema, validation and comment-preserving edits.
//!
//! - [`Config::parse`] reads and checks a config, reporting every problem with its line,
//!   column and a hint ([`ConfigErrors`]).
//! - [`edit::Document`] changes single values by dotted key while keeping comments and layout.
//! - [`atomic::write_config`] replaces the file power-safely on FAT.
//! - [`smartos::import`] turns a SmartOS `/usbkey/config` into a Ramkey config.
//!
//! The schema is documented by example in `tests/fixtures/accept/full.toml` (every section,
//! commented); each rejected case has its own file under `tests/fixtures/reject/`.

pub mod atomic;
mod cluster;
pub mod edit;
mod error;
mod keys;
mod load;
mod model;
mod net;
mod raw;
pub mod smartos;
mod suggest;
mod units;
mod validate;
mod validate_cluster;
mod validate_images;
mod validate_net;
mod validate_observe;
mod validate_volumes;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Location};
pub use keys::SSH_KEY_TYPES;
pub use load::SUPPORTED_VERSION;
pub use model::{
    Addressing, Admin, Cidr, Cluster, ClusterNode, Config, Dns, Filesystem, HostPort, Log, LogLevel, MacAddr, Metrics,
    Nic, Personality, Pool, Remote, Selector, SettingValue, Ssh, SshKey, Transport, TrustedKey, Upgrade,
};
pub use units::parse_size;

/// The filesystem label of the usbkey's FAT partition.
pub const USBKEY_LABEL: &str = "RAMKEY";

/// The config's file name at the root of the usbkey.
pub const CONFIG_FILE: &str = "config.toml";

impl Config {
    /// Parses and validates a config.
    ///
    /// `file_name` is only used in messages (`config.toml:12:5: ...`).
    ///
    /// # Errors
    /// Every problem found: TOML syntax, an unknown or missing `version`, unknown keys, wrong
    /// types, and the checks beyond types (addresses, gateways, duplicates, references, ...).
    pub fn parse(text: &str, file_name: &str) -> Result<Self, ConfigErrors> {
        let raw = load::load(text).map_err(|e| ConfigErrors::new(file_name, e))?;
        validate::validate(text, raw).map_err(|e| ConfigErrors::new(file_name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = include_str!("../tests/fixtures/accept/full.toml");

    #[test]
    fn full_example_is_typed() {
        let c = Config::parse(FULL, CONFIG_FILE).expect("valid");
        assert_eq!(c.hostname, "box1");
        let admin = c.nic("admin").expect("admin nic");
        assert!(matches!(admin.selector, Selector::Mac(_)));
        assert_eq!(
            admin.ip.and_then(Addressing::cidr).map(|c| c.to_string()).as_deref(),
            Some("192.168.1.2/24")
        );
        assert_eq!(c.nic("external").map(|n| n.ip), Some(Some(Addressing::Dhcp)));
        assert_eq!(
            (c.admin.ssh.port, c.admin.ssh.nics.as_slice()),
            (22, ["admin".to_owned()].as_slice())
        );
        let minimal = Config::parse("version = 1\nhostname = \"b\"\n", CONFIG_FILE).expect("valid");
        assert_eq!(minimal.admin.ssh, Ssh::default());
        let web = c.personality("web").expect("web");
        assert_eq!(web.memory, Some(512 << 20));
        assert_eq!(web.cpu, Some(1.5));
        assert_eq!(web.settings.get("workers"), Some(&SettingValue::Integer(4)));
        assert!(!c.personality("dns").expect("dns").enabled);
        assert_eq!(c.trusted_keys.len(), 2);
        assert_eq!(
            c.image_sources,
            ["http://192.168.1.10:8080/images", "https://192.168.1.11:8443/images"]
        );
        assert_eq!(c.image_ca_certs.len(), 1);
        let pool = c.pool.expect("[pool]");
        assert_eq!(pool.filesystem, Filesystem::Btrfs);
        assert_eq!(pool.create, [pool.disks[0].clone(), pool.mirror[0].clone()]);
        assert!(!pool.allow_degraded);
    }

    #[test]
    fn pool_allow_degraded_is_a_btrfs_boolean_off_by_default() {
        let allow = |value: &str| {
            let text = format!("version = 1\nhostname = \"a\"\n[pool]\nfilesystem = \"btrfs\"\n{value}");
            Config::parse(&text, "c.toml").map(|c| c.pool.expect("[pool]").allow_degraded)
        };
        assert!(allow("allow_degraded = true").unwrap());
        assert!(!allow("allow_degraded = false").unwrap());
        assert!(!allow("").unwrap());
        let ext4 = "version = 1\nhostname = \"a\"\n[pool]\nallow_degraded = true\n";
        let e = Config::parse(ext4, "c.toml").unwrap_err().to_string();
        assert_eq!(
            e,
            "c.toml:4:18: pool: `allow_degraded` is about a btrfs mirror and needs filesystem = \"btrfs\"\n  \
             hint: set filesystem = \"btrfs\" (the pool's mirror), or remove `allow_degraded`"
        );
        // false says nothing about the filesystem: it is the default.
        let off = "version = 1\nhostname = \"a\"\n[pool]\nallow_degraded = false\n";
        assert!(!Config::parse(off, "c.toml").unwrap().pool.unwrap().allow_degraded);
    }

    #[test]
    fn personality_allow_downgrade_is_a_boolean_off_by_default() {
        let allow = |value: &str| {
            let text =
                format!("version = 1\nhostname = \"a\"\n[[personality]]\nname = \"web\"\nimage = \"w.rkimg\"\n{value}");
            Config::parse(&text, "c.toml").map(|c| c.personality("web").expect("web").allow_downgrade)
        };
        assert!(allow("allow_downgrade = true").unwrap());
        assert!(!allow("allow_downgrade = false").unwrap());
        assert!(!allow("").unwrap());
        let e = allow("allow_downgrade = \"yes\"").unwrap_err().to_string();
        assert!(e.starts_with("c.toml:6:19: "), "{e}");
    }

    #[test]
    fn pool_create_names_the_disk_it_confirms() {
        let create = |value: &str| {
            let text = format!("version = 1\nhostname = \"a\"\n[pool]\ndisks = [\"virtio-x\"]\n{value}");
            Config::parse(&text, "c.toml").map(|c| c.pool.expect("[pool]").create)
        };
        assert_eq!(create("create = \"virtio-x\"").unwrap(), ["virtio-x"]);
        assert_eq!(create("create = [\"virtio-x\"]").unwrap(), ["virtio-x"]);
        assert!(create("create = false").unwrap().is_empty());
        assert!(create("").unwrap().is_empty());
        let e = create("create = true").unwrap_err().to_string();
        assert_eq!(
            e,
            "c.toml:5:10: create = true is no longer accepted: write create = \"<the disk id>\" to confirm which \
             disk may be formatted\n  hint: write create = \"virtio-x\""
        );
    }

    #[test]
    fn all_problems_are_reported() {
        let text = "version = 1\nhostname = \"a.b\"\ntimezone = \"Nowhere\"\n[[nic]]\ntag = \"x\"\nname = \"eth0\"\nvlan = 0\n[dns]\nresolvers = [\"1.2.3\"]\n";
        let e = Config::parse(text, "c.toml").expect_err("invalid");
        assert_eq!(e.len(), 4, "{e}");
        let shape =
            "version = 1\nhostname = \"a\"\n[[nic]]\ntag = 1\n[[nic]]\ntag = \"b\"\nfoo = 2\n[ntp]\nservers = 3\n";
        let e = Config::parse(shape, "c.toml").expect_err("invalid");
        assert_eq!(e.len(), 3, "{e}");
    }
}

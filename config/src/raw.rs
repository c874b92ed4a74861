//! The raw (serde) form of config version 1: types only, with spans for error messages.
//! Validation turns it into [`crate::Config`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;

use crate::model::SettingValue;

/// Version 1 as written. Fields are `Spanned` so that validation can point at them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfigV1 {
    #[expect(dead_code, reason = "checked by `load::check_version` before serde runs")]
    pub version: Spanned<i64>,
    pub hostname: Spanned<String>,
    pub timezone: Option<Spanned<String>>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub nic: Vec<Spanned<RawNic>>,
    pub dns: Option<RawDns>,
    pub ntp: Option<RawNtp>,
    pub pool: Option<Spanned<RawPool>>,
    pub log: Option<RawLog>,
    #[serde(default)]
    pub personality: Vec<Spanned<RawPersonality>>,
    pub images: Option<RawImages>,
    pub upgrade: Option<RawUpgrade>,
    pub metrics: Option<RawMetrics>,
    pub cluster: Option<Spanned<RawCluster>>,
}

/// The top-level keys, for the per-section pass that collects every shape error.
pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "hostname",
    "timezone",
    "admin",
    "nic",
    "dns",
    "ntp",
    "pool",
    "log",
    "personality",
    "images",
    "upgrade",
    "metrics",
    "cluster",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    #[serde(default)]
    pub authorized_keys: Vec<Spanned<String>>,
    pub password_hash: Option<Spanned<String>>,
    pub ssh: Option<RawSsh>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSsh {
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub nics: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNic {
    pub tag: Spanned<String>,
    pub mac: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub ip: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    pub vlan: Option<Spanned<i64>>,
    pub mtu: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    #[serde(default)]
    pub resolvers: Vec<Spanned<String>>,
    #[serde(default)]
    pub search: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNtp {
    #[serde(default)]
    pub servers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    #[serde(default)]
    pub disks: Vec<Spanned<String>>,
    pub filesystem: Option<Spanned<String>>,
    pub create: Option<Spanned<RawCreate>>,
    #[serde(default)]
    pub mirror: Vec<Spanned<String>>,
    pub allow_degraded: Option<Spanned<bool>>,
}

/// `[pool] create` as written: the ids of the disks it confirms, or a boolean (the old
/// form: `false` means none, `true` is refused by validation with the new form).
#[derive(Debug)]
pub(crate) enum RawCreate {
    Bool(bool),
    Ids(Vec<String>),
}

struct CreateVisitor;

impl<'de> Visitor<'de> for CreateVisitor {
    type Value = RawCreate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a disk id or a list of disk ids")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawCreate, E> {
        Ok(RawCreate::Bool(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCreate, E> {
        Ok(RawCreate::Ids(vec![v.to_owned()]))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawCreate, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element::<String>()? {
            ids.push(id);
        }
        Ok(RawCreate::Ids(ids))
    }
}

impl<'de> Deserialize<'de> for RawCreate {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CreateVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpgrade {
    pub commit_deadline: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub remote: Option<Spanned<String>>,
    pub buffer: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub node: Spanned<String>,
    pub link: Spanned<String>,
    pub secret: Spanned<String>,
    #[serde(default)]
    pub resources: Vec<Spanned<String>>,
    pub size: Option<Spanned<String>>,
    #[serde(default)]
    pub failback: bool,
    pub router_id: Option<Spanned<i64>>,
    #[serde(default)]
    pub nodes: Vec<Spanned<RawClusterNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClusterNode {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub priority: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPersonality {
    pub name: Spanned<String>,
    pub image: Spanned<String>,
    pub nic: Option<Spanned<String>>,
    pub ip: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
    pub cpu: Option<Spanned<f64>>,
    pub pids: Option<Spanned<i64>>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub settings: BTreeMap<String, Spanned<SettingValue>>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub persistent_root: bool,
    #[serde(default)]
    pub allow_downgrade: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawImages {
    #[serde(default)]
    pub trusted_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub ca_certs: Vec<Spanned<String>>,
}

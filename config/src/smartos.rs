//! Import of a SmartOS `/usbkey/config` (shell-style `key=value` lines) into a Ramkey config.
//!
//! Carried over: `hostname`, `<tag>_nic` with `<tag>0_ip` / `_netmask` / `_gateway` /
//! `_vlan_id` (`admin_ip`, `admin_netmask`, ... for the admin tag), `headnode_default_gateway`,
//! `dns_resolvers`, `dns_domain`, `dns_search`, `ntp_hosts`, `root_shadow`. Every other key is
//! reported as [`NotCarried`] with its line and the reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::net::{Cidr, MacAddr};
use crate::{Config, ConfigErrors};

/// A SmartOS key that the import could not carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCarried {
    /// Its line in the SmartOS file, from 1.
    pub line: usize,
    /// The key (or the whole line, if it is not `key=value`).
    pub key: String,
    /// Why, and what to do instead.
    pub reason: String,
}

impl std::fmt::Display for NotCarried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config:{}: {}: {}", self.line, self.key, self.reason)
    }
}

/// Errors of the import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The converted config is not valid (a required key was missing or a value is refused);
    /// `text` is the conversion, for the user to finish by hand.
    #[error("the imported config is not valid:\n{errors}")]
    Invalid {
        /// The converted TOML.
        text: String,
        /// Its problems.
        errors: ConfigErrors,
    },
}

struct Entry {
    value: String,
    line: usize,
    used: bool,
}

fn parse_lines(text: &str, skipped: &mut Vec<NotCarried>) -> BTreeMap<String, Entry> {
    let mut entries = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            skipped.push(NotCarried {
                line: i + 1,
                key: line.to_owned(),
                reason: "not a key=value line".into(),
            });
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        let entry = Entry {
            value: value.to_owned(),
            line: i + 1,
            used: false,
        };
        entries.insert(key.trim().to_owned(), entry);
    }
    entries
}

fn take(entries: &mut BTreeMap<String, Entry>, key: &str) -> Option<String> {
    let entry = entries.get_mut(key)?;
    entry.used = true;
    Some(entry.value.clone())
}

fn quote(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

fn quoted_list(csv: &str) -> String {
    let items: Vec<String> = csv.split([',', ' ']).filter(|s| !s.is_empty()).map(quote).collect();
    format!("[{}]", items.join(", "))
}

fn netmask_prefix(mask: &str) -> Option<u8> {
    let bits = u32::from(mask.parse::<Ipv4Addr>().ok()?);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0)
        .then(|| u8::try_from(prefix).ok())
        .flatten()
}

struct Nic {
    tag: String,
    mac: String,
    cidr: Option<Cidr>,
    dhcp: bool,
    gateway: Option<String>,
    vlan: Option<String>,
}

/// Reads the address keys of one tag (`admin_ip` or `<tag>0_ip`, and their siblings).
fn nic(entries: &mut BTreeMap<String, Entry>, tag: &str, mac: String, skipped: &mut Vec<NotCarried>) -> Nic {
    let prefix = if tag == "admin" {
        "admin".to_owned()
    } else {
        format!("{tag}0")
    };
    let mut nic = Nic {
        tag: tag.to_owned(),
        mac,
        cidr: None,
        dhcp: false,
        gateway: None,
        vlan: None,
    };
    let ip = take(entries, &format!("{prefix}_ip"));
    let mask = take(entries, &format!("{prefix}_netmask"));
    match (ip.as_deref(), mask.as_deref()) {
        (Some("dhcp"), _) => nic.dhcp = true,
        (Some(ip), Some(mask)) => match (ip.parse(), netmask_prefix(mask)) {
            (Ok(addr), Some(prefix)) => nic.cidr = Some(Cidr { addr, prefix }),
            _ => skipped.push(NotCarried {
                line: entries.get(&format!("{prefix}_ip")).map_or(0, |e| e.line),
                key: format!("{prefix}_ip"),
                reason: format!("{ip}/{mask} is not an IPv4 address and netmask"),
            }),
        },
        (Some(_), None) => skipped.push(NotCarried {
            line: entries.get(&format!("{prefix}_ip")).map_or(0, |e| e.line),
            key: format!("{prefix}_ip"),
            reason: format!("no {prefix}_netmask to go with it"),
        }),
        (None, _) => {}
    }
    nic.gateway = take(entries, &format!("{prefix}_gateway"));
    nic.vlan = take(entries, &format!("{prefix}_vlan_id")).filter(|v| v != "0");
    nic
}

/// Converts a SmartOS `/usbkey/config` into Ramkey `config.toml` text, validated, and the
/// list of keys that were not carried over.
///
/// # Errors
/// [`ImportError::Invalid`] if the result is not a valid config (for example the SmartOS file
/// has no `hostname`); the error holds the converted text.
pub fn import(text: &str) -> Result<(String, Vec<NotCarried>), ImportError> {
    let mut skipped = Vec::new();
    let mut entries = parse_lines(text, &mut skipped);
    let mut out = String::from("# Imported from a SmartOS /usbkey/config.\nversion = 1\n");
    if let Some(hostname) = take(&mut entries, "hostname") {
        let _ = writeln!(out, "hostname = {}", quote(&hostname));
    }
    if let Some(shadow) = take(&mut entries, "root_shadow") {
        let _ = writeln!(out, "\n[admin]\npassword_hash = {}", quote(&shadow));
    }
    let tags: Vec<(String, String)> = entries
        .iter()
        .filter_map(|(k, e)| k.strip_suffix("_nic").map(|tag| (tag.to_owned(), e.value.clone())))
        .filter(|(_, mac)| mac.parse::<MacAddr>().is_ok())
        .collect();
    let mut nics: Vec<Nic> = Vec::new();
    for (tag, mac) in tags {
        take(&mut entries, &format!("{tag}_nic"));
        nics.push(nic(&mut entries, &tag, mac, &mut skipped));
    }
    if let Some(gw) = take(&mut entries, "headnode_default_gateway") {
        let target = gw.parse().ok().and_then(|gw| {
            nics.iter_mut()
                .find(|n| n.gateway.is_none() && n.cidr.is_some_and(|c| c.contains(gw)))
        });
        match target {
            Some(n) => n.gateway = Some(gw),
            None => skipped.push(NotCarried {
                line: entries.get("headnode_default_gateway").map_or(0, |e| e.line),
                key: "headnode_default_gateway".into(),
                reason: format!("no nic has a subnet that reaches {gw}; set `gateway` on one by hand"),
            }),
        }
    }
    for n in &nics {
        let _ = write!(out, "\n[[nic]]\ntag = {}\nmac = {}\n", quote(&n.tag), quote(&n.mac));
        if n.dhcp {
            out.push_str("ip = \"dhcp\"\n");
        } else if let Some(cidr) = n.cidr {
            let _ = writeln!(out, "ip = {}", quote(&cidr.to_string()));
        }
        if let Some(gw) = &n.gateway {
            let _ = writeln!(out, "gateway = {}", quote(gw));
        }
        if let Some(vlan) = &n.vlan {
            let _ = writeln!(
                out,
                "vlan = {}",
                vlan.parse::<u16>().map_or_else(|_| quote(vlan), |v| v.to_string())
            );
        }
    }
    let resolvers = take(&mut entries, "dns_resolvers");
    let search: Vec<String> = ["dns_domain", "dns_search"]
        .iter()
        .filter_map(|k| take(&mut entries, k))
        .flat_map(|v| {
            v.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    if resolvers.is_some() || !search.is_empty() {
        out.push_str("\n[dns]\n");
        if let Some(r) = resolvers {
            let _ = writeln!(out, "resolvers = {}", quoted_list(&r));
        }
        if !search.is_empty() {
            let mut unique = search.clone();
            unique.dedup();
            let _ = writeln!(out, "search = {}", quoted_list(&unique.join(",")));
        }
    }
    if let Some(ntp) = take(&mut entries, "ntp_hosts") {
        let _ = writeln!(out, "\n[ntp]\nservers = {}", quoted_list(&ntp));
    }
    for (key, entry) in &entries {
        if entry.used {
            continue;
        }
        let reason = match key.as_str() {
            "root_authorized_keys_file" => format!(
                "the keys live in a separate file ({}); paste its lines into [admin] authorized_keys",
                entry.value
            ),
            k if k.ends_with("_nic") => format!("{:?} is not a MAC address", entry.value),
            k if k.contains("_ip") || k.contains("_netmask") || k.contains("_gateway") || k.contains("_vlan_id") => {
                "no matching <tag>_nic, or a second address on one nic (Ramkey has one per nic)".into()
            }
            _ => "no Ramkey equivalent".into(),
        };
        skipped.push(NotCarried {
            line: entry.line,
            key: key.clone(),
            reason,
        });
    }
    skipped.sort_by_key(|n| n.line);
    match Config::parse(&out, "imported config.toml") {
        Ok(_) => Ok((out, skipped)),
        Err(errors) => Err(ImportError::Invalid { text: out, errors }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADNODE: &str = "\
# SmartOS headnode config
coal=true
hostname=headnode
admin_nic=0:c:29:a1:b2:c3
admin_ip=10.99.99.7
admin_netmask=255.255.255.0
external_nic=0:c:29:a1:b2:c4
external0_ip=192.168.10.20
external0_netmask=255.255.255.0
external0_vlan_id=100
external1_ip=192.168.11.20
headnode_default_gateway=192.168.10.1
dns_resolvers=8.8.8.8,8.8.4.4
dns_domain=example.com
ntp_hosts=pool.ntp.org
root_authorized_keys_file=root.authorized_keys
root_shadow=$6$Ramkey.salt$KSwJuWo.EVeRVmM8ssvKwggaxn2ssGR2Ql/omSq2MXMiQaaQhT/NakFHZL3dgWSimoAy2eVyhWkUCosjc8i080
this line is odd
";

    #[test]
    fn a_headnode_config_imports() {
        let (text, skipped) = import(HEADNODE).expect("valid import");
        let c = Config::parse(&text, "t").expect("valid");
        assert_eq!(c.hostname, "headnode");
        let ext = c.nic("external").expect("external");
        assert_eq!(ext.vlan, Some(100));
        assert_eq!(ext.gateway.map(|g| g.to_string()).as_deref(), Some("192.168.10.1"));
        assert_eq!(
            c.nic("admin").and_then(|n| n.ip),
            Some(crate::Addressing::Static {
                addr: "10.99.99.7".parse().expect("ip"),
                prefix: 24
            })
        );
        assert_eq!(c.dns.search, vec!["example.com".to_owned()]);
        assert!(c.admin.password_hash.is_some());
        let keys: Vec<(usize, &str)> = skipped.iter().map(|n| (n.line, n.key.as_str())).collect();
        assert_eq!(
            keys,
            vec![
                (2, "coal"),
                (11, "external1_ip"),
                (16, "root_authorized_keys_file"),
                (18, "this line is odd")
            ]
        );
        assert!(skipped[2].reason.contains("root.authorized_keys"));
    }

    #[test]
    fn an_import_without_hostname_is_reported_with_its_text() {
        let Err(ImportError::Invalid { text, errors }) = import("admin_nic=0:c:29:a1:b2:c3\nadmin_ip=dhcp\n") else {
            panic!("a config without hostname is invalid");
        };
        assert!(text.contains("ip = \"dhcp\""));
        assert!(errors.to_string().contains("hostname"), "{errors}");
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_prefix("255.255.255.0"), Some(24));
        assert_eq!(netmask_prefix("255.255.255.255"), Some(32));
        assert_eq!(netmask_prefix("0.0.0.0"), Some(0));
        assert_eq!(netmask_prefix("255.0.255.0"), None);
    }
}

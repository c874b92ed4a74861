//! From the raw structs to [`Config`]: every check beyond types, each error at its span.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use toml::Spanned;

use crate::error::{ConfigError, ErrorKind, Location};
use crate::keys::{check_password_hash, parse_ssh_key};
use crate::model::{Admin, Config, Dns, Filesystem, Pool, Ssh};
use crate::net::{domain_problem, host_problem, label_problem};
use crate::raw::{RawAdmin, RawConfigV1, RawCreate, RawDns, RawNic, RawNtp, RawPool};
use crate::suggest::{is_timezone, timezone_hint};

/// Collects problems while checking; each problem is placed in the text by its span.
pub(crate) struct Checker<'t> {
    text: &'t str,
    pub errors: Vec<ConfigError>,
}

impl<'t> Checker<'t> {
    pub fn new(text: &'t str) -> Self {
        Self {
            text,
            errors: Vec::new(),
        }
    }

    /// Records a problem; the returned reference lets the caller add a hint.
    pub fn push(&mut self, span: Range<usize>, kind: ErrorKind) -> &mut ConfigError {
        self.errors.push(ConfigError::new(self.text, span, kind));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }

    /// Records an invalid value.
    pub fn invalid<T: std::fmt::Debug>(
        &mut self,
        value: &Spanned<T>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> &mut ConfigError {
        let kind = ErrorKind::Invalid {
            field: field.into(),
            value: format!("{:?}", value.get_ref()),
            reason: reason.into(),
        };
        self.push(value.span(), kind)
    }

    /// The line of a span, for "first at line N".
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        Location::of_offset(self.text, span.start).line
    }

    /// Records a duplicate if `key` was seen before, else remembers where it was seen.
    pub fn unique(
        &mut self,
        seen: &mut HashMap<String, usize>,
        what: &str,
        key: String,
        span: Range<usize>,
    ) -> Option<&mut ConfigError> {
        let line = self.line_of(&span);
        match seen.get(&key) {
            Some(&first_line) => Some(self.push(
                span,
                ErrorKind::Duplicate {
                    what: what.into(),
                    value: key,
                    first_line,
                },
            )),
            None => {
                seen.insert(key, line);
                None
            }
        }
    }

    /// Parses an IP address value, recording a problem if it is not one.
    pub fn ip(&mut self, value: &Spanned<String>, field: &str) -> Option<IpAddr> {
        match value.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.invalid(value, field, "it is not an IP address");
                None
            }
        }
    }
}

/// Checks everything; returns the config or every problem found.
pub(crate) fn validate(text: &str, raw: RawConfigV1) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker::new(text);
    if let Some(problem) = label_problem(raw.hostname.get_ref()) {
        let e = c.invalid(&raw.hostname, "hostname", problem);
        if raw.hostname.get_ref().contains('.') {
            e.hint = Some("a hostname is one label; put the domain in [dns] search".into());
        }
    }
    let timezone = match &raw.timezone {
        Some(tz) => {
            if !is_timezone(tz.get_ref()) {
                let hint = timezone_hint(tz.get_ref());
                c.invalid(tz, "timezone", "it is not an IANA time zone name").hint = Some(hint);
            }
            tz.get_ref().clone()
        }
        None => "UTC".to_owned(),
    };
    let admin = admin(&mut c, raw.admin.unwrap_or_default(), &raw.nic);
    let nics = crate::validate_net::nics(&mut c, &raw.nic);
    let personalities = crate::validate_net::personalities(&mut c, &raw.personality, &raw.nic);
    let dns = dns(&mut c, raw.dns.unwrap_or_default());
    let ntp_servers = ntp(&mut c, raw.ntp.unwrap_or_default());
    let pool = raw.pool.map(|p| pool(&mut c, &p));
    let log = crate::validate_observe::log(&mut c, raw.log.unwrap_or_default());
    let (trusted_keys, image_sources, image_ca_certs) =
        crate::validate_images::images(&mut c, raw.images.unwrap_or_default());
    let upgrade = crate::validate_net::upgrade(&mut c, raw.upgrade);
    let metrics = raw
        .metrics
        .and_then(|m| crate::validate_observe::metrics(&mut c, m, &raw.nic));
    let cluster = raw
        .cluster
        .and_then(|k| crate::validate_cluster::cluster(&mut c, k, &raw.nic, &personalities));
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(Config {
        hostname: raw.hostname.into_inner(),
        timezone,
        admin,
        nics,
        dns,
        ntp_servers,
        pool,
        log,
        personalities,
        trusted_keys,
        image_sources,
        image_ca_certs,
        upgrade,
        metrics,
        cluster,
    })
}

fn admin(c: &mut Checker<'_>, raw: RawAdmin, nics: &[Spanned<RawNic>]) -> Admin {
    let mut authorized_keys = Vec::new();
    for key in &raw.authorized_keys {
        match parse_ssh_key(key.get_ref()) {
            Ok(k) => authorized_keys.push(k),
            Err(reason) => {
                c.invalid(key, "admin authorized_keys entry", reason).hint =
                    Some("paste one line of a .pub file: `ssh-ed25519 AAAA... comment`".into());
            }
        }
    }
    if let Some(hash) = &raw.password_hash
        && let Err(reason) = check_password_hash(hash.get_ref())
    {
        c.invalid(hash, "admin password_hash", reason).hint =
            Some("make one with `mkpasswd -m yescrypt` or `openssl passwd -6`".into());
    }
    let ssh = raw.ssh.unwrap_or_default();
    let tags: Vec<&str> = nics.iter().map(|n| n.get_ref().tag.get_ref().as_str()).collect();
    for tag in &ssh.nics {
        crate::validate_net::known_tag(c, tag, "admin ssh", &tags);
    }
    let port = ssh
        .port
        .as_ref()
        .and_then(|p| crate::validate_net::small_int(c, p, "admin ssh port", 1..=65535));
    Admin {
        authorized_keys,
        password_hash: raw.password_hash.map(Spanned::into_inner),
        ssh: Ssh {
            port: port.unwrap_or(22),
            nics: ssh.nics.into_iter().map(Spanned::into_inner).collect(),
        },
    }
}

fn dns(c: &mut Checker<'_>, raw: RawDns) -> Dns {
    let resolvers = raw.resolvers.iter().filter_map(|r| c.ip(r, "dns resolver")).collect();
    for domain in &raw.search {
        if let Some(problem) = domain_problem(domain.get_ref()) {
            c.invalid(domain, "dns search domain", problem);
        }
    }
    Dns {
        resolvers,
        search: raw.search.into_iter().map(Spanned::into_inner).collect(),
    }
}

fn ntp(c: &mut Checker<'_>, raw: RawNtp) -> Vec<String> {
    for server in &raw.servers {
        if let Some(problem) = host_problem(server.get_ref()) {
            c.invalid(server, "ntp server", problem);
        }
    }
    raw.servers.into_iter().map(Spanned::into_inner).collect()
}

fn disk_id(c: &mut Checker<'_>, disk: &Spanned<String>, seen: &mut HashMap<String, usize>) {
    let id = disk.get_ref();
    if id.is_empty() || id.contains('/') || id.chars().any(char::is_whitespace) {
        let e = c.invalid(disk, "pool disk", "a disk is named by its /dev/disk/by-id name");
        if let Some(name) = id.strip_prefix("/dev/disk/by-id/") {
            e.hint = Some(format!("write {name:?}"));
        } else {
            e.hint = Some("see `ls /dev/disk/by-id`; kernel names like sda change between boots".into());
        }
    }
    c.unique(seen, "pool disk", id.clone(), disk.span());
}

fn pool(c: &mut Checker<'_>, raw: &Spanned<RawPool>) -> Pool {
    let p = raw.get_ref();
    let filesystem = match p.filesystem.as_ref().map(|f| f.get_ref().as_str()) {
        None | Some("ext4") => Filesystem::Ext4,
        Some("btrfs") => Filesystem::Btrfs,
        Some(_) => {
            if let Some(f) = &p.filesystem {
                c.invalid(f, "pool filesystem", "expected \"ext4\" or \"btrfs\"");
            }
            Filesystem::Ext4
        }
    };
    let mut seen = HashMap::new();
    for disk in p.disks.iter().chain(&p.mirror) {
        disk_id(c, disk, &mut seen);
    }
    if !p.mirror.is_empty() && filesystem != Filesystem::Btrfs {
        let message = "pool: `mirror` needs filesystem = \"btrfs\"".to_owned();
        c.push(raw.span(), ErrorKind::Conflict { message }).hint =
            Some("set filesystem = \"btrfs\" or remove `mirror`".into());
    }
    let allow_degraded = p.allow_degraded.as_ref().is_some_and(|a| *a.get_ref());
    if let Some(allow) = &p.allow_degraded
        && *allow.get_ref()
        && filesystem != Filesystem::Btrfs
    {
        let message = "pool: `allow_degraded` is about a btrfs mirror and needs filesystem = \"btrfs\"".to_owned();
        c.push(allow.span(), ErrorKind::Conflict { message }).hint =
            Some("set filesystem = \"btrfs\" (the pool's mirror), or remove `allow_degraded`".into());
    }
    Pool {
        disks: p.disks.iter().map(|d| d.get_ref().clone()).collect(),
        filesystem,
        create: create(c, p),
        mirror: p.mirror.iter().map(|d| d.get_ref().clone()).collect(),
        allow_degraded,
    }
}

/// `write create = "a"` (or `["a", "b"]`) with the pool's disks.
fn create_hint(p: &RawPool) -> String {
    let ids: Vec<String> = p
        .disks
        .iter()
        .chain(&p.mirror)
        .map(|d| format!("{:?}", d.get_ref()))
        .collect();
    match ids.as_slice() {
        [] => "name the blank disks by id in `disks`, e.g. disks = [\"ata-Samsung_SSD_870_S5Y1NX0R\"], \
               and confirm each in `create`"
            .into(),
        [one] => format!("write create = {one}"),
        many => format!("write create = [{}]", many.join(", ")),
    }
}

/// `[pool] create`: the ids confirmed for formatting, each one of `disks` or `mirror`, and
/// all of them (the pool is made on every disk). `create = true` is refused with the new form.
fn create(c: &mut Checker<'_>, p: &RawPool) -> Vec<String> {
    let Some(value) = &p.create else {
        return Vec::new();
    };
    let ids = match value.get_ref() {
        RawCreate::Bool(false) => return Vec::new(),
        RawCreate::Bool(true) => {
            let message = "create = true is no longer accepted: write create = \"<the disk id>\" to confirm \
                           which disk may be formatted"
                .to_owned();
            c.push(value.span(), ErrorKind::Conflict { message }).hint = Some(create_hint(p));
            return Vec::new();
        }
        RawCreate::Ids(ids) => ids.clone(),
    };
    if ids.is_empty() {
        return ids;
    }
    if p.disks.is_empty() {
        let message = "pool: `create` needs the `disks` it may format".to_owned();
        c.push(value.span(), ErrorKind::Conflict { message }).hint = Some(create_hint(p));
        return ids;
    }
    let pool_disks: Vec<&String> = p.disks.iter().chain(&p.mirror).map(|d| d.get_ref()).collect();
    let mut seen = HashMap::new();
    for id in &ids {
        if !pool_disks.contains(&id) {
            let kind = ErrorKind::Invalid {
                field: "pool create".into(),
                value: format!("{id:?}"),
                reason: "it is not in `disks` or `mirror`: create confirms which of the pool's disks may be \
                         formatted"
                    .into(),
            };
            c.push(value.span(), kind).hint = Some(create_hint(p));
        }
        c.unique(&mut seen, "pool create disk", id.clone(), value.span());
    }
    let unnamed: Vec<String> = pool_disks
        .iter()
        .filter(|d| !ids.contains(d))
        .map(|d| format!("{d:?}"))
        .collect();
    if !unnamed.is_empty() {
        let message = format!(
            "pool: create does not name {}: the pool is made on every disk of `disks` and `mirror`, so \
             create names each of them",
            unnamed.join(", ")
        );
        c.push(value.span(), ErrorKind::Conflict { message }).hint = Some(create_hint(p));
    }
    ids
}

//! Checks of `[[nic]]` and `[[personality]]` (addresses, gateways, tags, caps), and of
//! the small numbers of `[admin.ssh]` and `[upgrade]`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Component, Path};

use toml::Spanned;

use crate::error::ErrorKind;
use crate::model::{Addressing, Nic, Personality, Selector};
use crate::net::{Cidr, MacAddr, ident_problem, ifname_problem};
use crate::raw::{RawNic, RawPersonality};
use crate::suggest::closest;
use crate::units::parse_size;
use crate::validate::Checker;

/// Parses `ip` (`"dhcp"` or a CIDR) and checks it can be a host's address.
fn addressing(c: &mut Checker<'_>, ip: &Spanned<String>, owner: &str) -> Option<Addressing> {
    let text = ip.get_ref();
    if text.eq_ignore_ascii_case("dhcp") {
        return Some(Addressing::Dhcp);
    }
    match text.parse::<Cidr>() {
        Ok(cidr) => {
            if let Some(problem) = cidr.host_problem() {
                c.invalid(ip, format!("{owner} ip"), problem).hint =
                    Some(format!("use a host address inside {}", cidr.subnet()));
            }
            Some(Addressing::Static {
                addr: cidr.addr,
                prefix: cidr.prefix,
            })
        }
        Err(reason) => {
            let e = c.invalid(ip, format!("{owner} ip"), reason);
            if text.parse::<IpAddr>().is_ok() {
                e.hint = Some(format!("add the prefix length, e.g. \"{text}/24\", or write \"dhcp\""));
            }
            None
        }
    }
}

/// Checks a gateway against its owner's address: static, same family, inside the subnet.
fn gateway(c: &mut Checker<'_>, gw: &Spanned<String>, ip: Option<Addressing>, owner: &str) -> Option<IpAddr> {
    let addr = c.ip(gw, &format!("{owner} gateway"))?;
    match ip {
        None | Some(Addressing::Dhcp) => {
            let message = format!("{owner}: `gateway` needs a static `ip` (DHCP supplies its own)");
            c.push(gw.span(), ErrorKind::Conflict { message });
        }
        Some(Addressing::Static { addr: own, prefix }) => {
            let cidr = Cidr { addr: own, prefix };
            if !cidr.contains(addr) {
                let kind = ErrorKind::GatewayOutside {
                    gateway: addr.to_string(),
                    subnet: cidr.subnet().to_string(),
                    owner: owner.to_owned(),
                };
                c.push(gw.span(), kind).hint = Some(format!(
                    "a gateway must be reachable directly: pick one inside {}",
                    cidr.subnet()
                ));
            } else if addr == own {
                c.invalid(gw, format!("{owner} gateway"), "it is the interface's own address");
            }
        }
    }
    Some(addr)
}

/// Reports `tag` when no `[[nic]]` has it, with the closest tag or the list as the hint.
pub(crate) fn known_tag(c: &mut Checker<'_>, tag: &Spanned<String>, owner: &str, tags: &[&str]) {
    if tags.contains(&tag.get_ref().as_str()) {
        return;
    }
    let hint = match closest(tag.get_ref(), tags.iter().copied()) {
        Some(t) => format!("did you mean {t:?}?"),
        None if tags.is_empty() => "add a [[nic]] with this tag".to_owned(),
        None => format!("the nic tags are: {}", tags.join(", ")),
    };
    let kind = ErrorKind::UnknownNicTag {
        owner: owner.to_owned(),
        tag: tag.get_ref().clone(),
    };
    c.push(tag.span(), kind).hint = Some(hint);
}

/// `[upgrade]`: the trial boot's deadline, 10 ..= 3600 seconds.
pub(crate) fn upgrade(c: &mut Checker<'_>, raw: Option<crate::raw::RawUpgrade>) -> crate::model::Upgrade {
    let deadline = raw.and_then(|u| u.commit_deadline);
    let deadline = deadline.and_then(|d| small_int(c, &d, "upgrade commit_deadline", 10..=3600));
    deadline.map_or_else(Default::default, |d| crate::model::Upgrade {
        commit_deadline: d.into(),
    })
}

pub(crate) fn small_int(
    c: &mut Checker<'_>,
    v: &Spanned<i64>,
    field: &str,
    range: std::ops::RangeInclusive<u16>,
) -> Option<u16> {
    match u16::try_from(*v.get_ref()) {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            c.invalid(
                v,
                field,
                format!("it must be between {} and {}", range.start(), range.end()),
            );
            None
        }
    }
}

/// Checks every `[[nic]]` and the uniqueness of tags, MACs and names.
pub(crate) fn nics(c: &mut Checker<'_>, raw: &[Spanned<RawNic>]) -> Vec<Nic> {
    let mut out = Vec::new();
    let (mut tags, mut ports) = (HashMap::new(), HashMap::new());
    for spanned in raw {
        let n = spanned.get_ref();
        let owner = format!("nic {:?}", n.tag.get_ref());
        if let Some(problem) = ident_problem(n.tag.get_ref()) {
            c.invalid(&n.tag, "nic tag", problem);
        }
        c.unique(&mut tags, "nic tag", n.tag.get_ref().clone(), n.tag.span());
        let selector = match (&n.mac, &n.name) {
            (Some(mac), None) => match mac.get_ref().parse::<MacAddr>() {
                Ok(m) => Some((Selector::Mac(m), format!("mac {m}"), mac.span())),
                Err(reason) => {
                    c.invalid(mac, format!("{owner} mac"), reason);
                    None
                }
            },
            (None, Some(name)) => {
                if let Some(problem) = ifname_problem(name.get_ref()) {
                    c.invalid(name, format!("{owner} name"), problem);
                }
                Some((
                    Selector::Name(name.get_ref().clone()),
                    format!("name {}", name.get_ref()),
                    name.span(),
                ))
            }
            (mac, _) => {
                let message = format!("{owner} needs exactly one of `mac` or `name`");
                let span = mac.as_ref().map_or_else(|| spanned.span(), Spanned::span);
                c.push(span, ErrorKind::Conflict { message }).hint =
                    Some("choose the port by `mac` (stable) or by kernel `name`, not both".into());
                None
            }
        };
        let vlan = n
            .vlan
            .as_ref()
            .and_then(|v| small_int(c, v, &format!("{owner} vlan"), 1..=4094));
        let mtu = n
            .mtu
            .as_ref()
            .and_then(|v| small_int(c, v, &format!("{owner} mtu"), 68..=9000));
        if let Some((_, port, span)) = &selector {
            let key = match vlan {
                Some(v) => format!("{port} (vlan {v})"),
                None => port.clone(),
            };
            if let Some(e) = c.unique(&mut ports, "nic", key, span.clone()) {
                e.hint = Some("two tags on one port need different `vlan`s".into());
            }
        }
        let ip = n.ip.as_ref().and_then(|ip| addressing(c, ip, &owner));
        let gw = n.gateway.as_ref().and_then(|g| gateway(c, g, ip, &owner));
        if let Some((selector, _, _)) = selector {
            out.push(Nic {
                tag: n.tag.get_ref().clone(),
                selector,
                ip,
                gateway: gw,
                vlan,
                mtu,
            });
        }
    }
    out
}

/// Checks every `[[personality]]` against itself and the NIC tags.
pub(crate) fn personalities(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawPersonality>],
    nics: &[Spanned<RawNic>],
) -> Vec<Personality> {
    let tags: Vec<&str> = nics.iter().map(|n| n.get_ref().tag.get_ref().as_str()).collect();
    let mut names = HashMap::new();
    let mut out = Vec::new();
    for spanned in raw {
        let p = spanned.get_ref();
        let owner = format!("personality {:?}", p.name.get_ref());
        if let Some(problem) = ident_problem(p.name.get_ref()) {
            c.invalid(&p.name, "personality name", problem);
        }
        c.unique(&mut names, "personality name", p.name.get_ref().clone(), p.name.span());
        let image = p.image.get_ref();
        if image.trim().is_empty() || Path::new(image).components().any(|c| c == Component::ParentDir) {
            c.invalid(
                &p.image,
                format!("{owner} image"),
                "expected an image file name or path without `..`",
            );
        }
        if let Some(tag) = &p.nic {
            known_tag(c, tag, &owner, &tags);
        }
        let ip = p.ip.as_ref().and_then(|ip| addressing(c, ip, &owner));
        if let (Some(ip), None) = (&p.ip, &p.nic) {
            let message = format!("{owner}: `ip` needs a `nic` tag to put the address on");
            c.push(ip.span(), ErrorKind::Conflict { message });
        }
        let gw = p.gateway.as_ref().and_then(|g| gateway(c, g, ip, &owner));
        let memory = p.memory.as_ref().and_then(|m| match parse_size(m.get_ref()) {
            Ok(bytes) => Some(bytes),
            Err(reason) => {
                c.invalid(m, format!("{owner} memory"), reason);
                None
            }
        });
        let cpu = p.cpu.as_ref().and_then(|cpu| {
            let v = *cpu.get_ref();
            if v.is_finite() && v > 0.0 && v <= 4096.0 {
                Some(v)
            } else {
                c.invalid(
                    cpu,
                    format!("{owner} cpu"),
                    "it is a number of CPUs greater than 0, e.g. 1.5",
                );
                None
            }
        });
        let pids = p.pids.as_ref().and_then(|v| match u32::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                c.invalid(v, format!("{owner} pids"), "it must be a positive number of processes");
                None
            }
        });
        crate::validate_volumes::volumes(c, &p.volumes, &owner, p.name.get_ref());
        for (key, value) in &p.settings {
            if key.is_empty() || key.chars().any(char::is_control) {
                c.invalid(
                    value,
                    format!("{owner} setting {key:?}"),
                    "a setting needs a printable name",
                );
            }
        }
        out.push(Personality {
            name: p.name.get_ref().clone(),
            image: image.clone(),
            nic: p.nic.as_ref().map(|t| t.get_ref().clone()),
            ip,
            gateway: gw,
            memory,
            cpu,
            pids,
            settings: p
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect(),
            enabled: p.enabled,
            persistent_root: p.persistent_root,
            allow_downgrade: p.allow_downgrade,
        });
    }
    out
}

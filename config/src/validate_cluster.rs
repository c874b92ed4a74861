//! Checks of `[cluster]`: this box's node among exactly two, the cluster link's NIC, the
//! shared secret, and the resources (personalities with a fixed address to float).

use std::collections::HashMap;
use std::net::IpAddr;

use toml::Spanned;

use crate::error::ErrorKind;
use crate::model::{Addressing, Cluster, ClusterNode, Personality};
use crate::raw::{RawCluster, RawNic};
use crate::units::parse_size;
use crate::validate::Checker;

/// The smallest and largest replicated disk of a resource.
const SIZE: std::ops::RangeInclusive<u64> = (16 << 20)..=(1 << 40);

pub(crate) fn cluster(
    c: &mut Checker<'_>,
    raw: Spanned<RawCluster>,
    nics: &[Spanned<RawNic>],
    personalities: &[Personality],
) -> Option<Cluster> {
    let span = raw.span();
    let raw = raw.into_inner();
    let tags: Vec<&str> = nics.iter().map(|n| n.get_ref().tag.get_ref().as_str()).collect();
    crate::validate_net::known_tag(c, &raw.link, "[cluster] link", &tags);
    let nodes = nodes(c, &raw, span);
    if raw.secret.get_ref().len() < 8 || raw.secret.get_ref().chars().any(|ch| ch.is_whitespace() || ch == '"') {
        c.invalid(
            &raw.secret,
            "cluster secret",
            "it must be at least 8 characters, without spaces or quotes",
        )
        .hint = Some("the same secret on both nodes; e.g. the output of `openssl rand -hex 16`".into());
    }
    let mut seen = HashMap::new();
    for r in &raw.resources {
        if c.unique(&mut seen, "cluster resource", r.get_ref().clone(), r.span())
            .is_some()
        {
            continue;
        }
        match personalities.iter().find(|p| &p.name == r.get_ref()) {
            None => {
                let names: Vec<&str> = personalities.iter().map(|p| p.name.as_str()).collect();
                let hint = crate::suggest::closest(r.get_ref(), names.iter().copied()).map_or_else(
                    || "name a [[personality]]".to_owned(),
                    |n| format!("did you mean {n:?}?"),
                );
                c.invalid(r, "cluster resources", "no [[personality]] has this name")
                    .hint = Some(hint);
            }
            Some(p) if !matches!(p.ip, Some(Addressing::Static { .. })) => {
                c.invalid(
                    r,
                    "cluster resources",
                    "a resource needs a fixed `ip`: its address floats with it",
                )
                .hint = Some(format!(
                    "give [[personality]] {:?} a static ip, e.g. \"192.168.1.80/24\"",
                    p.name
                ));
            }
            Some(_) => {}
        }
    }
    let size = match &raw.size {
        None => Cluster::DEFAULT_SIZE,
        Some(s) => match parse_size(s.get_ref()) {
            Ok(n) if SIZE.contains(&n) => n,
            Ok(_) => {
                c.invalid(s, "cluster size", "it must be between 16M and 1T");
                Cluster::DEFAULT_SIZE
            }
            Err(reason) => {
                c.invalid(s, "cluster size", reason);
                Cluster::DEFAULT_SIZE
            }
        },
    };
    let router_id = raw
        .router_id
        .as_ref()
        .and_then(|id| crate::validate_net::small_int(c, id, "cluster router_id", 1..=255))
        .map_or(51, |id| u8::try_from(id).unwrap_or(51));
    let nodes = nodes?;
    if !nodes.iter().any(|n| &n.name == raw.node.get_ref()) {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        c.invalid(&raw.node, "cluster node", "no [[cluster.nodes]] has this name")
            .hint = Some(format!("this box is one of: {}", names.join(", ")));
        return None;
    }
    Some(Cluster {
        node: raw.node.into_inner(),
        link: raw.link.into_inner(),
        secret: raw.secret.into_inner(),
        resources: raw.resources.into_iter().map(Spanned::into_inner).collect(),
        size,
        failback: raw.failback,
        router_id,
        nodes,
    })
}

/// Exactly two `[[cluster.nodes]]`, with distinct names and link addresses.
fn nodes(c: &mut Checker<'_>, raw: &RawCluster, span: std::ops::Range<usize>) -> Option<Vec<ClusterNode>> {
    if raw.nodes.len() != 2 {
        let message = format!(
            "[cluster] has {} [[cluster.nodes]]; a pair has exactly two (this box and its peer)",
            raw.nodes.len()
        );
        c.push(span, ErrorKind::Conflict { message });
        return None;
    }
    let mut names = HashMap::new();
    let mut addresses = HashMap::new();
    let mut out = Vec::new();
    for node in &raw.nodes {
        let node = node.get_ref();
        if let Some(problem) = crate::net::ident_problem(node.name.get_ref()) {
            c.invalid(&node.name, "cluster node name", problem);
        }
        c.unique(
            &mut names,
            "cluster node name",
            node.name.get_ref().clone(),
            node.name.span(),
        );
        c.unique(
            &mut addresses,
            "cluster node address",
            node.address.get_ref().clone(),
            node.address.span(),
        );
        let address = match c.ip(&node.address, "cluster node address") {
            Some(IpAddr::V4(a)) => Some(a),
            Some(IpAddr::V6(_)) => {
                c.invalid(
                    &node.address,
                    "cluster node address",
                    "the cluster link is IPv4 for now",
                );
                None
            }
            None => None,
        };
        let priority = crate::validate_net::small_int(c, &node.priority, "cluster node priority", 1..=254);
        if let (Some(address), Some(priority)) = (address, priority) {
            out.push(ClusterNode {
                name: node.name.get_ref().clone(),
                address,
                priority: u8::try_from(priority).unwrap_or(1),
            });
        }
    }
    (out.len() == 2).then_some(out)
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const BASE: &str = r#"version = 1
hostname = "alpha"
[[nic]]
tag = "public"
name = "eth0"
ip = "192.168.50.1/24"
[[nic]]
tag = "cluster"
name = "eth1"
ip = "10.99.0.1/24"
[[personality]]
name = "web"
image = "web.rkimg"
nic = "public"
ip = "192.168.50.80/24"
"#;

    fn with(cluster: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{cluster}"), "config.toml").map_err(|e| e.to_string())
    }

    const PAIR: &str = r#"[[cluster.nodes]]
name = "alpha"
address = "10.99.0.1"
priority = 150
[[cluster.nodes]]
name = "beta"
address = "10.99.0.2"
priority = 100
"#;

    #[test]
    fn a_pair_is_read_with_its_defaults() {
        let text = format!(
            "[cluster]\nnode = \"beta\"\nlink = \"cluster\"\nsecret = \"s3cret-pair\"\nresources = [\"web\"]\n{PAIR}"
        );
        let config = with(&text).unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.me().name, "beta");
        assert_eq!(cluster.peer().address.to_string(), "10.99.0.1");
        assert_eq!(
            (cluster.size, cluster.router_id, cluster.failback),
            (256 << 20, 51, false)
        );
        assert!(cluster.is_resource("web") && !cluster.is_resource("db"));
    }

    #[test]
    fn each_mistake_is_named() {
        let cases = [
            ("node = \"gamma\"", "no [[cluster.nodes]] has this name"),
            ("link = \"clustr\"", "did you mean \"cluster\"?"),
            ("secret = \"short\"", "at least 8 characters"),
            ("resources = [\"webb\"]", "did you mean \"web\"?"),
            ("size = \"1M\"", "between 16M and 1T"),
            ("router_id = 300", "between 1 and 255"),
        ];
        for (line, want) in cases {
            let key = line.split(' ').next().unwrap();
            let mut text = String::from("[cluster]\n");
            for default in [
                "node = \"alpha\"",
                "link = \"cluster\"",
                "secret = \"s3cret-pair\"",
                "resources = [\"web\"]",
            ] {
                if !default.starts_with(key) {
                    text.push_str(default);
                    text.push('\n');
                }
            }
            text.push_str(line);
            text.push('\n');
            text.push_str(PAIR);
            let err = with(&text).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
        let one = "[cluster]\nnode = \"alpha\"\nlink = \"cluster\"\nsecret = \"s3cret-pair\"\n[[cluster.nodes]]\nname = \"alpha\"\naddress = \"10.99.0.1\"\npriority = 1\n";
        assert!(with(one).unwrap_err().contains("exactly two"));
        let dhcp = BASE.replace("ip = \"192.168.50.80/24\"", "ip = \"dhcp\"");
        let text = format!(
            "{dhcp}[cluster]\nnode = \"alpha\"\nlink = \"cluster\"\nsecret = \"s3cret-pair\"\nresources = [\"web\"]\n{PAIR}"
        );
        let err = Config::parse(&text, "config.toml").unwrap_err().to_string();
        assert!(err.contains("needs a fixed `ip`"), "{err}");
    }
}

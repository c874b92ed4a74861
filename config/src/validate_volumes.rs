//! `[personality.volumes]`: refused, each entry with its reason. The volumes a zone gets are
//! the image's (its manifest's `[[volumes]]`), each a directory on the pool that shares the
//! pool's free space; the config can neither size them nor bind host paths into a zone.
//!
//! - A size (`data = "10G"`) would be a quota nobody enforces: the pool's ext4 is made
//!   without project quotas and its btrfs without qgroups, and a diskless box keeps volumes
//!   in RAM. Accepting it would promise a limit the box does not keep.
//! - A host path (`certs = "/usbkey/certs"`) is never bound into a zone: a zone runs code the
//!   box does not trust, and a host directory is a way out of it (the stick, `/proc`, `/sys`,
//!   `/dev`, other zones' instances, the host's root). What a zone needs from outside goes
//!   into its image (the personality's `files/`) or into its volume on the pool.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::units::parse_size;
use crate::validate::Checker;

/// Records one error for each entry of a personality's `[personality.volumes]`, whatever its
/// name: every entry has to go.
pub(crate) fn volumes(c: &mut Checker<'_>, raw: &BTreeMap<String, Spanned<String>>, owner: &str, zone: &str) {
    for (name, value) in raw {
        let field = format!("{owner} volume {name}");
        let on_pool = format!("/pool/instances/{zone}/volumes/{name}");
        let text = value.get_ref();
        let (reason, hint) = if text.starts_with('/') {
            (
                "host paths are never bound into a zone: a zone runs code the box does not \
                 trust, and a host directory could expose the stick, /proc, /sys, /dev or \
                 other zones' data"
                    .to_string(),
                format!(
                    "remove the line; ship the files in the image (the personality's files/ \
                     folder) or copy them into one of its volumes on the pool ({on_pool} for \
                     a volume named {name})"
                ),
            )
        } else if parse_size(text).is_ok() {
            (
                "volume sizes are not enforced: each volume of the image is a directory on \
                 the pool that shares the pool's free space"
                    .to_string(),
                format!(
                    "remove the line; the image's volumes ([[volumes]] in its manifest, \
                     `ramkey image inspect` lists them) are made on the pool without it, \
                     e.g. {on_pool}"
                ),
            )
        } else {
            (
                "[personality.volumes] takes no entries: a zone's volumes are the image's own".to_string(),
                "remove the line; `ramkey image inspect` lists an image's volumes".to_string(),
            )
        };
        c.invalid(value, field, reason).hint = Some(hint);
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn errors(volumes: &str) -> Vec<String> {
        let text = format!(
            "version = 1\nhostname = \"box\"\n[[personality]]\nname = \"web\"\nimage = \"web.rkimg\"\n\
             [personality.volumes]\n{volumes}"
        );
        let e = Config::parse(&text, "config.toml").expect_err("volumes are refused");
        e.errors
            .iter()
            .map(|e| format!("{}: {} ({})", e.location, e.kind, e.hint.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_size_is_refused_as_not_enforced_at_its_line() {
        let e = errors("data = \"10G\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("7:8: personality \"web\" volume data \"10G\" is not valid"),
            "{e:?}"
        );
        assert!(e[0].contains("volume sizes are not enforced"), "{e:?}");
        assert!(e[0].contains("/pool/instances/web/volumes/data"), "{e:?}");
    }

    #[test]
    fn a_host_path_is_refused_for_what_it_would_expose() {
        for path in ["/usbkey/certs", "/proc", "/", "/pool/instances/other/volumes/db"] {
            let e = errors(&format!("certs = \"{path}\"\n"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].contains("host paths are never bound into a zone"), "{e:?}");
            assert!(e[0].contains("files/"), "{e:?}");
        }
    }

    #[test]
    fn every_entry_is_reported_and_nothing_else_is_accepted() {
        let e = errors("a = \"1G\"\nb = \"/srv\"\nc = \"lots\"\n\"Bad Name\" = \"1G\"\n");
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e.iter().any(|e| e.contains("takes no entries")), "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.contains("volume Bad Name \"1G\" is not valid: volume sizes")),
            "{e:?}"
        );
        let empty = "version = 1\nhostname = \"box\"\n[[personality]]\nname = \"web\"\nimage = \"w\"\n\
                     [personality.volumes]\n";
        assert!(Config::parse(empty, "config.toml").is_ok());
    }
}

//! The HA pair's gauges for the Prometheus exporter ([`crate::observe`] reads them through
//! [`gauges`]): keepalived's state as the agent last heard it, standby, and per resource
//! DRBD's connection, roles, disks, what is out of sync, and a split brain. Read fresh at
//! each scrape from the agent's files and `/proc/drbd`.

use super::{Places, Plan, drbd};
use crate::base::paths::Paths;
use crate::observe::metrics::read::Gauge;

/// keepalived's states the agent records, and `UNKNOWN` before it has heard one.
const ROLES: [&str; 5] = ["MASTER", "BACKUP", "FAULT", "STOP", "UNKNOWN"];

/// The gauges, or `None` on a box without `[cluster]` (no plan).
pub fn gauges(paths: &Paths) -> Option<Result<Vec<Gauge>, String>> {
    let places = Places::new(paths);
    places.plan().exists().then(|| read(paths, &places))
}

fn flag(on: bool) -> f64 {
    f64::from(u8::from(on))
}

fn read(paths: &Paths, places: &Places) -> Result<Vec<Gauge>, String> {
    let plan = Plan::read(places)?;
    let (role, _) = super::role(places);
    let role = if ROLES.contains(&role.as_str()) {
        role
    } else {
        "UNKNOWN".into()
    };
    let gauge = |name, help, labels, samples| Gauge {
        name,
        help,
        labels,
        samples,
    };
    let mut out = vec![
        gauge(
            "ramkey_cluster_role",
            "1 for this node's VRRP state as the cluster agent last heard it from keepalived, 0 for the others.",
            &["role"],
            ROLES
                .iter()
                .map(|r| (vec![(*r).to_owned()], flag(*r == role)))
                .collect(),
        ),
        gauge(
            "ramkey_cluster_standby",
            "1 while this node is in standby (ramkeyctl cluster standby).",
            &[],
            vec![(vec![], flag(places.standby().exists()))],
        ),
    ];
    let mut families: [Vec<(Vec<String>, f64)>; 6] = Default::default();
    for r in &plan.resources {
        let name = || vec![r.name.clone()];
        let device = drbd::device(&paths.proc(), r.minor).filter(|d| d.cstate != "Unconfigured");
        families[0].push((name(), flag(device.is_some())));
        families[5].push((name(), flag(places.split_brain(&r.name).exists())));
        let Some(d) = device else { continue };
        families[1].push((name(), flag(d.roles.1 != "Unknown")));
        families[2].push((name(), flag(d.roles.0 == "Primary")));
        families[3].push((vec![r.name.clone(), "local".into()], flag(d.disks.0 == "UpToDate")));
        families[3].push((vec![r.name.clone(), "peer".into()], flag(d.disks.1 == "UpToDate")));
        families[4].push((name(), (d.out_of_sync_kib * 1024) as f64));
    }
    let [up, connected, primary, uptodate, out_of_sync, split] = families;
    out.extend([
        gauge(
            "ramkey_drbd_up",
            "1 when the resource's DRBD device is configured on this node.",
            &["resource"],
            up,
        ),
        gauge(
            "ramkey_drbd_connected",
            "1 while DRBD is connected to the peer for the resource.",
            &["resource"],
            connected,
        ),
        gauge(
            "ramkey_drbd_primary",
            "1 while this node is the resource's DRBD primary (it runs the resource).",
            &["resource"],
            primary,
        ),
        gauge(
            "ramkey_drbd_disk_up_to_date",
            "1 while the resource's copy on this node (local) or on the peer is UpToDate.",
            &["resource", "side"],
            uptodate,
        ),
        gauge(
            "ramkey_drbd_out_of_sync_bytes",
            "Bytes of the resource this node knows to differ from the peer's copy.",
            &["resource"],
            out_of_sync,
        ),
        gauge(
            "ramkey_cluster_split_brain",
            "1 after DRBD reported a split brain of the resource, until ramkeyctl cluster resolve.",
            &["resource"],
            split,
        ),
    ]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `name`'s sample with `labels`, if there is one.
    fn value(gauges: &[Gauge], name: &str, labels: &[&str]) -> Option<f64> {
        let gauge = gauges.iter().find(|g| g.name == name)?;
        gauge
            .samples
            .iter()
            .find(|(values, _)| values.iter().map(String::as_str).eq(labels.iter().copied()))
            .map(|(_, v)| *v)
    }

    #[test]
    fn a_backup_resyncing_after_a_split_brain_reads_as_such_and_a_box_without_cluster_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert_eq!(gauges(&paths), None);
        let places = Places::new(&paths);
        std::fs::create_dir_all(places.run_dir()).unwrap();
        std::fs::write(places.plan(), serde_json::to_string(&Plan::example(false)).unwrap()).unwrap();
        std::fs::write(places.role(), "BACKUP 1764979200\n").unwrap();
        std::fs::write(places.split_brain("web"), "SPLIT BRAIN on web: ...\n").unwrap();
        std::fs::create_dir_all(paths.proc()).unwrap();
        std::fs::write(
            paths.proc().join("drbd"),
            " 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----\n    ns:0 nr:1024 dw:1024 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:2048\n",
        )
        .unwrap();
        let gauges = gauges(&paths).unwrap().unwrap();
        for (role, on) in [("MASTER", 0.0), ("BACKUP", 1.0), ("FAULT", 0.0), ("UNKNOWN", 0.0)] {
            assert_eq!(value(&gauges, "ramkey_cluster_role", &[role]), Some(on), "{role}");
        }
        assert_eq!(value(&gauges, "ramkey_cluster_standby", &[]), Some(0.0));
        let web = |name| value(&gauges, name, &["web"]);
        assert_eq!(web("ramkey_drbd_up"), Some(1.0));
        assert_eq!(web("ramkey_drbd_connected"), Some(1.0));
        assert_eq!(web("ramkey_drbd_primary"), Some(0.0));
        assert_eq!(web("ramkey_drbd_out_of_sync_bytes"), Some(2048.0 * 1024.0));
        assert_eq!(web("ramkey_cluster_split_brain"), Some(1.0));
        let disk = |side| value(&gauges, "ramkey_drbd_disk_up_to_date", &["web", side]);
        assert_eq!((disk("local"), disk("peer")), (Some(0.0), Some(1.0)));

        // DRBD not up: only ramkey_drbd_up (0) and the split-brain flag for the resource.
        std::fs::write(paths.proc().join("drbd"), "version: 8.4.11\n").unwrap();
        let down = super::gauges(&paths).unwrap().unwrap();
        assert_eq!(value(&down, "ramkey_drbd_up", &["web"]), Some(0.0));
        assert_eq!(value(&down, "ramkey_drbd_connected", &["web"]), None);

        // An unreadable plan is the source's failure, not a panic or silence.
        std::fs::write(places.plan(), "{").unwrap();
        assert!(super::gauges(&paths).unwrap().is_err());
    }

    #[test]
    fn the_docs_name_every_gauge() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let places = Places::new(&paths);
        std::fs::create_dir_all(places.run_dir()).unwrap();
        std::fs::write(places.plan(), serde_json::to_string(&Plan::example(false)).unwrap()).unwrap();
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/observability.md")).unwrap();
        for gauge in gauges(&paths).unwrap().unwrap() {
            assert!(
                docs.contains(&format!("`{}`", gauge.name)),
                "docs/observability.md does not name `{}`",
                gauge.name
            );
        }
    }
}

//! PID 1's part, at the `services` step: the [`Plan`] for the agent, the `drbd` module,
//! the agent's and keepalived's services, and the resources' zones kept disabled (only the
//! node holding them enables them).

use std::path::Path;

use ramkey_config::Config;
use ramkey_image::check::{Check, Probe};
use ramkey_image::service::{RestartPolicy, ServiceSpec};

use super::{AGENT, AGENT_SERVICE, FIRST_PORT, KEEPALIVED_SERVICE, Places, Plan, RAMKEYCTL, Resource};
use crate::base::paths::Paths;
use crate::zone::{INSTANCES_DIR, ZoneSpec};

/// keepalived, from Debian.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";

/// What the services step gets.
#[derive(Debug, Default)]
pub struct Setup {
    /// The agent and keepalived.
    pub services: Vec<ServiceSpec>,
    /// The resources' zone services (and their gates), disabled at boot.
    pub disabled: Vec<String>,
}

/// The cluster's services for `config`, with the pool at `pool` (none: no cluster, since
/// the replicated disks live there); `load` loads a kernel module.
pub fn prepare(
    paths: &Paths,
    config: &Config,
    pool: Option<&Path>,
    load: &mut dyn FnMut(&str) -> Result<(), String>,
) -> Setup {
    let Some(cluster) = &config.cluster else {
        return Setup::default();
    };
    let mut setup = Setup::default();
    for r in &cluster.resources {
        setup.disabled.push(ZoneSpec::service_name(r));
        setup.disabled.push(format!("zone-gate-{r}"));
    }
    let fail = |why: String| {
        crate::error!(
            "cluster: not started: {why}; the resources ({}) do not run on this node",
            cluster.resources.join(", ")
        );
    };
    let Some(pool) = pool else {
        fail("no pool: each resource's replicated disk lives on the pool ([pool] in the config)".into());
        return setup;
    };
    if let Err(e) = load("drbd") {
        fail(format!("module drbd: {e}"));
        return setup;
    }
    let me = cluster.me();
    let peer = cluster.peer();
    let plan = Plan {
        hostname: config.hostname.clone(),
        node: me.name.clone(),
        peer: peer.name.clone(),
        address: me.address,
        peer_address: peer.address,
        link: cluster.link.clone(),
        secret: cluster.secret.clone(),
        priority: me.priority,
        router_id: cluster.router_id,
        failback: cluster.failback,
        size: cluster.size,
        resources: cluster
            .resources
            .iter()
            .zip(0u16..)
            .map(|(name, i)| Resource {
                name: name.clone(),
                minor: u32::from(i),
                port: FIRST_PORT + i,
                volumes: pool.join(INSTANCES_DIR).join(name).join("volumes"),
            })
            .collect(),
    };
    let places = Places::new(paths);
    let written = std::fs::create_dir_all(places.run_dir())
        .and_then(|()| super::write_secret(&places.plan(), &serde_json::to_string_pretty(&plan).unwrap_or_default()));
    if let Err(e) = written {
        fail(format!("{}: {e}", places.plan().display()));
        return setup;
    }
    crate::notice!(
        "cluster: node {} (priority {}) of a pair with {} over {}; resources: {}",
        me.name,
        me.priority,
        peer.name,
        cluster.link,
        cluster.resources.join(", ")
    );
    setup.services = services(&places);
    setup
}

fn services(places: &Places) -> Vec<ServiceSpec> {
    let mut agent = ServiceSpec::new(AGENT_SERVICE, vec![AGENT.to_string()]);
    agent.restart = RestartPolicy::OnFailure;
    agent.readiness = Some(Probe {
        check: Check::Exec {
            argv: [RAMKEYCTL, "cluster", "ready"].map(String::from).to_vec(),
        },
        interval_secs: 1,
        timeout_secs: 5,
        retries: 120,
    });
    // Demoting stops the zones first.
    agent.stop_timeout_secs = 60;
    let run = places.run_dir();
    let mut keepalived = ServiceSpec::new(
        KEEPALIVED_SERVICE,
        vec![
            KEEPALIVED.to_string(),
            "--dont-fork".into(),
            "--log-console".into(),
            "--vrrp".into(),
            "--use-file".into(),
            places.keepalived_conf().display().to_string(),
            "--pid".into(),
            run.join("keepalived.pid").display().to_string(),
            "--vrrp_pid".into(),
            run.join("vrrp.pid").display().to_string(),
        ],
    );
    keepalived.requires = vec![AGENT_SERVICE.to_string()];
    keepalived.restart = RestartPolicy::Always;
    vec![agent, keepalived]
}

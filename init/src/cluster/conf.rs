//! keepalived's and DRBD's configuration files, written from the [`Plan`].

use std::fmt::Write;
use std::path::Path;

use super::{INSTANCE, Plan, Resource};

/// keepalived's configuration: one VRRP instance, unicast to the peer over the link, its
/// password the secret's first 8 bytes (all VRRP's PASS carries), no virtual address of its
/// own (each resource's address moves with its zone), the health check and the FIFO.
pub fn keepalived(plan: &Plan, check: &str, fifo: &Path) -> String {
    let password: String = plan.secret.chars().take(8).collect();
    let preempt = if plan.failback { "" } else { "    nopreempt\n" };
    format!(
        "# Written by ramkey-cluster from the usbkey's [cluster]; changes here are lost.
global_defs {{
    router_id {node}
    script_user root
    enable_script_security
    notify_fifo {fifo}
}}

vrrp_script resources {{
    script \"{check}\"
    interval 1
    timeout 5
    fall 1
    rise 1
}}

vrrp_instance {INSTANCE} {{
    state BACKUP
    interface {link}
    virtual_router_id {router_id}
    priority {priority}
    advert_int 1
{preempt}    unicast_src_ip {address}
    unicast_peer {{
        {peer}
    }}
    authentication {{
        auth_type PASS
        auth_pass {password}
    }}
    track_script {{
        resources
    }}
}}
",
        node = plan.node,
        fifo = fifo.display(),
        link = plan.link,
        router_id = plan.router_id,
        priority = plan.priority,
        address = plan.address,
        peer = plan.peer_address,
    )
}

/// DRBD's configuration: each resource on its loop device (`disks`, in resource order),
/// replicated synchronously over the link, split brains detected and left to the
/// administrator (every `after-sb` policy is `disconnect`), the handler reporting them.
pub fn drbd(plan: &Plan, disks: &[(Resource, String)], device: impl Fn(u32) -> String, ramkeyctl: &str) -> String {
    let mut out = String::from(
        "# Written by ramkey-cluster from the usbkey's [cluster]; changes here are lost.\nglobal { usage-count no; }\n",
    );
    for (r, disk) in disks {
        let _ = write!(
            out,
            "
resource {name} {{
    net {{
        protocol C;
        cram-hmac-alg sha1;
        shared-secret \"{secret}\";
        after-sb-0pri disconnect;
        after-sb-1pri disconnect;
        after-sb-2pri disconnect;
        connect-int 2;
        ping-int 2;
        ping-timeout 10;
        timeout 15;
    }}
    disk {{
        resync-rate 100M;
        c-plan-ahead 0;
    }}
    handlers {{
        split-brain \"{ramkeyctl} cluster split-brain\";
    }}
    on {hostname} {{
        device {device};
        disk {disk};
        address {address}:{port};
        meta-disk internal;
    }}
    on {peer} {{
        device {device};
        disk {disk};
        address {peer_address}:{port};
        meta-disk internal;
    }}
}}
",
            name = r.name,
            secret = plan.secret,
            hostname = plan.hostname,
            device = device(r.minor),
            address = plan.address,
            port = r.port,
            peer = plan.peer,
            peer_address = plan.peer_address,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(failback: bool) -> Plan {
        Plan::example(failback)
    }

    #[test]
    fn keepalived_talks_to_the_peer_only_and_preempts_only_on_failback() {
        let text = keepalived(
            &plan(false),
            "/usr/lib/ramkey/cluster-check",
            Path::new("/run/ramkey/cluster/notify.fifo"),
        );
        assert!(
            text.contains("unicast_src_ip 10.99.0.1\n    unicast_peer {\n        10.99.0.2\n"),
            "{text}"
        );
        assert!(text.contains("auth_pass s3cret-p\n"), "{text}");
        assert!(text.contains("interface cluster\n") && text.contains("priority 150\n"));
        assert!(text.contains("    nopreempt\n"));
        assert!(text.contains("script \"/usr/lib/ramkey/cluster-check\""));
        assert!(!text.contains("virtual_ipaddress"));
        let back = keepalived(&plan(true), "/c", Path::new("/f"));
        assert!(!back.contains("nopreempt"));
    }

    #[test]
    fn drbd_names_this_box_by_host_name_and_never_resolves_a_split_brain() {
        let p = plan(false);
        let disks = vec![(p.resources[0].clone(), "/dev/loop3".to_string())];
        let text = drbd(&p, &disks, |m| format!("/dev/drbd{m}"), "/usr/bin/ramkeyctl");
        assert!(text.contains("resource web {"));
        assert!(
            text.contains(
                "on alpha {\n        device /dev/drbd0;\n        disk /dev/loop3;\n        address 10.99.0.1:7789;"
            ),
            "{text}"
        );
        assert!(text.contains("on beta {") && text.contains("address 10.99.0.2:7789;"));
        for policy in ["after-sb-0pri", "after-sb-1pri", "after-sb-2pri"] {
            assert!(text.contains(&format!("{policy} disconnect;")), "{policy}");
        }
        assert!(text.contains("split-brain \"/usr/bin/ramkeyctl cluster split-brain\""));
    }
}

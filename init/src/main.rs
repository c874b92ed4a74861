//! Ramkey PID 1 entry point: called as `ramkeyctl` (a link to `/init`) it is the admin
//! tool, as `ramkey-zone` the zone launcher, as `ramkey-logship` the log shipper, as
//! `ramkey-metrics` the Prometheus exporter, as `ramkey-vmm` the VM monitor, as `ramkey-cluster` the HA agent; otherwise it refuses to run as anything but
//! PID 1, then hands over.

#![deny(unsafe_code)]

fn main() {
    // One timestamped `PANIC at FILE:LINE: ...` line on standard error (the console, a zone's
    // log, the administrator's terminal) whichever program this is.
    ramkey_init::install_panic_hook();
    let mut args = std::env::args();
    let name = args.next().unwrap_or_default();
    let called = std::path::Path::new(&name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    match called.as_deref() {
        Some("ramkeyctl") => std::process::exit(ramkey_init::ramkeyctl(&args.collect::<Vec<_>>())),
        Some("ramkey-zone") => std::process::exit(ramkey_init::zone_launcher(&args.collect::<Vec<_>>())),
        Some("ramkey-logship") => std::process::exit(ramkey_init::log_shipper(&args.collect::<Vec<_>>())),
        Some("ramkey-vmm") => {
            // Its own name in `ps` and `top`, not the file's (`init`) it was executed from.
            let _ = nix::sys::prctl::set_name(c"ramkey-vmm");
            std::process::exit(ramkey_vmm::program::main(args))
        }
        Some("ramkey-cluster") => std::process::exit(ramkey_init::cluster_agent()),
        Some("ramkey-metrics") => std::process::exit(ramkey_init::metrics_exporter(&args.collect::<Vec<_>>())),
        _ => {}
    }
    if std::process::id() != 1 {
        // Run by hand on a workstation: mounting and `kill(-1)` would harm the host.
        eprintln!("init: Ramkey's PID 1; it only runs as process 1 (in the initramfs)");
        std::process::exit(2);
    }
    ramkey_init::pid1()
}

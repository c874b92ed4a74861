//! Ramkey PID 1 entry point: refuses to run as anything but PID 1, then hands over.

fn main() {
    if std::process::id() != 1 {
        // Run by hand on a workstation: mounting and `kill(-1)` would harm the host.
        eprintln!("init: Ramkey's PID 1; it only runs as process 1 (in the initramfs)");
        std::process::exit(2);
    }
    ramkey_init::pid1::run()
}

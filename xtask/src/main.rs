//! `cargo xtask`: developer workflows. See `xtask/src/tasks.rs`.

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <command>
  demo    build the platform and boot it under QEMU on this terminal
  test    fmt check, clippy, unit tests, then the boot tests under QEMU (what CI runs)
  bench   boot time, footprint and RAM against the floor and peers (cargo xtask bench --help)
  deps    install the host packages (QEMU, firmware) as root on Debian 12";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => xtask::tasks::test(),
        Some("demo") => xtask::tasks::demo(),
        Some("deps") => xtask::deps::ensure(),
        Some("bench") => xtask::bench::main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

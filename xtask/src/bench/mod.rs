//! `cargo xtask bench`: boots each system N times under the same QEMU, kernel, memory and
//! virtual hardware, alternating systems run by run, and writes `target/bench/report.md`
//! and `report.json`. See `docs/performance.md` for what the figures mean.
//!
//! The peers (floor, busybox, systemd) are built here from Debian packages, cached under
//! `target/bench/cache/`, and never shipped.

mod build_time;
mod busybox;
mod floor;
pub mod measure;
pub(crate) mod peers;
pub mod report;
mod stick;
mod systemd;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::artifacts;
use measure::{Boot, Console, Target};
use report::{Environment, SystemResult};

/// The systems, in report order.
pub const SYSTEMS: &[&str] = &[
    "floor",
    "busybox",
    "systemd",
    "ramkey-platform",
    "ramkey-stick",
    "ramkey-zone",
    "ramkey-vm",
];

fn what(name: &str) -> &'static str {
    match name {
        "floor" => {
            "the kernel's own cost: `/init` is a 2 KB static binary that logs the marker and memory, then powers off."
        }
        "busybox" => {
            "busybox-static (Debian), a shell `/init`: insmod virtio/vfat, mount the FAT disk, `ip addr add`, busybox `httpd`."
        }
        "systemd" => {
            "Debian bookworm minbase + systemd, udev, dbus, nginx (mmdebstrap, merged-usr, no docs) as a RAM root; a unit reads the FAT config."
        }
        "ramkey-platform" => {
            "Ramkey's platform (`xtask::artifacts::platform()`): the config from the FAT disk, busybox `httpd` as a platform service (`/usbkey/services.d`)."
        }
        "ramkey-stick" => {
            "the `usb.img` `ramkey build` writes (GPT, FAT, syslinux), booted as `ramkey run` boots it: a USB disk on xHCI under SeaBIOS, no direct kernel boot; the same config and services as ramkey-platform, on the stick."
        }
        "ramkey-vm" => {
            "Ramkey's platform running the `web` personality built with `--vm` as a KVM micro-VM (1 vCPU, 192 MiB) at 10.0.2.16, under nested KVM in TCG, data in RAM."
        }
        _ => {
            "Ramkey's platform running the `web` personality (nginx, 22 MB signed image on the FAT disk) in a zone at 10.0.2.16, data in RAM."
        }
    }
}

/// The `ramkey-stick` system's note: the command line its boot loader gives the kernel.
fn stick_note(cmdline: &str) -> String {
    let quiet = if cmdline.split_whitespace().any(|w| w == "quiet") {
        ""
    } else {
        ": without `quiet` the kernel logs every message to the serial console"
    };
    format!(
        "Its kernel command line is the stick's own (`{cmdline}`, from `syslinux/syslinux.cfg`), not the bench's\
         {quiet}. Its size is what the boot loader \
         loads besides the kernel (the initrds of its default entry). Each run boots a fresh copy of the stick, \
         whose `config.toml.good` already holds the config, as after a first boot."
    )
}

fn note(name: &str) -> Option<&'static str> {
    match name {
        "floor" => Some("It cannot serve HTTP."),
        "ramkey-zone" => Some("Its size is the initramfs plus the image; the forward goes to the zone's own address."),
        "ramkey-vm" => Some(
            "Its size is the initramfs plus the image; the stick also holds the kernel the guest boots. Emulated: \
             every guest exit goes to a KVM that TCG runs, so only its ratios to ramkey-zone carry over.",
        ),
        _ => None,
    }
}

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: u32,
    pub only: Option<Vec<String>>,
    pub out: PathBuf,
}

impl Options {
    /// Parses `[--runs N] [--only NAME[,NAME]] [--out DIR]`.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            runs: 5,
            only: None,
            out: artifacts::target_dir().join("bench"),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| it.next().with_context(|| format!("{flag} needs a value"));
            match arg.as_str() {
                "--runs" => opts.runs = value("--runs")?.parse().context("--runs takes a number")?,
                "--only" => {
                    let names: Vec<String> = value("--only")?.split(',').map(str::to_string).collect();
                    if let Some(bad) = names.iter().find(|n| !SYSTEMS.contains(&n.as_str())) {
                        bail!("unknown system {bad:?}; the systems are {}", SYSTEMS.join(", "));
                    }
                    opts.only = Some(names);
                }
                "--out" => opts.out = value("--out")?.into(),
                other => bail!("unknown bench option {other:?}\n{USAGE}"),
            }
        }
        if opts.runs == 0 {
            bail!("--runs must be at least 1");
        }
        Ok(opts)
    }

    fn wants(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|n| n == name))
    }
}

pub const USAGE: &str = "usage: cargo xtask bench [--runs N] [--only NAME[,NAME]] [--out DIR]
       cargo xtask bench build [--runs N] [--out DIR]
systems: floor, busybox, systemd, ramkey-platform, ramkey-stick, ramkey-zone, ramkey-vm";

/// `cargo xtask bench ...`.
pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("build") => {
            let opts = Options::parse(&args[1..])?;
            let runs = if args.iter().any(|a| a == "--runs") {
                opts.runs
            } else {
                3
            };
            build_time::run(runs, &opts.out)
        }
        Some("build-once") => {
            build_time::build_once(&PathBuf::from(args.get(1).context("build-once needs a directory")?))
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => run(&Options::parse(args)?),
    }
}

/// Builds the selected systems, boots them `runs` times alternating, writes the report.
pub fn run(opts: &Options) -> Result<()> {
    crate::deps::ensure()?;
    let kernel = artifacts::kernel()?;
    let epoch = artifacts::source_date_epoch();
    let cache = artifacts::target_dir().join("bench/cache");
    std::fs::create_dir_all(&cache)?;
    let disk = peers::config_disk(&cache.join("disk"))?;
    let platform_initrd = || -> Result<PathBuf> { Ok(artifacts::platform()?.join("initrd.img")) };

    let mut targets: Vec<(Target, u64)> = Vec::new();
    let mut results: Vec<SystemResult> = Vec::new();
    // A direct kernel boot of `initrd` with `disk`; its size counts `extra` bytes more.
    let direct = |initrd: PathBuf, disk: PathBuf, extra: u64| -> Result<(Boot, u64)> {
        let size = std::fs::metadata(&initrd)?.len() + extra;
        let vmlinuz = kernel.vmlinuz.clone();
        Ok((Boot::Kernel { vmlinuz, initrd, disk }, size))
    };
    for &name in SYSTEMS.iter().filter(|n| opts.wants(n)) {
        let (mut serve_at, mut mark, mut note) = (None, peers::PAGE_MARK, note(name).map(str::to_string));
        let built = match name {
            "floor" => Some((direct(floor::build(&cache, epoch)?, disk.clone(), 0)?, Console::Floor)),
            "busybox" => Some((
                direct(busybox::build(&cache, &kernel, epoch)?, disk.clone(), 0)?,
                Console::Peer,
            )),
            "systemd" => Some((
                direct(systemd::build(&cache, &kernel, epoch)?, disk.clone(), 0)?,
                Console::Peer,
            )),
            "ramkey-platform" => {
                let stick = peers::partitioned(&disk, &cache.join("disk/config.stick.img"))?;
                Some((direct(platform_initrd()?, stick, 0)?, Console::Ramkey))
            }
            "ramkey-stick" => {
                let stick = stick::prepare(&cache.join("stick"), &kernel)?;
                note = Some(stick_note(&stick.cmdline));
                Some(((Boot::Stick { image: stick.image }, stick.size), Console::Ramkey))
            }
            "ramkey-zone" | "ramkey-vm" => {
                let vm = name == "ramkey-vm";
                let web = if vm {
                    artifacts::vm_personality("web")?
                } else {
                    artifacts::personality("web")?
                };
                let (_, trusted) = artifacts::test_key()?;
                let guest_kernel = vm.then_some(kernel.vmlinuz.as_path());
                let zone = peers::zone_disk(&cache.join(name), &web, &trusted, guest_kernel)?;
                (serve_at, mark) = (Some(peers::ZONE_ADDRESS), "It works");
                let extra = std::fs::metadata(&web)?.len();
                Some((direct(platform_initrd()?, zone, extra)?, Console::Ramkey))
            }
            _ => None,
        };
        let size = built.as_ref().map(|((_, size), _)| *size);
        if let Some(((boot, size), console)) = built {
            eprintln!("bench: {name}: {} ({size} bytes)", boot.source().display());
            let target = Target {
                name: name.to_string(),
                boot,
                console,
                serve_at,
                mark,
            };
            targets.push((target, results.len() as u64));
        }
        results.push(SystemResult {
            name,
            what: what(name),
            size,
            samples: Vec::new(),
            note,
        });
    }

    for run in 1..=opts.runs {
        let order = shuffled(targets.len(), run);
        let names: Vec<&str> = order.iter().map(|&i| targets[i].0.name.as_str()).collect();
        eprintln!("bench: run {run}/{}: order {}", opts.runs, names.join(", "));
        for (target, index) in order.iter().map(|&i| &targets[i]) {
            let sample = measure::run_once(target, run).with_context(|| format!("bench: {} run {run}", target.name))?;
            eprintln!(
                "bench: run {run}/{}: {:<16} /init {:.2} s  http {}  ready {}  mem {}",
                opts.runs,
                target.name,
                sample.init,
                sample.http.map_or("—".into(), |h| format!("{h:.2} s")),
                sample.ready.map_or("—".into(), |r| format!("{r:.2} s")),
                sample.mem_used_kib.map_or("—".into(), |k| format!("{} MiB", k / 1024)),
            );
            results[*index as usize].samples.push(sample);
        }
    }

    let env = Environment {
        runs: opts.runs,
        kernel: kernel.release.clone(),
        kernel_size: std::fs::metadata(&kernel.vmlinuz)?.len(),
        qemu: qemu_version(),
        accel: crate::qemu::accel(),
        host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    report::write(&opts.out, &results, &env)?;
    print!("{}", report::markdown(&results, &env));
    eprintln!("bench: wrote {}/report.md and report.json", opts.out.display());
    Ok(())
}

/// The order of `n` systems in round `run`: a Fisher-Yates shuffle seeded by the round, so
/// that no system always boots first or right after the same neighbour (the host's caches
/// and clocks drift within a round), and a rerun uses the same orders.
fn shuffled(n: usize, run: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = u64::from(run).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..n).rev() {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn qemu_version() -> String {
    std::process::Command::new(crate::qemu::QEMU)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "QEMU (version unknown)".into())
}

#[cfg(test)]
mod tests {
    use super::shuffled;

    #[test]
    fn each_round_is_a_permutation_and_the_first_system_changes() {
        let rounds: Vec<Vec<usize>> = (1..=5).map(|run| shuffled(5, run)).collect();
        for order in &rounds {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4]);
        }
        let firsts: std::collections::BTreeSet<usize> = rounds.iter().map(|o| o[0]).collect();
        assert!(firsts.len() > 1, "{rounds:?}");
        assert_eq!(shuffled(5, 3), shuffled(5, 3), "the same round, the same order");
    }
}

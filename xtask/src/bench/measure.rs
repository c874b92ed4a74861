//! One measured boot: starts QEMU with the common virtual hardware, times the `/init` marker
//! (host time of kernel zero = arrival of a console line minus its printk timestamp), polls
//! HTTP through the forwarded port from another thread, and reads the memory lines.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::qemu::{Machine, Spec};

/// The same kernel command line for every system.
pub const CMDLINE: &str = "console=ttyS0 panic=-1 quiet";
pub const MEMORY_MB: u32 = 1024;
/// Bounds every wait; the slowest system boots in well under a minute under TCG.
const DEADLINE: Duration = Duration::from_secs(300);

/// How a system shows its progress on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// `bench: init`, two memory readings, then power-off (no HTTP).
    Floor,
    /// `bench: init`, HTTP through the port, two memory readings.
    Peer,
    /// Ramkey's own lines: `ramkey: init started`, timeline, `ramkey: ready`.
    Ramkey,
}

/// How a system boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// Direct kernel boot with [`CMDLINE`]; `disk` (the config) is a read-only virtio disk.
    Kernel {
        vmlinuz: PathBuf,
        initrd: PathBuf,
        disk: PathBuf,
    },
    /// A stick image on a USB disk under SeaBIOS, as `ramkey run` boots it, with the
    /// command line of its boot loader; each run boots a fresh copy.
    Stick { image: PathBuf },
}

impl Boot {
    /// What the system boots besides the shared kernel: the initramfs, or the stick.
    pub fn source(&self) -> &std::path::Path {
        match self {
            Boot::Kernel { initrd, .. } => initrd,
            Boot::Stick { image } => image,
        }
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub boot: Boot,
    pub console: Console,
    /// Where the page is served: the box's own address, or a zone's.
    pub serve_at: Option<&'static str>,
    /// What the page must contain.
    pub mark: &'static str,
}

/// The figures of one boot, in seconds from QEMU start unless named otherwise.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Host time of kernel time zero.
    pub kernel_zero: f64,
    /// The `/init` marker.
    pub init: f64,
    /// The first HTTP 200 with the page.
    pub http: Option<f64>,
    /// `ramkey: ready`.
    pub ready: Option<f64>,
    /// MemTotal − MemAvailable at the second reading, KiB: what could not be reclaimed
    /// (page cache, such as a zone's squashfs pages, counts as available).
    pub mem_used_kib: Option<u64>,
    /// MemTotal − MemFree at the second reading, KiB: every page in use, caches included.
    pub mem_resident_kib: Option<u64>,
    /// Ramkey's timeline: step name and duration in ms.
    pub steps: Vec<(String, u64)>,
    /// The zone's memory readings (`bench: zone-memory NAME: N kB`), KiB.
    pub zone_kib: Vec<(String, u64)>,
    /// Where a Ramkey platform's RAM goes (`bench: ram NAME: N kB`, [`super::peers::RAM_PARTS_SH`]).
    pub ram_kib: Vec<(String, u64)>,
}

/// The printk timestamp of a console line: `[    3.992543] ...`.
pub fn printk_time(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (ts, _) = rest.split_once(']')?;
    ts.trim().parse().ok()
}

/// The `boottime=SECONDS` a peer's `bench: init` marker carries.
pub fn boottime(line: &str) -> Option<f64> {
    line.split_once("boottime=")?.1.split_whitespace().next()?.parse().ok()
}

/// A free loopback port for the forward (closed again before QEMU binds it).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls until the page answers, `stop` is set, or the deadline; the time since `t0`.
fn poll_http(port: u16, mark: &str, t0: Instant, stop: &AtomicBool) -> Option<f64> {
    // A request sent before the guest has its address hangs until its timeout even when the
    // guest answers meanwhile (QEMU's user network accepts at once and forwards later), so one
    // poll at a time put the figure on the timeout's grid. Overlapping attempts, one every
    // 50 ms, each with its own timeout: the first answer comes within ~50 ms of the guest's.
    let (tx, rx) = std::sync::mpsc::channel();
    while t0.elapsed() < DEADLINE && !stop.load(Ordering::Relaxed) {
        let (tx, mark) = (tx.clone(), mark.to_owned());
        std::thread::spawn(move || {
            if crate::http::get_ok(port, "/", Duration::from_secs(2)).is_some_and(|page| page.contains(&mark)) {
                let _ = tx.send(t0.elapsed().as_secs_f64());
            }
        });
        if let Ok(at) = rx.recv_timeout(Duration::from_millis(50)) {
            return Some(at);
        }
    }
    None
}

/// Waits for `ramkey: ready`, failing at once on recovery mode. Only complete lines count.
fn wait_ready(vm: &mut Machine) -> Result<String> {
    let start = Instant::now();
    loop {
        for (_, line) in vm.lines() {
            if line.contains("ramkey: RECOVERY MODE") {
                bail!("ramkey went to recovery mode instead of ready: {line}\n{}", vm.tail());
            }
            if line.contains("ramkey: ready") {
                return Ok(line.clone());
            }
        }
        if start.elapsed() > DEADLINE {
            bail!("no `ramkey: ready` within {DEADLINE:?}\n{}", vm.tail());
        }
        // Absorbs console output for a moment; the needle never matches.
        if let Err(e) = vm.expect("\u{0}", Duration::from_millis(200))
            && e.to_string().contains("QEMU exited")
        {
            return Err(e);
        }
    }
}

fn kib(line: &str) -> Option<u64> {
    line.split_whitespace().rev().nth(1)?.parse().ok()
}

/// Boots `target` once and measures it.
pub fn run_once(target: &Target, run: u32) -> Result<Sample> {
    let port = free_port()?;
    let name = format!("bench-{}-{run}", target.name);
    let mut spec = match &target.boot {
        Boot::Kernel { vmlinuz, initrd, disk } => Spec {
            name,
            memory_mb: MEMORY_MB,
            kernel: Some((vmlinuz.clone(), initrd.clone(), CMDLINE.into())),
            args: vec![
                "-drive".into(),
                format!("if=none,id=cfg,format=raw,readonly=on,file={}", disk.display()),
                "-device".into(),
                "virtio-blk-pci,drive=cfg".into(),
            ],
        }
        .user_net(&[(port, 80)]),
        Boot::Stick { image } => super::stick::spec(&name, image, port)?,
    };
    spec.memory_mb = MEMORY_MB;
    if let Some(address) = target.serve_at {
        // The forward goes to the zone's own address on the user network.
        for arg in &mut spec.args {
            if arg.starts_with("user,") {
                *arg = arg.replace("-:80", &format!("-{address}:80"));
            }
        }
    }
    // The poller's clock starts just before QEMU's; the console's just after spawning it.
    let t0 = Instant::now();
    let mut vm = Machine::start(&spec)?;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = (target.console != Console::Floor).then(|| {
        let stop = Arc::clone(&stop);
        let mark = target.mark;
        std::thread::spawn(move || poll_http(port, mark, t0, &stop))
    });
    let result = observe(&mut vm, target.console);
    stop.store(result.is_err(), Ordering::Relaxed);
    let http = poller.and_then(|p| p.join().ok().flatten());
    let mut sample = result?;
    if target.console != Console::Floor {
        let http = http.with_context(|| format!("{}: no HTTP 200 within {DEADLINE:?}\n{}", target.name, vm.tail()))?;
        sample.http = Some(http);
        if let Some(up) = zone_up(&vm, sample.kernel_zero) {
            sample
                .steps
                .push(("zone up → HTTP 200".into(), ((http - up.0) * 1000.0).max(0.0) as u64));
            sample.steps.push(("zone setup".into(), up.1));
        }
        if let Some(started) = vm_started(&vm, sample.kernel_zero) {
            sample.steps.push((
                "VM start → HTTP 200".into(),
                ((http - started) * 1000.0).max(0.0) as u64,
            ));
        }
    }
    if target.console == Console::Floor {
        vm.wait_exit(Duration::from_secs(30))?;
    }
    Ok(sample)
}

/// Follows the console of a running machine.
/// The host time of the `zone web: up in N ms` line, and N.
fn zone_up(vm: &Machine, kernel_zero: f64) -> Option<(f64, u64)> {
    vm.lines().iter().find_map(|(_, l)| {
        let ms = l.split_once("zone web: up in ")?.1.split(' ').next()?.parse().ok()?;
        Some((kernel_zero + printk_time(l)?, ms))
    })
}

/// The host time of the `vm web: web VERSION on N vCPU(s)` line (the VMM started).
fn vm_started(vm: &Machine, kernel_zero: f64) -> Option<f64> {
    vm.lines()
        .iter()
        .find_map(|(_, l)| l.contains("ramkey: vm web: web ").then(|| printk_time(l))?)
        .map(|t| kernel_zero + t)
}

fn observe(vm: &mut Machine, console: Console) -> Result<Sample> {
    let mut sample = Sample::default();
    let needle = if console == Console::Ramkey {
        "ramkey: init started"
    } else {
        "bench: init"
    };
    let (at, line) = vm.expect(needle, DEADLINE)?;
    // One clock for all: the time since boot on `CLOCK_BOOTTIME`, which stamps Ramkey's
    // lines and which the peers' marker carries (`boottime=`); the printk clock only if a
    // marker lacks it.
    let ts = boottime(&line)
        .or_else(|| printk_time(&line))
        .with_context(|| format!("no time since boot on {line:?}"))?;
    sample.kernel_zero = at.as_secs_f64() - ts;
    sample.init = at.as_secs_f64();
    if console == Console::Ramkey {
        let line = wait_ready(vm)?;
        let ts = printk_time(&line).with_context(|| format!("no printk timestamp on {line:?}"))?;
        sample.ready = Some(sample.kernel_zero + ts);
        sample.steps = vm
            .lines()
            .iter()
            .filter_map(|(_, l)| {
                let rest = l.split_once("ramkey: timeline step=")?.1;
                let (name, rest) = rest.split_once(' ')?;
                let ms = rest.split_once("duration_ms=")?.1.trim().parse().ok()?;
                Some((name.to_string(), ms))
            })
            .collect();
    }
    for _ in 0..2 {
        vm.expect("bench: meminfo done", DEADLINE)?;
    }
    let value = |key: &str| vm.lines().iter().rev().find_map(|(_, l)| kib(l.split_once(key)?.1));
    let (Some(total), Some(available)) = (value("meminfo MemTotal:"), value("meminfo MemAvailable:")) else {
        bail!("memory lines without numbers\n{}", vm.tail());
    };
    sample.mem_used_kib = Some(total.saturating_sub(available));
    sample.mem_resident_kib = value("meminfo MemFree:").map(|free| total.saturating_sub(free));
    // `bench: PREFIX NAME: N kB` lines, in order.
    let readings = |prefix: &str| -> Vec<(String, u64)> {
        vm.lines()
            .iter()
            .filter_map(|(_, l)| {
                let (name, value) = l.split_once(prefix)?.1.rsplit_once(':')?;
                Some((name.to_string(), kib(value)?))
            })
            .collect()
    };
    sample.ram_kib = readings("bench: ram ");
    sample.zone_kib = readings("bench: zone-memory ");
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_printk_times_and_meminfo_numbers() {
        assert_eq!(printk_time("[    3.992543] ramkey: init started"), Some(3.992543));
        assert_eq!(printk_time("ramkey: ready"), None);
        assert_eq!(boottime("[    4.100000] bench: init boottime=4.09"), Some(4.09));
        assert_eq!(
            boottime("[    4.1] bench: init boottime=0000000004.093000"),
            Some(4.093)
        );
        assert_eq!(boottime("[    4.1] bench: init"), None);
        assert_eq!(kib(" 1004096 kB"), Some(1004096));
    }
}

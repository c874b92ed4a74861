//! Tests of coldplug's queue of loads run overlapped, against a fake kernel: a [`SharedLoader`] that logs each
//! load's start and return and announces over a pipe what the real kernel would (devices its
//! driver adds, the end of its init), and a [`DeviceFeed`] reading that pipe.

use super::*;
use crate::devices::modprobe::Modprobe;
use crate::devices::modules::ModuleIndex;
use crate::devices::pipeline::disk_controller;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const DEP: &str = "\
kernel/scsi_common.ko:
kernel/scsi_mod.ko: kernel/scsi_common.ko
kernel/libata.ko: kernel/scsi_mod.ko kernel/scsi_common.ko
kernel/ahci.ko: kernel/libata.ko kernel/scsi_mod.ko kernel/scsi_common.ko
kernel/virtio_ring.ko:
kernel/virtio.ko: kernel/virtio_ring.ko
kernel/virtio_pci.ko: kernel/virtio_ring.ko kernel/virtio.ko
kernel/virtio_net.ko: kernel/virtio_ring.ko kernel/virtio.ko
kernel/button.ko:
kernel/sha256_ssse3.ko:
kernel/kvm.ko:
kernel/kvm_amd.ko: kernel/kvm.ko
";
const ALIAS: &str = "\
alias pci:v00008086d00002922* ahci
alias pci:v00001AF4d00001000* virtio_pci
alias virtio:d00000001v* virtio_net
alias acpi*:LNXPWRBN:* button
alias cpu:type:x86,ven*fam*mod*:feature:*0089* sha256_ssse3
alias crypto-sha256 sha256_ssse3
alias cpu:type:x86,ven*fam*mod*:feature:*009C* kvm_amd
";
const AHCI: &str = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";
const VIRTIO_PCI: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
const VIRTIO_NET: &str = "virtio:d00000001v00001AF4";
const BUTTON: &str = "acpi:LNXPWRBN:";
const CPU: &str = "cpu:type:x86,ven0002fam0006mod0006:feature:,0000,0089,009C";

/// What one module's load does in the fake kernel.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Devices its driver adds (announced during its init).
    pub adds: Vec<String>,
    /// No `add@/module/NAME`: the module's init is only known done when the load returns.
    pub silent: bool,
    /// Time between the end of its init and the return of its `finit_module` (the wait
    /// for asynchronous probes).
    pub tail: Duration,
    /// The load fails with this errno.
    pub fails: Option<Errno>,
    /// The load panics.
    pub panics: bool,
}

/// The fake kernel's loader side.
#[derive(Debug)]
pub struct FakeKernel {
    announce: OwnedFd,
    /// `start NAME` and `end NAME`, in the order they happened.
    pub log: Mutex<Vec<String>>,
    /// Behaviour by module; the default: an init that announces itself, no tail.
    pub script: BTreeMap<String, Behaviour>,
}

/// The fake kernel's announcements.
#[derive(Debug)]
pub struct PipeFeed {
    read: OwnedFd,
    rest: String,
    /// Returned by the next drains, in order, before reading the pipe.
    pub errors: Vec<FeedError>,
}

/// A fake kernel and its feed.
pub fn fake_kernel(script: &[(&str, Behaviour)]) -> (FakeKernel, PipeFeed) {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
    let kernel = FakeKernel {
        announce: write,
        log: Mutex::new(Vec::new()),
        script: script.iter().map(|(m, b)| (m.to_string(), b.clone())).collect(),
    };
    let feed = PipeFeed {
        read,
        rest: String::new(),
        errors: Vec::new(),
    };
    (kernel, feed)
}

impl FakeKernel {
    fn say(&self, line: String) {
        nix::unistd::write(&self.announce, format!("{line}\n").as_bytes()).unwrap();
    }

    /// The log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl SharedLoader for FakeKernel {
    fn load(&self, name: &str, path: &std::path::Path, _params: &str) -> Result<LoadOutcome, ModprobeError> {
        self.log.lock().unwrap().push(format!("start {name}"));
        let b = self.script.get(name).cloned().unwrap_or_default();
        assert!(!b.panics, "the fake {name} panics");
        for alias in &b.adds {
            self.say(format!("device {alias}"));
        }
        let result = match b.fails {
            Some(source) => Err(ModprobeError::Load {
                module: name.into(),
                path: path.into(),
                source,
            }),
            None => {
                if !b.silent {
                    self.say(format!("module {name}"));
                }
                std::thread::sleep(b.tail);
                Ok(LoadOutcome::Loaded)
            }
        };
        self.log.lock().unwrap().push(format!("end {name}"));
        result
    }
}

impl AsFd for PipeFeed {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl DeviceFeed for PipeFeed {
    fn drain(&mut self) -> Result<Vec<Announced>, FeedError> {
        if !self.errors.is_empty() {
            return Err(self.errors.remove(0));
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = nix::unistd::read(&self.read, &mut buf) {
            if n == 0 {
                break;
            }
            self.rest.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        let mut out = Vec::new();
        while let Some((line, rest)) = self.rest.split_once('\n') {
            out.push(match line.split_once(' ') {
                Some(("device", alias)) => Announced::Device(alias.into()),
                Some(("module", name)) => Announced::Module(name.into()),
                _ => panic!("bad fake announcement {line:?}"),
            });
            self.rest = rest.to_owned();
        }
        Ok(out)
    }
}

fn modprobe() -> Modprobe {
    Modprobe::new(ModuleIndex::parse(DEP, ALIAS), BTreeMap::new())
}

fn all(_: &str) -> bool {
    true
}

/// What [`run`] returns: the feed's fate, modules loaded, failures, rescans.
type Outcome = (Result<(), Errno>, usize, usize, usize);

/// Runs the pipeline over `devices`, a rescan finding `rescan_finds`.
fn run(
    mp: &mut Modprobe,
    kernel: &FakeKernel,
    feed: &mut PipeFeed,
    devices: &[&str],
    rescan_finds: &[&str],
) -> Outcome {
    let mut pipeline = Pipeline::new(mp);
    let found: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    pipeline.devices(&found, &all);
    let mut rescans = 0;
    let mut rescan = || -> Result<Vec<String>, ()> {
        rescans += 1;
        Ok(rescan_finds.iter().map(|d| d.to_string()).collect())
    };
    let result = pipeline.run_overlapped(kernel, feed, &all, &mut rescan).unwrap();
    (result, pipeline.loaded, pipeline.failures, rescans)
}

fn starts(log: &[String]) -> Vec<&str> {
    log.iter().filter_map(|l| l.strip_prefix("start ")).collect()
}

fn at(log: &[String], line: &str) -> usize {
    log.iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} not in {log:?}"))
}

#[test]
fn the_wait_for_asynchronous_probes_overlaps_the_next_loads() {
    let ahci = Behaviour {
        tail: Duration::from_millis(300),
        ..Default::default()
    };
    let virtio_pci = Behaviour {
        adds: vec![VIRTIO_NET.into()],
        ..Default::default()
    };
    let (kernel, mut feed) = fake_kernel(&[("ahci", ahci), ("virtio_pci", virtio_pci)]);
    let mut mp = modprobe();
    let (result, loaded, failures, rescans) = run(&mut mp, &kernel, &mut feed, &[BUTTON, AHCI, CPU, VIRTIO_PCI], &[]);
    assert_eq!((result, loaded, failures, rescans), (Ok(()), 10, 0, 0));
    let log = kernel.log();
    // The CPU's SVM matches kvm_amd, which waits for a VM personality to ask for it.
    assert!(!starts(&log).contains(&"kvm_amd"), "{log:?}");
    // The signature hash first, then the disk controller's chain (ahci), then in modalias
    // order; the device virtio_pci adds is announced and its module queued without a rescan.
    assert_eq!(
        starts(&log),
        [
            "sha256_ssse3",
            "scsi_common",
            "scsi_mod",
            "libata",
            "ahci",
            "button",
            "virtio_ring",
            "virtio",
            "virtio_pci",
            "virtio_net"
        ]
    );
    // ahci's load is still waiting when every other load has started and returned.
    assert!(at(&log, "end virtio_net") < at(&log, "end ahci"), "{log:?}");
    assert!(mp.is_loaded("ahci") && mp.is_loaded("virtio_net"));
}

#[test]
fn without_an_announcement_the_next_load_waits_for_the_return() {
    let quiet = Behaviour {
        silent: true,
        tail: Duration::from_millis(100),
        ..Default::default()
    };
    let (kernel, mut feed) = fake_kernel(&[("virtio", quiet)]);
    let mut mp = modprobe();
    let (result, loaded, ..) = run(&mut mp, &kernel, &mut feed, &[BUTTON, VIRTIO_PCI], &[]);
    assert_eq!((result, loaded), (Ok(()), 4));
    let log = kernel.log();
    assert_eq!(starts(&log), ["button", "virtio_ring", "virtio", "virtio_pci"]);
    assert!(at(&log, "end virtio") < at(&log, "start virtio_pci"), "{log:?}");
}

#[test]
fn a_failed_dependency_stops_its_dependents_and_counts_once() {
    let broken = Behaviour {
        fails: Some(Errno::ENOEXEC),
        ..Default::default()
    };
    let (kernel, mut feed) = fake_kernel(&[("scsi_mod", broken)]);
    let mut mp = modprobe();
    let (result, loaded, failures, _) = run(&mut mp, &kernel, &mut feed, &[AHCI, BUTTON], &[]);
    assert_eq!((result, loaded, failures), (Ok(()), 2, 1));
    assert_eq!(starts(&kernel.log()), ["scsi_common", "scsi_mod", "button"]);
    assert!(mp.is_failed("scsi_mod") && mp.is_failed("libata") && mp.is_failed("ahci"));
    assert!(mp.is_loaded("scsi_common") && mp.is_loaded("button"));
}

#[test]
fn a_panicking_load_is_a_failure_not_a_hang() {
    let bad = Behaviour {
        panics: true,
        ..Default::default()
    };
    let (kernel, mut feed) = fake_kernel(&[("button", bad)]);
    let mut mp = modprobe();
    let (result, loaded, failures, _) = run(&mut mp, &kernel, &mut feed, &[BUTTON, VIRTIO_PCI], &[]);
    assert_eq!((result, loaded, failures), (Ok(()), 3, 1));
    assert!(mp.is_failed("button"));
}

#[test]
fn lost_announcements_scan_sysfs_again() {
    let (kernel, mut feed) = fake_kernel(&[]);
    feed.errors.push(FeedError::Lost);
    let mut mp = modprobe();
    let (result, loaded, _, rescans) = run(&mut mp, &kernel, &mut feed, &[BUTTON], &[BUTTON, VIRTIO_NET]);
    assert_eq!((result, rescans), (Ok(()), 1));
    assert_eq!(loaded, 4);
    assert!(mp.is_loaded("virtio_net"));
}

#[test]
fn a_broken_feed_is_returned_after_the_loads() {
    let virtio_pci = Behaviour {
        adds: vec![VIRTIO_NET.into()],
        ..Default::default()
    };
    let (kernel, mut feed) = fake_kernel(&[("virtio_pci", virtio_pci)]);
    feed.errors.push(FeedError::Broken(Errno::EIO));
    let mut mp = modprobe();
    let (result, loaded, failures, _) = run(&mut mp, &kernel, &mut feed, &[VIRTIO_PCI, BUTTON], &[]);
    // The announced device is not heard of: the caller scans sysfs for it.
    assert_eq!((result, loaded, failures), (Err(Errno::EIO), 4, 0));
    assert!(!mp.is_loaded("virtio_net"));
}

#[test]
fn modalias_seen_before_and_modules_in_the_kernel_are_not_loaded_again() {
    let (kernel, mut feed) = fake_kernel(&[]);
    let mut mp = modprobe();
    mp.seed_loaded("virtio_ring 16384 0 - Live 0x0\n");
    let (_, loaded, ..) = run(&mut mp, &kernel, &mut feed, &[VIRTIO_PCI], &[]);
    assert_eq!(loaded, 2);
    let (_, loaded, ..) = run(&mut mp, &kernel, &mut feed, &[VIRTIO_PCI, BUTTON], &[]);
    assert_eq!(loaded, 1);
    assert_eq!(starts(&kernel.log()), ["virtio", "virtio_pci", "button"]);
}

#[test]
fn uevents_announce_devices_and_module_inits() {
    let parse = |text: &[u8]| announced(&Uevent::parse(text).unwrap());
    assert_eq!(
        parse(b"add@/devices/pci0000:00/0000:00:02.0/virtio1\0ACTION=add\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000001v00001AF4\0"),
        Some(Announced::Device(VIRTIO_NET.into()))
    );
    assert_eq!(
        parse(b"add@/module/virtio_net\0ACTION=add\0DEVPATH=/module/virtio_net\0SUBSYSTEM=module\0SEQNUM=9\0"),
        Some(Announced::Module("virtio_net".into()))
    );
    assert_eq!(parse(b"remove@/module/loop\0ACTION=remove\0SUBSYSTEM=module\0"), None);
    assert_eq!(parse(b"add@/bus/virtio\0ACTION=add\0SUBSYSTEM=bus\0"), None);
    assert_eq!(
        parse(b"bind@/devices/pci0000:00/0000:00:02.0\0ACTION=bind\0SUBSYSTEM=pci\0"),
        None
    );
}

#[test]
fn disk_controllers_are_told_by_their_pci_class() {
    assert!(disk_controller(AHCI));
    assert!(disk_controller("pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"));
    assert!(disk_controller("pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30"));
    assert!(!disk_controller(VIRTIO_PCI));
    assert!(!disk_controller(
        "pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00"
    ));
    assert!(!disk_controller(BUTTON) && !disk_controller("usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"));
}

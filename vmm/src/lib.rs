//! ramkey-vmm: a small virtual machine monitor on KVM and the rust-vmm crates
//! (kvm-ioctls, kvm-bindings, vm-memory, linux-loader, vm-superio). It boots a Linux
//! kernel (ELF vmlinux or bzImage, 64-bit boot protocol) with an initramfs and a command
//! line on N vCPUs, with a serial console on the VMM's stdin/stdout, a CMOS clock, an
//! i8042 whose reset ends the VM (and that types Ctrl-Alt-Del on SIGTERM, [`signals`]), an
//! ACPI power-off, and virtio-blk disks and a virtio-net NIC on a tap or macvtap on
//! virtio-mmio (announced to the guest
//! in ACPI tables); it reports how the VM ended ([`Outcome`]). See `docs/vms.md`.
//!
//! Layout: [`cli`] (arguments), [`kvm`] (the sys layer: the probe, the VM, memory slots),
//! [`layout`] + [`boot`] + [`mptable`] + [`acpi`] (guest memory), [`cpu`] (vCPU state),
//! [`devices`] (the buses, serial, i8042, CMOS clock, virtio-mmio, virtio-blk, virtio-net), [`vcpu`] (the
//! run loop), [`signals`] (SIGTERM), [`seccomp`] (the filter), [`outcome`] (how it ended),
//! [`memory_use`] (what it cost).

pub mod acpi;
pub mod boot;
pub mod cli;
pub mod cpu;
pub mod devices;
pub mod kvm;
pub mod layout;
pub mod memory_use;
pub mod mptable;
pub mod outcome;
pub mod program;
pub mod seccomp;
pub mod signals;
pub mod vcpu;

use std::sync::{Arc, Mutex};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};
use vmm_sys_util::eventfd::EventFd;

pub use cli::Options;
pub use outcome::Outcome;

use acpi::VirtioWindow;
use devices::block::Block;
use devices::cmos::{CMOS_PORT, CMOS_PORTS, Cmos};
use devices::i8042::{I8042, I8042_PORT, I8042_PORTS, KBD_IRQ};
use devices::net::Net;
use devices::power::{Power, SLEEP_PORT, SLEEP_PORTS};
use devices::serial::{self, COM1_IRQ, COM1_PORT, COM1_PORTS, SerialPort};
use devices::virtio_mmio::MmioTransport;
use devices::{Bus, Overlap};
use outcome::Stop;

/// Why a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error(transparent)]
    NoKvm(#[from] kvm::NoKvm),
    #[error(transparent)]
    Kvm(#[from] kvm::KvmError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error("allocating {mib} MiB of guest memory: {source}")]
    Memory {
        mib: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("a device's interrupt eventfd: {0}")]
    EventFd(std::io::Error),
    #[error(transparent)]
    Bus(#[from] Overlap),
    #[error(transparent)]
    Disk(#[from] devices::block::DiskError),
    #[error(transparent)]
    Tap(#[from] devices::tap::TapError),
    #[error("the NIC's RX thread: {0}")]
    NetThread(std::io::Error),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("the signal thread: {0}")]
    Signals(std::io::Error),
    #[error("starting vcpu {id}: {source}")]
    Thread { id: u8, source: std::io::Error },
}

/// How the VM ended, and the VMM's memory use then.
#[derive(Debug, Clone)]
pub struct Ended {
    pub outcome: Outcome,
    pub memory: Option<memory_use::MemoryUse>,
}

/// A new eventfd that KVM injects as interrupt `gsi`.
fn irqfd(vm: &kvm_ioctls::VmFd, gsi: u32) -> Result<EventFd, VmmError> {
    let interrupt = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    vm.register_irqfd(&interrupt, gsi).map_err(|source| kvm::KvmError {
        what: "KVM_IRQFD",
        source,
    })?;
    Ok(interrupt)
}

/// Boots the VM `opts` describes and runs it until it ends.
pub fn run(opts: &Options) -> Result<Ended, VmmError> {
    // Before any thread starts, so that all inherit the mask and the signal thread alone
    // takes SIGTERM and SIGINT.
    signals::block().map_err(VmmError::Signals)?;
    let hv = kvm::open(&opts.kvm)?;
    kvm::platform(&hv.vm)?;
    let ranges = layout::ram_ranges(opts.memory_mib << 20);
    let regions: Vec<_> = ranges.iter().map(|&(s, l)| (GuestAddress(s), l as usize)).collect();
    let mem = GuestMemoryMmap::from_ranges(&regions).map_err(|source| VmmError::Memory {
        mib: opts.memory_mib,
        source,
    })?;
    kvm::add_memory(&hv.vm, &mem)?;

    let kernel = boot::load_kernel(&mem, &opts.kernel)?;
    let initrd = match &opts.initrd {
        Some(path) => Some(boot::load_initrd(&mem, &ranges, kernel.end, path)?),
        None => None,
    };
    let line = boot::cmdline(&opts.cmdline)?;
    let cmdline_len = line.as_cstring().map_or(0, |c| c.as_bytes().len());
    let params = boot::zero_page(kernel.header, cmdline_len, initrd, &layout::e820(&ranges));
    let devices = opts.disks.len() + usize::from(opts.net.is_some());
    let windows: Vec<VirtioWindow> = (0..devices)
        .map(|i| {
            let (base, irq) = layout::virtio_window(i);
            VirtioWindow { base, irq }
        })
        .collect();
    boot::write_boot_structures(&mem, &line, &params, opts.vcpus, &windows)?;

    let stop = Stop::default();
    let interrupt = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::EventFd)?;
    hv.vm
        .register_irqfd(&interrupt, COM1_IRQ)
        .map_err(|source| kvm::KvmError {
            what: "KVM_IRQFD",
            source,
        })?;
    let console = Arc::new(Mutex::new(SerialPort::new(interrupt, serial::stdout())));
    serial::feed(console.clone(), std::io::stdin());
    let mut pio = Bus::default();
    pio.insert(COM1_PORT, COM1_PORTS, console)?;
    let keyboard = I8042::new(stop.clone()).with_interrupt(irqfd(&hv.vm, KBD_IRQ)?);
    let keyboard = Arc::new(Mutex::new(keyboard));
    pio.insert(I8042_PORT, I8042_PORTS, keyboard.clone())?;
    signals::spawn(move |signal| {
        let name = signals::name(signal);
        if keyboard.lock().unwrap_or_else(|e| e.into_inner()).ctrl_alt_del() {
            eprintln!("ramkey-vmm: {name}: asked the guest to shut down (ctrl-alt-del)");
        } else {
            eprintln!("ramkey-vmm: {name}: the guest's keyboard buffer is full: ctrl-alt-del not typed");
        }
    })
    .map_err(VmmError::Signals)?;
    pio.insert(CMOS_PORT, CMOS_PORTS, Arc::new(Mutex::new(Cmos::default())))?;
    pio.insert(SLEEP_PORT, SLEEP_PORTS, Arc::new(Mutex::new(Power::new(stop.clone()))))?;
    let mut mmio = Bus::default();
    let mut windows = windows.iter();
    for (i, (disk, window)) in opts.disks.iter().zip(windows.by_ref()).enumerate() {
        let block = Block::open(&disk.path, disk.read_only, &format!("ramkey-disk{i}"))?;
        let transport = MmioTransport::new(Box::new(block), mem.clone(), irqfd(&hv.vm, window.irq)?);
        mmio.insert(window.base, layout::VIRTIO_MMIO_SIZE, Arc::new(Mutex::new(transport)))?;
    }
    if let (Some(nic), Some(window)) = (&opts.net, windows.next()) {
        let net = Net::new(devices::tap::open(&nic.tap)?.0, nic.mac).map_err(VmmError::EventFd)?;
        let (interrupt, rx) = (
            irqfd(&hv.vm, window.irq)?,
            net.rx_handle().map_err(VmmError::NetThread)?,
        );
        let transport = Arc::new(Mutex::new(MmioTransport::new(Box::new(net), mem.clone(), interrupt)));
        devices::net::spawn_rx(rx, transport.clone()).map_err(VmmError::NetThread)?;
        mmio.insert(window.base, layout::VIRTIO_MMIO_SIZE, transport)?;
    }
    let buses = vcpu::Buses {
        pio: Arc::new(pio),
        mmio: Arc::new(mmio),
    };

    let supported = hv
        .kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| kvm::KvmError {
            what: "KVM_GET_SUPPORTED_CPUID",
            source,
        })?;
    // The vCPUs wait at the gate until the seccomp filter is on every thread.
    let gate = Arc::new(std::sync::Barrier::new(usize::from(opts.vcpus) + 1));
    for id in 0..opts.vcpus {
        let fd = hv.vm.create_vcpu(u64::from(id)).map_err(|source| kvm::KvmError {
            what: "KVM_CREATE_VCPU",
            source,
        })?;
        cpu::configure(&fd, id, opts.vcpus, &supported, kernel.entry)?;
        let (buses, stop, gate) = (buses.clone(), stop.clone(), gate.clone());
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                gate.wait();
                vcpu::run(fd, id, &buses, &stop)
            })
            .map_err(|source| VmmError::Thread { id, source })?;
    }
    seccomp::install()?;
    gate.wait();
    // The guest's memory and the VM stay alive until the process exits.
    let outcome = stop.wait();
    let host: Vec<(u64, u64)> = mem
        .iter()
        .filter_map(|r| Some((r.get_host_address(MemoryRegionAddress(0)).ok()? as u64, r.len())))
        .collect();
    let memory = memory_use::now(&host);
    std::mem::forget((mem, hv));
    Ok(Ended { outcome, memory })
}

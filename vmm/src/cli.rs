//! The command line of `ramkey-vmm`: what to boot (kernel, initramfs, command line) and the
//! machine's size (vCPUs, memory), validated into [`Options`].

use std::path::PathBuf;

use crate::devices::tap::Backend;
use crate::layout::MAX_VIRTIO_DEVICES;
use crate::mptable::MAX_VCPUS;

/// A `--disk PATH[,ro]`: a file the guest sees as a virtio-blk disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A `--net TAP[,mac=MAC]` or `--net /dev/tapN,mac=MAC`: a tap interface, or a tap
/// character device (a macvtap), the guest sees as a virtio-net NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub tap: Backend,
    /// Given, or for a tap by name derived from the name
    /// ([`crate::devices::net::default_mac`]). A macvtap needs its own MAC given: in bridge
    /// mode it drops frames from any other source address.
    pub mac: [u8; 6],
}

/// What the VMM boots, and on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// An uncompressed ELF `vmlinux` or a `bzImage`.
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Appended to the machine's own parameters ([`crate::boot::BASE_CMDLINE`]).
    pub cmdline: String,
    pub vcpus: u8,
    pub memory_mib: u64,
    /// The KVM device (`/dev/kvm`).
    pub kvm: PathBuf,
    /// The virtio-blk disks, in order (the guest's `vda`, `vdb`, ...).
    pub disks: Vec<Disk>,
    /// The virtio-net NIC, after the disks.
    pub net: Option<Nic>,
}

/// The usage text, printed by `--help` and after a usage error.
pub const USAGE: &str = "usage: ramkey-vmm --kernel VMLINUX|BZIMAGE [--initrd FILE] [--cmdline TEXT] \
[--vcpus N] [--memory MiB] [--disk PATH[,ro]]... [--net TAP[,mac=MAC]|/dev/tapN,mac=MAC] [--kvm DEVICE]";

/// Smallest and largest guest memory accepted.
const MIN_MIB: u64 = 32;
const MAX_MIB: u64 = 64 * 1024;

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("--kernel is required")]
    NoKernel,
    #[error("--vcpus {0:?}: give a number from 1 to {MAX_VCPUS}")]
    Vcpus(String),
    #[error("--memory {0:?}: give MiB from {MIN_MIB} to {MAX_MIB}")]
    Memory(String),
    #[error("--disk {0:?}: give PATH or PATH,ro")]
    Disk(String),
    #[error("more than {MAX_VIRTIO_DEVICES} virtio devices (each --disk and --net is one)")]
    TooManyDisks,
    #[error(
        "--net {0:?}: give TAP, TAP,mac=52:54:00:12:34:56 or /dev/tapN,mac=... (a tap name is 1 to 15 bytes, a MAC unicast)"
    )]
    Net(String),
    #[error(
        "--net {0:?}: a tap device needs the MAC of its macvtap, which drops frames from any other: \
         give PATH,mac=MAC (ip link show MACVTAP shows it)"
    )]
    NetNeedsMac(String),
    #[error("--net given twice: the VMM has one NIC")]
    TwoNics,
    /// `--help`: not an error, but nothing to run.
    #[error("{USAGE}")]
    Help,
}

/// `PATH` or `PATH,ro`.
fn disk(value: String) -> Result<Disk, UsageError> {
    let (path, read_only) = match value.strip_suffix(",ro") {
        Some(path) => (path, true),
        None => (value.as_str(), false),
    };
    if path.is_empty() || path.contains(',') {
        return Err(UsageError::Disk(value));
    }
    Ok(Disk {
        path: PathBuf::from(path),
        read_only,
    })
}

/// `TAP` or `TAP,mac=aa:bb:cc:dd:ee:ff` (a unicast address), or `/PATH,mac=...` (a tap
/// character device, which needs its MAC).
fn nic(value: String) -> Result<Nic, UsageError> {
    let (tap, mac) = match value.split_once(',') {
        Some((tap, rest)) => (
            tap,
            Some(rest.strip_prefix("mac=").ok_or(UsageError::Net(value.clone()))?),
        ),
        None => (value.as_str(), None),
    };
    if tap.starts_with('/') {
        return match mac.map(parse_mac) {
            None => Err(UsageError::NetNeedsMac(value)),
            Some(Some(mac)) if !tap.contains('\0') => Ok(Nic {
                tap: Backend::Device(tap.into()),
                mac,
            }),
            Some(_) => Err(UsageError::Net(value)),
        };
    }
    let ok_name = !tap.is_empty() && tap.len() < 16 && !tap.contains(['/', ' ', '\0']);
    let mac = match mac {
        None => Some(crate::devices::net::default_mac(tap)),
        Some(text) => parse_mac(text),
    };
    match mac {
        Some(mac) if ok_name => Ok(Nic {
            tap: Backend::Tap(tap.into()),
            mac,
        }),
        _ => Err(UsageError::Net(value)),
    }
}

/// `aa:bb:cc:dd:ee:ff`, a unicast address.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .filter_map(|b| (b.len() == 2).then(|| u8::from_str_radix(b, 16).ok()).flatten())
        .collect();
    <[u8; 6]>::try_from(bytes)
        .ok()
        .filter(|m| m[0] & 1 == 0 && text.len() == 17)
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, UsageError> {
    let mut kernel = None;
    let mut opts = Options {
        kernel: PathBuf::new(),
        initrd: None,
        cmdline: String::new(),
        vcpus: 1,
        memory_mib: 256,
        kvm: PathBuf::from("/dev/kvm"),
        disks: Vec::new(),
        net: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "--help" || name == "-h" {
            return Err(UsageError::Help);
        }
        if !matches!(
            name.as_str(),
            "--kernel" | "--initrd" | "--cmdline" | "--vcpus" | "--memory" | "--kvm" | "--disk" | "--net"
        ) {
            return Err(UsageError::Unknown(arg));
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| UsageError::MissingValue(name.clone()))?,
        };
        match name.as_str() {
            "--kernel" => kernel = Some(PathBuf::from(value)),
            "--initrd" => opts.initrd = Some(PathBuf::from(value)),
            "--cmdline" => opts.cmdline = value,
            "--kvm" => opts.kvm = PathBuf::from(value),
            "--disk" => {
                if opts.disks.len() + usize::from(opts.net.is_some()) == MAX_VIRTIO_DEVICES {
                    return Err(UsageError::TooManyDisks);
                }
                opts.disks.push(disk(value)?);
            }
            "--net" => {
                if opts.net.is_some() {
                    return Err(UsageError::TwoNics);
                }
                if opts.disks.len() == MAX_VIRTIO_DEVICES {
                    return Err(UsageError::TooManyDisks);
                }
                opts.net = Some(nic(value)?);
            }
            "--vcpus" => {
                opts.vcpus = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_VCPUS).contains(n))
                    .ok_or(UsageError::Vcpus(value))?;
            }
            _ => {
                opts.memory_mib = value
                    .parse()
                    .ok()
                    .filter(|n| (MIN_MIB..=MAX_MIB).contains(n))
                    .ok_or(UsageError::Memory(value))?;
            }
        }
    }
    opts.kernel = kernel.ok_or(UsageError::NoKernel)?;
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Options, UsageError> {
        parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn a_full_command_line_parses() {
        let opts = args("--kernel /k --initrd=/i --vcpus 2 --memory=512 --cmdline quiet").unwrap();
        assert_eq!(opts.kernel, PathBuf::from("/k"));
        assert_eq!(opts.initrd, Some(PathBuf::from("/i")));
        assert_eq!((opts.vcpus, opts.memory_mib), (2, 512));
        assert_eq!(opts.cmdline, "quiet");
        assert_eq!(opts.kvm, PathBuf::from("/dev/kvm"));
        let spaced = parse(["--kernel", "/k", "--cmdline", "a=1 b"].map(String::from)).unwrap();
        assert_eq!(spaced.cmdline, "a=1 b");
        let disks = args("--kernel /k --disk /ro.img,ro --disk=/rw.img").unwrap().disks;
        assert_eq!(
            disks,
            vec![
                Disk {
                    path: "/ro.img".into(),
                    read_only: true
                },
                Disk {
                    path: "/rw.img".into(),
                    read_only: false
                }
            ]
        );
    }

    #[test]
    fn a_nic_takes_a_tap_and_a_mac_or_derives_one() {
        let nic = args("--kernel /k --net tap0").unwrap().net.unwrap();
        assert_eq!(nic.tap, Backend::Tap("tap0".into()));
        assert_eq!(nic.mac, crate::devices::net::default_mac("tap0"));
        assert_eq!(nic.mac[..3], [0x52, 0x54, 0x00]);
        assert_ne!(nic.mac, crate::devices::net::default_mac("tap1"));
        let given = args("--kernel /k --net=tap1,mac=52:54:00:AB:cd:0e")
            .unwrap()
            .net
            .unwrap();
        assert_eq!(given.mac, [0x52, 0x54, 0, 0xab, 0xcd, 0x0e]);
        for bad in [
            "tap0,mac=53:54:00:00:00:01", // multicast
            "tap0,mac=52:54:00:00:00",
            "tap0,mac=52:54:00:00:00:001",
            "tap0,mac=52-54-00-00-00-01",
            "tap0,mtu=9000",
            ",mac=52:54:00:00:00:01",
            "a-name-far-too-long",
            "a/b",
        ] {
            assert_eq!(
                args(&format!("--kernel /k --net {bad}")),
                Err(UsageError::Net(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(args("--kernel /k --net a --net b"), Err(UsageError::TwoNics));
    }

    #[test]
    fn a_tap_device_takes_a_path_and_needs_its_mac() {
        let nic = args("--kernel /k --net /dev/tap7,mac=52:54:00:12:34:56")
            .unwrap()
            .net
            .unwrap();
        assert_eq!(nic.tap, Backend::Device("/dev/tap7".into()));
        assert_eq!(nic.mac, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let missing = args("--kernel /k --net /dev/tap7").unwrap_err();
        assert_eq!(missing, UsageError::NetNeedsMac("/dev/tap7".into()));
        assert!(missing.to_string().contains("give PATH,mac=MAC"), "{missing}");
        for bad in [
            "/dev/tap7,mac=01:00:5e:00:00:01",
            "/dev/tap7,mtu=1500",
            "/dev/tap7,mac=52",
        ] {
            assert_eq!(
                args(&format!("--kernel /k --net {bad}")),
                Err(UsageError::Net(bad.into())),
                "{bad}"
            );
        }
        let eight = "--kernel /k --net t".to_string() + &" --disk /d".repeat(8);
        assert_eq!(args(&eight), Err(UsageError::TooManyDisks));
    }

    #[test]
    fn defaults_are_one_vcpu_and_256_mib() {
        let opts = args("--kernel /k").unwrap();
        assert_eq!((opts.vcpus, opts.memory_mib, opts.initrd), (1, 256, None));
        assert_eq!(opts.net, None);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(args("--initrd /i"), Err(UsageError::NoKernel));
        assert_eq!(args("--kernel"), Err(UsageError::MissingValue("--kernel".into())));
        assert_eq!(args("--kernel /k --vcpus 0"), Err(UsageError::Vcpus("0".into())));
        assert_eq!(args("--kernel /k --vcpus 33"), Err(UsageError::Vcpus("33".into())));
        assert_eq!(args("--kernel /k --memory 8"), Err(UsageError::Memory("8".into())));
        assert_eq!(
            args("--kernel /k --memory lots"),
            Err(UsageError::Memory("lots".into()))
        );
        assert_eq!(
            args("--kernel /k --disk"),
            Err(UsageError::MissingValue("--disk".into()))
        );
        assert_eq!(args("--kernel /k --disk /d,rw"), Err(UsageError::Disk("/d,rw".into())));
        assert_eq!(args("--kernel /k --disk ,ro"), Err(UsageError::Disk(",ro".into())));
        let nine = "--kernel /k".to_string() + &" --disk /d".repeat(9);
        assert_eq!(args(&nine), Err(UsageError::TooManyDisks));
        assert_eq!(
            args("--kernel /k --disks /d"),
            Err(UsageError::Unknown("--disks".into()))
        );
        assert_eq!(args("/k"), Err(UsageError::Unknown("/k".into())));
        assert_eq!(args("--help"), Err(UsageError::Help));
    }
}

//! The device controller of a zone: a cgroup v2 eBPF program that allows a short list of devices.
//!
//! cgroup v2 has no `devices.allow` file: device access is decided by a program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the cgroup (`BPF_CGROUP_DEVICE`). The kernel runs
//! it on every `open(2)` of a device node and every `mknod(2)` by a process of the cgroup (or
//! of a cgroup below it), with a `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }`, and refuses the access with `EPERM` when it returns 0.
//!
//! [`restrict`] hand-assembles that program from a list of [`Allowed`] character devices
//! (what runc does with its `devicefilter`), loads it with `bpf(BPF_PROG_LOAD)` and attaches it
//! with `bpf(BPF_PROG_ATTACH)`. The program:
//!
//! ```text
//!     r2 = access_type & 0xffff      device type
//!     r3 = access_type >> 16         access
//!     r4 = major; r5 = minor
//!     if r3 & MKNOD goto deny        no device node is ever created
//!     if r2 != CHAR goto deny        block devices never
//!     for each rule: if r4 == major [&& r5 == minor] return 1
//! deny:
//!     return 0
//! ```
//!
//! The comparisons use 32-bit jumps (`BPF_JMP32`, Linux 5.1), so every `u32` major and minor
//! compares exactly. On kernels before 5.11 the program is charged to `RLIMIT_MEMLOCK`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::bpf::{self, Insn, R0, R1, R2, R3, R4, R5, and, exit, jne, ldx_w, mov, rsh};
use super::{SysError, call};

/// A device a zone may use: character devices only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// The device's major number.
    pub major: u32,
    /// The device's minor number; `None` allows every minor of `major`.
    pub minor: Option<u32>,
}

/// The standard set: null 1:3, zero 1:5, full 1:7, random 1:8, urandom 1:9, tty 5:0,
/// ptmx 5:2, and the pseudo-terminals 136:*.
pub const STANDARD: &[Allowed] = &[
    Allowed {
        major: 1,
        minor: Some(3),
    },
    Allowed {
        major: 1,
        minor: Some(5),
    },
    Allowed {
        major: 1,
        minor: Some(7),
    },
    Allowed {
        major: 1,
        minor: Some(8),
    },
    Allowed {
        major: 1,
        minor: Some(9),
    },
    Allowed {
        major: 5,
        minor: Some(0),
    },
    Allowed {
        major: 5,
        minor: Some(2),
    },
    Allowed {
        major: 136,
        minor: None,
    },
];

/// Loads the program allowing `allowed` (read and write access on those character devices;
/// mknod of nothing, block devices never) and attaches it to the cgroup directory `cgroup`
/// (no override flags: processes inside cannot replace it). The program fd is closed after
/// attaching (the cgroup keeps the program).
///
/// Calling it again on the same cgroup replaces the program attached before.
pub fn restrict(cgroup: &Path, allowed: &[Allowed]) -> Result<(), SysError> {
    let insns = program(allowed).map_err(call("devices: program too long"))?;
    let dir = open_cgroup(cgroup)?;
    let prog = load(&insns)?;
    attach_command(BPF_PROG_ATTACH, &dir, Some(&prog)).map_err(call("bpf(BPF_PROG_ATTACH)"))
    // `prog` is closed here; the attachment holds its own reference to the program.
}

/// Detaches the device program [`restrict`] attached to `cgroup`, if any: a zone's setup
/// opens the loop device it reads its image through before it restricts itself again.
pub fn release(cgroup: &Path) -> Result<(), SysError> {
    // Without a program, the kernel detaches the one attached without flags.
    match attach_command(BPF_PROG_DETACH, &open_cgroup(cgroup)?, None) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(call("bpf(BPF_PROG_DETACH)")(e)),
    }
}

fn open_cgroup(cgroup: &Path) -> Result<OwnedFd, SysError> {
    nix::fcntl::open(
        cgroup,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(call("open(cgroup)"))
}

// `bpf(2)` commands, program type and attach type of `<linux/bpf.h>`.
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

// `access_type` of `struct bpf_cgroup_dev_ctx` is `(access << 16) | type`: the program looks
// at the type `BPF_DEVCG_DEV_CHAR` (block is 1) and the access `BPF_DEVCG_ACC_MKNOD` (read is
// 2, write 4).
const BPF_DEVCG_DEV_CHAR: u32 = 2;
const BPF_DEVCG_ACC_MKNOD: u32 = 1;

// Byte offsets of the fields of `struct bpf_cgroup_dev_ctx`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// The program that allows read and write access on the character devices `allowed` and
/// denies everything else; `E2BIG` if the list is too long for a 16-bit jump over it.
fn program(allowed: &[Allowed]) -> Result<Vec<Insn>, Errno> {
    let mut rules = Vec::with_capacity(allowed.len() * 4);
    for rule in allowed {
        match rule.minor {
            Some(minor) => {
                rules.push(jne(R4, rule.major, 3));
                rules.push(jne(R5, minor, 2));
            }
            None => rules.push(jne(R4, rule.major, 2)),
        }
        rules.push(mov(R0, 1));
        rules.push(exit());
    }
    // The two checks below jump over the rules to the final `return 0`.
    let over_rules = i16::try_from(rules.len() + 1).map_err(|_| Errno::E2BIG)?;
    let mut insns = vec![
        ldx_w(R2, R1, CTX_ACCESS_TYPE),
        and(R2, 0xffff),
        ldx_w(R3, R1, CTX_ACCESS_TYPE),
        rsh(R3, 16),
        ldx_w(R4, R1, CTX_MAJOR),
        ldx_w(R5, R1, CTX_MINOR),
        and(R3, BPF_DEVCG_ACC_MKNOD),
        jne(R3, 0, over_rules),
        jne(R2, BPF_DEVCG_DEV_CHAR, over_rules - 1),
    ];
    insns.extend(rules);
    insns.push(mov(R0, 0));
    insns.push(exit());
    Ok(insns)
}

/// The `BPF_PROG_ATTACH` member of `union bpf_attr` (as of Linux 6.6; older kernels check
/// that the fields they do not know are zero, and they are).
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    relative_fd: u32,
    expected_revision: u64,
}

const _: () = assert!(size_of::<ProgAttachAttr>() == 32);

/// The device program: what the kernel checks it against on load.
const KIND: bpf::Kind = bpf::Kind {
    prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
    attach_type: BPF_CGROUP_DEVICE,
    name: "ramkey_devices",
};

fn load(insns: &[Insn]) -> Result<OwnedFd, SysError> {
    bpf::load(KIND, insns)
}

/// `bpf(command)`, `BPF_PROG_ATTACH` or `BPF_PROG_DETACH`, of the device program `prog`
/// on the cgroup directory `cgroup`, without flags: no `BPF_F_ALLOW_OVERRIDE`, so no cgroup
/// below can attach its own.
fn attach_command(command: libc::c_int, cgroup: &OwnedFd, prog: Option<&OwnedFd>) -> Result<(), Errno> {
    // Open file descriptors are never negative.
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.map_or(0, |p| p.as_raw_fd() as u32),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
        relative_fd: 0,
        expected_revision: 0,
    };
    let size = size_of::<ProgAttachAttr>() as libc::c_uint;
    // SAFETY: `attr` is a live, fully initialised `#[repr(C)]` struct laid out like the
    // `BPF_PROG_ATTACH`/`BPF_PROG_DETACH` member of `union bpf_attr` and `size` is exactly
    // its size; it holds no pointer, only file descriptors borrowed for the whole call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, command, &raw const attr, size) };
    Errno::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::bpf::{AND_K, EXIT, JNE32_K, LDX_W, MOV_K, RSH_K};
    use std::ffi::CStr;

    const BPF_DEVCG_DEV_BLOCK: u32 = 1;
    const BPF_DEVCG_ACC_READ: u32 = 2;
    const BPF_DEVCG_ACC_WRITE: u32 = 4;

    /// Runs `insns` on one `struct bpf_cgroup_dev_ctx`, for the instructions [`program`]
    /// emits only, with the verifier's rules that matter here: r1 is the (read-only)
    /// context, other registers are unset until written, loads are aligned `u32` fields,
    /// jumps go forward and stay inside the program, and r0 is 0 or 1 on exit.
    fn run(insns: &[Insn], ctx: [u32; 3]) -> u64 {
        let mut regs: [Option<u64>; 11] = [None; 11];
        let mut pc = 0usize;
        loop {
            let insn = *insns.get(pc).unwrap_or_else(|| panic!("pc {pc} ran off the program"));
            pc += 1;
            let (dst, imm) = (usize::from(insn.dst()), insn.imm);
            assert!(dst <= 10, "bad register r{dst}");
            let get = |regs: &[Option<u64>; 11], r: usize| regs[r].unwrap_or_else(|| panic!("r{r} read unset"));
            if insn.code != EXIT && insn.code != JNE32_K {
                assert!(dst != 1 && dst != 10, "write to r{dst} at {}", pc - 1);
            }
            match insn.code {
                LDX_W => {
                    assert_eq!(insn.src(), R1, "load from something else than the context");
                    let off = usize::try_from(insn.off).expect("negative context offset");
                    assert!(off % 4 == 0 && off < 12, "bad context offset {off}");
                    regs[dst] = Some(u64::from(ctx[off / 4]));
                }
                AND_K => regs[dst] = Some(get(&regs, dst) & i64::from(imm) as u64),
                RSH_K => regs[dst] = Some(get(&regs, dst) >> imm),
                MOV_K => regs[dst] = Some(i64::from(imm) as u64),
                JNE32_K => {
                    let off = usize::try_from(insn.off).expect("backward jump");
                    if get(&regs, dst) as u32 != imm as u32 {
                        pc += off;
                    }
                    assert!(pc < insns.len(), "jump out of the program");
                }
                EXIT => {
                    let r0 = get(&regs, 0);
                    assert!(r0 <= 1, "returned {r0}");
                    return r0;
                }
                other => panic!("unexpected opcode {other:#04x}"),
            }
        }
    }

    fn allows(insns: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> bool {
        run(insns, [(access << 16) | kind, major, minor]) == 1
    }

    const CHAR: u32 = BPF_DEVCG_DEV_CHAR;
    const BLOCK: u32 = BPF_DEVCG_DEV_BLOCK;
    const MKNOD: u32 = BPF_DEVCG_ACC_MKNOD;
    const READ: u32 = BPF_DEVCG_ACC_READ;
    const WRITE: u32 = BPF_DEVCG_ACC_WRITE;
    const ACCESSES: [u32; 3] = [READ, WRITE, READ | WRITE];
    const WITH_MKNOD: [u32; 4] = [MKNOD, MKNOD | READ, MKNOD | WRITE, MKNOD | READ | WRITE];

    fn standard() -> Vec<Insn> {
        program(STANDARD).unwrap()
    }

    #[test]
    fn null_is_readable_and_writable() {
        let prog = standard();
        for access in ACCESSES {
            assert!(allows(&prog, CHAR, access, 1, 3), "access {access}");
        }
    }

    #[test]
    fn every_standard_device_is_allowed() {
        let prog = standard();
        for rule in STANDARD {
            let minors = rule.minor.map_or(vec![0, 1, 7, 255, 1 << 19], |minor| vec![minor]);
            for minor in minors {
                for access in ACCESSES {
                    assert!(allows(&prog, CHAR, access, rule.major, minor), "{}:{minor}", rule.major);
                }
            }
        }
    }

    #[test]
    fn mknod_is_denied_even_for_allowed_devices() {
        let prog = standard();
        for access in WITH_MKNOD {
            assert!(!allows(&prog, CHAR, access, 1, 3), "1:3 access {access}");
            assert!(!allows(&prog, CHAR, access, 136, 7), "136:7 access {access}");
        }
    }

    #[test]
    fn pseudo_terminals_are_allowed() {
        let prog = standard();
        assert!(allows(&prog, CHAR, READ | WRITE, 136, 7));
        assert!(allows(&prog, CHAR, READ, 136, 0));
    }

    #[test]
    fn other_char_devices_are_denied() {
        let prog = standard();
        // ttyS0, loop-control, /dev/mem, /dev/kmsg, /dev/port, /dev/console, /dev/kvm.
        for (major, minor) in [(4, 64), (10, 237), (1, 1), (1, 11), (1, 4), (5, 1), (10, 232)] {
            for access in ACCESSES.into_iter().chain(WITH_MKNOD) {
                assert!(
                    !allows(&prog, CHAR, access, major, minor),
                    "{major}:{minor} access {access}"
                );
            }
        }
    }

    #[test]
    fn block_devices_are_denied() {
        let prog = standard();
        // A virtio disk, a SCSI partition, and block devices that share an allowed number.
        for (major, minor) in [(254, 0), (8, 1), (1, 3), (136, 7)] {
            for access in ACCESSES.into_iter().chain(WITH_MKNOD) {
                assert!(
                    !allows(&prog, BLOCK, access, major, minor),
                    "{major}:{minor} access {access}"
                );
            }
        }
    }

    #[test]
    fn an_empty_list_denies_everything() {
        let prog = program(&[]).unwrap();
        assert_eq!(prog.len(), 11);
        assert!(!allows(&prog, CHAR, READ, 1, 3));
        assert!(!allows(&prog, BLOCK, READ, 8, 0));
    }

    #[test]
    fn large_numbers_compare_exactly() {
        let prog = program(&[Allowed {
            major: u32::MAX,
            minor: Some(0x8000_0000),
        }])
        .unwrap();
        assert!(allows(&prog, CHAR, READ, u32::MAX, 0x8000_0000));
        assert!(!allows(&prog, CHAR, READ, u32::MAX, 0));
        assert!(!allows(&prog, CHAR, READ, 0x7fff_ffff, 0x8000_0000));
    }

    #[test]
    fn standard_program_shape() {
        let prog = standard();
        // 9 header instructions, 4 per rule with a minor, 3 per major-only rule, 2 to deny.
        assert_eq!(prog.len(), 9 + 7 * 4 + 3 + 2);
        assert_eq!(prog[prog.len() - 2..], [mov(R0, 0), exit()]);
        assert!(prog.len() <= 4096, "over BPF_MAXINSNS");
    }

    #[test]
    fn too_many_rules_are_refused() {
        let allowed = vec![
            Allowed {
                major: 1,
                minor: Some(3)
            };
            10_000
        ];
        assert_eq!(program(&allowed), Err(Errno::E2BIG));
    }

    #[test]
    fn a_missing_cgroup_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        match restrict(&dir.path().join("absent"), STANDARD) {
            Err(SysError::Call { op, source }) => assert_eq!((op, source), ("open(cgroup)", Errno::ENOENT)),
            Ok(()) => panic!("restricted a missing cgroup"),
        }
    }

    /// The cgroup v2 directory this process is in, under the first cgroup2 mount.
    fn own_cgroup() -> Option<std::path::PathBuf> {
        let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            std::path::PathBuf::from("/sys/fs/cgroup")
        } else {
            // A hybrid host mounts cgroup v2 elsewhere, e.g. `/sys/fs/cgroup/unified`.
            let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
            let line = mounts.lines().find(|l| l.split(' ').nth(2) == Some("cgroup2"))?;
            std::path::PathBuf::from(line.split(' ').nth(1)?)
        };
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        Some(root.join(path.trim_start_matches('/')))
    }

    /// Removes the test cgroup, once the probe child in it has been reaped.
    struct RemoveOnDrop(std::path::PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ignored = std::fs::remove_dir(&self.0);
        }
    }

    const PROBES: usize = 11;

    /// Attaches the standard program to a fresh cgroup and checks, from a child moved into
    /// it, what the kernel allows. Needs root and a writable cgroup v2 hierarchy (fails
    /// without them: `cargo xtask test` runs as root).
    #[test]
    fn restrict_is_enforced_by_the_kernel() {
        use nix::sys::stat::{SFlag, makedev, mknod};
        use std::io::Read;

        // SAFETY: `geteuid` takes nothing, touches no memory of ours and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test needs root, as `cargo xtask test` runs it");
        }
        let Some(parent) = own_cgroup() else {
            panic!("no cgroup v2 hierarchy in /proc/self/mounts");
        };
        let cgroup = parent.join(format!("ramkey-devices-test-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&cgroup) {
            panic!("cannot create {}: {e}", cgroup.display());
        }
        let _remove = RemoveOnDrop(cgroup.clone());

        // Device nodes of our own, so that no probe depends on the host's /dev.
        let nodes = tempfile::tempdir().unwrap();
        let node = |name: &str, kind: SFlag, major: u64, minor: u64| {
            let path = nodes.path().join(name);
            mknod(&path, kind, Mode::from_bits_truncate(0o600), makedev(major, minor)).unwrap();
            std::ffi::CString::new(path.into_os_string().into_encoded_bytes()).unwrap()
        };
        let null = node("null", SFlag::S_IFCHR, 1, 3);
        let zero = node("zero", SFlag::S_IFCHR, 1, 5);
        let pts = node("pts7", SFlag::S_IFCHR, 136, 7);
        let serial = node("ttyS0", SFlag::S_IFCHR, 4, 64);
        let loop_control = node("loop-control", SFlag::S_IFCHR, 10, 237);
        let vda = node("vda", SFlag::S_IFBLK, 254, 0);
        let sda1 = node("sda1", SFlag::S_IFBLK, 8, 1);
        // A block device with the number of an allowed char device (a RAM disk, if any).
        let ram3 = node("ram3", SFlag::S_IFBLK, 1, 3);
        if let Err(e) = nix::fcntl::open(null.as_c_str(), OFlag::O_RDWR, Mode::empty()) {
            panic!("cannot open a device node in {}: {e}", nodes.path().display());
        }

        restrict(&cgroup, STANDARD).expect("restrict");
        // The verifier also takes the shortest program (its checks jump by 0 to the deny).
        load(&program(&[]).unwrap()).expect("load the empty-list program");

        let new_char =
            std::ffi::CString::new(nodes.path().join("new-null").into_os_string().into_encoded_bytes()).unwrap();
        let new_block =
            std::ffi::CString::new(nodes.path().join("new-vda").into_os_string().into_encoded_bytes()).unwrap();
        let (nonblock, rw, ro, wo) = (
            libc::O_NONBLOCK | libc::O_NOCTTY,
            libc::O_RDWR,
            libc::O_RDONLY,
            libc::O_WRONLY,
        );
        // (path, open flags; or None: mknod of `path` with mode and dev)
        let probes: [(&CStr, Option<libc::c_int>, libc::mode_t, libc::dev_t); PROBES] = [
            (&null, Some(rw), 0, 0),
            (&zero, Some(ro), 0, 0),
            (&pts, Some(rw | nonblock), 0, 0),
            (&serial, Some(rw | nonblock), 0, 0),
            (&loop_control, Some(rw), 0, 0),
            (&vda, Some(ro | nonblock), 0, 0),
            (&vda, Some(wo | nonblock), 0, 0),
            (&sda1, Some(ro | nonblock), 0, 0),
            (&ram3, Some(ro | nonblock), 0, 0),
            (&new_char, None, libc::S_IFCHR | 0o600, makedev(1, 3)),
            (&new_block, None, libc::S_IFBLK | 0o600, makedev(254, 0)),
        ];
        let procs = nix::fcntl::open(
            &cgroup.join("cgroup.procs"),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();

        // SAFETY: the test binary is multithreaded, so the child may only make
        // async-signal-safe calls: it does raw `write`, `open`, `close`, `mknod` and `_exit`
        // syscalls on strings, fds and a stack array prepared before the fork, and neither
        // allocates, locks, panics nor returns into the test harness.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Parent { child } => child,
            nix::unistd::ForkResult::Child => {
                // SAFETY: async-signal-safe syscalls on valid fds and NUL-terminated strings
                // that the parent built and that stay alive in this copy of its memory.
                unsafe {
                    // "0" moves the writing process into the cgroup.
                    if libc::write(procs.as_raw_fd(), c"0".as_ptr().cast(), 1) != 1 {
                        libc::_exit(2);
                    }
                    let mut errnos = [0i32; PROBES];
                    for (errno, (path, flags, mode, dev)) in errnos.iter_mut().zip(probes) {
                        let ok = match flags {
                            Some(flags) => {
                                let fd = libc::open(path.as_ptr(), flags | libc::O_CLOEXEC);
                                fd >= 0 && libc::close(fd) == 0
                            }
                            None => libc::mknod(path.as_ptr(), mode, dev) == 0,
                        };
                        *errno = if ok { 0 } else { Errno::last_raw() };
                    }
                    let size = size_of_val(&errnos);
                    let written = libc::write(write_end.as_raw_fd(), errnos.as_ptr().cast(), size);
                    libc::_exit(if written == size as isize { 0 } else { 3 });
                }
            }
        };
        drop(write_end);
        let mut bytes = Vec::new();
        std::fs::File::from(read_end).read_to_end(&mut bytes).unwrap();
        let status = nix::sys::wait::waitpid(child, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
        let errnos: Vec<Errno> = bytes
            .chunks_exact(4)
            .map(|b| Errno::from_raw(i32::from_ne_bytes(b.try_into().unwrap())))
            .collect();
        let names = [
            "null",
            "zero",
            "pts7",
            "ttyS0",
            "loop-control",
            "vda r",
            "vda w",
            "sda1",
            "ram3",
            "mknod c",
            "mknod b",
        ];
        let got: Vec<(&str, Errno)> = names.into_iter().zip(errnos).collect();
        // The program lets 136:7 through; a pts node outside devpts then fails in its driver
        // (EIO), so anything but EPERM is right.
        let pts = got[2].1;
        assert_ne!(pts, Errno::EPERM, "136:7 refused");
        // Allowed devices open (errno 0 reads as `UnknownErrno`); everything else is refused
        // by the program, with EPERM.
        let expected: Vec<(&str, Errno)> = vec![
            ("null", Errno::UnknownErrno),
            ("zero", Errno::UnknownErrno),
            ("pts7", pts),
            ("ttyS0", Errno::EPERM),
            ("loop-control", Errno::EPERM),
            ("vda r", Errno::EPERM),
            ("vda w", Errno::EPERM),
            ("sda1", Errno::EPERM),
            ("ram3", Errno::EPERM),
            ("mknod c", Errno::EPERM),
            ("mknod b", Errno::EPERM),
        ];
        assert_eq!(got, expected);
    }
}

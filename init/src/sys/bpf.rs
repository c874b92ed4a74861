//! eBPF programs assembled by hand and loaded with `bpf(BPF_PROG_LOAD)`: the instruction
//! encoding of `<linux/bpf.h>`, the few instructions PID 1's programs use (the zones' device
//! controller, [`super::devices`], and the source check the network code puts on the NICs
//! zones hang off), and the load itself.
//!
//! No compiler, no libbpf, no BTF: the programs are a few dozen instructions that read their
//! context and the packet and compare constants, which the kernel's verifier checks on load.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::SysError;

// Instruction classes, sizes, modes, operations and sources of the eBPF instruction set.
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_H: u8 = 0x08;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JGT: u8 = 0x20;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// The opcodes PID 1's programs are made of.
pub const LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
/// `dst = *(u16 *)(src + off)`.
pub const LDX_H: u8 = BPF_LDX | BPF_MEM | BPF_H;
/// `dst += imm` (64-bit).
pub const ADD_K: u8 = BPF_ALU64 | BPF_ADD | BPF_K;
/// `dst &= imm` (64-bit).
pub const AND_K: u8 = BPF_ALU64 | BPF_AND | BPF_K;
/// `dst >>= imm` (64-bit).
pub const RSH_K: u8 = BPF_ALU64 | BPF_RSH | BPF_K;
/// `dst = imm`.
pub const MOV_K: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
/// `dst = src`.
pub const MOV_X: u8 = BPF_ALU64 | BPF_MOV | BPF_X;
/// `goto +off`.
pub const JA: u8 = BPF_JMP | BPF_JA;
/// `if (u32)dst == imm goto +off`.
pub const JEQ32_K: u8 = BPF_JMP32 | BPF_JEQ | BPF_K;
/// `if (u32)dst != imm goto +off`.
pub const JNE32_K: u8 = BPF_JMP32 | BPF_JNE | BPF_K;
/// `if dst > src goto +off` (64-bit, unsigned).
pub const JGT_X: u8 = BPF_JMP | BPF_JGT | BPF_X;
/// `return r0`.
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

/// The return value; `r1` holds the context on entry, `r10` the frame pointer.
pub const R0: u8 = 0;
/// The context on entry.
pub const R1: u8 = 1;
/// Scratch registers.
pub const R2: u8 = 2;
/// Scratch register.
pub const R3: u8 = 3;
/// Scratch register.
pub const R4: u8 = 4;
/// Scratch register.
pub const R5: u8 = 5;

/// `struct bpf_insn` of `<linux/bpf.h>`: `dst_reg:4, src_reg:4` share one byte, in bitfield
/// order (the low nibble holds `dst_reg` on little-endian machines).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// The opcode.
    pub code: u8,
    regs: u8,
    /// The jump or memory offset.
    pub off: i16,
    /// The immediate.
    pub imm: i32,
}

const _: () = assert!(size_of::<Insn>() == 8);

impl Insn {
    /// An instruction from its fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        let regs = if cfg!(target_endian = "little") {
            (src << 4) | dst
        } else {
            (dst << 4) | src
        };
        Self { code, regs, off, imm }
    }

    #[cfg(test)]
    /// The destination register.
    pub const fn dst(self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }

    #[cfg(test)]
    /// The source register.
    pub const fn src(self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }
}

/// `dst = *(u32 *)(src + off)`, zero-extended.
pub const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(LDX_W, dst, src, off, 0)
}

/// `dst = *(u16 *)(src + off)`, zero-extended.
pub const fn ldx_h(dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(LDX_H, dst, src, off, 0)
}

/// `dst += imm` (64-bit).
pub const fn add(dst: u8, imm: i32) -> Insn {
    Insn::new(ADD_K, dst, 0, 0, imm)
}

/// `dst &= imm` (64-bit; `imm` is sign-extended, so keep it below `1 << 31`).
pub const fn and(dst: u8, imm: u32) -> Insn {
    Insn::new(AND_K, dst, 0, 0, imm as i32)
}

/// `dst >>= imm` (64-bit, logical).
pub const fn rsh(dst: u8, imm: u32) -> Insn {
    Insn::new(RSH_K, dst, 0, 0, imm as i32)
}

/// `dst = imm` (sign-extended to 64 bits).
pub const fn mov(dst: u8, imm: i32) -> Insn {
    Insn::new(MOV_K, dst, 0, 0, imm)
}

/// `dst = src`.
pub const fn mov_reg(dst: u8, src: u8) -> Insn {
    Insn::new(MOV_X, dst, src, 0, 0)
}

/// `goto +off`.
pub const fn ja(off: i16) -> Insn {
    Insn::new(JA, 0, 0, off, 0)
}

/// `if (u32)dst == imm goto +off`: compared on the low 32 bits, so any `u32` works.
pub const fn jeq(dst: u8, imm: u32, off: i16) -> Insn {
    Insn::new(JEQ32_K, dst, 0, off, imm as i32)
}

/// `if (u32)dst != imm goto +off`: compared on the low 32 bits, so any `u32` works.
pub const fn jne(dst: u8, imm: u32, off: i16) -> Insn {
    Insn::new(JNE32_K, dst, 0, off, imm as i32)
}

/// `if dst > src goto +off` (64-bit, unsigned): the bounds check of packet access.
pub const fn jgt_reg(dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(JGT_X, dst, src, off, 0)
}

/// `return r0`.
pub const fn exit() -> Insn {
    Insn::new(EXIT, 0, 0, 0, 0)
}

/// What a program is for: the kernel checks it against this on load.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// `BPF_PROG_TYPE_*`.
    pub prog_type: u32,
    /// `BPF_*` attach type the program is loaded for (0 where the type needs none).
    pub attach_type: u32,
    /// The name `bpftool prog` shows: at most 15 characters from `[A-Za-z0-9_.]`.
    pub name: &'static str,
}

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `expected_attach_type`. The kernel
/// zero-fills the rest of its union, which is what every later field needs.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const _: () = assert!(size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, log_buf) == 32);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, prog_name) == 48);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type) == 68);

const BPF_PROG_LOAD: libc::c_int = 5;
const LICENSE: &CStr = c"GPL";
/// How many times a load interrupted by a signal (`EAGAIN`) is retried, as libbpf does.
const LOAD_ATTEMPTS: u32 = 5;

fn failed(source: Errno) -> SysError {
    SysError::Call {
        op: "bpf(BPF_PROG_LOAD)",
        source,
    }
}

/// `bpf(BPF_PROG_LOAD)` of `insns` as a program of `kind`; the verifier log is not
/// requested (a refused program is `EACCES` or `EINVAL`).
pub fn load(kind: Kind, insns: &[Insn]) -> Result<OwnedFd, SysError> {
    let mut prog_name = [0u8; 16];
    let name = kind.name.as_bytes();
    let len = name.len().min(15);
    prog_name[..len].copy_from_slice(&name[..len]);
    let attr = ProgLoadAttr {
        prog_type: kind.prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| failed(Errno::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: kind.attach_type,
    };
    let size = size_of::<ProgLoadAttr>() as libc::c_uint;
    let mut attempt = 1;
    loop {
        // SAFETY: `attr` is a live, fully initialised `#[repr(C)]` struct laid out like the
        // `BPF_PROG_LOAD` member of `union bpf_attr` (layout checked by the const asserts
        // above) and `size` is exactly its size, so the kernel reads no byte outside it. The
        // pointers in it, `insns` (`insn_cnt` 8-byte `struct bpf_insn`s) and the
        // NUL-terminated `LICENSE`, are borrowed or static and outlive the call; the kernel
        // only reads through them (no log buffer is passed, nothing is written back).
        let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &raw const attr, size) };
        match Errno::result(ret) {
            Ok(fd) => {
                let fd = RawFd::try_from(fd).map_err(|_| failed(Errno::EBADF))?;
                // SAFETY: on success `BPF_PROG_LOAD` returns a new file descriptor (opened
                // with O_CLOEXEC) that nothing else owns; `OwnedFd` closes it exactly once.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            Err(Errno::EAGAIN) if attempt < LOAD_ATTEMPTS => attempt += 1,
            Err(source) => return Err(failed(source)),
        }
    }
}

/// The `BPF_PROG_TEST_RUN` member of `union bpf_attr`, up to `repeat`.
#[cfg(test)]
#[repr(C)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// Runs the loaded program `prog` once on the packet `data` in the kernel
/// (`BPF_PROG_TEST_RUN`) and returns what it returned: the tests of the programs ask the
/// kernel, not a model of it.
#[cfg(test)]
pub fn test_run(prog: &OwnedFd, data: &[u8]) -> Result<u32, SysError> {
    use std::os::fd::AsRawFd;
    const BPF_PROG_TEST_RUN: libc::c_int = 10;
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        retval: 0,
        data_size_in: u32::try_from(data.len()).unwrap_or(u32::MAX),
        data_size_out: 0,
        data_in: data.as_ptr() as u64,
        data_out: 0,
        repeat: 1,
        duration: 0,
    };
    let size = size_of::<TestRunAttr>() as libc::c_uint;
    // SAFETY: `attr` is a live `#[repr(C)]` struct laid out like the `BPF_PROG_TEST_RUN`
    // member of `union bpf_attr` up to `duration`, and `size` is its size. `data_in` points
    // at `data_size_in` readable bytes borrowed for the call; no output buffer is passed
    // (`data_out` 0), and the kernel writes back only into `attr` itself.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &raw mut attr, size) };
    Errno::result(ret).map_err(super::call("bpf(BPF_PROG_TEST_RUN)"))?;
    Ok(attr.retval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_encoded_like_the_kernel() {
        // r2 = *(u32 *)(r1 + 4) is 61 12 04 00 00 00 00 00 on a little-endian machine.
        let insn = ldx_w(R2, R1, 4);
        if cfg!(target_endian = "little") {
            assert_eq!((insn.code, insn.regs, insn.off), (0x61, 0x12, 4));
        }
        assert_eq!((insn.dst(), insn.src()), (R2, R1));
        assert_eq!(jne(R5, 0xffff_ffff, 2).imm, -1);
        assert_eq!(exit().code, 0x95);
        assert_eq!(ldx_h(R5, R2, 12).code, 0x69);
        assert_eq!(jgt_reg(R4, R3, 1).code, 0x2d);
        assert_eq!(mov_reg(R2, R1).code, 0xbf);
        assert_eq!(jeq(R5, 0x0608, 1).code, 0x16);
        assert_eq!(ja(3).code, 0x05);
        assert_eq!(add(R4, 14).code, 0x07);
    }
}

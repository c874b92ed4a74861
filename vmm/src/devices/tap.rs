//! Where the NIC's frames go: a tap interface by name (opened from `/dev/net/tun`, created
//! if it does not exist) or a tap character device by path (a macvtap's `/dev/tapN`, which
//! the host made). Both end up `IFF_TAP | IFF_NO_PI`, non-blocking, and without a vnet
//! header: a macvtap starts with `IFF_VNET_HDR` set, and its `TUNSETIFF` (drivers/net/tap.c)
//! ignores the name and takes exactly `IFF_TAP | IFF_NO_PI` plus the feature bits, so setting
//! those two clears the header; `TUNGETIFF` then checks that it is gone.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What `--net` names: a tap interface, or a tap character device (macvtap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A tap interface, `tap0`: opened (and created) through `/dev/net/tun`.
    Tap(String),
    /// A tap character device, `/dev/tap7`: a macvtap (or ipvtap) the host made.
    Device(PathBuf),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Tap(name) => write!(f, "tap {name}"),
            Backend::Device(path) => write!(f, "tap device {}", path.display()),
        }
    }
}

/// A tap that cannot be opened or set up.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {what}: {source}")]
pub struct TapError {
    pub backend: Backend,
    pub what: &'static str,
    pub source: std::io::Error,
}

/// The interface's flags as the tap reports them (`TUNGETIFF`), and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    pub name: String,
    pub flags: i32,
}

/// Opens `backend` as a non-blocking `IFF_TAP | IFF_NO_PI` tap without a vnet header.
pub fn open(backend: &Backend) -> Result<(File, TapInfo), TapError> {
    let err = |what, source| TapError {
        backend: backend.clone(),
        what,
        source,
    };
    let (path, name) = match backend {
        Backend::Tap(name) if name.is_empty() || name.len() >= libc::IFNAMSIZ => {
            return Err(err("the name", ErrorKind::InvalidInput.into()));
        }
        Backend::Tap(name) => (Path::new("/dev/net/tun"), name.as_str()),
        // A macvtap ignores the name.
        Backend::Device(path) => (path.as_path(), ""),
    };
    let tap = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| err("opening it", e))?;
    // SAFETY: `ifreq` is plain old data (bytes and a union of integers); all zeros is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: `tap` is an open tun or tap device; TUNSETIFF reads (and for /dev/net/tun
    // writes) one `ifreq`, which `ifr` is and which outlives the call; the name is
    // NUL-terminated (shorter than IFNAMSIZ, the rest zeros). The result is checked.
    if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) } < 0 {
        return Err(err("TUNSETIFF", std::io::Error::last_os_error()));
    }
    let info = info(&tap).map_err(|e| err("TUNGETIFF", e))?;
    if info.flags & libc::IFF_VNET_HDR != 0 || info.flags & libc::IFF_TAP == 0 {
        let flags = format!("flags {:#x}: a vnet header or not a tap", info.flags);
        return Err(err("TUNGETIFF", std::io::Error::other(flags)));
    }
    Ok((tap, info))
}

/// `TUNGETIFF`: the interface's name and flags.
pub fn info(tap: &File) -> std::io::Result<TapInfo> {
    // SAFETY: as above, a zeroed `ifreq` is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one `ifreq` (the name, NUL-terminated within IFNAMSIZ, and
    // the flags) into `ifr`, which outlives the call. The result is checked.
    if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNGETIFF as _, &mut ifr) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let name: Vec<u8> = ifr.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    // SAFETY: TUNGETIFF set the flags member of the union (a plain integer either way).
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(TapInfo {
        name: String::from_utf8_lossy(&name).into_owned(),
        flags: i32::from(flags) & 0xffff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_taps_are_errors_that_name_them() {
        let long = open(&Backend::Tap("a-name-far-too-long".into())).unwrap_err();
        assert_eq!(long.source.kind(), ErrorKind::InvalidInput);
        let missing = open(&Backend::Device("/nonexistent/tap9".into())).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "tap device /nonexistent/tap9: opening it: No such file or directory (os error 2)"
        );
        // A character device that is not a tap: TUNSETIFF is refused.
        let null = open(&Backend::Device("/dev/null".into())).unwrap_err();
        assert_eq!(null.what, "TUNSETIFF", "{null}");
    }
}

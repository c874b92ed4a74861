//! Kernel uevents from the `NETLINK_KOBJECT_UEVENT` socket.
//!
//! A kernel message is `ACTION@DEVPATH\0KEY=VALUE\0KEY=VALUE\0...`.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::sys::{self, SysError};

/// The uevent socket failed.
#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    /// Opening or binding the socket failed.
    #[error("cannot open the uevent socket: {0}")]
    Open(#[from] SysError),
    /// Receiving failed; `ENOBUFS` means events were lost and sysfs must be rescanned.
    #[error("receiving uevents failed: {0}")]
    Recv(Errno),
}

/// One parsed kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`, ...
    pub action: String,
    /// The sysfs path below `/sys`, e.g. `/devices/pci0000:00/...`.
    pub devpath: String,
    /// The `KEY=VALUE` fields.
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    /// Parses one datagram; `None` for anything that is not a kernel uevent
    /// (e.g. libudev's `libudev\0` messages) or that is malformed.
    pub fn parse(buf: &[u8]) -> Option<Uevent> {
        let mut fields = buf.split(|&b| b == 0).filter(|f| !f.is_empty());
        let header = std::str::from_utf8(fields.next()?).ok()?;
        let (action, devpath) = header.split_once('@')?;
        if action.is_empty() || !devpath.starts_with('/') {
            return None;
        }
        let vars = fields
            .filter_map(|f| std::str::from_utf8(f).ok())
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Uevent {
            action: action.to_owned(),
            devpath: devpath.to_owned(),
            vars,
        })
    }

    /// A field's value.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// The modalias of an `add` event, if it carries one.
    pub fn added_modalias(&self) -> Option<&str> {
        (self.action == "add").then(|| self.var("MODALIAS")).flatten()
    }

    /// True for the `add` of an input event device (`/dev/input/eventN`).
    pub fn is_input_event_device_added(&self) -> bool {
        self.action == "add"
            && self.var("SUBSYSTEM") == Some("input")
            && self.var("DEVNAME").is_some_and(|d| d.starts_with("input/event"))
    }
}

/// The kernel uevent socket, non-blocking.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    /// Opens and binds the socket to the kernel's multicast group.
    pub fn open() -> Result<Self, UeventError> {
        Ok(UeventSocket {
            fd: sys::uevent_socket()?,
        })
    }

    /// Receives the next uevent; `Ok(None)` when none is pending. Messages that do not
    /// parse are skipped.
    pub fn next(&self) -> Result<Option<Uevent>, UeventError> {
        let mut buf = vec![0u8; 8192];
        loop {
            match sys::recv(self.fd.as_fd(), &mut buf) {
                Ok(Some(n)) => {
                    if let Some(event) = buf.get(..n).and_then(Uevent::parse) {
                        return Ok(Some(event));
                    }
                }
                Ok(None) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(UeventError::Recv(e)),
            }
        }
    }
}

impl AsFd for UeventSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_add_with_modalias() {
        let msg = b"add@/devices/pci0000:00/0000:00:02.0/virtio0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio0\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000001v00001AF4\0SEQNUM=1234\0";
        let e = Uevent::parse(msg).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.devpath, "/devices/pci0000:00/0000:00:02.0/virtio0");
        assert_eq!(e.var("SUBSYSTEM"), Some("virtio"));
        assert_eq!(e.added_modalias(), Some("virtio:d00000001v00001AF4"));
        assert_eq!(e.var("SEQNUM"), Some("1234"));
    }

    #[test]
    fn remove_has_no_modalias_to_load() {
        let e = Uevent::parse(b"remove@/devices/x\0ACTION=remove\0MODALIAS=usb:v1\0").unwrap();
        assert_eq!(e.added_modalias(), None);
    }

    #[test]
    fn value_may_contain_equals_and_no_trailing_nul() {
        let e = Uevent::parse(b"change@/devices/x\0ACTION=change\0ENV=a=b").unwrap();
        assert_eq!(e.var("ENV"), Some("a=b"));
    }

    #[test]
    fn input_event_device_detection() {
        let e = Uevent::parse(
            b"add@/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0/event0\0ACTION=add\0SUBSYSTEM=input\0MAJOR=13\0MINOR=64\0DEVNAME=input/event0\0",
        )
        .unwrap();
        assert!(e.is_input_event_device_added());
        let e =
            Uevent::parse(b"add@/devices/x/input/input0\0ACTION=add\0SUBSYSTEM=input\0MODALIAS=input:b0019\0").unwrap();
        assert!(!e.is_input_event_device_added());
    }

    #[test]
    fn rejects_non_kernel_messages() {
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(Uevent::parse(b"add@relative\0"), None);
        assert_eq!(Uevent::parse(b"@/devices/x\0"), None);
        assert_eq!(Uevent::parse(b"\xff\xfe@/devices\0"), None);
    }
}

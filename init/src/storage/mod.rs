//! Disks and filesystems: mounts (`mounts`), the packed platform (`packed`), block devices
//! (`blockdev`), filesystem signatures (`blkid`), the usbkey (`usbkey`, written through
//! `usbkey_write`) and the pool (`pool`). Imports `sys`, `base` and `devices`.

pub mod blkid;
pub mod blockdev;
pub mod mounts;
pub mod packed;
pub mod pool;
pub mod usbkey;
pub mod usbkey_write;

//! Disks and filesystems: mounts (`mounts`), block devices (`blockdev`), filesystem
//! signatures (`blkid`), the usbkey (`usbkey`, written through `usbkey_write`) and the pool
//! (`pool`). Imports `sys`, `base` and `devices`.

pub mod blkid;
pub mod blockdev;
pub mod mounts;
pub mod pool;
pub mod usbkey;
pub mod usbkey_write;

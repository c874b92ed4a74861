//! `--keep-config`: reads `/config.toml` from the FAT partition labelled `RAMKEY` of a disk
//! (or image file) and writes it into the freshly flashed copy — without mounting. The
//! partition is found through the partition table and the filesystem is read and written with
//! the `fatfs` crate on that partition's byte range ([`crate::usbkey_fs`]). `fatfs` rather
//! than mtools (`mcopy -i DEV@@OFFSET`): no external tool to find and quote for, errors come
//! back typed, and the same code works on a block device and on an image file in the unit
//! tests.

use std::fs::File;
use std::path::Path;

pub use crate::usbkey_fs::Slice;
use crate::usbkey_fs::{self, Usbkey};

/// The filesystem label of the stick's partition.
pub const LABEL: &str = usbkey_fs::LABEL;
/// The config file's name in the partition's root.
pub const CONFIG: &str = ramkey_config::CONFIG_FILE;

/// Finds the FAT partition labelled `RAMKEY`: its byte offset and length. `Err` says why not
/// (no partition table, no such partition), for the refusal message.
pub fn find_partition(disk: &File) -> Result<(u64, u64), String> {
    usbkey_fs::find_partition(disk).map(|loc| (loc.start, loc.len))
}

/// `/config.toml` of the `RAMKEY` partition.
pub fn read_config(disk: &File) -> Result<Vec<u8>, String> {
    let reason = |e: usbkey_fs::UsbkeyFsError| reason(&e);
    Usbkey::open(disk, Path::new(""))
        .and_then(|key| key.read_existing(CONFIG))
        .map_err(reason)
}

/// Replaces (or creates) `/config.toml` on the `RAMKEY` partition, then reads it back.
pub fn write_config(disk: &File, data: &[u8]) -> Result<(), String> {
    let reason = |e: usbkey_fs::UsbkeyFsError| reason(&e);
    Usbkey::open(disk, Path::new(""))
        .and_then(|key| key.overwrite(CONFIG, data))
        .map_err(reason)
}

/// The error without the (empty) path the messages start with: the caller names the target.
fn reason(e: &usbkey_fs::UsbkeyFsError) -> String {
    let text = e.to_string();
    text.strip_prefix(": ").map(str::to_owned).unwrap_or(text)
}

//! Ramkey's builder: takes a Debian kernel package, the static init and the rootfs overlay,
//! and writes the platform (kernel + reproducible initramfs). The `ramkey` CLI is a thin
//! front over this library.

pub mod appliance;
pub mod build;
pub mod config_cmd;
pub mod deb;
pub mod extras;
pub mod flash;
pub mod image_cmd;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod packed;
pub mod platform;
pub mod platform_cmd;
pub mod push;
pub mod pxe;
pub mod records;
pub mod run;
pub mod tools;
pub mod usb;
pub mod usbkey_fs;

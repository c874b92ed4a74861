//! Ramkey's builder: takes a Debian kernel package, the static init and the rootfs overlay,
//! and writes the platform (kernel + reproducible initramfs). The `ramkey` CLI is a thin
//! front over this library.

pub mod deb;
pub mod flash;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod platform;
pub mod records;
pub mod run;

//! Developer workflows for Ramkey (matklad's xtask pattern): `cargo xtask demo | test | deps`.
//! The library holds what the boot tests share with the tasks.

pub mod artifacts;
pub mod bench;
pub mod bundles;
pub mod deps;
pub mod dns;
pub mod http;
pub mod nested;
pub mod qemu;
pub mod ssh;
pub mod suite;
pub mod tasks;
#[cfg(test)]
mod tidy;

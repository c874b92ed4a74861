//! Platform upgrades: the stick's two slots, the loaders' trial boot, and its commit.

pub mod adv;
pub mod loaders;

//! Platform upgrades: the stick's two slots, the signed bundle written into the one not
//! committed, the boot loaders' one-shot trial boot, and PID 1's commit or rejection.

pub mod adv;
pub mod loaders;
pub mod slot;
pub mod state;
pub mod trial;

//! What leaves the box for a fleet's log store and dashboard: platform services that PID 1
//! starts from `[log] remote` and `[metrics]`, never parts of its event loop.

pub mod logs;
pub mod metrics;
pub mod ship;

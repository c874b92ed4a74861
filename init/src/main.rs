//! Ramkey PID 1 entry point.
fn main() {}

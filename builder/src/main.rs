//! The ramkey CLI.
fn main() {}

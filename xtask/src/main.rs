//! Developer workflows.
fn main() {}

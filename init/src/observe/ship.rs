//! The log shipper.

pub mod sources;
pub mod spool;
pub mod syslog;

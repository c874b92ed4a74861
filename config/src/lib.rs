//! The usbkey config (`config.toml`): schema, validation and comment-preserving edits.
//!
//! The schema arrives with the usbkey-config issue; until then the crate holds only the
//! contract constants both sides agree on.

/// The filesystem label of the usbkey's FAT partition.
pub const USBKEY_LABEL: &str = "RAMKEY";

/// The config's file name at the root of the usbkey.
pub const CONFIG_FILE: &str = "config.toml";

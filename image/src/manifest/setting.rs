//! `[[settings]]`: the values an image accepts from the config, with their types and
//! defaults.

use serde::{Deserialize, Serialize};

/// Type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingType {
    /// A string.
    String,
    /// A 64-bit signed integer.
    Int,
    /// A boolean.
    Bool,
}

/// A setting's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    String(String),
}

impl SettingValue {
    /// The type of this value.
    pub fn kind(&self) -> SettingType {
        match self {
            Self::Bool(_) => SettingType::Bool,
            Self::Int(_) => SettingType::Int,
            Self::String(_) => SettingType::String,
        }
    }
}

/// A setting the image accepts; required when it has no default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// Name, as the config refers to it.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// Default value, of `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<SettingValue>,
    /// What it does.
    pub description: String,
}

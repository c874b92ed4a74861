//! From text to the raw structs: TOML syntax, the `version` dispatch, then serde, collecting
//! every shape error (unknown keys, wrong types, missing keys) rather than the first.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::error::{ConfigError, ErrorKind};
use crate::raw::{
    RawAdmin, RawConfigV1, RawDns, RawImages, RawLog, RawNic, RawNtp, RawPersonality, RawPool, RawUpgrade,
    TOP_LEVEL_KEYS,
};
use crate::suggest::closest;

/// The config versions this build reads.
pub const SUPPORTED_VERSION: i64 = 1;

/// Parses `text` into the raw version-1 structs, or every syntax or shape problem found.
pub(crate) fn load(text: &str) -> Result<RawConfigV1, Vec<ConfigError>> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax.iter().map(|e| syntax_error(text, e)).collect());
    }
    check_version(text, &doc)?;
    let whole = RawConfigV1::deserialize(toml::de::Deserializer::from(doc.clone()));
    match whole {
        Ok(raw) => Ok(raw),
        Err(first) => {
            let mut errors = section_errors(text, doc.get_ref());
            if !doc.get_ref().contains_key("hostname") {
                errors.push(
                    ConfigError::new(
                        text,
                        0..0,
                        ErrorKind::Shape {
                            table: "the top level".into(),
                            message: "missing key `hostname`".into(),
                        },
                    )
                    .with_hint("add `hostname = \"box1\"` near the top"),
                );
            }
            if errors.is_empty() {
                errors.push(de_error(text, &first, doc.span(), "the top level"));
            }
            Err(errors)
        }
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    ConfigError::new(
        text,
        span,
        ErrorKind::Syntax {
            message: e.message().trim().to_owned(),
        },
    )
}

/// Reads `version` first: a config of another version is not checked against this schema.
fn check_version(text: &str, doc: &Spanned<DeTable<'_>>) -> Result<(), Vec<ConfigError>> {
    let Some(value) = doc.get_ref().get("version") else {
        let e = ConfigError::new(text, 0..0, ErrorKind::MissingVersion)
            .with_hint(format!("add `version = {SUPPORTED_VERSION}` as the first line"));
        return Err(vec![e]);
    };
    match value.get_ref() {
        DeValue::Integer(_)
            if i64::deserialize(ValueDeserializer::from(value.clone())).ok() == Some(SUPPORTED_VERSION) =>
        {
            Ok(())
        }
        other => {
            let found = match other {
                DeValue::Integer(i) => i.as_str().to_owned(),
                DeValue::String(s) => format!("{s:?}"),
                other => other.type_str().to_owned(),
            };
            let e = ConfigError::new(text, value.span(), ErrorKind::UnsupportedVersion { found })
                .with_hint(format!("this build reads `version = {SUPPORTED_VERSION}` (an integer)"));
            Err(vec![e])
        }
    }
}

/// Turns a serde error into a [`ConfigError`]; an unknown key gets a "did you mean" hint.
pub(crate) fn de_error(text: &str, e: &toml::de::Error, fallback: Range<usize>, table: &str) -> ConfigError {
    let span = e.span().unwrap_or(fallback);
    let message = e.message();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let names: Vec<&str> = rest.split('`').step_by(2).collect();
        let key = names.first().copied().unwrap_or_default().to_owned();
        let expected = names.get(1..).unwrap_or_default();
        let hint = closest(&key, expected.iter().copied())
            .map(|k| format!("did you mean `{k}`?"))
            .or_else(|| (!expected.is_empty()).then(|| format!("known keys: {}", expected.join(", "))));
        return ConfigError::new(
            text,
            span,
            ErrorKind::UnknownKey {
                key,
                table: table.into(),
            },
        )
        .with_hint_opt(hint);
    }
    let message = message
        .replace("missing field", "missing key")
        .replace("invalid type: ", "")
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    ConfigError::new(
        text,
        span,
        ErrorKind::Shape {
            table: table.into(),
            message,
        },
    )
}

fn one<'i, T: Deserialize<'i>>(text: &str, value: &Spanned<DeValue<'i>>, table: &str, errors: &mut Vec<ConfigError>) {
    if let Err(e) = T::deserialize(ValueDeserializer::from(value.clone())) {
        errors.push(de_error(text, &e, value.span(), table));
    }
}

fn each<'i, T: Deserialize<'i>>(text: &str, value: &Spanned<DeValue<'i>>, table: &str, errors: &mut Vec<ConfigError>) {
    match value.get_ref() {
        DeValue::Array(items) => items.iter().for_each(|item| one::<T>(text, item, table, errors)),
        _ => one::<Vec<T>>(text, value, table, errors),
    }
}

/// Deserializes each top-level section on its own, so that every section's problem is found.
fn section_errors(text: &str, table: &DeTable<'_>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (key, value) in table.iter() {
        let errors = &mut errors;
        match key.get_ref().as_ref() {
            "version" => {}
            "hostname" | "timezone" => one::<String>(text, value, "the top level", errors),
            "admin" => one::<RawAdmin>(text, value, "[admin]", errors),
            "nic" => each::<RawNic>(text, value, "[[nic]]", errors),
            "dns" => one::<RawDns>(text, value, "[dns]", errors),
            "ntp" => one::<RawNtp>(text, value, "[ntp]", errors),
            "pool" => one::<RawPool>(text, value, "[pool]", errors),
            "log" => one::<RawLog>(text, value, "[log]", errors),
            "personality" => each::<RawPersonality>(text, value, "[[personality]]", errors),
            "images" => one::<RawImages>(text, value, "[images]", errors),
            "upgrade" => one::<RawUpgrade>(text, value, "[upgrade]", errors),
            other => {
                let hint = closest(other, TOP_LEVEL_KEYS.iter().copied())
                    .map(|k| format!("did you mean `{k}`?"))
                    .unwrap_or_else(|| format!("known keys: {}", TOP_LEVEL_KEYS.join(", ")));
                errors.push(
                    ConfigError::new(
                        text,
                        key.span(),
                        ErrorKind::UnknownKey {
                            key: other.to_owned(),
                            table: "the top level".into(),
                        },
                    )
                    .with_hint(hint),
                );
            }
        }
    }
    errors
}

//! A static image repository, like SmartOS's image sources: a folder any plain web server
//! can serve, holding images and an `index.json` that lists them (name, version, file, size,
//! sha256 of the file and of the payload, signing key id, requirements). The index is a
//! convenience, not a trust anchor: a box verifies every image by its own signature, and
//! refuses one whose bytes differ from what the index says.

use serde::{Deserialize, Serialize};

use crate::requirements::{PlatformVersion, Requirements};

/// The index's file name at the repository's root.
pub const INDEX_FILE: &str = "index.json";
/// The index format this code writes and reads.
pub const INDEX_VERSION: u32 = 1;

/// `index.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// [`INDEX_VERSION`].
    pub version: u32,
    /// The images, sorted by name, then version.
    pub images: Vec<Entry>,
}

/// One image of the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The personality's name (the manifest's).
    pub name: String,
    /// Its version (the manifest's).
    pub version: String,
    /// One line saying what it is.
    pub description: String,
    /// The file, relative to the repository's root.
    pub file: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The whole file's sha256, hex.
    pub sha256: String,
    /// The payload's sha256 (the manifest's), hex.
    pub payload_sha256: String,
    /// The id of the key that signed it.
    pub key_id: String,
    /// What it needs of the platform (the manifest's).
    pub requirements: Requirements,
}

impl Entry {
    /// `NAME@VERSION`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// How two image versions compare: as dotted numbers (`1.10.0` after `1.9.0`), as text when
/// either is not one.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<PlatformVersion>(), b.parse::<PlatformVersion>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

impl Index {
    /// Parses `index.json`.
    ///
    /// # Errors
    /// Says what is wrong: not JSON, not an index, or a version this code does not read.
    pub fn parse(text: &[u8]) -> Result<Index, String> {
        let index: Index = serde_json::from_slice(text).map_err(|e| format!("not an image index: {e}"))?;
        if index.version != INDEX_VERSION {
            return Err(format!(
                "index version {} (this platform reads version {INDEX_VERSION})",
                index.version
            ));
        }
        Ok(index)
    }

    /// Adds `entry`, replacing one of the same name and version; keeps the order.
    pub fn insert(&mut self, entry: Entry) {
        self.images
            .retain(|e| (&e.name, &e.version) != (&entry.name, &entry.version));
        self.images.push(entry);
        self.images
            .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| version_order(&a.version, &b.version)));
    }

    /// The entry for `name` at `version`, or its newest version.
    pub fn find(&self, name: &str, version: Option<&str>) -> Option<&Entry> {
        let mut named = self.images.iter().filter(|e| e.name == name);
        match version {
            Some(v) => named.find(|e| e.version == v),
            None => named.max_by(|a, b| version_order(&a.version, &b.version)),
        }
    }

    /// The index as written: pretty JSON and a newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str) -> Entry {
        Entry {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            file: format!("{name}-{version}.rkimg"),
            size: 1,
            sha256: "00".into(),
            payload_sha256: "11".into(),
            key_id: "22".into(),
            requirements: Requirements {
                min_platform: "0.1".into(),
                arch: "x86_64".into(),
                capabilities: Vec::new(),
            },
        }
    }

    #[test]
    fn newest_by_version_not_by_text() {
        let mut index = Index {
            version: INDEX_VERSION,
            images: Vec::new(),
        };
        for v in ["1.9.0", "1.10.0", "1.2.0"] {
            index.insert(entry("web", v));
        }
        index.insert(entry("kv", "1.0.0"));
        index.insert(entry("web", "1.2.0"));
        let order: Vec<String> = index.images.iter().map(Entry::label).collect();
        assert_eq!(order, ["kv@1.0.0", "web@1.2.0", "web@1.9.0", "web@1.10.0"]);
        assert_eq!(index.find("web", None).map(Entry::label).as_deref(), Some("web@1.10.0"));
        assert_eq!(
            index.find("web", Some("1.2.0")).map(Entry::label).as_deref(),
            Some("web@1.2.0")
        );
        assert_eq!(index.find("dns", None), None);
        assert_eq!(Index::parse(index.to_text().as_bytes()).unwrap(), index);
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        assert!(Index::parse(b"<html>").unwrap_err().starts_with("not an image index"));
        let e = Index::parse(br#"{"version": 2, "images": []}"#).unwrap_err();
        assert_eq!(e, "index version 2 (this platform reads version 1)");
    }
}

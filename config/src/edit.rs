//! Comment-preserving edits of `config.toml` by dotted key, re-validated after each change.
//!
//! Keys are dotted paths: `hostname`, `dns.resolvers`, `pool.create`. An array of tables is
//! addressed by its elements' identity instead of an index: `nic.admin.ip` is the `ip` of the
//! `[[nic]]` whose `tag` is `admin`; `personality.web.memory` the `memory` of the
//! `[[personality]]` whose `name` is `web`.

use std::fmt;

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use crate::{Config, ConfigErrors};

/// Errors of [`Document`] operations.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The text is not TOML.
    #[error("{file} is not TOML: {source}")]
    Syntax {
        /// The file name given to [`Document::parse`].
        file: String,
        /// The parser's error, with its line and column.
        source: toml_edit::TomlError,
    },
    /// The key is not a dotted path this module understands.
    #[error("bad key {key:?}: {reason}")]
    BadKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An array-of-tables element that does not exist.
    #[error("no [[{array}]] with {field} {id:?}; {}", known_list(.known))]
    NoSuchEntry {
        /// `nic` or `personality`.
        array: String,
        /// `tag` or `name`.
        field: String,
        /// The identity asked for.
        id: String,
        /// The identities that exist.
        known: Vec<String>,
    },
    /// A dotted path that goes through a value that is not a table.
    #[error("{key:?} is not a table, so it has no keys")]
    NotATable {
        /// The prefix of the key that is a value.
        key: String,
    },
    /// The edit would leave the config invalid; nothing was changed.
    #[error("the edit was refused; the config would be invalid:\n{0}")]
    Invalid(ConfigErrors),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "there are none".to_owned()
    } else {
        format!("existing: {}", known.join(", "))
    }
}

/// Arrays of tables addressed by an identity field.
const IDENTITY: &[(&str, &str)] = &[("nic", "tag"), ("personality", "name")];

fn identity_field(array: &str) -> &'static str {
    IDENTITY.iter().find(|(a, _)| *a == array).map_or("name", |(_, f)| f)
}

/// A config document that keeps comments, order and blank lines across edits.
#[derive(Debug, Clone)]
pub struct Document {
    doc: DocumentMut,
    file: String,
}

impl Document {
    /// Parses `text` (TOML syntax only: a config with other problems can be loaded to be fixed).
    ///
    /// # Errors
    /// [`EditError::Syntax`] if the text is not TOML.
    pub fn parse(text: &str, file_name: &str) -> Result<Self, EditError> {
        let doc = text.parse::<DocumentMut>().map_err(|source| EditError::Syntax {
            file: file_name.to_owned(),
            source,
        })?;
        Ok(Self {
            doc,
            file: file_name.to_owned(),
        })
    }

    /// Validates the document as it stands.
    ///
    /// # Errors
    /// Every problem found, as [`Config::parse`] reports them.
    pub fn config(&self) -> Result<Config, ConfigErrors> {
        Config::parse(&self.doc.to_string(), &self.file)
    }

    /// The value at `key`, as TOML (`"box1"`, `1500`, `["1.1.1.1"]`), without its comments;
    /// a table is rendered whole. `None` if the key is not set.
    ///
    /// # Errors
    /// A malformed key, or a nic tag or personality name that does not exist.
    pub fn get(&self, key: &str) -> Result<Option<String>, EditError> {
        let mut doc = self.doc.clone();
        let (parents, last) = split(key)?;
        let table = match walk(doc.as_table_mut(), parents, key, 0, false) {
            Ok(t) => t,
            Err(Walk::Missing) => return Ok(None),
            Err(Walk::Error(e)) => return Err(e),
        };
        Ok(table.get(last).map(render))
    }

    /// Sets `key` to `value`. `value` is read as a TOML value when it is one (`1500`, `true`,
    /// `["a", "b"]`, `"quoted"`) and as a string otherwise (`box1`, `192.168.1.3/24`, `1G`).
    /// The old value's comments are kept; missing tables are created (not missing nics or
    /// personalities). The whole config is validated after the change.
    ///
    /// # Errors
    /// A malformed key, a missing nic tag or personality name (listing the existing ones), or
    /// [`EditError::Invalid`] with every problem if the config would be invalid (or, when it
    /// already was, if the edit does not reduce its problems). Nothing changes on error.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), EditError> {
        let mut next = self.doc.clone();
        let (parents, last) = split(key)?;
        let table = walk(next.as_table_mut(), parents, key, 0, true).map_err(Walk::into_error)?;
        let mut new = parse_value(value);
        match table.get_mut(last) {
            Some(Item::Value(old)) => {
                *new.decor_mut() = old.decor().clone();
                *old = new;
            }
            Some(item) => *item = Item::Value(new),
            None => {
                table.insert(last, Item::Value(new));
            }
        }
        self.commit(next)
    }

    /// Removes `key` (a value, a table, or a whole nic or personality: `nic.external`).
    /// Returns whether it was there. The config is validated after the change.
    ///
    /// # Errors
    /// As for [`Document::set`].
    pub fn unset(&mut self, key: &str) -> Result<bool, EditError> {
        let mut next = self.doc.clone();
        let (parents, last) = split(key)?;
        if let [array] = parents.as_slice()
            && let Some(Item::ArrayOfTables(tables)) = next.get_mut(array)
        {
            let field = identity_field(array);
            let Some(index) = tables.iter().position(|t| identity(t, field) == Some(last)) else {
                return Ok(false);
            };
            tables.remove(index);
            if tables.is_empty() {
                next.remove(array);
            }
            return self.commit(next).map(|()| true);
        }
        let table = match walk(next.as_table_mut(), parents, key, 0, false) {
            Ok(t) => t,
            Err(Walk::Missing) => return Ok(false),
            Err(Walk::Error(e)) => return Err(e),
        };
        if table.remove(last).is_none() {
            return Ok(false);
        }
        self.commit(next).map(|()| true)
    }

    /// Accepts `next` if it is a valid config, or has fewer problems than the current one.
    fn commit(&mut self, next: DocumentMut) -> Result<(), EditError> {
        let text = next.to_string();
        if let Err(errors) = Config::parse(&text, &self.file) {
            let reparses = text.parse::<DocumentMut>().is_ok();
            let before = self.config().err().map_or(0, |e| e.len());
            if !reparses || errors.len() >= before {
                return Err(EditError::Invalid(errors));
            }
        }
        self.doc = next;
        Ok(())
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.doc)
    }
}

fn split(key: &str) -> Result<(Vec<&str>, &str), EditError> {
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        let reason = "expected dotted names like `nic.admin.ip` or `hostname`".to_owned();
        return Err(EditError::BadKey {
            key: key.to_owned(),
            reason,
        });
    }
    match parts.split_last() {
        Some((last, parents)) => Ok((parents.to_vec(), last)),
        None => Err(EditError::BadKey {
            key: key.to_owned(),
            reason: "it is empty".to_owned(),
        }),
    }
}

fn identity<'t>(table: &'t Table, field: &str) -> Option<&'t str> {
    table.get(field).and_then(Item::as_str)
}

enum Walk {
    Missing,
    Error(EditError),
}

impl Walk {
    fn into_error(self) -> EditError {
        match self {
            // `walk` with `create` never reports a missing table.
            Self::Missing => EditError::BadKey {
                key: String::new(),
                reason: "not found".to_owned(),
            },
            Self::Error(e) => e,
        }
    }
}

/// Follows `segs` from `table` to the table that holds the last key.
fn walk<'a>(
    table: &'a mut dyn TableLike,
    segs: Vec<&str>,
    key: &str,
    depth: usize,
    create: bool,
) -> Result<&'a mut dyn TableLike, Walk> {
    let Some((&first, rest)) = segs.split_first() else {
        return Ok(table);
    };
    let array_field = (depth == 0)
        .then(|| IDENTITY.iter().find(|(a, _)| *a == first))
        .flatten();
    if !table.contains_key(first) {
        if let Some((array, field)) = array_field {
            let id = rest.first().copied().unwrap_or_default().to_owned();
            let e = EditError::NoSuchEntry {
                array: (*array).into(),
                field: (*field).into(),
                id,
                known: vec![],
            };
            return Err(if create { Walk::Error(e) } else { Walk::Missing });
        }
        if !create {
            return Err(Walk::Missing);
        }
        table.insert(first, Item::Table(Table::new()));
    }
    let prefix = || key.split('.').take(depth + 1).collect::<Vec<_>>().join(".");
    match table.get_mut(first) {
        Some(Item::ArrayOfTables(tables)) => {
            let field = identity_field(first);
            let Some((&id, rest)) = rest.split_first() else {
                let reason = format!("name the element: `{first}.<{field}>.KEY`");
                return Err(Walk::Error(EditError::BadKey {
                    key: key.to_owned(),
                    reason,
                }));
            };
            let Some(index) = tables.iter().position(|t| identity(t, field) == Some(id)) else {
                let known = tables
                    .iter()
                    .filter_map(|t| identity(t, field))
                    .map(str::to_owned)
                    .collect();
                let e = EditError::NoSuchEntry {
                    array: first.into(),
                    field: field.into(),
                    id: id.into(),
                    known,
                };
                return Err(Walk::Error(e));
            };
            let Some(elem) = tables.get_mut(index) else {
                return Err(Walk::Missing);
            };
            walk(elem, rest.to_vec(), key, depth + 2, create)
        }
        Some(item) => match item.as_table_like_mut() {
            Some(t) => walk(t, rest.to_vec(), key, depth + 1, create),
            None => Err(Walk::Error(EditError::NotATable { key: prefix() })),
        },
        None => Err(Walk::Missing),
    }
}

fn parse_value(text: &str) -> Value {
    let mut value = text.trim().parse::<Value>().unwrap_or_else(|_| Value::from(text));
    value.decor_mut().clear();
    value
}

fn render(item: &Item) -> String {
    match item {
        Item::Value(v) => {
            let mut v = v.clone();
            v.decor_mut().clear();
            v.to_string()
        }
        other => other.to_string().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = include_str!("../tests/fixtures/accept/full.toml");

    fn doc() -> Document {
        Document::parse(FULL, "config.toml").expect("toml")
    }

    #[test]
    fn set_changes_only_the_value_and_keeps_its_comment() {
        let mut d = doc();
        d.set("nic.admin.gateway", "192.168.1.254").expect("valid edit");
        let expected = FULL.replace(
            "gateway = \"192.168.1.1\"   # default route",
            "gateway = \"192.168.1.254\"   # default route",
        );
        assert_ne!(expected, FULL);
        assert_eq!(d.to_string(), expected);
    }

    #[test]
    fn typed_values_and_addressing_by_identity() {
        let mut d = doc();
        d.set("hostname", "box2").expect("hostname");
        d.set("nic.admin.mtu", "9000").expect("mtu");
        d.set("personality.web.memory", "1G").expect("memory");
        d.set("dns.resolvers", r#"["1.1.1.1","9.9.9.9"]"#).expect("resolvers");
        d.set("personality.web.settings.workers", "8").expect("setting");
        assert_eq!(d.get("hostname").expect("get").as_deref(), Some("\"box2\""));
        assert_eq!(d.get("nic.admin.mtu").expect("get").as_deref(), Some("9000"));
        assert_eq!(
            d.get("dns.resolvers").expect("get").as_deref(),
            Some(r#"["1.1.1.1","9.9.9.9"]"#)
        );
        let c = d.config().expect("still valid");
        assert_eq!(c.personality("web").and_then(|p| p.memory), Some(1 << 30));
        assert_eq!(d.get("ntp.nothing").expect("get"), None);
    }

    #[test]
    fn invalid_edits_are_refused_and_change_nothing() {
        let mut d = doc();
        let err = d.set("nic.admin.gateway", "10.0.0.1").expect_err("outside subnet");
        assert!(
            err.to_string().contains("gateway 10.0.0.1 is outside 192.168.1.0/24"),
            "{err}"
        );
        assert!(matches!(d.set("nic.admin.mtu", "\"big\""), Err(EditError::Invalid(_))));
        assert!(matches!(d.unset("hostname"), Err(EditError::Invalid(_))));
        assert_eq!(d.to_string(), FULL);
    }

    #[test]
    fn missing_tags_are_listed() {
        let mut d = doc();
        let err = d.set("nic.storage.ip", "dhcp").expect_err("no such nic");
        assert_eq!(
            err.to_string(),
            "no [[nic]] with tag \"storage\"; existing: admin, external"
        );
        let err = d.set("personality.db.memory", "1G").expect_err("no such personality");
        assert!(err.to_string().contains("existing: web, dns"), "{err}");
        assert!(matches!(d.set("hostname.x", "1"), Err(EditError::NotATable { .. })));
        assert!(matches!(d.set("a..b", "1"), Err(EditError::BadKey { .. })));
        assert!(matches!(d.set("nic", "1"), Err(EditError::Invalid(_))));
    }

    #[test]
    fn unset_values_and_elements() {
        let mut d = doc();
        assert!(d.unset("nic.admin.mtu").expect("unset"));
        assert!(!d.unset("nic.admin.mtu").expect("already gone"));
        assert!(d.unset("personality.dns").expect("remove personality"));
        // web is a cluster resource: removing it alone would leave the pair naming nothing.
        assert!(matches!(d.unset("personality.web"), Err(EditError::Invalid(_))));
        assert!(d.unset("cluster").expect("remove the pair"));
        assert!(d.unset("personality.web").expect("remove personality"));
        assert!(!d.to_string().contains("[[personality]]"));
        assert!(d.config().is_ok());
    }

    #[test]
    fn an_invalid_config_can_be_fixed_one_edit_at_a_time() {
        let text = "version = 1\nhostname = \"bad.name\"\ntimezone = \"Nowhere\"\n";
        let mut d = Document::parse(text, "config.toml").expect("toml");
        d.set("hostname", "good").expect("fewer problems");
        d.set("timezone", "UTC").expect("valid now");
        assert!(d.config().is_ok());
    }
}

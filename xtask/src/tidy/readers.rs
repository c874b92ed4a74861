//! No silent settings (issue 16): every `pub` field of a schema's model — the validated usbkey
//! config (`config/src/model.rs`) and the image manifest (`image/src/manifest/`, with the
//! service, probe and requirement types it is made of) — has a reader outside its own crate,
//! or is listed in [`READ_INSIDE`] with the reason it needs none.
//!
//! A *reader* is `.field` (not `..field`, not a method call `.field(`) in the non-test code of
//! another shipping crate: `init` and `builder`, and `config`/`image` for each other; not
//! `xtask`, whose boot tests reading a field do not make it act on the box. Comments and test
//! code (`#[cfg(test)]` items, `tests.rs`, `*_tests.rs`, `tests/` folders) do not count.
//!
//! The match is by name, without types: simple and without false alarms, but coarse. A field
//! sharing its name with another type's passes on any access of that name: the two settings
//! issue 16 found by reading the code would have passed — `Personality.volumes` on
//! `manifest.volumes`, the manifest's zone-wide `health` on `ServiceSpec.health` and on
//! `ramkey image inspect` printing it. So it is a floor, not a proof: it catches a field with a
//! name of its own that nothing mentions (`[log] remote`, `[log] level`), and each new schema
//! field still needs its test. Reads through a pattern (`let Log { remote, .. } = log`) are not
//! seen: write `log.remote`. Enum variants' fields are matched by pattern and not checked.

use std::path::Path;

use super::root_paths::without_tests;

/// A schema: its crate and the files of its model.
struct Schema {
    krate: &'static str,
    files: &'static [&'static str],
}

/// The schemas whose fields must be read.
const SCHEMAS: &[Schema] = &[
    Schema {
        krate: "config",
        files: &["config/src/model.rs"],
    },
    Schema {
        krate: "image",
        files: &[
            "image/src/manifest/mod.rs",
            "image/src/manifest/setting.rs",
            "image/src/service.rs",
            "image/src/check.rs",
            "image/src/requirements.rs",
        ],
    },
];

/// The crates whose code can make a setting act (on the box, or in the `ramkey` CLI).
const SHIPPING: &[&str] = &["init", "builder", "config", "image"];

/// Fields that need no reader outside their crate: (model file, `Struct.field`, why).
/// Each entry is checked: it must name a field that exists and still has no outside reader.
const READ_INSIDE: &[(&str, &str, &str)] = &[(
    "image/src/manifest/mod.rs",
    "Manifest.format_version",
    "read by `Manifest::parse` and `validate` in the image crate, which refuse any other \
         version: it selects the parser, it is no setting",
)];

/// The `pub` fields of the `pub struct`s in `code` (non-test code): (line, struct, field).
pub fn fields(code: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in code.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            current = rest.trim_end().ends_with('{').then_some(name);
            continue;
        }
        if line.starts_with('}') {
            current = None;
            continue;
        }
        let Some(owner) = &current else { continue };
        let Some(rest) = line.trim_start().strip_prefix("pub ") else {
            continue;
        };
        let field: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !field.is_empty() && rest[field.len()..].starts_with(':') {
            out.push((n + 1, owner.clone(), field));
        }
    }
    out
}

/// Whether `code` (comments and tests left out) reads `.field`.
pub fn reads(code: &str, field: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let needle = format!(".{field}");
    code.match_indices(&needle).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + needle.len()..].chars().find(|c| !c.is_whitespace());
        before != Some('.') && !code[at + needle.len()..].starts_with(ident) && after != Some('(')
    })
}

/// `text` without its test items and its `//` comments (to the end of the line; a `//` in a
/// string cuts the line short, which can only hide a reader, never invent one).
pub fn code_of(text: &str) -> String {
    without_tests(text)
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The problems of one schema's model (`file`, in `krate`) against the code of the other
/// crates (`readers`, each [`code_of`] a file), given the allow-list `allowed`.
pub fn check(file: &str, model: &str, readers: &[String], allowed: &[(&str, &str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let found = fields(&code_of(model));
    for (line, owner, field) in &found {
        let key = format!("{owner}.{field}");
        let read = readers.iter().any(|r| reads(r, field));
        let listed = allowed.iter().any(|(f, k, _)| *f == file && *k == key);
        if !read && !listed {
            out.push(format!(
                "{file}:{line}: `{key}` is accepted by the schema and nothing outside its crate reads it \
                 (no `.{field}` in {}): make it take effect, refuse it in validation with a reason, or list \
                 it in READ_INSIDE (xtask/src/tidy/readers.rs) with why",
                SHIPPING.join(", ")
            ));
        }
        if read && listed {
            out.push(format!(
                "{file}:{line}: `{key}` is in READ_INSIDE but has a reader now: take it off the list"
            ));
        }
    }
    for (f, key, _) in allowed.iter().filter(|(f, _, _)| *f == file) {
        if !found.iter().any(|(_, o, n)| format!("{o}.{n}") == *key) {
            out.push(format!(
                "{f}: READ_INSIDE names `{key}`, which is no field of it: take it off"
            ));
        }
    }
    out
}

/// Whether a file (from the workspace root) is test code as a whole.
fn is_test_file(path: &Path) -> bool {
    let slash = path.to_string_lossy();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    slash.contains("/tests/") || name == "tests.rs" || name.ends_with("_tests.rs")
}

/// Every schema's problems, reading the workspace at `root`; `files` are its `.rs` files.
pub fn problems(root: &Path, files: &[std::path::PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for schema in SCHEMAS {
        let readers: Vec<String> = files
            .iter()
            .filter(|p| {
                let krate = p
                    .components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned());
                krate.is_some_and(|k| k != schema.krate && SHIPPING.contains(&k.as_str()))
                    && p.components().nth(1).is_some_and(|c| c.as_os_str() == "src")
                    && !is_test_file(p)
            })
            .map(|p| code_of(&std::fs::read_to_string(root.join(p)).expect("reading a source file")))
            .collect();
        assert!(
            readers.len() > 20,
            "only {} reader files for {}",
            readers.len(),
            schema.krate
        );
        for file in schema.files {
            let model = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!fields(&code_of(&model)).is_empty(), "{file}: no pub fields found");
            out.extend(check(file, &model, &readers, READ_INSIDE));
        }
    }
    out
}

#[test]
fn fields_are_the_pub_fields_of_pub_structs() {
    let model = concat!(
        "//! Model.\n",
        "pub struct Log {\n",
        "    /// A doc line: pub fake: u8\n",
        "    pub remote: Option<HostPort>,\n",
        "    pub(crate) hidden: u8,\n",
        "    level: LogLevel,\n",
        "}\n",
        "pub struct Unit;\n",
        "pub struct Pair(pub u8, pub u8);\n",
        "pub enum E {\n    A { pub_like: u8 },\n}\n",
        "pub struct Caps<'a> {\n    pub memory_mib: Option<u64>,\n}\n",
    );
    let got: Vec<(usize, String, String)> = fields(&code_of(model));
    let got: Vec<(usize, &str, &str)> = got.iter().map(|(n, s, f)| (*n, s.as_str(), f.as_str())).collect();
    assert_eq!(got, [(4, "Log", "remote"), (14, "Caps", "memory_mib")]);
}

#[test]
fn a_reader_is_a_field_access_in_code() {
    assert!(reads("let r = cfg.log.remote;", "remote"));
    assert!(reads("match &c\n    .remote\n{", "remote"));
    assert!(!reads("let r = cfg.log.remote_host;", "remote"));
    assert!(!reads("let r = x.remote();", "remote"));
    assert!(!reads("let r = x.remote ();", "remote"));
    assert!(!reads("for i in 0..retries {}", "retries"));
    assert!(!reads(&code_of("// uses cfg.log.remote\nfn f() {}\n"), "remote"));
    assert!(!reads(
        &code_of("#[cfg(test)]\nmod tests { fn f() { c.log.remote; } }\n"),
        "remote"
    ));
}

#[test]
fn an_unread_field_is_a_problem_until_read_or_listed_and_a_stale_entry_too() {
    let model = "//! M.\npub struct Log {\n    pub remote: Option<u8>,\n    pub level: u8,\n}\n";
    let readers = vec![code_of("fn f(c: &Config) { set_level(c.log.level); }\n")];
    let got = check("config/src/model.rs", model, &readers, &[]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("config/src/model.rs:3: `Log.remote` is accepted"),
        "{got:?}"
    );
    let listed = [("config/src/model.rs", "Log.remote", "being built")];
    assert!(check("config/src/model.rs", model, &readers, &listed).is_empty());
    let read = vec![code_of("fn f(c: &Config) { ship(c.log.remote, c.log.level); }\n")];
    let stale = check("config/src/model.rs", model, &read, &listed);
    assert!(stale.len() == 1 && stale[0].contains("has a reader now"), "{stale:?}");
    let gone = [("config/src/model.rs", "Log.colour", "a typo")];
    let got = check("config/src/model.rs", model, &read, &gone);
    assert!(got.len() == 1 && got[0].contains("no field of it"), "{got:?}");
}

//! The architecture's one rule, checked: each folder of `init/src` imports only from the
//! folders below it. From the bottom: `sys` (raw syscalls, all the `unsafe`) ← `base`
//! (paths, clock, log, timeline, command line) ← `devices` ← `storage` and `net` ←
//! `supervisor` (the pure engine) ← `runtime` (the event loop and what it drives) ← `boot`,
//! `zone`, `upgrade` and `observe` ← `vm` and `cluster` ← `ctl` (`ramkeyctl`) ← `pid1`. Folders on one level do
//! not import each other.

/// Each folder (or top-level file) with its level; a `crate::NAME` path in a folder's code
/// may name only a folder of a lower level (or its own).
const LEVELS: &[(&str, u8)] = &[
    ("sys", 0),
    ("base", 1),
    ("devices", 2),
    ("storage", 3),
    ("net", 3),
    ("supervisor", 4),
    ("runtime", 5),
    ("boot", 6),
    ("zone", 6),
    ("upgrade", 6),
    ("observe", 6),
    ("vm", 7),
    ("cluster", 7),
    ("ctl", 8),
    ("pid1", 9),
];

fn level(name: &str) -> Option<u8> {
    LEVELS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// The `crate::NAME` (or `$crate::NAME`) paths in `code` that name a folder, outside
/// comments.
fn imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let line = line.split(" // ").next().unwrap_or(line);
        for (at, _) in line.match_indices("crate::") {
            let name: String = line[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if level(&name).is_some() {
                found.push(name);
            }
        }
    }
    found
}

/// Every `.rs` file under `dir`, with the folder (or top-level file) it belongs to.
fn sources(dir: &std::path::Path, owner: Option<&str>, out: &mut Vec<(String, std::path::PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            sources(&path, Some(owner.unwrap_or(&name)), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((owner.unwrap_or(&name).to_string(), path));
        }
    }
}

#[test]
fn every_folder_imports_only_from_below() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, None, &mut files);
    let mut wrong = Vec::new();
    for (owner, path) in &files {
        // lib.rs, main.rs and this file stand above every folder.
        let Some(own) = level(owner) else { continue };
        for name in imports(&std::fs::read_to_string(path).unwrap()) {
            let theirs = level(&name).unwrap_or(0);
            if name != *owner && theirs >= own {
                wrong.push(format!(
                    "{} (in {owner}, level {own}) uses crate::{name} (level {theirs})",
                    path.display()
                ));
            }
        }
    }
    wrong.dedup();
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
    // Every folder of init/src is in the table.
    for (owner, _) in &files {
        assert!(
            level(owner).is_some() || ["lib", "main", "layers"].contains(&owner.as_str()),
            "{owner} is not in LEVELS: give it a level"
        );
    }
}

#[test]
fn comments_and_macros_are_not_imports() {
    let code = "use crate::base::log;\n// see crate::pid1\ncrate::notice!(\"x\"); // crate::ctl\nlet x = crate::sys::boottime();";
    assert_eq!(imports(code), ["base", "sys"]);
}

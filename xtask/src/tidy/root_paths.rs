//! No root-path literal in PID 1's code outside its paths module (`init/src/base/paths.rs`):
//! where the box keeps things goes through `Paths`, which tests point at a temporary root.
//!
//! A *root-path literal* is a string literal, in init's non-test code (outside comments),
//! that names a place in a filesystem from its root:
//!
//! - its text starts with `/` and a letter (`"/proc/self/mounts"`, `"/dev"`,
//!   `format!("/proc/{pid}/root")`), but for program paths under `/usr`, `/bin` and
//!   `/sbin` (`"/usr/sbin/ramkey-zone"`, `"/bin/sh"`, a `PATH` value): those are what a
//!   service execs, resolved by the kernel in whichever root runs it, not a place PID 1
//!   reads, writes or mounts;
//! - or it is `"/"` itself built into a path (`Path::new("/")`, `PathBuf::from("/")`,
//!   `Paths::new("/")`): the root everything else is under. A bare `"/"` elsewhere is an
//!   HTTP path, a mount table's entry or a service's working directory.
//!
//! Non-test code is a file's text but its `#[cfg(test)]` items ([`without_tests`]); files
//! that are test modules of their own (`tests.rs`, `*_tests.rs`, a `tests/` folder, the
//! `fake.rs` fakes) hold fixtures, not the box's layout. No file is exempt.

use std::path::Path;

/// The paths module: the one place the root's layout is written down.
pub const PATHS_MODULE: &str = "init/src/base/paths.rs";

/// Whether a file (from the workspace root) is checked at all.
pub fn checked(path: &Path) -> bool {
    let slash = path.to_string_lossy();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    slash.starts_with("init/src/")
        && slash != PATHS_MODULE
        && !slash.contains("/tests/")
        && name != "tests.rs"
        && name != "fake.rs"
        && !name.ends_with("_tests.rs")
}

/// The root-path literals of `code` (non-test code), each with its line number (from 1).
pub fn literals(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let (mut at, mut line) = (0, 1);
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if c == '\n' {
            line += 1;
        }
        if c == '/' && next == Some('/') {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
            continue;
        }
        if c == '\'' {
            // A char literal ('"', '\''), or a lifetime ('a), which has no closing quote.
            at += match (next, chars.get(at + 2)) {
                (Some('\\'), _) => 1 + chars[at + 1..].iter().skip(2).position(|c| *c == '\'').unwrap_or(0) + 3,
                (Some(_), Some('\'')) => 3,
                _ => 1,
            };
            continue;
        }
        let raw = c == 'r' && matches!(next, Some('"' | '#')) && !ident(chars.get(at.wrapping_sub(1)));
        if c == '"' || raw {
            let start_line = line;
            let hashes = if raw {
                chars[at + 1..].iter().take_while(|c| **c == '#').count()
            } else {
                0
            };
            let before: String = chars[at.saturating_sub(16)..at].iter().collect();
            at += if raw { 2 + hashes } else { 1 };
            let mut text = String::new();
            while at < chars.len() {
                let c = chars[at];
                if c == '\n' {
                    line += 1;
                }
                if !raw && c == '\\' {
                    text.push(c);
                    text.extend(chars.get(at + 1));
                    at += 2;
                    continue;
                }
                if c == '"' && chars[at + 1..].iter().take(hashes).all(|c| *c == '#') {
                    at += 1 + hashes;
                    break;
                }
                text.push(c);
                at += 1;
            }
            if is_root_path(&text, &before) {
                found.push((start_line, text));
            }
            continue;
        }
        at += 1;
    }
    found
}

fn ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// Whether a literal's `text`, written right after `before`, is a root-path literal.
fn is_root_path(text: &str, before: &str) -> bool {
    if text == "/" {
        return ["Path::new(", "PathBuf::from(", "Paths::new("]
            .iter()
            .any(|call| before.ends_with(call));
    }
    let Some(rest) = text.strip_prefix('/') else {
        return false;
    };
    let first = rest.split(['/', ':']).next().unwrap_or_default();
    rest.starts_with(|c: char| c.is_ascii_alphabetic()) && !["usr", "bin", "sbin"].contains(&first)
}

/// `text` without its test items: each item after a `#[cfg(test)]` (`mod tests;`, an inline
/// module, a helper) is left out and the code after it kept, so that a test module declared
/// at the top of a file hides none of the code below it. Line breaks are kept, so that line
/// numbers stay true.
pub fn without_tests(text: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(ATTR) {
        out.push_str(&rest[..at]);
        let item = &rest[at + ATTR.len()..];
        let end = item_end(item);
        out.extend(std::iter::repeat_n('\n', item[..end].matches('\n').count()));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The byte offset where the item starting `code` ends: after its `;` or its block's
/// closing `}`; braces in strings, chars and comments do not count.
fn item_end(code: &str) -> usize {
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    let at_char = |i: usize| chars.get(i).map(|(_, c)| *c);
    let (mut i, mut depth) = (0, 0usize);
    while i < chars.len() {
        let c = chars[i].1;
        match c {
            '/' if at_char(i + 1) == Some('/') => {
                while i < chars.len() && chars[i].1 != '\n' {
                    i += 1;
                }
                continue;
            }
            '\'' => {
                i += match (at_char(i + 1), at_char(i + 2)) {
                    (Some('\\'), _) => {
                        3 + chars[(i + 3).min(chars.len())..]
                            .iter()
                            .position(|(_, c)| *c == '\'')
                            .unwrap_or(0)
                    }
                    (Some(_), Some('\'')) => 2,
                    _ => 0,
                };
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i].1 != '"' {
                    i += if chars[i].1 == '\\' { 2 } else { 1 };
                }
            }
            'r' if matches!(at_char(i + 1), Some('"' | '#'))
                && !ident(i.checked_sub(1).and_then(|j| chars.get(j)).map(|(_, c)| c)) =>
            {
                let hashes = chars[i + 1..].iter().take_while(|(_, c)| *c == '#').count();
                i += 2 + hashes;
                let closes = |i: usize| chars[i].1 == '"' && (1..=hashes).all(|h| at_char(i + h) == Some('#'));
                while i < chars.len() && !closes(i) {
                    i += 1;
                }
                i += hashes;
            }
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return chars[i].0 + 1;
                }
            }
            ';' if depth == 0 => return chars[i].0 + 1,
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// What is wrong with one file's root-path literals (`path` from the workspace root, `text`
/// all of it: its test items are left out here).
pub fn problems(path: &Path, text: &str) -> Vec<String> {
    if !checked(path) {
        return Vec::new();
    }
    let found = literals(&without_tests(text));
    if found.is_empty() {
        return Vec::new();
    }
    let slash = path.to_string_lossy();
    let list: Vec<String> = found.iter().map(|(n, t)| format!("{slash}:{n}: {t:?}")).collect();
    vec![format!(
        "{slash}: {} root-path literal(s): take the path from `Paths` ({PATHS_MODULE})\n  {}",
        found.len(),
        list.join("\n  ")
    )]
}

#[test]
fn root_path_literals_are_found_and_only_they() {
    let code = concat!(
        "//! Doc: \"/proc\" in a comment.\n",
        "let a = Path::new(\"/\");\n",
        "let b = format!(\"/proc/{pid}/root\"); // \"/dev\"\n",
        "let c = (rest, \"/\"); let d = '\"'; let e: &'static str = \"/usr/bin/x\";\n",
        "let f = r#\"/sys/fs\"#; let g = \"a \\\" /run\"; let h = \"/pool\";\n",
        "let i = \"/{path}\"; let j = \"/bin/sh\";\n",
    );
    let found = literals(code);
    let got: Vec<(usize, &str)> = found.iter().map(|(n, t)| (*n, t.as_str())).collect();
    assert_eq!(got, [(2, "/"), (3, "/proc/{pid}/root"), (5, "/sys/fs"), (5, "/pool")]);
}

#[test]
fn a_new_literal_outside_the_paths_module_is_a_problem() {
    let code = "fn f() -> PathBuf { PathBuf::from(\"/run/ramkey\") }\n";
    assert_eq!(problems(Path::new("init/src/zone/x.rs"), code).len(), 1);
    assert!(problems(Path::new(PATHS_MODULE), code).is_empty());
    assert!(problems(Path::new("init/src/zone/tests.rs"), code).is_empty());
    assert!(problems(Path::new("builder/src/x.rs"), code).is_empty());
}

#[test]
fn test_items_are_left_out_and_the_code_after_them_kept() {
    let code = concat!(
        "//! A module.\n",
        "#[cfg(test)]\n",
        "mod tests;\n",
        "#[cfg(test)]\n",
        "fn fixture() -> &'static str { let _ = ('{', '\\'', r#\"}\"#, \"{\"); \"/tmp/x\" }\n",
        "const AT: &str = \"/pool\";\n",
        "#[cfg(test)]\n",
        "mod more {\n    fn f() { if true { \"/dev/vdb\"; } }\n}\n",
        "fn g() -> &'static str { \"/run\" }\n",
    );
    let found = literals(&without_tests(code));
    let got: Vec<(usize, &str)> = found.iter().map(|(n, t)| (*n, t.as_str())).collect();
    assert_eq!(got, [(6, "/pool"), (11, "/run")]);
}

//! Tidy: the workspace's house rules, checked by `#[test]`s (rust-analyzer's
//! `xtask/src/tidy.rs`). It runs in `cargo xtask test`'s unit tier (`cargo test -p xtask
//! --lib`), not among the boot tests, and reads every `.rs` file of every workspace member
//! (`src/`, `tests/`, `examples/`):
//!
//! - every file starts with a `//!` line;
//! - at most [`MAX_LINES`] lines of non-test code per file: the lines before the first
//!   `#[cfg(test)]`; integration tests (a crate's `tests/`) are test code and exempt;
//! - `unsafe` only in init's `sys` layer and the VMM ([`UNSAFE_ALLOWED`]), each use with a
//!   `// SAFETY:` comment at most [`SAFETY_REACH`] lines above it;
//! - in `init`, the PID 1 crate: no `anyhow`, no `process::exit` outside `main.rs`, and a
//!   `main.rs` under [`MAX_MAIN_LINES`] lines, and no root-path literal outside its paths
//!   module ([`root_paths`]);
//! - no silent settings: every `pub` field of the config's and the image manifest's models
//!   has a reader outside its crate, or a listed reason to have none ([`readers`]).

mod readers;
mod root_paths;

use std::path::{Path, PathBuf};

/// Non-test lines a file may have.
const MAX_LINES: usize = 400;

/// Lines init's `main.rs` stays under: it parses arguments and calls into the library.
const MAX_MAIN_LINES: usize = 100;

/// Where `unsafe` may appear (paths from the workspace root; a folder ends with `/`).
const UNSAFE_ALLOWED: &[&str] = &[
    // The one place PID 1 makes raw syscalls and ioctls.
    "init/src/sys/",
    // The VMM: KVM hands guest memory to the kernel by address (`KVM_SET_USER_MEMORY_REGION`),
    // which no safe wrapper can check.
    "vmm/src/",
    // The bench's floor `/init`: a freestanding `no_std` binary (no libc) that makes its few
    // syscalls in inline assembly; the bench compiles it with `rustc`, it is not crate code.
    "xtask/src/bench/floor_init.rs",
    // The escape suite's attacker: a static binary run inside a zone to try what a hostile
    // service would (mknod, setns, ptrace, raw frames, ...), each a raw syscall whose refusal
    // is the result. It is test tooling that never ships in an image, not a library.
    "xtask/src/bin/zone-escape.rs",
];

/// How many lines above an allowed use of the keyword its `// SAFETY:` comment may start (a
/// comment block naming the invariants, then the statement that holds the block).
const SAFETY_REACH: usize = 12;

/// The keyword, spelt so that this file does not use it.
const UNSAFE: &str = concat!("un", "safe");

/// The workspace root and the members named in its `Cargo.toml`.
fn members() -> (PathBuf, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("reading Cargo.toml");
    let list = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("Cargo.toml has a `members = [...]` line")
        .0;
    let members = list
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty());
    (root, members.map(str::to_string).collect())
}

/// Every `.rs` file under `dir` (but not in a `target` folder), as paths from `root`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() && entry.file_name() != "target" {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(root).expect("under the root").to_path_buf());
        }
    }
}

/// The code before the first `#[cfg(test)]` (unit tests do not count).
fn non_test(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// Whether `line` uses the keyword (not `unsafe_code` or `unsafe_name`), outside a comment.
fn uses_unsafe(line: &str) -> bool {
    let word = UNSAFE;
    let code = line.trim_start();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    !code.starts_with("//")
        && code.match_indices(word).any(|(at, _)| {
            let before = code[..at].chars().next_back();
            let after = code[at + word.len()..].chars().next();
            !before.is_some_and(ident) && !after.is_some_and(ident)
        })
}

/// Uses of the keyword in `text` with no `// SAFETY:` comment in the [`SAFETY_REACH`] lines
/// above them (or on the same line), one message each.
fn undocumented(path: &Path, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        // An `unsafe fn` declares a contract (its `# Safety` doc); `unsafe extern` blocks and
        // `unsafe` attributes (`#[unsafe(no_mangle)]`) promise nothing per call.
        let declares = [
            concat!("un", "safe fn"),
            concat!("pub un", "safe fn"),
            concat!("un", "safe extern"),
            "#[",
        ]
        .iter()
        .any(|d| code.starts_with(d));
        if !uses_unsafe(line) || declares {
            continue;
        }
        let from = n.saturating_sub(SAFETY_REACH);
        if !lines[from..=n].iter().any(|l| l.contains("SAFETY:")) {
            out.push(format!(
                "{}:{}: {UNSAFE} without a `// SAFETY:` comment above it naming its invariants",
                path.display(),
                n + 1
            ));
        }
    }
    out
}

/// What is wrong with one file (`path` from the workspace root), one message a problem.
fn problems(path: &Path, text: &str) -> Vec<String> {
    let shown = path.display();
    let mut out = Vec::new();
    if !text.starts_with("//!") {
        out.push(format!(
            "{shown}: does not start with a `//!` line saying what the file is for"
        ));
    }
    let is_integration_test = path.components().nth(1).is_some_and(|c| c.as_os_str() == "tests");
    let lines = non_test(text).lines().count();
    if !is_integration_test && lines > MAX_LINES {
        out.push(format!(
            "{shown}: {lines} lines of non-test code, over {MAX_LINES}: split it into modules named for what they do"
        ));
    }
    let slash = path.to_string_lossy();
    if UNSAFE_ALLOWED.iter().any(|allowed| slash.starts_with(allowed)) {
        out.extend(undocumented(path, text));
    } else {
        for (n, line) in text.lines().enumerate() {
            if uses_unsafe(line) {
                out.push(format!(
                    "{shown}:{}: {UNSAFE} outside init/src/sys/ and vmm/src/: move it into a sys layer",
                    n + 1
                ));
            }
        }
    }
    if path.starts_with("init") {
        let is_main = path.ends_with("src/main.rs");
        if text.contains(concat!("any", "how")) {
            out.push(format!("{shown}: uses anyhow: init's errors are typed (thiserror)"));
        }
        if !is_main && non_test(text).contains(concat!("process::", "exit")) {
            out.push(format!("{shown}: calls process::exit: PID 1 never exits"));
        }
        out.extend(root_paths::problems(path, text));
        if is_main && lines >= MAX_MAIN_LINES {
            out.push(format!(
                "{shown}: {lines} lines, not under {MAX_MAIN_LINES}: move the work into the library"
            ));
        }
    }
    out
}

#[test]
fn the_workspace_is_tidy() {
    let (root, members) = members();
    assert!(
        ["init", "config", "image", "builder", "vmm", "xtask"]
            .iter()
            .all(|m| members.iter().any(|n| n == m)),
        "members not found in Cargo.toml: {members:?}"
    );
    let mut files = Vec::new();
    for member in &members {
        rust_files(&root, &root.join(member), &mut files);
    }
    assert!(files.len() > 100, "found only {} Rust files", files.len());
    let mut bad = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(root.join(path)).expect("reading a source file");
        bad.extend(problems(path, &text));
    }
    assert!(bad.is_empty(), "{} tidy problem(s):\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn every_schema_field_has_a_reader() {
    let (root, members) = members();
    let mut files = Vec::new();
    for member in &members {
        rust_files(&root, &root.join(member), &mut files);
    }
    let bad = readers::problems(&root, &files);
    assert!(bad.is_empty(), "{} silent setting(s):\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn the_rules_catch_what_they_should() {
    let long = format!(
        "//! Long.\n{}#[cfg(test)]\nmod tests {{}}\n",
        "fn f() {}\n".repeat(MAX_LINES)
    );
    assert!(problems(Path::new("image/src/long.rs"), &long).len() == 1);
    assert!(problems(Path::new("image/tests/long.rs"), &long).is_empty());
    assert!(problems(Path::new("config/src/bare.rs"), "fn f() {}\n").len() == 1);
    let raw = concat!("//! Raw.\nfn f() { un", "safe { g() } }\n");
    assert!(problems(Path::new("builder/src/raw.rs"), raw).len() == 1);
    assert!(problems(Path::new("init/src/sys/raw.rs"), raw).len() == 1);
    let documented = concat!(
        "//! Raw.\nfn f() {\n    // SAFETY: g has no preconditions.\n    un",
        "safe { g() }\n}\n"
    );
    assert!(problems(Path::new("init/src/sys/raw.rs"), documented).is_empty());
    assert!(problems(Path::new("vmm/src/kvm.rs"), documented).is_empty());
    assert!(problems(Path::new("vmm/src/kvm.rs"), raw).len() == 1);
    assert!(problems(Path::new("xtask/src/bin/zone-escape.rs"), documented).is_empty());
    let lint = concat!("//! Lint.\n#![deny(un", "safe_code)]\n// un", "safe in a comment\n");
    assert!(problems(Path::new("init/src/lib.rs"), lint).is_empty());
}

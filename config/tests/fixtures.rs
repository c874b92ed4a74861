//! Fixture tests: every `accept/*.toml` parses; every `reject/*.toml` fails with the message
//! its first line names (`# expect: SUBSTRING`), at a line and column.

use std::fs;
use std::path::{Path, PathBuf};

use ramkey_config::Config;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn accepted_fixtures_parse() {
    for path in fixtures("accept") {
        let text = fs::read_to_string(&path).expect("read fixture");
        if let Err(e) = Config::parse(&text, "config.toml") {
            panic!("{} was rejected:\n{e}", path.display());
        }
    }
}

#[test]
fn rejected_fixtures_fail_with_their_message() {
    let mut failures = Vec::new();
    for path in fixtures("reject") {
        let text = fs::read_to_string(&path).expect("read fixture");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
        match Config::parse(&text, "config.toml") {
            Ok(_) => failures.push(format!("{}: accepted", path.display())),
            Err(e) => {
                let shown = e.to_string();
                if !shown.contains(expect.trim()) {
                    failures.push(format!("{}: expected {expect:?} in:\n{shown}", path.display()));
                }
                if !shown.starts_with("config.toml:") || e.errors.iter().any(|x| x.location.line == 0) {
                    failures.push(format!("{}: no line:col in:\n{shown}", path.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

//! Tidy checks: the crate's conventions, enforced as tests.

use std::path::{Path, PathBuf};

fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && entry.file_name() != "target" {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    assert!(out.len() > 10, "sources not found");
    out
}

/// The code before the first `#[cfg(test)]` (the unit tests do not count).
fn non_test(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

#[test]
fn every_file_starts_with_a_doc_line() {
    for (path, text) in sources() {
        assert!(text.starts_with("//!"), "{} must start with a //! line", path.display());
    }
}

#[test]
fn unsafe_only_in_sys() {
    for (path, text) in sources() {
        let in_sys = path.parent().is_some_and(|d| d.ends_with("src/sys"));
        if in_sys || path.ends_with("tests/tidy.rs") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains("unsafe") {
                panic!("{}:{}: unsafe outside src/sys/", path.display(), n + 1);
            }
        }
    }
}

#[test]
fn files_stay_small_and_main_thin() {
    for (path, text) in sources() {
        let lines = non_test(&text).lines().count();
        assert!(lines <= 400, "{}: {lines} non-test lines", path.display());
        if path.ends_with("src/main.rs") {
            assert!(lines < 100, "main.rs has {lines} lines");
        }
    }
}

#[test]
fn no_anyhow_and_no_process_exit_in_the_library() {
    for (path, text) in sources() {
        if path.ends_with("tests/tidy.rs") {
            continue;
        }
        assert!(!text.contains("anyhow"), "{}", path.display());
        if !path.ends_with("src/main.rs") {
            assert!(
                !non_test(&text).contains("process::exit"),
                "{}: PID 1 never exits",
                path.display()
            );
        }
    }
}

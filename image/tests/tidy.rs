//! Conventions of this crate, checked as tests: every Rust file starts with a `//!` line and
//! no file uses `unsafe` (this crate has no `sys` layer).

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_starts_with_a_module_doc_and_has_no_unsafe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    let unsafe_word = ["un", "safe "].concat();
    let mut bad = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        if !text.starts_with("//! ") {
            bad.push(format!("{}: first line is not a `//!` doc", path.display()));
        }
        if text.contains(&unsafe_word) {
            bad.push(format!("{}: uses unsafe", path.display()));
        }
    }
    assert!(files.len() > 10, "found only {} files", files.len());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

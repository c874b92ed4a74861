//! House rules for this crate, checked as tests: every `.rs` file starts with a `//!` line,
//! and there is no `unsafe` code.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").path()) {
        if entry.is_dir() {
            rust_files(&entry, out);
        } else if entry.extension().is_some_and(|e| e == "rs") {
            out.push(entry);
        }
    }
}

#[test]
fn every_file_has_a_module_doc_and_no_unsafe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(files.len() > 5);
    for file in files {
        let text = fs::read_to_string(&file).expect("read");
        assert!(
            text.starts_with("//!"),
            "{} does not start with a //! line",
            file.display()
        );
        let unsafe_word = ["un", "safe "].concat();
        assert!(!text.contains(&unsafe_word), "{} uses unsafe", file.display());
    }
}

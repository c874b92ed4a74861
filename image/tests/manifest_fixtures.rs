//! One fixture per accepted or rejected manifest under `tests/fixtures/manifests/`; the first
//! line `# expect: ...` says `ok` or a substring of the error message.

use std::fs;
use std::path::Path;

use ramkey_image::manifest::Manifest;

#[test]
fn every_fixture_gives_its_expected_result() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests");
    let mut entries: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: ...`"));
        let result = Manifest::parse(&text);
        match (expect, result) {
            ("ok", Ok(_)) => assert!(name.starts_with("good-"), "{name}"),
            ("ok", Err(e)) => failures.push(format!("{name}: expected ok, got: {e}")),
            (want, Ok(_)) => failures.push(format!("{name}: expected {want:?}, got ok")),
            (want, Err(e)) => {
                assert!(name.starts_with("bad-"), "{name}");
                let msg = e.to_string();
                if !msg.contains(want) {
                    failures.push(format!("{name}: expected {want:?} in: {msg}"));
                }
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} fixtures");
}

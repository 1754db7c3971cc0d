//! Every file under `tests/fixtures/valid` compiles; every file under `tests/fixtures/invalid`
//! fails with exactly the text in its `.expected` sibling (set `UPDATE_EXPECT=1` to rewrite them,
//! then review the diff).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Compiles with just the file name, so the expected text does not depend on the checkout path.
fn compile(path: &Path) -> Result<portcullis_config::Snapshot, portcullis_config::ConfigErrors> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = Path::new(path.file_name().unwrap());
    portcullis_config::compile(name, &text)
}

#[test]
fn valid_fixtures_compile() {
    for path in fixtures("valid") {
        if let Err(e) = compile(&path) {
            panic!("{} should be valid:\n{e}", path.display());
        }
    }
}

#[test]
fn invalid_fixtures_fail_with_the_expected_text() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut mismatches = Vec::new();
    for path in fixtures("invalid") {
        let actual = match compile(&path) {
            Ok(_) => panic!("{} should be invalid", path.display()),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if actual != expected {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                path.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

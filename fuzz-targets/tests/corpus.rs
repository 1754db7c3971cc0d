//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every past crash
//! (`fuzz/regressions/<target>/`) through the targets, on stable, in `cargo test`.
//!
//! libFuzzer is not involved: each file is one input given to the same function the
//! cargo-fuzz binary calls. A panic names the file, which reproduces it with
//! `fuzz/run.sh <target> <file>` (see `fuzz/README.md`).

#![allow(clippy::unwrap_used)]

use std::panic::catch_unwind;
use std::path::{Path, PathBuf};

use portcullis_fuzz_targets::{Target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of a directory, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn target(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no target {name}"))
}

fn replay(name: &str) {
    let run = target(name);
    let corpus = files(&fuzz_dir().join("corpus").join(name));
    // An empty corpus would make this test pass without testing anything.
    assert!(
        corpus.len() >= 20,
        "fuzz/corpus/{name} has {} inputs; run fuzz/run.sh {name} and commit it",
        corpus.len()
    );
    let regressions = files(&fuzz_dir().join("regressions").join(name));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        if catch_unwind(|| run(&data)).is_err() {
            panic!("{name}: {} fails (panic message above)", path.display());
        }
    }
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn config_structured_corpus() {
    replay("config_structured");
}

#[test]
fn allowlist_corpus() {
    replay("allowlist");
}

#[test]
fn routes_corpus() {
    replay("routes");
}

#[test]
fn broker_frame_corpus() {
    replay("broker_frame");
}

/// Every target has a cargo-fuzz binary and a replay test here, and nothing else does.
#[test]
fn every_target_is_fuzzed_and_replayed() {
    let mut binaries: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    binaries.sort();
    let mut names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    assert_eq!(binaries, names, "fuzz/fuzz_targets/*.rs and TARGETS differ");
    let this = include_str!("corpus.rs");
    for name in names {
        assert!(
            this.contains(&format!("replay(\"{name}\")")),
            "{name} has no replay test in tests/corpus.rs"
        );
    }
}

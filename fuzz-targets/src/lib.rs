//! The logic of Portcullis's fuzz targets, kept apart from libFuzzer so it runs on stable.
//!
//! Each target is a plain `fn(&[u8])` that feeds the bytes to one pure crate or function (config,
//! route table, path normaliser and accept rules, the broker tunnel's frame decoder) and **panics** when an invariant the crate
//! documents is broken; returning normally means the input is fine, including when the crate
//! rejected it with an error. Two harnesses call the same functions:
//!
//! - `fuzz/` (a cargo-fuzz crate outside the workspace, see `fuzz/README.md`) runs them under
//!   libFuzzer to *find* inputs that panic;
//! - `tests/corpus.rs` here replays the committed corpus (`fuzz/corpus/<target>/`) and every
//!   past crash (`fuzz/regressions/<target>/`) on stable, as part of `cargo test --workspace`.
//!
//! This crate is not a test suite of its own and has no IO: the checks are oracles written
//! from each crate's documented contract (a reference route lookup, the meaning of a path
//! kept by normalisation), not copies of the code they check.

pub mod allowlist;
pub mod broker;
pub mod config;
pub mod routes;

mod input;

/// A fuzz target: takes any bytes, panics when an invariant is broken.
pub type Target = fn(&[u8]);

/// Every target, by name. The name is the cargo-fuzz binary (`fuzz/fuzz_targets/<name>.rs`)
/// and the corpus directory (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config::text),
    ("config_structured", config::structured),
    ("allowlist", allowlist::run),
    ("routes", routes::run),
    ("broker_frame", broker::frame),
];

//! libFuzzer entry point of the `allowlist` target; the logic is
//! `portcullis_fuzz_targets::allowlist::run`, also replayed on stable by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz_targets::allowlist::run(data));

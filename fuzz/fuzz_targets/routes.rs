//! libFuzzer entry point of the `routes` target; the logic is
//! `portcullis_fuzz_targets::routes::run`, also replayed on stable by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz_targets::routes::run(data));

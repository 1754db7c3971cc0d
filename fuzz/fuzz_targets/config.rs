//! libFuzzer entry point of the `config` target; the logic is
//! `portcullis_fuzz_targets::config::text`, also replayed on stable by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz_targets::config::text(data));

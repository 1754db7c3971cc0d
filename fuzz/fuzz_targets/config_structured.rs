//! libFuzzer entry point of the `config_structured` target; the logic is
//! `portcullis_fuzz_targets::config::structured`, also replayed on stable by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz_targets::config::structured(data));

//! libFuzzer entry point of the `broker_frame` target; the logic is
//! `portcullis_fuzz_targets::broker::frame`, also replayed on stable by `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz_targets::broker::frame(data));

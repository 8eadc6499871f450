//! libFuzzer entry point; the logic is `strata_fuzz::targets::tuning_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_fuzz::targets::tuning_file(data);
});

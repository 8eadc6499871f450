//! libFuzzer entry point; the logic is `strata_fuzz::targets::index_search`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_fuzz::targets::index_search(data);
});

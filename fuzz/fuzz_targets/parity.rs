#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| projectclone_fuzz::targets::parity(data));

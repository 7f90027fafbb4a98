#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tongban_fuzz::bodies::license_id(data));

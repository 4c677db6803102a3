#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| serin::fuzzing::approval_request(data));

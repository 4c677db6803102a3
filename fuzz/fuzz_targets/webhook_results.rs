#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| serin::fuzzing::webhook_results(data));

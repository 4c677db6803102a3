#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| serin::fuzzing::slack_request(data));

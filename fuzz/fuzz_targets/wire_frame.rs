#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| earshot_fuzz::wire_frame(data));

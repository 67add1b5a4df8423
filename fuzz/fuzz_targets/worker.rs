#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| smux_fuzz::worker(data));

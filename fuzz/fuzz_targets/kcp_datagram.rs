#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| smux_fuzz::kcp_datagram(data));

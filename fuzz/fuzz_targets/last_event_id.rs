//! `Last-Event-ID`: exactly the safe decimal integers parse, to their value.
#![no_main]

#[path = "../../tests/bridge/oracles.rs"]
mod oracles;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = oracles::last_event_id(data) {
        panic!("{e}");
    }
});

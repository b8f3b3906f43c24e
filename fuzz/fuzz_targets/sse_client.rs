//! The typed SSE client reading the input as a stream body from a real socket: events or
//! typed errors, and an end; never a panic or a hang.
#![no_main]

use std::sync::LazyLock;

#[path = "../../tests/bridge/oracles.rs"]
mod oracles;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Runtime::new().expect("a runtime"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = RUNTIME.block_on(oracles::client_reads(data.to_vec())) {
        panic!("{e}");
    }
});

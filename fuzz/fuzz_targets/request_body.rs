//! The real routes on a real socket: the input as a POST body (first byte: with or without a
//! JSON content type) or, when the first byte says so, as the three identity headers (split at
//! `0xff`). Only the documented answers; never a 500 or a panic.
#![no_main]

use std::sync::LazyLock;

#[path = "../../tests/bridge/oracles.rs"]
mod oracles;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Runtime::new().expect("a runtime"));
static ROUTES: LazyLock<oracles::Routes> = LazyLock::new(|| RUNTIME.block_on(oracles::routes()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let checked = if mode & 2 == 0 {
        RUNTIME.block_on(ROUTES.post_body(rest.to_vec(), mode & 1 == 1))
    } else {
        let mut parts = rest.split(|&b| b == 0xff);
        let (user, email, token) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        RUNTIME.block_on(ROUTES.list_as(user, email, token))
    };
    if let Err(e) = checked {
        panic!("{e}");
    }
});

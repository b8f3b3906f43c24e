//! A run, step or event record overwritten with the input: reading the store is an error
//! naming the record, or the bytes decoded; never a panic. The first byte picks the record.
#![no_main]

use std::sync::LazyLock;

#[path = "../../tests/bridge/oracles.rs"]
mod oracles;

static BASE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(oracles::image_with_one_run())
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, garbage)) = data.split_first() else {
        return;
    };
    let record = match pick % 3 {
        0 => oracles::Record::Run,
        1 => oracles::Record::Step,
        _ => oracles::Record::Event,
    };
    if let Err(e) = oracles::stored_record(&BASE, record, garbage) {
        panic!("{e}");
    }
});

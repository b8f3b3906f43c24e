//! Engine integration tests, on real redb files in temp dirs.

// Tests may unwrap (the workspace denies it in library code only); helpers outside #[test]
// functions need the crate-level allowance.
#![allow(clippy::unwrap_used)]

mod control;
mod dedup;
mod emits;
mod limits;
mod recovery;
mod retries;
mod secrets;
mod spans;
mod state;
mod storage;
mod subscribe;
mod support;

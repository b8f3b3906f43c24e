//! Engine integration tests, on real redb files in temp dirs and on PostgreSQL schemas of
//! their own (`both_stores` runs the suite on the store this run does not use).

// Tests may unwrap (the workspace denies it in library code only); helpers outside #[test]
// functions need the crate-level allowance.
#![allow(clippy::unwrap_used)]

mod both_stores;
mod children;
mod control;
mod dedup;
mod emits;
mod faults;
mod limits;
mod matrix;
mod operator;
mod postgres;
mod power_loss;
mod recovery;
mod retries;
mod secrets;
mod spans;
mod state;
mod storage;
mod subscribe;
mod support;
mod typed_signals;
mod versions;
mod waits;

//! Engine integration tests, on real redb files in temp dirs.

mod control;
mod dedup;
mod limits;
mod recovery;
mod retries;
mod secrets;
mod storage;
mod subscribe;
mod support;

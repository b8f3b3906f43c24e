//! Macro tests: compile-time rejection (trybuild), event round trips, schema export, and a
//! `#[task]` running on a real flow.

#![allow(clippy::unwrap_used)]

mod roundtrip;
mod schema;
mod tasks;
mod ui;

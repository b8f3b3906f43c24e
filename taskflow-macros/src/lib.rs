//! Procedural macros for `taskflow`.
//!
//! Users never depend on this crate directly: `taskflow` re-exports its macros with an exact
//! version pin. The `#[task]` and `#[events]` attributes arrive with their own issue; until then
//! the `Task` and `Events` traits of `taskflow` are implemented by hand (see the
//! `quickstart` example).

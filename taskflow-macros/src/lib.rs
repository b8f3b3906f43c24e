//! Procedural macros for `taskflow`: `#[task]` and `#[events]`.
//!
//! Users never depend on this crate directly: `taskflow` re-exports both attributes with an
//! exact version pin, and the generated code reaches the runtime only through
//! `::taskflow::__private` (or the path given with `crate = "..."`).
//!
//! Each macro parses its input (`attr.rs`), builds a model and checks it (`events.rs`,
//! `task.rs`, `names.rs`), then generates code. Every rejection is a spanned error that says
//! what to write instead, and independent errors are reported together.

mod attr;
mod events;
mod names;
mod task;

use proc_macro::TokenStream;

/// The `#[events]` attribute. Use it as `taskflow::events`, which documents its keys.
#[proc_macro_attribute]
pub fn events(attr: TokenStream, item: TokenStream) -> TokenStream {
    events::expand(attr.into(), item.into()).into()
}

/// The `#[task]` attribute. Use it as `taskflow::task`, which documents its keys.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr.into(), item.into()).into()
}

//! Procedural macros for `taskflow`: `#[task]`, `#[events]` and `#[signals]`.
//!
//! Users never depend on this crate directly: `taskflow` re-exports both attributes with an
//! exact version pin, and the generated code reaches the runtime only through
//! `::taskflow::__private` (or the path given with `crate = "..."`).
//!
//! Each macro parses its input (`attr.rs`), builds a model and checks it (`wire_enum.rs`,
//! `task.rs`, `names.rs`), then generates code. Every rejection is a spanned error that says
//! what to write instead, and independent errors are reported together.

mod attr;
mod names;
mod task;
mod wire_enum;

use proc_macro::TokenStream;

/// The `#[events]` attribute. Use it as `taskflow::events`, which documents its keys.
#[proc_macro_attribute]
pub fn events(attr: TokenStream, item: TokenStream) -> TokenStream {
    wire_enum::expand(&wire_enum::EVENTS, attr.into(), item.into()).into()
}

/// The `#[signals]` attribute. Use it as `taskflow::signals`, which documents it.
#[proc_macro_attribute]
pub fn signals(attr: TokenStream, item: TokenStream) -> TokenStream {
    wire_enum::expand(&wire_enum::SIGNALS, attr.into(), item.into()).into()
}

/// The `#[task]` attribute. Use it as `taskflow::task`, which documents its keys.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    task::expand(attr.into(), item.into()).into()
}

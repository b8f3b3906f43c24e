//! Bridge tests over real loopback sockets. Frames are re-parsed by an independent SSE parser
//! (`eventsource-stream`), never by our own reader.

#![allow(clippy::unwrap_used)]

mod app;
mod approval;
mod caps;
mod client;
mod console;
mod cut;
mod disconnect;
mod errors;
mod frames;
mod fuzz;
mod hostile;
mod identity;
mod oracles;
mod reattach;
mod shutdown;
mod signal;
mod signal_route;
mod support;
mod typescript;
mod wire;

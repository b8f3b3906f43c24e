//! `cargo bench -p taskflow --bench sse`: the SSE bridge against raw axum and a raw fdatasync (the
//! benchmark itself is `benches/sse.rs` at the workspace root, in the `taskflow-tests` package).

mod forward;

fn main() -> std::process::ExitCode {
    forward::run("sse", true)
}

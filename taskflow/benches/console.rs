//! `cargo bench -p taskflow --bench console`: the operator console over 100,000 runs (the benchmark
//! itself is `benches/console.rs` at the workspace root, in the `taskflow-tests` package).

mod forward;

fn main() -> std::process::ExitCode {
    forward::run("console", false)
}

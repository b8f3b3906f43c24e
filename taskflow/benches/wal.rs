//! `cargo bench -p taskflow --bench wal`: the write-ahead log against raw redb (the benchmark
//! itself is `benches/wal.rs` at the workspace root, in the `taskflow-tests` package).

mod forward;

fn main() -> std::process::ExitCode {
    forward::run("wal", false)
}

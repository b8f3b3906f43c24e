//! `cargo bench -p taskflow --bench postgres`: the PostgreSQL store against raw commits on the same
//! server (the benchmark itself is `benches/postgres.rs` at the workspace root, in the
//! `taskflow-tests` package).

mod forward;

fn main() -> std::process::ExitCode {
    forward::run("postgres", false)
}

//! Runs one of the workspace's benchmarks from this package: they live in the unpublished
//! `taskflow-tests` package (with the demo, the cross-crate tests and their dependencies), so
//! `taskflow` packages on its own, and `cargo bench -p taskflow --bench <name>` still works.

use std::process::{Command, ExitCode};

/// Builds what the benchmark `name` needs and runs it, passing on its arguments; exits as it
/// did.
pub fn run(name: &str, needs_demo: bool) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Runs one cargo command in the workspace; `Err` says what failed.
    let cargo_step = |args: &[&str], what: &str| -> Result<(), String> {
        let status = Command::new(&cargo)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(args)
            .status()
            .map_err(|e| format!("could not run {cargo}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{what} failed: {status}"))
        }
    };
    // The memory phase measures the demo server process.
    let demo = [
        "build",
        "--release",
        "-p",
        "taskflow-tests",
        "--all-features",
        "--example",
        "demo",
    ];
    // cargo hands a benchmark `--bench`; the inner `cargo bench` adds its own.
    let passed: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut bench = vec![
        "bench",
        "-p",
        "taskflow-tests",
        "--all-features",
        "--bench",
        name,
        "--",
    ];
    bench.extend(passed.iter().map(String::as_str));
    let outcome = if needs_demo {
        cargo_step(
            &demo,
            &format!("building the demo for the {name} benchmark"),
        )
    } else {
        Ok(())
    }
    .and_then(|()| cargo_step(&bench, &format!("the {name} benchmark")));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

//! Runs one of the workspace's benchmarks from this package: they live in the unpublished
//! `taskflow-tests` package (with the demo, the cross-crate tests and their dependencies), so
//! `taskflow` packages on its own, and `cargo bench -p taskflow --bench <name>` still works.

use std::process::{Command, ExitCode};

/// Builds what the benchmark `name` needs and runs it, passing on its arguments; exits as it
/// did.
pub fn run(name: &str, needs_demo: bool) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = |command: &mut Command| {
        command
            .current_dir(workspace)
            .status()
            .map_err(|e| format!("could not run {cargo}: {e}"))
    };
    if needs_demo {
        // The memory phase measures the demo server process.
        match status(Command::new(&cargo).args([
            "build",
            "--release",
            "-p",
            "taskflow-tests",
            "--all-features",
            "--example",
            "demo",
        ])) {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("building the demo for the {name} benchmark failed: {s}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // cargo hands a benchmark `--bench`; the inner `cargo bench` adds its own.
    let passed: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut bench = Command::new(&cargo);
    bench
        .args([
            "bench",
            "-p",
            "taskflow-tests",
            "--all-features",
            "--bench",
            name,
        ])
        .arg("--")
        .args(passed);
    match status(&mut bench) {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("the {name} benchmark failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

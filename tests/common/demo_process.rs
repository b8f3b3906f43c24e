//! Launching the demo example as a real process, shared by the test binaries that need one
//! (included with `#[path]`: each integration test is its own crate).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `target/<profile>/examples/demo`, next to the test binary's `deps/` (cargo test builds the
/// examples before running tests).
pub fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/demo");
    assert!(
        path.exists(),
        "{} is missing: run the suite with `cargo test --workspace --all-features`, which builds the examples",
        path.display()
    );
    path
}

/// Starts the demo on `addr` with its data in `data`; returns the process and the URL it
/// printed.
pub fn start_demo(data: &Path, addr: &str) -> (Child, String) {
    let mut child = Command::new(demo_binary())
        .env("TASKFLOW_ADDR", addr)
        .env("TASKFLOW_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

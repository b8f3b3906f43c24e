//! The suite on every store: this binary runs its tests on the store `TASKFLOW_TEST_STORE`
//! names (redb when unset), and this test runs the binary again on the others, so
//! `cargo test` proves every engine test on redb, on redb with the event journal and on
//! PostgreSQL (the server on
//! 127.0.0.1:5432, or `TASKFLOW_TEST_DATABASE_URL`; a missing server fails the run saying how
//! to start one).

use std::process::Command;

use taskflow::testing::{TEST_STORE, TempStore};

/// One after the other (two suites at once would halve each one's cores): with the store this
/// run is on, all three are covered. The event journal changes how redb commits events and
/// how reads find them, so the whole suite runs on it too.
#[test]
fn the_suite_passes_on_the_other_stores() {
    let this = TempStore::new().kind();
    for other in ["redb", "redb-journal", "postgres"] {
        if other != this {
            run_the_suite_on(other);
        }
    }
}

fn run_the_suite_on(other: &str) {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(TEST_STORE, other)
        // `storage`, `faults` and `power_loss` are about the redb files themselves (their own
        // TempDataDir or in-memory backends, never the store TASKFLOW_TEST_STORE names): they
        // ran in this run already.
        .args([
            "--skip",
            "both_stores::",
            "--skip",
            "storage::",
            "--skip",
            "faults::",
            "--skip",
            "power_loss::",
            "--test-threads",
            "4",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .rfind(|l| l.starts_with("test result"))
        .unwrap_or("(no summary)");
    println!("engine suite on {other}: {summary}");
    assert!(
        output.status.success(),
        "the engine suite failed on {other}:\n{stdout}\n{stderr}"
    );
    let passed: usize = summary
        .split_whitespace()
        .skip_while(|w| *w != "ok." && *w != "FAILED.")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= 55,
        "the run on {other} ran only {passed} tests: {summary}"
    );
}

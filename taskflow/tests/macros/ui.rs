//! trybuild: every pass case compiles, every fail case fails with its snapshot; and the
//! snapshots themselves say what the cases claim.

use std::path::{Path, PathBuf};

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for area in ["task", "events", "settings", "signals"] {
        let dir = ui_dir().join(area).join(kind);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/*/pass/*.rs");
    t.compile_fail("tests/ui/*/fail/*.rs");
}

/// Each fail case starts with `// <phrase>`; its `.stderr` must contain the phrase, its first
/// `-->` must point into the case file, and no snapshot may mention `__private`.
#[test]
fn fail_snapshots_say_what_the_cases_claim() {
    let fails = cases("fail");
    assert!(fails.len() >= 50, "only {} fail cases", fails.len());
    for case in fails {
        let source = std::fs::read_to_string(&case).unwrap();
        let first = source.lines().next().unwrap_or_default();
        let phrase = first
            .strip_prefix("// ")
            .unwrap_or_else(|| panic!("{}: first line must be `// <phrase>`", case.display()))
            .trim();
        assert!(!phrase.is_empty(), "{}: empty phrase", case.display());
        let stderr_path = case.with_extension("stderr");
        let stderr = std::fs::read_to_string(&stderr_path)
            .unwrap_or_else(|_| panic!("{} has no snapshot", case.display()));
        assert!(
            stderr.contains(phrase),
            "{}: snapshot lacks {phrase:?}",
            stderr_path.display()
        );
        assert!(
            !stderr.contains("__private"),
            "{}: snapshot mentions __private",
            stderr_path.display()
        );
        let file = case.file_name().unwrap().to_string_lossy();
        let arrow = stderr
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("--> "))
            .unwrap_or_else(|| panic!("{}: no `-->`", stderr_path.display()));
        assert!(
            arrow.contains(&*file),
            "{}: first `-->` points at {arrow}, not into the case",
            stderr_path.display()
        );
    }
}

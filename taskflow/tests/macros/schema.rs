//! The JSON Schema and TypeScript export of a sample enum, against committed files.
//! Regenerate them with `TASKFLOW_BLESS=1 cargo test --test macros schema` and review the diff.

use std::path::Path;

use crate::roundtrip::Progress;

fn check(file: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(file);
    if std::env::var_os("TASKFLOW_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with TASKFLOW_BLESS=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs from the generated output",
        path.display()
    );
}

#[test]
fn typescript_matches_the_committed_declaration() {
    check("progress.d.ts", &Progress::typescript());
}

#[test]
fn json_schema_matches_the_committed_schema() {
    let mut text = serde_json::to_string_pretty(&Progress::json_schema()).unwrap();
    text.push('\n');
    check("progress.schema.json", &text);
}

/// A `#[signals]` enum: its TypeScript names the request body of each signal.
#[taskflow::signals]
pub enum Approval {
    Approve {
        by: String,
    },
    Reject,
    #[signal(name = "add-note")]
    AddNote(String),
}

#[test]
fn signals_typescript_matches_the_committed_declaration() {
    check("approval.d.ts", &Approval::typescript());
}

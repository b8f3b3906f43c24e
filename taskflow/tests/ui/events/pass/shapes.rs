// Struct, newtype and unit variants, doc comments, other derives, a renamed wire name.
use taskflow::Events;
use taskflow::prelude::*;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, JsonSchema)]
pub struct StageInfo {
    pub stage: String,
}

/// Progress of an import.
#[events]
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A tick.
    Tick {
        /// Done so far.
        value: u32,
        /// Of.
        total: u32,
    },
    /// A finished stage.
    #[event(name = "stage-done")]
    StageDone(StageInfo),
    /// Started.
    Started,
}

#[events]
pub enum Nothing {}

fn main() {
    assert_eq!(Progress::NAMES, ["tick", "stage-done", "started"]);
    assert!(Nothing::NAMES.is_empty());
    let _ = Progress::typescript();
}

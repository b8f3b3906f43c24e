// A #[signals] enum of every shape, declared on a task that waits for it.
#![deny(warnings, clippy::pedantic)]

use taskflow::prelude::*;
use taskflow::Signals as _;

#[derive(serde::Serialize, serde::Deserialize, JsonSchema)]
pub struct Note {
    pub text: String,
}

#[signals]
pub enum Approval {
    Approve { by: String },
    Reject,
    #[signal(name = "add-note")]
    AddNote(Note),
}

#[task(signals = Approval)]
async fn review(ctx: TaskContext<NoEvents>, _doc: String) -> Result<String, TaskError> {
    loop {
        match ctx.next_signal::<Approval>().await? {
            Approval::Approve { by } => return Ok(by),
            Approval::Reject => return Ok(String::new()),
            Approval::AddNote(_) => {}
        }
    }
}

fn main() {
    assert_eq!(Approval::NAMES, ["approve", "reject", "add-note"]);
    assert!(Approval::typescript().contains("\"add-note\""));
    let _ = review;
}

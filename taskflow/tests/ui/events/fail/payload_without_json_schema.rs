// JsonSchema
use taskflow::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Info {
    rows: u64,
}

#[events]
enum Progress {
    Done(Info),
}

fn main() {}

// #[events] expands hygienically next to local Result, Option, Box, core, std, taskflow.
#![allow(dead_code, non_camel_case_types)]

struct Result;
struct Option;
struct Box;
mod core {}
mod std {}
mod taskflow {}
mod serde {}
mod serde_json {}

#[derive(::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
struct Info {
    rows: u64,
}

#[::taskflow::events]
enum Progress {
    Tick { value: u32 },
    Done(Info),
    Started,
}

#[::taskflow::task(events = Progress)]
async fn count(
    ctx: ::taskflow::TaskContext<Progress>,
    n: u32,
) -> ::core::result::Result<u32, ::taskflow::TaskError> {
    ctx.emit(Progress::Tick { value: n }).await?;
    Ok(n)
}

fn main() {}

// #[events] with a renamed taskflow dependency.
extern crate taskflow as tf;

#[derive(serde::Serialize, serde::Deserialize, tf::schemars::JsonSchema)]
#[schemars(crate = "tf::schemars")]
struct Info {
    rows: u64,
}

#[tf::events(crate = "::tf")]
enum Progress {
    Tick { value: u32 },
    Done(Info),
}

fn main() {
    use tf::Events;
    assert_eq!(Progress::NAMES, ["tick", "done"]);
}

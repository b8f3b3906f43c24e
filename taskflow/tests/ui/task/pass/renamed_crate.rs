// A renamed taskflow dependency, named with `crate = "..."`.
extern crate taskflow as tf;

#[tf::events(crate = "::tf")]
enum Progress {
    Tick { value: u32 },
}

#[tf::task(crate = "::tf", name = "renamed")]
async fn renamed(ctx: tf::TaskContext<Progress>, n: u32) -> Result<u32, tf::TaskError> {
    ctx.emit(Progress::Tick { value: n }).await?;
    Ok(n)
}

fn main() {
    use tf::Task;
    assert_eq!(renamed::NAME, "renamed");
}

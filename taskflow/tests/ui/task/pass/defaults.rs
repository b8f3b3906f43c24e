// No keys: name from the fn, NoEvents, 3 attempts, auto-recover, 5 min, at_least_once; the
// body's step names (none) recorded.
use taskflow::Task;
use taskflow::prelude::*;

#[task]
async fn import_rows(_ctx: TaskContext<NoEvents>, rows: Vec<String>) -> Result<usize, std::io::Error> {
    Ok(rows.len())
}

fn main() {
    assert_eq!(import_rows::NAME, "import-rows");
    assert_eq!(
        import_rows.options(),
        taskflow::TaskOptions::default().known_steps(&[])
    );
    let handle: import_rows = import_rows;
    let _copy = handle;
    let _again = handle;
}

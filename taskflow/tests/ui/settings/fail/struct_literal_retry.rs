// has no field named `retry`
use taskflow::ExecuteTaskSettings;

fn main() {
    let _ = ExecuteTaskSettings { retry: 3 };
}

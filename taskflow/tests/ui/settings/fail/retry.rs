// `retry` is not an ExecuteTaskSettings setting
use taskflow::ExecuteTaskSettings;

fn main() {
    let _ = ExecuteTaskSettings::default().retry(3);
}

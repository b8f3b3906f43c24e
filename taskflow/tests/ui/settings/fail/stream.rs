// `stream` is not an ExecuteTaskSettings setting
use taskflow::ExecuteTaskSettings;

fn main() {
    let _ = ExecuteTaskSettings::default().stream(true);
}

// `timeout` is not an ExecuteTaskSettings setting
use taskflow::ExecuteTaskSettings;

fn main() {
    let _ = ExecuteTaskSettings::default().timeout(std::time::Duration::from_secs(30));
}

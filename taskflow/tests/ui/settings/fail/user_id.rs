// `user_id` is not an ExecuteTaskSettings setting
use taskflow::ExecuteTaskSettings;

fn main() {
    let _ = ExecuteTaskSettings::default().user_id("ann");
}

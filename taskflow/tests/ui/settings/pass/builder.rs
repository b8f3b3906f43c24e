// Every ExecuteTaskSettings builder method.
use std::num::NonZeroU32;
use std::time::Duration;

use taskflow::{ExecuteMode, ExecuteTaskSettings};

fn main() {
    let s = ExecuteTaskSettings::default()
        .cancel_on_disconnect(false)
        .disconnect_grace(Duration::from_secs(9))
        .execute_mode(ExecuteMode::AtMostOnce)
        .max_attempts(NonZeroU32::new(4).unwrap())
        .js_safe_integers(false)
        .keep_alive(Duration::from_secs(20));
    assert_eq!(s.get_cancel_on_disconnect(), Some(false));
    assert_eq!(s.get_max_attempts().map(NonZeroU32::get), Some(4));
}

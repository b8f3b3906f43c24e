//! Decoding what the bridge sends, which may carry integers beyond ±(2^53 − 1) as strings.

use serde_json::Value;

use crate::engine::{TaskEvent, decode_event};
use crate::sse::MAX_SAFE_INTEGER;
use crate::status::StoredEvent;
use crate::task::Task;

/// Decodes as sent; if that fails, once more with JS-safe integer strings turned back into
/// numbers (the bridge writes integers beyond ±(2^53 − 1) as strings).
pub(super) fn decode_lenient<T: Task>(event: StoredEvent) -> Result<TaskEvent<T>, String> {
    match decode_event::<T>(event.clone()) {
        Ok(e) => Ok(e),
        Err(first) => {
            let mut numbers = event;
            unstring_integers(&mut numbers.data);
            decode_event::<T>(numbers).map_err(|_| first.to_string())
        }
    }
}

fn unstring_integers(value: &mut Value) {
    match value {
        Value::String(s) => {
            let big = s.parse::<u64>().is_ok_and(|n| n > MAX_SAFE_INTEGER)
                || s.parse::<i64>()
                    .is_ok_and(|n| n.unsigned_abs() > MAX_SAFE_INTEGER);
            if big && let Ok(n) = s.parse::<serde_json::Number>() {
                *value = Value::Number(n);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unstring_integers),
        Value::Object(map) => map.values_mut().for_each(unstring_integers),
        _ => {}
    }
}

//! Rewriting integers JavaScript cannot hold exactly as decimal strings.

use serde_json::Value;

/// 2^53 − 1, the largest integer a JavaScript number holds exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn is_unsafe_integer(n: &serde_json::Number) -> bool {
    n.as_u64().is_some_and(|u| u > MAX_SAFE_INTEGER)
        || n.as_i64()
            .is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER)
}

/// Whether `value` holds an integer outside ±(2^53 − 1), i.e. whether
/// [`js_safe_integers`] would change it (read-only: nothing is copied).
#[must_use]
pub fn needs_js_safe_integers(value: &Value) -> bool {
    match value {
        Value::Number(n) => is_unsafe_integer(n),
        Value::Array(items) => items.iter().any(needs_js_safe_integers),
        Value::Object(map) => map.values().any(needs_js_safe_integers),
        _ => false,
    }
}

/// Replaces every integer outside ±(2^53 − 1) in `value` by its decimal string, recursively.
pub fn js_safe_integers(value: &mut Value) {
    match value {
        Value::Number(n) if is_unsafe_integer(n) => *value = Value::String(n.to_string()),
        Value::Array(items) => items.iter_mut().for_each(js_safe_integers),
        Value::Object(map) => map.values_mut().for_each(js_safe_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn large_integers_become_strings() {
        let mut v = json!({
            "ok": 9_007_199_254_740_991u64,
            "big": 9_007_199_254_740_992u64,
            "neg": -9_007_199_254_740_993i64,
            "list": [u64::MAX, 1, 1.5],
        });
        assert!(needs_js_safe_integers(&v));
        js_safe_integers(&mut v);
        assert!(!needs_js_safe_integers(&v));
        assert!(!needs_js_safe_integers(
            &json!({"a": [1, -2, 9_007_199_254_740_991u64, "x"]})
        ));
        assert_eq!(
            v,
            json!({
                "ok": 9_007_199_254_740_991u64,
                "big": "9007199254740992",
                "neg": "-9007199254740993",
                "list": ["18446744073709551615", 1, 1.5],
            })
        );
    }
}

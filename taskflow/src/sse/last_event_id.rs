//! Parsing `Last-Event-ID` (or the `last_event_id` query parameter).

use crate::ids::Seq;

use super::js_safe::MAX_SAFE_INTEGER;

/// Parses a `Last-Event-ID` value: `^[0-9]{1,16}$` and at most 2^53 − 1. Anything else
/// (empty, signs, exponents, fractions, spaces, larger numbers, 64 KiB of digits) is `None`,
/// which the bridge treats as "from the start". Never panics.
#[must_use]
pub fn parse_last_event_id(value: &str) -> Option<Seq> {
    if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = value.parse().ok()?;
    (n <= MAX_SAFE_INTEGER).then_some(Seq::new(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(parse_last_event_id("0"), Some(Seq::new(0)));
        assert_eq!(parse_last_event_id("42"), Some(Seq::new(42)));
        assert_eq!(
            parse_last_event_id("9007199254740991"),
            Some(Seq::new(MAX_SAFE_INTEGER))
        );
        let huge = "9".repeat(64 * 1024);
        for bad in [
            "",
            "abc",
            "-1",
            "+5",
            "1e3",
            "1.0",
            " 1",
            "1 ",
            "9007199254740992",
            "99999999999999999",
            &huge,
        ] {
            assert_eq!(parse_last_event_id(bad), None, "{bad:.20}");
        }
    }
}

//! Writing SSE frames: `id:`, `event:`, `data:` lines, comments and `retry:`.
//!
//! Written by hand rather than with axum's `Sse`, which sets headers of its own and panics on
//! CR/LF in a field: here a bad name is refused before anything is written, and a payload is
//! split into `data:` lines so that no line break inside it can start a new field or frame.

use std::fmt::Write as _;

use crate::ids::Seq;

/// Why a frame was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The event name is not a valid name (it could carry CR, LF or `:` into the stream).
    #[error("event name {0:?} is not a valid name")]
    InvalidName(String),
}

/// Refuses a name that breaks the runtime's name grammar, which the bridge's own frames
/// (`ready`, `error`, ...) follow too. It rules out CR, LF, NUL and ':'.
fn check_name(name: &str) -> Result<(), FrameError> {
    match crate::names::validate_name(name) {
        Ok(_) => Ok(()),
        Err(_) => Err(FrameError::InvalidName(name.chars().take(80).collect())),
    }
}

/// Appends one event frame: `id:` (when given), `event:`, one `data:` line per line of `data`,
/// then a blank line.
///
/// # Errors
/// [`FrameError::InvalidName`] when `name` breaks the name grammar.
pub fn write_event(
    out: &mut String,
    id: Option<Seq>,
    name: &str,
    data: &str,
) -> Result<(), FrameError> {
    check_name(name)?;
    if let Some(id) = id {
        let _ = writeln!(out, "id: {}", id.get());
    }
    let _ = writeln!(out, "event: {name}");
    // CRLF, CR and LF all end a line in SSE: each piece becomes its own data line, and the
    // client joins them with "\n".
    let mut rest = data;
    loop {
        match rest.find(['\r', '\n']) {
            Some(i) => {
                let _ = writeln!(out, "data: {}", &rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                let _ = writeln!(out, "data: {rest}");
                break;
            }
        }
    }
    out.push('\n');
    Ok(())
}

/// Appends one event frame whose payload is `data` as compact JSON: the same bytes as
/// [`write_event`] with `data.to_string()`, written straight into `out` (compact JSON escapes
/// every line break inside strings, so the payload is always one `data:` line).
///
/// # Errors
/// [`FrameError::InvalidName`] when `name` breaks the name grammar.
pub fn write_json_event(
    out: &mut Vec<u8>,
    id: Option<Seq>,
    name: &str,
    data: &serde_json::Value,
) -> Result<(), FrameError> {
    use std::io::Write as _;
    check_name(name)?;
    if let Some(id) = id {
        let _ = writeln!(out, "id: {}", id.get());
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing a `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// Appends a comment frame (`: text`), used as the keep-alive. Line breaks in `text` are
/// replaced by spaces so it stays one comment.
pub fn write_comment(out: &mut String, text: &str) {
    out.push_str(": ");
    out.extend(
        text.chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
    );
    out.push_str("\n\n");
}

/// Appends the reconnection delay the client should use.
pub fn write_retry(out: &mut String, millis: u64) {
    let _ = write!(out, "retry: {millis}\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_with_multiline_data() {
        let mut s = String::new();
        write_event(&mut s, Some(Seq::new(7)), "tick", "a\nb\r\nc\rd").expect("valid");
        assert_eq!(
            s,
            "id: 7\nevent: tick\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn json_event_is_the_same_frame_on_one_data_line() {
        let data =
            serde_json::json!({"text": "two\nlines\r\n", "n": [1, 2.5, null], "s": "é\u{2028}"});
        let mut expected = String::new();
        write_event(&mut expected, Some(Seq::new(9)), "tick", &data.to_string()).expect("valid");
        let mut out = Vec::new();
        write_json_event(&mut out, Some(Seq::new(9)), "tick", &data).expect("valid");
        assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
        assert_eq!(expected.matches("data: ").count(), 1);
        let mut out = Vec::new();
        assert!(write_json_event(&mut out, None, "a:b", &data).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn refuses_names_that_could_break_the_stream() {
        for bad in ["", "a\nb", "a:b", "a\rb", "A"] {
            let mut s = String::new();
            assert!(write_event(&mut s, None, bad, "{}").is_err());
            assert!(s.is_empty());
        }
    }

    #[test]
    fn comment_and_retry() {
        let mut s = String::new();
        write_comment(&mut s, "hb\nx");
        write_retry(&mut s, 2000);
        assert_eq!(s, ": hb x\n\nretry: 2000\n\n");
    }
}

//! The Server-Sent Events wire format, independent of any HTTP framework: the frame writer,
//! the `Last-Event-ID` parser and the JavaScript-safe integer rewrite. None of it can panic on
//! any input.

mod frame;
mod js_safe;
mod last_event_id;

pub use self::frame::{FrameError, write_comment, write_event, write_json_event, write_retry};
pub use self::js_safe::{MAX_SAFE_INTEGER, js_safe_integers, needs_js_safe_integers};
pub use self::last_event_id::parse_last_event_id;

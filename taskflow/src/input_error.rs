//! Input that does not decode, in words a person can act on: the message names the field it
//! is about, and says JSON's names for shapes (an object, an array) rather than Rust's.

/// Input that does not decode: the field's path (`None` for the whole input) and what to
/// tell the person who sent it.
#[derive(Debug)]
pub(crate) struct InputProblem {
    pub(crate) path: Option<String>,
    pub(crate) message: String,
}

/// Decodes a `T` from `de` (whose input is a JSON array when `is_array`), with the messages
/// of this module: the task routes, `Input<T>` and the registry all decode input through it.
pub(crate) fn decode<'de, T, D>(de: D, is_array: bool) -> Result<T, InputProblem>
where
    T: serde::de::DeserializeOwned,
    D: serde::Deserializer<'de>,
{
    if is_array && expects_object::<T>() {
        return Err(InputProblem {
            path: None,
            message: ARRAY_FOR_OBJECT.to_owned(),
        });
    }
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = field_path(e.path());
        InputProblem {
            message: describe(path.as_deref(), &e.inner().to_string()),
            path,
        }
    })
}

/// The message for a decoding error at `path` (serde_path_to_error's, `None` for the root).
pub(crate) fn describe(path: Option<&str>, message: &str) -> String {
    let message = json_words(message);
    match path {
        Some(path) => format!("{path}: {message}"),
        None => message,
    }
}

/// `path` as serde_path_to_error prints it, `None` for the root (`.`).
fn field_path(path: &serde_path_to_error::Path) -> Option<String> {
    let path = path.to_string();
    (path != ".").then_some(path)
}

/// Whether `T` decodes from a JSON object (a struct or a map). serde lets a struct decode from
/// an array too (its fields in order), so without this check an array sent for an object gets
/// an error about its first element instead of "expected an object".
pub(crate) fn expects_object<T: serde::de::DeserializeOwned>() -> bool {
    let mut object = false;
    let _ = T::deserialize(ShapeProbe {
        object: &mut object,
    });
    object
}

/// A deserializer that only records which shape it was asked for, then refuses.
struct ShapeProbe<'a> {
    object: &'a mut bool,
}

#[derive(Debug)]
struct Probed;

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shape probed")
    }
}

impl std::error::Error for Probed {}

impl serde::de::Error for Probed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Probed
    }
}

impl<'de> serde::Deserializer<'de> for ShapeProbe<'_> {
    type Error = Probed;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        *self.object = true;
        Err(Probed)
    }

    fn deserialize_map<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        *self.object = true;
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct enum identifier
        ignored_any
    }
}

/// The message for an array sent where an object is expected.
const ARRAY_FOR_OBJECT: &str = "invalid type: an array, expected an object";

/// serde's Rust-flavoured shape names in JSON's words: `struct Foo` → `an object`,
/// `sequence` → `an array`, `map` → `an object`.
fn json_words(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("struct ") {
        // Only a type name after `expected struct ` / `invalid type: struct `.
        let (head, tail) = rest.split_at(at);
        let name_len = tail["struct ".len()..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(tail.len() - "struct ".len());
        if name_len == 0 {
            out.push_str(head);
            out.push_str("struct ");
            rest = &tail["struct ".len()..];
            continue;
        }
        out.push_str(head);
        out.push_str("an object");
        rest = &tail["struct ".len() + name_len..];
    }
    out.push_str(rest);
    out.replace("invalid type: sequence", "invalid type: an array")
        .replace("invalid type: map", "invalid type: an object")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected an object")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_probe_knows_objects() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            a: u32,
        }
        assert!(expects_object::<S>());
        assert!(expects_object::<std::collections::HashMap<String, u32>>());
        assert!(!expects_object::<Vec<u32>>());
        assert!(!expects_object::<u32>());
        assert!(!expects_object::<serde_json::Value>());
    }

    #[test]
    fn messages_name_the_field_and_use_json_words() {
        assert_eq!(
            describe(
                Some("sleep_ms"),
                "invalid type: string \"fast\", expected u64"
            ),
            "sleep_ms: invalid type: string \"fast\", expected u64"
        );
        assert_eq!(
            describe(None, "invalid type: sequence, expected struct CountInput"),
            "invalid type: an array, expected an object"
        );
        assert_eq!(
            describe(
                Some("sleep_ms"),
                "a duration in milliseconds must be between 10 and 60000, got 5"
            ),
            "sleep_ms: a duration in milliseconds must be between 10 and 60000, got 5"
        );
        assert_eq!(
            describe(Some("items[0]"), "invalid type: map, expected a sequence"),
            "items[0]: invalid type: an object, expected an array"
        );
    }
}

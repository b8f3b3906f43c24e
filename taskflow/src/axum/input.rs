//! Request bodies as the task routes read them, and [`Input`], the same reading as an
//! extractor for an app's own handlers.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};

use super::http_error::HttpError;

/// A task input (or any JSON body) read the way the task routes read it: `Content-Type` must
/// be JSON (415 otherwise), the body limit applies (413), an empty body is `null`, and a body
/// that does not decode is 400 `invalid_input` naming the field's path. Rejections are
/// [`HttpError`]s in the routes' JSON shape, not axum's `text/plain` 422.
///
/// ```no_run
/// use taskflow::axum::{HttpError, Input};
///
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// async fn place(Input(order): Input<Order>) -> Result<String, HttpError> {
///     Ok(format!("order {}", order.id))
/// }
/// # let _: axum::Router = axum::Router::new().route("/orders", axum::routing::post(place));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<T>(pub T);

impl<S, T> FromRequest<S> for Input<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body = body_bytes(Bytes::from_request(request, state).await)?;
        let value = json_body::<T>(&headers, &body, "the input as JSON")?;
        match value {
            Some(v) => Ok(Input(v)),
            None => decode_null::<T>().map(Input),
        }
    }
}

/// An empty body is the input `null` (for `()` or optional inputs).
fn decode_null<T: serde::de::DeserializeOwned>() -> Result<T, HttpError> {
    serde_json::from_value(serde_json::Value::Null)
        .map_err(|e| HttpError::invalid_input(format!("the body is empty: {e}"), None))
}

pub(crate) fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, HttpError> {
    body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::new(
                status,
                "payload_too_large",
                "the request body is over the input limit",
            )
        } else {
            HttpError::invalid_input(r.body_text(), None)
        }
    })
}

fn json_content(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// The body as JSON: empty is `null`; anything else needs a JSON content type.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    expected: &str,
) -> Result<Option<T>, HttpError> {
    if body.is_empty() {
        return Ok(None);
    }
    if !json_content(headers) {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send {expected} with Content-Type: application/json"),
        ));
    }
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let mut de = serde_json::Deserializer::from_slice(body);
    crate::input_error::decode(&mut de, is_array)
        .map(Some)
        .map_err(|e| HttpError::invalid_input(e.message, e.path))
}

//! Demo-only sign-in: a browser cannot send the proxy's identity headers, so
//! `GET /sign-in?user=NAME` stores NAME in a cookie and this layer turns the cookie into the
//! `X-Forwarded-User` header the demo already trusts. `GET /sign-out` clears it. In a real
//! deployment the identity proxy sets the header and this file does not exist.

use axum::extract::{RawQuery, Request};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const COOKIE_NAME: &str = "taskflow_demo_user";

/// Adds `X-Forwarded-User` from the demo cookie when the request has no such header.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE_NAME}="))
                .map(str::to_owned)
        });
    if let Some(user) = user
        && !request.headers().contains_key("x-forwarded-user")
        && let Ok(value) = HeaderValue::from_str(&user)
    {
        request.headers_mut().insert("x-forwarded-user", value);
    }
    next.run(request).await
}

/// `GET /sign-in?user=NAME[&to=/path]`: signs in as NAME (letters, digits, `._@-`) and
/// redirects to `to` (default `/console`).
pub async fn sign_in(RawQuery(query): RawQuery) -> Response {
    let (mut user, mut to) = (String::new(), "/console".to_owned());
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("user", v)) => v.clone_into(&mut user),
            Some(("to", v)) if v.starts_with('/') && !v.starts_with("//") => v.clone_into(&mut to),
            _ => {}
        }
    }
    let valid = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            "sign in with /sign-in?user=NAME (letters, digits and ._@- only), e.g. /sign-in?user=admin",
        )
            .into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                SET_COOKIE,
                format!("{COOKIE_NAME}={user}; Path=/; HttpOnly; SameSite=Lax"),
            ),
            (LOCATION, to),
        ],
    )
        .into_response()
}

/// `GET /sign-out`: back to the anonymous service identity.
pub async fn sign_out() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (SET_COOKIE, format!("{COOKIE_NAME}=; Path=/; Max-Age=0")),
            (LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}

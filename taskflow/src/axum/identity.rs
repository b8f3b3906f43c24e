//! The user's identity from a trusted proxy's headers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::http_error::HttpError;
use crate::engine::TaskFlow;
use crate::identity::{AccessToken, UserContext, UserId};

/// Longest accepted user or email header, in bytes.
const MAX_IDENTITY_HEADER: usize = 256;
/// Longest accepted access-token header, in bytes (tokens such as JWTs are long).
const MAX_TOKEN_HEADER: usize = 16 * 1024;

/// Whether and whose proxy headers to trust. Off unless set with
/// [`TaskFlowBuilder::trust_proxy_headers`](crate::TaskFlowBuilder::trust_proxy_headers):
/// without it every request runs as the service identity, whatever headers it carries.
///
/// ```
/// use taskflow::axum::ProxyTrust;
///
/// // Behind a proxy that sets X-Forwarded-User and reaches us from 10.0.0.2 only:
/// let trust = ProxyTrust::new().from_peers(["10.0.0.2".parse().unwrap()]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ProxyTrust {
    user_header: String,
    email_header: String,
    token_header: String,
    peers: Option<Vec<IpAddr>>,
    secret: Option<(String, String)>,
}

impl Default for ProxyTrust {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyTrust {
    /// Trusts `X-Forwarded-User`, `X-Forwarded-Email` and `X-Forwarded-Access-Token` from any
    /// peer (production logs a warning for this: restrict it with [`from_peers`](Self::from_peers)
    /// or [`with_secret_header`](Self::with_secret_header)).
    pub fn new() -> Self {
        Self {
            user_header: "x-forwarded-user".into(),
            email_header: "x-forwarded-email".into(),
            token_header: "x-forwarded-access-token".into(),
            peers: None,
            secret: None,
        }
    }

    /// Uses other header names.
    pub fn header_names(mut self, user: &str, email: &str, token: &str) -> Self {
        self.user_header = user.to_ascii_lowercase();
        self.email_header = email.to_ascii_lowercase();
        self.token_header = token.to_ascii_lowercase();
        self
    }

    /// Trusts the headers only from these peer addresses (needs
    /// `into_make_service_with_connect_info::<SocketAddr>()`, as [`serve`](super::serve) does).
    pub fn from_peers(mut self, peers: impl IntoIterator<Item = IpAddr>) -> Self {
        self.peers = Some(peers.into_iter().collect());
        self
    }

    /// Trusts the headers only on requests that carry `header: value` (a secret shared with
    /// the proxy).
    pub fn with_secret_header(mut self, header: &str, value: &str) -> Self {
        self.secret = Some((header.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub(crate) fn is_unrestricted(&self) -> bool {
        self.peers.is_none() && self.secret.is_none()
    }

    fn trusts(&self, parts: &Parts) -> bool {
        if let Some(peers) = &self.peers {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            if !peer.is_some_and(|p| peers.contains(&p)) {
                return false;
            }
        }
        if let Some((name, value)) = &self.secret {
            let given = parts.headers.get(name.as_str()).map(|v| v.as_bytes());
            if given != Some(value.as_bytes()) {
                return false;
            }
        }
        true
    }

    /// The user of a request, `Ok(None)` for none, `Err` for a malformed identity header.
    pub(crate) fn user(&self, parts: &Parts) -> Result<Option<UserContext>, HttpError> {
        if !self.trusts(parts) {
            return Ok(None);
        }
        let headers = &parts.headers;
        let Some(id) = header(headers, &self.user_header, MAX_IDENTITY_HEADER)? else {
            return Ok(None);
        };
        let id = UserId::new(id).map_err(|e| HttpError::unauthenticated(e.to_string()))?;
        let mut user = UserContext::new(id);
        if let Some(email) = header(headers, &self.email_header, MAX_IDENTITY_HEADER)? {
            user = user.with_email(email);
        }
        if let Some(token) = header(headers, &self.token_header, MAX_TOKEN_HEADER)? {
            user = user.with_access_token(AccessToken::new(token));
        }
        Ok(Some(user))
    }
}

/// A header's value: absent is `None`; empty, not UTF-8 or longer than `max` is 401.
fn header(headers: &HeaderMap, name: &str, max: usize) -> Result<Option<String>, HttpError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > max {
        return Err(HttpError::unauthenticated(format!(
            "header {name} must be 1 to {max} bytes"
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| HttpError::unauthenticated(format!("header {name} is not UTF-8")))?;
    Ok(Some(text.to_owned()))
}

/// Extracts the request's user, if the flow trusts proxy headers and the request carries them:
/// `MaybeUser(None)` runs as the service identity. Malformed identity headers are rejected
/// with 401.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<UserContext>);

impl<S> FromRequestParts<S> for MaybeUser
where
    TaskFlow: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let flow = TaskFlow::from_ref(state);
        match &flow.inner.config.proxy_trust {
            None => Ok(MaybeUser(None)),
            Some(trust) => trust
                .user(parts)
                .map(MaybeUser)
                .map_err(IntoResponse::into_response),
        }
    }
}

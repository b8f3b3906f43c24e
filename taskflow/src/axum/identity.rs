//! The request's user: [`UserContext`] as an extractor (read from the request's extensions,
//! where the app's own auth middleware or [`ProxyIdentityLayer`] put it), and the built-in
//! provider that reads a trusted reverse proxy's headers.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::http_error::HttpError;
use crate::engine::{Environment, TaskFlow};
use crate::identity::{AccessToken, UserContext, UserId};

/// Longest accepted user or email header, in bytes.
const MAX_IDENTITY_HEADER: usize = 256;
/// Longest accepted access-token header, in bytes (tokens such as JWTs are long).
const MAX_TOKEN_HEADER: usize = 16 * 1024;

/// Whether and whose proxy headers to trust: one identity provider, applied as a layer with
/// [`ProxyTrust::layer`]. Without it (and without the app's own middleware inserting a
/// [`UserContext`]) every request runs as the service identity, whatever headers it carries.
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

    /// Trusts the headers only from these peer addresses; a request from any other peer is
    /// refused with 401, and so is every request when the server does not provide peer
    /// addresses (it needs `into_make_service_with_connect_info::<SocketAddr>()`, as
    /// [`serve`](super::serve) does).
    pub fn from_peers(mut self, peers: impl IntoIterator<Item = IpAddr>) -> Self {
        self.peers = Some(peers.into_iter().collect());
        self
    }

    /// Trusts the headers only on requests that carry `header: value` (a secret shared with
    /// the proxy, compared in constant time); a request without it, or with another value, is
    /// refused with 401.
    pub fn with_secret_header(mut self, header: &str, value: &str) -> Self {
        self.secret = Some((header.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The layer that applies this trust to `flow`'s routes (and to the app's handlers under
    /// it): a trusted request's identity headers become the request's [`UserContext`];
    /// malformed identity headers are answered with 401. In production an unrestricted trust
    /// logs a warning here.
    ///
    /// ```no_run
    /// # async fn demo(flow: taskflow::TaskFlow) {
    /// use taskflow::axum::{ProxyTrust, routes};
    ///
    /// let app: axum::Router = axum::Router::new()
    ///     .nest("/api", routes(flow.clone()))
    ///     .layer(ProxyTrust::new().layer(&flow));
    /// # }
    /// ```
    pub fn layer(self, flow: &TaskFlow) -> ProxyIdentityLayer {
        if flow.environment() == Environment::Production && self.is_unrestricted() {
            tracing::warn!(
                "proxy identity headers are trusted from any peer in production; restrict them with ProxyTrust::from_peers or with_secret_header"
            );
        }
        ProxyIdentityLayer {
            trust: Arc::new(self),
        }
    }

    fn is_unrestricted(&self) -> bool {
        self.peers.is_none() && self.secret.is_none()
    }

    /// Whether the request comes from the trusted proxy: `Err` (401) when it does not, or
    /// when the server cannot tell (no peer address). A request that fails the trust is never
    /// quietly served as the service identity.
    fn check_trust(&self, parts: &Parts) -> Result<(), HttpError> {
        if let Some(peers) = &self.peers {
            let Some(peer) = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
            else {
                tracing::error!(
                    "ProxyTrust::from_peers needs the peer address: serve with into_make_service_with_connect_info::<SocketAddr>() (taskflow::axum::serve does)"
                );
                return Err(HttpError::unauthenticated(
                    "the server cannot see the peer address it needs to trust the proxy",
                ));
            };
            if !peers.contains(&peer) {
                return Err(HttpError::unauthenticated(
                    "requests must come through the trusted proxy",
                ));
            }
        }
        if let Some((name, value)) = &self.secret {
            let given = parts
                .headers
                .get(name.as_str())
                .map_or(&[][..], |v| v.as_bytes());
            // Constant-time: the comparison does not tell an attacker how much of a guess
            // was right (only the length is not hidden).
            if !bool::from(subtle::ConstantTimeEq::ct_eq(given, value.as_bytes())) {
                return Err(HttpError::unauthenticated(
                    "requests must come through the trusted proxy",
                ));
            }
        }
        Ok(())
    }

    /// The user of a request, `Ok(None)` for none, `Err` for a malformed identity header or
    /// a request that fails the trust.
    pub(crate) fn user(&self, parts: &Parts) -> Result<Option<UserContext>, HttpError> {
        self.check_trust(parts)?;
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

/// The tower layer made by [`ProxyTrust::layer`].
#[derive(Debug, Clone)]
pub struct ProxyIdentityLayer {
    trust: Arc<ProxyTrust>,
}

impl<S> tower_layer::Layer<S> for ProxyIdentityLayer {
    type Service = ProxyIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProxyIdentity {
            inner,
            trust: self.trust.clone(),
        }
    }
}

/// The service of [`ProxyIdentityLayer`]: resolves the proxy user, then calls `S`.
#[derive(Debug, Clone)]
pub struct ProxyIdentity<S> {
    inner: S,
    trust: Arc<ProxyTrust>,
}

impl<S> tower_service::Service<Request> for ProxyIdentity<S>
where
    S: tower_service::Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        match self.trust.user(&parts) {
            Ok(Some(user)) => {
                parts.extensions.insert(user);
            }
            Ok(None) => {}
            Err(e) => return Box::pin(std::future::ready(Ok(e.into_response()))),
        }
        Box::pin(self.inner.call(Request::from_parts(parts, body)))
    }
}

/// The request's user, as the app's auth middleware or [`ProxyIdentityLayer`] left it in the
/// request's extensions. As `UserContext` the extractor refuses a request without a user (401
/// in the routes' JSON shape); as `Option<UserContext>` it yields `None` for one.
impl<S: Send + Sync> FromRequestParts<S> for UserContext {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<UserContext>()
            .cloned()
            .ok_or_else(|| HttpError::unauthenticated("sign in: this route needs a user"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for UserContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<UserContext>().cloned())
    }
}

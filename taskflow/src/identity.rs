//! Who a call runs as: the service identity or a user, and the user's live context.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user's stable id (from `X-Forwarded-User` behind a trusted proxy). It is part of the
/// idempotency key and is the only piece of identity ever persisted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Wraps a user id.
    ///
    /// # Errors
    /// When `id` is empty or longer than 256 bytes.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidUserId> {
        let id = id.into();
        if id.is_empty() || id.len() > 256 {
            return Err(InvalidUserId);
        }
        Ok(Self(id))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user id that is empty or longer than 256 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a user id must be 1 to 256 bytes long")]
pub struct InvalidUserId;

/// A secret the user's request carried (an access token). Redacted in `Debug`, not
/// serialisable, never written to the write-ahead log or to logs.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the handler that must forward it.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// The live identity of the user a call runs for. Kept in memory for the run until it reaches
/// a terminal state or the process restarts; reaches the handler as
/// [`TaskContext::user`](crate::TaskContext::user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserContext {
    id: UserId,
    email: Option<String>,
    access_token: Option<AccessToken>,
}

impl UserContext {
    /// A context for `id` with no email and no token.
    #[must_use]
    pub fn new(id: UserId) -> Self {
        Self {
            id,
            email: None,
            access_token: None,
        }
    }

    /// Adds the user's email.
    #[must_use]
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Adds the user's access token.
    #[must_use]
    pub fn with_access_token(mut self, token: AccessToken) -> Self {
        self.access_token = Some(token);
        self
    }

    /// The user's id.
    #[must_use]
    pub fn id(&self) -> &UserId {
        &self.id
    }

    /// The user's email, if the proxy sent one.
    #[must_use]
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The user's access token, if the proxy sent one.
    #[must_use]
    pub fn access_token(&self) -> Option<&AccessToken> {
        self.access_token.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_in_debug() {
        let ctx = UserContext::new(UserId::new("ann").expect("valid"))
            .with_access_token(AccessToken::new("tok-SECRET"));
        let dbg = format!("{ctx:?}");
        assert!(dbg.contains("ann"));
        assert!(!dbg.contains("tok-SECRET"), "{dbg}");
    }

    #[test]
    fn user_id_bounds() {
        assert!(UserId::new("").is_err());
        assert!(UserId::new("x".repeat(257)).is_err());
        assert!(UserId::new("x".repeat(256)).is_ok());
    }
}

//! Who may use the operator console: an explicit rule, closed by default.

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::identity::UserContext;

type Rule = dyn Fn(Option<&UserContext>, &HeaderMap) -> bool + Send + Sync;

/// Who may open the operator console ([`console_with`](super::console_with)). The console sees
/// and steers every owner's runs, so nobody may until a rule says so.
///
/// ```
/// use taskflow::axum::ConsoleAccess;
///
/// // These user ids (as the request's `UserContext` says, e.g. from `ProxyTrust`).
/// let admins = ConsoleAccess::users(["admin", "oncall@example.com"]);
/// // Whoever the proxy puts in the `operators` group (a comma-separated header).
/// let group = ConsoleAccess::role_header("x-forwarded-groups", "operators");
/// // Any rule of your own on the user.
/// let staff = ConsoleAccess::when(|user| user.email().is_some_and(|e| e.ends_with("@example.com")));
/// # let _ = (admins, group, staff);
/// ```
#[derive(Clone)]
pub struct ConsoleAccess {
    rule: Arc<Rule>,
    what: &'static str,
}

impl std::fmt::Debug for ConsoleAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleAccess")
            .field("rule", &self.what)
            .finish()
    }
}

impl Default for ConsoleAccess {
    /// [`nobody`](Self::nobody).
    fn default() -> Self {
        Self::nobody()
    }
}

impl ConsoleAccess {
    /// Nobody: every request is 403 (what [`console`](super::console) uses).
    #[must_use]
    pub fn nobody() -> Self {
        Self {
            rule: Arc::new(|_, _| false),
            what: "nobody",
        }
    }

    /// The users with these ids (the request's [`UserContext`]); a request without a user is
    /// refused.
    #[must_use]
    pub fn users<I, U>(ids: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let ids: Vec<String> = ids.into_iter().map(Into::into).collect();
        Self {
            rule: Arc::new(move |user, _| {
                user.is_some_and(|u| ids.iter().any(|id| id == u.id().as_str()))
            }),
            what: "users",
        }
    }

    /// Requests whose header `name` (a comma-separated list, as identity proxies send groups
    /// or roles) holds `role`. Use it only behind a proxy that sets the header and strips it
    /// from what clients send.
    #[must_use]
    pub fn role_header(name: &'static str, role: impl Into<String>) -> Self {
        let role = role.into();
        Self {
            rule: Arc::new(move |_, headers| {
                headers.get_all(name).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.split(',').any(|r| r.trim() == role))
                })
            }),
            what: "role header",
        }
    }

    /// Users for whom `rule` is true; a request without a user is refused.
    #[must_use]
    pub fn when(rule: impl Fn(&UserContext) -> bool + Send + Sync + 'static) -> Self {
        Self {
            rule: Arc::new(move |user, _| user.is_some_and(&rule)),
            what: "closure",
        }
    }

    /// Whether this request may use the console.
    pub(crate) fn allows(&self, user: Option<&UserContext>, headers: &HeaderMap) -> bool {
        (self.rule)(user, headers)
    }
}

//! [`PgConfig`]: where the PostgreSQL store connects, and how a failure names the server.

use std::str::FromStr;
use std::time::Duration;

use crate::error::BuildError;

/// Default schema of taskflow's tables.
pub const DEFAULT_SCHEMA: &str = "taskflow";
/// Default time after which a run whose owner stopped renewing its lease is claimed by
/// another process.
pub const DEFAULT_STALE_THRESHOLD: Duration = Duration::from_secs(30);

/// How to reach the database and which schema holds taskflow's tables.
///
/// ```
/// use std::time::Duration;
/// use taskflow::store::PgConfig;
///
/// let config = PgConfig::new("postgres://app@db.internal:5432/app")
///     .schema("jobs")
///     .stale_threshold(Duration::from_secs(10));
/// assert_eq!(config.schema_name(), "jobs");
/// ```
#[derive(Clone)]
pub struct PgConfig {
    pub(super) url: String,
    pub(super) schema: String,
    pub(super) stale_threshold: Duration,
}

impl std::fmt::Debug for PgConfig {
    /// Never prints the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("server", &describe(&self.url))
            .field("schema", &self.schema)
            .field("stale_threshold", &self.stale_threshold)
            .finish()
    }
}

impl PgConfig {
    /// A libpq-style connection string: a URL (`postgres://user:pw@host:port/db`) or
    /// `key=value` pairs (`host=localhost user=app dbname=app`). TLS is not supported yet:
    /// connect over a trusted network or a local socket (`sslmode=require` is refused).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: DEFAULT_SCHEMA.to_owned(),
            stale_threshold: DEFAULT_STALE_THRESHOLD,
        }
    }

    /// The schema of taskflow's tables (default `taskflow`; created if missing). Lowercase
    /// letters, digits and `_`, starting with a letter or `_`, at most 54 bytes (its
    /// notification channel, `taskflow_` and the name, must fit PostgreSQL's 63).
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The schema name in use.
    #[must_use]
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// After how long without a lease renewal another process may claim a run (default
    /// 30 s). Leases are renewed every heartbeat interval (5 s by default) and at least
    /// three times per threshold, and expire by the database's clock, never the app's.
    #[must_use]
    pub fn stale_threshold(mut self, after: Duration) -> Self {
        self.stale_threshold = after;
        self
    }

    /// The stale threshold in use.
    #[must_use]
    pub fn stale_after(&self) -> Duration {
        self.stale_threshold
    }

    pub(super) fn parse(&self) -> Result<tokio_postgres::Config, BuildError> {
        let config =
            tokio_postgres::Config::from_str(&self.url).map_err(|e| BuildError::Postgres {
                server: describe(&self.url),
                reason: format!("the connection string does not parse ({e})"),
            })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(self.error(
                "sslmode=require is not supported by this taskflow (no TLS yet); connect over a \
                 trusted network or a local socket",
            ));
        }
        Ok(config)
    }

    pub(super) fn quoted_schema(&self) -> Result<String, BuildError> {
        let s = &self.schema;
        let valid = !s.is_empty()
            && s.len() <= 54
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(format!("\"{s}\""))
        } else {
            Err(BuildError::InvalidSetting(format!(
                "PostgreSQL schema `{s}`: use lowercase letters, digits and `_`, starting with a \
                 letter or `_`, at most 54 bytes"
            )))
        }
    }

    /// The channel the schema's commits are notified on (a valid schema name makes it a
    /// valid channel name and string literal).
    pub(super) fn channel(&self) -> String {
        format!("taskflow_{}", self.schema)
    }

    /// A [`BuildError::Postgres`] about this server.
    pub(super) fn error(&self, reason: impl Into<String>) -> BuildError {
        BuildError::Postgres {
            server: describe(&self.url),
            reason: reason.into(),
        }
    }
}

impl From<&str> for PgConfig {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for PgConfig {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

/// `host:port, database D, user U` of a connection string, without its password.
pub(crate) fn describe(url: &str) -> String {
    let Ok(config) = tokio_postgres::Config::from_str(url) else {
        return "(a connection string that does not parse)".to_owned();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let host = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .map_or_else(|| "(the user's name)".to_owned(), str::to_owned);
    let user = config.get_user().unwrap_or("(the OS user)");
    format!("{host}:{port}, database `{db}`, user `{user}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_names_the_server_never_the_password() {
        let d = describe("postgres://app:hunter2@db.example:6543/orders");
        assert_eq!(d, "db.example:6543, database `orders`, user `app`");
        assert!(!format!("{:?}", PgConfig::new("postgres://app:hunter2@db/x")).contains("hunter2"));
        let d = describe("host=h user=u password=hunter2 dbname=d");
        assert!(!d.contains("hunter2") && d.contains("h:5432"), "{d}");
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(PgConfig::new("x").schema("tf_1").quoted_schema().is_ok());
        for bad in ["", "Upper", "1abc", "a-b", "a\"b", &"x".repeat(55)] {
            assert!(
                PgConfig::new("x").schema(bad).quoted_schema().is_err(),
                "{bad}"
            );
        }
    }
}

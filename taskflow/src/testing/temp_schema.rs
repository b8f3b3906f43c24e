//! [`TempSchema`]: a PostgreSQL schema of its own for one test, dropped after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::TaskFlowBuilder;
use crate::store::PgConfig;

/// The environment variable naming the PostgreSQL server tests use (a libpq-style URL);
/// unset, they use `postgres://postgres@127.0.0.1:5432/test`.
pub const TEST_DATABASE_URL: &str = "TASKFLOW_TEST_DATABASE_URL";

/// The stale threshold of a [`TempSchema`]'s flows.
pub const TEST_STALE_THRESHOLD: Duration = Duration::from_millis(600);
/// The heartbeat interval of a [`TempSchema`]'s flows.
pub const TEST_HEARTBEAT: Duration = Duration::from_millis(100);

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh, empty PostgreSQL schema for one test, dropped (with everything in it) on drop.
/// Several flows built from one `TempSchema` share its tables, as processes sharing one
/// database do; a flow built again after a crash finds what the crashed one left.
///
/// ```no_run
/// # async fn demo() -> Result<(), taskflow::Error> {
/// let schema = taskflow::testing::TempSchema::new();
/// let flow = schema.builder().build().await?;
/// # flow.shutdown().await?; Ok(()) }
/// ```
#[derive(Debug)]
pub struct TempSchema {
    url: String,
    name: String,
}

impl TempSchema {
    /// Creates the schema on the server [`TEST_DATABASE_URL`] names.
    ///
    /// # Panics
    /// When no PostgreSQL server answers there, with a message saying how to start one: a
    /// test that needs PostgreSQL never passes without it.
    #[must_use]
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let url = std::env::var(TEST_DATABASE_URL).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "taskflow_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let schema = Self { url, name };
        if let Err(e) = schema.execute(&format!("CREATE SCHEMA \"{}\"", schema.name)) {
            panic!(
                "this test needs a PostgreSQL server at {} (set {TEST_DATABASE_URL} to use \
                 another), and that failed: {e}. Start one, for example `sudo pg_ctlcluster 15 \
                 main start` on Debian or `docker run -d -p 5432:5432 -e \
                 POSTGRES_HOST_AUTH_METHOD=trust postgres:15`",
                super::super::store::postgres_describe(&schema.url),
            );
        }
        schema
    }

    /// The schema's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store configuration for this schema, with a stale threshold of
    /// [`TEST_STALE_THRESHOLD`]: a test that crashes a flow waits that long before another
    /// flow may claim its runs.
    #[must_use]
    pub fn config(&self) -> PgConfig {
        PgConfig::new(self.url.clone())
            .schema(self.name.clone())
            .stale_threshold(TEST_STALE_THRESHOLD)
    }

    /// A builder whose store is this schema, with heartbeats every [`TEST_HEARTBEAT`] (so
    /// leases are renewed well within [`TEST_STALE_THRESHOLD`] and interrupted runs are
    /// claimed soon after it).
    pub fn builder(&self) -> TaskFlowBuilder {
        crate::TaskFlow::builder()
            .postgres(self.config())
            .heartbeat_interval(TEST_HEARTBEAT)
    }

    /// Runs `sql` on a connection of its own, on a thread of its own (usable from `Drop` and
    /// from inside a runtime).
    fn execute(&self, sql: &str) -> Result<(), String> {
        let url = self.url.clone();
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| crate::store::postgres_reason(&e))?;
                let driver = tokio::spawn(connection);
                let done = client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| crate::store::postgres_reason(&e));
                drop(client);
                let _ = driver.await;
                done
            })
        })
        .join()
        .map_err(|_| "the SQL thread panicked".to_owned())?
    }
}

impl Default for TempSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        if let Err(e) = self.execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name)) {
            eprintln!("taskflow test: could not drop schema {}: {e}", self.name);
        }
    }
}

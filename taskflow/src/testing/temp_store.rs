//! [`TempStore`]: a temp data dir or a temp PostgreSQL schema, chosen by the environment, so
//! one test suite runs on both stores.

use std::path::Path;

use super::TempDataDir;
use crate::TaskFlowBuilder;

/// The environment variable choosing the store [`TempStore::new`] makes: `redb` (or unset),
/// `redb-journal` (redb with the event journal) or `postgres` (needs feature `postgres`).
pub const TEST_STORE: &str = "TASKFLOW_TEST_STORE";

/// Where a test's flows keep their log: a temp redb data dir or (feature `postgres`) a temp
/// PostgreSQL schema, removed on drop.
#[derive(Debug)]
#[non_exhaustive]
pub enum TempStore {
    /// A redb file in a temp dir.
    Redb(TempDataDir),
    /// A redb file with the event journal in front of it, in a temp dir.
    RedbJournal(TempDataDir),
    /// A PostgreSQL schema of its own.
    #[cfg(feature = "postgres")]
    Postgres(super::TempSchema),
}

impl TempStore {
    /// The store [`TEST_STORE`] names.
    ///
    /// # Panics
    /// When [`TEST_STORE`] holds something else, or `postgres` without feature `postgres`,
    /// or (for `postgres`) when no server answers: never a silent fallback to redb.
    #[must_use]
    pub fn new() -> Self {
        match std::env::var(TEST_STORE).ok().as_deref() {
            None | Some("" | "redb") => Self::Redb(TempDataDir::new()),
            Some("redb-journal") => Self::RedbJournal(TempDataDir::new()),
            #[cfg(feature = "postgres")]
            Some("postgres") => Self::Postgres(super::TempSchema::new()),
            Some(other) => panic!(
                "{TEST_STORE}={other}: expected `redb`, `redb-journal` or `postgres` (postgres \
                 needs taskflow's `postgres` feature)"
            ),
        }
    }

    /// A builder whose store is this one.
    pub fn builder(&self) -> TaskFlowBuilder {
        match self {
            Self::Redb(dir) => dir.builder(),
            Self::RedbJournal(dir) => dir.builder().event_journal(true),
            #[cfg(feature = "postgres")]
            Self::Postgres(schema) => schema.builder(),
        }
    }

    /// The data dir, for a redb store.
    #[must_use]
    pub fn data_dir(&self) -> Option<&Path> {
        match self {
            Self::Redb(dir) | Self::RedbJournal(dir) => Some(dir.path()),
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => None,
        }
    }

    /// Crashes `flow` ([`SimulateCrash`](super::SimulateCrash)) and returns once another
    /// flow on this store may take over what it left: at once on redb (the file lock is
    /// released), after the stale threshold on PostgreSQL (the crashed flow's leases must
    /// expire first, exactly as a killed process's do).
    pub async fn crash(&self, flow: &crate::TaskFlow) {
        super::SimulateCrash::crash(flow);
        #[cfg(feature = "postgres")]
        if let Self::Postgres(_) = self {
            tokio::time::sleep(super::TEST_STALE_THRESHOLD + std::time::Duration::from_millis(50))
                .await;
        }
    }

    /// `"redb"`, `"redb-journal"` or `"postgres"`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Redb(_) => "redb",
            Self::RedbJournal(_) => "redb-journal",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }
}

impl Default for TempStore {
    fn default() -> Self {
        Self::new()
    }
}

//! Test helpers (feature `test-util`): temp data dirs, temp PostgreSQL schemas (with feature
//! `postgres`), a store chosen by the environment so one suite runs on both, an instrumented
//! redb backend that counts fsyncs, can hold them at a gate and fails chosen operations, an
//! in-memory one that records a workload and builds the files a power cut could leave, and,
//! for users' own tests, [`run`], the [`CrashMatrix`] and a [`TestContext`] to call a handler
//! directly.

mod backend;
mod commit_crash;
mod crash_matrix;
mod instrumented;
mod power_cut;
mod step_log;
#[cfg(feature = "postgres")]
mod temp_schema;
mod temp_store;
mod test_context;

pub(crate) use self::backend::BoxedBackend;
pub use self::backend::TestBackend;
pub(crate) use self::commit_crash::CrashAtCommit;
pub use self::crash_matrix::{
    CommitPoint, CrashMatrix, CrashSide, MatrixError, MatrixReport, RunReport, run,
};
pub use self::instrumented::{BackendProbe, InstrumentedBackend};
pub use self::power_cut::{
    AfterKill, CrashPoint, CrashPoints, Cut, FileId, PAGE, PowerCutBackend, Recording,
};
pub use self::step_log::{StepCall, StepLog};

#[cfg(feature = "postgres")]
pub use self::temp_schema::{TEST_DATABASE_URL, TEST_HEARTBEAT, TEST_STALE_THRESHOLD, TempSchema};
pub use self::temp_store::{TEST_STORE, TempStore};
pub use self::test_context::{CallReport, TestContext};

use std::path::Path;

use crate::{TaskFlow, TaskFlowBuilder};

/// The size of each half of the event journal on a test backend
/// ([`RedbStore::open_on_with_journal`](crate::store::RedbStore::open_on_with_journal),
/// [`TaskFlowBuilder::storage_backend_with_journal`]): 4 KiB, where a journal file has
/// 32 MiB halves, so a power-cut workload of a few hundred events moves between the halves
/// several times. A record bigger than a quarter of it is committed to the database instead.
pub const TEST_JOURNAL_HALF: u64 = 4 << 10;

/// Simulates `kill -9` of the process a flow lives in, so one test process can crash a flow
/// and open its data dir again: every handler is aborted, queued writes are dropped, nothing
/// more is written, and the data dir is released. What was acknowledged is on disk; what was
/// not is lost, exactly as after a real kill.
///
/// ```no_run
/// # async fn demo() -> Result<(), taskflow::Error> {
/// use taskflow::testing::{SimulateCrash, TempDataDir};
///
/// let dir = TempDataDir::new();
/// let flow = dir.builder().build().await?;
/// flow.crash();
/// let again = dir.builder().build().await?; // recovers what the crash interrupted
/// # again.shutdown().await?; Ok(()) }
/// ```
pub trait SimulateCrash {
    /// Crashes now. Idempotent.
    fn crash(&self);
}

impl SimulateCrash for TaskFlow {
    fn crash(&self) {
        self.simulate_crash();
    }
}

/// A temporary data dir, removed on drop.
#[derive(Debug)]
pub struct TempDataDir {
    dir: tempfile::TempDir,
}

impl TempDataDir {
    /// Creates an empty directory.
    ///
    /// # Panics
    /// When the OS cannot create a temp dir (a test environment problem).
    #[must_use]
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a temp dir for a test"),
        }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A builder whose data dir is this directory.
    pub fn builder(&self) -> TaskFlowBuilder {
        crate::TaskFlow::builder().data_dir(self.path())
    }
}

impl Default for TempDataDir {
    fn default() -> Self {
        Self::new()
    }
}

//! A redb file backend for fault injection: counts operations and fsyncs, holds fsyncs at a
//! gate, and fails a chosen operation (EIO, or ENOSPC as a full disk) once or from then on.

use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use redb::StorageBackend;
use redb::backends::FileBackend;

#[derive(Debug, Default)]
struct Gate {
    closed: bool,
    waiting: usize,
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[derive(Debug)]
struct ProbeState {
    syncs: AtomicU64,
    writes: AtomicU64,
    written_bytes: AtomicU64,
    /// Every `read`, `write`, `set_len` and `sync_data` call so far.
    operations: AtomicU64,
    /// The operation index that fails with EIO (`u64::MAX`: none), and whether every later
    /// one fails too.
    fail_at: AtomicU64,
    fail_sticky: AtomicBool,
    /// The OS error the chosen operation fails with (EIO unless a test fills the disk).
    fail_errno: std::sync::atomic::AtomicI32,
    failing: AtomicBool,
    fail_next_sync: AtomicBool,
    gate: Mutex<Gate>,
    changed: Condvar,
}

impl Default for ProbeState {
    fn default() -> Self {
        Self {
            syncs: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
            fail_sticky: AtomicBool::new(false),
            fail_errno: std::sync::atomic::AtomicI32::new(EIO),
            failing: AtomicBool::new(false),
            fail_next_sync: AtomicBool::new(false),
            gate: Mutex::new(Gate::default()),
            changed: Condvar::new(),
        }
    }
}

/// Observes and steers an [`InstrumentedBackend`] from a test.
#[derive(Debug, Clone, Default)]
pub struct BackendProbe(Arc<ProbeState>);

impl BackendProbe {
    /// Completed `sync_data` calls (each durable commit makes at least one).
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.0.syncs.load(Ordering::SeqCst)
    }

    /// `read`, `write`, `set_len` and `sync_data` calls so far, failed ones included: the
    /// operation indexes [`fail_operation`](Self::fail_operation) counts.
    #[must_use]
    pub fn operations(&self) -> u64 {
        self.0.operations.load(Ordering::SeqCst)
    }

    /// Makes the storage operation with index `index` (0 is the first `read`, `write`,
    /// `set_len` or `sync_data` of the backend) fail with EIO; with `sticky`, every later one
    /// fails too, as a disk that died.
    pub fn fail_operation(&self, index: u64, sticky: bool) {
        self.0.fail_errno.store(EIO, Ordering::SeqCst);
        self.0.fail_sticky.store(sticky, Ordering::SeqCst);
        self.0.fail_at.store(index, Ordering::SeqCst);
    }

    /// Makes the storage operation with index `index` and every later one fail with ENOSPC,
    /// as a disk that filled up.
    pub fn fill_disk_at(&self, index: u64) {
        self.0.fail_errno.store(ENOSPC, Ordering::SeqCst);
        self.0.fail_sticky.store(true, Ordering::SeqCst);
        self.0.fail_at.store(index, Ordering::SeqCst);
    }

    /// Completed `write` calls.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.0.writes.load(Ordering::SeqCst)
    }

    /// Bytes of the completed `write` calls: what the commits handed to the file system for
    /// their fsyncs to make durable.
    #[must_use]
    pub fn written_bytes(&self) -> u64 {
        self.0.written_bytes.load(Ordering::SeqCst)
    }

    /// Makes the next `sync_data` (only that one) fail with an I/O error: the disk works
    /// again right after, as after a transient fault.
    pub fn fail_next_sync(&self) {
        self.0.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// Makes every later `write` and `sync_data` fail with an I/O error.
    pub fn fail_from_now(&self) {
        self.0.failing.store(true, Ordering::SeqCst);
    }

    /// Makes later `sync_data` calls block until [`release_syncs`](Self::release_syncs).
    pub fn hold_syncs(&self) {
        self.0
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
    }

    /// Lets held and later `sync_data` calls through.
    pub fn release_syncs(&self) {
        self.0
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = false;
        self.0.changed.notify_all();
    }

    /// Blocks until a `sync_data` call waits at the gate; `false` after `timeout`.
    #[must_use]
    pub fn wait_for_held_sync(&self, timeout: Duration) -> bool {
        let gate = self.0.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let (gate, _) = self
            .0
            .changed
            .wait_timeout_while(gate, timeout, |g| g.waiting == 0)
            .unwrap_or_else(PoisonError::into_inner);
        gate.waiting > 0
    }

    fn check(&self) -> std::io::Result<()> {
        if self.0.failing.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected I/O error"));
        }
        Ok(())
    }

    /// Counts one storage operation; EIO when it is the one (or after the one) chosen.
    fn operation(&self) -> std::io::Result<()> {
        let index = self.0.operations.fetch_add(1, Ordering::SeqCst);
        let at = self.0.fail_at.load(Ordering::SeqCst);
        let sticky = self.0.fail_sticky.load(Ordering::SeqCst);
        if index == at || (sticky && at != u64::MAX && index > at) {
            let errno = self.0.fail_errno.load(Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }

    fn pass_gate(&self) {
        let mut gate = self.0.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if gate.closed {
            gate.waiting += 1;
            self.0.changed.notify_all();
            gate = self
                .0
                .changed
                .wait_while(gate, |g| g.closed)
                .unwrap_or_else(PoisonError::into_inner);
            gate.waiting -= 1;
        }
    }
}

/// A redb file backend with a [`BackendProbe`].
#[derive(Debug)]
pub struct InstrumentedBackend {
    file: FileBackend,
    probe: BackendProbe,
}

impl InstrumentedBackend {
    /// Opens (or creates) `dir/taskflow.redb`, the file a flow on `dir` uses.
    ///
    /// # Errors
    /// When the directory or file cannot be created.
    pub fn create(dir: &Path) -> std::io::Result<(Self, BackendProbe)> {
        std::fs::create_dir_all(dir)?;
        let path: PathBuf = dir.join("taskflow.redb");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let file = FileBackend::new(file).map_err(std::io::Error::other)?;
        let probe = BackendProbe::default();
        Ok((
            Self {
                file,
                probe: probe.clone(),
            },
            probe,
        ))
    }
}

impl StorageBackend for InstrumentedBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.probe.operation()?;
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.probe.operation()?;
        self.probe.check()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.probe.pass_gate();
        self.probe.operation()?;
        self.probe.check()?;
        if self.probe.0.fail_next_sync.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync error (once)"));
        }
        self.file.sync_data()?;
        self.probe.0.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.probe.operation()?;
        self.probe.check()?;
        self.file.write(offset, data)?;
        self.probe.0.writes.fetch_add(1, Ordering::SeqCst);
        self.probe
            .0
            .written_bytes
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

//! The redb backends a test may give the builder, behind one sealed trait.

use std::ops::Bound;

use redb::StorageBackend;

use super::{InstrumentedBackend, PowerCutBackend};

mod sealed {
    pub trait Sealed {
        fn boxed(self) -> Box<dyn redb::StorageBackend>;
    }
}

/// A storage backend from this module: [`InstrumentedBackend`] or [`PowerCutBackend`].
/// Sealed: the builder takes only these.
pub trait TestBackend: sealed::Sealed + Send + 'static {}

impl sealed::Sealed for InstrumentedBackend {
    fn boxed(self) -> Box<dyn StorageBackend> {
        Box::new(self)
    }
}
impl TestBackend for InstrumentedBackend {}

impl sealed::Sealed for PowerCutBackend {
    fn boxed(self) -> Box<dyn StorageBackend> {
        Box::new(self)
    }
}
impl TestBackend for PowerCutBackend {}

/// One of them, boxed for the builder.
#[derive(Debug)]
pub(crate) struct BoxedBackend(Box<dyn StorageBackend>);

impl BoxedBackend {
    pub(crate) fn new(backend: impl TestBackend) -> Self {
        Self(sealed::Sealed::boxed(backend))
    }
}

impl StorageBackend for BoxedBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.0.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.0.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.0.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.0.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.0.query_lock_range(start, end)
    }
}

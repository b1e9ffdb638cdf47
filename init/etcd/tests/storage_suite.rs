//! openraft's own storage conformance suite against keel's durable log and
//! state machine (vote, append, truncate, purge, apply, snapshots), each
//! test on a fresh data directory.

use keel_etcd::log::LogStore;
use keel_etcd::sm::StateMachine;
use keel_etcd::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let io = |e: String| {
            StorageError::from_io_error(
                ErrorSubject::Store,
                ErrorVerb::Write,
                std::io::Error::other(e),
            )
        };
        let dir = tempfile::tempdir().map_err(|e| io(e.to_string()))?;
        let log = LogStore::open(&dir.path().join("wal")).map_err(|e| io(e.to_string()))?;
        let snap = dir.path().join("snap");
        std::fs::create_dir_all(&snap).map_err(|e| io(e.to_string()))?;
        let (sm, _) = StateMachine::open(&snap).map_err(|e| io(e.to_string()))?;
        Ok((dir, log, sm))
    }
}

// openraft's StorageError is what the suite returns.
#[allow(clippy::result_large_err)]
#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(Builder)
}

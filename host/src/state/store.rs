//! The local store: a copy of one slot's changelog partition on disk (redb), with
//! the changelog offset it reflects written in the same transaction, so that a
//! restart reads only the changelog's tail.
//!
//! The store holds the changelog's records as they are (its key and its latest
//! value), never anything the changelog does not have: weir writes it when a
//! partition is released cleanly, after the final commit (exactly-once) or once
//! every change was acknowledged (at-least-once). A store that cannot be trusted
//! (unreadable, corrupt, behind the changelog's start or ahead of its end) is
//! deleted and the slot is rebuilt from the changelog.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Changelog key -> latest value.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// `offset` -> the next changelog offset the records reflect; `written-ms` -> when.
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// How old a store may be and still be read: compaction drops a tombstone after the
/// changelog's `delete.retention.ms` (a day by default), so an older store could
/// hold an entry whose deletion the changelog no longer shows.
pub const MAX_AGE_MS: i64 = 20 * 3600 * 1000;

/// The page cache of one store: one store per slot and partition, so keep it small.
const CACHE_BYTES: usize = 16 << 20;

/// Why a store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds it (two instances on one machine sharing `state.dir`
    /// during a hand-over): restore from the changelog, and leave it alone.
    #[error("the local store {0} is open in another process")]
    Busy(PathBuf),
    #[error("the local store {path} is unreadable: {message}")]
    Unreadable { path: PathBuf, message: String },
}

pub struct LocalStore {
    db: Database,
    path: PathBuf,
}

impl LocalStore {
    /// Opens the store at `path`, creating it (and its directory) if missing.
    pub fn open(path: &Path) -> Result<LocalStore, StoreError> {
        let unreadable = |message: String| StoreError::Unreadable {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| unreadable(e.to_string()))?;
        }
        // A damaged page can panic redb's reader instead of returning an error:
        // that is a store to rebuild, not a host fault.
        let opened = std::panic::catch_unwind(|| {
            Database::builder().set_cache_size(CACHE_BYTES).create(path)
        });
        match opened {
            Ok(Ok(db)) => Ok(LocalStore {
                db,
                path: path.to_owned(),
            }),
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                Err(StoreError::Busy(path.to_owned()))
            }
            Ok(Err(e)) => Err(unreadable(e.to_string())),
            Err(_) => Err(unreadable("redb panicked while opening it".into())),
        }
    }

    /// Deletes the store at `path` (a file that cannot be trusted).
    pub fn wipe(path: &Path) {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(path = %path.display(), "deleted the local store"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete the local store")
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next changelog offset the store reflects (`None`: never written).
    pub fn offset(&self) -> Result<Option<i64>, StoreError> {
        self.meta("offset")
    }

    /// When the store was last written, in ms since the epoch.
    pub fn written_ms(&self) -> Result<Option<i64>, StoreError> {
        self.meta("written-ms")
    }

    fn meta(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.guard(|db| {
            let read = db.begin_read()?;
            let meta = match read.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(meta.get(name)?.map(|v| v.value()))
        })
    }

    /// Calls `each` with every record (changelog key, value).
    pub fn load(&self, mut each: impl FnMut(&[u8], &[u8])) -> Result<u64, StoreError> {
        self.guard(|db| {
            let read = db.begin_read()?;
            let records = match read.open_table(RECORDS) {
                Ok(records) => records,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            let mut count = 0;
            for item in records.iter()? {
                let (key, value) = item?;
                each(key.value(), value.value());
                count += 1;
            }
            Ok(count)
        })
    }

    /// Writes `changes` (changelog key, latest value; `None` deletes) and the
    /// offset they bring the store to, in one transaction.
    pub fn save<'c>(
        &self,
        changes: impl IntoIterator<Item = (&'c [u8], Option<&'c [u8]>)>,
        offset: i64,
    ) -> Result<(), StoreError> {
        let changes: Vec<_> = changes.into_iter().collect();
        self.guard(move |db| {
            let write = db.begin_write()?;
            {
                let mut records = write.open_table(RECORDS)?;
                for (key, value) in &changes {
                    match value {
                        Some(value) => {
                            records.insert(*key, *value)?;
                        }
                        None => {
                            records.remove(*key)?;
                        }
                    }
                }
                let mut meta = write.open_table(META)?;
                meta.insert("offset", offset)?;
                meta.insert("written-ms", crate::state::clock::wall_ms())?;
            }
            write.commit()?;
            Ok(())
        })
    }

    /// Runs `body`, turning redb's errors and panics into [`StoreError`].
    fn guard<T>(
        &self,
        body: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let unreadable = |message: String| StoreError::Unreadable {
            path: self.path.clone(),
            message,
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&self.db))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(unreadable(e.to_string())),
            Err(_) => Err(unreadable("redb panicked while reading it".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_their_offset_round_trip_and_deletes_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/0.redb");
        let store = LocalStore::open(&path).unwrap();
        assert_eq!(store.offset().unwrap(), None);
        assert_eq!(store.load(|_, _| {}).unwrap(), 0);
        store
            .save(
                [(&b"a"[..], Some(&b"1"[..])), (&b"b"[..], Some(&b"2"[..]))],
                7,
            )
            .unwrap();
        store.save([(&b"a"[..], None)], 9).unwrap();
        drop(store);
        let store = LocalStore::open(&path).unwrap();
        assert_eq!(store.offset().unwrap(), Some(9));
        let mut seen = Vec::new();
        store
            .load(|k, v| seen.push((k.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(seen, vec![(b"b".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.redb");
        std::fs::write(&path, vec![0x5a; 10_000]).unwrap();
        assert!(matches!(
            LocalStore::open(&path),
            Err(StoreError::Unreadable { .. })
        ));
        LocalStore::wipe(&path);
        assert!(LocalStore::open(&path).is_ok());
    }
}
